"""The out-of-the-box job: a real train-prune-fine-tune run on the bundled digits."""

from __future__ import annotations

import io

from rich.console import Console

from prunetune.app.demo import run_demo


def test_demo_prints_the_trade_off_between_accuracy_and_compression() -> None:
    buffer = io.StringIO()
    rows = run_demo(ratios=(0.25, 0.5), criteria=("l1", "fpgm"), epochs=10, console=Console(file=buffer, width=150))
    assert [(row.criterion, row.ratio) for row in rows] == [("l1", 0.25), ("l1", 0.5), ("fpgm", 0.25), ("fpgm", 0.5)]
    by_ratio = {row.ratio: row for row in rows}
    assert by_ratio[0.5].params < by_ratio[0.25].params < 21_386  # LeNet-5 on 8x8 digits has 21,386 parameters
    assert by_ratio[0.5].macs < by_ratio[0.25].macs
    # the same ratio removes the same number of channels whatever the criterion
    assert {row.params for row in rows if row.ratio == 0.25} == {by_ratio[0.25].params}
    # a quarter of the filters gone and one epoch of fine-tuning: still far above chance (10%)
    assert all(row.accuracy_finetuned > 0.8 for row in rows if row.ratio == 0.25)
    text = buffer.getvalue()
    assert "compression" in text and f"{by_ratio[0.5].params:,}" in text

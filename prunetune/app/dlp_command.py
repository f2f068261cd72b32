"""The `prunetune dlp` report: a checkpoint's units ranked by discriminative layer pruning, and a drop set.

It reads a base checkpoint and its data, ranks the droppable units with
:func:`prunetune.pruners.discriminative.dlp_scores` on the first training samples (in their
stored order, so the same command gives the same table), and, given a depth or FLOPs budget,
picks the drop set and writes its plan. Everything is checked before any file is written.
"""

from __future__ import annotations

import json
import os
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

import torch
from torch.utils.data import DataLoader

from prunetune.errors import PrunetuneError
from prunetune.objectives.devices import check_device, resolve_device
from prunetune.files import write_text
from prunetune.pruners import apply_plan, measure
from prunetune.pruners.discriminative import (
    SCORES,
    check_budget,
    check_filters,
    dlp_plan,
    dlp_scores,
)
from prunetune.pruners.drop import droppable_units
from prunetune.zoo import load_checkpoint, load_data

__all__ = ["DLPReport", "DLPRow", "check_output_folder", "dlp_report", "write_dlp_report"]

_SCORE_WORDS = {
    "gain": "cross-validated PLS R^2 of the unit's output minus that of its input (the discriminative power it adds)",
    "r2": "cross-validated PLS R^2 of the unit's output against the one-hot labels",
    "vip": "mean VIP of the unit's output features (the paper's score; about 1 by construction)",
}


@dataclass(frozen=True)
class DLPRow:
    """One ranked unit: its scores and what dropping it alone saves."""

    unit: str
    rule: str
    score: float
    r2: float
    input_r2: float
    mean_vip: float
    params: int
    macs: int
    macs_share: float


@dataclass(frozen=True)
class DLPReport:
    """A ranking (least discriminative first) and, with a budget, the drop set and its plan."""

    checkpoint: str
    data_spec: str
    samples: int
    n_components: int
    score: str
    rows: list[DLPRow]
    base_macs: int
    base_params: int
    budget: dict[str, float] = field(default_factory=dict)
    drop_set: list[str] = field(default_factory=list)
    plan: dict[str, Any] | None = None
    macs_after: int | None = None
    params_after: int | None = None

    def to_dict(self) -> dict[str, Any]:
        """Plain data for ``dlp.json``."""
        data = asdict(self)
        data["score_meaning"] = _SCORE_WORDS[self.score]
        return data

    def table(self) -> str:
        """The ranking as a fixed-width table, least discriminative first, drop set marked."""
        chosen = set(self.drop_set)
        lines = [f"{'':2}{'unit':<24} {'rule':<10} {'score':>9} {'R^2':>8} {'in R^2':>8} {'mean VIP':>9} {'params':>10} {'MACs %':>7}"]
        for row in self.rows:
            mark = "x " if row.unit in chosen else "  "
            lines.append(
                f"{mark}{row.unit:<24} {row.rule:<10} {row.score:>9.4f} {row.r2:>8.4f} {row.input_r2:>8.4f} "
                f"{row.mean_vip:>9.4f} {row.params:>10,} {row.macs_share:>7.2%}"
            )
        return "\n".join(lines)

    def summary(self) -> list[str]:
        """The lines after the table: what was measured, the drop set, its cost and its plan."""
        lines = [
            (
                f"{len(self.rows)} units of {self.checkpoint} ranked on {self.samples} training samples of "
                f"{self.data_spec}, PLS with {self.n_components} components; score: {_SCORE_WORDS[self.score]}."
            )
        ]
        if self.plan is None:
            lines.append("No budget given: pass --drop N or --flops-reduction F for a drop set and its plan.")
            return lines
        removed = 1 - (self.macs_after or 0) / self.base_macs if self.base_macs else 0.0
        lines.append(f"drop set ({len(self.drop_set)}): {', '.join(self.drop_set)}")
        lines.append(
            f"MACs {self.base_macs:,} -> {self.macs_after:,} ({removed:.1%} removed); "
            f"params {self.base_params:,} -> {self.params_after:,}"
        )
        lines.append("plan: " + json.dumps(self.plan))
        return lines

    def markdown(self) -> str:
        """``dlp.md``: the summary and the ranking table."""
        chosen = set(self.drop_set)
        out = ["# Discriminative layer pruning", ""]
        out += [line + "  " for line in self.summary()[:-1]]
        if self.plan is not None:
            out += ["", "```json", json.dumps(self.plan, indent=2), "```"]
        out += [
            "",
            "| rank | unit | rule | score | R^2 | input R^2 | mean VIP | params | MACs share | dropped |",
            "| ---: | --- | --- | ---: | ---: | ---: | ---: | ---: | ---: | :---: |",
        ]
        for rank, row in enumerate(self.rows, start=1):
            out.append(
                f"| {rank} | `{row.unit}` | {row.rule} | {row.score:.4f} | {row.r2:.4f} | {row.input_r2:.4f} | "
                f"{row.mean_vip:.4f} | {row.params:,} | {row.macs_share:.2%} | {'x' if row.unit in chosen else ''} |"
            )
        return "\n".join(out) + "\n"


def check_output_folder(folder: Path | None) -> None:
    """Refuse an output path that is an existing file, before any work."""
    if folder is not None and folder.exists() and not folder.is_dir():
        raise PrunetuneError(f"--output {folder} is a file; name a folder for dlp.json and dlp.md.")


def dlp_report(
    checkpoint_path: str | os.PathLike[str],
    *,
    data: str | None = None,
    samples: int = 2000,
    n_components: int = 2,
    score: str = "gain",
    drop: int | None = None,
    macs_reduction: float | None = None,
    filters: float | None = None,
    batch_size: int = 256,
    device: str = "auto",
) -> DLPReport:
    """Rank a checkpoint's droppable units and, given one budget, choose and check the drop set.

    Args:
        checkpoint_path: A checkpoint written by ``prunetune train``.
        data: Data spec; by default the one the checkpoint was trained on.
        samples: Training samples projected (the first ones of the training split).
        n_components: PLS components.
        score: Ranking score (:data:`prunetune.pruners.discriminative.SCORES`).
        drop, macs_reduction: At most one budget (units, or the fraction of MACs removed).
        filters: With a budget, one filter ratio for the kept units: the paper's cascade.
    """
    if drop is not None or macs_reduction is not None:
        check_budget(drop, macs_reduction)
    elif filters is not None:
        raise PrunetuneError("The filter cascade follows a drop set: give a budget (--drop or --flops-reduction) too.")
    if filters is not None:
        check_filters(filters)
    if score not in SCORES:
        raise PrunetuneError(f"The 'score' parameter of dlp_report must be one of {', '.join(SCORES)}. Got {score!r} instead.")
    check_device(device, where="--device")
    checkpoint = load_checkpoint(checkpoint_path)
    if checkpoint.input_shape is None:
        raise PrunetuneError(f"{checkpoint_path} records no input shape.")
    spec = data or checkpoint.data_spec
    if spec is None:
        raise PrunetuneError(f"{checkpoint_path} records no data spec: pass --data.")
    splits = load_data(spec, **checkpoint.data_options)
    model = checkpoint.build().to(resolve_device(device))  # the PLS fits run on the CPU
    example = torch.zeros(1, *checkpoint.input_shape)
    candidates = {candidate.name: candidate for candidate in droppable_units(model, example)}
    if not candidates:
        raise PrunetuneError(f"{checkpoint_path}: the model has no droppable units (see `prunetune units`).")
    batches = DataLoader(splits.train, batch_size=batch_size, shuffle=False)
    scores = dlp_scores(
        model, batches, candidates=list(candidates), example_inputs=example,
        n_components=n_components, max_samples=samples, score=score,
    )
    base = measure(model, example)
    order = sorted(range(len(scores)), key=lambda index: (scores[index].score, index))
    rows = [
        DLPRow(
            unit=layer.name, rule=candidates[layer.name].rule, score=layer.score, r2=layer.r2,
            input_r2=layer.input_r2, mean_vip=layer.mean_vip, params=candidates[layer.name].params,
            macs=candidates[layer.name].macs, macs_share=candidates[layer.name].macs / base.macs if base.macs else 0.0,
        )
        for layer in (scores[index] for index in order)
    ]
    report = DLPReport(
        checkpoint=str(checkpoint_path), data_spec=spec, samples=min(samples, len(splits.train)),
        n_components=n_components, score=score, rows=rows, base_macs=base.macs, base_params=base.params,
    )
    if drop is None and macs_reduction is None:
        return report
    ranking = [(row.unit, row.score) for row in rows]
    plan = dlp_plan(model, example, ranking, drop=drop, macs_reduction=macs_reduction, filters=filters)
    after = measure(apply_plan(model, plan, example_inputs=example), example)
    budget = {"drop": drop} if drop is not None else {"macs_reduction": macs_reduction}
    return replace(
        report,
        budget=budget, drop_set=list(plan["drop"]["units"]), plan=plan,
        macs_after=after.macs, params_after=after.params,
    )


def write_dlp_report(report: DLPReport, folder: str | os.PathLike[str]) -> tuple[Path, Path]:
    """Write ``folder/dlp.json`` and ``folder/dlp.md`` (each atomically); returns their paths."""
    folder = Path(folder)
    check_output_folder(folder)
    folder.mkdir(parents=True, exist_ok=True)
    json_path, md_path = folder / "dlp.json", folder / "dlp.md"
    write_text(json_path, json.dumps(report.to_dict(), indent=2) + "\n")
    write_text(md_path, report.markdown())
    return json_path, md_path

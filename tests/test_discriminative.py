"""Discriminative layer pruning: PLS scores, the ranking, drop sets under both budgets, the `dlp` command."""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from pathlib import Path

import numpy as np
import pytest
import torch
from sklearn.cross_decomposition import PLSRegression
from torch import nn
from torch.utils.data import DataLoader

from prunetune.zoo.models import build_model_for
from prunetune.cli import main
from prunetune.errors import PrunetuneError
from prunetune.objectives import TrainConfig, train
from prunetune.pruners import Plan, apply_plan, measure
from prunetune.pruners.discriminative import (
    LayerScore,
    dlp_drop_set,
    dlp_plan,
    dlp_ranking,
    dlp_scores,
    vip_scores,
)
from prunetune.pruners.drop import droppable_units
from prunetune.zoo import save_checkpoint

pytestmark = pytest.mark.usefixtures("one_thread")

#: A drop set must have met its MACs budget on the model it leaves.
MACS_BUDGET = 0.2


@pytest.fixture(scope="module")
def resnet(digits) -> nn.Module:
    """A width-reduced ResNet-20 trained two epochs on digits (about 90% validation accuracy)."""
    torch.manual_seed(0)
    net = build_model_for("resnet20", digits, {"width": 0.25})
    train(net, digits.loaders(64, seed=0).train, config=TrainConfig(epochs=2, optimizer="adam", lr=0.01, seed=0))
    return net


@pytest.fixture(scope="module")
def batches(digits) -> list[tuple[torch.Tensor, torch.Tensor]]:
    """The first 600 training samples: enough for a stable ranking, and fast."""
    return list(DataLoader(digits.train, batch_size=200, shuffle=False))[:3]


@pytest.fixture(scope="module")
def ranking(resnet, batches, digits_example) -> list[tuple[str, float]]:
    return dlp_ranking(resnet, batches, example_inputs=digits_example)


@pytest.fixture(scope="module")
def clean(resnet, batches, digits_example) -> dict[str, LayerScore]:
    return {layer.name: layer for layer in dlp_scores(resnet, batches, example_inputs=digits_example)}


@pytest.fixture
def noisy() -> Iterator[Callable[[nn.Module, str], None]]:
    """Replace a module's output by Gaussian noise of the same shape, for the test's duration.

    ``0 * out`` keeps the noise attached to the traced graph, so the droppable units stay the same.
    """
    handles = []

    def install(model: nn.Module, name: str) -> None:
        module = dict(model.named_modules())[name]
        handles.append(module.register_forward_hook(lambda mod, args, out: torch.randn_like(out) + 0 * out))

    yield install
    for handle in handles:
        handle.remove()


def test_vip_squares_sum_to_the_feature_count_so_mean_vip_cannot_rank_layers() -> None:
    rng = np.random.default_rng(0)
    labels = rng.integers(0, 3, size=300)
    informative = labels[:, None] + 0.3 * rng.standard_normal((300, 1))
    features = np.hstack([rng.standard_normal((300, 4)), informative, rng.standard_normal((300, 3))])
    targets = np.eye(3)[labels]
    vip = vip_scores(PLSRegression(n_components=2).fit(features, targets))
    assert int(np.argmax(vip)) == 4  # the one column that carries the labels
    assert vip[4] > 1 > np.max(np.delete(vip, 4))
    noise = rng.standard_normal((300, 8))
    for data in (features, noise):  # informative or not, the squares always sum to p
        squares = vip_scores(PLSRegression(n_components=2).fit(data, targets)) ** 2
        assert squares.sum() == pytest.approx(data.shape[1])


def test_dead_and_rank_deficient_units_score_without_failing() -> None:
    """Dead ReLU channels leave fewer independent features than PLS components: scored, not crashed."""
    torch.manual_seed(0)
    labels = torch.arange(120) % 3
    inputs = torch.nn.functional.one_hot(labels, 3).float() + 0.1 * torch.randn(120, 3)
    model = nn.Sequential(nn.Linear(3, 4), nn.ReLU(), nn.Linear(4, 4), nn.ReLU(), nn.Linear(4, 3))
    with torch.no_grad():
        model[2].bias.fill_(-100.0)  # every output of model[3] is 0
        model[0].weight.zero_()
        model[0].weight[0] = torch.tensor([1.0, 0.0, 0.0])  # one live channel carries class 0
        model[0].bias.zero_()
    scores = {
        layer.name: layer
        for layer in dlp_scores(model, [(inputs, labels)], candidates=["1", "3"], n_components=3, score="r2")
    }
    assert scores["3"].r2 == 0.0 and scores["3"].mean_vip == 0.0
    assert scores["1"].r2 > 0.1 and 0 < scores["1"].mean_vip <= 0.5  # one live feature of four
    assert [name for name, _ in dlp_ranking(model, [(inputs, labels)], candidates=["1", "3"], score="r2")] == ["3", "1"]


def test_default_candidates_are_the_droppable_units_and_the_ranking_covers_each_once(
    resnet, ranking, clean, digits_example
) -> None:
    names = [name for name, _ in ranking]
    droppable = [candidate.name for candidate in droppable_units(resnet, digits_example)]
    assert sorted(names) == sorted(droppable) and len(names) == len(set(names)) == len(droppable)
    scores = [score for _, score in ranking]
    assert scores == sorted(scores)  # least discriminative first
    assert ranking == [(name, clean[name].gain) for name in names]  # the default score is the gain
    assert all(layer.gain == pytest.approx(layer.r2 - layer.input_r2) for layer in clean.values())


def test_ranking_is_deterministic_and_covers_exactly_explicit_candidates(resnet, batches) -> None:
    candidates = ["layer3.2", "layer1.1", "layer2.2"]
    first = dlp_ranking(resnet, batches, candidates=candidates)
    assert sorted(name for name, _ in first) == sorted(candidates)
    assert dlp_ranking(resnet, batches, candidates=candidates) == first


def test_a_block_whose_output_is_noise_ranks_least_discriminative(resnet, batches, digits_example, clean, noisy) -> None:
    """A block replaced by noise is last in importance, i.e. FIRST in the ranking (least discriminative first).

    The last block is the one made noisy, so no other candidate sees the noise: on the clean
    network it has the most discriminative output of all (last by the R^2 score).
    """
    assert max(clean, key=lambda name: clean[name].r2) == "layer3.2"
    torch.manual_seed(0)
    noisy(resnet, "layer3.2")
    noise = {layer.name: layer for layer in dlp_scores(resnet, batches, example_inputs=digits_example)}
    assert min(noise, key=lambda name: noise[name].gain) == "layer3.2"
    assert min(noise, key=lambda name: noise[name].r2) == "layer3.2"
    assert noise["layer3.2"].r2 < 0.02 < min(layer.r2 for layer in clean.values())
    assert noise["layer3.2"].gain < min(layer.gain for layer in clean.values()) - 0.05
    assert {name: layer.r2 for name, layer in noise.items() if name != "layer3.2"} == pytest.approx(
        {name: layer.r2 for name, layer in clean.items() if name != "layer3.2"}
    )


def test_noise_in_a_middle_block_ranks_that_block_first_by_gain(resnet, batches, digits_example, noisy) -> None:
    """Blocks after the noise see noise too, but only the noisy block loses what its input had."""
    torch.manual_seed(0)
    noisy(resnet, "layer2.1")
    assert dlp_ranking(resnet, batches, example_inputs=digits_example)[0][0] == "layer2.1"


def test_drop_budget_takes_the_first_droppable_units_in_ranking_order(resnet, digits_example) -> None:
    order = [candidate.name for candidate in droppable_units(resnet, digits_example)]
    ranking = [("layer2.0", -1.0), ("fc", -0.5)] + [(name, float(i)) for i, name in enumerate(reversed(order))]
    chosen = dlp_drop_set(resnet, digits_example, ranking, drop=2)
    assert chosen == sorted(order[-2:], key=order.index)  # the two not-droppable names were skipped
    Plan({"drop": {"units": chosen}}).validate(resnet, digits_example)


def test_macs_budget_is_met_and_the_last_unit_taken_was_needed(resnet, digits_example, ranking) -> None:
    chosen = dlp_drop_set(resnet, digits_example, ranking, macs_reduction=MACS_BUDGET)
    base = measure(resnet, digits_example).macs

    def removed(units: list[str]) -> float:
        return 1 - measure(apply_plan(resnet, {"drop": {"units": units}}, example_inputs=digits_example), digits_example).macs / base

    assert removed(chosen) >= MACS_BUDGET
    last = [name for name, _ in ranking if name in chosen][-1]
    assert removed([name for name in chosen if name != last]) < MACS_BUDGET
    names = [name for name, _ in resnet.named_modules()]
    assert chosen == sorted(chosen, key=names.index)  # registration order


def test_cascade_plan_applies_and_removes_more_than_the_drop_alone(resnet, digits_example, ranking) -> None:
    plan = dlp_plan(resnet, digits_example, ranking, drop=1, filters=0.5)
    assert Plan.from_json(Plan(plan).to_json()).sections == plan
    dropped_only = apply_plan(resnet, {"drop": plan["drop"]}, example_inputs=digits_example)
    cascade = apply_plan(resnet, plan, example_inputs=digits_example)
    assert measure(cascade, digits_example).macs < measure(dropped_only, digits_example).macs < measure(resnet, digits_example).macs
    assert not set(plan["filters"]["ratios"]) & set(plan["drop"]["units"])


@pytest.mark.parametrize(
    ("budget", "words"),
    [
        ({}, "exactly one"),
        ({"drop": 1, "macs_reduction": 0.2}, "exactly one"),
        ({"macs_reduction": 1.2}, "(0, 1)"),
        ({"drop": 0}, "'drop'"),
        ({"macs_reduction": 0.99}, "cannot be met"),
    ],
)
def test_bad_budgets_raise_one_message(resnet, digits_example, ranking, budget, words) -> None:
    with pytest.raises(PrunetuneError) as error:
        dlp_drop_set(resnet, digits_example, ranking, **budget)
    assert words in str(error.value)


@pytest.mark.parametrize(
    ("kwargs", "words"),
    [
        ({"candidates": ["layer9.9"]}, "layer9.9"),
        ({"candidates": []}, "non-empty"),
        ({"score": "entropy"}, "entropy"),
        ({"n_components": 0}, "n_components"),
    ],
)
def test_bad_ranking_arguments_raise_one_message(resnet, batches, kwargs, words) -> None:
    with pytest.raises(PrunetuneError) as error:
        dlp_ranking(resnet, batches, **{"candidates": ["layer1.1"], **kwargs})
    assert words in str(error.value)


@pytest.fixture(scope="module")
def checkpoint(resnet, digits, tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("base") / "resnet.pt"
    return save_checkpoint(
        path, resnet, data_spec="digits", data_options={"val_fraction": 0.1, "seed": 0, "limit": None},
        input_shape=tuple(digits.input_shape), num_classes=digits.num_classes, metrics={},
    )


def run_cli(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    try:
        status = main(list(argv))
    except SystemExit as exit_:  # argparse's own usage errors
        status = int(exit_.code or 0)
    captured = capsys.readouterr()
    return status, captured.out, captured.err


def test_cli_prints_the_ranking_and_writes_json_and_markdown(checkpoint, resnet, digits_example, tmp_path, capsys) -> None:
    out = tmp_path / "dlp"
    status, stdout, _ = run_cli(capsys, "dlp", "--model", str(checkpoint), "--drop", "2", "--samples", "600", "-o", str(out))
    assert status == 0
    report = json.loads((out / "dlp.json").read_text())
    droppable = [candidate.name for candidate in droppable_units(resnet, digits_example)]
    ranked = [row["unit"] for row in report["rows"]]
    assert sorted(ranked) == sorted(droppable)
    assert [row["score"] for row in report["rows"]] == sorted(row["score"] for row in report["rows"])
    assert len(report["drop_set"]) == 2 and set(report["drop_set"]) <= set(ranked)
    assert report["plan"] == {"drop": {"units": report["drop_set"]}}
    assert report["macs_after"] < report["base_macs"]
    for unit in ranked:
        assert unit in stdout
    assert json.dumps(report["plan"]) in stdout
    markdown = (out / "dlp.md").read_text()
    assert all(f"`{unit}`" in markdown for unit in ranked) and markdown.count("| x |") == 2


@pytest.mark.parametrize(
    ("argv", "words"),
    [
        (["--flops-reduction", "1.5"], "--flops-reduction"),
        (["--filters", "0.3"], "budget"),
        (["--drop", "2", "--filters", "1.5"], "'filters'"),
        (["--data", "mnist:{tmp}/nowhere", "--drop", "1"], "nowhere"),
        (["--drop", "1", "-o", "{tmp}/afile"], "afile"),
    ],
)
def test_cli_bad_input_gives_one_message_status_2_and_writes_nothing(
    checkpoint, tmp_path, capsys, argv, words
) -> None:
    (tmp_path / "afile").write_text("")
    argv = [part.replace("{tmp}", str(tmp_path)) for part in argv]
    if "-o" not in argv:
        argv += ["-o", str(tmp_path / "out")]
    status, _, stderr = run_cli(capsys, "dlp", "--model", str(checkpoint), *argv)
    assert status == 2
    assert words in stderr and stderr.startswith("prunetune: error: ") and stderr.count("\n") == 1
    assert not (tmp_path / "out").exists() and (tmp_path / "afile").read_text() == ""


def test_cli_two_budgets_and_a_missing_checkpoint_exit_2(tmp_path, capsys) -> None:
    status, _, _ = run_cli(capsys, "dlp", "--model", str(tmp_path / "x.pt"), "--drop", "1", "--flops-reduction", "0.2")
    assert status == 2
    status, _, stderr = run_cli(capsys, "dlp", "--model", str(tmp_path / "none.pt"), "-o", str(tmp_path / "out"))
    assert status == 2 and "none.pt" in stderr and not (tmp_path / "out").exists()

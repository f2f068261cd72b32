"""Weight pruning with recovery (Wu et al. 2021): masks that come back, iterations, the stage, a DE search on MNIST."""

from __future__ import annotations

import copy
import math
from pathlib import Path

import pytest
import torch
from torch import nn

from prunetune.errors import PrunetuneError
from prunetune.objectives.recovery import finetune_steps, weights_stage
from prunetune.objectives.stages import StageContext
from prunetune.objectives.training import TrainConfig, train
from prunetune.pruners import Plan, WeightPruning, apply_plan, measure
from prunetune.pruners.unstructured import (
    apply_weight_masks,
    disable_recovery,
    enable_recovery,
    make_masks_permanent,
    recovery_layers,
    sensitivity_thresholds,
    update_masks,
    weight_masks,
    weight_thresholds,
)
from prunetune.runtime import torch_threads
from prunetune.zoo.models import build_model

FC1, FC2, FC3 = "classifier.0", "classifier.2", "classifier.4"
EXAMPLE = torch.zeros(1, 1, 28, 28)


def lenet300_100(seed: int = 0) -> nn.Module:
    torch.manual_seed(seed)
    return build_model("lenet300_100", num_classes=10, in_channels=1, input_size=28)


def used_weight(model: nn.Module, path: str) -> torch.Tensor:
    """The weight the layer computes with in its next forward pass."""
    module = model.get_submodule(path)
    return (module.weight_orig * module.weight_mask).detach()


def random_batches(count: int, seed: int = 0) -> list[tuple[torch.Tensor, torch.Tensor]]:
    generator = torch.Generator().manual_seed(seed)
    return [(torch.randn(16, 1, 28, 28, generator=generator), torch.randint(0, 10, (16,), generator=generator)) for _ in range(count)]


def context_for(batches: list, *, epochs: int = 1, on_recalibrate=None) -> StageContext:
    return StageContext(
        example_inputs=EXAMPLE,
        calibration=batches[:1],
        train_loader=batches,
        val_loader=batches[:1],
        finetune=TrainConfig(epochs=epochs, lr=0.05, seed=0),
        base_val_accuracy=1.0,
        evaluate=lambda model: 0.0,
        recalibrate=on_recalibrate or (lambda model: None),
    )


# -- the mechanics in prunetune.pruners.unstructured ------------------------------------------------


def test_a_hidden_weight_pushed_above_its_threshold_comes_back() -> None:
    model = lenet300_100()
    apply_weight_masks(model, sensitivities={FC2: 1.0})
    layer = model.get_submodule(FC2)
    threshold = weight_thresholds(model)[FC2]
    assert threshold == pytest.approx(1.0 * float(layer.weight_orig.detach().std()), rel=1e-6)
    hidden = (~weight_masks(model)[FC2]).flatten().nonzero().flatten()[:25]
    with torch.no_grad():
        layer.weight_orig.view(-1)[hidden] = 3.0 * threshold
        layer.weight_orig.view(-1)[hidden[:5]] = -3.0 * threshold  # magnitude counts, not sign

    update_masks(model)  # the stored threshold, no regrowth
    mask = weight_masks(model)[FC2]
    assert mask.flatten()[hidden].all()
    assert torch.equal(mask, layer.weight_orig.detach().abs() >= threshold)
    model(torch.randn(2, 1, 28, 28))
    assert (layer.weight.detach().flatten()[hidden].abs() == 3.0 * threshold).all()
    assert weight_thresholds(model)[FC2] == threshold  # fixed from when the layer was pruned


def test_plain_pruning_never_brings_weights_back_but_update_masks_does() -> None:
    model = lenet300_100()
    apply_weight_masks(model, thresholds={FC1: 0.02})
    first = weight_masks(model)[FC1]
    with torch.no_grad():
        model.get_submodule(FC1).weight_orig[~first] = 1.0
    apply_weight_masks(model, thresholds={FC1: 0.01})  # combines: nothing returns, threshold stays the larger
    assert torch.equal(weight_masks(model)[FC1], first)
    assert weight_thresholds(model)[FC1] == pytest.approx(0.02)
    update_masks(model, {FC1: 0.02})
    assert weight_masks(model)[FC1].all()


def test_regrow_fraction_re_enables_that_share_of_removed_weights_seeded() -> None:
    def regrown(seed: int, fraction: float) -> tuple[torch.Tensor, int]:
        model = lenet300_100()
        apply_weight_masks(model, sensitivities={FC1: 1.2})
        before = weight_masks(model)[FC1]
        update_masks(model, regrow_fraction=fraction, generator=torch.Generator().manual_seed(seed))
        after = weight_masks(model)[FC1]
        assert not (before & ~after).any()  # the weights were not moved: every kept one stays
        return after & ~before, int((~before).sum())

    back, removed = regrown(0, 0.05)
    assert int(back.sum()) == round(0.05 * removed) > 1000
    assert torch.equal(regrown(0, 0.05)[0], back)
    assert not torch.equal(regrown(1, 0.05)[0], back)
    # spread over the layer, not one block: both halves of the rows get about half
    rows = back.sum(1)
    assert 0.4 < float(rows[:150].sum()) / float(back.sum()) < 0.6


def test_recovery_passes_the_gradient_to_masked_entries_and_only_then() -> None:
    model = lenet300_100()
    apply_weight_masks(model, ratios={FC1: 0.9, FC2: 0.5})
    masks = weight_masks(model)
    inputs, targets = random_batches(1)[0]

    def gradients() -> tuple[torch.Tensor, torch.Tensor]:
        model.zero_grad()
        outputs = model(inputs)
        nn.functional.cross_entropy(outputs, targets).backward()
        return outputs.detach(), model.get_submodule(FC1).weight_orig.grad.clone()

    plain_out, plain_grad = gradients()
    assert torch.all(plain_grad[~masks[FC1]] == 0)
    assert enable_recovery(model) == [FC1, FC2] and recovery_layers(model) == [FC1, FC2]
    out, grad = gradients()
    assert torch.equal(out, plain_out)  # the forward pass still uses weight_orig * mask
    assert int((grad[~masks[FC1]] != 0).sum()) > 0.5 * int((~masks[FC1]).sum())
    assert torch.allclose(grad[masks[FC1]], plain_grad[masks[FC1]])
    assert disable_recovery(model) == [FC1, FC2] and recovery_layers(model) == []
    assert torch.all(gradients()[1][~masks[FC1]] == 0)


def test_make_masks_permanent_drops_recovery_and_thresholds() -> None:
    model = lenet300_100()
    apply_weight_masks(model, sensitivities={FC1: 1.0, FC3: 0.5})
    enable_recovery(model)
    zeros = {path: ~mask for path, mask in weight_masks(model).items()}
    inputs = torch.randn(3, 1, 28, 28)
    expected = model(inputs).detach()

    assert sorted(make_masks_permanent(model)) == [FC1, FC3]
    assert recovery_layers(model) == [] and weight_thresholds(model) == {}
    assert not any(name.endswith("weight_threshold") for name, _ in model.named_buffers())
    fresh = lenet300_100(seed=1)
    fresh.load_state_dict(model.state_dict(), strict=True)
    assert torch.equal(fresh(inputs), expected)
    for path, zero in zeros.items():
        assert torch.all(fresh.get_submodule(path).weight[zero] == 0)


def test_update_masks_refuses_bad_input_and_changes_nothing() -> None:
    model = lenet300_100()
    apply_weight_masks(model, ratios={FC2: 0.5})
    before = weight_masks(model)
    for kwargs, words in [
        ({"thresholds": {"fc9": 0.1}}, "unknown layer 'fc9'"),
        ({"thresholds": {FC2: -1.0}}, "must be >= 0"),
        ({"thresholds": {FC1: 0.01, FC2: 100.0}}, f"would zero every weight of layer '{FC2}'"),
        ({"regrow_fraction": 1.0}, "'regrow_fraction' parameter of update_masks must be in [0, 1)"),
    ]:
        with pytest.raises(PrunetuneError) as caught:
            update_masks(model, **kwargs)
        assert words in str(caught.value)
    assert weight_masks(model).keys() == before.keys() and torch.equal(weight_masks(model)[FC2], before[FC2])


# -- the section and the stage ----------------------------------------------------------------------


def test_method_writes_the_schedule_and_validation_is_strict() -> None:
    model = lenet300_100()
    method = WeightPruning(iterations=3, recovery=True, seed=4)
    section = method.section({f"weights.{FC1}": 1.0})
    assert section == {"sensitivities": {FC1: 1.0}, "iterations": 3, "recovery": True, "seed": 4}
    assert WeightPruning.schedule(section) == {
        "iterations": 3, "recovery": True, "regrow_fraction": 0.01, "update_every": 10, "seed": 4,
    }
    assert WeightPruning().section({f"weights.{FC1}": 1.0}) == {"sensitivities": {FC1: 1.0}}
    Plan({"weights": section}).validate(model, EXAMPLE)
    base = {"sensitivities": {FC1: 1.0}}
    for extra, words in [
        ({"iterations": 0}, "The 'iterations' of the 'weights' section must be an integer >= 1. Got 0 instead."),
        ({"iterations": 2.0}, "'iterations' of the 'weights' section must be an integer"),
        ({"iterations": True}, "'iterations' of the 'weights' section must be an integer"),
        ({"recovery": "yes"}, "The 'recovery' of the 'weights' section must be true or false"),
        ({"recovery": True, "regrow_fraction": 0.6}, "'regrow_fraction' of the 'weights' section must be in [0, 0.5]"),
        ({"regrow_fraction": 0.1}, "applies only with recovery"),
        ({"update_every": 5}, "applies only with recovery"),
        ({"recovery": True, "update_every": 0}, "'update_every' of the 'weights' section must be an integer >= 1"),
        ({"seed": -1}, "'seed' of the 'weights' section must be an integer >= 0"),
        ({"iteration": 2}, "Unknown key 'iteration'"),
    ]:
        with pytest.raises(PrunetuneError) as caught:
            Plan({"weights": {**base, **extra}}).validate(model, EXAMPLE)
        assert words in str(caught.value)
    with pytest.raises(PrunetuneError, match="The 'iterations' parameter of WeightPruning must be an integer >= 1"):
        WeightPruning(iterations=0).section({})


def test_sensitivity_bounds_stop_short_of_emptying_a_layer() -> None:
    model = build_model("lenet5", num_classes=10, in_channels=1, input_size=28)  # uniform init: max |w| ~ 1.7 std
    dims = WeightPruning(max_sensitivity=5.0).dimensions(model, EXAMPLE)
    assert all(1.0 < dim.high < 1.8 for dim in dims)
    top = {dim.unit: dim.high for dim in dims}
    Plan({"weights": {"sensitivities": top}}).validate(model, EXAMPLE)  # keeps at least one weight per layer
    pruned = apply_plan(model, {"weights": {"sensitivities": top}}, example_inputs=EXAMPLE)
    assert all(1 <= int(mask.sum()) <= 3 for mask in weight_masks(pruned).values())
    for dim in dims:
        with pytest.raises(PrunetuneError, match=f"would zero every weight of layer '{dim.unit}'"):
            Plan({"weights": {"sensitivities": {dim.unit: dim.high * 1.001}}}).validate(model, EXAMPLE)
    assert [dim.high for dim in WeightPruning(max_sensitivity=1.0).dimensions(model, EXAMPLE)] == [1.0] * 5


def test_plain_apply_prunes_at_the_final_values_whatever_the_schedule() -> None:
    model = lenet300_100()
    sensitivities = {FC1: 1.3, FC2: 0.8}
    plain = apply_plan(model, {"weights": {"sensitivities": sensitivities}}, example_inputs=EXAMPLE)
    staged = apply_plan(
        model, {"weights": {"sensitivities": sensitivities, "iterations": 4, "recovery": True}}, example_inputs=EXAMPLE
    )
    assert weight_masks(plain).keys() == weight_masks(staged).keys() == set(sensitivities)
    assert all(torch.equal(weight_masks(plain)[k], weight_masks(staged)[k]) for k in sensitivities)


@pytest.mark.parametrize("recovery", [False, True])
def test_iterations_prune_progressively_towards_the_final_threshold(recovery: bool) -> None:
    model = lenet300_100()
    sensitivities = {FC1: 1.5, FC2: 1.0}
    final = sensitivity_thresholds(model, sensitivities)
    seen: list[tuple[dict[str, float], dict[str, float]]] = []

    def after_each_pruning_step(pruned: nn.Module) -> None:  # the stage recalibrates BN after each step
        sparsity = {path: float((~mask).float().mean()) for path, mask in weight_masks(pruned).items()}
        seen.append((sparsity, weight_thresholds(pruned)))

    section = {"sensitivities": sensitivities, "iterations": 3, "recovery": recovery, "seed": 0}
    with torch_threads(1):
        pruned, applied = weights_stage(model, section, context_for(random_batches(6), on_recalibrate=after_each_pruning_step))
    assert applied == section
    assert len(seen) == 3
    for path in sensitivities:
        assert seen[0][0][path] < seen[1][0][path] < seen[2][0][path]
        assert [thresholds[path] for _, thresholds in seen] == pytest.approx([final[path] * i / 3 for i in (1, 2, 3)])
    assert recovery_layers(pruned) == []  # the trial's main fine-tune keeps the masks fixed
    final_masks = weight_masks(pruned)
    if recovery:  # the final pattern is exactly the weights at or above the threshold
        for path, mask in final_masks.items():
            assert torch.equal(mask, pruned.get_submodule(path).weight_orig.detach().abs() >= final[path])
    # the main fine-tune: pruned weights stay zero after optimizer steps, the masks do not move
    with torch_threads(1):
        train(pruned, random_batches(4, seed=1), config=TrainConfig(epochs=1, lr=0.05, seed=0))
    for path, mask in weight_masks(pruned).items():
        assert torch.equal(mask, final_masks[path])
        assert torch.all(pruned.get_submodule(path).weight.detach()[~mask] == 0)


def test_recovery_during_the_stage_brings_back_removed_weights() -> None:
    """Without recovery the last pruning step's masks are final; with it, weights that step removed come back."""
    section = {"sensitivities": {FC1: 1.2, FC2: 1.2, FC3: 1.0}, "iterations": 2}
    ends = {}
    for recovery in (False, True):
        first: list[dict[str, torch.Tensor]] = []
        context = context_for(random_batches(8), epochs=2, on_recalibrate=lambda m, seen=first: seen.append(weight_masks(m)))
        with torch_threads(1):
            pruned, _ = weights_stage(lenet300_100(), {**section, "recovery": recovery, "update_every": 2} if recovery else section, context)
        final = weight_masks(pruned)
        ends[recovery] = sum(int((final[path] & ~first[-1][path]).sum()) for path in final)
    assert ends[False] == 0
    assert ends[True] > 0


def test_a_stage_without_finetuning_or_schedule_is_plain_surgery() -> None:
    batches = random_batches(3)
    assert finetune_steps(TrainConfig(epochs=2), batches) == 6
    assert finetune_steps(TrainConfig(epochs=2, max_steps=4), batches) == 4
    assert finetune_steps(TrainConfig(epochs=0, max_steps=4), batches) == 0
    model = lenet300_100()
    expected = weight_masks(apply_plan(model, {"weights": {"ratios": {FC1: 0.8}}}, example_inputs=EXAMPLE))
    calls = []
    for section, epochs in [({"ratios": {FC1: 0.8}}, 1), ({"ratios": {FC1: 0.8}, "iterations": 3, "recovery": True}, 0)]:
        pruned, _ = weights_stage(copy.deepcopy(model), section, context_for(batches, epochs=epochs, on_recalibrate=calls.append))
        assert torch.equal(weight_masks(pruned)[FC1], expected[FC1])
    assert calls == []  # no steps: nothing to recalibrate between


def test_ratio_iterations_reach_the_exact_final_count_without_recovery() -> None:
    model = lenet300_100()
    counts = []
    with torch_threads(1):
        weights_stage(
            model,
            {"ratios": {FC1: 0.9}, "iterations": 3},
            context_for(random_batches(3), on_recalibrate=lambda m: counts.append(int((~weight_masks(m)[FC1]).sum()))),
        )
    numel = model.get_submodule(FC1).weight.numel()
    assert counts == [round(0.3 * numel), round(0.6 * numel), round(0.9 * numel)]


# -- a differential-evolution search on MNIST ------------------------------------------------------


def test_de_over_sensitivities_compresses_lenet300_on_mnist(tmp_path: Path, datasets_root: Path) -> None:
    """A few scipy-de trials with iterative pruning and recovery: more than 5x fewer nonzero weights, accuracy kept."""
    from prunetune.app.experiment import experiment_from_dict
    from prunetune.results.export import export_trial
    from prunetune.search.ledger import ATTR_METRICS, ATTR_PLAN
    from prunetune.app.runner import run_experiment
    from prunetune.search.weights import load_kept_weights, weights_path
    from prunetune.zoo.checkpoint import load_checkpoint

    experiment = experiment_from_dict(
        {
            "model": {"name": "lenet300_100", "train": {"epochs": 3, "lr": 0.05}},
            "data": {"spec": f"mnist:{datasets_root / 'mnist'}", "limit": 2000},
            "methods": {"weights": {"max_sensitivity": 2.5, "iterations": 2, "recovery": True}},
            "objective": {
                "finetune": {"epochs": 1, "lr": 0.01},
                "constraints": ["accuracy_drop <= 15"],
                "keep_weights": "all",
            },
            "search": {
                "sampler": "scipy-de",
                "sampler_options": {"popsize": 2},  # 6 candidates per generation (2 x 3 layers)
                "trials": 6,
                "early_stopping": {"enabled": False},
            },
            "execution": {"executor": "local", "threads_per_trial": 1},
        }
    )
    with torch_threads(1):  # the base model's training too: small models on shared cores run faster on one
        study = run_experiment(experiment, tmp_path / "run", echo=lambda line: None)
    done = [trial for trial in study.trials if trial.state.name == "COMPLETE"]
    assert len(done) == 6
    metrics = {trial.number: trial.user_attrs[ATTR_METRICS] for trial in done}
    feasible = [n for n, m in metrics.items() if m["accuracy_drop"] <= 15]
    best = max(feasible, key=lambda n: metrics[n]["compression"])
    assert metrics[best]["compression"] > 5.0
    assert metrics[best]["test_accuracy"] > 0.6  # chance is 0.1
    plan = Plan.from_dict(done[0].user_attrs[ATTR_PLAN]).sections["weights"]
    assert plan["iterations"] == 2 and plan["recovery"] is True
    # the kept and the exported model hold exactly the nonzero weights the ledger counted
    state = load_kept_weights(weights_path(tmp_path / "run", best))
    assert sum(int(torch.count_nonzero(value)) for value in state.values()) == metrics[best]["nonzero_params"]
    assert math.isclose(metrics[best]["compression"], 266_610 / metrics[best]["nonzero_params"])
    with torch_threads(1):
        exported = export_trial(tmp_path / "run", best, tmp_path / "best.pt")
    model = load_checkpoint(tmp_path / "best.pt").build()
    assert measure(model, EXAMPLE).nonzero_params == exported.metrics["nonzero_params"] == metrics[best]["nonzero_params"]
    assert exported.metrics["accuracy"] == pytest.approx(metrics[best]["accuracy"])

"""Magnitude weight pruning: exact counts, the right weights, masks that hold, clean errors."""

from __future__ import annotations

import copy

import pytest
import torch
from torch import nn

from prunetune.errors import PrunetuneError
from prunetune.pruners.unstructured import (
    apply_weight_masks,
    make_masks_permanent,
    masked_tensor_names,
    preview_weight_masks,
    prunable_weight_layers,
    weight_masks,
)
from prunetune.zoo.models import build_model

FC1, FC2, FC3 = "classifier.0", "classifier.2", "classifier.4"


def lenet300_100(seed: int = 0) -> nn.Module:
    torch.manual_seed(seed)
    return build_model("lenet300_100", num_classes=10, in_channels=1, input_size=28)


class SmallConvNet(nn.Module):
    """Conv, batch norm, a nested block and a linear head: registration order differs from depth."""

    def __init__(self) -> None:
        super().__init__()
        self.head = nn.Linear(8 * 4 * 4, 3)
        self.features = nn.Sequential(
            nn.Conv2d(1, 4, 3, padding=1),
            nn.BatchNorm2d(4),
            nn.ReLU(),
            nn.Sequential(nn.Conv2d(4, 8, 3, padding=1), nn.ReLU()),
            nn.AdaptiveAvgPool2d(4),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.features(x).flatten(1))


def effective(model: nn.Module, path: str) -> torch.Tensor:
    module = model.get_submodule(path)
    if "weight" in masked_tensor_names(module):
        return (module.weight_orig * module.weight_mask).detach()
    return module.weight.detach()


def snapshot(model: nn.Module) -> dict[str, torch.Tensor]:
    return {key: value.detach().clone() for key, value in model.state_dict().items()}


def test_prunable_layers_are_conv_and_linear_in_registration_order() -> None:
    assert prunable_weight_layers(SmallConvNet()) == ["head", "features.0", "features.3.0"]
    assert prunable_weight_layers(lenet300_100()) == [FC1, FC2, FC3]


@pytest.mark.parametrize("ratio", [0.0, 0.1, 0.37, 0.5, 0.999])
def test_ratio_zeroes_exactly_the_smallest_magnitudes(ratio: float) -> None:
    model = lenet300_100()
    original = model.get_submodule(FC2).weight.detach().clone()
    achieved = apply_weight_masks(model, ratios={FC2: ratio})

    expected = round(ratio * original.numel())
    mask = weight_masks(model)[FC2]
    assert int((~mask).sum()) == expected
    assert achieved == {FC2: pytest.approx(expected / original.numel())}
    assert int((effective(model, FC2) == 0).sum()) == expected
    if 0 < expected < original.numel():
        assert original[~mask].abs().max() <= original[mask].abs().min()


def test_ratio_on_a_conv_layer_and_ties_break_by_index() -> None:
    model = SmallConvNet()
    conv = model.get_submodule("features.3.0")
    with torch.no_grad():
        conv.weight.fill_(0.5)
        conv.weight.view(-1)[::2] *= -1  # equal magnitudes, mixed signs
    twin = copy.deepcopy(model)
    apply_weight_masks(model, ratios={"features.3.0": 0.25})
    apply_weight_masks(twin, ratios={"features.3.0": 0.25})

    mask = weight_masks(model)["features.3.0"]
    count = round(0.25 * conv.weight.numel())
    assert mask.shape == conv.weight.shape
    assert not mask.view(-1)[:count].any() and mask.view(-1)[count:].all()
    assert torch.equal(mask, weight_masks(twin)["features.3.0"])


@pytest.mark.parametrize("sensitivity", [0.0, 0.25, 1.0, 1.6])  # uniform init: max |w| = 1.73 std
def test_sensitivity_zeroes_exactly_the_weights_under_s_std(sensitivity: float) -> None:
    model = lenet300_100()
    original = model.get_submodule(FC1).weight.detach().clone()
    apply_weight_masks(model, sensitivities={FC1: sensitivity})

    below = original.abs() < sensitivity * original.std()
    mask = weight_masks(model)[FC1]
    assert torch.equal(~mask, below)
    assert int((effective(model, FC1) == 0).sum()) == int(below.sum())


def test_iterative_application_only_removes_more() -> None:
    model = lenet300_100()
    numel = model.get_submodule(FC1).weight.numel()
    apply_weight_masks(model, ratios={FC1: 0.5})
    first = weight_masks(model)[FC1]

    apply_weight_masks(model, ratios={FC1: 0.3})  # below the current sparsity: nothing changes
    assert torch.equal(weight_masks(model)[FC1], first)

    with torch.no_grad():  # a pruned weight grows large in weight_orig: it must not come back
        model.get_submodule(FC1).weight_orig[~first] = 10.0
    achieved = apply_weight_masks(model, ratios={FC1: 0.7})
    second = weight_masks(model)[FC1]
    assert int((~second).sum()) == round(0.7 * numel)
    assert achieved[FC1] == pytest.approx(round(0.7 * numel) / numel)
    assert not (second & ~first).any()


def test_second_sensitivity_uses_the_std_of_the_surviving_weights() -> None:
    model = lenet300_100()
    weight = model.get_submodule(FC2).weight.detach().clone()
    apply_weight_masks(model, sensitivities={FC2: 0.5})
    first = weight_masks(model)[FC2]
    apply_weight_masks(model, sensitivities={FC2: 0.8})

    survivors_std = weight[first].std()
    expected_kept = first & (weight.abs() >= 0.8 * survivors_std)
    assert torch.equal(weight_masks(model)[FC2], expected_kept)
    assert int((~expected_kept).sum()) > int((~first).sum())


def test_masks_hold_through_sgd_with_momentum_and_weight_decay() -> None:
    model = lenet300_100()
    apply_weight_masks(model, ratios={FC1: 0.8, FC3: 0.5})
    masks = weight_masks(model)
    before = {path: effective(model, path).clone() for path in masks}
    bias_before = model.get_submodule(FC1).bias.detach().clone()
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9, weight_decay=0.01)
    inputs, targets = torch.randn(16, 1, 28, 28), torch.randint(0, 10, (16,))
    for _ in range(5):
        optimizer.zero_grad()
        nn.functional.cross_entropy(model(inputs), targets).backward()
        optimizer.step()
    model(inputs)  # the forward pre-hook recomputes the weights the layer uses

    for path, mask in masks.items():
        used = model.get_submodule(path).weight.detach()
        assert torch.all(used[~mask] == 0)
        assert not torch.equal(used[mask], before[path][mask])
    assert "bias" not in masked_tensor_names(model.get_submodule(FC1))
    assert not torch.equal(model.get_submodule(FC1).bias.detach(), bias_before)


def test_make_masks_permanent_keeps_zeros_and_plain_keys() -> None:
    model = lenet300_100()
    apply_weight_masks(model, sensitivities={FC1: 1.0, FC2: 0.5})
    zeros = {path: ~mask for path, mask in weight_masks(model).items()}

    assert sorted(make_masks_permanent(model)) == [FC1, FC2]
    assert weight_masks(model) == {}
    fresh = lenet300_100(seed=1)
    assert sorted(model.state_dict()) == sorted(fresh.state_dict())  # order: bias before weight
    fresh.load_state_dict(model.state_dict(), strict=True)
    for path, zero in zeros.items():
        layer = fresh.get_submodule(path)
        assert isinstance(layer.weight, nn.Parameter)
        assert torch.all(layer.weight[zero] == 0) and torch.all(layer.weight[~zero] != 0)
    inputs = torch.randn(4, 1, 28, 28)
    assert torch.equal(fresh(inputs), model(inputs))


def test_preview_reports_what_apply_does_without_touching_the_model() -> None:
    model = lenet300_100()
    apply_weight_masks(model, ratios={FC1: 0.3})
    before, masks_before = snapshot(model), weight_masks(model)
    plan = {FC1: 0.8, FC2: 1.2}

    preview = preview_weight_masks(model, sensitivities=plan)
    after = snapshot(model)
    assert all(torch.equal(after[key], before[key]) for key in before)
    assert weight_masks(model).keys() == masks_before.keys()
    assert preview == apply_weight_masks(model, sensitivities=plan)
    assert preview[FC1] > 0.3 and weight_masks(model).keys() == {FC1, FC2}


def test_weight_masks_are_copies_and_masked_model_deep_copies() -> None:
    model = lenet300_100()
    apply_weight_masks(model, ratios={FC1: 0.5})
    weight_masks(model)[FC1].fill_(True)
    assert int((~weight_masks(model)[FC1]).sum()) == round(0.5 * 784 * 300)

    twin = copy.deepcopy(model)
    inputs = torch.randn(2, 1, 28, 28)
    assert torch.equal(twin(inputs), model(inputs))


@pytest.mark.parametrize(
    ("kwargs", "words"),
    [
        ({"ratios": {"fc9": 0.5}}, ["unknown layer 'fc9'", FC1, FC2, FC3]),
        ({"ratios": {FC1: 0.5}, "sensitivities": {FC2: 1.0}}, ["exactly one", "both"]),
        ({}, ["exactly one", "neither"]),
        ({"ratios": {FC1: 1.0}}, ["ratio", FC1, "[0, 1)"]),
        ({"ratios": {FC1: -0.1}}, ["ratio", FC1, "[0, 1)"]),
        ({"ratios": {FC1: float("nan")}}, ["ratio", FC1, "number"]),
        ({"ratios": {FC1: "half"}}, ["ratio", FC1, "number"]),
        ({"sensitivities": {FC1: -1.0}}, ["sensitivity", FC1, ">= 0"]),
        ({"sensitivities": {FC1: 50}}, [f"sensitivity 50 would zero every weight of layer '{FC1}'"]),
        ({"ratios": [0.5]}, ["'ratios' must map layer paths"]),
        # the first entry is fine: nothing may be applied when a later one is bad
        ({"ratios": {FC1: 0.5, FC2: 2.0}}, ["ratio", FC2]),
        ({"sensitivities": {FC2: 0.5, FC3: 50.0}}, ["would zero every weight", FC3]),
    ],
)
def test_bad_input_raises_and_leaves_the_model_untouched(kwargs: dict, words: list[str]) -> None:
    model = lenet300_100()
    apply_weight_masks(model, ratios={FC3: 0.2})  # an existing mask must survive too
    before, masks_before = snapshot(model), weight_masks(model)

    for function in (preview_weight_masks, apply_weight_masks):
        with pytest.raises(PrunetuneError) as caught:
            function(model, **kwargs)
        for word in words:
            assert word in str(caught.value)
    after = snapshot(model)
    assert list(after) == list(before)
    assert all(torch.equal(after[key], before[key]) for key in before)
    assert weight_masks(model).keys() == masks_before.keys()


def test_a_ratio_that_rounds_to_the_whole_layer_is_refused() -> None:
    model = nn.Sequential(nn.Linear(1, 1), nn.Linear(1, 2))
    with pytest.raises(PrunetuneError, match="ratio 0.6 would zero every weight of layer '0'"):
        apply_weight_masks(model, ratios={"0": 0.6})
    assert weight_masks(model) == {}

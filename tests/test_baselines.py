"""The baselines as ratios: uniform, Torch-Pruning's global ranking, global magnitude and LAMP."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from prunetune.errors import PrunetuneError
from prunetune.pruners.baselines import (
    global_filter_ratios,
    global_magnitude_ratios,
    lamp_ratios,
    lamp_scores,
    uniform_ratios,
)


class TwoConvs(nn.Module):
    """conv1 (8 channels, near alike) -> conv2 (8 channels: four weak, four strong) -> classifier."""

    def __init__(self) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(1, 8, 1, bias=False)
        self.conv2 = nn.Conv2d(8, 8, 1, bias=False)
        self.fc = nn.Linear(8, 2, bias=False)
        with torch.no_grad():
            self.conv1.weight.copy_(torch.tensor([1.2, 0.8, 1.15, 0.85, 1.1, 0.9, 1.05, 0.95]).view(8, 1, 1, 1))
            strength = torch.tensor([0.1, 1.9, 0.1, 1.9, 0.1, 1.9, 0.1, 1.9])
            self.conv2.weight.copy_(strength.view(8, 1, 1, 1).expand(8, 8, 1, 1))
            self.fc.weight.fill_(1.0)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = torch.relu(self.conv2(torch.relu(self.conv1(x))))
        return self.fc(x.mean(dim=(2, 3)))


def test_uniform_gives_one_ratio_capped_by_each_unit_bound() -> None:
    assert uniform_ratios({"a": 0.9, "b": 0.5, "c": 0.9}, 0.7) == {"a": 0.7, "b": 0.5, "c": 0.7}
    with pytest.raises(PrunetuneError, match=r"ratio of a baseline must be in \[0, 1\)"):
        uniform_ratios({"a": 0.9}, 1.0)


def test_global_ranking_takes_the_weak_channels_of_one_unit_before_touching_the_other() -> None:
    model, example = TwoConvs(), torch.zeros(1, 1, 4, 4)
    before = {name: tensor.clone() for name, tensor in model.state_dict().items()}
    # Normalised per group (Torch-Pruning's recipe), conv1's channels score near 1 and conv2's four
    # weak ones well below: a quarter of the 16 channels is exactly conv2's weak half.
    assert global_filter_ratios(model, example, 0.25) == {"conv1": 0.0, "conv2": 0.5}
    # Half of all channels: conv2's weak four, then conv1's four below its mean (conv2's strong ones score far higher).
    assert global_filter_ratios(model, example, 0.5) == {"conv1": 0.5, "conv2": 0.5}
    assert global_filter_ratios(model, example, 0.0) == {"conv1": 0.0, "conv2": 0.0}
    assert all(torch.equal(before[name], tensor) for name, tensor in model.state_dict().items())  # a copy was pruned


def test_global_ranking_removes_the_share_of_all_channels_it_is_asked_to_on_lenet5() -> None:
    from prunetune.pruners.units import discover_units
    from prunetune.zoo.models import build_model

    torch.manual_seed(0)
    model, example = build_model("lenet5", num_classes=10, in_channels=1, input_size=28), torch.zeros(1, 1, 28, 28)
    channels = {unit.name: unit.channels for unit in discover_units(model, example)}
    ratios = global_filter_ratios(model, example, 0.4, max_ratio=0.9)
    removed = sum(round(ratios[name] * count) for name, count in channels.items())
    assert set(ratios) == set(channels)
    assert abs(removed - 0.4 * sum(channels.values())) <= len(channels)  # Torch-Pruning rounds per unit
    assert len({round(ratio, 3) for ratio in ratios.values()}) > 1  # not one ratio everywhere
    assert all(0.0 <= ratio <= 0.9 for ratio in ratios.values())


def test_lamp_scores_match_a_hand_computation() -> None:
    weight = torch.tensor([3.0, -1.0, 2.0, 0.5])
    # squares 9, 1, 4, 0.25; ascending 0.25, 1, 4, 9 with tails 14.25, 14, 13, 9
    expected = torch.tensor([9 / 9, 1 / 14, 4 / 13, 0.25 / 14.25], dtype=torch.float64)
    assert torch.allclose(lamp_scores(weight), expected)
    assert lamp_scores(torch.ones(2, 3)).shape == (2, 3)


def _two_layers() -> nn.Sequential:
    model = nn.Sequential(nn.Linear(2, 2, bias=False), nn.Linear(1, 3, bias=False))
    with torch.no_grad():
        model[0].weight.copy_(torch.tensor([[3.0, -1.0], [2.0, 0.5]]))
        model[1].weight.copy_(torch.tensor([[0.3], [0.4], [5.0]]))
    return model


def test_global_magnitude_and_lamp_pick_as_computed_by_hand() -> None:
    model = _two_layers()
    # Three of seven weights go. By magnitude: 0.3, 0.4 (layer 1) and 0.5 (layer 0).
    assert global_magnitude_ratios(model, 3 / 7) == {"0": 1 / 4, "1": 2 / 3}
    # LAMP: layer 0 scores 1, 1/14, 4/13, 0.25/14.25 (0.0175); layer 1 squares 0.09, 0.16, 25 with
    # tails 25.25, 25.16, 25: 0.0036, 0.0064, 1. Lowest three: both small ones of layer 1, then 0.0175.
    assert lamp_ratios(model, 3 / 7) == {"0": 1 / 4, "1": 2 / 3}


def test_lamp_spares_a_layer_of_small_but_equal_weights_that_magnitude_empties() -> None:
    model = nn.Sequential(nn.Linear(1, 4, bias=False), nn.Linear(1, 10, bias=False))
    with torch.no_grad():
        model[0].weight.fill_(0.01)
        model[1].weight.copy_(torch.tensor([[0.5], [0.6], [0.7]] + [[3.0]] * 7))
    # Magnitude: the three lowest of 14 are layer 0's 0.01s.
    assert global_magnitude_ratios(model, 3 / 14) == {"0": 3 / 4, "1": 0.0}
    # LAMP: layer 0 scores 1/4, 1/3, 1/2, 1 whatever its scale; layer 1's small ones score
    # 0.25/64.1, 0.36/63.85 and 0.49/63.49 (all below 0.01), so they go instead.
    assert lamp_ratios(model, 3 / 14) == {"0": 0.0, "1": 3 / 10}


def test_global_ratios_never_empty_a_layer_and_check_their_sparsity() -> None:
    model = nn.Sequential(nn.Linear(1, 2, bias=False), nn.Linear(2, 20, bias=False))
    with torch.no_grad():
        model[0].weight.fill_(0.001)
        model[1].weight.fill_(1.0)
    ratios = global_magnitude_ratios(model, 0.1)  # 4 of 42: both of layer 0 and two of layer 1
    assert ratios["0"] == 1 / 2 and ratios["1"] == 2 / 40
    with pytest.raises(PrunetuneError, match="sparsity of a baseline"):
        lamp_ratios(model, 1.5)
    with pytest.raises(PrunetuneError, match="Unknown layer 'nope'"):
        lamp_ratios(model, 0.5, ["nope"])

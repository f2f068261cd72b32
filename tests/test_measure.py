"""Measurements: the counts the compression figures rest on, and that measuring changes nothing."""

from __future__ import annotations

import pytest
import torch
import torch_pruning as tp
from torch import nn

from prunetune.errors import PrunetuneError
from prunetune.pruners.measure import Latency, Measurement, compression, measure, measure_latency
from prunetune.pruners.unstructured import apply_weight_masks, weight_masks
from prunetune.zoo.models import build_model

FC1, FC2, FC3 = "classifier.0", "classifier.2", "classifier.4"
LENET_PARAMS = 784 * 300 + 300 + 300 * 100 + 100 + 100 * 10 + 10
LENET_MACS = 784 * 300 + 300 * 100 + 100 * 10


def lenet300_100() -> nn.Module:
    torch.manual_seed(0)
    return build_model("lenet300_100", num_classes=10, in_channels=1, input_size=28)


def digits(batch: int = 2) -> torch.Tensor:
    return torch.randn(batch, 1, 28, 28)


def test_lenet300_100_counts() -> None:
    result = measure(lenet300_100(), digits())
    assert LENET_PARAMS == 266_610 and LENET_MACS == 266_200
    assert result == Measurement(
        params=266_610,
        nonzero_params=266_610,
        macs=266_200,
        size_bytes=266_610 * 4,
        bits=266_610 * 32,
    )


def test_macs_are_torch_pruning_ops_without_bias_adds_and_activations() -> None:
    model = lenet300_100()
    ops, params = tp.utils.count_ops_and_params(model, digits(1))
    bias_adds, relu_elements = 300 + 100 + 10, 300 + 100
    assert measure(model, digits(1)).macs == ops - bias_adds - relu_elements
    assert measure(model, digits(1)).params == params


def test_macs_of_conv_layers_follow_the_real_shapes() -> None:
    model = nn.Sequential(
        nn.Conv2d(3, 8, 3, padding=1),  # 8x8 out: 64 * 8 * 3 * 9
        nn.Conv2d(8, 8, 3, padding=1, groups=4),  # 64 * 8 * 2 * 9
        nn.ConvTranspose2d(8, 4, 2, stride=2),  # 64 inputs * 8 channels * 4 * 4
        nn.Flatten(),
        nn.Linear(4 * 16 * 16, 5),
    )
    expected = 64 * 8 * 3 * 9 + 64 * 8 * 2 * 9 + 64 * 8 * 4 * 4 + 4 * 16 * 16 * 5
    assert measure(model, torch.randn(1, 3, 8, 8)).macs == expected
    assert measure(model, torch.randn(3, 3, 8, 8)).macs == expected
    slim = nn.Sequential(nn.Conv2d(3, 4, 3, padding=1), nn.Flatten(), nn.Linear(4 * 64, 5))
    assert measure(slim, torch.randn(1, 3, 8, 8)).macs == 64 * 4 * 3 * 9 + 4 * 64 * 5


def test_masks_lower_nonzero_counts_exactly_but_not_params_or_macs() -> None:
    model = lenet300_100()
    base = measure(model, digits())
    apply_weight_masks(model, ratios={FC1: 0.9, FC3: 0.5})
    masked = round(0.9 * 784 * 300) + round(0.5 * 100 * 10)
    pruned = measure(model, digits())

    assert pruned.nonzero_params == base.nonzero_params - masked
    assert pruned.bits == 32 * pruned.nonzero_params
    unchanged = (pruned.params, pruned.macs, pruned.size_bytes)
    assert unchanged == (base.params, base.macs, base.size_bytes)


def test_bits_honour_a_layers_declared_width() -> None:
    model = lenet300_100()
    model.get_submodule(FC1).prunetune_bits = 8
    model.get_submodule(FC3).prunetune_bits = 4
    fc1, fc3 = 784 * 300 + 300, 100 * 10 + 10
    rest = LENET_PARAMS - fc1 - fc3
    assert measure(model, digits()).bits == 8 * fc1 + 4 * fc3 + 32 * rest

    apply_weight_masks(model, ratios={FC1: 0.5})
    assert measure(model, digits()).bits == 8 * (fc1 - 784 * 150) + 4 * fc3 + 32 * rest


def test_a_bad_declared_width_is_refused() -> None:
    model = lenet300_100()
    model.get_submodule(FC2).prunetune_bits = 0
    with pytest.raises(PrunetuneError, match=f"layer '{FC2}' declares prunetune_bits=0"):
        measure(model, digits())


def test_measure_leaves_modes_masks_and_grads_as_they_were() -> None:
    model = lenet300_100()
    apply_weight_masks(model, ratios={FC1: 0.5})
    model.train()
    model.get_submodule(FC2).eval()  # a mixed state must come back as it was
    model(digits()).sum().backward()  # mid-training: the masked weight is a non-leaf tensor
    modes = [m.training for m in model.modules()]
    grads = {name: p.grad.clone() for name, p in model.named_parameters()}
    state = {key: value.clone() for key, value in model.state_dict().items()}
    masks = weight_masks(model)
    used_weight = model.get_submodule(FC1).weight

    measure(model, digits())
    measure_latency(model, digits(), repeats=2, warmup=0)

    assert [m.training for m in model.modules()] == modes
    assert all(torch.equal(p.grad, grads[name]) for name, p in model.named_parameters())
    assert all(torch.equal(value, state[key]) for key, value in model.state_dict().items())
    assert weight_masks(model).keys() == masks.keys()
    assert all(torch.equal(weight_masks(model)[key], masks[key]) for key in masks)
    assert model.get_submodule(FC1).weight is used_weight


def test_compression_is_base_over_pruned() -> None:
    base = Measurement(params=1000, nonzero_params=1000, macs=500, size_bytes=4000, bits=32_000)
    pruned = Measurement(params=1000, nonzero_params=40, macs=250, size_bytes=4000, bits=320)
    assert compression(base, pruned) == 25.0
    assert compression(base, pruned, by="nonzero_params") == 25.0
    assert compression(base, pruned, by="params") == 1.0
    assert compression(base, pruned, by="bits") == 100.0
    assert compression(base, pruned, by="macs") == 2.0


def test_compression_of_a_masked_lenet() -> None:
    model = lenet300_100()
    base = measure(model, digits())
    apply_weight_masks(model, ratios={FC1: 0.96, FC2: 0.9, FC3: 0.5})
    nonzero = LENET_PARAMS - round(0.96 * 784 * 300) - round(0.9 * 300 * 100) - round(0.5 * 1000)
    assert compression(base, measure(model, digits())) == pytest.approx(LENET_PARAMS / nonzero)


def test_compression_refuses_unknown_words_and_empty_models() -> None:
    base = Measurement(params=10, nonzero_params=10, macs=0, size_bytes=40, bits=320)
    with pytest.raises(PrunetuneError, match="'by' parameter of compression must be one of"):
        compression(base, base, by="flops")  # type: ignore[arg-type]
    with pytest.raises(PrunetuneError, match="pruned model has 0 macs"):
        compression(base, base, by="macs")


def test_latency_restores_threads_and_orders_percentiles() -> None:
    model = lenet300_100()
    previous = torch.get_num_threads()
    wanted = 1 if previous != 1 else 2
    result = measure_latency(model, digits(batch=8), repeats=7, warmup=1, threads=wanted)

    assert torch.get_num_threads() == previous
    assert isinstance(result, Latency)
    assert (result.batch_size, result.threads, result.repeats) == (8, wanted, 7)
    assert 0 < result.median_ms <= result.p90_ms
    assert measure_latency(model, digits(), repeats=1, warmup=0).threads == previous


@pytest.mark.parametrize(
    ("kwargs", "words"),
    [
        ({"repeats": 0}, "'repeats' parameter of measure_latency"),
        ({"warmup": -1}, "'warmup' parameter of measure_latency"),
        ({"threads": 0}, "'threads' parameter of measure_latency"),
    ],
)
def test_latency_refuses_bad_settings(kwargs: dict, words: str) -> None:
    with pytest.raises(PrunetuneError, match=words):
        measure_latency(lenet300_100(), digits(), **kwargs)


def test_example_inputs_need_a_batch_dimension() -> None:
    with pytest.raises(PrunetuneError, match="leading batch dimension"):
        measure(nn.Linear(3, 2), torch.tensor(1.0))
    with pytest.raises(PrunetuneError, match="must be a tensor"):
        measure(nn.Linear(3, 2), "not a tensor")

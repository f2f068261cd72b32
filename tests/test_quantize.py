"""Quantization of fully connected layers: codebooks, honest bit counts, fine-tuning, zeros, reload, validation."""

from __future__ import annotations

import io
from pathlib import Path

import pytest
import torch
from torch import nn

from prunetune.errors import PrunetuneError
from prunetune.objectives.prune_finetune import prune_and_finetune
from prunetune.objectives.training import TrainConfig, train
from prunetune.pruners import Plan, apply_plan, make_masks_permanent, measure
from prunetune.pruners.quantize import (
    FLOAT_BITS,
    KMeansWeight,
    Quantization,
    UniformWeight,
    quantize_layer,
    quantized_layers,
)
from prunetune.pruners.unstructured import apply_weight_masks
from prunetune.results.front_table import front_table, informative
from prunetune.search.space import SearchSpace
from prunetune.zoo import load_data
from prunetune.zoo.datasets import DataSplits
from prunetune.zoo.checkpoint import load_checkpoint, save_checkpoint
from prunetune.zoo.models import build_model

EXAMPLE = torch.zeros(1, 1, 8, 8)
FC = ("classifier.0", "classifier.2", "classifier.4")  # LeNet-5 for 8x8 digits: 64-120-84-10


@pytest.fixture(scope="module")
def digits() -> DataSplits:
    return load_data("digits")


def lenet5(seed: int = 0) -> nn.Module:
    torch.manual_seed(seed)
    return build_model("lenet5", num_classes=10, in_channels=1, input_size=8)


def codebook_of(layer: nn.Module) -> torch.Tensor:
    quantizer = layer.parametrizations.weight[0]
    return quantizer.codebook(layer.parametrizations.weight.original).detach()


def nonzero_values(layer: nn.Module) -> set[float]:
    weight = layer.weight.detach()
    return set(weight[weight != 0].tolist())


@pytest.mark.parametrize("bits", [1, 2, 3, 5, 8])
def test_kmeans_leaves_only_the_codebooks_values(bits: int) -> None:
    model = apply_plan(lenet5(), {"bits": {"scheme": "kmeans", "bits": {name: bits for name in FC}}}, example_inputs=EXAMPLE)
    assert set(quantized_layers(model)) == set(FC)
    for name in FC:
        layer = model.get_submodule(name)
        codebook = codebook_of(layer)
        assert codebook.numel() == 2**bits
        values = nonzero_values(layer)
        assert 1 < len(values) <= 2**bits and values <= set(codebook.tolist())
        indices = layer.parametrizations.weight[0].indices
        assert indices.dtype == (torch.uint8 if bits < 8 else torch.int16) and indices.shape == layer.weight.shape
    # The state dict holds codes and shared values, never the float weights.
    keys = model.state_dict().keys()
    assert all(f"{name}.weight" not in keys for name in FC)
    assert {f"{FC[0]}.parametrizations.weight.original", f"{FC[0]}.parametrizations.weight.0.indices"} <= set(keys)


def test_kmeans_starts_from_evenly_spaced_centroids_and_fits_them() -> None:
    layer = nn.Linear(64, 40)
    torch.manual_seed(1)
    weight = torch.randn(40, 64)
    layer.weight.data.copy_(weight)
    quantize_layer(layer, bits=3, scheme="kmeans")
    codebook = codebook_of(layer)
    assert torch.all(codebook[1:] > codebook[:-1])  # sorted, no empty duplicate
    # Each weight took its nearest centroid: no centroid lies closer to it than the one it got.
    distance = (weight.flatten()[:, None] - codebook[None, :]).abs()
    taken = (weight.flatten() - layer.weight.detach().flatten()).abs()
    assert torch.all(taken <= distance.min(dim=1).values + 1e-6)
    # A fitted codebook beats the evenly spaced start it came from.
    start = torch.linspace(float(weight.min()), float(weight.max()), 8)
    start_error = (weight.flatten()[:, None] - start[None, :]).abs().min(dim=1).values.pow(2).sum()
    assert taken.pow(2).sum() < start_error


def test_a_layer_with_few_values_keeps_them_exactly() -> None:
    layer = nn.Linear(4, 3)
    values = torch.tensor([[0.5, -0.25, 0.5, 1.0], [1.0, 0.5, -0.25, 0.5], [0.5, 0.5, 0.5, -0.25]])
    layer.weight.data.copy_(values)
    quantize_layer(layer, bits=2)
    assert torch.equal(layer.weight.detach(), values)


def test_uniform_levels_are_evenly_spaced() -> None:
    model = apply_plan(lenet5(), {"bits": {"scheme": "uniform", "bits": {"classifier.0": 3}}}, example_inputs=EXAMPLE)
    layer = model.get_submodule("classifier.0")
    assert isinstance(layer.parametrizations.weight[0], UniformWeight)
    scale, zero_point = layer.parametrizations.weight.original.detach().tolist()
    levels = codebook_of(layer)
    assert levels.numel() == 8 and torch.allclose(levels, scale * (torch.arange(8.0) - zero_point))
    values = nonzero_values(layer)
    assert len(values) <= 8 and values <= set(levels.tolist())
    weight = lenet5().get_submodule("classifier.0").weight.detach()
    assert min(values) == pytest.approx(float(weight.min()), abs=1e-6)  # the levels span the weights
    assert max(values) == pytest.approx(float(weight.max()), abs=1e-6)


def test_bits_are_counted_exactly() -> None:
    base = lenet5()
    plan = {
        "weights": {"ratios": {"classifier.0": 0.5}},
        "bits": {"scheme": "kmeans", "bits": {"classifier.0": 3, "classifier.2": 5, "classifier.4": FLOAT_BITS}},
    }
    model = apply_plan(base, plan, example_inputs=EXAMPLE)
    before, after = measure(base, EXAMPLE), measure(model, EXAMPLE)
    fc1_kept = 64 * 120 - round(0.5 * 64 * 120)
    conv = 1 * 6 * 25 + 6 + 6 * 16 * 25 + 16
    float_params = conv + 84 * 10 + 10 + 120 + 84  # convs, the float output layer, both quantized layers' biases
    assert after.params == before.params == conv + 64 * 120 + 120 + 120 * 84 + 84 + 84 * 10 + 10
    assert after.nonzero_params == before.params - round(0.5 * 64 * 120)
    assert after.bits == 32 * float_params + (3 * fc1_kept + 8 * 32) + (5 * 120 * 84 + 32 * 32)
    assert after.size_bytes == 4 * float_params + (64 * 120 + 4 * 8) + (120 * 84 + 4 * 32)  # uint8 codes
    assert after.macs == before.macs  # quantizing keeps every shape

    uniform = apply_plan(base, {"bits": {"scheme": "uniform", "bits": {"classifier.2": 4}}}, example_inputs=EXAMPLE)
    rest = before.params - 120 * 84
    assert measure(uniform, EXAMPLE).bits == 32 * rest + 4 * 120 * 84 + 2 * 32  # scale and zero point


@pytest.mark.parametrize("scheme", ["kmeans", "uniform"])
def test_fine_tuning_moves_the_shared_values_and_keeps_the_codes(scheme: str, digits: DataSplits) -> None:
    data = digits
    model = apply_plan(
        lenet5(), {"weights": {"ratios": {"classifier.0": 0.6}}, "bits": {"scheme": scheme, "bits": {"classifier.0": 2, "classifier.2": 3}}},
        example_inputs=EXAMPLE,
    )
    layers = {name: model.get_submodule(name) for name in ("classifier.0", "classifier.2")}
    originals = {name: layer.parametrizations.weight.original.detach().clone() for name, layer in layers.items()}
    codes = {name: layer.parametrizations.weight[0].indices.clone() for name, layer in layers.items()}
    zeros = layers["classifier.0"].weight.detach() == 0
    train(model, data.loaders(32, seed=0).train, config=TrainConfig(epochs=1, max_steps=8, lr=0.02))
    for name, layer in layers.items():
        bits = layer.parametrizations.weight[0].bits
        assert not torch.equal(layer.parametrizations.weight.original.detach(), originals[name])
        assert torch.equal(layer.parametrizations.weight[0].indices, codes[name])
        assert 1 < len(nonzero_values(layer)) <= 2**bits
        assert torch.isfinite(layer.weight).all()
    assert torch.equal(layers["classifier.0"].weight.detach() == 0, zeros)


def test_a_centroid_steps_by_the_mean_of_its_weights_gradients() -> None:
    torch.manual_seed(0)
    dense = nn.Linear(16, 12)
    layer = nn.Linear(16, 12)
    layer.load_state_dict(dense.state_dict())
    quantize_layer(layer, bits=2)
    dense.weight.data.copy_(layer.weight.detach())  # the same function, its weights free
    inputs = torch.randn(5, 16)
    dense(inputs).pow(2).sum().backward()
    layer(inputs).pow(2).sum().backward()
    codes = layer.parametrizations.weight[0].indices.flatten().long()
    summed = torch.zeros(4).index_add_(0, codes, dense.weight.grad.flatten())
    members = torch.bincount(codes, minlength=4).float()
    assert torch.allclose(layer.parametrizations.weight.original.grad * members, summed, atol=1e-5)


def test_pruned_weights_stay_zero_and_get_no_index() -> None:
    model = lenet5()
    apply_weight_masks(model, ratios={"classifier.0": 0.7, "classifier.4": 0.3})
    masks = {name: model.get_submodule(name).weight_mask.bool().clone() for name in ("classifier.0", "classifier.4")}
    Quantization().apply(model, {"scheme": "kmeans", "bits": {"classifier.0": 4, "classifier.4": 2}}, example_inputs=EXAMPLE)
    for name, kept in masks.items():
        layer = model.get_submodule(name)
        quantizer = layer.parametrizations.weight[0]
        assert torch.equal(layer.weight.detach() != 0, kept)
        assert torch.equal(quantizer.indices == quantizer.no_code, ~kept)
        assert not hasattr(layer, "weight_mask")  # the mask was folded in; the codes hold the zeros
    counted = measure(model, EXAMPLE)
    assert counted.nonzero_params == measure(lenet5(), EXAMPLE).params - sum(int((~kept).sum()) for kept in masks.values())


@pytest.mark.parametrize(
    ("name", "kwargs", "shape", "plan"),
    [
        ("lenet5", {"input_size": 8}, (1, 8, 8), {
            "filters": {"criterion": "fpgm", "ratios": {"features.0": 0.5, "features.3": 0.5}},
            "weights": {"ratios": {"classifier.0": 0.5}},
            "bits": {"scheme": "kmeans", "bits": {"classifier.0": 3, "classifier.2": 4, "classifier.4": 8}},
        }),
        ("vgg11", {"input_size": 8, "width": 0.125, "in_channels": 3}, (3, 8, 8), {
            "filters": {"criterion": "l1", "ratios": {"features.0": 0.5, "features.4": 0.25}},
            "bits": {"scheme": "uniform", "bits": {"classifier.0": 2, "classifier.3": 5}},
        }),
    ],
)
def test_a_filters_and_bits_plan_reloads_from_a_checkpoint(tmp_path: Path, name: str, kwargs: dict, shape: tuple, plan: dict) -> None:
    torch.manual_seed(0)
    base = build_model(name, num_classes=10, **{"in_channels": 1, **kwargs})
    example = torch.zeros(1, *shape)
    pruned = apply_plan(base, plan, example_inputs=example)
    make_masks_permanent(pruned)
    pruned.eval()
    path = save_checkpoint(tmp_path / "pruned.pt", pruned, input_shape=shape, plan=plan)
    rebuilt = load_checkpoint(path).build().eval()  # plan replayed on a fresh model, state dict loaded strictly
    inputs = torch.randn(6, *shape)
    with torch.no_grad():
        assert torch.equal(rebuilt(inputs), pruned(inputs))
    assert measure(rebuilt, example) == measure(pruned, example)
    assert measure(rebuilt, example).bits < measure(base, example).bits
    # TorchScript (as export writes it) carries the codes and gives the same outputs.
    from prunetune.results.export import _torchscript

    buffer = io.BytesIO()
    torch.jit.save(_torchscript(rebuilt, inputs), buffer)
    buffer.seek(0)
    scripted = torch.jit.load(buffer)
    assert any(value.dtype in (torch.uint8, torch.int16) for value in scripted.state_dict().values())
    with torch.no_grad():
        assert torch.equal(scripted(inputs), rebuilt(inputs))


def test_a_trial_reports_bits_compression_beyond_compression(digits: DataSplits) -> None:
    data = digits
    base = lenet5()
    plan = {"filters": {"ratios": {"features.3": 0.5}}, "bits": {"scheme": "kmeans", "bits": {name: 4 for name in FC}}}
    result = prune_and_finetune(base, plan, data, finetune=TrainConfig(epochs=1, max_steps=5, lr=0.01))
    metrics = result.metrics()
    assert metrics["bits_compression"] == pytest.approx(result.base.bits / result.pruned.bits)
    assert metrics["bits_compression"] > 2 * metrics["compression"] > 2
    assert all(len(nonzero_values(result.model.get_submodule(name))) <= 16 for name in FC)
    assert result.plan == Plan(plan).to_dict()


def test_dimensions_section_and_values() -> None:
    method = Quantization(bits=(4, 2, 32, 8))
    dims = method.dimensions(lenet5(), EXAMPLE)
    assert [d.name for d in dims] == [f"bits.{name}" for name in FC]
    assert all(d.kind == "categorical" and d.choices == (32, 8, 4, 2) for d in dims)
    values = {"bits.classifier.0": 2, "bits.classifier.2": 32, "bits.classifier.4": 8, "filters.features.0": 0.5}
    section = method.section(values)
    assert section == {"scheme": "kmeans", "bits": {"classifier.0": 2, "classifier.2": 32, "classifier.4": 8}}
    assert method.values(section) == {key: value for key, value in values.items() if key.startswith("bits.")}
    model = method.apply(lenet5(), section, example_inputs=EXAMPLE)
    assert set(quantized_layers(model)) == {"classifier.0", "classifier.4"}  # 32 bits: left in float
    assert type(model.get_submodule("classifier.2")) is nn.Linear
    only = Quantization(layers=["classifier.4"], scheme="uniform")
    assert [d.unit for d in only.dimensions(lenet5(), EXAMPLE)] == ["classifier.4"]
    assert only.section({"bits.classifier.4": 3})["scheme"] == "uniform"


def test_a_search_space_turns_bits_into_plans_and_back() -> None:
    space = SearchSpace.for_model(lenet5(), EXAMPLE, {"bits": {"bits": [2, 4, 32]}})
    params = {"bits.classifier.0": 2, "bits.classifier.2": 4, "bits.classifier.4": 32}
    plan = space.plan(params)
    assert plan.sections["bits"]["bits"] == {"classifier.0": 2, "classifier.2": 4, "classifier.4": 32}
    plan.validate(lenet5(), EXAMPLE)
    assert space.params_for(plan) == params


def test_requantizing_a_layer_replaces_its_codebook() -> None:
    layer = nn.Linear(20, 10)
    quantize_layer(layer, bits=4, scheme="uniform")
    quantize_layer(layer, bits=2, scheme="kmeans")
    assert isinstance(layer.parametrizations.weight[0], KMeansWeight) and len(layer.parametrizations.weight) == 1
    assert len(nonzero_values(layer)) <= 4


@pytest.mark.parametrize(
    ("section", "message"),
    [
        ({"bits": {"classifier.0": 4}, "mode": "x"}, "Unknown key 'mode'"),
        ({"scheme": "kmeans"}, "needs the key 'bits'"),
        ({"scheme": "log", "bits": {}}, "Unknown scheme 'log'"),
        ({"bits": [4]}, "must map linear layer names"),
        ({"bits": {"features.0": 4}}, "Unknown linear layer 'features.0'"),
        ({"bits": {"classifier.9": 4}}, "Unknown linear layer 'classifier.9'"),
        ({"bits": {"classifier.0": 0}}, "must be an integer from 1 to 8, or 32"),
        ({"bits": {"classifier.0": 16}}, "Got 16 instead"),
        ({"bits": {"classifier.0": 4.0}}, "Got 4.0 instead"),
        ({"bits": {"classifier.0": True}}, "Got True instead"),
        ({"bits": {"classifier.0": "4"}}, "Got '4' instead"),
    ],
)
def test_validation_is_strict(section: dict, message: str) -> None:
    with pytest.raises(PrunetuneError, match=message):
        Plan({"bits": section}).validate(lenet5(), EXAMPLE)


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"bits": ()}, "The 'bits' parameter of Quantization must be a non-empty list"),
        ({"bits": (2, 2)}, "must not repeat a width"),
        ({"bits": (2, 64)}, "Got 64 instead"),
        ({"scheme": "log"}, "The 'scheme' parameter of Quantization must be one of kmeans, uniform"),
        ({"layers": ["features.0"]}, "names 'features.0', which is not a linear layer"),
        ({"layers": "conv"}, "must be 'linear' or a list"),
    ],
)
def test_bad_options_are_named(options: dict, message: str) -> None:
    with pytest.raises(PrunetuneError, match=message):
        Quantization(**options).dimensions(lenet5(), EXAMPLE)


def test_quantize_layer_refuses_what_it_cannot_do() -> None:
    with pytest.raises(PrunetuneError, match="Only nn.Linear"):
        quantize_layer(nn.Conv2d(1, 2, 3), bits=4)
    with pytest.raises(PrunetuneError, match="from 1 to 8. Got 32"):
        quantize_layer(nn.Linear(2, 2), bits=32)
    with pytest.raises(PrunetuneError, match="'scheme' parameter of quantize_layer"):
        quantize_layer(nn.Linear(2, 2), bits=4, scheme="log")
    model = lenet5()
    model.classifier[2] = nn.Identity()  # a layer an earlier drop section removed: skipped
    Quantization().apply(model, {"bits": {"classifier.2": 4}}, example_inputs=EXAMPLE)
    assert isinstance(model.classifier[2], nn.Identity)
    model.classifier[2] = nn.Tanh()  # replaced by something else: refused
    with pytest.raises(PrunetuneError, match="no longer a linear layer"):
        Quantization().apply(model, {"bits": {"classifier.2": 4}}, example_inputs=EXAMPLE)


def test_reports_show_bits_compression_and_nonzero_only_when_they_add_something() -> None:
    plain = [{"trial": 1, "compression": 2.0, "bits_compression": 2.0, "params": 100.0, "nonzero_params": 100.0}]
    quantized = [{"trial": 2, "compression": 2.0, "bits_compression": 7.5, "params": 100.0, "nonzero_params": 60.0}]
    assert not informative("bits_compression", plain) and not informative("nonzero_params", plain)
    assert informative("bits_compression", quantized) and informative("nonzero_params", quantized)

    def headers(rows: list[dict], **kwargs: object) -> list[str]:
        return [str(column.header) for column in front_table(rows, title="front", **kwargs).columns]

    assert "bits compr." not in headers(plain) and "nonzero" not in headers(plain)
    assert {"bits compr.", "nonzero", "params", "compression"} <= set(headers(plain + quantized))
    assert "bits compr." in headers(plain, extra=["bits_compression"])  # an objective is always shown


def test_the_example_experiment_searches_filters_and_bits() -> None:
    from prunetune.app.experiment import load_experiment

    experiment = load_experiment(Path(__file__).parents[1] / "examples" / "vgg11-cifar-filters-bits.yaml")
    assert experiment.objective.objectives == {"accuracy": "maximize", "bits_compression": "maximize"}
    model = build_model("vgg11", num_classes=10, in_channels=3, **experiment.model.kwargs)
    space = SearchSpace.for_model(model, torch.zeros(1, 3, 32, 32), experiment.methods)
    bits = [name for name in space.distributions if name.startswith("bits.")]
    assert bits == ["bits.classifier.0", "bits.classifier.3"]
    assert space.distributions[bits[0]].choices == (32, 8, 6, 5, 4, 3, 2)

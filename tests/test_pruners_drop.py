"""Drop sets: which units can go, what dropping them does, and the 'drop' plan section."""

from __future__ import annotations

import copy

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from prunetune.errors import PrunetuneError
from prunetune.pruners import Plan, apply_plan, discover_units
from prunetune.pruners.drop import DropLayers, drop_units, droppable_units
from prunetune.zoo.checkpoint import load_checkpoint, save_checkpoint
from prunetune.zoo.models import build_model
from prunetune.zoo.models.resnet import BasicBlock

CIFAR = (3, 32, 32)


def _params(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


def _snapshot(model: nn.Module) -> tuple[str, dict[str, torch.Tensor]]:
    return repr(model), {key: value.clone() for key, value in model.state_dict().items()}


def _unchanged(model: nn.Module, snapshot: tuple[str, dict[str, torch.Tensor]]) -> bool:
    structure, state = snapshot
    now = model.state_dict()
    return repr(model) == structure and now.keys() == state.keys() and all(torch.equal(now[k], state[k]) for k in state)


def _randomise_norms(model: nn.Module) -> None:
    """Give every batch norm non-trivial statistics, so folding them is really tested."""
    generator = torch.Generator().manual_seed(1)
    for module in model.modules():
        if isinstance(module, nn.modules.batchnorm._BatchNorm):
            size = module.num_features
            module.running_mean.copy_(torch.rand(size, generator=generator) - 0.5)
            module.running_var.copy_(torch.rand(size, generator=generator) + 0.5)
            module.weight.data.copy_(torch.rand(size, generator=generator) + 0.5)
            module.bias.data.copy_(torch.rand(size, generator=generator) - 0.5)


@pytest.fixture()
def resnet() -> tuple[nn.Module, torch.Tensor]:
    torch.manual_seed(0)
    return build_model("resnet20", num_classes=10, in_channels=3, width=0.25), torch.zeros(1, *CIFAR)


def test_resnet_candidates_are_the_shape_keeping_blocks(resnet):
    model, example = resnet
    candidates = {c.name: c for c in droppable_units(model, example)}
    keeping = [n for n, m in model.named_modules() if isinstance(m, BasicBlock) and isinstance(m.shortcut, nn.Identity)]
    downsampling = [n for n, m in model.named_modules() if isinstance(m, BasicBlock) and n not in keeping]
    assert downsampling and keeping
    assert [n for n, c in candidates.items() if c.rule == "block"] == keeping
    assert not set(downsampling) & set(candidates)
    # A block's layers are never candidates of their own; the second conv of a downsampling block is.
    assert not [n for n in candidates if any(n.startswith(block + ".") for block in keeping)]
    assert {n for n, c in candidates.items() if c.rule == "identity"} == {f"{b}.conv2" for b in downsampling}
    assert "fc" not in candidates and "conv1" not in candidates
    for name in keeping:
        assert candidates[name].params == _params(model.get_submodule(name))
        assert candidates[name].macs > 0


def test_block_drop_removes_exactly_the_named_blocks_and_the_model_trains(resnet):
    model, example = resnet
    candidates = {c.name: c for c in droppable_units(model, example)}
    names = ["layer3.2", "layer1.1"]
    before = _params(model)
    kept = {n: m for n, m in model.named_modules() if isinstance(m, BasicBlock) and n not in names}
    kept_state = {n: copy.deepcopy(m.state_dict()) for n, m in kept.items()}

    assert drop_units(model, names, example) is model
    for name in names:
        assert isinstance(model.get_submodule(name), nn.Identity)
    for name, block in kept.items():
        assert model.get_submodule(name) is block
        assert all(torch.equal(v, kept_state[name][k]) for k, v in block.state_dict().items())
    assert before - _params(model) == sum(candidates[n].params for n in names)

    torch.manual_seed(0)
    x, y = torch.randn(8, *CIFAR), torch.randint(0, 10, (8,))
    start = [p.detach().clone() for p in model.parameters()]
    optimizer = torch.optim.SGD(model.parameters(), lr=0.05)
    model.train()
    losses = []
    for _ in range(4):
        optimizer.zero_grad()
        loss = F.cross_entropy(model(x), y)
        loss.backward()
        assert all(p.grad is not None and torch.isfinite(p.grad).all() for p in model.parameters())
        optimizer.step()
        losses.append(loss.item())
    assert losses[-1] < losses[0]
    assert all(not torch.equal(p, s) for p, s in zip(model.parameters(), start))


@pytest.mark.parametrize(
    ("names", "message"),
    [
        (["layer2.0"], "'layer2.0' cannot be dropped: its output shape (8, 16, 16) differs from its input shape (4, 32, 32)"),
        (["fc"], "'fc' cannot be dropped: it is an output layer"),
        (["layer1.0.conv1"], "'layer1.0.conv1' cannot be dropped: it is part of block 'layer1.0'"),
        (["layer1.1", "nope"], "Unknown unit 'nope'. Droppable units: layer1.0, layer1.1, layer1.2, layer2.0.conv2"),
        (["layer1.1", "layer2.0"], "'layer2.0' cannot be dropped"),
        ("layer1.1", "must be a list of unit names"),
    ],
)
def test_undroppable_units_raise_and_change_nothing(resnet, names, message):
    model, example = resnet
    snapshot = _snapshot(model)
    with pytest.raises(PrunetuneError) as caught:
        drop_units(model, names, example)
    assert message in str(caught.value)
    assert _unchanged(model, snapshot)


def test_a_set_that_fails_part_way_changes_nothing():
    # features.8 feeds features.11 (reconnect); once re-shaped, features.11 keeps neither shape nor a
    # consumer it could be reconnected to (a pooling follows it), so the pair cannot go together.
    model = build_model("vgg11", num_classes=10, in_channels=3, width=0.125)
    example = torch.zeros(1, *CIFAR)
    candidates = {c.name: c.rule for c in droppable_units(model, example)}
    assert candidates["features.8"] == "reconnect" and candidates["features.11"] == "identity"
    snapshot = _snapshot(model)
    with pytest.raises(PrunetuneError, match="'features.11' cannot be dropped together with 'features.8'.*pooling"):
        drop_units(model, ["features.11", "features.8"], example)
    assert _unchanged(model, snapshot)


def test_a_conv_feeding_a_flatten_cannot_be_dropped():
    model = nn.Sequential(nn.Conv2d(3, 16, 3, padding=1), nn.ReLU(), nn.Flatten(), nn.Linear(16 * 16, 8), nn.ReLU(), nn.Linear(8, 2))
    with pytest.raises(PrunetuneError) as caught:
        drop_units(model, ["0"], torch.zeros(1, 3, 4, 4))
    assert str(caught.value) == (
        "'0' cannot be dropped: its output shape (16, 4, 4) differs from its input shape (3, 4, 4) and it feeds a flatten."
    )


def test_reconnect_on_lenet300_100_composes_the_two_layers():
    torch.manual_seed(0)
    model = build_model("lenet300_100", num_classes=10, in_features=40, width=0.1)
    example = torch.zeros(1, 40)
    candidates = {c.name: c for c in droppable_units(model, example)}
    assert {n: c.rule for n, c in candidates.items()} == {"classifier.0": "reconnect", "classifier.2": "reconnect"}
    first, middle, last = model.classifier[0], model.classifier[2], model.classifier[4]
    w2, b2, w4, b4 = (t.detach().clone() for t in (middle.weight, middle.bias, last.weight, last.bias))
    before = _params(model)

    drop_units(model, ["classifier.2"], example)
    assert isinstance(model.classifier[2], nn.Identity) and isinstance(model.classifier[3], nn.Identity)
    assert model.classifier[0] is first and isinstance(model.classifier[1], nn.ReLU)
    assert model.classifier[4].in_features == first.out_features == model.classifier[4].weight.shape[1]
    torch.testing.assert_close(model.classifier[4].weight, w4 @ w2)
    torch.testing.assert_close(model.classifier[4].bias, w4 @ b2 + b4)
    assert before - _params(model) == candidates["classifier.2"].params
    assert model(torch.randn(3, 40)).shape == (3, 10)


def test_adjacent_chain_layers_drop_together():
    torch.manual_seed(0)
    model = build_model("lenet300_100", num_classes=10, in_features=40, width=0.1)
    w0, w2, w4 = (model.classifier[i].weight.detach().clone() for i in (0, 2, 4))
    drop_units(model, ["classifier.2", "classifier.0"], torch.zeros(1, 40))
    assert [type(m) for m in model.classifier] == [nn.Identity] * 4 + [nn.Linear]
    assert model.classifier[4].in_features == 40
    torch.testing.assert_close(model.classifier[4].weight, w4 @ w2 @ w0)
    assert not droppable_units(model, torch.zeros(1, 40))


@pytest.mark.parametrize("activation", ["identity", "relu"])
def test_reconnect_on_the_autoencoder_hidden_layer(activation):
    torch.manual_seed(0)
    model = build_model("autoencoder", in_features=20, encoder_widths=[12, 8], code_size=4, activation=activation)
    model.eval()
    x = torch.randn(5, 20)
    reference = model(x)
    hidden, code = model.encoder[2], model.encoder[4]
    assert (hidden.in_features, hidden.out_features) == (12, 8)
    w1, b1, w2, b2 = (t.detach().clone() for t in (hidden.weight, hidden.bias, code.weight, code.bias))

    drop_units(model, ["encoder.2"], x[:1])
    assert isinstance(model.encoder[2], nn.Identity)
    assert (model.encoder[4].in_features, model.encoder[4].out_features) == (12, 4)
    torch.testing.assert_close(model.encoder[4].weight, w2 @ w1)
    torch.testing.assert_close(model.encoder[4].bias, w2 @ b1 + b2)
    if activation == "identity":  # nothing nonlinear was ignored: the model computes the same function
        torch.testing.assert_close(model(x), reference)
    else:
        assert not torch.allclose(model(x), reference)


def test_conv_reconnect_folds_the_batch_norms_exactly_for_pointwise_convs():
    torch.manual_seed(0)
    model = nn.Sequential(
        nn.Conv2d(3, 8, 1),
        nn.BatchNorm2d(8),
        nn.Conv2d(8, 6, 1, bias=False),  # no bias: the constant goes into the next batch norm
        nn.BatchNorm2d(6),
        nn.ReLU(),
        nn.Flatten(),
        nn.Linear(6 * 4 * 4, 2),
    )
    _randomise_norms(model)
    model.eval()
    x = torch.randn(4, 3, 4, 4)
    reference = model(x)
    assert {c.name: c.rule for c in droppable_units(model, x[:1])} == {"0": "reconnect"}
    drop_units(model, ["0"], x[:1])
    assert isinstance(model[0], nn.Identity) and isinstance(model[1], nn.Identity)
    assert model[2].in_channels == 3 and model[2].bias is None
    torch.testing.assert_close(model(x), reference, rtol=1e-4, atol=1e-5)


class _FunctionalMLP(nn.Module):
    """Activations written as function calls: a reconnect passes through them and keeps them."""

    def __init__(self) -> None:
        super().__init__()
        self.fc1, self.fc2, self.fc3 = nn.Linear(6, 5), nn.Linear(5, 4), nn.Linear(4, 2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc3(F.relu(self.fc2(F.relu(self.fc1(x)))))


def test_reconnect_through_functional_activations():
    model = _FunctionalMLP()
    assert [(c.name, c.rule) for c in droppable_units(model, torch.zeros(1, 6))] == [
        ("fc1", "reconnect"),
        ("fc2", "reconnect"),
    ]
    drop_units(model, ["fc2"], torch.zeros(1, 6))
    assert isinstance(model.fc2, nn.Identity) and model.fc3.in_features == 5


@pytest.mark.parametrize(
    ("name", "plan"),
    [
        (
            "resnet20",
            {
                "drop": {"units": ["layer1.1", "layer3.2"]},
                "filters": {"ratios": {"conv1": 0.5, "layer1.0.conv1": 0.5, "layer3.0.conv2": 0.25}},
            },
        ),
        (
            "vgg11",
            {
                "drop": {"units": ["features.8", "classifier.0"]},
                "filters": {"ratios": {"features.0": 0.5, "features.11": 0.5}},
            },
        ),
    ],
)
def test_drop_and_filters_in_one_plan_and_its_replay(name, plan):
    torch.manual_seed(0)
    model = build_model(name, num_classes=10, in_channels=3, width=0.25 if name == "resnet20" else 0.125)
    example = torch.zeros(1, *CIFAR)
    channels = {u.name: u.channels for u in discover_units(model, example)}

    pruned = apply_plan(model, Plan(plan), example_inputs=example)
    for unit in plan["drop"]["units"]:
        assert isinstance(pruned.get_submodule(unit), nn.Identity)
        assert not isinstance(model.get_submodule(unit), nn.Identity)  # a copy was pruned
    after = {u.name: u.channels for u in discover_units(pruned, example)}
    for unit, ratio in plan["filters"]["ratios"].items():
        assert after[unit] == channels[unit] - round(ratio * channels[unit])
    assert pruned(torch.randn(2, *CIFAR)).shape == (2, 10)

    # A checkpoint re-creates the structure from a fresh model and the plan, then loads the weights.
    replayed = apply_plan(build_model(name, num_classes=10, in_channels=3, width=0.25 if name == "resnet20" else 0.125),
                          plan, example_inputs=example)
    replayed.load_state_dict(pruned.state_dict(), strict=True)
    pruned.eval(), replayed.eval()
    x = torch.randn(2, *CIFAR)
    torch.testing.assert_close(replayed(x), pruned(x))


def test_weights_and_bits_sections_skip_the_layers_a_drop_removed():
    """A searched plan names every layer of the base; the ones its drop set removed are skipped."""
    torch.manual_seed(0)
    model = build_model("lenet300_100", num_classes=10, in_features=40, width=0.1)
    plan = {
        "drop": {"units": ["classifier.2"]},
        "weights": {"ratios": {"classifier.0": 0.5, "classifier.2": 0.5, "classifier.4": 0.5}},
        "bits": {"bits": {"classifier.0": 4, "classifier.2": 4, "classifier.4": 32}},
    }
    pruned = apply_plan(model, plan, example_inputs=torch.zeros(1, 40))
    assert isinstance(pruned.classifier[2], nn.Identity)
    last = pruned.classifier[4]
    assert (last.weight == 0).float().mean().item() == pytest.approx(0.5, abs=0.01)  # pruned, not quantized
    first = pruned.classifier[0]
    assert first.weight[first.weight != 0].unique().numel() <= 2**4  # a 4-bit codebook (zeros stay zero)
    assert (first.weight == 0).float().mean().item() == pytest.approx(0.5, abs=0.01)
    assert pruned(torch.randn(3, 40)).shape == (3, 10)


def test_a_checkpoint_of_a_dropped_model_rebuilds_it(tmp_path):
    torch.manual_seed(0)
    model = build_model("lenet300_100", num_classes=10, in_features=40, width=0.1)
    plan = {"drop": {"units": ["classifier.0"]}, "filters": {"ratios": {"classifier.2": 0.5}}}
    pruned = apply_plan(model, plan, example_inputs=torch.zeros(1, 40))
    save_checkpoint(tmp_path / "pruned.pt", pruned, plan=plan, input_shape=(40,))
    rebuilt = load_checkpoint(tmp_path / "pruned.pt").build()
    assert repr(rebuilt) == repr(pruned)
    x = torch.randn(3, 40)
    torch.testing.assert_close(rebuilt(x), pruned(x))


def test_drop_layers_dimensions_section_values_round_trip(resnet):
    model, example = resnet
    method = DropLayers()
    dims = method.dimensions(model, example)
    units = [c.name for c in droppable_units(model, example)]
    assert [d.unit for d in dims] == units
    assert all(d.kind == "bool" and d.name == f"drop.{d.unit}" for d in dims)

    chosen = {d.name: index % 3 == 0 for index, d in enumerate(dims)}
    section = method.section(chosen)
    assert section == {"units": [d.unit for d in dims if chosen[d.name]]}
    values = method.values(section)
    assert values == {name: True for name, value in chosen.items() if value}
    filled = {d.name: values.get(d.name, False) for d in dims}
    assert method.section(filled) == section
    assert Plan.from_json(Plan({"drop": section}).to_json()).sections["drop"] == section

    assert DropLayers(max_drops=1).section(chosen) == {"units": section["units"][:1]}
    assert DropLayers(max_drops=0).dimensions(model, example) == []
    with pytest.raises(PrunetuneError, match="The 'max_drops' parameter of DropLayers must be an integer >= 0"):
        DropLayers(max_drops=-1).section(chosen)


@pytest.mark.parametrize(
    ("section", "message"),
    [
        ({"units": ["layer1.1"], "extra": 1}, "Unknown key 'extra'"),
        ({}, "needs the key 'units'"),
        ({"units": "layer1.1"}, "must be a list of unit names"),
        ({"units": ["layer1.1", "layer1.1"]}, "names 'layer1.1' twice"),
        ({"units": ["layer2.0"]}, "'layer2.0' cannot be dropped"),
        ({"units": ["nope"]}, "Unknown unit 'nope'"),
    ],
)
def test_drop_layers_validate_rejects_bad_sections(resnet, section, message):
    model, example = resnet
    snapshot = _snapshot(model)
    with pytest.raises(PrunetuneError, match=message):
        DropLayers().validate(section, model, example)
    assert _unchanged(model, snapshot)


def test_drop_layers_validate_accepts_a_droppable_set_without_changing_the_model(resnet):
    model, example = resnet
    snapshot = _snapshot(model)
    DropLayers().validate({"units": ["layer1.0", "layer1.1", "layer1.2", "layer2.0.conv2"]}, model, example)
    DropLayers().validate({"units": []}, model, example)
    assert _unchanged(model, snapshot)

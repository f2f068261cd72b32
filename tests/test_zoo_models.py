"""The reference models: shapes, one training step, rebuilding from zoo_spec, names and errors."""

from __future__ import annotations

import json
import math
import sys
import textwrap
from pathlib import Path

import pytest
import torch
from torch import nn

from prunetune.errors import PrunetuneError
from prunetune.zoo.models import (
    VGG,
    Autoencoder,
    LeNet300100,
    build_from_spec,
    build_model,
    canonical_model_name,
    list_models,
    resolve_model_kwargs,
)

# One sample's shape per model: CIFAR-sized images for the CIFAR families (16x16 for the deep
# ResNets, whose global pooling makes them size-agnostic), MNIST for LeNet, and tabular rows
# (the credit-card data has 30 features) for the autoencoder.
SAMPLE_SHAPES: dict[str, tuple[int, ...]] = {
    "lenet300_100": (1, 28, 28),
    "lenet5": (1, 28, 28),
    "vgg11": (3, 32, 32),
    "vgg16": (3, 32, 32),
    "vgg19": (3, 32, 32),
    "resnet20": (3, 32, 32),
    "resnet56": (3, 16, 16),
    "resnet110": (3, 16, 16),
    "alexnet": (3, 32, 32),
    "autoencoder": (30,),
}
# The deep or wide ones train at half width so the whole file stays fast on two CPU cores.
STEP_WIDTHS: dict[str, float] = {"vgg16": 0.5, "vgg19": 0.5, "resnet110": 0.5, "alexnet": 0.5}
# One model per family and layer plan (depth does not change how the input size is handled).
SIZE_MODELS = ["lenet5", "vgg11", "vgg19", "resnet20", "alexnet"]
BATCH = 2


def _build_for(name: str, shape: tuple[int, ...], num_classes: int = 10, **extra: object) -> nn.Module:
    return build_model(name, **resolve_model_kwargs(name, shape, num_classes), **extra)


def _loss(model: nn.Module, x: torch.Tensor, out: torch.Tensor) -> torch.Tensor:
    if isinstance(model, Autoencoder):
        return nn.functional.mse_loss(out, x)
    target = torch.arange(out.shape[0]) % out.shape[1]
    return nn.functional.cross_entropy(out, target)


def test_the_zoo_lists_every_model_sorted() -> None:
    assert list_models() == sorted(SAMPLE_SHAPES)


@pytest.mark.parametrize("name", list_models())
def test_model_predicts_and_takes_an_sgd_step(name: str) -> None:
    torch.manual_seed(0)
    shape = SAMPLE_SHAPES[name]
    model = _build_for(name, shape, num_classes=7, width=STEP_WIDTHS.get(name, 1.0)).train()
    x = torch.randn(BATCH, *shape)

    out = model(x)
    expected = x.shape if name == "autoencoder" else (BATCH, 7)
    assert out.shape == expected

    weights = [p for p in model.parameters() if p.dim() > 1]
    first, last = weights[0].detach().clone(), weights[-1].detach().clone()
    optimizer = torch.optim.SGD(model.parameters(), lr=0.05)
    loss = _loss(model, x, out)
    loss.backward()
    optimizer.step()

    assert math.isfinite(loss.item())
    assert all(torch.isfinite(p.grad).all() for p in model.parameters() if p.grad is not None)
    # The gradient reached both ends of the network, so the first and the last weights moved.
    assert not torch.equal(weights[0].detach(), first)
    assert not torch.equal(weights[-1].detach(), last)


@pytest.mark.parametrize("name", SIZE_MODELS)
@pytest.mark.parametrize("shape", [(1, 8, 8), (1, 28, 28), (3, 16, 12)], ids=["digits", "mnist", "non-square"])
def test_image_models_fit_small_and_non_square_inputs(name: str, shape: tuple[int, ...]) -> None:
    model = _build_for(name, shape, num_classes=4, width=0.25).eval()
    with torch.no_grad():
        assert model(torch.randn(BATCH, *shape)).shape == (BATCH, 4)


@pytest.mark.parametrize("name", list_models())
def test_zoo_spec_rebuilds_the_same_architecture(name: str) -> None:
    model = _build_for(name, SAMPLE_SHAPES[name], num_classes=3, width=0.5)
    spec = model.zoo_spec
    assert spec["name"] == name
    assert spec["kwargs"]["width"] == 0.5
    # Defaults are recorded too, so a later change of a default cannot change a rebuilt model.
    assert set(spec["kwargs"]) >= {"width"} | set(resolve_model_kwargs(name, SAMPLE_SHAPES[name], 3))

    rebuilt = build_from_spec(json.loads(json.dumps(spec)))

    original = {k: tuple(v.shape) for k, v in model.state_dict().items()}
    assert {k: tuple(v.shape) for k, v in rebuilt.state_dict().items()} == original
    assert rebuilt.zoo_spec == spec
    rebuilt.load_state_dict(model.state_dict())


@pytest.mark.parametrize(
    ("alias", "canonical"),
    [
        ("LeNet-5", "lenet5"),
        ("lenet-300-100", "lenet300_100"),
        ("LeNet_300_100", "lenet300_100"),
        ("VGG16", "vgg16"),
        ("vgg-19", "vgg19"),
        ("ResNet-110", "resnet110"),
        (" AlexNet ", "alexnet"),
        ("AutoEncoder", "autoencoder"),
    ],
)
def test_aliases_resolve_to_the_canonical_name(alias: str, canonical: str) -> None:
    assert canonical_model_name(alias) == canonical
    model = build_model(alias, **resolve_model_kwargs(alias, SAMPLE_SHAPES[canonical], 10))
    assert model.zoo_spec["name"] == canonical


def test_unknown_name_lists_the_available_models() -> None:
    with pytest.raises(PrunetuneError) as info:
        build_model("vgg17")
    message = str(info.value)
    assert "'vgg17'" in message
    assert "Did you mean" in message
    for name in list_models():
        assert name in message


@pytest.mark.parametrize(
    ("name", "kwargs", "words"),
    [
        ("vgg16", {"width": -1}, ["The 'width' argument of vgg16 must be > 0. Got -1 instead."]),
        ("resnet20", {"width": 0}, ["'width'", "resnet20", "Got 0 instead"]),
        ("lenet5", {"num_classes": 0}, ["'num_classes'", "lenet5", ">= 1", "Got 0 instead"]),
        ("alexnet", {"num_classes": 2.5}, ["'num_classes'", "Got 2.5 instead"]),
        ("resnet56", {"input_size": 32}, ["'input_size'", "32", "resnet56", "It accepts", "num_classes"]),
        ("vgg11", {"colour": "red"}, ["'colour'", "'red'", "vgg11"]),
        ("lenet5", {"input_size": 3}, ["'input_size'", ">= 4", "Got 3 instead"]),
        ("vgg19", {"input_size": [32, 0]}, ["'input_size'", "Got [32, 0] instead"]),
        ("vgg16", {"dropout": 1.0}, ["'dropout'", "[0, 1)", "Got 1.0 instead"]),
        ("autoencoder", {"encoder_widths": [64, 0]}, ["'encoder_widths'", "Got [64, 0] instead"]),
        ("autoencoder", {"activation": "swish"}, ["'activation'", "'relu'", "Got 'swish' instead"]),
        ("lenet300_100", {"in_features": torch.tensor(5)}, ["'in_features'", "lenet300_100", "Got tensor(5)"]),
        ("vgg16", {"dropout": torch.tensor(0.5)}, ["'dropout'", "vgg16", "plain data", "zoo_spec"]),
    ],
)
def test_bad_arguments_are_named_with_their_value(name: str, kwargs: dict, words: list[str]) -> None:
    with pytest.raises(PrunetuneError) as info:
        build_model(name, **kwargs)
    message = str(info.value)
    assert all(w in message for w in words), message


def test_constructors_check_arguments_under_the_name_they_were_built_by() -> None:
    # The constructor is the one place arguments are checked; built by name, its errors use that name.
    with pytest.raises(PrunetuneError, match="The 'dropout' argument of vgg16 must"):
        build_model("vgg16", dropout=1.0)
    with pytest.raises(PrunetuneError, match="The 'dropout' argument of VGG must"):
        VGG(dropout=1.0)
    # in_channels is recorded in zoo_spec even when in_features leaves it unused, so it is checked.
    with pytest.raises(PrunetuneError, match="The 'in_channels' argument of lenet300_100 must"):
        build_model("lenet300_100", in_features=784, in_channels=0)
    with pytest.raises(PrunetuneError, match="The 'in_channels' argument of LeNet300100 must"):
        LeNet300100(in_features=784, in_channels=0)


def test_known_parameter_counts() -> None:
    def count(model: nn.Module) -> int:
        return sum(p.numel() for p in model.parameters())

    # LeNet-300-100: 784*300+300 + 300*100+100 + 100*10+10 = 235,500 + 30,100 + 1,010.
    assert count(build_model("lenet300_100", in_features=784, num_classes=10)) == 266_610
    # LeNet-5 (padded first conv): 156 + 2,416 (convs) + 48,120 + 10,164 + 850 (400-120-84-10).
    assert count(build_model("lenet5", in_channels=1, input_size=28, num_classes=10)) == 61_706
    # ResNet-20, convs without bias, BN = 2 parameters per channel:
    #   stem 3*16*9 + 32                                  =     464
    #   stage 1: 3 blocks * (2 * 16*16*9 + 2*32)          =  14,016
    #   stage 2: 16*32*9 + 32*32*9 + 128 + 1x1 16*32 + 64 =  14,528
    #            + 2 blocks * (2 * 32*32*9 + 128)         =  37,120
    #   stage 3: 32*64*9 + 64*64*9 + 256 + 1x1 32*64 + 128 = 57,728
    #            + 2 blocks * (2 * 64*64*9 + 256)         = 147,968
    #   fc 64*10 + 10                                     =     650
    # = 272,474: the paper's 0.27M (option A, 269,722) plus the two 1x1 conv + BN shortcuts (2,752).
    assert count(build_model("resnet20", in_channels=3, num_classes=10)) == 272_474


def test_width_scales_channels_but_keeps_at_least_one() -> None:
    half = build_model("vgg11", width=0.5)
    assert half.features[0].out_channels == 32
    assert half.classifier[0].out_features == 256
    tiny = build_model("resnet20", width=0.001)
    assert tiny.conv1.out_channels == 1
    assert tiny(torch.randn(BATCH, 3, 8, 8)).shape == (BATCH, 10)


def test_resolve_model_kwargs_matches_the_data() -> None:
    assert resolve_model_kwargs("lenet5", (1, 28, 28), 10) == {"num_classes": 10, "in_channels": 1, "input_size": 28}
    assert resolve_model_kwargs("LeNet-300-100", (1, 28, 28), 10) == {"num_classes": 10, "in_features": 784}
    assert resolve_model_kwargs("resnet20", (3, 32, 32), 100) == {"num_classes": 100, "in_channels": 3}
    assert resolve_model_kwargs("autoencoder", (30,), 2) == {"in_features": 30}
    assert resolve_model_kwargs("vgg11", (3, 16, 12), 2)["input_size"] == [16, 12]
    with pytest.raises(PrunetuneError, match=r"vgg16 is a convolutional model .* shaped \(30,\)"):
        resolve_model_kwargs("vgg16", (30,), 2)
    with pytest.raises(PrunetuneError, match="'input_shape'"):
        resolve_model_kwargs("vgg16", (3, 0, 32), 2)


def test_autoencoder_mirrors_its_encoder_and_encodes() -> None:
    model = build_model(
        "autoencoder", in_features=30, encoder_widths=[20, 10], code_size=4, output_activation="sigmoid"
    )
    encoder = [m.out_features for m in model.encoder if isinstance(m, nn.Linear)]
    decoder = [m.out_features for m in model.decoder if isinstance(m, nn.Linear)]
    assert encoder == [20, 10, 4]
    assert decoder == [10, 20, 30]
    x = torch.randn(5, 30)
    assert model.encode(x).shape == (5, 4)
    out = model(x)
    assert out.shape == (5, 30) and bool(((out >= 0) & (out <= 1)).all())
    images = build_model("autoencoder", in_channels=1, input_size=8, encoder_widths=[])
    assert images(torch.randn(2, 1, 8, 8)).shape == (2, 1, 8, 8)


USER_MODULE = textwrap.dedent(
    """
    from torch import nn

    def make_net(num_classes=10, in_features=4, hidden=8):
        return nn.Sequential(nn.Linear(in_features, hidden), nn.ReLU(), nn.Linear(hidden, num_classes))

    def not_a_module(**kwargs):
        return 42

    NOT_CALLABLE = 3
    """
)


@pytest.fixture
def user_file(tmp_path: Path) -> Path:
    path = tmp_path / "user_nets.py"
    path.write_text(USER_MODULE)
    return path


def test_user_callable_from_a_file(user_file: Path) -> None:
    model = build_model(f"{user_file}:make_net", num_classes=3, hidden=5)
    assert model(torch.randn(BATCH, 4)).shape == (BATCH, 3)
    assert model.zoo_spec == {"name": f"{user_file.resolve()}:make_net", "kwargs": {"num_classes": 3, "hidden": 5}}
    rebuilt = build_from_spec(json.loads(json.dumps(model.zoo_spec)))
    shapes = {k: v.shape for k, v in model.state_dict().items()}
    assert {k: v.shape for k, v in rebuilt.state_dict().items()} == shapes
    assert resolve_model_kwargs(f"{user_file}:make_net", (6,), 2) == {"num_classes": 2, "in_features": 6}


def test_user_callable_from_a_module(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    (tmp_path / "prunetune_test_usernets.py").write_text(USER_MODULE)
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.delitem(sys.modules, "prunetune_test_usernets", raising=False)
    model = build_model("prunetune_test_usernets:make_net", num_classes=2)
    assert model(torch.randn(BATCH, 4)).shape == (BATCH, 2)
    assert model.zoo_spec["name"] == "prunetune_test_usernets:make_net"


@pytest.mark.parametrize(
    ("target", "kwargs", "words"),
    [
        ("not_a_module", {}, ["not_a_module", "returned a int", "not a torch.nn.Module"]),
        ("NOT_CALLABLE", {}, ["NOT_CALLABLE", "not callable"]),
        ("missing", {}, ["has no attribute 'missing'"]),
        ("make_net", {"depth": 3}, ["cannot take the arguments", "depth"]),
    ],
)
def test_user_callable_errors(user_file: Path, target: str, kwargs: dict, words: list[str]) -> None:
    with pytest.raises(PrunetuneError) as info:
        build_model(f"{user_file}:{target}", **kwargs)
    assert all(w in str(info.value) for w in words), str(info.value)


def test_user_callable_in_a_missing_module_or_file(tmp_path: Path) -> None:
    with pytest.raises(PrunetuneError, match="'prunetune_no_such_module'.*not importable"):
        build_model("prunetune_no_such_module:make_net")
    with pytest.raises(PrunetuneError, match="does not exist"):
        build_model(f"{tmp_path / 'absent.py'}:make_net")


def _torchvision_import_error() -> str | None:
    try:
        import torchvision.models  # noqa: F401
    except Exception as exc:  # a torchvision built for another torch fails with RuntimeError or OSError
        return f"{type(exc).__name__}: {exc}"
    return None


TORCHVISION_ERROR = _torchvision_import_error()


@pytest.mark.skipif(
    TORCHVISION_ERROR is not None,
    reason=f"torchvision does not import here ({TORCHVISION_ERROR}); torchvision:NAME models cannot be built",
)
def test_torchvision_model_builds_untrained() -> None:
    model = build_model("torchvision:resnet18", num_classes=5)
    assert model.zoo_spec == {"name": "torchvision:resnet18", "kwargs": {"num_classes": 5}}
    assert model.eval()(torch.randn(1, 3, 32, 32)).shape == (1, 5)


def test_torchvision_unavailable_says_why_and_how_to_install(monkeypatch: pytest.MonkeyPatch) -> None:
    if TORCHVISION_ERROR is None:
        # torchvision works here: make it fail to import, as a mismatched build would.
        monkeypatch.setitem(sys.modules, "torchvision", None)
        monkeypatch.setitem(sys.modules, "torchvision.models", None)
    expected_error = _torchvision_import_error()
    with pytest.raises(PrunetuneError) as info:
        build_model("torchvision:resnet18", num_classes=10)
    message = str(info.value)
    assert "torchvision:resnet18" in message
    assert "not importable here" in message
    assert expected_error is not None and expected_error in message
    assert f"installed torch {torch.__version__}" in message
    assert "pip install prunetune[torchvision]" in message

"""A pruning method of the user's own: registered in one place, named in an experiment file,
searched end to end, replayed by export; and the registry's refusals."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
import torch

from prunetune.app.experiment import experiment_from_dict
from prunetune.app.runner import run_experiment
from prunetune.cli import main
from prunetune.errors import PrunetuneError
from prunetune.pruners import METHODS, FilterPruning, Plan, apply_plan, make_method, register_method, resolve_method
from prunetune.results import export_trial, load_run
from prunetune.search import SearchSpace
from prunetune.zoo import load_checkpoint
from prunetune.zoo.models import build_model

TESTS = Path(__file__).resolve().parent
REPO = TESTS.parent
REFERENCE = f"{TESTS / 'methods_for_tests.py'}:HalveConvs"
BUILT_IN = ["drop", "pca", "order", "filters", "weights", "bits"]


@pytest.fixture(autouse=True)
def registry() -> Iterator[None]:
    """Each test starts from the built-in methods and leaves them so (the registry is process-wide)."""
    saved = dict(METHODS)
    for name in list(METHODS):
        if name not in BUILT_IN:
            del METHODS[name]
    yield
    METHODS.clear()
    METHODS.update(saved)


def lenet() -> torch.nn.Module:
    return build_model("lenet5", num_classes=10, in_channels=1, input_size=8)


EXAMPLE = torch.zeros(1, 1, 8, 8)


def test_a_reference_registers_the_method_after_the_built_in_ones() -> None:
    assert resolve_method(REFERENCE) == "halve"
    assert list(METHODS) == [*BUILT_IN, "halve"]
    assert resolve_method(REFERENCE) == "halve" and list(METHODS).count("halve") == 1  # idempotent
    method = make_method("halve", {"share": 0.25})
    assert type(method).__name__ == "HalveConvs" and method.share == 0.25
    plan = Plan({"halve": {"layers": ["features.0"], "share": 0.5}})
    model = lenet()
    pruned = apply_plan(model, plan, example_inputs=EXAMPLE)
    zeros = float((pruned.features[0].weight == 0).float().mean())
    assert 0.45 <= zeros <= 0.55 and float((model.features[0].weight == 0).float().mean()) == 0.0


def test_a_method_object_handed_to_a_space_is_registered_not_dropped() -> None:
    import importlib.util

    spec = importlib.util.spec_from_file_location("methods_for_tests_direct", TESTS / "methods_for_tests.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    space = SearchSpace.for_model(lenet(), EXAMPLE, [FilterPruning(), module.HalveConvs()])
    assert list(space.methods) == ["filters", "halve"]
    assert [name for name in space.distributions if name.startswith("halve.")] == ["halve.features.0", "halve.features.3"]


def test_the_registry_refuses_what_it_cannot_use() -> None:
    with pytest.raises(PrunetuneError, match=r"Unknown pruning method 'depth'\. Known methods: drop, pca, order, filters, weights, bits; or name your own"):
        make_method("depth")
    with pytest.raises(PrunetuneError, match="not a subclass of prunetune.pruners.PruningMethod"):
        resolve_method(f"{TESTS / 'methods_for_tests.py'}:NotAMethod")
    with pytest.raises(PrunetuneError, match="has no attribute 'Missing'"):
        resolve_method(f"{TESTS / 'methods_for_tests.py'}:Missing")
    with pytest.raises(PrunetuneError, match="concrete subclass"):
        register_method(int)  # type: ignore[arg-type]

    class Clash(FilterPruning):
        pass

    with pytest.raises(PrunetuneError, match="named 'filters' is registered already"):
        register_method(Clash)
    resolve_method(REFERENCE)
    with pytest.raises(PrunetuneError, match="The 'share' parameter of HalveConvs must be in \\(0, 1\\). Got 2.0"):
        make_method("halve", {"share": 2.0})
    with pytest.raises(PrunetuneError, match="Unknown option 'shares' for pruning method 'halve'. Known options: share"):
        make_method("halve", {"shares": 0.5})
    assert list(METHODS) == [*BUILT_IN, "halve"]


def test_register_before_a_named_method_sets_where_it_runs() -> None:
    import importlib.util

    spec = importlib.util.spec_from_file_location("methods_for_tests_before", TESTS / "methods_for_tests.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    register_method(module.HalveConvs, before="filters")
    assert list(METHODS) == ["drop", "pca", "order", "halve", "filters", "weights", "bits"]


def test_searched_end_to_end_and_replayed_by_export_to_identical_outputs(tmp_path: Path) -> None:
    experiment = experiment_from_dict(
        {
            "model": {"train": {"epochs": 2}},
            "methods": {REFERENCE: {"share": 0.5}, "filters": {"max_ratio": 0.5}},
            "objective": {"keep_weights": "all", "finetune": {"epochs": 1, "max_steps": 6}},
            "search": {"sampler": "random", "trials": 4, "early_stopping": {"enabled": False}},
            "execution": {"executor": "local"},
        }
    )
    run_dir = tmp_path / "run"
    run_experiment(experiment, run_dir, echo=lambda line: None)
    run = load_run(run_dir)
    done = run.trials[run.trials["state"] == "COMPLETE"]
    assert len(done) == 4, run.trials[["state", "fail_reason"]]
    halved = [int(n) for n in done.index if run.plan(int(n)).get("halve", {}).get("layers")]
    assert halved, "no trial halved a layer; pick another seed"
    number = halved[0]
    assert run.plan(number)["halve"]["share"] == 0.5

    # Another process: the registry knows only the built-in methods; export finds the method again.
    for name in list(METHODS):
        if name not in BUILT_IN:
            del METHODS[name]
    kept = export_trial(run, number, tmp_path / "kept.pt", echo=lambda line: None)
    replayed = export_trial(run, number, tmp_path / "replayed.pt", from_plan=True, echo=lambda line: None)
    assert kept.source == "kept weights" and replayed.source == "re-created from the plan"
    inputs = next(iter(run.data().loaders(32, seed=0).val))[0]
    outputs = []
    for path in (tmp_path / "kept.pt", tmp_path / "replayed.pt"):
        checkpoint = load_checkpoint(path)
        assert checkpoint.plan == run.plan(number)
        assert checkpoint.method_sources == {"halve": REFERENCE}
        model = checkpoint.build().eval()
        layer = run.plan(number)["halve"]["layers"][0]
        zeros = float((model.get_submodule(layer).weight == 0).float().mean())
        assert 0.45 <= zeros <= 0.55  # the method's masks survived fine-tuning and export
        with torch.no_grad():
            outputs.append(model(inputs))
    assert torch.equal(outputs[0], outputs[1])
    assert kept.metrics["accuracy"] == pytest.approx(float(done.loc[number, "accuracy"]))

    # A fresh process loading the checkpoint is told what to register; it imports nothing itself.
    for name in list(METHODS):
        if name not in BUILT_IN:
            del METHODS[name]
    with pytest.raises(PrunetuneError, match=r"'halve' section, a pruning method not registered here .*resolve_method"):
        load_checkpoint(tmp_path / "kept.pt").build()


def test_the_documented_example_runs_and_exports(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    """docs/writing-a-method.md: examples/lenet5-digits-own-method.yaml, shortened, from the repo root."""
    monkeypatch.chdir(REPO)
    run_dir = tmp_path / "own"
    status = main([
        "run", "examples/lenet5-digits-own-method.yaml", "--run-dir", str(run_dir), "--trials", "3", "--seed", "1",
    ])
    assert status == 0
    out = capsys.readouterr().out
    assert "search: 6 parameters (filters, neurons)" in out
    run = load_run(run_dir)
    done = run.trials[run.trials["state"] == "COMPLETE"]
    assert len(done) == 3
    number = int(done["compression"].idxmax())
    plan = run.plan(number)
    assert set(plan) == {"filters", "neurons"} and set(plan["neurons"]["ratios"]) == {"classifier.0", "classifier.2"}
    assert main(["export", str(run_dir), "--trial", str(number), "-o", str(tmp_path / "m.pt")]) == 0
    model = load_checkpoint(tmp_path / "m.pt").build()
    rows = model.get_submodule("classifier.0").weight
    zero_rows = int((rows.abs().sum(dim=1) == 0).sum())
    assert zero_rows == round(plan["neurons"]["ratios"]["classifier.0"] * rows.shape[0])

"""The `prunetune` command line.

Every user mistake surfaces as a PrunetuneError (or an argparse error): one line naming the
problem on stderr and exit status 2, raised before any work starts.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

from prunetune.errors import PrunetuneError

if TYPE_CHECKING:
    from prunetune.pruners import Plan

__all__ = ["main"]


def _positive_int(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be >= 1, got {value}")
    return value


def _model_arg(text: str) -> tuple[str, object]:
    key, sep, raw = text.partition("=")
    if not sep or not key:
        raise argparse.ArgumentTypeError(f"expected KEY=VALUE, got {text!r}")
    import yaml

    return key, yaml.safe_load(raw)


def _add_train(commands: argparse._SubParsersAction) -> None:
    parser = commands.add_parser(
        "train",
        help="train a base model from the zoo and write a checkpoint",
        description="Train a zoo model on local data; print train/val/test accuracy; write a checkpoint.",
    )
    parser.add_argument("--model", required=True, help="zoo name (see `prunetune models`), module:callable, or torchvision:NAME")
    parser.add_argument("--data", required=True, help="digits, mnist:PATH, fashion-mnist:PATH, cifar10:PATH or creditcard:PATH")
    parser.add_argument("--epochs", type=_positive_int, default=10)
    parser.add_argument("-o", "--output", required=True, type=Path, help="checkpoint to write (.pt)")
    parser.add_argument("--batch-size", type=_positive_int, default=64)
    parser.add_argument("--optimizer", choices=("sgd", "adam"), default="sgd")
    parser.add_argument("--lr", type=float, default=0.05)
    parser.add_argument("--momentum", type=float, default=0.9, help="SGD momentum")
    parser.add_argument("--weight-decay", type=float, default=5e-4)
    parser.add_argument("--schedule", choices=("cosine", "step", "constant"), default="cosine")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--threads", type=_positive_int, default=None, help="CPU threads (default: torch's)")
    parser.add_argument("--val-fraction", type=float, default=0.1, help="validation split carved from training data")
    parser.add_argument("--limit", type=_positive_int, default=None, help="use at most this many training records")
    parser.add_argument(
        "--model-arg", type=_model_arg, action="append", default=[], metavar="KEY=VALUE",
        help="extra keyword argument for the model builder, e.g. width=0.5 (repeatable)",
    )
    parser.set_defaults(handler=_run_train)


def _run_train(args: argparse.Namespace) -> int:
    from prunetune.app.base_model import train_base_model
    from prunetune.objectives.training import TrainConfig

    if args.output.is_dir():
        raise PrunetuneError(f"--output {args.output} is a folder; name the checkpoint file to write.")
    config = TrainConfig(
        epochs=args.epochs, batch_size=args.batch_size, optimizer=args.optimizer, lr=args.lr, momentum=args.momentum,
        weight_decay=args.weight_decay, schedule=args.schedule, seed=args.seed, threads=args.threads,
    )
    train_base_model(
        model=args.model, data=args.data, output=args.output, config=config, model_kwargs=dict(args.model_arg),
        val_fraction=args.val_fraction, limit=args.limit, echo=print,
    )
    return 0


def _add_run(commands: argparse._SubParsersAction) -> None:
    from prunetune.search.sampler_choice import SAMPLERS

    parser = commands.add_parser(
        "run",
        help="run (or resume) a pruning search from an experiment file",
        description=(
            "Run a pruning search. Without a file: the embedded demo (LeNet-5 on digits, filter pruning, "
            "NSGA-II, 40 trials on local Ray). Running again on the same run folder resumes it."
        ),
    )
    parser.add_argument("experiment", nargs="?", type=Path, default=None, help="experiment YAML (see examples/)")
    parser.add_argument("--run-dir", type=Path, default=None, help="run folder (default: runs/NAME)")
    parser.add_argument("--trials", type=_positive_int, default=None, help="trial budget (finished trials)")
    parser.add_argument("--workers", type=_positive_int, default=None, help="trials running at once")
    parser.add_argument("--sampler", default=None, help=", ".join(SAMPLERS))
    parser.add_argument("--address", default=None, help="Ray cluster: auto or ray://host:port (default: local Ray)")
    parser.add_argument("--storage", default=None, help="Optuna storage URL (default: sqlite in the run folder)")
    parser.add_argument("--seed", type=int, default=None)
    parser.add_argument("--executor", choices=("ray", "local"), default=None, help="local: a plain loop without Ray")
    parser.add_argument(
        "--keep-weights", choices=("none", "front", "all"), default=None,
        help="keep trials' fine-tuned weights in RUN/weights/ for `prunetune export` (front: the front's only)",
    )
    parser.add_argument(
        "--check", action="store_true",
        help="check the experiment and print the search space and what each trial does; run nothing, write nothing",
    )
    parser.set_defaults(handler=_run_run)


def _run_run(args: argparse.Namespace) -> int:
    from rich.console import Console

    from prunetune.app.experiment import load_experiment
    from prunetune.results.front_table import front_table
    from prunetune.search.ledger import storage_url
    from prunetune.app.runner import front_rows, run_experiment

    experiment = load_experiment(args.experiment)
    overrides = {
        "search.trials": args.trials,
        "execution.workers": args.workers,
        "search.sampler": args.sampler,
        "execution.address": args.address,
        "storage": args.storage,
        "seed": args.seed,
        "execution.executor": args.executor,
        "objective.keep_weights": args.keep_weights,
    }
    experiment = experiment.replace(**{key: value for key, value in overrides.items() if value is not None})
    run_dir = args.run_dir or Path("runs") / experiment.name
    if args.check:
        from prunetune.app.preflight import check_experiment, describe

        print(describe(check_experiment(experiment, run_dir)))
        return 0
    study = run_experiment(experiment, run_dir, echo=print)
    rows = front_rows(study)
    console = Console(width=None if sys.stdout.isatty() else 120)
    if rows:
        console.print(front_table(rows, title=f"Pareto front of {run_dir} ({len(rows)} trials)"))
    else:
        console.print(f"No completed trial in {run_dir}: every trial failed or was stopped (see the ledger's fail reasons).")
    print(f"ledger: {storage_url(run_dir, experiment.storage)}  (optuna-dashboard opens it on localhost)")
    return 0


def _add_report(commands: argparse._SubParsersAction) -> None:
    parser = commands.add_parser(
        "report",
        help="the Pareto front of one or more runs: a table here, CSV/JSON/Markdown/PNG in the run folder",
        description=(
            "Report a finished, running or interrupted run: the front sorted by compression with the knee and "
            "query answers marked; pareto.csv, pareto.json, report.md and pareto.png in the run folder. With "
            "several runs, also fronts.png and hypervolume.csv/.md comparing them (in the first run folder or --output)."
        ),
    )
    parser.add_argument("runs", nargs="+", type=Path, metavar="RUN", help="run folder(s)")
    parser.add_argument("--max-drop", type=float, default=1.0, help="mark the most compressed trial within this accuracy drop, pp (default 1)")
    parser.add_argument("--min-compression", type=float, default=None, help="mark the most accurate trial at or above this compression")
    parser.add_argument("--macs", type=float, default=None, help="mark the front within this MACs budget")
    parser.add_argument("--latency-ms", type=float, default=None, help="mark the front within this latency budget (measured runs)")
    parser.add_argument("--size-bytes", type=float, default=None, help="mark the front within this model size")
    parser.add_argument("-o", "--output", type=Path, default=None, help="folder for the files (default: the run folder; with several runs, the comparison)")
    parser.set_defaults(handler=_run_report)


def _run_report(args: argparse.Namespace) -> int:
    from prunetune.results.report import Queries, report_command

    queries = Queries(
        max_drop=args.max_drop, min_compression=args.min_compression,
        macs=args.macs, latency_ms=args.latency_ms, size_bytes=args.size_bytes,
    )
    return report_command(args.runs, output=args.output, queries=queries)


def _add_sweep(commands: argparse._SubParsersAction) -> None:
    parser = commands.add_parser(
        "sweep",
        help="the uniform-ratio baseline: LeNet-5 on the bundled digits pruned at a few ratios",
        description=(
            "Train LeNet-5 on scikit-learn's bundled digits, prune every unit at the same ratio for a few "
            "ratios and criteria, fine-tune briefly, and print accuracy against compression (no files needed)."
        ),
    )
    parser.add_argument("--ratios", default="0.25,0.5,0.75", help="uniform filter ratios to try (comma-separated)")
    parser.add_argument("--criteria", default="l1,fpgm", help="filter criteria to compare (comma-separated)")
    parser.add_argument("--epochs", type=_positive_int, default=15, help="base training epochs")
    parser.add_argument("--finetune-epochs", type=int, default=1)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--threads", type=_positive_int, default=None)
    parser.set_defaults(handler=_run_sweep)


def _run_sweep(args: argparse.Namespace) -> int:
    from prunetune.app.demo import run_demo

    ratios = _floats(args.ratios, "--ratios")
    criteria = [name.strip() for name in args.criteria.split(",") if name.strip()]
    run_demo(
        ratios=ratios,
        criteria=criteria,
        epochs=args.epochs,
        finetune_epochs=args.finetune_epochs,
        seed=args.seed,
        threads=args.threads,
    )
    return 0


def _floats(text: str, flag: str) -> list[float]:
    try:
        values = [float(part) for part in text.split(",") if part.strip()]
    except ValueError:
        raise PrunetuneError(f"{flag} takes comma-separated numbers. Got {text!r} instead.") from None
    if not values:
        raise PrunetuneError(f"{flag} needs at least one number.")
    return values


def _add_prune(commands: argparse._SubParsersAction) -> None:
    parser = commands.add_parser(
        "prune",
        help="apply a plan to a base checkpoint, fine-tune briefly, and print what it costs and scores",
        description="Prune a trained checkpoint by a plan (JSON file or inline JSON), fine-tune, evaluate.",
    )
    parser.add_argument("checkpoint", type=Path, help="base checkpoint written by `prunetune train`")
    parser.add_argument("--plan", required=True, help='plan JSON file, or inline JSON such as \'{"filters": {"ratios": {"conv1": 0.5}}}\'')
    parser.add_argument("--data", default=None, help="data spec (default: the one the checkpoint was trained on)")
    parser.add_argument("--finetune-epochs", type=int, default=1)
    parser.add_argument("--lr", type=float, default=0.01)
    parser.add_argument("--batch-size", type=_positive_int, default=64)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--threads", type=_positive_int, default=None)
    parser.add_argument("-o", "--output", type=Path, default=None, help="write the pruned model as a checkpoint")
    parser.set_defaults(handler=_run_prune)


def _read_plan(text: str) -> Plan:
    from prunetune.pruners import Plan

    path = Path(text).expanduser()
    if not text.lstrip().startswith("{"):
        if not path.is_file():
            raise PrunetuneError(f"--plan {text}: no such file (give a plan JSON file or inline JSON).")
        text = path.read_text()
    return Plan.from_json(text)


def _run_prune(args: argparse.Namespace) -> int:
    from prunetune.objectives.training import format_epoch
    from prunetune.objectives.prune_finetune import prune_and_finetune
    from prunetune.objectives.training import TrainConfig
    from prunetune.pruners import make_masks_permanent
    from prunetune.zoo import load_checkpoint, load_data, save_checkpoint

    if args.output is not None and args.output.is_dir():
        raise PrunetuneError(f"--output {args.output} is a folder; name the checkpoint file to write.")
    checkpoint = load_checkpoint(args.checkpoint)
    plan = _read_plan(args.plan)
    spec = args.data or checkpoint.data_spec
    if spec is None:
        raise PrunetuneError(f"{args.checkpoint} records no data spec: pass --data.")
    data = load_data(spec, **checkpoint.data_options)
    finetune = TrainConfig(epochs=args.finetune_epochs, lr=args.lr, seed=args.seed, threads=args.threads)
    finetune.validate()
    result = prune_and_finetune(
        checkpoint.build(), plan, data, finetune=finetune, batch_size=args.batch_size,
        on_epoch=lambda stats: print(format_epoch(stats, args.finetune_epochs)),
    )
    base_test = checkpoint.metrics.get("test_accuracy")
    metrics = result.metrics(base_test_accuracy=base_test)
    print(
        f"params {result.base.params:,} -> {result.pruned.params:,} (nonzero {result.pruned.nonzero_params:,}); "
        f"compression {metrics['compression']:.2f}x; MACs {result.base.macs:,} -> {result.pruned.macs:,} "
        f"({metrics['macs_reduction']:.2f}x)"
    )
    drop = f" (drop {metrics['test_accuracy_drop']:.2f} pp)" if base_test is not None else ""
    print(
        f"val {result.val_accuracy_pruned:.2%} after pruning, {result.val_accuracy:.2%} after fine-tuning; "
        f"test {result.test_accuracy:.2%}{drop}"
    )
    if args.output is not None:
        make_masks_permanent(result.model)
        path = save_checkpoint(
            args.output, result.model, data_spec=spec, data_options=checkpoint.data_options,
            input_shape=tuple(data.input_shape), num_classes=data.num_classes, metrics=metrics, plan=plan.to_dict(),
        )
        print(f"wrote {path}")
    return 0


def _add_export(commands: argparse._SubParsersAction) -> None:
    parser = commands.add_parser(
        "export",
        help="write one trial of a run as a pruned checkpoint (with its plan) and TorchScript",
        description=(
            "Export a trial of a run: its kept weights (objective.keep_weights) when the run has them, else the "
            "model re-created from the base checkpoint and the trial's plan. Writes OUT and OUT's .torchscript.pt."
        ),
    )
    parser.add_argument("run", type=Path, help="run folder (RUN/experiment.yaml, RUN/study.db)")
    which = parser.add_mutually_exclusive_group(required=True)
    which.add_argument("--trial", type=int, default=None, metavar="N", help="the trial with this number")
    which.add_argument("--knee", action="store_true", help="the knee of the Pareto front")
    which.add_argument("--max-drop", type=float, default=None, metavar="D", help="the most compressed trial within D pp of accuracy drop")
    parser.add_argument("-o", "--output", required=True, type=Path, help="checkpoint to write (.pt); TorchScript goes beside it")
    parser.add_argument("--finetune-epochs", type=int, default=0, metavar="E", help="fine-tune E more epochs before writing")
    parser.add_argument("--from-plan", action="store_true", help="re-create from the plan even when kept weights exist")
    parser.set_defaults(handler=_run_export)


def _run_export(args: argparse.Namespace) -> int:
    from prunetune.results.export import export_trial, select_trial
    from prunetune.results.runs import load_run

    run = load_run(args.run)
    number = select_trial(run, trial=args.trial, knee=args.knee, max_drop=args.max_drop)
    result = export_trial(
        run, number, args.output, finetune_epochs=args.finetune_epochs, from_plan=args.from_plan, echo=print
    )
    extra = f", then {result.finetune_epochs} more epochs" if result.finetune_epochs else ""
    print(f"trial {result.trial} of {args.run} ({result.source}{extra})")
    print(f"{'':<16}{'exported':>14}{'ledger':>14}")
    for name, exported, recorded in result.rows():
        print(f"{name:<16}{_figure(name, exported):>14}{_figure(name, recorded):>14}")
    print(f"wrote {result.path} and {result.torchscript}")
    return 0


def _figure(name: str, value: float | None) -> str:
    if value is None:
        return "-"
    if "accuracy" in name:
        return f"{value:.2%}"
    if name in ("compression", "bits_compression", "macs_reduction"):
        return f"{value:.2f}x"
    return f"{value:,.0f}"


def _add_sensitivity(commands: argparse._SubParsersAction) -> None:
    parser = commands.add_parser(
        "sensitivity",
        help="prune each unit alone at a few ratios: accuracy, compression and the pruning order it suggests",
        description=(
            "Sensitivity analysis (Anik, Kelso, Lee 2024): every unit of a checkpoint pruned alone at each ratio, "
            "BN recalibrated, optionally fine-tuned, and evaluated. Writes DIR/sensitivity.csv, .md and .png and "
            "prints the table and the order (least sensitive first) at each ratio."
        ),
    )
    parser.add_argument("--model", required=True, type=Path, metavar="CKPT", help="base checkpoint written by `prunetune train`")
    parser.add_argument("--data", default=None, help="data spec (default: the one the checkpoint was trained on)")
    parser.add_argument("--method", choices=("filters", "weights"), default="filters")
    parser.add_argument("--ratios", default="0.25,0.5,0.75", help="ratios to try on every unit (comma-separated, in [0, 1))")
    parser.add_argument("--criterion", default="l1", help="filter criterion: l1, l2, fpgm, random, taylor")
    parser.add_argument("--finetune-epochs", type=int, default=0, help="fine-tune epochs after each pruning (default 0: none)")
    parser.add_argument("--finetune-steps", type=_positive_int, default=None, help="cap each fine-tune at N batches")
    parser.add_argument("--lr", type=float, default=0.01, help="fine-tune learning rate")
    parser.add_argument("--bn-batches", type=int, default=None, help="BN recalibration batches (default: 20 for models with BN)")
    parser.add_argument("--batch-size", type=_positive_int, default=64)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--threads", type=_positive_int, default=None)
    parser.add_argument("-o", "--output", required=True, type=Path, metavar="DIR", help="folder for the three files")
    parser.set_defaults(handler=_run_sensitivity)


def _run_sensitivity(args: argparse.Namespace) -> int:
    from prunetune.app.sensitivity_command import run_sensitivity_command

    return run_sensitivity_command(
        checkpoint=args.model, data=args.data, method=args.method, ratios=_floats(args.ratios, "--ratios"),
        criterion=args.criterion, finetune_epochs=args.finetune_epochs, finetune_steps=args.finetune_steps,
        lr=args.lr, bn_batches=args.bn_batches, batch_size=args.batch_size, seed=args.seed, threads=args.threads,
        output=args.output,
    )


def _add_dlp(commands: argparse._SubParsersAction) -> None:
    parser = commands.add_parser(
        "dlp",
        help="discriminative layer pruning: rank a checkpoint's droppable units by PLS, pick a drop set",
        description=(
            "Discriminative layer pruning (Jordao, Lie, Schwartz 2020): every droppable unit's pooled output is "
            "projected with PLS against the labels; prints the units least discriminative first and, with a budget, "
            "the drop set and its plan. With -o, writes DIR/dlp.json and DIR/dlp.md."
        ),
    )
    parser.add_argument("--model", required=True, type=Path, metavar="CKPT", help="base checkpoint written by `prunetune train`")
    parser.add_argument("--data", default=None, help="data spec (default: the one the checkpoint was trained on)")
    parser.add_argument("--samples", type=_positive_int, default=2000, help="training samples projected (default 2000)")
    parser.add_argument("--components", type=_positive_int, default=2, help="PLS components (default 2)")
    parser.add_argument("--score", choices=("gain", "r2", "vip"), default="gain", help="ranking score (default gain; see docs)")
    budget = parser.add_mutually_exclusive_group()
    budget.add_argument("--drop", type=_positive_int, default=None, metavar="N", help="drop the N least discriminative units")
    budget.add_argument("--flops-reduction", type=float, default=None, metavar="F", help="drop units until this fraction of MACs is gone (0.3 = -30%%)")
    parser.add_argument("--filters", type=float, default=None, metavar="R", help="cascade: prune ratio R of every kept filter unit")
    parser.add_argument("--threads", type=_positive_int, default=None)
    parser.add_argument("-o", "--output", type=Path, default=None, metavar="DIR", help="folder for dlp.json and dlp.md")
    parser.set_defaults(handler=_run_dlp)


def _run_dlp(args: argparse.Namespace) -> int:
    from prunetune.app.dlp_command import (
        check_output_folder,
        dlp_report,
        write_dlp_report,
    )
    from prunetune.runtime import torch_threads

    check_output_folder(args.output)
    if args.flops_reduction is not None and not 0.0 < args.flops_reduction < 1.0:
        raise PrunetuneError(f"--flops-reduction must be a fraction in (0, 1) (0.3 = -30%). Got {args.flops_reduction} instead.")
    with torch_threads(args.threads):
        report = dlp_report(
            args.model, data=args.data, samples=args.samples, n_components=args.components, score=args.score,
            drop=args.drop, macs_reduction=args.flops_reduction, filters=args.filters,
        )
    print(report.table())
    for line in report.summary():
        print(line)
    if args.output is not None:
        json_path, md_path = write_dlp_report(report, args.output)
        print(f"wrote {json_path} and {md_path}")
    return 0


def _add_units(commands: argparse._SubParsersAction) -> None:
    parser = commands.add_parser("units", help="list a checkpoint's prunable units: the names a plan uses")
    parser.add_argument("checkpoint", type=Path)
    parser.set_defaults(handler=_run_units)


def _run_units(args: argparse.Namespace) -> int:
    import torch

    from prunetune.pruners import discover_units, prunable_weight_layers
    from prunetune.zoo import load_checkpoint

    checkpoint = load_checkpoint(args.checkpoint)
    if checkpoint.input_shape is None:
        raise PrunetuneError(f"{args.checkpoint} records no input shape.")
    model = checkpoint.build()
    example = torch.zeros(1, *checkpoint.input_shape)
    print(f"{'unit (filters)':<28} {'kind':<6} {'channels':>8} {'params':>10} {'MACs':>12}  coupled with")
    for unit in discover_units(model, example):
        others = ", ".join(member for member in unit.members if member != unit.name)
        print(f"{unit.name:<28} {unit.kind:<6} {unit.channels:>8} {unit.params:>10,} {unit.macs:>12,}  {others}")
    print("layers (weights): " + ", ".join(prunable_weight_layers(model)))
    return 0


def _add_models(commands: argparse._SubParsersAction) -> None:
    parser = commands.add_parser("models", help="list the zoo's reference models and the datasets it reads")
    parser.set_defaults(handler=_run_models)


def _run_models(args: argparse.Namespace) -> int:
    from prunetune.zoo import list_datasets, list_models

    print("models:   " + ", ".join(list_models()))
    print("datasets: " + ", ".join(list_datasets()))
    return 0


def build_parser() -> argparse.ArgumentParser:
    from prunetune import __version__

    parser = argparse.ArgumentParser(prog="prunetune", description="Neural-network pruning methods as search spaces.")
    parser.add_argument("--version", action="version", version=f"prunetune {__version__}")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    _add_run(commands)
    _add_report(commands)
    _add_sweep(commands)
    _add_train(commands)
    _add_prune(commands)
    _add_export(commands)
    _add_sensitivity(commands)
    _add_dlp(commands)
    _add_units(commands)
    _add_models(commands)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the console script; returns the exit status."""
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return args.handler(args)
    except PrunetuneError as error:
        print(f"prunetune: error: {error}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("prunetune: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())

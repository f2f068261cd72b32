"""The search commands: `run` (with `--check`), `report` and `export`."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from prunetune.cli._args import positive_int

__all__ = ["add_baseline", "add_export", "add_finalize", "add_report", "add_run", "add_runs"]


def add_run(commands: argparse._SubParsersAction) -> None:
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
    parser.add_argument("--trials", type=positive_int, default=None, help="trial budget (finished trials)")
    parser.add_argument("--workers", type=positive_int, default=None, help="trials running at once")
    parser.add_argument("--sampler", default=None, help=", ".join(SAMPLERS))
    parser.add_argument(
        "--address", default=None,
        help="Ray cluster: HOST:PORT of a `ray start --head` node, auto, or ray://HOST:PORT (default: Ray on this machine)",
    )
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
        from prunetune.results import load_run
        from prunetune.results.summary import summarise

        print(summarise(load_run(run_dir)).message or f"No front for {run_dir}.")
    print(f"ledger: {storage_url(run_dir, experiment.storage)}  (optuna-dashboard opens it on localhost)")
    return 0


def add_baseline(commands: argparse._SubParsersAction) -> None:
    parser = commands.add_parser(
        "baseline",
        help="run baselines (uniform, global ranking, global magnitude, LAMP) into a run, beside its front",
        description=(
            "Run the plans of baselines on a run's base model, data and fine-tuning, recorded in its study as "
            "labelled trials that `prunetune report` shows beside the searched front. Entries: uniform, global "
            "(filters), global-magnitude, lamp (weights), each optionally with its points (uniform:0.3,0.5). "
            "Baselines already recorded are skipped."
        ),
    )
    parser.add_argument("run", type=Path, metavar="RUN", help="run folder (from `prunetune run`)")
    parser.add_argument("baselines", nargs="+", metavar="BASELINE", help="uniform, global, global-magnitude or lamp, optionally :R,R,...")
    parser.add_argument("--workers", type=positive_int, default=None, help="trials running at once")
    parser.add_argument("--executor", choices=("ray", "local"), default=None, help="local: a plain loop without Ray")
    parser.set_defaults(handler=_run_baseline)


def _run_baseline(args: argparse.Namespace) -> int:
    import yaml

    from prunetune.app.baselines import check_baselines
    from prunetune.app.experiment import experiment_from_dict
    from prunetune.app.runner import run_experiment
    from prunetune.errors import PrunetuneError
    from prunetune.results import load_run
    from prunetune.results.summary import baseline_line, summarise

    saved = args.run / "experiment.yaml"
    if not saved.is_file():
        raise PrunetuneError(f"{args.run} is not a run folder: {saved.name} is missing.")
    experiment = experiment_from_dict(yaml.safe_load(saved.read_text()))
    check_baselines(args.baselines, experiment.methods)
    overrides = {"execution.workers": args.workers, "execution.executor": args.executor}
    experiment = experiment.replace(**{key: value for key, value in overrides.items() if value is not None})
    run_experiment(experiment, args.run, echo=print, only_baselines=list(args.baselines))
    summary = summarise(load_run(args.run))
    print(baseline_line(summary) if summary.baseline_hypervolumes else "No baseline trial completed.")
    return 0


def add_finalize(commands: argparse._SubParsersAction) -> None:
    parser = commands.add_parser(
        "finalize",
        help="retrain chosen trials (the front, or --trial N) for longer and record their final accuracies",
        description=(
            "Retrain chosen trials' models for more epochs on the run's data split and fine-tuning settings, holding "
            "their masks, codebooks and drops; record final_accuracy and final_test_accuracy beside the search's "
            "figures (reports show both) and keep the weights for export. Takes the run lock."
        ),
    )
    parser.add_argument("run", type=Path, metavar="RUN", help="run folder")
    parser.add_argument("--trial", type=int, action="append", default=[], metavar="N", help="a trial to finalize (repeatable)")
    parser.add_argument("--front", action="store_true", help="every trial of the searched Pareto front")
    parser.add_argument("--baselines", action="store_true", help="every trial of the baselines' front")
    parser.add_argument("--epochs", type=positive_int, default=10, help="epochs to retrain for (default 10)")
    parser.add_argument("--lr", type=float, default=None, help="learning rate (default: the run's fine-tuning rate)")
    parser.add_argument("--device", default=None, help="auto (a GPU if there is one), cpu, cuda, cuda:N or mps (default: the run's execution.device)")
    parser.set_defaults(handler=_run_finalize)


def _run_finalize(args: argparse.Namespace) -> int:
    from prunetune.results.finalize import finalize_trials

    done = finalize_trials(args.run, numbers=args.trial, front=args.front, baselines=args.baselines, epochs=args.epochs, lr=args.lr,
                            device=args.device, echo=print)
    print(f"finalized {len(done)} trial(s) of {args.run}; `prunetune report {args.run}` shows the final figures, export uses their weights")
    return 0


def add_report(commands: argparse._SubParsersAction) -> None:
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


def add_export(commands: argparse._SubParsersAction) -> None:
    parser = commands.add_parser(
        "export",
        help="write one trial of a run as a pruned checkpoint (with its plan) and TorchScript",
        description=(
            "Export a trial of a run: its finalized weights (prunetune finalize) or kept weights (objective.keep_weights) "
            "when the run has them, else the model re-created from the base checkpoint and the trial's plan. Writes OUT "
            "and OUT's .torchscript.pt."
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
    """A figure of the export's comparison, formatted as every report formats that metric."""
    from prunetune.objectives.metrics import format_metric

    return "-" if value is None else format_metric(name, value)


def add_runs(commands: argparse._SubParsersAction) -> None:
    parser = commands.add_parser(
        "runs",
        help="list the runs a storage holds (one study each) with their trials per outcome",
        description="Every run's study in an Optuna storage (a database several runs share), oldest first.",
    )
    parser.add_argument("--storage", required=True, help="Optuna storage URL, e.g. sqlite:///shared.db or postgresql://...")
    parser.set_defaults(handler=_run_runs)


def _run_runs(args: argparse.Namespace) -> int:
    from prunetune.search.ledger import list_runs
    from prunetune.search.storage import check_storage_url

    check_storage_url(args.storage)
    rows = list_runs(args.storage)
    if not rows:
        print(f"{args.storage} holds no run.")
        return 0
    width = max(len("study"), *(len(row["study"]) for row in rows))
    columns = ("trials", "complete", "pruned", "failed", "interrupted", "running")
    print(f"{'study':<{width}}  {'started':<19}  " + "  ".join(f"{name:>11}" for name in columns))
    for row in rows:
        started = row["started"].strftime("%Y-%m-%d %H:%M:%S") if row["started"] else "-"
        print(f"{row['study']:<{width}}  {started:<19}  " + "  ".join(f"{row[name]:>11}" for name in columns))
    return 0

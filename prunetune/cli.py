"""The `prunetune` command line.

Every user mistake surfaces as a PrunetuneError (or an argparse error): one line naming the
problem on stderr and exit status 2, raised before any work starts.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from pathlib import Path

from prunetune.errors import PrunetuneError

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
    from prunetune.base_model import train_base_model

    if args.output.is_dir():
        raise PrunetuneError(f"--output {args.output} is a folder; name the checkpoint file to write.")
    train_base_model(
        model=args.model,
        data=args.data,
        output=args.output,
        model_kwargs=dict(args.model_arg),
        epochs=args.epochs,
        batch_size=args.batch_size,
        optimizer=args.optimizer,
        lr=args.lr,
        weight_decay=args.weight_decay,
        schedule=args.schedule,
        seed=args.seed,
        threads=args.threads,
        val_fraction=args.val_fraction,
        limit=args.limit,
        echo=print,
    )
    return 0


def _add_demo(commands: argparse._SubParsersAction) -> None:
    parser = commands.add_parser(
        "demo",
        help="train LeNet-5 on the bundled digits, prune it at several ratios, print the trade-off",
        description="A self-contained pruning run on scikit-learn's bundled digits (no files needed).",
    )
    parser.add_argument("--ratios", default="0.25,0.5,0.75", help="uniform filter ratios to try (comma-separated)")
    parser.add_argument("--criteria", default="l1,fpgm", help="filter criteria to compare (comma-separated)")
    parser.add_argument("--epochs", type=_positive_int, default=15, help="base training epochs")
    parser.add_argument("--finetune-epochs", type=int, default=1)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--threads", type=_positive_int, default=None)
    parser.set_defaults(handler=_run_demo)


def _run_demo(args: argparse.Namespace) -> int:
    from prunetune.demo import run_demo

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

    parser = argparse.ArgumentParser(prog="prunetune", description=__doc__.splitlines()[0])
    parser.add_argument("--version", action="version", version=f"prunetune {__version__}")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    _add_demo(commands)
    _add_train(commands)
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

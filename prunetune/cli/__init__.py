"""The `prunetune` command line.

Every user mistake surfaces as a PrunetuneError (or an argparse error): one line naming the
problem on stderr and exit status 2, raised before any work starts. Each command lives with its
kind: the search commands in ``_search``, the model commands in ``_models``, the analyses in
``_analysis``.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

from prunetune.cli._analysis import add_dlp, add_sensitivity
from prunetune.cli._models import add_models, add_prune, add_sweep, add_train, add_units
from prunetune.cli._search import add_baseline, add_export, add_finalize, add_report, add_run, add_runs
from prunetune.errors import PrunetuneError

__all__ = ["build_parser", "main"]


def build_parser() -> argparse.ArgumentParser:
    from prunetune import __version__

    parser = argparse.ArgumentParser(prog="prunetune", description="Neural-network pruning methods as search spaces.")
    parser.add_argument("--version", action="version", version=f"prunetune {__version__}")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    add_run(commands)
    add_report(commands)
    add_runs(commands)
    add_baseline(commands)
    add_finalize(commands)
    add_sweep(commands)
    add_train(commands)
    add_prune(commands)
    add_export(commands)
    add_sensitivity(commands)
    add_dlp(commands)
    add_units(commands)
    add_models(commands)
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

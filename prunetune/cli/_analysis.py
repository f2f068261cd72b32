"""The analysis commands: `sensitivity` and `dlp`."""

from __future__ import annotations

import argparse
from pathlib import Path

from prunetune.errors import PrunetuneError
from prunetune.cli._args import floats, positive_int

__all__ = ["add_dlp", "add_sensitivity"]


def add_sensitivity(commands: argparse._SubParsersAction) -> None:
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
    parser.add_argument("--finetune-steps", type=positive_int, default=None, help="cap each fine-tune at N batches")
    parser.add_argument("--lr", type=float, default=0.01, help="fine-tune learning rate")
    parser.add_argument("--bn-batches", type=int, default=None, help="BN recalibration batches (default: 20 for models with BN)")
    parser.add_argument("--batch-size", type=positive_int, default=64)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--threads", type=positive_int, default=None)
    parser.add_argument("-o", "--output", required=True, type=Path, metavar="DIR", help="folder for the three files")
    parser.add_argument("--device", default="auto", help="auto (a GPU if there is one), cpu, cuda, cuda:N or mps")
    parser.set_defaults(handler=_run_sensitivity)


def _run_sensitivity(args: argparse.Namespace) -> int:
    from prunetune.app.sensitivity_command import run_sensitivity_command

    return run_sensitivity_command(
        checkpoint=args.model, data=args.data, method=args.method, ratios=floats(args.ratios, "--ratios"),
        criterion=args.criterion, finetune_epochs=args.finetune_epochs, finetune_steps=args.finetune_steps,
        lr=args.lr, bn_batches=args.bn_batches, batch_size=args.batch_size, seed=args.seed, threads=args.threads,
        output=args.output, device=args.device,
    )


def add_dlp(commands: argparse._SubParsersAction) -> None:
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
    parser.add_argument("--samples", type=positive_int, default=2000, help="training samples projected (default 2000)")
    parser.add_argument("--components", type=positive_int, default=2, help="PLS components (default 2)")
    parser.add_argument("--score", choices=("gain", "r2", "vip"), default="gain", help="ranking score (default gain; see docs)")
    budget = parser.add_mutually_exclusive_group()
    budget.add_argument("--drop", type=positive_int, default=None, metavar="N", help="drop the N least discriminative units")
    budget.add_argument("--flops-reduction", type=float, default=None, metavar="F", help="drop units until this fraction of MACs is gone (0.3 = -30%%)")
    parser.add_argument("--filters", type=float, default=None, metavar="R", help="cascade: prune ratio R of every kept filter unit")
    parser.add_argument("--threads", type=positive_int, default=None)
    parser.add_argument("-o", "--output", type=Path, default=None, metavar="DIR", help="folder for dlp.json and dlp.md")
    parser.add_argument("--device", default="auto", help="auto (a GPU if there is one), cpu, cuda, cuda:N or mps")
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
            drop=args.drop, macs_reduction=args.flops_reduction, filters=args.filters, device=args.device,
        )
    print(report.table())
    for line in report.summary():
        print(line)
    if args.output is not None:
        json_path, md_path = write_dlp_report(report, args.output)
        print(f"wrote {json_path} and {md_path}")
    return 0

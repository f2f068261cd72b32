"""The model commands: `train`, `sweep`, `prune`, `units` and `models`."""

from __future__ import annotations

import argparse
from pathlib import Path

from prunetune.errors import PrunetuneError
from prunetune.cli._args import floats, model_arg, positive_int, read_plan

__all__ = ["add_models", "add_prune", "add_sweep", "add_train", "add_units"]


def add_train(commands: argparse._SubParsersAction) -> None:
    parser = commands.add_parser(
        "train",
        help="train a base model from the zoo and write a checkpoint",
        description="Train a zoo model on local data; print train/val/test accuracy; write a checkpoint.",
    )
    parser.add_argument("--model", required=True, help="zoo name (see `prunetune models`), module:callable, or torchvision:NAME")
    parser.add_argument("--data", required=True, help="digits, mnist:PATH, fashion-mnist:PATH, cifar10:PATH or creditcard:PATH")
    parser.add_argument("--epochs", type=positive_int, default=10)
    parser.add_argument("-o", "--output", required=True, type=Path, help="checkpoint to write (.pt)")
    parser.add_argument("--batch-size", type=positive_int, default=64)
    parser.add_argument("--optimizer", choices=("sgd", "adam"), default="sgd")
    parser.add_argument("--lr", type=float, default=0.05)
    parser.add_argument("--momentum", type=float, default=0.9, help="SGD momentum")
    parser.add_argument("--weight-decay", type=float, default=5e-4)
    parser.add_argument("--schedule", choices=("cosine", "step", "constant"), default="cosine")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--threads", type=positive_int, default=None, help="CPU threads (default: torch's)")
    parser.add_argument("--device", default="auto", help="auto (a GPU if there is one), cpu, cuda, cuda:N or mps")
    parser.add_argument("--precision", choices=("fp32", "bf16", "fp16"), default="fp32", help="mixed precision (autocast)")
    parser.add_argument("--val-fraction", type=float, default=0.1, help="validation split carved from training data")
    parser.add_argument("--limit", type=positive_int, default=None, help="use at most this many training records")
    parser.add_argument(
        "--model-arg", type=model_arg, action="append", default=[], metavar="KEY=VALUE",
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
        precision=args.precision,
    )
    train_base_model(
        model=args.model, data=args.data, output=args.output, config=config, model_kwargs=dict(args.model_arg),
        val_fraction=args.val_fraction, limit=args.limit, echo=print, device=args.device,
    )
    return 0


def add_sweep(commands: argparse._SubParsersAction) -> None:
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
    parser.add_argument("--epochs", type=positive_int, default=15, help="base training epochs")
    parser.add_argument("--finetune-epochs", type=int, default=1)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--threads", type=positive_int, default=None)
    parser.set_defaults(handler=_run_sweep)


def _run_sweep(args: argparse.Namespace) -> int:
    from prunetune.app.demo import run_demo

    ratios = floats(args.ratios, "--ratios")
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


def add_prune(commands: argparse._SubParsersAction) -> None:
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
    parser.add_argument("--batch-size", type=positive_int, default=64)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--threads", type=positive_int, default=None)
    parser.add_argument("-o", "--output", type=Path, default=None, help="write the pruned model as a checkpoint")
    parser.set_defaults(handler=_run_prune)


def _run_prune(args: argparse.Namespace) -> int:
    from prunetune.objectives.training import format_epoch
    from prunetune.objectives.prune_finetune import prune_and_finetune
    from prunetune.objectives.training import TrainConfig
    from prunetune.pruners import make_masks_permanent
    from prunetune.zoo import load_checkpoint, load_data, save_checkpoint

    if args.output is not None and args.output.is_dir():
        raise PrunetuneError(f"--output {args.output} is a folder; name the checkpoint file to write.")
    checkpoint = load_checkpoint(args.checkpoint)
    plan = read_plan(args.plan)
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


def add_units(commands: argparse._SubParsersAction) -> None:
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


def add_models(commands: argparse._SubParsersAction) -> None:
    parser = commands.add_parser("models", help="list the zoo's reference models and the datasets it reads")
    parser.set_defaults(handler=_run_models)


def _run_models(args: argparse.Namespace) -> int:
    from prunetune.zoo import list_datasets, list_models

    print("models:   " + ", ".join(list_models()))
    print("datasets: " + ", ".join(list_datasets()))
    return 0

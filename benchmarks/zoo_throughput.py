"""Training throughput (images/s) of every zoo model and the time to prune 50% of its channels.

Writes benchmarks/results/zoo_throughput.md. Run from the repo root:
    .venv/bin/python benchmarks/zoo_throughput.py [--steps 5] [--batch-size 64]
"""

from __future__ import annotations

import argparse
import copy
import statistics
import sys
import time
from pathlib import Path

import torch
from torch import nn

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _machine import header, write_result  # noqa: E402

from prunetune.pruners import discover_units, prune_filters  # noqa: E402
from prunetune.zoo.models import build_model, list_models, resolve_model_kwargs  # noqa: E402

# The input each family is meant for: MNIST-sized for the LeNets and the autoencoder, CIFAR-sized otherwise.
MNIST_SHAPE, CIFAR_SHAPE = (1, 28, 28), (3, 32, 32)


def input_shape_for(name: str) -> tuple[int, ...]:
    return MNIST_SHAPE if name.startswith(("lenet", "autoencoder")) else CIFAR_SHAPE


def training_throughput(model: nn.Module, shape: tuple[int, ...], batch_size: int, steps: int) -> float:
    """Images per second over `steps` SGD steps, after two warm-up steps."""
    inputs = torch.randn(batch_size, *shape)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9)
    model.train()

    def step() -> None:
        optimizer.zero_grad()
        output = model(inputs)
        target = inputs.flatten(1) if output.shape[1:] != (10,) else torch.randint(0, 10, (batch_size,))
        loss = nn.functional.mse_loss(output, target) if target.dtype.is_floating_point else nn.functional.cross_entropy(output, target)
        loss.backward()
        optimizer.step()

    for _ in range(2):
        step()
    started = time.perf_counter()
    for _ in range(steps):
        step()
    return batch_size * steps / (time.perf_counter() - started)


def pruning_seconds(model: nn.Module, shape: tuple[int, ...], repeats: int = 3) -> tuple[float, int, int]:
    """Median seconds to discover the units and remove 50% of channels in each; params before and after."""
    example = torch.zeros(1, *shape)
    times, after = [], 0
    for _ in range(repeats):
        copy_ = copy.deepcopy(model)
        started = time.perf_counter()
        units = discover_units(copy_, example)
        prune_filters(copy_, {unit.name: 0.5 for unit in units}, example_inputs=example)
        times.append(time.perf_counter() - started)
        after = sum(p.numel() for p in copy_.parameters())
    return statistics.median(times), sum(p.numel() for p in model.parameters()), after


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=5)
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--models", default=",".join(list_models()))
    args = parser.parse_args()
    torch.manual_seed(0)
    rows = []
    for name in args.models.split(","):
        shape = input_shape_for(name)
        flat = (shape[0] * shape[1] * shape[2],)
        model = build_model(name, **resolve_model_kwargs(name, flat if name == "autoencoder" else shape, 10))
        images_per_s = training_throughput(model, flat if name == "autoencoder" else shape, args.batch_size, args.steps)
        seconds, before, after = pruning_seconds(model, flat if name == "autoencoder" else shape)
        row = f"| {name} | {'x'.join(map(str, shape))} | {before:,} | {images_per_s:,.0f} | {seconds:.3f} | {after:,} |"
        print(row, flush=True)
        rows.append(row)
    table = (
        "| model | input | params | training images/s (batch "
        f"{args.batch_size}) | pruning 50% of channels, s (median of 3) | params after |\n"
        "|---|---|---:|---:|---:|---:|\n" + "\n".join(rows) + "\n"
    )
    path = write_result("zoo_throughput.md", header("Zoo models: training throughput and pruning time") + "\n" + table)
    print(f"wrote {path}")


if __name__ == "__main__":
    main()

"""The train and evaluate loop that base training and every trial's fine-tune share.

One loop, so that a searched model is fine-tuned exactly the way its base model was trained:
seeded, within the CPU threads it was given, reporting after each epoch.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from prunetune.errors import bad_key, bad_parameter, is_finite_number
from prunetune.objectives.devices import PRECISIONS, autocast
from prunetune.runtime import model_device, seed_everything, to_device, torch_threads

__all__ = [
    "EpochStats",
    "Evaluation",
    "TrainConfig",
    "TrainingDiverged",
    "evaluate",
    "format_epoch",
    "make_optimizer",
    "make_schedule",
    "train",
]

ScheduleFactory = Callable[[torch.optim.Optimizer, int], torch.optim.lr_scheduler.LRScheduler]
Batches = Iterable[tuple[torch.Tensor, torch.Tensor]]

OPTIMIZERS = ("sgd", "adam")
SCHEDULES = ("cosine", "step", "constant")


class TrainingDiverged(RuntimeError):
    """The loss became NaN or infinite: the trial that saw it fails with this reason."""


@dataclass(frozen=True, kw_only=True)
class TrainConfig:
    """How to train: the optimizer, its schedule, how long, in batches of what size. The one training
    configuration: base training, every trial's fine-tune and the methods' own training read it.

    `schedule` is a name from SCHEDULES or a factory `(optimizer, total_steps) -> scheduler`
    stepped once per batch, for users who want their own. `precision` is ``fp32``, or mixed
    precision in ``bf16`` or ``fp16`` (autocast, and a gradient scaler for fp16 on a GPU);
    `channels_last` stores conv activations channels-last (faster on GPUs with tensor cores).
    Training runs on the device the model is on; batches are moved there as they come. In an experiment file `model.train` and
    `objective.finetune` hold its fields, except `seed` (the experiment's), `threads`
    (`execution.threads_per_trial`) and, for fine-tuning, `batch_size` (`objective.batch_size`).
    """

    epochs: int = 10
    max_steps: int | None = None
    optimizer: str = "sgd"
    lr: float = 0.05
    momentum: float = 0.9
    weight_decay: float = 5e-4
    schedule: str | ScheduleFactory = "cosine"
    batch_size: int = 64
    precision: str = "fp32"
    channels_last: bool = False
    seed: int = 0
    threads: int | None = None

    def validate(self, where: str | None = None) -> None:
        """Raise PrunetuneError naming the first bad field; ``where`` is its experiment-file section."""

        def bad(field: str, allowed: str) -> None:
            value = getattr(self, field)
            if where:
                bad_key(f"{where}.{field}", value, allowed)
            bad_parameter("TrainConfig", field, value, allowed)

        def whole(field: str, least: int, optional: bool = False) -> None:
            value = getattr(self, field)
            if optional and value is None:
                return
            if isinstance(value, bool) or not isinstance(value, int) or value < least:
                bad(field, f"an integer >= {least}" + (" or null" if optional else ""))

        def number(field: str, test: Callable[[float], bool], allowed: str) -> None:
            value = getattr(self, field)
            if not is_finite_number(value) or not test(float(value)):
                bad(field, allowed)

        whole("epochs", 0)
        whole("max_steps", 1, optional=True)
        if self.optimizer not in OPTIMIZERS:
            bad("optimizer", f"one of {', '.join(OPTIMIZERS)}")
        number("lr", lambda lr: lr > 0, "a number > 0")
        number("momentum", lambda m: 0 <= m < 1, "a number in [0, 1)")
        number("weight_decay", lambda decay: decay >= 0, "a number >= 0")
        if isinstance(self.schedule, str) and self.schedule not in SCHEDULES:
            bad("schedule", f"one of {', '.join(SCHEDULES)} or a callable")
        if not isinstance(self.schedule, str) and not callable(self.schedule):
            bad("schedule", f"one of {', '.join(SCHEDULES)} or a callable")
        whole("batch_size", 1)
        if self.precision not in PRECISIONS:
            bad("precision", f"one of {', '.join(PRECISIONS)}")
        if not isinstance(self.channels_last, bool):
            bad("channels_last", "true or false")
        whole("seed", 0)
        whole("threads", 1, optional=True)


@dataclass(frozen=True)
class Evaluation:
    loss: float
    accuracy: float
    samples: int


@dataclass(frozen=True)
class EpochStats:
    epoch: int
    steps: int
    train_loss: float
    train_accuracy: float
    val: Evaluation | None
    seconds: float


def make_optimizer(model: nn.Module, config: TrainConfig) -> torch.optim.Optimizer:
    params = [p for p in model.parameters() if p.requires_grad]
    if config.optimizer == "adam":
        return torch.optim.Adam(params, lr=config.lr, weight_decay=config.weight_decay)
    return torch.optim.SGD(
        params, lr=config.lr, momentum=config.momentum, weight_decay=config.weight_decay, nesterov=config.momentum > 0
    )


def make_schedule(
    optimizer: torch.optim.Optimizer, schedule: str | ScheduleFactory, total_steps: int
) -> torch.optim.lr_scheduler.LRScheduler:
    """A per-batch schedule: cosine to zero, steps of 0.1 at 50% and 75%, or constant."""
    total_steps = max(total_steps, 1)
    if callable(schedule):
        return schedule(optimizer, total_steps)
    if schedule == "cosine":
        return torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=total_steps)
    if schedule == "step":
        milestones = [max(1, total_steps // 2), max(2, (3 * total_steps) // 4)]
        return torch.optim.lr_scheduler.MultiStepLR(optimizer, milestones=milestones, gamma=0.1)
    return torch.optim.lr_scheduler.LambdaLR(optimizer, lambda _: 1.0)


def _sized(loader: Batches) -> int:
    try:
        return len(loader)  # type: ignore[arg-type]
    except TypeError:
        return 0


def train(
    model: nn.Module,
    train_loader: Batches,
    *,
    config: TrainConfig,
    val_loader: Batches | None = None,
    on_epoch: Callable[[EpochStats], None] | None = None,
    loss_fn: nn.Module | None = None,
    after_step: Callable[[int], None] | None = None,
) -> list[EpochStats]:
    """Train `model` in place for `config.epochs` epochs (or `config.max_steps` batches, if fewer).

    `on_epoch` receives each epoch's statistics, validation included: the hook for progress lines
    and for a search's intermediate reports. `after_step(step)` runs after each optimizer step
    (mask updates of pruning with recovery). Raises TrainingDiverged on a NaN or infinite loss.
    """
    config.validate()
    loss_fn = loss_fn or nn.CrossEntropyLoss()
    history: list[EpochStats] = []
    device = model_device(model)
    if config.channels_last:
        model.to(memory_format=torch.channels_last)
    scaler = torch.amp.GradScaler(device.type, enabled=config.precision == "fp16" and device.type == "cuda")
    with torch_threads(config.threads):
        seed_everything(config.seed)
        optimizer = make_optimizer(model, config)
        per_epoch = _sized(train_loader)
        total = per_epoch * config.epochs
        if config.max_steps is not None:
            total = min(total, config.max_steps) if total else config.max_steps
        scheduler = make_schedule(optimizer, config.schedule, total)
        steps = 0
        for epoch in range(1, config.epochs + 1):
            if config.max_steps is not None and steps >= config.max_steps:
                break
            started = time.perf_counter()
            model.train()
            loss_sum, correct, seen = 0.0, 0, 0
            for inputs, targets in train_loader:
                if config.max_steps is not None and steps >= config.max_steps:
                    break
                inputs, targets = _on(device, inputs, targets, config.channels_last)
                optimizer.zero_grad(set_to_none=True)
                with autocast(device, config.precision):
                    outputs = model(inputs)
                    loss = loss_fn(outputs, targets)
                if not math.isfinite(loss.item()):
                    raise TrainingDiverged(f"loss became {loss.item()} at epoch {epoch}, step {steps + 1}")
                scaler.scale(loss).backward()
                scaler.step(optimizer)
                scaler.update()
                scheduler.step()
                steps += 1
                if after_step is not None:
                    after_step(steps)
                loss_sum += loss.item() * len(targets)
                seen += len(targets)
                if outputs.dim() == 2 and targets.dim() == 1:
                    correct += int((outputs.argmax(1) == targets).sum())
            val = evaluate(model, val_loader, loss_fn=loss_fn, precision=config.precision) if val_loader is not None else None
            stats = EpochStats(
                epoch=epoch,
                steps=steps,
                train_loss=loss_sum / max(seen, 1),
                train_accuracy=correct / max(seen, 1),
                val=val,
                seconds=time.perf_counter() - started,
            )
            history.append(stats)
            if on_epoch is not None:
                on_epoch(stats)
    return history


@torch.no_grad()
def evaluate(
    model: nn.Module, loader: Batches, *, loss_fn: nn.Module | None = None, precision: str = "fp32"
) -> Evaluation:
    """Mean loss and top-1 accuracy over `loader`, in eval mode on the model's device; the model's mode is restored."""
    loss_fn = loss_fn or nn.CrossEntropyLoss()
    was_training = model.training
    device = model_device(model)
    model.eval()
    loss_sum, correct, seen = 0.0, 0, 0
    try:
        for inputs, targets in loader:
            inputs, targets = _on(device, inputs, targets, False)
            with autocast(device, precision):
                outputs = model(inputs)
                loss_sum += float(loss_fn(outputs, targets)) * len(targets)
            seen += len(targets)
            if outputs.dim() == 2 and targets.dim() == 1:
                correct += int((outputs.argmax(1) == targets).sum())
    finally:
        model.train(was_training)
    return Evaluation(loss=loss_sum / max(seen, 1), accuracy=correct / max(seen, 1), samples=seen)


def _on(device: torch.device, inputs: Any, targets: Any, channels_last: bool) -> tuple[Any, Any]:
    """A batch on ``device`` (channels-last for image batches when asked)."""
    inputs, targets = to_device(inputs, device), to_device(targets, device)
    if channels_last and isinstance(inputs, torch.Tensor) and inputs.dim() == 4:
        inputs = inputs.contiguous(memory_format=torch.channels_last)
    return inputs, targets


def format_epoch(stats: EpochStats, epochs: int) -> str:
    """One progress line per epoch, the same for base training and fine-tuning."""
    val = f"  val {stats.val.accuracy:6.2%}" if stats.val is not None else ""
    return (
        f"epoch {stats.epoch:>3}/{epochs}  loss {stats.train_loss:.4f}  "
        f"train {stats.train_accuracy:6.2%}{val}  ({stats.seconds:.1f}s)"
    )

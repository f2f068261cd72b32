"""Plan sections that need training between their steps: staged methods.

Most methods are pure surgery and run through :func:`prunetune.pruners.apply_plan`. A few cannot:
an ordered plan fine-tunes after each unit and stops when an accuracy budget is spent; iterative
weight pruning with recovery prunes, fine-tunes and prunes again; PCA rebuilds and retrains the
network. Such a method names its *stage* (its ``stage`` attribute: a callable, or the
``"module:function"`` of one in the objectives layer, since :mod:`prunetune.pruners` never trains),
and its sections are handed to that stage.

A stage returns the model and the section *as applied* (an ordered plan that stopped after three
units says so), so the plan a trial records re-creates the model it evaluated.
"""

from __future__ import annotations

import importlib
import inspect
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Any, Protocol

import torch
from torch import nn

from prunetune.objectives.training import TrainConfig

__all__ = ["Stage", "StageContext", "apply_plan_staged", "apply_section", "get_stage"]


@dataclass(frozen=True)
class StageContext:
    """What a stage may use besides the model and its section.

    Attributes:
        example_inputs: One example input (a batch of one) to trace the model with.
        calibration: A few training batches for gradient or activation criteria.
        train_loader: The fine-tuning batches (seeded order).
        val_loader: The validation batches: what budgets and selections read.
        finetune: The trial's fine-tune configuration (a stage scales it down for its steps).
        base_val_accuracy: The base model's validation accuracy (a fraction in [0, 1]).
        evaluate: ``model -> validation accuracy``.
        recalibrate: Re-estimate the BN statistics of a model in place (a no-op without BN).
        loss_fn: The training loss (cross-entropy for classifiers).
        device: Where the pruned copy lives and trains (the base stays where it is).
    """

    example_inputs: torch.Tensor
    calibration: list[tuple[Any, Any]]
    train_loader: Iterable[tuple[Any, Any]]
    val_loader: Iterable[tuple[Any, Any]]
    finetune: TrainConfig
    base_val_accuracy: float
    evaluate: Callable[[nn.Module], float]
    recalibrate: Callable[[nn.Module], None]
    loss_fn: nn.Module | None = None
    device: torch.device | None = None


class Stage(Protocol):
    def __call__(
        self, model: nn.Module, section: Mapping[str, Any], context: StageContext
    ) -> tuple[nn.Module, dict[str, Any]]:
        """Apply ``section`` to ``model`` (in place or not) and return it with the section as applied."""


def get_stage(name: str) -> Stage | None:
    """The stage of section ``name`` (its method's ``stage``), or None when the section is plain surgery."""
    from prunetune.pruners import get_method

    target = inspect.getattr_static(type(get_method(name)), "stage", None)
    if target is None or callable(target):
        return target
    module, _, attr = str(target).partition(":")
    return getattr(importlib.import_module(module), attr)


def apply_section(model: nn.Module, name: str, section: Mapping[str, Any], context: StageContext) -> nn.Module:
    """Plain surgery: ``section`` applied by its pruning method, as :func:`apply_plan` would."""
    from prunetune.pruners import get_method

    return get_method(name).apply(
        model, section, example_inputs=context.example_inputs, calibration=context.calibration, loss_fn=context.loss_fn
    )


def apply_plan_staged(base: nn.Module, plan: Any, context: StageContext) -> tuple[nn.Module, dict[str, Any]]:
    """Apply ``plan`` to a copy of ``base`` in method order, staged sections through their stage.

    The plan is validated first, so a bad plan raises before any work. Returns the pruned model
    and the plan as applied (plain data).
    """
    import copy

    from prunetune.pruners import METHODS, Plan

    plan = plan if isinstance(plan, Plan) else Plan.from_dict(plan)
    plan.validate(base, context.example_inputs)
    model = copy.deepcopy(base)
    if context.device is not None:
        model.to(context.device)
    applied: dict[str, Any] = {}
    for name in METHODS:
        if name not in plan.sections:
            continue
        section = plan.sections[name]
        stage = get_stage(name)
        if stage is None:
            model = apply_section(model, name, section, context)
            applied[name] = section
        else:
            model, applied[name] = stage(model, section, context)
    return model, Plan(applied).to_dict()

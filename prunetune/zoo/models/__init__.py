"""Reference models for pruning experiments, and the registry that builds them by name."""

from __future__ import annotations

from prunetune.zoo.models.alexnet import AlexNet
from prunetune.zoo.models.autoencoder import Autoencoder
from prunetune.zoo.models.lenet import LeNet5, LeNet300100
from prunetune.zoo.models.registry import (
    build_from_spec,
    build_model,
    build_model_for,
    canonical_model_name,
    list_models,
    resolve_model_kwargs,
)
from prunetune.zoo.models.resnet import BasicBlock, CifarResNet
from prunetune.zoo.models.vgg import VGG

__all__ = [
    "VGG",
    "AlexNet",
    "Autoencoder",
    "BasicBlock",
    "CifarResNet",
    "LeNet5",
    "LeNet300100",
    "build_from_spec",
    "build_model",
    "build_model_for",
    "canonical_model_name",
    "list_models",
    "resolve_model_kwargs",
]

"""Base-model checkpoints: the weights plus what it takes to rebuild the model around them.

Nothing can be downloaded here, so every search starts from a checkpoint written by
`prunetune train`. It records the model's zoo name and keyword arguments (so the architecture is
rebuilt, not unpickled), the data it was trained on and its accuracies. It is plain data and
tensors, read back with `torch.load(..., weights_only=True)`, so loading never runs pickled code.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import nn

from prunetune.errors import PrunetuneError
from prunetune.files import replacing

__all__ = ["FORMAT", "Checkpoint", "load_checkpoint", "save_checkpoint"]

FORMAT = "prunetune.checkpoint/1"


@dataclass(frozen=True, kw_only=True)
class Checkpoint:
    """What a checkpoint holds besides the weights: enough to rebuild, re-read the data and compare."""

    model_name: str
    model_kwargs: dict[str, Any]
    state_dict: dict[str, torch.Tensor]
    data_spec: str | None = None
    data_options: dict[str, Any] = field(default_factory=dict)
    input_shape: tuple[int, ...] | None = None
    num_classes: int | None = None
    metrics: dict[str, float] = field(default_factory=dict)
    plan: dict[str, Any] | None = None
    #: Methods of the user's own that the plan uses: section name -> where the method was loaded from.
    method_sources: dict[str, str] = field(default_factory=dict)

    def build(self) -> nn.Module:
        """Rebuild the model from the zoo, re-shape it by its plan (if pruned), and load the weights."""
        from prunetune.zoo.models import build_model

        model = build_model(self.model_name, **self.model_kwargs)
        if self.plan:
            model = self._reshape(model)
        try:
            model.load_state_dict(self.state_dict)
        except RuntimeError as error:
            raise PrunetuneError(
                f"The checkpoint's weights do not fit model {self.model_name!r} built with {self.model_kwargs}: {error}"
            ) from error
        return model

    def _reshape(self, model: nn.Module) -> nn.Module:
        """Give a freshly built model the pruned shapes: only shapes matter, the weights come after.

        Which channels a criterion picks depends on the weights, so the replay uses L1 whatever the
        recorded criterion; the saved state dict then fills in the real weights.
        """
        from prunetune.pruners import METHODS, Plan, apply_plan, make_masks_permanent

        if self.input_shape is None:
            raise PrunetuneError("A pruned checkpoint must record its input_shape to be rebuilt.")
        sections = Plan.from_dict(self.plan).to_dict()
        for name in sections:
            if name not in METHODS:  # loading a checkpoint never imports code by itself
                source = self.method_sources.get(name)
                raise PrunetuneError(
                    f"The checkpoint's plan has a {name!r} section, a pruning method not registered here"
                    + (f" (it came from {source!r}): call prunetune.pruners.resolve_method({source!r})" if source
                       else ": register its class with prunetune.pruners.register_method")
                    + " before loading it."
                )
        for name in ("filters", "order"):
            if name in sections:
                sections[name]["criterion"] = "l1"
        # Zeroed weights keep every shape and the state dict holds the zeros; on fresh weights a
        # searched sensitivity could even exceed what the layer allows.
        sections.pop("weights", None)
        example = torch.zeros(1, *self.input_shape)
        model = apply_plan(model, sections, example_inputs=example, inplace=True)
        make_masks_permanent(model)
        return model


def save_checkpoint(path: str | os.PathLike[str], model: nn.Module, **info: Any) -> Path:
    """Write `model` with its zoo spec and `info` (Checkpoint's fields) atomically to `path`.

    The model must come from `prunetune.zoo.models.build_model`, which records how to rebuild it.
    """
    spec = getattr(model, "zoo_spec", None)
    if spec is None:
        raise PrunetuneError("This model has no zoo_spec: build it with prunetune.zoo.models.build_model to save it.")
    payload: dict[str, Any] = {
        "format": FORMAT,
        "model_name": spec["name"],
        "model_kwargs": dict(spec["kwargs"]),
        "state_dict": {key: value.detach().cpu() for key, value in model.state_dict().items()},
    }
    for key, value in info.items():
        if key not in Checkpoint.__dataclass_fields__ or key in payload:
            raise PrunetuneError(f"save_checkpoint got an unknown field {key!r}.")
        payload[key] = list(value) if key == "input_shape" and value is not None else value
    path = Path(path)
    with replacing(path) as temporary:
        torch.save(payload, temporary)
    return path


def load_checkpoint(path: str | os.PathLike[str]) -> Checkpoint:
    """Read a checkpoint written by save_checkpoint, safely (weights_only=True)."""
    path = Path(path).expanduser()
    if not path.is_file():
        raise PrunetuneError(f"Checkpoint not found: {path}")
    try:
        payload = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as error:  # torch raises several types for a file that is not a checkpoint
        raise PrunetuneError(f"{path} is not a readable prunetune checkpoint: {error}") from error
    if not isinstance(payload, dict) or payload.get("format") != FORMAT:
        raise PrunetuneError(f"{path} is not a prunetune checkpoint (expected format {FORMAT!r}).")
    fields = {key: value for key, value in payload.items() if key in Checkpoint.__dataclass_fields__}
    if fields.get("input_shape") is not None:
        fields["input_shape"] = tuple(fields["input_shape"])
    return Checkpoint(**fields)

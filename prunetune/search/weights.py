"""Kept weights: the fine-tuned model of a trial, saved so that export returns exactly what was evaluated.

With the experiment's `objective.keep_weights` set to `all` or `front`, each completed trial's
weights are written to `RUN/weights/trial-N.pt` (`front` deletes those of dominated trials when the
run ends). A file holds the state dict of the pruned model with its masks folded in, in the layout
`Checkpoint.build()` gives a base model re-shaped by the trial's plan; it is read with
`weights_only=True`.
"""

from __future__ import annotations

import io
from collections.abc import Iterable
from pathlib import Path

import torch
from torch import nn

from prunetune.errors import PrunetuneError
from prunetune.files import write_bytes

__all__ = [
    "WEIGHTS_FORMAT",
    "keep_only",
    "load_kept_weights",
    "model_bytes",
    "final_weights_path",
    "weights_dir",
    "weights_name",
    "weights_path",
    "write_weights",
]

WEIGHTS_FORMAT = "prunetune.trial-weights/1"
WEIGHTS_FOLDER = "weights"


def weights_name(number: int) -> str:
    return f"trial-{number}.pt"


def weights_dir(run_dir: Path) -> Path:
    """The run folder's `weights/`, where kept trial weights live."""
    return Path(run_dir) / WEIGHTS_FOLDER


def weights_path(run_dir: Path, number: int) -> Path:
    """Where trial `number`'s kept weights live in the run folder."""
    return weights_dir(run_dir) / weights_name(number)


def final_weights_path(run_dir: Path, number: int) -> Path:
    """Where `prunetune finalize` keeps trial `number`'s retrained weights (same format as kept weights)."""
    return weights_dir(run_dir) / f"final-{weights_name(number)}"


def model_bytes(model: nn.Module) -> bytes:
    """The model's weights as the bytes of a kept-weights file (masks folded in, on the CPU).

    Folding the masks changes nothing the model computes; it gives the state dict the keys a
    freshly re-shaped model has. Call it only on a model whose trial is over.
    """
    from prunetune.pruners import make_masks_permanent

    make_masks_permanent(model)
    payload = {
        "format": WEIGHTS_FORMAT,
        "state_dict": {key: value.detach().cpu() for key, value in model.state_dict().items()},
    }
    buffer = io.BytesIO()
    torch.save(payload, buffer)
    return buffer.getvalue()


def write_weights(directory: Path, number: int, data: bytes) -> Path:
    """Write a trial's kept-weights bytes into `directory` (the run's `weights/`), atomically."""
    return write_bytes(Path(directory) / weights_name(number), data)


def load_kept_weights(path: Path) -> dict[str, torch.Tensor]:
    """The state dict of a kept-weights file, read safely (weights_only=True)."""
    try:
        payload = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as error:  # torch raises several types for a damaged file
        raise PrunetuneError(f"{path} is not a readable kept-weights file: {error}") from error
    if not isinstance(payload, dict) or payload.get("format") != WEIGHTS_FORMAT:
        raise PrunetuneError(f"{path} is not a kept-weights file (expected format {WEIGHTS_FORMAT!r}).")
    return payload["state_dict"]


def keep_only(run_dir: Path, numbers: Iterable[int]) -> list[int]:
    """Delete the kept weights of every trial not in `numbers` (the front); returns the deleted ones."""
    keep = {weights_name(number) for number in numbers}
    deleted = []
    folder = Path(run_dir) / WEIGHTS_FOLDER
    for path in sorted(folder.glob("trial-*.pt")) if folder.is_dir() else []:
        if path.name not in keep:
            path.unlink(missing_ok=True)
            deleted.append(int(path.stem.split("-", 1)[1]))
    return deleted

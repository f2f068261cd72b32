"""Which device a trial runs on, and at which precision: the names users write, checked and resolved.

``auto`` is the accelerator the trial was given and the CPU otherwise: on Ray, the GPU Ray assigned
to the trial (``execution.gpus_per_trial > 0``; Ray makes it ``cuda:0`` for the worker), else the
CPU; without Ray, the first CUDA device, else Apple's MPS, else the CPU. ``cpu``, ``cuda``,
``cuda:N`` and ``mps`` name one. Asking for an accelerator the machine lacks is a PrunetuneError.
"""

from __future__ import annotations

import contextlib
import re
from collections.abc import Iterator, Sequence

import torch

from prunetune.errors import PrunetuneError

__all__ = ["DEVICES", "PRECISIONS", "OnDevice", "autocast", "check_device", "resolve_device"]

#: The forms ``execution.device`` and ``--device`` accept.
DEVICES = ("auto", "cpu", "cuda", "cuda:N", "mps")
#: Training precisions: float32, or mixed precision with bfloat16 or float16 (with a gradient scaler).
PRECISIONS = ("fp32", "bf16", "fp16")
_FORM = re.compile(r"^(auto|cpu|mps|cuda(:\d+)?)$")


def _mps_available() -> bool:
    backend = getattr(torch.backends, "mps", None)
    return bool(backend is not None and backend.is_available())


def check_device(spec: object, *, where: str = "execution.device", here: bool = True) -> str:
    """``spec`` if it names a device (and, with ``here``, one this machine has); else a
    PrunetuneError naming ``where``. ``auto`` always passes (it falls back to the CPU)."""
    name = f"The {where} flag" if where.startswith("--") else f"The '{where}' key"
    if not isinstance(spec, str) or not _FORM.match(spec.strip().lower()):
        raise PrunetuneError(f"{name} must be one of {', '.join(DEVICES)}. Got {spec!r} instead.")
    spec = spec.strip().lower()
    if not here:
        return spec
    if spec.startswith("cuda"):
        count = torch.cuda.device_count() if torch.cuda.is_available() else 0
        if count == 0:
            raise PrunetuneError(
                f"{name} asks for {spec}, but this machine has no CUDA device (torch {torch.__version__}"
                f"{', a CPU-only build' if torch.version.cuda is None else ''}). Use 'auto' or 'cpu'."
            )
        index = int(spec.partition(":")[2] or 0)
        if index >= count:
            raise PrunetuneError(f"{name} asks for {spec}, but this machine has {count} CUDA device(s): cuda:0..cuda:{count - 1}.")
    if spec == "mps" and not _mps_available():
        raise PrunetuneError(f"{name} asks for mps, but Apple's MPS is not available here. Use 'auto' or 'cpu'.")
    return spec


def resolve_device(spec: str, gpu_ids: Sequence[object] | None = None) -> torch.device:
    """The device a trial runs on. ``gpu_ids`` are the GPUs Ray assigned to it (None without Ray)."""
    spec = spec.strip().lower()
    if spec == "auto":
        if gpu_ids is not None:  # on Ray: only a GPU Ray gave the trial (it is cuda:0 there)
            return torch.device("cuda:0") if gpu_ids and torch.cuda.is_available() else torch.device("cpu")
        if torch.cuda.is_available():
            return torch.device("cuda:0")
        return torch.device("mps") if _mps_available() else torch.device("cpu")
    if spec == "cuda" and gpu_ids:
        return torch.device("cuda:0")
    return torch.device(check_device(spec))


@contextlib.contextmanager
def autocast(device: torch.device, precision: str) -> Iterator[None]:
    """Mixed precision for ``bf16`` and ``fp16`` (autocast on ``device``); nothing for ``fp32``."""
    if precision == "fp32":
        yield
        return
    dtype = torch.bfloat16 if precision == "bf16" else torch.float16
    with torch.autocast(device_type=device.type, dtype=dtype):
        yield


class OnDevice:
    """What an objective needs to run its trials on a device: a ``device`` spec (``auto``, ``cpu``,
    ``cuda:N``, ...) and, on a Ray worker, the GPUs Ray assigned to it (:meth:`assign_gpus`)."""

    device: str = "cpu"
    _gpu_ids: list[object] | None = None

    def assign_gpus(self, gpu_ids: Sequence[object] | None) -> None:
        """Called by the executor in the process that runs the trials (None: not on Ray)."""
        self._gpu_ids = None if gpu_ids is None else list(gpu_ids)

    def trial_device(self) -> torch.device:
        """Where this process runs the next trial."""
        return resolve_device(self.device, self._gpu_ids)

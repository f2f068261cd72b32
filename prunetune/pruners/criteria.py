"""Filter importance criteria: small callables that score the channels of one unit.

A criterion takes a Torch-Pruning group (all channels of one unit) and returns one score per
channel; the lowest scores are removed first. The built-in ones wrap Torch-Pruning's importances;
any callable with the same shape works, and one that reads gradients says so with
``needs_gradients = True`` so that the pruner runs a calibration pass first.
"""

from __future__ import annotations

import zlib
from collections.abc import Callable
from typing import Protocol, runtime_checkable

import torch
import torch_pruning as tp
from torch import nn

from prunetune.errors import PrunetuneError

__all__ = [
    "CRITERIA",
    "Criterion",
    "FPGM",
    "L1",
    "L2",
    "Random",
    "Taylor",
    "get_criterion",
]

_WEIGHTED = (nn.modules.conv._ConvNd, nn.Linear)
_OUT_CHANNEL_FNS = (
    tp.pruner.function.prune_conv_out_channels,
    tp.pruner.function.prune_depthwise_conv_out_channels,
    tp.pruner.function.prune_linear_out_channels,
)


@runtime_checkable
class Criterion(Protocol):
    """Scores every channel of a group; lower means removed first."""

    def __call__(self, group: tp.Group) -> torch.Tensor: ...


class _GroupMagnitude:
    """Torch-Pruning's group magnitude importance of one norm order ``p``, without normalisation.

    L1 and L2 differ only in ``p``; the subclasses are the public names (and reprs) users pass.
    """

    name: str
    p: int
    needs_gradients = False

    def __init__(self) -> None:
        self._importance = tp.importance.GroupMagnitudeImportance(p=self.p, normalizer=None)

    def __call__(self, group: tp.Group) -> torch.Tensor:
        return self._importance(group)

    def __repr__(self) -> str:
        return f"{type(self).__name__}()"


class L1(_GroupMagnitude):
    """Group L1 norm (Li et al. 2017, grouped as in DepGraph): each channel's absolute weight sum.

    The sum is averaged over every coupled slice of the unit (the filters, their batch-norm scales,
    the next layer's input columns), so residual-coupled layers are judged together.
    """

    name = "l1"
    p = 1


class L2(_GroupMagnitude):
    """Group L2 norm (squared): as :class:`L1` with squared weights."""

    name = "l2"
    p = 2


class FPGM:
    """Filter pruning via geometric median (He et al., CVPR 2019).

    A filter's score is the sum of its Euclidean distances to the other filters of its layer: the
    filters nearest the geometric median are the most replaceable and go first. Scores of coupled
    layers are averaged. Torch-Pruning's ``FPGMImportance`` measures distances between ``|w|**p``,
    which forgets the signs of the weights, so this one measures them between the filters
    themselves.
    """

    name = "fpgm"
    needs_gradients = False

    @torch.no_grad()
    def __call__(self, group: tp.Group) -> torch.Tensor:
        scores = []
        root_indices = []
        for item in group:
            dep, idxs = item
            layer = dep.target.module
            if dep.handler not in _OUT_CHANNEL_FNS or not isinstance(layer, _WEIGHTED):
                continue
            weight = layer.weight.data
            if getattr(layer, "transposed", False):
                weight = weight.transpose(0, 1)
            filters = weight[idxs].flatten(1).float()
            scores.append(torch.cdist(filters.unsqueeze(0), filters.unsqueeze(0)).squeeze(0).sum(1))
            root_indices.append(item.root_idxs)
        return _mean_over_layers(scores, root_indices, channels=len(group[0].idxs))

    def __repr__(self) -> str:
        return "FPGM()"


def _mean_over_layers(
    scores: list[torch.Tensor], root_indices: list[list[int]], *, channels: int
) -> torch.Tensor | None:
    """Average per-layer scores into the root layer's channel order, as Torch-Pruning's "mean" does."""
    total = torch.zeros(channels, dtype=torch.float32)
    layers = 0
    for score, indices in zip(scores, root_indices):
        if any(index is None for index in indices):
            continue
        total.scatter_add_(0, torch.tensor(indices, dtype=torch.long), score.detach().to("cpu", torch.float32))
        layers += 1
    return total / layers if layers else None


class Random:
    """Random scores, reproducible: the same seed picks the same channels of the same unit.

    The generator is seeded from ``seed`` and the unit's root layer, so the choice does not depend
    on how many units were scored before or how often the criterion was used.
    """

    name = "random"
    needs_gradients = False

    def __init__(self, *, seed: int = 0) -> None:
        self.seed = seed

    def __call__(self, group: tp.Group) -> torch.Tensor:
        root = group[0].dep.target
        label = f"{getattr(root, '_name', '')}:{len(group[0].idxs)}"
        generator = torch.Generator().manual_seed(int(self.seed) * 1_000_003 + zlib.crc32(label.encode()))
        return torch.rand(len(group[0].idxs), generator=generator)

    def __repr__(self) -> str:
        return f"Random(seed={self.seed})"


class Taylor:
    """First-order Taylor importance (Molchanov et al., CVPR 2019): ``|w * dL/dw|`` over the group.

    Needs gradients: the pruner runs forward/backward on calibration batches before scoring.
    """

    name = "taylor"
    needs_gradients = True

    def __init__(self) -> None:
        self._importance = tp.importance.GroupTaylorImportance(normalizer=None)

    def __call__(self, group: tp.Group) -> torch.Tensor:
        for dep, _ in group:
            layer = dep.target.module
            weight = getattr(layer, "weight", None)
            if isinstance(layer, _WEIGHTED) and weight is not None and weight.grad is None:
                raise PrunetuneError(
                    "The taylor criterion needs gradients: pass calibration batches so that "
                    "a forward/backward pass runs before scoring."
                )
        return self._importance(group)

    def __repr__(self) -> str:
        return "Taylor()"


#: Built-in criteria by name.
CRITERIA: dict[str, Callable[[], Criterion]] = {
    "l1": L1,
    "l2": L2,
    "fpgm": FPGM,
    "random": Random,
    "taylor": Taylor,
}


def get_criterion(criterion: str | Criterion, *, seed: int = 0) -> Criterion:
    """Resolve a criterion name, or pass a criterion object through.

    Args:
        criterion: ``"l1"``, ``"l2"``, ``"fpgm"``, ``"random"`` or ``"taylor"`` (any case), or any
            callable ``group -> scores``.
        seed: The seed of ``"random"``; ignored otherwise.

    Raises:
        PrunetuneError: For an unknown name or a value that is neither a name nor callable.
    """
    if isinstance(criterion, str):
        key = criterion.strip().lower()
        if key not in CRITERIA:
            raise PrunetuneError(
                f"Unknown criterion {criterion!r}. Known criteria: {', '.join(CRITERIA)}."
            )
        if key == "random":
            return Random(seed=seed)
        return CRITERIA[key]()
    if callable(criterion):
        return criterion
    raise PrunetuneError(
        f"The criterion must be one of {', '.join(CRITERIA)} or a callable group -> scores. "
        f"Got {criterion!r} instead."
    )

"""PCA-driven widths: each unit keeps as many filters as components hold a variance fraction tau.

Ahmed et al. (PLoS ONE 2022), after Garg, Panda & Roy (2020): the activations of a trained
layer are a data matrix with one column per channel; the number of principal components that
keep a fraction ``tau`` of its variance is how many filters the layer needs. The network is
then cut (or rebuilt) to those widths, trained, and pruned further by the geometric-median
criterion (FPGM) and fine-tuned; the last two are the ``filters`` section of the same plan.

What is measured here:

* The activation of a unit is the output of its root conv/linear layer *after* the batch norm
  and activation that follow it in the same ``nn.Sequential`` (VGG's conv-BN-ReLU), as in Garg
  et al., who read post-ReLU feature maps; elsewhere it is the root layer's own output.
* A conv unit's rows are its channel vectors at spatial positions: a batch of ``B`` maps of
  ``H x W`` gives up to ``B * H * W`` rows of ``C`` values. Positions are subsampled evenly per
  sample (at most ``max_rows`` rows per unit), seeded. A linear unit has one row per sample.
* scikit-learn's PCA gives the explained-variance ratios; the width is the smallest ``k`` whose
  cumulative ratio reaches ``tau`` (``tau = 1`` keeps every channel).

Pure :meth:`PCAWidths.apply` reads the ``calibration`` batches, which in a trial are a few
batches only; the ``pca`` stage (:mod:`prunetune.objectives.pca_rebuild`) samples up to
``samples`` training images instead and records the widths it found, and a section that holds
``widths`` is replayed exactly without any PCA.

"Fewer layers where the significant dimension stops growing": :func:`plateau_units` lists the
units whose width does not exceed the previous unit's, and a section with ``"drop_plateau": true``
drops those of them that :func:`~prunetune.pruners.drop.droppable_units` can remove from the cut
network (a same-shape conv-BN-ReLU becomes an identity; a chain layer is folded into the next).
The units dropped are recorded as ``"dropped"``, so a replay drops the same ones.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Iterable, Mapping, Sequence
from numbers import Integral, Real
from typing import Any, ClassVar

import numpy as np
import torch
from sklearn.decomposition import PCA
from torch import nn

from prunetune.errors import PrunetuneError
from prunetune.pruners.calls import ExampleInputs, batch_size, forward, untouched
from prunetune.pruners.drop import drop_units, droppable_units
from prunetune.pruners.methods import Dimension, PruningMethod, _check_keys
from prunetune.pruners.structured import LossFn, prune_filters
from prunetune.pruners.units import Unit, discover_units

__all__ = [
    "DEFAULT_MAX_ROWS",
    "DEFAULT_SAMPLES",
    "REBUILDS",
    "PCAWidths",
    "drop_plateau",
    "explained_variance",
    "pca_widths",
    "plateau_units",
    "prune_to_widths",
    "reinitialize",
    "width_for",
]

#: How a section turns the widths into a network: cut the trained one (keeping its weights), or
#: cut it and re-initialise every weight (the paper's rebuild, trained by the stage).
REBUILDS: tuple[str, ...] = ("prune", "scratch")

#: Training samples the stage feeds through the network to measure the activations.
DEFAULT_SAMPLES = 2000

#: Rows (channel vectors) kept per unit for its PCA: enough for a stable spectrum of 512 channels.
DEFAULT_MAX_ROWS = 16384

#: Layers that may sit between a unit's root layer and the activation PCA reads.
_FOLLOWERS = (
    nn.modules.batchnorm._BatchNorm,
    nn.ReLU,
    nn.ReLU6,
    nn.LeakyReLU,
    nn.PReLU,
    nn.ELU,
    nn.SELU,
    nn.CELU,
    nn.GELU,
    nn.SiLU,
    nn.Mish,
    nn.Hardswish,
    nn.Hardtanh,
    nn.Tanh,
    nn.Sigmoid,
    nn.Identity,
)


def _activation_modules(model: nn.Module, units: Sequence[str]) -> dict[str, nn.Module]:
    """For each unit, the module whose output is its activation: the last BN/activation after it."""
    modules = dict(model.named_modules())
    found = {}
    for name in units:
        target = modules[name]
        parent_name, _, leaf = name.rpartition(".")
        parent = modules[parent_name] if parent_name else model
        if isinstance(parent, nn.Sequential):
            siblings = list(parent._modules.values())
            keys = list(parent._modules)
            for sibling in siblings[keys.index(leaf) + 1:]:
                if not isinstance(sibling, _FOLLOWERS):
                    break
                target = sibling
        found[name] = target
    return found


def _first_inputs(batch: Any) -> Any:
    """The inputs of one batch: ``(inputs, targets)`` pairs or bare inputs."""
    if isinstance(batch, (tuple, list)) and len(batch) == 2:
        return batch[0]
    return batch


def explained_variance(
    model: nn.Module,
    batches: Iterable[Any],
    *,
    units: Sequence[str] | None = None,
    max_rows: int = DEFAULT_MAX_ROWS,
    seed: int = 0,
) -> dict[str, np.ndarray]:
    """Explained-variance ratios of each unit's activations, largest first (PCA per unit).

    Args:
        model: The trained model; it runs in eval mode and is left unchanged.
        batches: ``(inputs, targets)`` pairs (or bare inputs) to run through it.
        units: Unit names (see :func:`discover_units`); all conv units by default.
        max_rows: At most this many rows per unit, spread evenly over the samples.
        seed: Seeds which spatial positions are kept.

    Returns:
        ``{unit: ratios}``, one float array per unit (sums to 1, or all zeros for a unit whose
        activations never vary).
    """
    if isinstance(max_rows, bool) or not isinstance(max_rows, Integral) or max_rows < 1:
        raise PrunetuneError(
            f"The 'max_rows' parameter of explained_variance must be an integer >= 1. Got {max_rows!r} instead."
        )
    inputs = [_first_inputs(batch) for batch in batches]
    if not inputs:
        raise PrunetuneError("PCA widths need activations: the batches given yielded none.")
    known = discover_units(model, inputs[0])
    names = [unit.name for unit in known if unit.kind == "conv"] if units is None else list(units)
    available = [unit.name for unit in known]
    for name in names:
        if name not in available:
            raise PrunetuneError(f"Unknown unit {name!r}. Available units: {', '.join(available) or '(none)'}.")
    total = sum(batch_size(batch) for batch in inputs)
    per_sample = max(1, math.ceil(max_rows / total))
    generator = torch.Generator().manual_seed(int(seed))
    rows: dict[str, list[torch.Tensor]] = {name: [] for name in names}
    kept: dict[str, int] = {name: 0 for name in names}

    def hook_for(name: str):
        def hook(module: nn.Module, args: Any, output: torch.Tensor) -> None:
            if kept[name] >= max_rows:
                return
            data = output.detach()
            positions = data.movedim(1, -1).reshape(data.shape[0], -1, data.shape[1])
            if positions.shape[1] > per_sample:
                chosen = torch.randperm(positions.shape[1], generator=generator)[:per_sample]
                positions = positions[:, chosen]
            block = positions.reshape(-1, data.shape[1])[: max_rows - kept[name]].to(torch.float64).clone()
            rows[name].append(block)
            kept[name] += block.shape[0]

        return hook

    targets = _activation_modules(model, names)
    handles = [targets[name].register_forward_hook(hook_for(name)) for name in names]
    try:
        with untouched(model), torch.no_grad():
            for batch in inputs:
                forward(model, batch)
    finally:
        for handle in handles:
            handle.remove()
    return {name: _ratios(torch.cat(rows[name]).numpy()) for name in names}


def _ratios(data: np.ndarray) -> np.ndarray:
    """scikit-learn's explained-variance ratios of ``data`` (rows x channels), padded to every channel."""
    channels = data.shape[1]
    ratios = np.zeros(channels)
    if data.shape[0] < 2 or not np.any(data.var(axis=0) > 0):
        return ratios
    solver = "covariance_eigh" if data.shape[0] > channels else "full"
    found = PCA(svd_solver=solver).fit(data).explained_variance_ratio_
    found = np.nan_to_num(np.clip(found, 0.0, None))
    ratios[: len(found)] = found
    return ratios


def width_for(ratios: np.ndarray, tau: float) -> int:
    """The smallest number of components whose explained variance reaches ``tau`` (at least 1)."""
    channels = len(ratios)
    total = float(np.sum(ratios))
    if total <= 0:
        return min(channels, 1)
    if tau >= 1.0:
        return channels
    cumulative = np.cumsum(ratios) / total
    return int(min(channels, max(1, int(np.searchsorted(cumulative, tau, side="left")) + 1)))


def pca_widths(
    model: nn.Module,
    batches: Iterable[Any],
    *,
    tau: float | Mapping[str, float],
    units: Sequence[str] | None = None,
    max_rows: int = DEFAULT_MAX_ROWS,
    seed: int = 0,
) -> dict[str, int]:
    """How many filters each unit needs to keep a variance fraction ``tau`` of its activations.

    Args:
        model: The trained model (left unchanged).
        batches: ``(inputs, targets)`` batches to measure on; more samples give steadier widths.
        tau: One fraction in (0, 1] for every unit, or one per unit (its keys are the units when
            ``units`` is not given).
        units: The units to measure; by default every conv unit (or the keys of ``tau``).
        max_rows: Rows per unit kept for its PCA.
        seed: Seeds the subsampling of spatial positions.

    Returns:
        ``{unit: width}`` in unit order, each between 1 and the unit's channels.
    """
    if isinstance(tau, Mapping):
        for name, value in tau.items():
            _check_tau(value, f"tau of unit {name!r}")
        names = list(tau) if units is None else list(units)
        missing = [name for name in names if name not in tau]
        if missing:
            raise PrunetuneError(f"The 'tau' parameter of pca_widths names no fraction for unit {missing[0]!r}.")
    else:
        _check_tau(tau, "'tau' parameter of pca_widths")
        names = units
    spectra = explained_variance(model, batches, units=names, max_rows=max_rows, seed=seed)
    return {
        name: width_for(ratios, float(tau[name] if isinstance(tau, Mapping) else tau))
        for name, ratios in spectra.items()
    }


def plateau_units(widths: Mapping[str, int]) -> list[str]:
    """The units, in the order given, whose width does not grow past the unit before them.

    Where the significant dimension stops growing, Garg et al. and Ahmed et al. remove layers:
    these are the candidates a ``drop`` section may name.
    """
    names = list(widths)
    return [name for before, name in itertools.pairwise(names) if widths[name] <= widths[before]]


def drop_plateau(model: nn.Module, widths: Mapping[str, int], *, example_inputs: ExampleInputs) -> list[str]:
    """Drop, in place, the :func:`plateau_units` of ``widths`` that can be dropped; returns their names.

    They are tried one at a time in order, each on the network the previous drops left, so a
    unit that only a neighbour's drop makes removable (or keeps) is judged on what is there.
    """
    dropped = []
    for name in plateau_units(widths):
        if name in {candidate.name for candidate in droppable_units(model, example_inputs)}:
            drop_units(model, [name], example_inputs)
            dropped.append(name)
    return dropped


def prune_to_widths(model: nn.Module, widths: Mapping[str, int], *, example_inputs: ExampleInputs) -> nn.Module:
    """Remove the filters nearest each unit's geometric median (FPGM) until it has its width, in place."""
    channels = {unit.name: unit.channels for unit in discover_units(model, example_inputs)}
    ratios = {}
    for name, width in widths.items():
        if name not in channels:
            raise PrunetuneError(f"Unknown unit {name!r}. Available units: {', '.join(channels) or '(none)'}.")
        if not 1 <= int(width) <= channels[name]:
            raise PrunetuneError(
                f"The width of unit {name!r} must be between 1 and its {channels[name]} channels. "
                f"Got {width!r} instead."
            )
        if int(width) < channels[name]:
            ratios[name] = 1.0 - int(width) / channels[name]
    if ratios:
        prune_filters(model, ratios, example_inputs=example_inputs, criterion="fpgm")
    return model


def reinitialize(model: nn.Module, *, seed: int = 0) -> nn.Module:
    """Give every layer fresh weights (PyTorch's default initialisation), seeded, in place.

    The rebuilt network of the paper is trained from scratch at the PCA widths; the running
    statistics of batch norms are reset too. The global random state is left as it was.
    """
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(int(seed))
        for module in model.modules():
            reset = getattr(module, "reset_parameters", None)
            if callable(reset):
                reset()
    return model


def _check_tau(value: Any, what: str) -> float:
    if isinstance(value, bool) or not isinstance(value, Real) or not 0.0 < float(value) <= 1.0:
        raise PrunetuneError(f"The {what} must be in (0, 1]. Got {value!r} instead.")
    return float(value)


def _check_lr(value: Any, what: str) -> float:
    if isinstance(value, bool) or not isinstance(value, Real) or not math.isfinite(value) or value <= 0:
        raise PrunetuneError(f"The {what} must be a number > 0. Got {value!r} instead.")
    return float(value)


def _check_int(value: Any, what: str, least: int) -> int:
    if isinstance(value, bool) or not isinstance(value, Integral) or int(value) < least:
        raise PrunetuneError(f"The {what} must be an integer >= {least}. Got {value!r} instead.")
    return int(value)


class PCAWidths(PruningMethod):
    """PCA widths (Ahmed et al. 2022): each unit keeps the filters its activations' variance needs.

    Section: ``{"tau": 0.95, "rebuild": "prune"}`` (one fraction for every conv unit) or
    ``{"taus": {"features.0": 0.9, ...}, "rebuild": "scratch", "train_epochs": 2, "train_lr": 0.05}``
    (``train_lr`` defaults to the trial's fine-tune rate). Optional keys:
    ``"linear"`` (a global tau also sets the widths of fully connected units, one row per sample),
    ``"drop_plateau"`` (drop the droppable units where the width stops growing), ``"samples"``
    (training samples the stage measures on), ``"seed"`` (seeds the sampling and the
    re-initialisation), and what the stage records: ``"widths"`` (``{unit: filters}``; present,
    it is applied without any PCA) and ``"dropped"`` (the units ``drop_plateau`` removed).

    The cut keeps the filters farthest from their layer's geometric median (FPGM). ``"prune"``
    keeps the trained weights; ``"scratch"`` re-initialises the cut network, which the stage then
    trains for ``train_epochs`` epochs (the paper's rebuild).

    Args:
        tau_low, tau_high: Bounds of the tau dimensions, in (0, 1].
        per_layer: One tau per conv unit instead of one for the whole network.
        rebuild: ``"prune"`` or ``"scratch"``, written into sections.
        train_epochs: Epochs the stage trains a rebuilt (``"scratch"``) network.
        train_lr: Its learning rate (by default the trial's fine-tune rate, usually too low to
            train from scratch).
        samples: Training samples the stage measures activations on.
        linear: Also set the widths of fully connected units.
        drop_plateau: Drop the units where the width stops growing (see :func:`drop_plateau`).
        step: Optional grid step of the tau dimensions.
        seed: Seed written into sections.
    """

    name: ClassVar[str] = "pca"
    stage: ClassVar[str] = "prunetune.objectives.pca_rebuild:pca_stage"
    KEYS: ClassVar[tuple[str, ...]] = (
        "tau", "taus", "widths", "rebuild", "train_epochs", "train_lr", "samples", "linear", "drop_plateau",
        "dropped", "seed",
    )

    def __init__(
        self,
        *,
        tau_low: float = 0.8,
        tau_high: float = 0.999,
        per_layer: bool = False,
        rebuild: str = "prune",
        train_epochs: int = 1,
        train_lr: float | None = None,
        samples: int = DEFAULT_SAMPLES,
        linear: bool = False,
        drop_plateau: bool = False,
        step: float | None = None,
        seed: int | None = None,
    ) -> None:
        self.tau_low = tau_low
        self.tau_high = tau_high
        self.per_layer = per_layer
        self.rebuild = rebuild
        self.train_epochs = train_epochs
        self.train_lr = train_lr
        self.samples = samples
        self.linear = linear
        self.drop_plateau = drop_plateau
        self.step = step
        self.seed = seed

    def check_options(self) -> None:
        """Raise :class:`PrunetuneError` for a bad constructor option (before any model is read)."""
        low = _check_tau(self.tau_low, "'tau_low' parameter of PCAWidths")
        high = _check_tau(self.tau_high, "'tau_high' parameter of PCAWidths")
        if low > high:
            raise PrunetuneError(
                f"The 'tau_low' parameter of PCAWidths must not exceed 'tau_high' ({high}). Got {low!r} instead."
            )
        if self.rebuild not in REBUILDS:
            raise PrunetuneError(
                f"The 'rebuild' parameter of PCAWidths must be one of {', '.join(REBUILDS)}. "
                f"Got {self.rebuild!r} instead."
            )
        for flag in ("per_layer", "linear", "drop_plateau"):
            if not isinstance(getattr(self, flag), bool):
                raise PrunetuneError(
                    f"The {flag!r} parameter of PCAWidths must be true or false. Got {getattr(self, flag)!r} instead."
                )
        _check_int(self.train_epochs, "'train_epochs' parameter of PCAWidths", 0)
        if self.train_lr is not None:
            _check_lr(self.train_lr, "'train_lr' parameter of PCAWidths")
        _check_int(self.samples, "'samples' parameter of PCAWidths", 1)
        if self.seed is not None:
            _check_int(self.seed, "'seed' parameter of PCAWidths", 0)

    def _units(self, model: nn.Module, example_inputs: ExampleInputs) -> list[Unit]:
        kinds = ("conv", "linear") if self.linear else ("conv",)
        return [unit for unit in discover_units(model, example_inputs) if unit.kind in kinds]

    def dimensions(self, model: nn.Module, example_inputs: ExampleInputs) -> list[Dimension]:
        """``pca.tau`` for the whole network, or ``pca.<unit>`` per unit, in [tau_low, tau_high]."""
        self.check_options()
        units = self._units(model, example_inputs)
        if not units:
            return []
        bounds = {"kind": "float", "low": float(self.tau_low), "high": float(self.tau_high), "step": self.step}
        if not self.per_layer:
            return [Dimension(name=f"{self.name}.tau", unit="*", **bounds)]
        return [Dimension(name=f"{self.name}.{unit.name}", unit=unit.name, **bounds) for unit in units]

    def section(self, values: Mapping[str, Any]) -> dict[str, Any]:
        self.check_options()
        section: dict[str, Any] = {}
        prefix = self.name + "."
        if self.per_layer:
            section["taus"] = {key[len(prefix):]: float(v) for key, v in values.items() if key.startswith(prefix)}
        else:
            section["tau"] = float(values[f"{self.name}.tau"])
            if self.linear:
                section["linear"] = True
        if self.drop_plateau:
            section["drop_plateau"] = True
        section["rebuild"] = self.rebuild
        if self.rebuild == "scratch":
            section["train_epochs"] = int(self.train_epochs)
            if self.train_lr is not None:
                section["train_lr"] = float(self.train_lr)
        if self.samples != DEFAULT_SAMPLES:
            section["samples"] = int(self.samples)
        if self.seed is not None:
            section["seed"] = int(self.seed)
        return section

    def values(self, section: Mapping[str, Any]) -> dict[str, Any]:
        """``{"pca.tau": t}`` or ``{"pca.<unit>": t}``; a section with widths only determines none."""
        if not isinstance(section, Mapping):
            raise PrunetuneError(f"The {self.name!r} section must be a mapping. Got {section!r} instead.")
        if "taus" in section:
            if not self.per_layer:
                raise PrunetuneError(
                    f"The {self.name!r} section has per-unit 'taus', but this PCAWidths searches one tau "
                    "(per_layer=False)."
                )
            return {f"{self.name}.{unit}": float(tau) for unit, tau in section["taus"].items()}
        if "tau" in section:
            if self.per_layer:
                raise PrunetuneError(
                    f"The {self.name!r} section has one 'tau', but this PCAWidths searches one tau per unit "
                    "(per_layer=True)."
                )
            return {f"{self.name}.tau": float(section["tau"])}
        return {}

    def validate(self, section: Mapping[str, Any], model: nn.Module, example_inputs: ExampleInputs) -> None:
        _check_keys(section, self.name, self.KEYS, ())
        given = [key for key in ("tau", "taus") if key in section]
        if len(given) > 1 or not (given or "widths" in section):
            raise PrunetuneError(
                f"The {self.name!r} section needs exactly one of 'tau' and 'taus' (or the 'widths' it recorded). "
                f"Got {', '.join(given) or 'none'} instead."
            )
        if "tau" in section:
            _check_tau(section["tau"], f"'tau' of the {self.name!r} section")
        rebuild = section.get("rebuild", "prune")
        if rebuild not in REBUILDS:
            raise PrunetuneError(
                f"The 'rebuild' of the {self.name!r} section must be one of {', '.join(REBUILDS)}. "
                f"Got {rebuild!r} instead."
            )
        if "train_lr" in section:
            _check_lr(section["train_lr"], f"'train_lr' of the {self.name!r} section")
        for key, least in (("train_epochs", 0), ("samples", 1), ("seed", 0)):
            if key in section:
                _check_int(section[key], f"{key!r} of the {self.name!r} section", least)
        for flag in ("linear", "drop_plateau"):
            if not isinstance(section.get(flag, False), bool):
                raise PrunetuneError(
                    f"The {flag!r} of the {self.name!r} section must be true or false. Got {section[flag]!r} instead."
                )
        units = {unit.name: unit for unit in discover_units(model, example_inputs)}
        dropped = section.get("dropped", [])
        if not isinstance(dropped, list) or any(not isinstance(name, str) or name not in units for name in dropped):
            raise PrunetuneError(
                f"The 'dropped' of the {self.name!r} section must list unit names. Got {dropped!r} instead. "
                f"Available units: {', '.join(units) or '(none)'}."
            )
        for key in ("taus", "widths"):
            if key not in section:
                continue
            named = section[key]
            if not isinstance(named, Mapping):
                raise PrunetuneError(
                    f"The {key!r} of the {self.name!r} section must map unit names to numbers. Got {named!r} instead."
                )
            for name, value in named.items():
                if name not in units:
                    raise PrunetuneError(
                        f"Unknown unit {name!r} in the {self.name!r} section. "
                        f"Available units: {', '.join(units) or '(none)'}."
                    )
                if key == "taus":
                    _check_tau(value, f"tau of unit {name!r}")
                elif (
                    isinstance(value, bool) or not isinstance(value, Integral)
                    or not 1 <= value <= units[name].channels
                ):
                    raise PrunetuneError(
                        f"The width of unit {name!r} must be an integer between 1 and its {units[name].channels} "
                        f"channels. Got {value!r} instead."
                    )

    def widths(
        self,
        model: nn.Module,
        section: Mapping[str, Any],
        batches: Iterable[Any],
        *,
        example_inputs: ExampleInputs,
    ) -> dict[str, int]:
        """The widths ``section`` asks for on ``model``: recorded ones, or PCA on ``batches``."""
        if "widths" in section:
            return {name: int(width) for name, width in section["widths"].items()}
        seed = int(section.get("seed", 0))
        present = discover_units(model, example_inputs)
        if "taus" in section:
            # A unit an earlier drop section removed has no width left to set.
            units = [unit.name for unit in present if unit.name in section["taus"]]
            tau: float | dict[str, float] = {name: float(section["taus"][name]) for name in units}
        else:
            kinds = ("conv", "linear") if section.get("linear", False) else ("conv",)
            units = [unit.name for unit in present if unit.kind in kinds]
            tau = float(section["tau"])
        if not units:
            return {}
        return pca_widths(model, batches, tau=tau, units=units, seed=seed)

    def cut(
        self,
        model: nn.Module,
        section: Mapping[str, Any],
        batches: Iterable[Any],
        *,
        example_inputs: ExampleInputs,
    ) -> dict[str, Any]:
        """Cut ``model`` in place as ``section`` says; returns the section as applied.

        The widths are the recorded ones or PCA's on ``batches``; the filters kept are the
        farthest from their layer's geometric median (FPGM); the plateau units are dropped when
        asked; ``"scratch"`` re-initialises what is left. The returned section holds ``widths``
        (and ``dropped``), so applying it again gives the same network without any PCA.
        """
        applied = dict(section)
        if "widths" not in applied:
            applied["widths"] = self.widths(model, section, batches, example_inputs=example_inputs)
        prune_to_widths(model, applied["widths"], example_inputs=example_inputs)
        if "dropped" in applied:
            if applied["dropped"]:
                drop_units(model, applied["dropped"], example_inputs)
        elif applied.get("drop_plateau", False):
            applied["dropped"] = drop_plateau(model, applied["widths"], example_inputs=example_inputs)
        if applied.get("rebuild", "prune") == "scratch":
            reinitialize(model, seed=int(applied.get("seed", 0)))
        return applied

    def apply(
        self,
        model: nn.Module,
        section: Mapping[str, Any],
        *,
        example_inputs: ExampleInputs,
        calibration: Iterable[tuple[Any, Any]] | None = None,
        loss_fn: LossFn | None = None,
    ) -> nn.Module:
        """Cut ``model`` to the section's widths (PCA on ``calibration`` when none are recorded).

        See :meth:`cut`. ``"scratch"`` re-initialises the cut model; training it is the stage's work.
        """
        if "widths" not in section and calibration is None:
            raise PrunetuneError(
                f"The {self.name!r} section needs calibration batches to measure activations on "
                "(or the 'widths' a trial recorded)."
            )
        self.cut(model, section, calibration or [], example_inputs=example_inputs)
        return model

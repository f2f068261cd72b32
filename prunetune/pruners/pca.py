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

from collections.abc import Iterable, Mapping
from numbers import Integral
from typing import Any, ClassVar

from torch import nn

from prunetune.errors import PrunetuneError, is_finite_number
from prunetune.pruners.calls import ExampleInputs
from prunetune.pruners.drop import drop_units
from prunetune.pruners.methods import Dimension, PruningMethod, _check_keys
from prunetune.pruners.structured import LossFn
from prunetune.pruners.pca_widths import (
    DEFAULT_MAX_ROWS,
    DEFAULT_SAMPLES,
    check_tau,
    drop_plateau,
    explained_variance,
    pca_widths,
    plateau_units,
    prune_to_widths,
    reinitialize,
    width_for,
)
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

def _check_lr(value: Any, what: str) -> float:
    if not is_finite_number(value) or value <= 0:
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
        low = check_tau(self.tau_low, "'tau_low' parameter of PCAWidths")
        high = check_tau(self.tau_high, "'tau_high' parameter of PCAWidths")
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
            check_tau(section["tau"], f"'tau' of the {self.name!r} section")
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
                    check_tau(value, f"tau of unit {name!r}")
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

"""Quantization of fully connected layers: k-means weight sharing or uniform affine, per-layer bit widths.

The last step of the seed papers' pipeline (Anik, Kelso, Lee 2024 quantize the fully connected
layers after filter pruning; Deep Compression, Han et al. 2016, shares weights by k-means). A
quantized layer stays an ``nn.Linear`` of the same shape; its weight becomes a
:mod:`torch.nn.utils.parametrize` parametrization that computes ``codebook[indices]`` on every
access:

- ``indices`` (a buffer, ``uint8``; ``int16`` for 8 bits) holds one code per weight. Code ``2**b``
  means *no index*: the weight was zero (pruned) when the layer was quantized and stays exactly
  zero, assigned to no centroid and counted in no index.
- ``parametrizations.weight.original`` holds what fine-tuning trains: for ``kmeans`` the
  ``2**b`` centroids themselves; for ``uniform`` the pair ``[scale, zero_point]`` whose levels
  are ``scale * (k - zero_point)``, ``k = 0 .. 2**b - 1``.

Gradients reach the shared values through the indexing, so a centroid's gradient is the sum of
the gradients of the weights that share it (Deep Compression's centroid fine-tuning); on the way
back it is divided by how far the shared value moves its weights (the number of weights sharing a
centroid), so the learning rate chosen for single weights suits it (see ``step_scale``). The codes
never change: a layer keeps at most ``2**b`` distinct nonzero values however it trains. The state
dict holds the codes and the shared values, never the float weights.
"""

from __future__ import annotations

import warnings
from collections.abc import Iterable, Mapping, Sequence
from numbers import Integral
from typing import Any, ClassVar

import numpy as np
import torch
from torch import nn
from torch.nn.utils import parametrize

from prunetune.errors import PrunetuneError
from prunetune.pruners.calls import ExampleInputs
from prunetune.pruners.measure import Storage
from prunetune.pruners.methods import (
    Dimension,
    PruningMethod,
    _check_keys,
    _check_names,
    _not_dropped,
    _values_by_unit,
)
from prunetune.pruners.structured import LossFn
from prunetune.pruners.unstructured import make_masks_permanent

__all__ = [
    "FLOAT_BITS",
    "MAX_BITS",
    "SCHEMES",
    "KMeansWeight",
    "Quantization",
    "QuantizedWeight",
    "UniformWeight",
    "quantize_layer",
    "quantized_layers",
]

#: A bit width that means "leave this layer in float32": a searcher may choose not to quantize.
FLOAT_BITS = 32
#: The widest code a layer may use.
MAX_BITS = 8
#: K-means fits on at most this many of a layer's weights (evenly spaced in sorted order); all are assigned.
MAX_FIT_SAMPLES = 65_536


def _index_dtype(bits: int) -> torch.dtype:
    """The narrowest integer type holding the codes 0 .. 2**bits (the last one meaning "no index")."""
    return torch.uint8 if 2**bits <= 255 else torch.int16


class QuantizedWeight(nn.Module):
    """A parametrization ``weight = codebook[indices]`` with one code per weight; subclasses define the codebook.

    Registering it (or assigning ``layer.weight`` later) quantizes the given weight through
    :meth:`right_inverse`: nonzero weights get codes, zeros get the "no index" code ``2**bits``.

    Args:
        bits: Bits per code; the codebook has ``2**bits`` entries.
    """

    scheme: ClassVar[str]

    def __init__(self, *, bits: int) -> None:
        super().__init__()
        self.bits = bits
        self.register_buffer("indices", torch.zeros(0, dtype=_index_dtype(bits)))
        self._counted: tuple[tuple[int, int], torch.Tensor] | None = None

    @property
    def no_code(self) -> int:
        """The code of a weight that has no index: zero, pruned before quantization."""
        return 2**self.bits

    def codebook(self, original: torch.Tensor) -> torch.Tensor:
        """The ``2**bits`` values the codes point at, computed from the trained ``original``."""
        raise NotImplementedError

    def members(self) -> torch.Tensor:
        """How many weights hold each code (the last entry: weights with no index); kept until the codes change."""
        if self.indices.is_inference():  # no version counter to key a cache on
            return torch.bincount(self.indices.flatten().long(), minlength=self.no_code + 1)
        key = (self.indices.data_ptr(), self.indices._version)
        if self._counted is None or self._counted[0] != key:
            self._counted = (key, torch.bincount(self.indices.flatten().long(), minlength=self.no_code + 1))
        return self._counted[1]

    def fit(self, values: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """``(original, codes)`` for a 1-D tensor of nonzero weights: what to train, and each value's code."""
        raise NotImplementedError

    def step_scale(self, original: torch.Tensor) -> torch.Tensor:
        """Per entry of ``original``, what its gradient is multiplied by before the optimizer sees it.

        1 / the sum over the layer's weights of (d weight / d entry)^2: the entry then steps by the
        least-squares fit of the steps its weights would take on their own. Without it a 2-bit
        centroid shared by thousands of weights steps thousands of times too far and fine-tuning
        diverges at learning rates that suit single weights.
        """
        raise NotImplementedError

    def forward(self, original: torch.Tensor) -> torch.Tensor:
        if original.requires_grad and torch.is_grad_enabled():
            original = _scale_gradient(original, self.step_scale(original.detach()))
        codebook = self.codebook(original)
        table = torch.cat([codebook, codebook.new_zeros(1)])  # the "no index" code reads zero
        return table.index_select(0, self.indices.flatten().long()).view(self.indices.shape)

    def right_inverse(self, weight: torch.Tensor) -> torch.Tensor:
        """Quantize ``weight``: store its codes, return the shared values that become ``original``."""
        values = weight.detach()
        kept = values != 0
        original, codes = self.fit(values[kept].flatten())
        indices = torch.full(values.shape, self.no_code, dtype=_index_dtype(self.bits), device=values.device)
        indices[kept] = codes.to(device=values.device, dtype=indices.dtype)
        self.indices = indices
        return original.to(device=values.device, dtype=weight.dtype)

    def prunetune_storage(self, original: torch.Tensor) -> Storage:
        """What the layer's weight costs: ``bits`` per indexed weight plus 32 per shared float value.

        Zeros have no index and cost nothing, as unstructured pruning counts them
        (their positions, as for any sparse layer, are not counted).
        """
        indexed = int(self.members()[: self.no_code].sum())
        return Storage(
            params=self.indices.numel(),
            nonzero_params=indexed,
            size_bytes=self.indices.numel() * self.indices.element_size() + original.numel() * original.element_size(),
            bits=self.bits * indexed + original.numel() * original.element_size() * 8,
        )

    def extra_repr(self) -> str:
        return f"scheme={self.scheme}, bits={self.bits}"


class KMeansWeight(QuantizedWeight):
    """Weight sharing (Deep Compression): ``2**bits`` centroids fitted by k-means, trained as parameters.

    The centroids start evenly spaced between the smallest and largest nonzero weight (the linear
    initialisation Deep Compression found best: it keeps centroids on the rare large weights) and
    scikit-learn's ``KMeans`` refines them. A layer with at most ``2**bits`` distinct nonzero values
    keeps them exactly (the spare centroids repeat the largest and serve no weight).
    """

    scheme: ClassVar[str] = "kmeans"

    def codebook(self, original: torch.Tensor) -> torch.Tensor:
        return original

    def step_scale(self, original: torch.Tensor) -> torch.Tensor:
        """1 / the number of weights sharing each centroid: a centroid steps by their mean gradient."""
        return 1.0 / self.members()[: self.no_code].clamp_min(1).to(original.dtype)

    def fit(self, values: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        size = 2**self.bits
        if values.numel() == 0:
            return torch.zeros(size), torch.zeros(0, dtype=torch.long)
        distinct = torch.unique(values.double().cpu())
        if distinct.numel() <= size:
            centroids = torch.cat([distinct, distinct[-1:].expand(size - distinct.numel())])
        else:
            centroids = _kmeans(values.double().cpu(), size)
        return centroids.float(), _nearest(values.double().cpu(), centroids)


class UniformWeight(QuantizedWeight):
    """Uniform affine quantization: ``2**bits`` evenly spaced levels ``scale * (k - zero_point)``.

    ``scale`` and ``zero_point`` start so that the levels span the smallest to the largest nonzero
    weight; each weight takes the nearest level. Fine-tuning trains the pair (an exact gradient,
    since the codes are fixed), not latent float weights through a straight-through estimator: the
    model then holds only codes and two floats, and what trains is what is stored. The zero point
    is a float, not rounded to an integer: pruned zeros have their own code, so no level needs to
    be exactly zero.
    """

    scheme: ClassVar[str] = "uniform"

    def codebook(self, original: torch.Tensor) -> torch.Tensor:
        levels = torch.arange(2**self.bits, device=original.device, dtype=original.dtype)
        return original[0] * (levels - original[1])

    def step_scale(self, original: torch.Tensor) -> torch.Tensor:
        """1 / sum of squared d(weight)/d(scale) and d(weight)/d(zero point) over the indexed weights."""
        members = self.members()[: self.no_code].to(original.dtype)
        levels = torch.arange(self.no_code, device=original.device, dtype=original.dtype)
        scale, zero_point = original[0], original[1]
        by_scale = (members * (levels - zero_point) ** 2).sum()  # sum of (k - zero_point)^2 over the weights
        by_zero_point = members.sum() * scale**2
        return 1.0 / torch.stack([by_scale, by_zero_point]).clamp_min(1e-12)

    def fit(self, values: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        top = 2**self.bits - 1
        if values.numel() == 0:
            return torch.tensor([1.0, 0.0]), torch.zeros(0, dtype=torch.long)
        values = values.double().cpu()
        low, high = float(values.min()), float(values.max())
        scale = (high - low) / top if high > low else abs(low)
        zero_point = -low / scale
        codes = torch.clamp(torch.round(values / scale + zero_point), 0, top).long()
        return torch.tensor([scale, zero_point]), codes


#: Scheme name -> its parametrization.
SCHEMES: dict[str, type[QuantizedWeight]] = {KMeansWeight.scheme: KMeansWeight, UniformWeight.scheme: UniformWeight}


def _scale_gradient(tensor: torch.Tensor, factor: torch.Tensor) -> torch.Tensor:
    """``tensor`` itself (bit for bit) with its gradient multiplied by ``factor`` on the way back."""
    return tensor.detach() + (tensor - tensor.detach()) * factor


def _kmeans(values: torch.Tensor, size: int) -> torch.Tensor:
    """Sorted k-means centroids of 1-D ``values`` from a linear initialisation (deterministic)."""
    from sklearn.cluster import KMeans
    from sklearn.exceptions import ConvergenceWarning

    ordered = torch.sort(values).values
    if ordered.numel() > MAX_FIT_SAMPLES:  # evenly spaced ranks keep the distribution's shape
        ordered = ordered[torch.linspace(0, ordered.numel() - 1, MAX_FIT_SAMPLES).round().long()]
    sample = ordered.numpy()[:, None]
    init = np.linspace(sample[0, 0], sample[-1, 0], size)[:, None]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        fitted = KMeans(n_clusters=size, init=init, n_init=1, random_state=0).fit(sample)
    return torch.sort(torch.from_numpy(fitted.cluster_centers_.ravel())).values


def _nearest(values: torch.Tensor, centroids: torch.Tensor) -> torch.Tensor:
    """The index of the nearest of the sorted ``centroids`` for each value."""
    middles = (centroids[1:] + centroids[:-1]) / 2
    return torch.bucketize(values, middles)


def quantize_layer(layer: nn.Module, *, bits: int, scheme: str = "kmeans") -> QuantizedWeight:
    """Quantize ``layer``'s weight in place to ``bits`` bits by ``scheme``; returns its parametrization.

    A weight-pruning mask is folded in first (its zeros get no index and stay zero); a layer
    already quantized is quantized again from its current values.
    """
    if not isinstance(layer, nn.Linear):
        raise PrunetuneError(f"Only nn.Linear layers can be quantized. Got {type(layer).__name__} instead.")
    _check_bits(bits, "quantize_layer", allow_float=False)
    if scheme not in SCHEMES:
        raise PrunetuneError(
            f"The 'scheme' parameter of quantize_layer must be one of {', '.join(SCHEMES)}. Got {scheme!r} instead."
        )
    if parametrize.is_parametrized(layer, "weight"):
        if not isinstance(layer.parametrizations.weight[0], QuantizedWeight):
            raise PrunetuneError("This layer's weight is parametrized by something else; it cannot be quantized.")
        parametrize.remove_parametrizations(layer, "weight", leave_parametrized=True)
    make_masks_permanent(layer)  # its zeros get no index below
    quantizer = SCHEMES[scheme](bits=bits)
    parametrize.register_parametrization(layer, "weight", quantizer)
    return quantizer


def quantized_layers(model: nn.Module) -> dict[str, QuantizedWeight]:
    """Module path -> parametrization of every quantized layer of ``model``."""
    return {
        name: module.parametrizations.weight[0]
        for name, module in model.named_modules()
        if parametrize.is_parametrized(module, "weight") and isinstance(module.parametrizations.weight[0], QuantizedWeight)
    }


def _check_bits(value: Any, owner: str, *, allow_float: bool = True) -> int:
    allowed = f"an integer from 1 to {MAX_BITS}" + (f", or {FLOAT_BITS} (not quantized)" if allow_float else "")
    ok = isinstance(value, Integral) and not isinstance(value, bool)
    if not ok or not (1 <= value <= MAX_BITS or (allow_float and value == FLOAT_BITS)):
        raise PrunetuneError(f"The 'bits' parameter of {owner} must be {allowed}. Got {value!r} instead.")
    return int(value)


def _linear_layers(model: nn.Module) -> list[str]:
    return [name for name, module in model.named_modules() if isinstance(module, nn.Linear)]


class Quantization(PruningMethod):
    """Per-layer bit widths for the fully connected layers (the output layer included: shapes do not change).

    Section: ``{"scheme": "kmeans", "bits": {"classifier.0": 4, "classifier.3": 8}}``; a width of
    32 leaves a layer in float32. ``scheme`` is ``kmeans`` (weight sharing, trained centroids) or
    ``uniform`` (affine levels, trained scale and zero point). A layer an earlier ``drop`` section
    removed is skipped, as in :class:`~prunetune.pruners.methods.FilterPruning`.

    Args:
        bits: The widths a search chooses from per layer (add 32 to let it keep a layer in float).
        scheme: Scheme written into the sections this method builds.
        layers: ``"linear"`` (every ``nn.Linear``) or the module paths of the linear layers to search.
    """

    name: ClassVar[str] = "bits"
    KEYS: ClassVar[tuple[str, ...]] = ("scheme", "bits")

    def __init__(
        self,
        *,
        bits: Sequence[int] = (2, 3, 4, 5, 6, 8),
        scheme: str = "kmeans",
        layers: str | Sequence[str] = "linear",
    ) -> None:
        self.bits = bits
        self.scheme = scheme
        self.layers = layers

    def check_options(self) -> None:
        self._choices()
        layers = self.layers
        if layers != "linear" and (
            isinstance(layers, (str, bytes)) or not isinstance(layers, Sequence) or not layers
            or not all(isinstance(name, str) for name in layers)
        ):
            raise PrunetuneError(
                "The 'layers' parameter of Quantization must be 'linear' or a list of linear layer paths. "
                f"Got {layers!r} instead."
            )

    def _choices(self) -> tuple[int, ...]:
        choices = self.bits
        if isinstance(choices, (str, bytes)) or not isinstance(choices, Sequence) or not choices:
            raise PrunetuneError(
                f"The 'bits' parameter of Quantization must be a non-empty list of widths. Got {choices!r} instead."
            )
        widths = [_check_bits(value, "Quantization") for value in choices]
        if len(set(widths)) != len(widths):
            raise PrunetuneError(f"The 'bits' parameter of Quantization must not repeat a width. Got {choices!r} instead.")
        if self.scheme not in SCHEMES:
            raise PrunetuneError(
                f"The 'scheme' parameter of Quantization must be one of {', '.join(SCHEMES)}. Got {self.scheme!r} instead."
            )
        return tuple(sorted(widths, reverse=True))

    def _layers(self, model: nn.Module) -> list[str]:
        linear = _linear_layers(model)
        if self.layers == "linear":
            return linear
        if isinstance(self.layers, (str, bytes)) or not isinstance(self.layers, Sequence) or not self.layers:
            raise PrunetuneError(
                "The 'layers' parameter of Quantization must be 'linear' or a list of linear layer paths. "
                f"Got {self.layers!r} instead."
            )
        for name in self.layers:
            if name not in linear:
                raise PrunetuneError(
                    f"The 'layers' parameter of Quantization names {name!r}, which is not a linear layer of this "
                    f"model. Linear layers: {', '.join(linear) or '(none)'}."
                )
        return [name for name in linear if name in self.layers]

    def dimensions(self, model: nn.Module, example_inputs: ExampleInputs) -> list[Dimension]:
        """One categorical width per chosen linear layer, ``bits.<layer>``.

        The choices run from the widest to the narrowest, so that, as for a ratio, the first (the
        low end of a vector encoding) is the gentlest and each step onwards compresses more.
        """
        choices = self._choices()
        return [
            Dimension(name=f"{self.name}.{layer}", unit=layer, kind="categorical", choices=choices)
            for layer in self._layers(model)
        ]

    def section(self, values: Mapping[str, Any]) -> dict[str, Any]:
        self._choices()
        return {"scheme": self.scheme, "bits": {layer: int(value) for layer, value in _values_by_unit(self.name, values).items()}}

    def values(self, section: Mapping[str, Any]) -> dict[str, Any]:
        """The dimension values that :meth:`section` turns into ``section``."""
        return {f"{self.name}.{layer}": int(value) for layer, value in section.get("bits", {}).items()}

    def validate(self, section: Mapping[str, Any], model: nn.Module, example_inputs: ExampleInputs) -> None:
        _check_keys(section, self.name, self.KEYS, ("bits",))
        scheme = section.get("scheme", "kmeans")
        if scheme not in SCHEMES:
            raise PrunetuneError(
                f"Unknown scheme {scheme!r} in the {self.name!r} section. Known schemes: {', '.join(SCHEMES)}."
            )
        widths = _check_names(section["bits"], self.name, "bits", _linear_layers(model), "linear layer")
        for layer, value in widths.items():
            _check_bits(value, f"the {self.name!r} section at layer {layer!r}")

    def apply(
        self,
        model: nn.Module,
        section: Mapping[str, Any],
        *,
        example_inputs: ExampleInputs,
        calibration: Iterable[tuple[Any, Any]] | None = None,
        loss_fn: LossFn | None = None,
    ) -> nn.Module:
        scheme = section.get("scheme", "kmeans")
        modules = dict(model.named_modules())
        for layer, bits in _not_dropped(model, section["bits"]).items():
            if int(bits) == FLOAT_BITS:
                continue
            if not isinstance(modules.get(layer), nn.Linear):
                raise PrunetuneError(
                    f"Layer {layer!r} of the {self.name!r} section is no longer a linear layer of the model "
                    "(an earlier section removed it)."
                )
            quantize_layer(modules[layer], bits=int(bits), scheme=scheme)
        return model


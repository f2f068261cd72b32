"""A fully connected autoencoder, the base of the accordion autoencoder (A2E).

A2E drops or narrows hidden layers, so each side is a plain :class:`nn.Sequential` of
Linear + activation pairs whose indices name the layers a plan removes; the decoder mirrors
the encoder so the two can be narrowed symmetrically.
"""

from __future__ import annotations

import numbers
from collections.abc import Sequence

import torch
from torch import nn

from prunetune.errors import PrunetuneError
from prunetune.zoo.models._common import (
    ACTIVATIONS,
    Size,
    check_choice,
    check_in_features,
    check_positive_int,
    check_width,
    make_activation,
    model_owner,
    scaled,
)

__all__ = ["Autoencoder"]


class Autoencoder(nn.Module):
    """Encoder ``in -> widths... -> code`` and mirrored decoder ``code -> reversed widths -> in``.

    Inputs of any shape are flattened and the reconstruction comes back in the input's shape,
    so a reconstruction loss compares like with like for images and tabular rows alike.
    The code layer is linear (no activation), the usual choice for anomaly scores.

    Args:
        in_features: Input features; when ``None`` it is ``in_channels * height * width``.
        in_channels: Image channels, used only when ``in_features`` is ``None``.
        input_size: Image side (or (height, width)), used only when ``in_features`` is ``None``.
        encoder_widths: Hidden widths of the encoder, outermost first; may be empty.
        code_size: Width of the code (bottleneck); ``width`` does not scale it.
        activation: Hidden activation, one of :data:`ACTIVATIONS`.
        output_activation: Applied to the reconstruction ("sigmoid" for data in [0, 1]).
        width: Multiplier for the hidden widths.
    """

    def __init__(
        self,
        *,
        in_features: int | None = None,
        in_channels: int = 1,
        input_size: Size = 28,
        encoder_widths: Sequence[int] = (128, 64),
        code_size: int = 16,
        activation: str = "relu",
        output_activation: str = "identity",
        width: float = 1.0,
    ) -> None:
        super().__init__()
        owner = model_owner(self)
        width = check_width(width, owner=owner)
        in_features = check_in_features(in_features, in_channels=in_channels, input_size=input_size, owner=owner)
        code_size = check_positive_int(code_size, name="code_size", owner=owner)
        check_choice(activation, name="activation", owner=owner, choices=tuple(ACTIVATIONS))
        check_choice(output_activation, name="output_activation", owner=owner, choices=tuple(ACTIVATIONS))
        widths = [scaled(w, width) for w in _check_widths(encoder_widths, owner=owner)]

        encoder: list[nn.Module] = []
        previous = in_features
        for hidden in widths:
            encoder += [nn.Linear(previous, hidden), make_activation(activation, owner=owner)]
            previous = hidden
        encoder.append(nn.Linear(previous, code_size))

        decoder: list[nn.Module] = []
        previous = code_size
        for hidden in reversed(widths):
            decoder += [nn.Linear(previous, hidden), make_activation(activation, owner=owner)]
            previous = hidden
        decoder.append(nn.Linear(previous, in_features))
        if output_activation != "identity":
            decoder.append(make_activation(output_activation, owner=owner, argument="output_activation"))

        self.flatten = nn.Flatten()
        self.encoder = nn.Sequential(*encoder)
        self.decoder = nn.Sequential(*decoder)

    def encode(self, x: torch.Tensor) -> torch.Tensor:
        """The code of each row: the features the anomaly detector and A2E's search look at."""
        return self.encoder(self.flatten(x))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.decoder(self.encode(x)).reshape(x.shape)


def _check_widths(value: object, *, owner: str) -> tuple[int, ...]:
    is_list = isinstance(value, Sequence) and not isinstance(value, (str, bytes))
    if not is_list or not all(isinstance(w, numbers.Integral) and not isinstance(w, bool) and w >= 1 for w in value):
        raise PrunetuneError(
            f"The 'encoder_widths' argument of {owner} must be a list of integers >= 1. Got {value!r} instead."
        )
    return tuple(int(w) for w in value)

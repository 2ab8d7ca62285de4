"""Dense (fully connected) autoencoder: the small, fast model that is federated by default."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch
from torch import nn

from fedad.common.models.base import Autoencoder


def mlp(sizes: Sequence[int]) -> nn.Sequential:
    """Linear layers through ``sizes`` with ReLU between them (none after the last)."""
    layers: list[nn.Module] = []
    for i, (a, b) in enumerate(zip(sizes[:-1], sizes[1:], strict=True)):
        layers.append(nn.Linear(a, b))
        if i < len(sizes) - 2:
            layers.append(nn.ReLU(inplace=True))
    return nn.Sequential(*layers)


class DenseAutoencoder(Autoencoder):
    """``d -> hidden... -> latent -> reversed(hidden) -> d`` (ReLU inside, linear code).

    Windows ``(B, W, d)`` (window > 1) are flattened to ``W*d`` inputs.

    The default ``d -> 32 -> 16 -> 8 -> 16 -> 32 -> d`` has about 2k parameters for 12 sensors.
    """

    def __init__(self, n_features: int, window: int = 1, hidden: Sequence[int] = (32, 16), latent_dim: int = 8) -> None:
        super().__init__(n_features, window, latent_dim)
        self.sequence = window > 1
        self.hidden = tuple(int(h) for h in hidden)
        n_in = n_features * window
        self.encoder = mlp((n_in, *self.hidden, latent_dim))
        self.decoder = mlp((latent_dim, *reversed(self.hidden), n_in))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.decoder(self.encoder(x.flatten(1))).view_as(x)

    def encode(self, x: torch.Tensor) -> torch.Tensor:
        return self.encoder(x.flatten(1))

    def config(self) -> dict[str, Any]:
        return {"hidden": list(self.hidden), "latent_dim": self.latent_dim}

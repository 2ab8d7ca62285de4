"""1-D convolutional autoencoder: convolutions over time on windows ``(B, W, d)``."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch
from torch import nn

from fedad.common.models.base import Autoencoder


def conv_stack(sizes: Sequence[int], kernel_size: int, last_activation: bool) -> nn.Sequential:
    """Length-preserving Conv1d layers through channel ``sizes`` with ReLU between them."""
    layers: list[nn.Module] = []
    for i, (a, b) in enumerate(zip(sizes[:-1], sizes[1:], strict=True)):
        layers.append(nn.Conv1d(a, b, kernel_size, padding=kernel_size // 2))
        if last_activation or i < len(sizes) - 2:
            layers.append(nn.ReLU(inplace=True))
    return nn.Sequential(*layers)


class CNNAutoencoder(Autoencoder):
    """Conv1d ``d -> channels...`` over time, a linear bottleneck on the flattened feature map, and the
    mirrored Conv1d stack back to ``d``. Same-length convolutions, so any window length works."""

    sequence = True

    def __init__(
        self,
        n_features: int,
        window: int = 16,
        channels: Sequence[int] = (32, 16),
        kernel_size: int = 3,
        latent_dim: int = 8,
    ) -> None:
        super().__init__(n_features, window, latent_dim)
        if kernel_size < 1 or kernel_size % 2 == 0:
            raise ValueError(f"kernel_size must be odd and positive, got {kernel_size}")
        self.channels = tuple(int(c) for c in channels)
        self.kernel_size = int(kernel_size)
        flat = self.channels[-1] * window
        self.encoder_conv = conv_stack((n_features, *self.channels), kernel_size, last_activation=True)
        self.to_latent = nn.Linear(flat, latent_dim)
        self.from_latent = nn.Sequential(nn.Linear(latent_dim, flat), nn.ReLU(inplace=True))
        self.decoder_conv = conv_stack((*reversed(self.channels), n_features), kernel_size, last_activation=False)

    def encode(self, x: torch.Tensor) -> torch.Tensor:
        return self.to_latent(self.encoder_conv(x.transpose(1, 2)).flatten(1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.from_latent(self.encode(x)).view(x.shape[0], self.channels[-1], self.window)
        return self.decoder_conv(h).transpose(1, 2)

    def config(self) -> dict[str, Any]:
        return {"channels": list(self.channels), "kernel_size": self.kernel_size, "latent_dim": self.latent_dim}

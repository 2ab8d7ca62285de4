"""Several autoencoders of one architecture from different random initialisations, reconstructing as their mean.

A fit of a few hundred records takes a few optimiser steps before early stopping, so the model stays close to
its random initialisation and its errors depend on the seed (bench/README.md, "SKAB through the product").
Averaging the reconstructions of K such models removes most of that dependence. Each member is trained on its
own reconstruction loss: ``loss`` reports the members' mean but passes each member the gradient of its own loss,
so one optimiser over all of them (no shared parameters; Adam's weight decay per member unchanged) trains each
exactly as if alone. Scoring sees one model whose output is the members' mean.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, cast

import torch
from torch import nn

from fedad.common.models.base import Autoencoder

MAX_MODELS = 64


class AveragedAutoencoder(Autoencoder):
    """K members of one architecture: ``forward`` is the mean of their reconstructions, ``loss`` the mean of
    their own losses (each member's gradient: its own loss's), ``encode`` their codes side by side
    ``(B, K * latent_dim)``."""

    def __init__(self, members: Sequence[Autoencoder]) -> None:
        first = members[0]

        def shape(m: Autoencoder) -> tuple:
            return type(m), m.n_features, m.window, m.config()

        if len(members) < 2 or any(shape(m) != shape(first) for m in members):
            raise ValueError("an averaged autoencoder needs at least two members of one architecture and size")
        super().__init__(first.n_features, first.window, first.latent_dim * len(members))
        self.sequence = first.sequence
        self.members = nn.ModuleList(members)

    @property
    def n_members(self) -> int:
        return len(self.members)

    def _each(self) -> list[Autoencoder]:
        return [cast(Autoencoder, m) for m in self.members]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.stack([m(x) for m in self._each()]).mean(0)

    def loss(self, x: torch.Tensor) -> torch.Tensor:
        total = torch.stack([m.loss(x) for m in self._each()]).sum()
        return total - total.detach() + (total / self.n_members).detach()  # value: the mean; gradient: the sum's

    def encode(self, x: torch.Tensor) -> torch.Tensor:
        return torch.cat([m.encode(x) for m in self._each()], dim=1)

    def config(self) -> dict[str, Any]:
        """The members' constructor sizes and ``n_models``: ``build_model(name, ..., **config)`` rebuilds it."""
        return {**self._each()[0].config(), "n_models": self.n_members}

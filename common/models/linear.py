"""Linear autoencoder: one linear map down to the code and one back (PCA's subspace, learned by federation)."""

from __future__ import annotations

from typing import Any

from fedad.common.models.dense import DenseAutoencoder


class LinearAutoencoder(DenseAutoencoder):
    """``d -> latent -> d`` with no hidden layer and no activation: the dense model without its ReLU layers.

    Its reconstruction extrapolates linearly outside the training range, so a plant state the training rows
    never reached (a lower speed, a warmer day) keeps near-linear sensor relations instead of a ReLU network's
    arbitrary extrapolation. 12 sensors, latent 8: 212 parameters.
    """

    def __init__(self, n_features: int, window: int = 1, latent_dim: int = 8) -> None:
        super().__init__(n_features, window, hidden=(), latent_dim=latent_dim)

    def config(self) -> dict[str, Any]:
        return {"latent_dim": self.latent_dim}

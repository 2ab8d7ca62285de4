"""Dense variational autoencoder; scores with the decoder mean of the latent mean (no sampling)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch
from torch import nn
from torch.nn import functional as F

from fedad.common.models.base import Autoencoder
from fedad.common.models.dense import mlp


class VariationalAutoencoder(Autoencoder):
    """``d -> hidden... -> (mu, logvar) -> z -> reversed(hidden) -> d``; windows are flattened like DenseAE.

    ``loss`` = MSE + ``beta`` * KL(q(z|x) || N(0, I)), the KL summed over latent dimensions and divided by
    the number of inputs per sample so that both terms are on the per-element scale of the MSE.
    """

    def __init__(
        self,
        n_features: int,
        window: int = 1,
        hidden: Sequence[int] = (32, 16),
        latent_dim: int = 8,
        beta: float = 0.1,
    ) -> None:
        super().__init__(n_features, window, latent_dim)
        self.sequence = window > 1
        self.hidden = tuple(int(h) for h in hidden)
        self.beta = float(beta)
        n_in = n_features * window
        self.encoder = nn.Sequential(mlp((n_in, *self.hidden)), nn.ReLU(inplace=True))
        self.to_mu = nn.Linear(self.hidden[-1], latent_dim)
        self.to_logvar = nn.Linear(self.hidden[-1], latent_dim)
        self.decoder = mlp((latent_dim, *reversed(self.hidden), n_in))

    def posterior(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Mean and log-variance of q(z|x), each ``(B, latent_dim)``."""
        h = self.encoder(x.flatten(1))
        return self.to_mu(h), self.to_logvar(h).clamp(-10.0, 10.0)

    def encode(self, x: torch.Tensor) -> torch.Tensor:
        return self.posterior(x)[0]

    def _reconstruct(self, x: torch.Tensor, sample: bool) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        mu, logvar = self.posterior(x)
        z = mu + torch.randn_like(mu) * torch.exp(0.5 * logvar) if sample else mu
        return self.decoder(z).view_as(x), mu, logvar

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Reconstruction: sampled z while training, the posterior mean in eval mode."""
        return self._reconstruct(x, sample=self.training)[0]

    def loss(self, x: torch.Tensor) -> torch.Tensor:
        recon, mu, logvar = self._reconstruct(x, sample=self.training)
        kl = -0.5 * (1 + logvar - mu.square() - logvar.exp()).sum(1).mean()
        return F.mse_loss(recon, x) + self.beta * kl / (self.n_features * self.window)

    def score(self, x: torch.Tensor) -> torch.Tensor:
        err = self._reconstruct(x, sample=False)[0] - x
        return err.square_().flatten(1).mean(1)

    def config(self) -> dict[str, Any]:
        return {"hidden": list(self.hidden), "latent_dim": self.latent_dim, "beta": self.beta}

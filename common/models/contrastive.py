"""Contrastive autoencoder (federated contrastive representation learning): InfoNCE + reconstruction + alignment.

``loss`` = MSE reconstruction + ``lam`` * InfoNCE(``tau``) + ``mu`` * alignment, where
- InfoNCE is the symmetric temperature-scaled cross-entropy (NT-Xent) between the L2-normalised projections of
  two augmented views (``fedad.common.augment.augment``) of each sample; the other samples of the batch are
  the negatives;
- alignment is ``||mean_b z_b - g||^2``, the squared distance of the batch's mean latent code to the global
  embedding ``g`` the server sends each round (the mean of the clients' mean embeddings); without one
  (local training, or a strategy that sends none) the term is absent. Under secure-robust ``g`` is the mean
  of L2-normalised embeddings (what the key holder decrypts), so both sides are normalised first.

``score`` = (1 - ``dist_weight``) * e / e0 + ``dist_weight`` * c / c0, with e the per-sample reconstruction
error, c the squared distance of the latent code to the normal centre, and e0, c0 their medians on the
training data: ``calibrate`` computes centre and medians on normal training samples and keeps them in buffers,
so they are saved with the weights. The default ``dist_weight`` is 0 (reconstruction error only): on the
validation draw the centre distance lowered ROC-AUC (docs/contrastive.md); 0.25 is the measured alternative.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import torch
from torch.nn import functional as F

from fedad.common.augment import augment
from fedad.common.models.base import Autoencoder
from fedad.common.models.dense import mlp


def info_nce(h1: torch.Tensor, h2: torch.Tensor, tau: float) -> torch.Tensor:
    """Symmetric InfoNCE of paired rows ``h1[i] <-> h2[i]`` (L2-normalised here), other rows as negatives."""
    a, b = F.normalize(h1, dim=1), F.normalize(h2, dim=1)
    logits = a @ b.T / tau
    labels = torch.arange(len(a), device=a.device)
    return 0.5 * (F.cross_entropy(logits, labels) + F.cross_entropy(logits.T, labels))


class ContrastiveAutoencoder(Autoencoder):
    """Dense encoder ``d -> hidden -> latent``, projection head ``latent -> proj_dim``, mirrored decoder.

    Windows ``(B, W, d)`` (window > 1) are flattened like DenseAE; augmentations then also shift in time.
    """

    center: torch.Tensor  # buffers, declared for type checkers
    score_scale: torch.Tensor

    def __init__(
        self,
        n_features: int,
        window: int = 1,
        hidden: Sequence[int] = (32, 16),
        latent_dim: int = 8,
        proj_dim: int = 16,
        tau: float = 0.5,
        lam: float = 1.0,
        mu: float = 0.1,
        dist_weight: float = 0.0,
        jitter: float = 0.1,
        scale: float = 0.1,
        mask: float = 0.1,
        shift: int = 2,
    ) -> None:
        super().__init__(n_features, window, latent_dim)
        if tau <= 0 or lam < 0 or mu < 0 or not 0.0 <= dist_weight <= 1.0 or proj_dim < 1:
            raise ValueError(
                f"need tau > 0, lam >= 0, mu >= 0, 0 <= dist_weight <= 1, proj_dim >= 1; got tau={tau} "
                f"lam={lam} mu={mu} dist_weight={dist_weight} proj_dim={proj_dim}"
            )
        self.sequence = window > 1
        self.hidden = tuple(int(h) for h in hidden)
        self.proj_dim = int(proj_dim)
        self.tau, self.lam, self.mu, self.dist_weight = float(tau), float(lam), float(mu), float(dist_weight)
        self.jitter, self.scale, self.mask, self.shift = float(jitter), float(scale), float(mask), int(shift)
        n_in = n_features * window
        self.encoder = mlp((n_in, *self.hidden, latent_dim))
        self.projector = mlp((latent_dim, max(latent_dim, self.proj_dim), self.proj_dim))
        self.decoder = mlp((latent_dim, *reversed(self.hidden), n_in))
        # scoring statistics of the normal training data, saved with the weights (see ``calibrate``)
        self.register_buffer("center", torch.zeros(latent_dim))
        self.register_buffer("score_scale", torch.ones(2))
        self.global_embedding: torch.Tensor | None = None  # not a buffer: per round, never saved or averaged
        self.align_direction = False  # secure-robust sends the mean of L2-normalised embeddings: align directions

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.decoder(self.encoder(x.flatten(1))).view_as(x)

    def encode(self, x: torch.Tensor) -> torch.Tensor:
        return self.encoder(x.flatten(1))

    def set_global_embedding(self, g: np.ndarray | torch.Tensor | None, direction_only: bool = False) -> None:
        """The alignment target for the next local training (None: no term); ``direction_only``: align unit vectors."""
        self.align_direction = bool(direction_only)
        if g is None:
            self.global_embedding = None
            return
        t = torch.as_tensor(np.asarray(g, dtype=np.float32)).flatten()
        if t.numel() != self.latent_dim or not bool(torch.isfinite(t).all()):
            raise ValueError(f"global embedding must be {self.latent_dim} finite values, got {t.numel()}")
        self.global_embedding = t

    def view(self, x: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
        """One augmented view of the batch with this model's augmentation strengths."""
        return augment(x, self.jitter, self.scale, self.mask, self.shift, generator)

    def loss_terms(self, x: torch.Tensor, generator: torch.Generator | None = None) -> dict[str, torch.Tensor]:
        """The three terms of ``loss`` for a batch: ``reconstruction``, ``infonce``, ``alignment``."""
        b = len(x)
        v1, v2 = self.view(x, generator), self.view(x, generator)
        z = self.encoder(torch.cat([x, v1, v2]).flatten(1))
        z0 = z[:b]
        recon = F.mse_loss(self.decoder(z0).view_as(x), x)
        nce = info_nce(self.projector(z[b : 2 * b]), self.projector(z[2 * b :]), self.tau) if b > 1 else recon * 0
        if self.global_embedding is not None and self.mu > 0:
            mean, g = z0.mean(0), self.global_embedding.to(z0.device)
            if self.align_direction:
                mean, g = F.normalize(mean, dim=0), F.normalize(g, dim=0)
            align = (mean - g).square().sum()
        else:
            align = recon * 0
        return {"reconstruction": recon, "infonce": nce, "alignment": align}

    def loss(self, x: torch.Tensor) -> torch.Tensor:
        """Reconstruction + lam * InfoNCE + mu * alignment; in eval mode the views come from a fixed seed."""
        gen = None if self.training else torch.Generator(device=x.device).manual_seed(0)
        t = self.loss_terms(x, gen)
        return t["reconstruction"] + self.lam * t["infonce"] + self.mu * t["alignment"]

    def _parts(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Per-sample reconstruction error and squared distance of the latent code to the centre."""
        z = self.encoder(x.flatten(1))
        err = (self.decoder(z).view_as(x) - x).square().flatten(1).mean(1)
        return err, (z - self.center).square().sum(1)

    @torch.no_grad()
    def calibrate(self, x: torch.Tensor) -> None:
        """Centre = mean latent code of normal samples x; scales = medians of both score parts on x."""
        self.center.copy_(self.encoder(x.flatten(1)).mean(0))
        err, dist = self._parts(x)
        self.score_scale.copy_(torch.stack([err.median(), dist.median()]).clamp_min(1e-12))

    def score(self, x: torch.Tensor) -> torch.Tensor:
        err, dist = self._parts(x)
        w = self.dist_weight
        return (1.0 - w) * err / self.score_scale[0] + w * dist / self.score_scale[1]

    def config(self) -> dict[str, Any]:
        return {
            "hidden": list(self.hidden),
            "latent_dim": self.latent_dim,
            "proj_dim": self.proj_dim,
            "tau": self.tau,
            "lam": self.lam,
            "mu": self.mu,
            "dist_weight": self.dist_weight,
            "jitter": self.jitter,
            "scale": self.scale,
            "mask": self.mask,
            "shift": self.shift,
        }

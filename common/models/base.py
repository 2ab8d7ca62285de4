"""The autoencoder interface every fedad model implements; training loops live in ``fedad.common.training``."""

from __future__ import annotations

from abc import ABC, abstractmethod
from typing import Any, Protocol, runtime_checkable

import numpy as np
import torch
from torch import nn
from torch.nn import functional as F


@runtime_checkable
class EmbeddingAligned(Protocol):
    """A model with an alignment term (``isinstance`` checks only that it has ``set_global_embedding``)."""

    def set_global_embedding(self, g: np.ndarray | torch.Tensor | None, direction_only: bool = False) -> None: ...


class Autoencoder(nn.Module, ABC):
    """Base class: reconstructs its input; the reconstruction error is the anomaly score.

    ``sequence`` models take windows ``(B, window, n_features)``; the others take rows ``(B, n_features)``.
    Subclasses set the sizes in their constructor, implement ``forward`` and ``encode``, and list their
    constructor sizes in ``config()`` so a saved model can be rebuilt with ``build_model(name, ..., **config)``.
    """

    sequence: bool = False

    def __init__(self, n_features: int, window: int, latent_dim: int) -> None:
        super().__init__()
        if n_features < 1 or window < 1 or latent_dim < 1:
            raise ValueError(f"sizes must be positive: n_features={n_features} window={window} latent_dim={latent_dim}")
        self.n_features = int(n_features)
        self.window = int(window)
        self.latent_dim = int(latent_dim)

    @property
    def input_shape(self) -> tuple[int, ...]:
        """Shape of one sample: ``(window, n_features)`` for sequence models, else ``(n_features,)``."""
        return (self.window, self.n_features) if self.sequence else (self.n_features,)

    @abstractmethod
    def encode(self, x: torch.Tensor) -> torch.Tensor:
        """Latent code ``(B, latent_dim)`` of a batch."""

    def loss(self, x: torch.Tensor) -> torch.Tensor:
        """Training objective of a batch: mean squared reconstruction error."""
        return F.mse_loss(self(x), x)

    def score(self, x: torch.Tensor) -> torch.Tensor:
        """Per-sample mean squared reconstruction error ``(B,)``; higher means more anomalous."""
        err = self(x) - x
        return err.square_().flatten(1).mean(1)

    def calibrate(self, x: torch.Tensor) -> None:
        """Fit scoring statistics on normal training samples x (no-op: the reconstruction error needs none)."""

    def config(self) -> dict[str, Any]:
        """Constructor sizes besides ``n_features`` and ``window`` (JSON-able), for saving."""
        return {"latent_dim": self.latent_dim}

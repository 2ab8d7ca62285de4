"""Sequence-to-sequence recurrent autoencoder shared by the LSTM and GRU models."""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from fedad.common.models.base import Autoencoder


class RecurrentAutoencoder(Autoencoder):
    """Encoder RNN over the window -> last hidden state -> latent code, repeated over the window as the
    decoder RNN's input -> per-step linear read-out back to ``n_features``. Input ``(B, W, d)``."""

    sequence = True
    rnn_type: type[nn.LSTM] | type[nn.GRU] = nn.LSTM

    def __init__(
        self,
        n_features: int,
        window: int = 16,
        hidden: int = 32,
        latent_dim: int = 8,
        num_layers: int = 1,
    ) -> None:
        super().__init__(n_features, window, latent_dim)
        self.hidden = int(hidden)
        self.num_layers = int(num_layers)
        self.encoder_rnn = self.rnn_type(n_features, hidden, num_layers=num_layers, batch_first=True)
        self.to_latent = nn.Linear(hidden, latent_dim)
        self.decoder_rnn = self.rnn_type(latent_dim, hidden, num_layers=num_layers, batch_first=True)
        self.readout = nn.Linear(hidden, n_features)

    def encode(self, x: torch.Tensor) -> torch.Tensor:
        out, _ = self.encoder_rnn(x)
        return self.to_latent(out[:, -1])

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        z = self.encode(x)
        out, _ = self.decoder_rnn(z.unsqueeze(1).expand(-1, x.shape[1], -1))
        return self.readout(out)

    def config(self) -> dict[str, Any]:
        return {"hidden": self.hidden, "latent_dim": self.latent_dim, "num_layers": self.num_layers}

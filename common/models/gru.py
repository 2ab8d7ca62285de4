"""GRU sequence-to-sequence autoencoder over windows ``(B, W, d)``."""

from __future__ import annotations

from torch import nn

from fedad.common.models.recurrent import RecurrentAutoencoder


class GRUAutoencoder(RecurrentAutoencoder):
    """GRU encoder -> latent code -> GRU decoder (see ``RecurrentAutoencoder``)."""

    rnn_type = nn.GRU

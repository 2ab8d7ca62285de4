"""LSTM sequence-to-sequence autoencoder over windows ``(B, W, d)``."""

from __future__ import annotations

from torch import nn

from fedad.common.models.recurrent import RecurrentAutoencoder


class LSTMAutoencoder(RecurrentAutoencoder):
    """LSTM encoder -> latent code -> LSTM decoder (see ``RecurrentAutoencoder``)."""

    rnn_type = nn.LSTM

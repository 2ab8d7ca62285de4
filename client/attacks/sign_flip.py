"""Sign-flip attack: send -k x the honest update (k = 1; larger k combines it with scaling)."""

from __future__ import annotations

import numpy as np

from fedad.client.attacks.base import Attack


class SignFlip(Attack):
    """Send -k * u, u being the client's own honest update."""

    name = "sign_flip"
    scale_param = "k"

    def __init__(self, k: float = 1.0, start_round: int = 1, seed: int = 0):
        super().__init__(start_round, seed)
        self.k = float(k)

    def poison_update(self, update, benign, rng) -> np.ndarray:
        return -self.k * np.asarray(update, dtype=np.float64)

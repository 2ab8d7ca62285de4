"""Scaling (boosting) attack: send lambda x the honest update (lambda = n approximates model replacement)."""

from __future__ import annotations

import numpy as np

from fedad.client.attacks.base import Attack


class Scaling(Attack):
    """Send lam * u, u being the client's own honest update."""

    name = "scaling"
    scale_param = "lam"

    def __init__(self, lam: float = 10.0, start_round: int = 1, seed: int = 0):
        super().__init__(start_round, seed)
        self.lam = float(lam)

    def poison_update(self, update, benign, rng) -> np.ndarray:
        return self.lam * np.asarray(update, dtype=np.float64)

"""Gaussian attack: send pure noise N(0, s^2 I), s set relative to the client's own honest update norm."""

from __future__ import annotations

import math

import numpy as np

from fedad.client.attacks.base import Attack


class Gaussian(Attack):
    """Send N(0, s^2 I) with s = scale * ||u|| / sqrt(d): the noise norm is about ``scale`` x ||u||.

    ``scale`` 10 (default) is the loud variant; ``scale`` 1 matches benign norms (stealthy variant).
    """

    name = "gaussian"
    scale_param = "scale"

    def __init__(self, scale: float = 10.0, start_round: int = 1, seed: int = 0):
        super().__init__(start_round, seed)
        self.scale = float(scale)

    def poison_update(self, update, benign, rng) -> np.ndarray:
        update = np.asarray(update, dtype=np.float64)
        if update.size == 0:
            return update.copy()
        norm = float(np.linalg.norm(update)) or 1.0
        return rng.normal(0.0, self.scale * norm / math.sqrt(update.size), size=update.shape)

"""IPM, inner-product manipulation (Xie et al., UAI'20): send -eps x the benign mean."""

from __future__ import annotations

import numpy as np

from fedad.client.attacks.base import Attack, benign_stats


class IPM(Attack):
    """Every colluder sends -eps * mu, mu the mean of the benign updates it knows.

    eps = 0.1 (default) is the paper's setting against Krum-like selection: a small update close to
    the benign cloud. Against a plain mean the aggregate's direction flips once eps > (n - m) / m.
    """

    name = "ipm"
    needs_benign = True
    scale_param = "eps"

    def __init__(self, eps: float = 0.1, start_round: int = 1, seed: int = 0):
        super().__init__(start_round, seed)
        self.eps = float(eps)

    def poison_update(self, update, benign, rng) -> np.ndarray:
        mu, _ = benign_stats(benign if benign else [update])
        return -self.eps * mu

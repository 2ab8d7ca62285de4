"""ALIE, "A Little Is Enough" (Baruch et al., NeurIPS'19): small shifts inside the benign spread."""

from __future__ import annotations

import math
from statistics import NormalDist

import numpy as np

from fedad.client.attacks.base import Attack, benign_stats
from fedad.common.errors import FedadError


def alie_z(num_clients: int, num_malicious: int) -> float:
    """z = Phi^-1((n - s) / n) with s = floor(n / 2 + 1) - m, the paper's largest undetected shift."""
    n, m = int(num_clients), int(num_malicious)
    s = math.floor(n / 2 + 1) - m
    if n < 1 or m < 0 or s < 1:
        raise FedadError(f"ALIE needs fewer attackers than a majority: n={n}, m={m} gives s={s}")
    return NormalDist().inv_cdf((n - s) / n)


class ALIE(Attack):
    """Every colluder sends mu - z * sigma of the benign updates it knows (colluders' honest updates).

    ``z`` defaults to ``alie_z(num_clients, num_malicious)``; ``num_malicious`` defaults to the number of
    colluders whose updates arrived. z grows with m (n = 10: m = 1 gives 0, m = 3 gives 0.52, m = 4 0.84).
    """

    name = "alie"
    needs_benign = True
    scale_param = "z"

    def __init__(
        self,
        num_clients: int | None = None,
        num_malicious: int | None = None,
        z: float | None = None,
        start_round: int = 1,
        seed: int = 0,
    ):
        super().__init__(start_round, seed)
        if z is None and num_clients is None:
            raise FedadError("ALIE needs num_clients (the federation's size) or an explicit z (--attack-scale)")
        self.num_clients, self.num_malicious = num_clients, num_malicious
        self.z = None if z is None else float(z)
        if self.z is None and num_clients is not None and num_malicious is not None:
            alie_z(num_clients, num_malicious)  # fail early on an impossible n, m

    def z_for(self, colluders: int) -> float:
        """The z in use when ``colluders`` honest updates are known."""
        if self.z is not None:
            return self.z
        assert self.num_clients is not None  # __init__ refuses z and num_clients both None
        return alie_z(self.num_clients, colluders if self.num_malicious is None else self.num_malicious)

    def poison_update(self, update, benign, rng) -> np.ndarray:
        known = benign if benign else [update]
        mu, sigma = benign_stats(known)
        return mu - self.z_for(len(known)) * sigma

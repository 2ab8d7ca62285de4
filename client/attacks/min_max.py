"""Min-max and min-sum (Shejwalkar & Houmansadr, NDSS'21, AGR-agnostic): the farthest update still in the cloud.

mal = mu + gamma * p with the largest gamma (binary search) such that
min-max: max_i ||mal - b_i|| <= max_(i,j) ||b_i - b_j||;
min-sum: sum_i ||mal - b_i||^2 <= max_i sum_j ||b_i - b_j||^2,
over the benign updates b the colluders know (their own honest updates).
"""

from __future__ import annotations

import numpy as np

from fedad.client.attacks.base import Attack, benign_stats
from fedad.common.errors import FedadError

PERTURBATIONS = ("std", "unit", "sign")
OBJECTIVES = ("max", "sum")


def perturbation(mu: np.ndarray, sigma: np.ndarray, kind: str) -> np.ndarray:
    """Perturbation direction p: -sigma (std), -mu / ||mu|| (unit) or -sign(mu) (sign)."""
    if kind == "std":
        return -sigma
    if kind == "unit":
        norm = float(np.linalg.norm(mu))
        return -mu / norm if norm > 0 else np.zeros_like(mu)
    if kind == "sign":
        return -np.sign(mu)
    raise FedadError(f"unknown min-max perturbation {kind!r}: choose one of {', '.join(PERTURBATIONS)}")


def _sq_dists(x: np.ndarray, b: np.ndarray) -> np.ndarray:
    return np.sum((b - x) ** 2, axis=1)


def within_benign(mal: np.ndarray, b: np.ndarray, objective: str) -> bool:
    """Whether ``mal`` satisfies the min-max (or min-sum) distance constraint against the rows of ``b``."""
    pair = np.array([_sq_dists(row, b) for row in b])
    if objective == "max":
        return float(_sq_dists(mal, b).max()) <= float(pair.max())
    return float(_sq_dists(mal, b).sum()) <= float(pair.sum(axis=1).max())


def largest_gamma(
    mu: np.ndarray,
    p: np.ndarray,
    b: np.ndarray,
    objective: str = "max",
    gamma_init: float = 10.0,
    tol: float = 1e-5,
    max_steps: int = 100,
) -> float:
    """Binary search (as in the paper) for the largest gamma keeping mu + gamma * p within the benign cloud."""
    gamma, step, best = float(gamma_init), float(gamma_init) / 2.0, 0.0
    for _ in range(max_steps):
        if abs(best - gamma) <= tol:
            break
        if within_benign(mu + gamma * p, b, objective):
            best = gamma
            gamma += step
        else:
            gamma -= step
        step /= 2.0
    return best


class MinMax(Attack):
    """Every colluder sends mu + gamma * p, gamma as large as the min-max (or min-sum) constraint allows."""

    name = "min_max"
    needs_benign = True
    scale_param = "gamma_init"
    objective = "max"

    def __init__(
        self,
        perturbation: str = "std",
        gamma_init: float = 10.0,
        tol: float = 1e-5,
        start_round: int = 1,
        seed: int = 0,
    ):
        super().__init__(start_round, seed)
        if perturbation not in PERTURBATIONS:
            raise FedadError(f"unknown min-max perturbation {perturbation!r}: choose one of {', '.join(PERTURBATIONS)}")
        self.perturbation, self.gamma_init, self.tol = perturbation, float(gamma_init), float(tol)
        self.last_gamma: float | None = None

    def poison_update(self, update, benign, rng) -> np.ndarray:
        known = benign if benign else [update]
        b = np.vstack([np.asarray(x, dtype=np.float64).ravel() for x in known])
        mu, sigma = benign_stats(known)
        p = perturbation(mu, sigma, self.perturbation)
        self.last_gamma = largest_gamma(mu, p, b, self.objective, self.gamma_init, self.tol)
        return mu + self.last_gamma * p


class MinSum(MinMax):
    """Min-sum: like min-max with the sum-of-squared-distances constraint."""

    name = "min_sum"
    objective = "sum"

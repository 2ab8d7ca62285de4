"""Per-client deviation scores against the median update and their MAD-based robust z-scores."""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np

from fedad.server.aggregation import coordinate_median
from fedad.server.defence.config import FlagConfig
from fedad.server.defence.neighbours import nearest_distances

MAD_TO_SIGMA = 1.4826  # MAD * 1.4826 estimates the standard deviation of a normal sample
_TINY = 1e-12
THEIL_SEN_POINTS = 2000  # size factors: the slope is fitted on at most this many clients (2M pairs)


def robust_z_scores(
    values: np.ndarray, floor: float = 0.0, reference: np.ndarray | None = None, floor_below: float | None = None
) -> np.ndarray:
    """MAD z-scores (x - median) / (1.4826 * max(MAD, floor)), median and MAD over the ``reference`` rows.

    ``floor_below`` (default ``floor``) replaces the floor for values below the median.
    """
    values = np.asarray(values, dtype=np.float64)
    base = values if reference is None else values[np.asarray(reference, dtype=bool)]
    if base.size == 0:
        return np.zeros_like(values)
    med = float(np.median(base))
    mad = float(np.median(np.abs(base - med)))
    diff = values - med
    below = floor if floor_below is None else floor_below
    scale = MAD_TO_SIGMA * np.where(diff < 0.0, max(mad, below), max(mad, floor))
    unusual = np.where(diff > 0.0, np.inf, np.where(diff < 0.0, -np.inf, 0.0))  # no spread and no floor
    return np.where(scale > 0.0, diff / np.where(scale > 0.0, scale, 1.0), unusual)


def cosine_to(updates: np.ndarray, reference: np.ndarray) -> np.ndarray:
    """Cosine similarity of each row to a reference vector; 0 where either has zero norm."""
    norms = np.linalg.norm(updates, axis=1)
    ref_norm = float(np.linalg.norm(reference))
    denom = norms * ref_norm
    dots = updates @ reference
    return np.where(denom > 0.0, dots / np.where(denom > 0.0, denom, 1.0), 0.0).clip(-1.0, 1.0)


def closeness_scores(updates: np.ndarray, rng: np.random.Generator | None = None) -> np.ndarray:
    """Nearest-neighbour distance of each row over the median nearest-neighbour distance (small = near-duplicate).

    Distances are taken between rows centred at their median; exact up to ``neighbours.EXACT_LIMIT`` rows,
    sketch-guided above (``neighbours.nearest_distances``; ``rng`` fixes its projection).
    """
    n = updates.shape[0]
    if n < 2:
        return np.ones(n)
    nearest = nearest_distances(updates - coordinate_median(updates), rng=rng)
    typical = float(np.median(nearest))
    if typical <= 0.0:
        return np.ones(n)  # most updates have an exact twin: nothing stands out as a cluster
    return nearest / typical


def spread_alignment(updates: np.ndarray, reference: np.ndarray) -> np.ndarray:
    """Cosine of each update's deviation from the reference to the coordinate-wise spread (std) vector.

    Benign deviations have random signs per coordinate, so this is near 0 (about 1/sqrt(d)) for them; ALIE
    (mu - z sigma) and min-max/min-sum with the std perturbation (mu - gamma sigma) move every coordinate
    against its spread, which makes it clearly negative even when each colluder adds its own noise.
    """
    return cosine_to(updates - reference, np.std(updates, axis=0))


def theil_sen_slope(x: np.ndarray, y: np.ndarray, max_points: int = THEIL_SEN_POINTS) -> float | None:
    """Median of the pairwise slopes (y_j - y_i) / (x_j - x_i) over pairs with distinct x; None if there are none.

    Above ``max_points`` points the pairs of a fixed random subset of that many points are used (N^2 / 2
    pairs would cost ~2 GB at 10,000 clients; the median slope of a random subset estimates the same slope).
    """
    x, y = np.asarray(x, dtype=np.float64), np.asarray(y, dtype=np.float64)
    if x.size > max_points:
        keep = np.sort(np.random.default_rng(0).choice(x.size, size=max_points, replace=False))
        x, y = x[keep], y[keep]
    i, j = np.triu_indices(x.size, k=1)
    dx = x[j] - x[i]
    ok = np.abs(dx) > 1e-9
    return float(np.median((y[j] - y[i])[ok] / dx[ok])) if ok.any() else None


def size_factors(
    norms: np.ndarray, counts: np.ndarray, ratio_cap: float = 4.0, ratio_floor: float = 100.0
) -> np.ndarray:
    """Update size each client's example count predicts, relative to the median count: (count ratio) ** slope.

    The slope is the Theil-Sen fit of log norm on log count over the clients with a positive norm and count,
    clipped to [0, 1] (an update never grows faster than the local steps behind it); count ratios are clipped
    to [1/ratio_floor, ratio_cap]. Equal counts (or fewer than 3 usable clients) give factors of 1.
    """
    norms, counts = np.asarray(norms, dtype=np.float64), np.asarray(counts, dtype=np.float64)
    usable = (norms > 0.0) & (counts > 0.0) & np.isfinite(norms) & np.isfinite(counts)
    if int(usable.sum()) < 3:
        return np.ones(norms.size)
    ratio = np.clip(
        np.where(counts > 0.0, counts, np.nan) / float(np.median(counts[usable])), 1.0 / ratio_floor, ratio_cap
    )
    slope = theil_sen_slope(np.log(ratio[usable]), np.log(norms[usable]))
    if slope is None:
        return np.ones(norms.size)
    return np.where(np.isfinite(ratio), ratio ** min(max(slope, 0.0), 1.0), 1.0)


def update_scores(updates: np.ndarray) -> dict[str, np.ndarray]:
    """Per-client raw scores against the coordinate-wise median update (see ``FlagConfig`` for their use)."""
    updates = np.asarray(updates, dtype=np.float64)
    reference = coordinate_median(updates)
    norms = np.linalg.norm(updates, axis=1)
    median_norm = float(np.median(norms)) if norms.size else 0.0
    if median_norm > 0.0:
        norm_ratio = norms / median_norm
    else:
        norm_ratio = np.where(norms > 0.0, np.inf, 1.0)
    return {
        "distance": np.linalg.norm(updates - reference, axis=1),
        "cosine": cosine_to(updates, reference),
        "norm_ratio": norm_ratio,
        "norm": norms,
        "spread": spread_alignment(updates, reference),
        "closeness": closeness_scores(updates),
    }


# which side of each z-score is bad: +1 high, -1 low, 0 both. Spread: ALIE and min-max/min-sum (std
# perturbation) move against the spread (negative); on real autoencoder updates honest outliers of a
# heterogeneous federation align positively with it (the spread is largely theirs), so only low is bad.
BAD_SIDE = {"z_distance": 1, "z_cosine": -1, "z_norm": 0, "z_spread": -1}


def z_score_inputs(
    scores: Mapping[str, np.ndarray], config: FlagConfig = FlagConfig()
) -> dict[str, tuple[np.ndarray, float]]:
    """The values each z-score is computed on, with their MAD floor (the norm's low side: ``log_norm_floor_low``).

    Distance and norm ratio are taken in logs (their benign spread is multiplicative); the distance gets
    ``distance_offset`` x the median norm added first, so that differences between near-identical updates
    (distances far below the update norms) never look large.
    """
    norms = np.asarray(scores["norm"], dtype=np.float64)
    offset = config.distance_offset * (float(np.median(norms)) if norms.size else 0.0)
    return {
        "z_distance": (np.log(np.asarray(scores["distance"]) + offset + _TINY), config.log_distance_floor),
        "z_cosine": (np.asarray(scores["cosine"], dtype=np.float64), config.cosine_floor),
        "z_norm": (
            np.log(np.maximum(np.asarray(scores["norm_ratio"], dtype=np.float64), _TINY)),
            config.log_norm_floor,
        ),
        "z_spread": (np.asarray(scores["spread"], dtype=np.float64), config.spread_floor),
    }


def deviation_z_scores(
    scores: Mapping[str, np.ndarray], config: FlagConfig = FlagConfig(), reference: np.ndarray | None = None
) -> dict[str, np.ndarray]:
    """Robust z-scores of (log) distance, cosine, log norm ratio and spread alignment, median/MAD over ``reference``."""
    below = {"z_norm": config.log_norm_floor_low}
    return {
        name: robust_z_scores(values, floor, reference, below.get(name))
        for name, (values, floor) in z_score_inputs(scores, config).items()
    }

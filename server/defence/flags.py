"""Flags: clients whose update deviates from the majority, or near-duplicates of another client."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass

import numpy as np

from fedad.server.defence.config import FlagConfig
from fedad.server.defence.scoring import BAD_SIDE, deviation_z_scores, size_factors, update_scores


def past_threshold(z: Mapping[str, np.ndarray], threshold: float) -> dict[str, np.ndarray]:
    """Per z-score, which clients pass ``threshold`` in its bad direction."""
    return {
        name: np.abs(z[name]) > threshold if side == 0 else side * z[name] > threshold
        for name, side in BAD_SIDE.items()
    }


def near_duplicates(closeness: np.ndarray, config: FlagConfig = FlagConfig()) -> np.ndarray:
    """Clients whose nearest neighbour is suspiciously close, when they are a minority of at least 4 clients."""
    close = np.asarray(closeness) < config.closeness_threshold
    if close.size < config.min_clients_cluster or 2 * int(close.sum()) >= close.size:
        return np.zeros(close.size, dtype=bool)
    return close


def flag_reasons(
    scores: Mapping[str, np.ndarray],
    z: Mapping[str, np.ndarray],
    duplicates: np.ndarray,
    config: FlagConfig = FlagConfig(),
) -> list[str | None]:
    """Human-readable reason per client for every score past its threshold, or None when it passes."""
    n = len(scores["distance"])
    if n < config.min_clients:
        return [None] * n
    past = past_threshold(z, config.z_threshold)
    reasons: list[str | None] = []
    for i in range(n):
        parts = []
        if past["z_cosine"][i]:
            parts.append(f"cosine {scores['cosine'][i]:.2f} to median (z={z['z_cosine'][i]:.1f})")
        if past["z_norm"][i]:
            parts.append(f"norm ratio {scores['norm_ratio'][i]:.3g} to median norm (z={z['z_norm'][i]:+.1f})")
        if past["z_distance"][i]:
            parts.append(f"distance {scores['distance'][i]:.3g} to median update (z={z['z_distance'][i]:.1f})")
        if past["z_spread"][i]:
            parts.append(
                f"deviation aligned with the coordinate-wise spread: cosine {scores['spread'][i]:+.2f} "
                f"(z={z['z_spread'][i]:+.1f})"
            )
        if duplicates[i]:
            parts.append(
                f"near-duplicate of another update (nearest distance "
                f"{scores['closeness'][i]:.3f} x the median nearest distance)"
            )
        factor = float(scores["size_factor"][i]) if "size_factor" in scores else 1.0
        if parts and abs(factor - 1.0) > 1e-6:
            parts.append(f"scores of its update divided by {factor:.3g} for its example count")
        reasons.append("; ".join(parts) if parts else None)
    return reasons


@dataclass
class FlagReport:
    """Scores, z-scores, flags and reasons of one round's valid updates (rows in input order)."""

    scores: dict[str, np.ndarray]
    z: dict[str, np.ndarray]
    flagged: np.ndarray
    reasons: list[str | None]


def flag_deviating_updates(
    updates: np.ndarray, config: FlagConfig = FlagConfig(), counts: np.ndarray | None = None
) -> FlagReport:
    """Score every update against the majority and flag those that deviate (seed paper 000).

    With ``counts`` (each client's example count) and ``config.size_aware``, every update is first divided
    by the size its count predicts (``size_factors``), so that honest sites of very unequal size are not
    flagged for the size of their update alone; the scores' ``size_factor`` says by how much.
    Two passes: robust z-scores over all clients first; then the median and MAD are re-estimated over the
    clients that pass ``prescreen_z`` and are not near-duplicates (if they are a majority and at least
    ``min_clients_reestimate``), so that a colluding minority on one side neither drags the median nor
    inflates the MAD. Flags use the second pass's z-scores against ``z_threshold``, plus the near-duplicate
    test.
    """
    updates = np.asarray(updates, dtype=np.float64)
    n = updates.shape[0]
    factors = np.ones(n)
    if counts is not None and config.size_aware:
        factors = size_factors(
            np.linalg.norm(updates, axis=1), np.asarray(counts), config.size_ratio_cap, config.size_ratio_floor
        )
        updates = updates / factors[:, None]
    scores = update_scores(updates)
    scores["size_factor"] = factors
    duplicates = near_duplicates(scores["closeness"], config)
    z = deviation_z_scores(scores, config)
    clean = ~duplicates
    for mask in past_threshold(z, config.prescreen_z).values():
        clean &= ~mask
    if n >= config.min_clients and int(clean.sum()) >= max(n // 2 + 1, config.min_clients_reestimate):
        z = deviation_z_scores(scores, config, clean)
    reasons = flag_reasons(scores, z, duplicates, config)
    return FlagReport(scores, z, np.array([r is not None for r in reasons], dtype=bool), reasons)


def flag_precision_recall(flagged: Iterable[str], malicious: Iterable[str]) -> tuple[float | None, float | None]:
    """Precision and recall of flagged clients against the truly malicious ones; None where undefined.

    Nothing flagged: precision is 0/0, None (not 1.0: a round that caught nobody must not read as perfect);
    nothing malicious: recall is None. An attack-free round with flags scores (0.0, None).
    """
    flagged, malicious = set(flagged), set(malicious)
    hits = len(flagged & malicious)
    precision = hits / len(flagged) if flagged else None
    recall = hits / len(malicious) if malicious else None
    return precision, recall

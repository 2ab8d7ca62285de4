"""Nearest-neighbour distances above the exact limit: sketch-guided, and the flags still catch attackers."""

from __future__ import annotations

import numpy as np

from fedad.server.defence.config import FlagConfig
from fedad.server.defence.flags import flag_deviating_updates
from fedad.server.defence.neighbours import (
    EXACT_LIMIT,
    exact_nearest_distances,
    nearest_distances,
    sketched_nearest_distances,
)

DIM = 2164  # the default dense model's parameter count


def honest(n: int, rng: np.random.Generator, dim: int = DIM) -> np.ndarray:
    direction = rng.normal(0.0, 2e-3, dim)
    return direction + rng.normal(0.0, 2e-3, (n, dim))


def test_exact_matches_brute_force_in_any_block_size():
    rng = np.random.default_rng(0)
    x = rng.normal(size=(40, 7))
    brute = np.array([min(np.linalg.norm(x[i] - x[j]) for j in range(40) if j != i) for i in range(40)])
    for block in (1, 7, 40, 512):
        assert np.allclose(exact_nearest_distances(x, block_rows=block), brute)
    assert np.isinf(exact_nearest_distances(x[:1])).all()


def test_sketch_is_never_below_the_truth_and_finds_clustered_neighbours():
    rng = np.random.default_rng(1)
    x = honest(900, rng)
    x[100:130] = x[100] + rng.normal(0.0, 1e-5, (30, DIM))  # a cluster of near-duplicates
    exact = exact_nearest_distances(x)
    sketched = sketched_nearest_distances(x, rng=np.random.default_rng(2), block_rows=128)
    assert np.all(sketched >= exact - 1e-12)  # the distance to some real other row
    # every near-duplicate finds a twin in its cluster (maybe not the very nearest of the 29): far below the rest
    assert np.all(sketched[100:130] <= 1.1 * exact[100:130])
    assert sketched[100:130].max() < 0.05 * np.median(sketched)
    # for the honest rows the best candidate is the true neighbour or within a few percent of it
    assert np.median(sketched / exact) < 1.02


def test_nearest_distances_switches_to_the_sketch_above_the_limit():
    rng = np.random.default_rng(3)
    small = honest(EXACT_LIMIT, rng, dim=20)
    assert np.array_equal(nearest_distances(small), exact_nearest_distances(small))
    big = honest(EXACT_LIMIT + 1, rng, dim=20)
    a = nearest_distances(big, rng=np.random.default_rng(4))
    b = sketched_nearest_distances(big, rng=np.random.default_rng(4))
    assert np.array_equal(a, b)


def test_flags_still_catch_attackers_among_1000_clients(monkeypatch):
    """With the sketch: sign-flippers and a colluding near-duplicate group are all flagged, few honest ones."""
    from fedad.server.defence import neighbours

    monkeypatch.setattr(neighbours, "EXACT_LIMIT", 256)  # 1000 clients take the sketch-guided path
    calls = []
    real = neighbours.sketched_nearest_distances
    monkeypatch.setattr(neighbours, "sketched_nearest_distances", lambda c, **kw: calls.append(1) or real(c, **kw))
    rng = np.random.default_rng(5)
    n = 1000
    x = honest(n, rng)
    flip = np.arange(950, 970)
    x[flip] *= -1.0
    colluders = np.arange(970, 1000)  # ALIE-like: one crafted update, each with a tiny jitter
    crafted = np.median(x[:950], axis=0) + 0.5 * np.std(x[:950], axis=0)
    x[colluders] = crafted + rng.normal(0.0, 1e-6, (colluders.size, DIM))
    report = flag_deviating_updates(x, FlagConfig())
    assert report.flagged[flip].all()
    assert report.flagged[colluders].all()
    assert all("near-duplicate" in (report.reasons[i] or "") for i in colluders)
    assert int(report.flagged[:950].sum()) <= 10  # false flags among honest clients stay rare
    assert calls  # the sketch did run

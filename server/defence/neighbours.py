"""Nearest-neighbour distance of every update: exact up to a few hundred clients, sketch-guided above.

Exact all-pairs distances cost O(N^2 d) time and O(N^2) memory (1000 clients x 2164 values: 4 GFlop; 10,000
clients: an 800 MB matrix). Above ``exact_limit`` rows, every row is projected to ``sketch_dim`` random
Gaussian directions (Johnson-Lindenstrauss: distances kept within a small factor with high probability), the
``candidates`` nearest rows in the sketch are found block by block (O(N^2 k) time, O(block N) memory), and
the exact distance to each candidate is computed (O(N c d)). The result is the exact distance to the best
candidate: never below the true nearest distance, and equal to it whenever the true neighbour is among the
candidates -- which near-duplicates, the case the flags look for, always are (a small difference stays
small under the projection). The projection is drawn afresh from OS entropy each call unless ``rng`` is
given, so no client can aim its update at the projection's null space.
"""

from __future__ import annotations

import secrets

import numpy as np

EXACT_LIMIT = 512  # up to this many updates: exact all-pairs distances (the historical behaviour)
SKETCH_DIM = 64
CANDIDATES = 16
BLOCK_ROWS = 512


def exact_nearest_distances(centred: np.ndarray) -> np.ndarray:
    """Exact distance from each row to its nearest other row (inf for a single row)."""
    n = centred.shape[0]
    if n < 2:
        return np.full(n, np.inf)
    sq = np.einsum("ij,ij->i", centred, centred)
    d2 = sq[:, None] + sq[None, :] - 2.0 * (centred @ centred.T)
    np.fill_diagonal(d2, np.inf)
    return np.sqrt(np.maximum(d2.min(axis=1), 0.0))


def sketched_nearest_distances(
    centred: np.ndarray,
    *,
    sketch_dim: int = SKETCH_DIM,
    candidates: int = CANDIDATES,
    block_rows: int = BLOCK_ROWS,
    rng: np.random.Generator | None = None,
) -> np.ndarray:
    """Exact distance from each row to the nearest of its ``candidates`` nearest rows in a random sketch."""
    n, d = centred.shape
    if n < 2:
        return np.full(n, np.inf)
    rng = rng if rng is not None else np.random.default_rng(secrets.randbits(128))
    k = max(1, min(int(sketch_dim), d))
    sketch = centred @ (rng.standard_normal((d, k)) / np.sqrt(k))
    sk_sq = np.einsum("ij,ij->i", sketch, sketch)
    c = max(1, min(int(candidates), n - 1))
    out = np.empty(n)
    for start in range(0, n, max(1, int(block_rows))):
        stop = min(n, start + int(block_rows))
        rows = np.arange(start, stop)
        d2 = sk_sq[rows, None] + sk_sq[None, :] - 2.0 * (sketch[rows] @ sketch.T)
        d2[np.arange(rows.size), rows] = np.inf  # never its own neighbour
        nearest = np.argpartition(d2, c - 1, axis=1)[:, :c]  # (block, c) candidate indices
        best = np.full(rows.size, np.inf)
        for j in range(c):  # one (block, d) difference at a time: memory O(block d), not O(block c d)
            diff = centred[rows] - centred[nearest[:, j]]
            best = np.minimum(best, np.einsum("ij,ij->i", diff, diff))
        out[rows] = np.sqrt(best)
    return out


def nearest_distances(
    centred: np.ndarray, exact_limit: int = EXACT_LIMIT, rng: np.random.Generator | None = None
) -> np.ndarray:
    """Nearest-neighbour distance of every row: exact up to ``exact_limit`` rows, sketch-guided above."""
    centred = np.asarray(centred, dtype=np.float64)
    if centred.shape[0] <= exact_limit:
        return exact_nearest_distances(centred)
    return sketched_nearest_distances(centred, rng=rng)

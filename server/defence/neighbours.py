"""Nearest-neighbour distance of every update: exact and blockwise up to a few thousand clients, sketch-guided above.

All-pairs distances cost O(N^2 d) time; as one matrix they also cost O(N^2) memory (10,000 clients: 800 MB).
Exact distances are therefore computed ``BLOCK_ROWS`` rows at a time (memory O(block N)); BLAS makes them
fast up to a few thousand clients for the default model (3000 x 2164 values: ~0.3 s). Above ``EXACT_LIMIT``
rows, every row is projected to ``SKETCH_DIM`` random Gaussian directions (Johnson-Lindenstrauss: distances
kept within a small factor with high probability), the ``CANDIDATES`` nearest rows in the sketch are found
block by block (O(N^2 k)) and the exact distance to each is computed (O(N c d)). The result is the exact
distance to the best candidate: never below the true nearest distance, equal to it whenever the true
neighbour is among the candidates, which near-duplicates -- the case the flags look for -- always are (a
small difference stays small under the projection). The projection is drawn afresh from OS entropy each
call unless ``rng`` is given, so no client can aim its update at the projection's null space.
"""

from __future__ import annotations

import secrets

import numpy as np

EXACT_LIMIT = 4096  # up to this many updates: exact distances (blockwise); above, sketch-guided
SKETCH_DIM = 64
CANDIDATES = 16
BLOCK_ROWS = 512


def exact_nearest_distances(centred: np.ndarray, block_rows: int = BLOCK_ROWS) -> np.ndarray:
    """Exact distance from each row to its nearest other row (inf for a single row), ``block_rows`` rows at a time."""
    n = centred.shape[0]
    if n < 2:
        return np.full(n, np.inf)
    sq = np.einsum("ij,ij->i", centred, centred)
    out = np.empty(n)
    for start in range(0, n, max(1, int(block_rows))):
        stop = min(n, start + int(block_rows))
        d2 = sq[start:stop, None] + sq[None, :] - 2.0 * (centred[start:stop] @ centred.T)
        d2[np.arange(stop - start), np.arange(start, stop)] = np.inf  # never its own neighbour
        out[start:stop] = np.sqrt(np.maximum(d2.min(axis=1), 0.0))
    return out


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
        mine = centred[start:stop]
        for j in range(c):  # one (block, d) difference at a time: memory O(block d), not O(block c d)
            diff = mine - centred[nearest[:, j]]
            best = np.minimum(best, np.einsum("ij,ij->i", diff, diff))
        out[rows] = np.sqrt(best)
    return out


def nearest_distances(
    centred: np.ndarray, exact_limit: int | None = None, rng: np.random.Generator | None = None
) -> np.ndarray:
    """Nearest-neighbour distance of every row: exact up to ``exact_limit`` (``EXACT_LIMIT``) rows, sketched above."""
    centred = np.asarray(centred, dtype=np.float64)
    if centred.shape[0] <= (EXACT_LIMIT if exact_limit is None else exact_limit):
        return exact_nearest_distances(centred)
    return sketched_nearest_distances(centred, rng=rng)

"""Plain numpy aggregation math: flat updates, weighted means, coordinate-wise median, validation.

Everything here is pure and Flower-free; the strategies in ``fedad.server.strategies`` adapt Flower's
calls to these functions. An *update* is one flat float64 vector: a client's new weights minus the
global weights, flattened layer after layer in the model's order (``flatten``/``unflatten``).
"""

from __future__ import annotations

from collections.abc import Sequence
from functools import reduce

import numpy as np

NDArrays = list[np.ndarray]
Shapes = Sequence[tuple[int, ...]]


def flatten(arrays: Sequence[np.ndarray]) -> np.ndarray:
    """Concatenate arrays, flattened in order, into one float64 vector."""
    if len(arrays) == 0:
        return np.zeros(0, dtype=np.float64)
    return np.concatenate([np.asarray(a, dtype=np.float64).ravel() for a in arrays])


def unflatten(vector: np.ndarray, shapes: Shapes) -> NDArrays:
    """Split a flat vector back into arrays of the given shapes (inverse of ``flatten``)."""
    vector = np.asarray(vector, dtype=np.float64)
    sizes = [int(np.prod(s, dtype=np.int64)) for s in shapes]
    if vector.ndim != 1 or vector.size != sum(sizes):
        raise ValueError(f"vector of shape {vector.shape} does not fill shapes {list(shapes)}")
    offsets = np.cumsum([0] + sizes)
    return [vector[offsets[i] : offsets[i + 1]].reshape(shape) for i, shape in enumerate(shapes)]


def array_shapes(arrays: Sequence[np.ndarray]) -> list[tuple[int, ...]]:
    """Shapes of a list of arrays, as tuples (what ``unflatten`` and ``validate_update`` take)."""
    return [tuple(np.shape(a)) for a in arrays]


def validate_update(arrays: Sequence[np.ndarray], expected_shapes: Shapes) -> str | None:
    """Why a client's arrays cannot be aggregated (count, shape, dtype, NaN/Inf), or None if they can."""
    if len(arrays) != len(expected_shapes):
        return f"wrong number of arrays: {len(arrays)}, expected {len(expected_shapes)}"
    for i, (array, shape) in enumerate(zip(arrays, expected_shapes, strict=True)):
        array = np.asarray(array)
        if tuple(array.shape) != tuple(shape):
            return f"array {i} has shape {tuple(array.shape)}, expected {tuple(shape)}"
        if not (np.issubdtype(array.dtype, np.floating) or np.issubdtype(array.dtype, np.integer)):
            return f"array {i} has non-numeric dtype {array.dtype}"
        bad = int(array.size - np.count_nonzero(np.isfinite(array)))
        if bad:
            return f"array {i} has {bad} non-finite value(s) (NaN/Inf)"
    return None


def validate_vector(update: np.ndarray, dim: int) -> str | None:
    """Why a flat update cannot be aggregated (length, NaN/Inf), or None if it can."""
    update = np.asarray(update)
    if update.ndim != 1 or update.size != dim:
        return f"update has shape {update.shape}, expected ({dim},)"
    if not np.issubdtype(update.dtype, np.number) or np.iscomplexobj(update):
        return f"update has non-real dtype {update.dtype}"
    bad = int(update.size - np.count_nonzero(np.isfinite(update)))
    if bad:
        return f"update has {bad} non-finite value(s) (NaN/Inf)"
    return None


def compute_update(new_arrays: Sequence[np.ndarray], global_arrays: Sequence[np.ndarray]) -> np.ndarray:
    """A client's flat update: its new weights minus the global weights."""
    return flatten(new_arrays) - flatten(global_arrays)


def apply_update(global_arrays: Sequence[np.ndarray], update: np.ndarray) -> NDArrays:
    """New global arrays: the global weights plus a flat update, in the global arrays' shapes and dtypes."""
    shapes = array_shapes(global_arrays)
    return [
        (np.asarray(g, dtype=np.float64) + u).astype(np.asarray(g).dtype)
        for g, u in zip(global_arrays, unflatten(update, shapes), strict=True)
    ]


def weighted_average(results: list[tuple[NDArrays, int]]) -> NDArrays:
    """Compute weighted average (FedAvg; weights are the clients' example counts)."""
    num_examples_total = sum(num_examples for (_, num_examples) in results)
    weighted_weights = [[layer * num_examples for layer in weights] for weights, num_examples in results]
    return [reduce(np.add, layer_updates) / num_examples_total for layer_updates in zip(*weighted_weights, strict=True)]


def stack_updates(updates: Sequence[np.ndarray]) -> np.ndarray:
    """Stack flat updates into an (n, d) float64 matrix."""
    if len(updates) == 0:
        return np.zeros((0, 0), dtype=np.float64)
    return np.vstack([np.asarray(u, dtype=np.float64).ravel() for u in updates])


def weighted_mean(updates: np.ndarray, weights: np.ndarray) -> np.ndarray:
    """Weighted mean of the rows of an (n, d) update matrix; zeros when the weights sum to zero."""
    updates = np.asarray(updates, dtype=np.float64)
    weights = np.asarray(weights, dtype=np.float64)
    total = float(weights.sum())
    if updates.shape[0] == 0 or total <= 0.0:
        return np.zeros(updates.shape[1] if updates.ndim == 2 else 0, dtype=np.float64)
    return (weights / total) @ updates


def coordinate_median(updates: np.ndarray) -> np.ndarray:
    """Coordinate-wise median of the rows of an (n, d) update matrix."""
    updates = np.asarray(updates, dtype=np.float64)
    if updates.shape[0] == 0:
        return np.zeros(updates.shape[1] if updates.ndim == 2 else 0, dtype=np.float64)
    return np.median(updates, axis=0)


def norm_bounds(norms: Sequence[float], ratio: float) -> np.ndarray:
    """Each update's norm bound: ``ratio`` x the median norm of the *other* updates (inf when alone or ratio <= 0).

    Against the others' median, one huge update cannot raise its own bound, even among two clients.
    """
    n = np.asarray(norms, dtype=np.float64)
    if n.size < 2 or not ratio > 0:
        return np.full(n.size, np.inf)
    return np.array([ratio * float(np.median(np.delete(n, i))) for i in range(n.size)])


def clip_to_norm(update: np.ndarray, bound: float) -> np.ndarray:
    """The update scaled down to L2 norm ``bound`` when it is longer (unchanged otherwise)."""
    norm = float(np.linalg.norm(update))
    return update if norm <= bound or norm == 0.0 else update * (bound / norm)


def global_embedding(embeddings: Sequence[np.ndarray | None], num_examples: Sequence[float]) -> np.ndarray | None:
    """Sample-weighted mean of the clients' mean embeddings (missing, non-finite or odd-sized ones skipped).

    This is the alignment target the server sends contrastive clients next round; None when no client sent one.
    """
    dims = [e.size for e in embeddings if e is not None]
    if not dims:
        return None
    dim = max(set(dims), key=dims.count)  # the common size; a peer's odd one is ignored
    rows, weights = [], []
    for e, n in zip(embeddings, num_examples, strict=True):
        if e is not None and e.size == dim and np.all(np.isfinite(e)) and n > 0:
            rows.append(np.asarray(e, dtype=np.float64).ravel())
            weights.append(float(n))
    if not rows:
        return None
    return np.average(np.stack(rows), axis=0, weights=np.asarray(weights))

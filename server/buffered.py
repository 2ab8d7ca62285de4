"""Buffered asynchronous aggregation math (FedBuff, Nguyen et al. 2022): staleness-weighted means of deltas.

Plain numpy, Flower-free. A buffer holds K client *deltas* (new weights minus the global weights each client
trained from, flat as in ``fedad.server.aggregation``), each with a weight (its example count, or its share
after flagging) and its staleness: how many global versions were made since the one it trained from.
The new global model is the current one plus ``server_lr x sum(w_i s(t_i) delta_i) / sum(w_i)`` with
``s(t) = 1 / sqrt(1 + t)``: with all staleness 0 this is FedAvg of the deltas; a stale delta weighs less,
and a buffer of stale deltas moves the model less (the paper's normalisation by the buffer, not by s).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from fedad.server.aggregation import NDArrays, apply_update, stack_updates


def staleness_weight(staleness: int | float) -> float:
    """FedBuff's discount of an update made from a model ``staleness`` versions old: 1 / sqrt(1 + t)."""
    if staleness < 0:
        raise ValueError(f"staleness must be >= 0, got {staleness}")
    return 1.0 / float(np.sqrt(1.0 + float(staleness)))


def buffered_update(
    deltas: Sequence[np.ndarray], weights: Sequence[float], staleness: Sequence[int], server_lr: float = 1.0
) -> np.ndarray:
    """One flat server step: ``server_lr x sum(w_i s(t_i) delta_i) / sum(w_i)``; zeros when no weight is positive."""
    if not len(deltas) == len(weights) == len(staleness):
        raise ValueError("deltas, weights and staleness must have the same length")
    matrix = stack_updates(deltas)
    w = np.asarray(weights, dtype=np.float64)
    total = float(w.sum()) if w.size else 0.0
    if matrix.shape[0] == 0 or not total > 0.0:
        return np.zeros(matrix.shape[1] if matrix.ndim == 2 else 0, dtype=np.float64)
    s = np.array([staleness_weight(t) for t in staleness])
    return float(server_lr) * ((w * s) / total) @ matrix


def fedbuff_step(
    global_weights: Sequence[np.ndarray],
    deltas: Sequence[np.ndarray],
    counts: Sequence[float],
    staleness: Sequence[int],
    server_lr: float = 1.0,
) -> NDArrays:
    """New global weights from the current ones and a buffer of (flat delta, example count, staleness)."""
    return apply_update(global_weights, buffered_update(deltas, counts, staleness, server_lr))

"""FedAvg (McMahan et al.; seed paper 000 §3.4): the global model is the sample-weighted mean of client models.

Sane by default: sample counts arrive capped by what each node declared (the server does that), and an
update whose L2 norm exceeds ``max_update_norm_ratio`` x the median norm of the round's other updates is
refused (``norm_action="refuse"``, the default) or scaled down to that bound (``"clip"``); ratio 0 turns
the bound off.
"""

from __future__ import annotations

import numpy as np

from fedad.server.aggregation import apply_update, clip_to_norm, compute_update, norm_bounds, weighted_average
from fedad.server.buffered import buffered_update
from fedad.server.strategies.base import FedadStrategy

NORM_ACTIONS = ("refuse", "clip")


class FedAvg(FedadStrategy):
    """Sample-count weighted average of the accepted client weights, with updates bounded by the median norm."""

    name = "fedavg"

    def __init__(self, *, max_update_norm_ratio: float = 10.0, norm_action: str = "refuse", **kwargs) -> None:
        super().__init__(**kwargs)
        if norm_action not in NORM_ACTIONS:
            raise ValueError(f"norm_action must be one of {NORM_ACTIONS}, got {norm_action!r}")
        self.max_update_norm_ratio, self.norm_action = float(max_update_norm_ratio), norm_action

    def aggregate_updates(self, server_round: int, accepted) -> list[np.ndarray]:
        glob = self.global_weights or []
        updates = [compute_update(w, glob) for _, w, _, _ in accepted]
        bounds = norm_bounds([float(np.linalg.norm(u)) for u in updates], self.max_update_norm_ratio)
        kept = []
        for (name, weights, n, _), u, bound in zip(accepted, updates, bounds, strict=True):
            norm = float(np.linalg.norm(u))
            if norm <= bound:
                kept.append((weights, n))
            elif self.norm_action == "clip":
                kept.append((apply_update(glob, clip_to_norm(u, bound)), n))
                self.last_clipped[name] = f"update norm {norm:.3g} clipped to {bound:.3g}"
            else:
                self.last_rejections[name] = (
                    f"update norm {norm:.3g} is over {self.max_update_norm_ratio:g}x the "
                    f"median of the others ({bound:.3g})"
                )
        if not kept:
            return [np.asarray(g).copy() for g in glob]
        return weighted_average(kept)

    def aggregate_buffer(self, names, deltas, counts, staleness, embeddings, server_lr: float = 1.0) -> np.ndarray:
        """FedBuff step over the buffer, each delta bounded by the median norm of the buffer's others."""
        self.last_rejections, self.last_clipped, self.last_client_reports = {}, {}, {}
        norms = [float(np.linalg.norm(d)) for d in deltas]
        kept: list[tuple[np.ndarray, float, int]] = []
        for name, d, n, t, norm, bound in zip(
            names, deltas, counts, staleness, norms, norm_bounds(norms, self.max_update_norm_ratio), strict=True
        ):
            if norm <= bound:
                kept.append((d, n, t))
            elif self.norm_action == "clip":
                kept.append((clip_to_norm(d, bound), n, t))
                self.last_clipped[name] = f"update norm {norm:.3g} clipped to {bound:.3g}"
            else:
                self.last_rejections[name] = (
                    f"update norm {norm:.3g} is over {self.max_update_norm_ratio:g}x the median of the others "
                    f"({bound:.3g})"
                )
        used = {n for n in names if n not in self.last_rejections}
        self.note_embeddings([e if n in used else None for n, e in zip(names, embeddings, strict=True)], counts)
        dim = deltas[0].size if deltas else 0
        if not kept:
            return np.zeros(dim)
        return buffered_update([k[0] for k in kept], [k[1] for k in kept], [k[2] for k in kept], server_lr)

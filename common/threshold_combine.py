"""The global threshold from the nodes' validation-score histograms, robust to one node that lies.

Every node sends the histogram of its normal validation scores on the shared bins and declares how many
scores it binned. The server

1. drops a histogram whose counts do not sum to the node's declared count (or that is empty);
2. computes each remaining node's own threshold under the rule from its histogram alone;
3. pools the histograms and computes the pooled threshold under the rule;
4. clamps the pooled threshold into [second-smallest, second-largest] node threshold (with three or more
   nodes), so one node with invented counts cannot move the threshold beyond every honest node's own
   threshold: an honest node has about ``expected_far`` of its normal scores above its own threshold, so
   the result is never above all honest scores nor below all of them.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np

from fedad.common.threshold_rule import threshold_from_histogram_by_rule


@dataclass
class CombinedThreshold:
    """The combined threshold, the pooled value before clamping, each node's own threshold, dropped nodes."""

    threshold: float
    pooled: float
    node_thresholds: dict[str, float] = field(default_factory=dict)
    dropped: dict[str, str] = field(default_factory=dict)


def combine_histograms(
    histograms: dict[str, tuple[Any, int]], edges: Any, rule: str, quantile: float = 0.99, far: float | None = None
) -> CombinedThreshold:
    """Robust global threshold from {node: (counts, declared count)} (see the module docstring).

    Raises ValueError when no node's histogram is usable.
    """
    kept: dict[str, np.ndarray] = {}
    dropped: dict[str, str] = {}
    for name, (counts, declared) in histograms.items():
        c = np.asarray(counts, dtype=np.int64).reshape(-1)
        total = int(c.sum())
        if (c < 0).any():
            dropped[name] = "negative counts"
        elif total == 0:
            dropped[name] = "empty histogram"
        elif total != int(declared):
            dropped[name] = f"histogram holds {total} scores but the node declared {int(declared)}"
        else:
            kept[name] = c
    if not kept:
        raise ValueError("no usable validation-score histogram: " + "; ".join(f"{k}: {v}" for k, v in dropped.items()))
    nodes = {name: threshold_from_histogram_by_rule(c, edges, rule, quantile, far) for name, c in kept.items()}
    pooled = threshold_from_histogram_by_rule(np.sum(list(kept.values()), axis=0), edges, rule, quantile, far)
    threshold = pooled
    if len(nodes) >= 3:
        ordered = sorted(nodes.values())
        threshold = min(max(pooled, ordered[1]), ordered[-2])
    return CombinedThreshold(threshold=float(threshold), pooled=float(pooled), node_thresholds=nodes, dropped=dropped)

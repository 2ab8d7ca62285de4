"""Which rule turns normal validation scores into an alarm threshold, and the false-alarm rate it expects.

- ``quantile``: the ``quantile`` (or 1 - ``far``) of the normal scores (``fedad.common.threshold``);
- ``pot``: peaks-over-threshold at risk ``far`` (default ``DEFAULT_RISK``), a generalised Pareto tail fitted
  to the upper tail of the scores (``fedad.common.pot``); it extrapolates below 1 / n.

Histograms (federated): the rule runs on the binned scores, each bin's count placed at the bin's
log-midpoint (at most half a bin, ≈ 1.8 % with the shared edges, from the true score).
"""

from __future__ import annotations

from typing import Any

import numpy as np

from fedad.common.errors import FedadError
from fedad.common.pot import DEFAULT_RISK, pot_threshold
from fedad.common.threshold import threshold_from_histogram, threshold_from_scores

THRESHOLD_RULES: tuple[str, ...] = ("quantile", "pot")
DEFAULT_RULE = "pot"
# the histogram of a big site is expanded to at most this many representative scores for the POT fit
_MAX_POT_SAMPLES = 200_000


def check_rule(rule: Any) -> str:
    """``rule`` validated."""
    if rule not in THRESHOLD_RULES:
        raise FedadError(f"unknown threshold rule {rule!r} (choose from {', '.join(THRESHOLD_RULES)})")
    return str(rule)


def expected_far(rule: str, quantile: float = 0.99, far: float | None = None) -> float:
    """The false-alarm rate on normal records the rule is set for."""
    if far is not None:
        return float(far)
    return DEFAULT_RISK if check_rule(rule) == "pot" else 1.0 - float(quantile)


def threshold_by_rule(scores: Any, rule: str = DEFAULT_RULE, quantile: float = 0.99, far: float | None = None) -> float:
    """The threshold of normal ``scores`` under ``rule`` (see the module docstring)."""
    if check_rule(rule) == "quantile" or (far is not None and float(far) <= 0):
        return threshold_from_scores(scores, quantile=quantile, far=far)
    return pot_threshold(scores, risk=expected_far(rule, quantile, far))


def histogram_scores(counts: Any, edges: Any, limit: int = _MAX_POT_SAMPLES) -> np.ndarray:
    """Representative scores of a histogram: each bin's log-midpoint, repeated (proportionally, when the
    total exceeds ``limit``) by its count."""
    c = np.asarray(counts, dtype=np.float64).reshape(-1)
    e = np.asarray(edges, dtype=np.float64).reshape(-1)
    mids = np.sqrt(e[:-1] * e[1:])
    total = c.sum()
    if total > limit:
        c = np.floor(c * (limit / total))
        c[np.argmax(counts)] += limit - c.sum()
    return np.repeat(mids, c.astype(np.int64))


def threshold_from_histogram_by_rule(
    counts: Any, edges: Any, rule: str = DEFAULT_RULE, quantile: float = 0.99, far: float | None = None
) -> float:
    """The threshold under ``rule`` from binned normal scores (quantile: ``threshold_from_histogram``)."""
    if check_rule(rule) == "quantile":
        return threshold_from_histogram(counts, edges, quantile=quantile, far=far)
    scores = histogram_scores(counts, edges)
    if scores.size == 0:
        raise FedadError("cannot set a threshold from an empty histogram (no scores)")
    return threshold_by_rule(scores, rule, quantile, far)

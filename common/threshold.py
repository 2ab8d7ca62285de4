"""Anomaly thresholds from scores of normal data: exact (local) or from shared log-scale histograms (federated).

Convention: a record is an alarm when its score is strictly greater than the threshold, so a threshold with
at least ``quantile`` of the normal scores at or below it has a false-alarm rate of at most ``1 - quantile``
on those scores.

Federated: every client bins its normal validation scores with the same ``score_bin_edges()``, sends the
``score_histogram`` counts (no scores), the server adds the counts and calls ``threshold_from_histogram``.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from fedad.common.errors import FedadError

# Rank tolerance: q * n computed in floating point can land a hair above an integer (0.07 * 100 =
# 7.000000000000001); that must not cost one more record.
_RANK_RTOL = 1e-12


def _check_fraction(name: str, value: Any, low_open: bool, high_open: bool) -> float:
    ok = isinstance(value, (int, float, np.floating, np.integer)) and not isinstance(value, bool)
    if ok:
        value = float(value)
        ok = (
            math.isfinite(value)
            and (value > 0 if low_open else value >= 0)
            and (value < 1 if high_open else value <= 1)
        )
    if not ok:
        interval = ("(" if low_open else "[") + "0, 1" + (")" if high_open else "]")
        raise FedadError(f"{name} must be a number in {interval}, got {value!r}")
    return value


def _resolve_quantile(quantile: float, far: float | None) -> float:
    if far is not None:
        return 1.0 - _check_fraction("far (target false-alarm rate)", far, low_open=False, high_open=True)
    return _check_fraction("quantile", quantile, low_open=True, high_open=False)


def _rank(quantile: float, total: int) -> int:
    """Smallest count k >= 1 with k >= quantile * total (the k-th smallest score is the quantile)."""
    target = quantile * total
    return max(1, math.ceil(target - _RANK_RTOL * target))


def _scores_1d(scores: Any) -> np.ndarray:
    try:
        s = np.asarray(scores, dtype=np.float64).reshape(-1)
    except (TypeError, ValueError):
        raise FedadError("scores must be numeric") from None
    if np.isnan(s).any():
        raise FedadError(f"scores contain {int(np.isnan(s).sum())} NaN value(s)")
    return s


def threshold_from_scores(scores: Any, quantile: float = 0.99, far: float | None = None) -> float:
    """The ``quantile`` of normal ``scores`` (lower empirical quantile: at least that fraction at or below).

    ``far``, when given, is the target false-alarm rate and drives instead: quantile = 1 - far.
    """
    q = _resolve_quantile(quantile, far)
    s = _scores_1d(scores)
    if s.size == 0:
        raise FedadError("cannot set a threshold from zero scores")
    k = _rank(q, s.size)
    return float(np.partition(s, k - 1)[k - 1])


def score_bin_edges(lo: float = 1e-8, hi: float = 1e8, bins_per_decade: int = 64) -> np.ndarray:
    """Log-spaced bin edges shared by all clients: ``bins_per_decade`` bins per factor 10 from lo up to hi.

    Bin i holds scores in [edges[i], edges[i+1]); bin 0 also takes everything below edges[1] (scores < lo,
    zero, negative) and the last bin everything from edges[-2] up (scores > hi). The relative resolution is
    one bin, a factor 10 ** (1 / bins_per_decade) (≈ 3.7 % for 64).
    """
    if not (isinstance(lo, (int, float)) and isinstance(hi, (int, float)) and 0 < lo < hi and math.isfinite(hi)):
        raise FedadError(f"score bins need 0 < lo < hi (finite), got lo={lo!r}, hi={hi!r}")
    if isinstance(bins_per_decade, bool) or not isinstance(bins_per_decade, (int, np.integer)) or bins_per_decade < 1:
        raise FedadError(f"bins_per_decade must be an integer >= 1, got {bins_per_decade!r}")
    decades = math.log10(hi) - math.log10(lo)
    n_bins = max(1, math.ceil(decades * bins_per_decade - 1e-9))
    start = math.log10(lo)
    return np.logspace(start, start + n_bins / bins_per_decade, n_bins + 1)


def _check_edges(edges: Any) -> np.ndarray:
    e = np.asarray(edges, dtype=np.float64).reshape(-1)
    if e.size < 2 or not np.isfinite(e).all() or not (np.diff(e) > 0).all():
        raise FedadError("bin edges must be at least two finite, strictly increasing numbers")
    return e


def score_histogram(scores: Any, edges: Any) -> np.ndarray:
    """Counts (int64, len(edges) - 1) of ``scores`` in the bins of ``edges``, under/overflow in the end bins."""
    e = _check_edges(edges)
    s = _scores_1d(scores)
    n_bins = e.size - 1
    idx = np.searchsorted(e, s, side="right") - 1
    np.clip(idx, 0, n_bins - 1, out=idx)
    return np.bincount(idx, minlength=n_bins).astype(np.int64)


def _check_counts(counts: Any, e: np.ndarray) -> np.ndarray:
    c = np.asarray(counts).reshape(-1)
    if c.size != e.size - 1:
        raise FedadError(f"histogram has {c.size} bins but the edges define {e.size - 1}")
    if c.size and not np.issubdtype(c.dtype, np.integer):
        if not (np.isfinite(c).all() and (c == np.round(c)).all()):
            raise FedadError("histogram counts must be whole numbers")
    c = c.astype(np.int64)
    if (c < 0).any():
        raise FedadError("histogram counts must be non-negative")
    if c.sum() == 0:
        raise FedadError("cannot set a threshold from an empty histogram (no scores)")
    return c


def _quantile_bin(c: np.ndarray, q: float) -> tuple[int, np.ndarray, int]:
    cum = np.cumsum(c)
    need = _rank(q, int(cum[-1]))
    return int(np.searchsorted(cum, need, side="left")), cum, need


def threshold_from_histogram(counts: Any, edges: Any, quantile: float = 0.99, far: float | None = None) -> float:
    """Upper edge of the bin holding the ``quantile`` of the binned scores: at least that mass is at or below it.

    Resolution: the result is at most one bin above the exact quantile (``threshold_from_scores`` of the
    same scores), i.e. within a factor 10 ** (1/64) ≈ 1.037 (+3.7 %) with the default edges, and never below
    it. If the quantile falls in the overflow bin the result is edges[-1] (the guarantee then only covers
    scores up to hi; with the default hi=1e8 that means the model is broken anyway).
    ``far``, when given, drives instead of ``quantile`` as in ``threshold_from_scores``.
    """
    q = _resolve_quantile(quantile, far)
    e = _check_edges(edges)
    c = _check_counts(counts, e)
    i, _, _ = _quantile_bin(c, q)
    return float(e[i + 1])


def histogram_quantile(counts: Any, edges: Any, quantile: float) -> float:
    """Point estimate of the ``quantile`` from a histogram, interpolating log-linearly inside its bin.

    For reporting (medians, percentiles); thresholds use the conservative ``threshold_from_histogram``.
    """
    q = _check_fraction("quantile", quantile, low_open=True, high_open=False)
    e = _check_edges(edges)
    c = _check_counts(counts, e)
    i, cum, need = _quantile_bin(c, q)
    below = int(cum[i - 1]) if i > 0 else 0
    frac = (need - below) / int(c[i])
    lo, hi = e[i], e[i + 1]
    if lo <= 0:
        return float(lo + frac * (hi - lo))
    return float(lo * (hi / lo) ** frac)

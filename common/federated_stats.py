"""Statistics that replace raw data in a federation: scaler sums, score histograms, confusion counts."""

from __future__ import annotations

import numpy as np

from fedad.common.metrics import metrics_from_confusion, roc_auc_from_histograms
from fedad.common.preprocessing import ScalerStats
from fedad.common.threshold import score_bin_edges, score_histogram, threshold_from_histogram
from fedad.common.wire import WireError, decode_array, encode_array

BIN_EDGES = score_bin_edges()
N_BINS = len(BIN_EDGES) - 1


def encode_scaler_stats(stats: ScalerStats) -> bytes:
    """count, sum, sumsq, min, max as one float64 vector."""
    return encode_array(np.concatenate([[stats.count], stats.sum, stats.sumsq, stats.min, stats.max]))


def decode_scaler_stats(data: bytes, n_features: int | None = None) -> ScalerStats:
    """Inverse of ``encode_scaler_stats`` with a length check."""
    v = decode_array(data)
    if (v.size - 1) % 4 or v.size < 5:
        raise WireError(f"scaler statistics of {v.size} values do not split into 4 per feature + count")
    d = (v.size - 1) // 4
    if n_features is not None and d != n_features:
        raise WireError(f"scaler statistics for {d} features, expected {n_features}")
    if v[0] < 1 or v[0] != int(v[0]):
        raise WireError(f"scaler count {v[0]} is not a positive integer")
    return ScalerStats(
        count=int(v[0]), sum=v[1 : 1 + d], sumsq=v[1 + d : 1 + 2 * d], min=v[1 + 2 * d : 1 + 3 * d], max=v[1 + 3 * d :]
    )


def histogram(scores: np.ndarray) -> np.ndarray:
    """Counts of scores on the shared log-scale bins that every client uses."""
    return score_histogram(scores, BIN_EDGES)


def encode_histogram(counts: np.ndarray) -> bytes:
    return encode_array(counts, "<i8")


def decode_histogram(data: bytes) -> np.ndarray:
    counts = decode_array(data, "<i8", length=N_BINS)
    if np.any(counts < 0):
        raise WireError("negative histogram counts")
    return counts


def global_threshold(counts: np.ndarray, quantile: float) -> float:
    """Threshold at ``quantile`` of the summed validation-score histogram."""
    return float(threshold_from_histogram(counts, BIN_EDGES, quantile))


def rule_threshold(counts: np.ndarray, spec) -> float:
    """Threshold of a (summed) validation-score histogram under the federation spec's rule."""
    from fedad.common.threshold_rule import threshold_from_histogram_by_rule

    return float(
        threshold_from_histogram_by_rule(
            counts, BIN_EDGES, spec.threshold_rule, spec.threshold_quantile, spec.target_far
        )
    )


def combined_threshold(histograms: dict, spec):
    """``CombinedThreshold`` of {node: (counts, declared count)} under the spec's rule (robust to one node)."""
    from fedad.common.threshold_combine import combine_histograms

    return combine_histograms(histograms, BIN_EDGES, spec.threshold_rule, spec.threshold_quantile, spec.target_far)


def metrics_from_counts(tp: int, fp: int, tn: int, fn: int, pos_hist: np.ndarray, neg_hist: np.ndarray) -> dict:
    """Detection metrics from summed confusion counts, ROC-AUC from summed per-class score histograms."""
    m = metrics_from_confusion(tp, fp, tn, fn)
    m["roc_auc"] = roc_auc_from_histograms(pos_hist, neg_hist) if pos_hist.sum() and neg_hist.sum() else None
    return m

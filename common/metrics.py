"""Detection metrics: from labels and scores, from confusion counts, and from binned score histograms.

Anomalies are the positive class (label 1). A metric that is undefined is ``None`` (null in JSON, n/a in
tables), never a made-up 0.0 that reads like a result and never NaN:

- with no anomalies in the labels (TP + FN = 0), precision, recall, f1 and mar are None: there was
  nothing to detect, so a detector's quality at detecting cannot be measured;
- precision = TP/(TP+FP), None when nothing is flagged;
- recall = TP/(TP+FN); f1 = 2TP/(2TP+FP+FN); mar (missed alarm rate) = FN/(FN+TP);
- far (false alarm rate) = FP/(FP+TN), None when there are no normal rows;
- roc_auc and pr_auc (average precision) are None when y_true holds only one class.

The histogram functions give the exact ROC of scores that were binned on shared edges (as federated
clients report them, see ``fedad.common.threshold.score_bin_edges``): within a bin all scores tie, and a
tie between a positive and a negative counts 1/2, exactly as ``sklearn.metrics.roc_auc_score`` does.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

# scikit-learn is imported where it is used: it costs about 0.6 CPU-s, and federated clients, which send
# confusion counts and histograms, never need it (ten of them start at once on a small host)

METRIC_KEYS = ("precision", "recall", "f1", "roc_auc", "pr_auc", "far", "mar")


def _ratio(num: float, den: float) -> float | None:
    return float(num) / float(den) if den else None


def confusion_counts(
    y_true: Sequence[int] | np.ndarray, y_pred: Sequence[int] | np.ndarray
) -> tuple[int, int, int, int]:
    """(tp, fp, tn, fn) of 0/1 predictions against 0/1 labels."""
    y_true = _as_labels(y_true, "y_true")
    y_pred = _as_labels(y_pred, "y_pred")
    if y_true.shape != y_pred.shape:
        raise ValueError(f"y_true has {y_true.size} rows but y_pred has {y_pred.size}")
    from sklearn.metrics import confusion_matrix

    tn, fp, fn, tp = confusion_matrix(y_true, y_pred, labels=[0, 1]).ravel()
    return int(tp), int(fp), int(tn), int(fn)


def metrics_from_confusion(tp: int, fp: int, tn: int, fn: int) -> dict[str, float | None]:
    """precision, recall, f1, far, mar from confusion counts (what federated clients send); None when undefined."""
    for name, v in (("tp", tp), ("fp", fp), ("tn", tn), ("fn", fn)):
        if v < 0:
            raise ValueError(f"{name} must be >= 0, got {v}")
    positives = tp + fn
    return {
        "precision": _ratio(tp, tp + fp) if positives else None,
        "recall": _ratio(tp, positives),
        "f1": _ratio(2 * tp, 2 * tp + fp + fn) if positives else None,
        "far": _ratio(fp, fp + tn),
        "mar": _ratio(fn, positives),
    }


def detection_metrics(
    y_true: Sequence[int] | np.ndarray,
    scores: Sequence[float] | np.ndarray | None,
    y_pred: Sequence[int] | np.ndarray,
) -> dict[str, float | None]:
    """precision, recall, f1, roc_auc, pr_auc, far, mar of one detector on one labelled set.

    ``scores`` (higher = more anomalous) drive the ranking metrics; ``y_pred`` (0/1) the thresholded
    ones. roc_auc/pr_auc are None when y_true has one class only, or when ``scores`` is None.
    """
    y_true = _as_labels(y_true, "y_true")
    out: dict[str, float | None] = dict(metrics_from_confusion(*confusion_counts(y_true, y_pred)))
    out["roc_auc"] = None
    out["pr_auc"] = None
    if scores is not None:
        s = np.asarray(scores, dtype=np.float64).ravel()
        if s.shape != y_true.shape:
            raise ValueError(f"y_true has {y_true.size} rows but scores has {s.size}")
        if not np.all(np.isfinite(s)):
            raise ValueError("scores contain NaN or infinite values")
        if 0 < int(y_true.sum()) < y_true.size:
            from sklearn.metrics import average_precision_score, roc_auc_score

            out["roc_auc"] = float(roc_auc_score(y_true, s))
            out["pr_auc"] = float(average_precision_score(y_true, s))
    return {k: out[k] for k in METRIC_KEYS}


def roc_curve_from_histograms(
    pos_counts: Sequence[float] | np.ndarray, neg_counts: Sequence[float] | np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """(fpr, tpr) of binned scores, bins ordered by increasing score, flagging bins from the top down.

    Points start at (0, 0) and end at (1, 1); the trapezoid area under them equals
    ``roc_auc_from_histograms``. Raises ValueError when either class has no counts.
    """
    pos, neg = _as_histograms(pos_counts, neg_counts)
    p, n = pos.sum(), neg.sum()
    if p <= 0 or n <= 0:
        raise ValueError("a ROC curve needs at least one positive and one negative count")
    tpr = np.concatenate([[0.0], np.cumsum(pos[::-1]) / p])
    fpr = np.concatenate([[0.0], np.cumsum(neg[::-1]) / n])
    return fpr, tpr


def roc_auc_from_histograms(
    pos_counts: Sequence[float] | np.ndarray, neg_counts: Sequence[float] | np.ndarray
) -> float | None:
    """Exact ROC-AUC of binned scores (ties within a bin count 1/2); None when a class has no counts."""
    pos, neg = _as_histograms(pos_counts, neg_counts)
    p, n = pos.sum(), neg.sum()
    if p <= 0 or n <= 0:
        return None
    neg_below = np.cumsum(neg) - neg  # negatives in strictly lower bins
    return float(np.sum(pos * (neg_below + 0.5 * neg)) / (p * n))


def _as_labels(y: Sequence[int] | np.ndarray, name: str) -> np.ndarray:
    arr = np.asarray(y).ravel()
    if arr.size and not np.isin(arr, (0, 1)).all():
        raise ValueError(f"{name} must hold only 0 and 1")
    return arr.astype(np.int8)


def _as_histograms(pos_counts, neg_counts) -> tuple[np.ndarray, np.ndarray]:
    pos = np.asarray(pos_counts, dtype=np.float64).ravel()
    neg = np.asarray(neg_counts, dtype=np.float64).ravel()
    if pos.shape != neg.shape:
        raise ValueError(f"histograms differ in length: {pos.size} positive bins, {neg.size} negative bins")
    if (pos < 0).any() or (neg < 0).any():
        raise ValueError("histogram counts must be >= 0")
    return pos, neg

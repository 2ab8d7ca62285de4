"""Metrics against hand-computed cases and against scikit-learn."""

import numpy as np
import pytest
from sklearn.metrics import roc_auc_score, roc_curve

from fedad.common.metrics import (
    METRIC_KEYS,
    confusion_counts,
    detection_metrics,
    metrics_from_confusion,
    roc_auc_from_histograms,
    roc_curve_from_histograms,
)

# 10 rows: TP=3 (rows 6,7,8), FP=2 (rows 4,5), TN=4 (rows 0-3), FN=1 (row 9)
Y_TRUE = [0, 0, 0, 0, 0, 0, 1, 1, 1, 1]
Y_PRED = [0, 0, 0, 0, 1, 1, 1, 1, 1, 0]
SCORES = [0.1, 0.2, 0.3, 0.4, 0.8, 0.9, 0.7, 0.95, 0.85, 0.35]


def test_ten_row_example_by_hand():
    assert confusion_counts(Y_TRUE, Y_PRED) == (3, 2, 4, 1)
    m = detection_metrics(Y_TRUE, SCORES, Y_PRED)
    assert tuple(m) == METRIC_KEYS
    assert m["precision"] == pytest.approx(3 / 5)
    assert m["recall"] == pytest.approx(3 / 4)
    assert m["f1"] == pytest.approx(6 / 9)
    assert m["far"] == pytest.approx(2 / 6)
    assert m["mar"] == pytest.approx(1 / 4)
    # positives .7,.95,.85,.35 beat 4,6,5,3 of the 6 negatives
    assert m["roc_auc"] == pytest.approx(18 / 24)
    # ranks of positives 1,3,5,7 -> precisions 1, 2/3, 3/5, 4/7
    assert m["pr_auc"] == pytest.approx((1 + 2 / 3 + 3 / 5 + 4 / 7) / 4)


def test_confusion_metrics_match_label_metrics():
    m = detection_metrics(Y_TRUE, SCORES, Y_PRED)
    c = metrics_from_confusion(3, 2, 4, 1)
    for k, v in c.items():
        assert m[k] == pytest.approx(v)


def test_undefined_metrics_are_none_not_zero():
    m = detection_metrics([0, 0, 0, 0], [0.1, 0.5, 0.2, 0.9], [0, 1, 0, 0])  # no anomalies to detect
    assert m["roc_auc"] is None and m["pr_auc"] is None
    assert m["far"] == pytest.approx(0.25)
    assert m["precision"] is None and m["recall"] is None and m["f1"] is None and m["mar"] is None
    m = detection_metrics([1, 1], [0.3, 0.4], [1, 0])  # no normal rows: FAR undefined
    assert m["roc_auc"] is None and m["far"] is None and m["mar"] == pytest.approx(0.5)
    m = metrics_from_confusion(0, 0, 5, 3)  # anomalies, none flagged: precision undefined, the rest are numbers
    assert m["precision"] is None and m["recall"] == 0.0 and m["f1"] == 0.0 and m["mar"] == 1.0 and m["far"] == 0.0
    assert all(v is None for v in metrics_from_confusion(0, 0, 0, 0).values())


def test_bad_shapes_and_labels_raise():
    with pytest.raises(ValueError):
        detection_metrics([0, 1], [0.1], [0, 1])
    with pytest.raises(ValueError):
        detection_metrics([0, 2], [0.1, 0.2], [0, 1])
    with pytest.raises(ValueError):
        metrics_from_confusion(-1, 0, 0, 0)


def test_histogram_auc_equals_sklearn_on_integer_scores():
    rng = np.random.default_rng(0)
    y = rng.integers(0, 2, 500)
    scores = rng.integers(0, 12, 500) + 3 * y  # many ties, positives shifted up
    bins = np.arange(scores.max() + 1)
    pos = np.bincount(scores[y == 1], minlength=bins.size)
    neg = np.bincount(scores[y == 0], minlength=bins.size)
    assert roc_auc_from_histograms(pos, neg) == pytest.approx(roc_auc_score(y, scores), abs=1e-12)
    fpr, tpr = roc_curve_from_histograms(pos, neg)
    assert np.trapezoid(tpr, fpr) == pytest.approx(roc_auc_score(y, scores), abs=1e-12)
    sk_fpr, sk_tpr, _ = roc_curve(y, scores, drop_intermediate=False)
    # every sklearn point is on the histogram curve (empty bins only repeat points)
    pts = set(zip(np.round(fpr, 12), np.round(tpr, 12), strict=True))
    assert set(zip(np.round(sk_fpr, 12), np.round(sk_tpr, 12), strict=True)) <= pts


def test_histogram_auc_edge_cases():
    assert roc_auc_from_histograms([0, 0, 3], [3, 0, 0]) == 1.0
    assert roc_auc_from_histograms([0, 2, 0], [0, 5, 0]) == 0.5
    assert roc_auc_from_histograms([0, 0], [1, 2]) is None
    with pytest.raises(ValueError):
        roc_auc_from_histograms([1, 2], [1])
    with pytest.raises(ValueError):
        roc_curve_from_histograms([0, 0], [1, 1])

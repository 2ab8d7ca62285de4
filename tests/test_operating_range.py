"""The share of scored records outside the training records' range, and the line that names such nodes."""

import numpy as np
import pytest

from fedad.common.operating_range import describe_outside, outside_training_range


def test_rows_outside_any_features_range_are_counted_once():
    train = np.array([[0.0, 10.0], [1.0, 20.0], [0.5, 15.0]])
    rows = np.array([[0.5, 15.0], [2.0, 15.0], [-1.0, 25.0], [1.0, 10.0]])  # inside, x out, both out, on the edges
    r = outside_training_range(train, rows)
    assert r.share == pytest.approx(0.5)
    np.testing.assert_allclose(r.feature_shares, [0.5, 0.25])
    assert r.most_outside == 0
    assert r.note(["x", "y"], "rows", "the training rows") == (
        "50% of the rows lie outside the range of the training rows (most often x, 50%): alarms there may be an "
        "operating state the model never saw rather than a fault"
    )
    assert outside_training_range(train, rows[:1]).note(["x", "y"], "rows", "the training rows") is None


def test_missing_values_count_as_inside_and_nothing_outside_names_no_feature():
    train = np.array([[0.0, np.nan], [1.0, np.nan]])  # the second feature has no training value at all
    r = outside_training_range(train, np.array([[np.nan, 5.0], [0.5, -5.0]]))
    assert r.share == 0.0 and r.most_outside == -1
    assert outside_training_range(train, np.zeros((0, 2))).share == 0.0
    with pytest.raises(ValueError, match="differ in features"):
        outside_training_range(train, np.zeros((3, 3)))


def test_the_line_names_notable_nodes_with_their_feature_and_false_alarm_rate():
    per_client = {
        "b": {"tp": 1, "fp": 20, "tn": 60, "fn": 0, "outside_training_range": 0.9, "most_outside_feature": "speed"},
        "a": {"tp": 1, "fp": 0, "tn": 80, "fn": 0, "outside_training_range": 0.04, "most_outside_feature": "flow"},
        "c": {"tp": 1, "fp": 0, "tn": 80, "fn": 0},  # an older node that sends no share
    }
    line = describe_outside(per_client)
    assert line is not None and line.endswith("b 90 % (speed, false alarms 25.0 %)")
    assert describe_outside({k: per_client[k] for k in ("a", "c")}) is None

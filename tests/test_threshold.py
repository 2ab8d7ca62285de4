import numpy as np
import pytest

from fedad.common.errors import FedadError
from fedad.common.threshold import (
    histogram_quantile,
    score_bin_edges,
    score_histogram,
    threshold_from_histogram,
    threshold_from_scores,
)

BIN_FACTOR = 10 ** (1 / 64)


def test_threshold_quantile_is_lower_empirical_quantile():
    scores = np.arange(1, 101, dtype=np.float64)[::-1]  # 1..100, unsorted
    assert threshold_from_scores(scores, quantile=0.99) == 99.0
    assert threshold_from_scores(scores, quantile=0.5) == 50.0
    assert threshold_from_scores(scores, quantile=1.0) == 100.0
    assert threshold_from_scores(scores, quantile=0.07) == 7.0  # 0.07 * 100 rounds above 7 in floating point


def test_threshold_far_drives_and_bounds_false_alarms():
    rng = np.random.default_rng(0)
    scores = rng.lognormal(size=1000)
    for far in (0.1, 0.01):
        t = threshold_from_scores(scores, quantile=0.5, far=far)  # far overrides quantile
        assert t == threshold_from_scores(scores, quantile=1.0 - far)
        assert np.mean(scores > t) <= far
    assert threshold_from_scores(scores, far=0.0) == scores.max()
    assert np.mean(scores > threshold_from_scores(scores, far=0.05)) == pytest.approx(0.05, abs=1e-3)


@pytest.mark.parametrize(
    "kwargs",
    [dict(quantile=0.0), dict(quantile=1.5), dict(far=1.0), dict(far=-0.1), dict(quantile=True), dict(far="0.1")],
)
def test_threshold_bad_fractions(kwargs):
    with pytest.raises(FedadError):
        threshold_from_scores([1.0, 2.0], **kwargs)


def test_threshold_bad_scores():
    with pytest.raises(FedadError, match="zero scores"):
        threshold_from_scores([])
    with pytest.raises(FedadError, match="NaN"):
        threshold_from_scores([1.0, np.nan])


def test_bin_edges_are_log_spaced_and_shared():
    e = score_bin_edges()
    assert e.size == 16 * 64 + 1
    assert e[0] == pytest.approx(1e-8) and e[-1] == pytest.approx(1e8)
    np.testing.assert_allclose(e[1:] / e[:-1], BIN_FACTOR)
    np.testing.assert_array_equal(e, score_bin_edges())  # identical on every client
    assert score_bin_edges(1.0, 10.0, 4).size == 5


def test_histogram_under_and_overflow_go_to_end_bins():
    e = score_bin_edges(1.0, 100.0, 1)  # bins [1, 10), [10, 100]
    counts = score_histogram([-3.0, 0.0, 0.5, 1.0, 9.99, 10.0, 100.0, 1e9, np.inf], e)
    assert counts.dtype == np.int64
    np.testing.assert_array_equal(counts, [5, 4])


def test_histogram_bad_input():
    e = score_bin_edges(1.0, 100.0, 1)
    with pytest.raises(FedadError, match="NaN"):
        score_histogram([np.nan], e)
    with pytest.raises(FedadError, match="edges"):
        score_histogram([1.0], [2.0, 1.0])
    with pytest.raises(FedadError, match="bins"):
        threshold_from_histogram([1, 2, 3], e, 0.5)
    with pytest.raises(FedadError, match="empty histogram"):
        threshold_from_histogram([0, 0], e, 0.5)
    with pytest.raises(FedadError, match="non-negative"):
        threshold_from_histogram([-1, 2], e, 0.5)
    with pytest.raises(FedadError, match="whole numbers"):
        threshold_from_histogram([0.5, 2.0], e, 0.5)


@pytest.mark.parametrize("quantile", [0.5, 0.9, 0.99, 0.999])
def test_histogram_threshold_within_one_bin_above_exact(quantile):
    rng = np.random.default_rng(1)
    scores = rng.lognormal(mean=-3.0, sigma=2.0, size=5000)
    edges = score_bin_edges()
    t = threshold_from_histogram(score_histogram(scores, edges), edges, quantile)
    exact = threshold_from_scores(scores, quantile=quantile)
    assert exact <= t <= exact * BIN_FACTOR * (1 + 1e-12)
    assert np.mean(scores <= t) >= quantile
    est = histogram_quantile(score_histogram(scores, edges), edges, quantile)
    assert exact / BIN_FACTOR <= est <= t


def test_federated_histograms_add_up_to_the_pooled_threshold():
    rng = np.random.default_rng(2)
    shards = [rng.exponential(scale=s, size=n) for s, n in ((0.1, 300), (0.5, 1000), (0.2, 50))]
    edges = score_bin_edges()
    summed = np.sum([score_histogram(s, edges) for s in shards], axis=0)
    pooled = np.concatenate(shards)
    np.testing.assert_array_equal(summed, score_histogram(pooled, edges))
    t = threshold_from_histogram(summed, edges, far=0.01)
    assert t == threshold_from_histogram(summed, edges, 0.99)
    assert np.mean(pooled > t) <= 0.01


def test_histogram_threshold_end_bins():
    e = score_bin_edges(1.0, 100.0, 1)
    assert threshold_from_histogram([3, 0], e, 0.99) == e[1]  # all in the underflow bin
    assert threshold_from_histogram([1, 3], e, 0.99) == e[-1]  # overflow: clamped to hi
    assert threshold_from_histogram([1, 0], e, 1.0) == e[1]

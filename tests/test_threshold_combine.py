"""The robust global threshold from the nodes' histograms (fedad.common.threshold_combine)."""

from __future__ import annotations

import numpy as np
import pytest

from fedad.common.federated_stats import BIN_EDGES, histogram
from fedad.common.threshold_combine import combine_histograms
from fedad.common.threshold_rule import threshold_from_histogram_by_rule


def _honest(n_nodes: int = 5, rows: int = 3000, seed: int = 0) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(seed)
    return {f"node{i}": rng.exponential(size=rows) + 0.1 for i in range(n_nodes)}


@pytest.mark.parametrize("rule", ["quantile", "pot"])
def test_honest_nodes_get_the_pooled_threshold(rule):
    scores = _honest()
    res = combine_histograms({k: (histogram(v), len(v)) for k, v in scores.items()}, BIN_EDGES, rule)
    pooled = threshold_from_histogram_by_rule(np.sum([histogram(v) for v in scores.values()], axis=0), BIN_EDGES, rule)
    assert res.threshold == pytest.approx(pooled) and not res.dropped
    assert set(res.node_thresholds) == set(scores)


@pytest.mark.parametrize("rule", ["quantile", "pot"])
@pytest.mark.parametrize("where", [1e7, 1e-6])
def test_one_node_with_invented_counts_cannot_push_the_threshold_past_every_honest_score(rule, where):
    scores = _honest()
    hists = {k: (histogram(v), len(v)) for k, v in scores.items()}
    liar = np.zeros_like(histogram(scores["node0"]))
    liar[np.searchsorted(BIN_EDGES, where) - 1] = 10_000_000  # ten million invented scores, consistently declared
    hists["liar"] = (liar, 10_000_000)
    res = combine_histograms(hists, BIN_EDGES, rule)
    honest = np.concatenate(list(scores.values()))
    assert honest.min() < res.threshold < honest.max()
    assert (honest > res.threshold).mean() < 0.05  # still a sensible false-alarm rate for the honest nodes
    # plain pooling would have been pushed past every honest score, or to flag a large share of them
    assert res.pooled > honest.max() or (honest > res.pooled).mean() > 0.2


def test_histogram_that_does_not_sum_to_the_declared_count_is_dropped():
    scores = _honest(3)
    hists = {k: (histogram(v), len(v)) for k, v in scores.items()}
    fake = np.zeros_like(hists["node0"][0])
    fake[-1] = 50_000
    hists["cheat"] = (fake, 100)  # declares 100 validation scores, sends 50 000
    res = combine_histograms(hists, BIN_EDGES, "quantile")
    assert "cheat" in res.dropped and "cheat" not in res.node_thresholds
    assert res.threshold < 20


def test_no_usable_histogram_is_an_error():
    with pytest.raises(ValueError, match="no usable"):
        combine_histograms({"a": (np.zeros(len(BIN_EDGES) - 1, dtype=np.int64), 0)}, BIN_EDGES, "quantile")


@pytest.mark.parametrize("rule", ["quantile", "pot"])
def test_three_honest_nodes_one_with_a_heavier_tail_keep_the_pooled_threshold(rule):
    # the 3-node case the plain [2nd-smallest, 2nd-largest] band cut to the median node threshold
    rng = np.random.default_rng(3)
    scores = {
        "a": rng.exponential(size=3000) + 0.1,
        "b": rng.exponential(size=3000) + 0.1,
        "heavy": 1.3 * rng.exponential(size=3000) + 0.1,
    }
    res = combine_histograms({k: (histogram(v), len(v)) for k, v in scores.items()}, BIN_EDGES, rule)
    ordered = sorted(res.node_thresholds.values())
    assert res.node_thresholds["heavy"] == ordered[-1] and res.pooled > ordered[1]  # the old band would have cut it
    assert res.threshold == pytest.approx(res.pooled)


@pytest.mark.parametrize("rule", ["quantile", "pot"])
def test_a_liar_among_three_nodes_stays_within_the_honest_thresholds(rule):
    scores = _honest(2, seed=4)
    hists = {k: (histogram(v), len(v)) for k, v in scores.items()}
    liar = np.zeros_like(hists["node0"][0])
    liar[np.searchsorted(BIN_EDGES, 1e7) - 1] = 3000
    hists["liar"] = (liar, 3000)
    res = combine_histograms(hists, BIN_EDGES, rule)
    assert res.threshold <= max(res.node_thresholds[k] for k in scores)


def test_a_plausible_liar_moves_the_threshold_at_most_the_factor_times_the_median():
    from fedad.common.threshold_combine import PLAUSIBLE_FACTOR

    scores = _honest(4, seed=5)
    hists = {k: (histogram(v), len(v)) for k, v in scores.items()}
    honest_median = float(
        np.median([combine_histograms(hists, BIN_EDGES, "quantile").node_thresholds[k] for k in scores])
    )
    liar = np.zeros_like(hists["node0"][0])  # everything just inside the plausible range: as far as it can go
    liar[np.searchsorted(BIN_EDGES, 1.9 * honest_median) - 1] = 100_000
    hists["liar"] = (liar, 100_000)
    res = combine_histograms(hists, BIN_EDGES, "quantile")
    median = float(np.median(list(res.node_thresholds.values())))
    assert res.threshold <= PLAUSIBLE_FACTOR * median + 1e-9


def test_clamp_band():
    from fedad.common.threshold_combine import clamp_band

    assert clamp_band([1.57, 1.62, 1.95]) == (1.57, 1.95)  # all plausible: the whole range
    assert clamp_band([1.0, 1.1, 1.2, 1e6]) == (1.0, 1.2)  # the implausible one bounds nothing
    assert clamp_band([1e-6, 1.0, 1.1, 1.2]) == (1.0, 1.2)
    assert clamp_band([0.0, 0.0, 0.0]) == (0.0, 0.0)  # no positive median: the plain band

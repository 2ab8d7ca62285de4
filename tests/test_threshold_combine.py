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

"""Peaks-over-threshold thresholds (fedad.common.pot) and the threshold rules (fedad.common.threshold_rule)."""

from __future__ import annotations

import numpy as np
import pytest
from scipy.stats import genpareto

from fedad.common.errors import FedadError
from fedad.common.federated_stats import BIN_EDGES, histogram
from fedad.common.pot import fit_tail, pot_threshold, tail_threshold
from fedad.common.threshold import threshold_from_scores
from fedad.common.threshold_rule import expected_far, threshold_by_rule, threshold_from_histogram_by_rule


@pytest.mark.parametrize("xi", [0.2, 0.0, -0.2])
def test_pot_on_a_pareto_sample_recovers_its_quantile(xi):
    rng = np.random.default_rng(0)
    scores = genpareto.rvs(xi, scale=1.0, size=50_000, random_state=rng)
    for risk in (1e-3, 1e-4):
        true = genpareto.ppf(1 - risk, xi, scale=1.0)
        assert pot_threshold(scores, risk) == pytest.approx(true, rel=0.1), (xi, risk)
    fit = fit_tail(scores)
    assert fit is not None and fit.xi == pytest.approx(xi, abs=0.1)


def test_pot_extrapolates_beyond_the_sample_where_the_quantile_cannot():
    rng = np.random.default_rng(1)
    scores = rng.exponential(size=2000)
    true = -np.log(1e-5)  # exponential: the 1 - 1e-5 quantile
    assert pot_threshold(scores, 1e-5) == pytest.approx(true, rel=0.2)
    assert threshold_from_scores(scores, far=1e-5) == scores.max()  # the empirical rule stops at the maximum


def test_pot_falls_back_to_the_empirical_quantile():
    scores = np.arange(100, dtype=float)
    assert fit_tail(scores) is None  # 2 excesses over the 0.98 quantile: too few to fit
    assert pot_threshold(scores, 0.05) == threshold_from_scores(scores, far=0.05)
    with pytest.raises(FedadError, match="risk"):
        pot_threshold(scores, 0.0)


def test_tail_threshold_matches_the_closed_form():
    from fedad.common.pot import TailFit

    fit = TailFit(u=2.0, xi=0.0, sigma=1.0, n=1000, n_tail=20)
    assert tail_threshold(fit, 1e-3) == pytest.approx(2.0 - np.log(1e-3 * 1000 / 20))


def test_rules_and_expected_far():
    rng = np.random.default_rng(2)
    scores = rng.exponential(size=20_000)
    assert threshold_by_rule(scores, "quantile", quantile=0.99) == threshold_from_scores(scores, 0.99)
    assert expected_far("quantile", 0.99) == pytest.approx(0.01)
    assert expected_far("pot") == pytest.approx(0.01)
    assert expected_far("pot", far=1e-4) == 1e-4
    t = threshold_by_rule(scores, "pot", far=1e-3)
    assert t == pytest.approx(-np.log(1e-3), rel=0.1)
    # from a histogram: within a few bins of the exact rule
    h = threshold_from_histogram_by_rule(histogram(scores), BIN_EDGES, "pot", far=1e-3)
    assert h == pytest.approx(t, rel=0.05)
    with pytest.raises(FedadError, match="rule"):
        threshold_by_rule(scores, "median")

"""fedad.common.rebaseline: drifting sensors and the streaming re-baselining rule."""

from __future__ import annotations

import numpy as np
import pytest

from fedad.common.errors import FedadError
from fedad.common.rebaseline import (
    drifting_features,
    rebaseline_scores,
)


def zscore_fit(rows: np.ndarray):
    mu, sd = rows.mean(0), rows.std(0) + 1e-9
    return lambda X: np.log1p(np.abs((X - mu) / sd).max(1))


def shifted_stream(seed: int = 0, n: int = 1200, shift_at: int = 600, back_at: int = 900, after: float = 4.0):
    """Noise; a level shift of 8 sd in feature 0 over [shift_at, back_at); afterwards the level stays at
    ``after`` sd (the plant does not return to its first state)."""
    rng = np.random.default_rng(seed)
    X = rng.normal(size=(n, 3))
    X[shift_at:back_at, 0] += 8.0
    X[back_at:, 0] += after
    return X


def test_drifting_features_flags_slow_trend_only():
    rng = np.random.default_rng(1)
    X = rng.normal(size=(400, 3))
    X[:, 1] += np.linspace(0, 6, 400)  # slow drift dominates
    X[:, 2] = 5.0  # constant: not drifting
    assert drifting_features(X).tolist() == [False, True, False]
    with pytest.raises(FedadError):
        drifting_features(X[:10])


def test_rebaseline_ends_the_episode_after_the_return():
    X = shifted_stream()
    static = rebaseline_scores(X, zscore_fit, train_rows=400, change_sds=1e9)  # no change is abrupt enough
    res = rebaseline_scores(X, zscore_fit, train_rows=400, smooth=30)
    assert static.events == [] and static.alarms[950:].mean() > 0.9  # the new level alarms forever
    assert res.alarms[640:900].mean() > 0.9  # the disturbance is detected
    assert len(res.events) == 1 and 900 <= res.events[0] < 940  # re-baselined at the return
    assert res.alarms[res.events[0] + 1 :].sum() == 0  # the new normal level no longer alarms
    assert res.alarms[:400].sum() == 0 and res.alarms[400:600].mean() < 0.05


def test_rebaseline_is_causal():
    X = shifted_stream()
    res = rebaseline_scores(X, zscore_fit, train_rows=400, smooth=30)
    Y = X.copy()
    Y[1000:] = 50.0  # change only the future of row 999
    other = rebaseline_scores(Y, zscore_fit, train_rows=400, smooth=30)
    np.testing.assert_array_equal(res.alarms[:1000], other.alarms[:1000])


def test_rebaseline_keeps_model_when_refit_fails():
    X = shifted_stream()

    def fit(rows):
        if len(rows) < 400:
            raise FedadError("too few rows")
        return zscore_fit(rows)

    res = rebaseline_scores(X, fit, train_rows=400, smooth=30)
    assert len(res.events) == 1
    end = res.events[0] + 1 + 120  # the collection rows are judged normal, then the old model goes on
    assert res.alarms[res.events[0] + 1 : end].sum() == 0 and res.alarms[end:].mean() > 0.9
    with pytest.raises(FedadError):
        rebaseline_scores(X, zscore_fit, train_rows=0)

"""Each baseline learns normal rows, flags an obvious outlier and exposes threshold_."""

import numpy as np
import pytest

from fedad.common.baselines import BASELINES, IQRDetector, PCADetector


@pytest.fixture(scope="module")
def normal_rows():
    rng = np.random.default_rng(0)
    z = rng.normal(size=(600, 2))
    # 5 correlated features, so PCA has a low-dimensional subspace to learn
    return np.column_stack(
        [z[:, 0], z[:, 0] * 2 + 0.05 * rng.normal(size=600), z[:, 1], z[:, 1] - z[:, 0], rng.normal(size=600) * 0.1]
    )


@pytest.mark.parametrize("name", sorted(BASELINES))
def test_baseline_flags_obvious_outlier(name, normal_rows):
    det = BASELINES[name]().fit(normal_rows)
    assert isinstance(det.threshold_, float)
    assert det.decision_scores_.shape == (len(normal_rows),)
    outlier = normal_rows[:1] + 25.0
    test = np.vstack([normal_rows[:50], outlier])
    scores = det.decision_function(test)
    assert scores.shape == (51,)
    assert scores[-1] > scores[:-1].max()
    pred = det.predict(test)
    assert pred.dtype == np.int8 and pred[-1] == 1
    assert pred[:-1].mean() < 0.2  # mostly quiet on normal rows


@pytest.mark.parametrize("name", sorted(BASELINES))
def test_threshold_quantile_and_missing_values(name, normal_rows):
    kwargs = {"threshold_quantile": 0.9}
    det = BASELINES[name](**kwargs).fit(normal_rows)
    assert np.mean(det.decision_scores_ > det.threshold_) <= 0.1 + 1e-9
    X = normal_rows[:5].copy()
    X[0, 1] = np.nan
    assert np.isfinite(det.decision_function(X)).all()
    with pytest.raises(ValueError):
        det.decision_function(normal_rows[:, :3])


def test_iqr_rule_by_hand():
    X = np.array([[0.0], [1.0], [2.0], [3.0], [4.0]])  # Q1=1, Q3=3, IQR=2, fences [-2, 6]
    det = IQRDetector(k=1.5).fit(X)
    assert det.threshold_ == 0.0
    np.testing.assert_allclose(det.decision_function(np.array([[5.0], [7.0], [-6.0]])), [0.0, 0.5, 2.0])
    np.testing.assert_array_equal(det.predict(np.array([[5.0], [7.0]])), [0, 1])


def test_pca_keeps_fewer_components_than_features(normal_rows):
    det = PCADetector(variance=0.95).fit(normal_rows)
    assert 1 <= det.n_components_ < normal_rows.shape[1]


def test_unfitted_raises():
    with pytest.raises(RuntimeError):
        IQRDetector().decision_function(np.zeros((2, 2)))

"""Record scores from per-feature errors normalised by their training error scale (fedad.common.scoring)."""

from __future__ import annotations

import numpy as np
import pytest

from fedad.common.errors import FedadError
from fedad.common.scoring import (
    SCORES,
    TAIL_MIN_SAMPLES,
    TAIL_QUANTILE,
    aggregate_errors,
    check_score,
    feature_scales,
)


def test_feature_scales_are_rms_errors_below_1000_samples():
    errors = np.array([[1.0, 4.0], [9.0, 16.0]])  # squared errors
    np.testing.assert_allclose(feature_scales(errors), np.sqrt([5.0, 10.0]))
    rng = np.random.default_rng(0)
    e = np.square(rng.exponential(size=(TAIL_MIN_SAMPLES - 1, 3)))
    np.testing.assert_allclose(feature_scales(e), np.sqrt(e.mean(axis=0)))


def test_feature_scales_are_tail_quantiles_from_1000_samples():
    rng = np.random.default_rng(0)
    a = np.abs(rng.normal(size=(20000, 2)) * [1.0, 3.0])
    np.testing.assert_allclose(feature_scales(np.square(a)), np.quantile(a, TAIL_QUANTILE, axis=0))
    # |N(0, sd)|: the 0.999 quantile is 3.29 sd, whatever the sd
    np.testing.assert_allclose(feature_scales(np.square(a)), [3.29, 3 * 3.29], rtol=0.05)
    exact = np.square(np.arange(1, TAIL_MIN_SAMPLES + 1, dtype=float))[:, None]  # |errors| 1..1000
    assert feature_scales(exact)[0] == pytest.approx(np.quantile(np.arange(1, 1001), 0.999))
    assert (feature_scales(np.zeros((2000, 2))) > 0).all()  # a perfectly reconstructed feature: floored


def test_a_sparse_feature_does_not_set_every_max():
    """A feature whose normal errors are near zero except in a few per cent of rows (a category present in some
    normal records, a one-hot column) has a small RMS, so those rows' normalised errors set the normal max score's
    upper quantiles and hide a clear anomaly elsewhere (KDD Cup 99); with the tail quantile each feature has the
    same rate of normal errors above its scale."""
    rng = np.random.default_rng(1)
    n = 20000
    sparse = np.abs(rng.normal(size=n)) * 0.01
    sparse[rng.random(n) < 0.03] = 1.0  # 3 % of normal rows
    dense = np.abs(rng.normal(size=n))
    train = np.square(np.column_stack([sparse, dense]))
    anomaly = np.square(np.array([[0.01, 4.5]]))  # 4.5 sd off on the dense feature, normal on the sparse one

    def flagged(scales):  # above the 0.99 quantile of the normal records' max scores
        normal = aggregate_errors(train, scales, "max")
        return aggregate_errors(anomaly, scales, "max")[0] > np.quantile(normal, 0.99)

    assert flagged(feature_scales(train))
    assert not flagged(np.sqrt(train.mean(axis=0)))  # the RMS scales: the sparse rows (5.8 RMS) hide it


def test_aggregates_of_normalised_errors():
    scales = np.array([1.0, 2.0, 4.0, 8.0])
    errors = np.square(np.array([[1.0, 2.0, 4.0, 80.0]]))  # normalised |e|: 1, 1, 1, 10
    assert aggregate_errors(errors, scales, "mse")[0] == pytest.approx(errors.mean())
    assert aggregate_errors(errors, scales, "max")[0] == pytest.approx(np.log1p(10.0))
    assert aggregate_errors(errors, scales, "mean")[0] == pytest.approx(np.log1p(13.0 / 4))
    assert aggregate_errors(errors, scales, "topk", top_k=2)[0] == pytest.approx(np.log1p(5.5))
    assert aggregate_errors(errors, scales, "topk", top_k=99)[0] == pytest.approx(np.log1p(13.0 / 4))


def test_normalisation_makes_a_noisy_feature_count_like_a_quiet_one():
    rng = np.random.default_rng(0)
    train = np.square(rng.normal(size=(5000, 2)) * [0.01, 10.0])  # feature 1 reconstructs 1000x worse
    scales = feature_scales(train)
    quiet_off = np.square(np.array([[0.1, 10.0]]))  # 10 sd off on the quiet feature
    noisy_off = np.square(np.array([[0.01, 100.0]]))  # 10 sd off on the noisy one
    for how in ("max", "mean", "topk"):
        a, b = aggregate_errors(quiet_off, scales, how), aggregate_errors(noisy_off, scales, how)
        assert a[0] == pytest.approx(b[0], rel=0.05), how
    # the plain mse only sees the noisy feature
    assert aggregate_errors(noisy_off, None, "mse")[0] > 90 * aggregate_errors(quiet_off, None, "mse")[0]


def test_bad_score_options_are_refused():
    with pytest.raises(FedadError, match="unknown score"):
        check_score("median")
    with pytest.raises(FedadError, match="top-k"):
        check_score("topk", 0)
    with pytest.raises(FedadError, match="scale"):
        aggregate_errors(np.ones((2, 3)), None, "max")
    assert set(SCORES) == {"mse", "mean", "max", "topk"}


@pytest.mark.parametrize("score", SCORES)
def test_detector_saves_and_reloads_its_score(tmp_path, score):
    from fedad.common.detector import AutoencoderDetector

    rng = np.random.default_rng(1)
    X = rng.normal(size=(600, 4))
    X[:, 1] = X[:, 0] * 2
    det = AutoencoderDetector(epochs=2, device="cpu", score=score).fit(X)
    again = AutoencoderDetector.load(det.save(tmp_path / "m"), device="cpu")
    assert again.score == score
    np.testing.assert_allclose(again.decision_function(X[:50]), det.decision_function(X[:50]))
    Y = X[:50].copy()
    Y[:, 1] += 20.0  # break the learnt relation: every score rises
    assert (det.decision_function(Y) > det.decision_function(X[:50])).all()


def test_the_server_pools_node_scales_as_a_count_weighted_quadratic_mean():
    from fedad.common.wire import encode_array
    from fedad.server.federation import pooled_feature_scales

    def node(scales, n):  # what a node sends in the threshold phase (client/flower_client.py)
        return {"fe_sq_sum": encode_array(np.square(np.asarray(scales, float)) * n), "fe_count": n}

    pooled = pooled_feature_scales([node([1.0, 2.0], 3000), node([3.0, 2.0], 1000)])
    np.testing.assert_allclose(pooled, [np.sqrt((3000 * 1 + 1000 * 9) / 4000), 2.0])
    # RMS scales: the pooled RMS error of the nodes' squared errors
    e1, e2 = np.square(np.arange(1.0, 7.0).reshape(3, 2)), np.square(np.arange(2.0, 10.0).reshape(4, 2))
    sent = [node(feature_scales(e), len(e)) for e in (e1, e2)]
    np.testing.assert_allclose(pooled_feature_scales(sent), feature_scales(np.vstack([e1, e2])))
    assert pooled_feature_scales([node([1.0], 10), {"hist": "x"}]) is None  # a node without scales: none pooled


def test_the_server_names_rms_scaled_nodes_beside_quantile_scaled_ones():
    from fedad.server.federation import rms_scaled_nodes

    big, small = {"fe_count": TAIL_MIN_SAMPLES}, {"fe_count": TAIL_MIN_SAMPLES - 1}
    assert rms_scaled_nodes({"a": big, "b": small, "c": small, "d": big}) == ["b", "c"]
    assert rms_scaled_nodes({"a": big, "d": big}) == []
    assert rms_scaled_nodes({"b": small, "c": small}) == []  # all RMS: one kind of scale, nothing to say
    assert rms_scaled_nodes({"a": big, "m": {"hist": "x"}}) == []  # a node that sends no count is not judged

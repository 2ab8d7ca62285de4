import json

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from sklearn.preprocessing import MinMaxScaler, StandardScaler

from fedad.common.errors import FedadError
from fedad.common.preprocessing import (
    KNN_REFERENCE_MAX_ROWS,
    Preprocessor,
    ScalerStats,
    sliding_windows,
    window_scores_to_records,
)


def _data(n=200, d=3, seed=0, shift=0.0):
    rng = np.random.default_rng(seed)
    return rng.normal(size=(n, d)) * np.arange(1, d + 1) + shift


def _json_round_trip(pre, include_local=True):
    return Preprocessor.from_dict(json.loads(json.dumps(pre.to_dict(include_local=include_local))))


# ------------------------------------------------------------------ ScalerStats
def test_scaler_stats_from_data_known_values():
    X = np.array([[1.0, 10.0], [3.0, np.nan], [5.0, 30.0]])
    s = ScalerStats.from_data(X)
    assert s.count == 3
    np.testing.assert_array_equal(s.feature_count, [3, 2])
    np.testing.assert_allclose(s.sum, [9.0, 40.0])
    np.testing.assert_allclose(s.sumsq, [35.0, 1000.0])
    np.testing.assert_allclose(s.min, [1.0, 10.0])
    np.testing.assert_allclose(s.max, [5.0, 30.0])
    np.testing.assert_allclose(s.mean(), [3.0, 20.0])
    np.testing.assert_allclose(s.std(), [np.std([1, 3, 5]), 10.0])


def test_scaler_stats_std_guards_constant_and_rounding():
    X = np.full((1000, 2), 1e6 + 0.1)
    X[:, 1] = 0.0
    np.testing.assert_array_equal(ScalerStats.from_data(X).std(), [1.0, 1.0])


def test_scaler_stats_empty_shard_merges_as_identity():
    X = _data()
    empty = ScalerStats.from_data(np.empty((0, 3)))
    merged = ScalerStats.merge([empty, ScalerStats.from_data(X)])
    np.testing.assert_allclose(merged.mean(), X.mean(axis=0))
    np.testing.assert_allclose(merged.min, X.min(axis=0))
    back = ScalerStats.from_dict(json.loads(json.dumps(empty.to_dict())))
    assert back.min[0] == np.inf and back.max[0] == -np.inf and back.count == 0


_finite = st.floats(min_value=-1e3, max_value=1e3, allow_nan=False)


@settings(max_examples=40, deadline=None)
@given(
    st.lists(
        st.lists(st.tuples(_finite, _finite, st.one_of(st.just(float("nan")), _finite)), min_size=0, max_size=6),
        min_size=1,
        max_size=4,
    )
)
def test_scaler_stats_merge_of_shards_equals_stats_of_concatenation(shards):
    arrays = [np.array(s, dtype=np.float64).reshape(-1, 3) for s in shards]
    merged = ScalerStats.merge([ScalerStats.from_data(a) for a in arrays])
    whole = ScalerStats.from_data(np.concatenate(arrays))
    assert merged.count == whole.count
    np.testing.assert_array_equal(merged.feature_count, whole.feature_count)
    np.testing.assert_allclose(merged.sum, whole.sum, rtol=1e-9, atol=1e-6)
    np.testing.assert_allclose(merged.sumsq, whole.sumsq, rtol=1e-9, atol=1e-6)
    np.testing.assert_array_equal(merged.min, whole.min)
    np.testing.assert_array_equal(merged.max, whole.max)
    again = ScalerStats.from_dict(json.loads(json.dumps(merged.to_dict())))
    np.testing.assert_array_equal(again.sum, merged.sum)
    np.testing.assert_array_equal(again.min, merged.min)


@pytest.mark.parametrize("scaler,reference", [("standard", StandardScaler), ("minmax", MinMaxScaler)])
def test_scaler_from_merged_stats_equals_sklearn_on_concatenation(scaler, reference):
    shards = [_data(n, seed=i, shift=3.0 * i) for i, n in enumerate((50, 120, 7))]
    whole = np.concatenate(shards)
    clients = [Preprocessor(scaler=scaler, impute=None).fit_local(s) for s in shards]
    merged = ScalerStats.merge([c.local_scaler_stats(s) for c, s in zip(clients, shards, strict=True)])
    for c in clients:
        c.set_scaler_stats(merged)
    expected = reference().fit(whole).transform(whole)
    np.testing.assert_allclose(clients[1].transform(whole), expected, rtol=1e-5, atol=1e-5)
    # a plain fit on the pooled data gives the same preprocessing
    np.testing.assert_allclose(Preprocessor(scaler=scaler).fit_transform(whole), expected, rtol=1e-5, atol=1e-5)


def test_scaler_stats_merge_rejects_mismatch():
    with pytest.raises(FedadError, match="different feature counts"):
        ScalerStats.merge([ScalerStats.from_data(np.zeros((2, 2))), ScalerStats.from_data(np.zeros((2, 3)))])
    with pytest.raises(FedadError, match="empty"):
        ScalerStats.merge([])


# ------------------------------------------------------------------ the steps, one at a time
def test_standard_and_minmax_use_train_stats_only():
    train = np.array([[0.0, 10.0], [2.0, 10.0], [4.0, 10.0]])
    test = np.array([[6.0, 11.0]])
    std = Preprocessor(impute=None).fit(train)
    np.testing.assert_allclose(std.transform(test), [[(6 - 2) / np.std([0, 2, 4]), 1.0]], rtol=1e-6)
    mm = Preprocessor(scaler="minmax", impute=None).fit(train)
    np.testing.assert_allclose(mm.transform(test), [[1.5, 1.0]])  # constant feature: range 1
    none = Preprocessor(scaler="none", impute=None).fit(train)
    out = none.transform(test)
    assert out.dtype == np.float32
    np.testing.assert_array_equal(out, test)


def test_detrend_diff_first_row_zero():
    X = np.array([[1.0], [4.0], [9.0], [16.0]])
    out = Preprocessor(scaler="none", detrend="diff", impute=None).fit(X).transform(X)
    np.testing.assert_array_equal(out[:, 0], [0, 3, 5, 7])


def test_detrend_moving_average_is_causal():
    X = np.array([[1.0], [3.0], [5.0], [10.0]])
    out = Preprocessor(scaler="none", detrend="ma", detrend_window=2, impute=None).fit(X).transform(X)
    np.testing.assert_allclose(out[:, 0], [0.0, 1.0, 1.0, 2.5])


@pytest.mark.parametrize("how,expected", [("ma", [1.0, 1.5, 3.0, 5.0, 16 / 3]), ("median", [1, 1.5, 2, 6, 6])])
def test_denoise_over_last_k_rows(how, expected):
    X = np.array([[1.0], [2.0], [6.0], [7.0], [3.0]])
    out = Preprocessor(scaler="none", denoise=how, denoise_window=3, impute=None).fit(X).transform(X)
    np.testing.assert_allclose(out[:, 0], expected, rtol=1e-6)


def test_clip_to_train_quantiles():
    train = np.arange(101, dtype=np.float64).reshape(-1, 1)  # quantiles 0.1 / 0.9 -> 10 / 90
    pre = Preprocessor(scaler="none", clip_quantile=0.1, impute=None).fit(train)
    np.testing.assert_allclose(pre.clip_low_, [10.0])
    np.testing.assert_allclose(pre.clip_high_, [90.0])
    np.testing.assert_array_equal(pre.transform([[-5.0], [50.0], [1e9]])[:, 0], [10, 50, 90])


def test_knn_impute_uses_neighbours_and_only_touches_nan_rows():
    # two clusters; a NaN in the second feature is filled from rows near its first feature
    train = np.array([[0.0, 0.0], [0.1, 0.2], [0.2, 0.1], [10.0, 100.0], [10.1, 100.2], [10.2, 99.8]])
    pre = Preprocessor(scaler="none", knn_neighbors=3).fit(train)
    out = pre.transform([[10.05, np.nan], [0.05, np.nan], [3.0, 4.0]])
    np.testing.assert_allclose(out[0, 1], 100.0, atol=1e-5)
    np.testing.assert_allclose(out[1, 1], 0.1, atol=1e-5)
    np.testing.assert_array_equal(out[2], [3.0, 4.0])


def test_knn_impute_with_nans_in_training_data():
    X = _data(300, seed=3)
    X[::7, 1] = np.nan
    pre = Preprocessor(scaler="none").fit(X)
    out = pre.transform(X)
    assert not np.isnan(out).any()
    keep = ~np.isnan(X).any(axis=1)
    np.testing.assert_allclose(out[keep], X[keep], rtol=1e-6)


def test_knn_reference_set_is_capped():
    X = _data(KNN_REFERENCE_MAX_ROWS + 500, d=2)
    pre = Preprocessor().fit(X)
    assert pre.impute_reference_.shape == (KNN_REFERENCE_MAX_ROWS, 2)


def test_full_pipeline_transform_of_test_uses_train_fit():
    train, test = _data(300, seed=1), _data(100, seed=2, shift=5.0)
    kwargs = dict(detrend="ma", detrend_window=10, denoise="median", clip_quantile=0.01)
    pre = Preprocessor(**kwargs).fit(train)
    a = pre.transform(test)
    assert a.dtype == np.float32 and a.shape == test.shape
    # transforming other data in between changes nothing; fitting on the test data would
    pre.transform(_data(500, seed=9, shift=-20.0))
    np.testing.assert_array_equal(pre.transform(test), a)
    assert not np.allclose(a, Preprocessor(**kwargs).fit(test).transform(test), atol=1e-3)
    # the scaler is the train one: the test shift of +5 shows up as a mean far from 0 after clip/detrend
    plain = Preprocessor(impute=None).fit(train).transform(test)
    assert (plain.mean(axis=0) > 1.0).all()


def test_fit_equals_fit_local_plus_local_stats():
    X = _data(150)
    X[5, 0] = np.nan
    kwargs = dict(detrend="diff", denoise="ma", clip_quantile=0.05)
    a = Preprocessor(**kwargs).fit(X)
    b = Preprocessor(**kwargs).fit_local(X)
    b.set_scaler_stats(b.local_scaler_stats(X))
    np.testing.assert_array_equal(a.transform(X), b.transform(X))
    np.testing.assert_array_equal(a.fit_transform(X), b.transform(X))


def test_transform_does_not_modify_input():
    X = _data(50)
    X[3, 1] = np.nan
    before = X.copy()
    Preprocessor(clip_quantile=0.1, detrend="diff", denoise="median").fit(X).transform(X)
    np.testing.assert_array_equal(X, before)


# ------------------------------------------------------------------ serialisation
@pytest.mark.parametrize(
    "kwargs",
    [
        dict(),
        dict(scaler="minmax", detrend="ma", detrend_window=7, denoise="median", clip_quantile=0.02),
        dict(scaler="none", impute=None, detrend="diff", denoise="ma"),
    ],
)
def test_round_trip_through_json_gives_identical_transform(kwargs):
    train, test = _data(120, seed=4), _data(40, seed=5)
    train[::9, 2] = np.nan
    test[::5, 0] = np.nan
    pre = Preprocessor(**kwargs).fit(train)
    back = _json_round_trip(pre)
    np.testing.assert_array_equal(back.transform(test), pre.transform(test))
    assert back.get_params() == pre.get_params()


def test_include_local_false_omits_reference_and_falls_back_to_means():
    train = _data(100, seed=6)
    pre = Preprocessor().fit(train)
    d = pre.to_dict(include_local=False)
    assert "impute_reference" not in d and "impute_reference" in pre.to_dict()
    assert str(train[0, 0]) not in json.dumps(d)
    back = Preprocessor.from_dict(json.loads(json.dumps(d)))
    test = np.array([[np.nan, 1.0, 2.0], [0.5, 1.0, 2.0]])
    out = back.transform(test)
    expected_first = (train[:, 0].mean() - pre.scaler_stats_.mean()[0]) / pre.scaler_stats_.std()[0]
    np.testing.assert_allclose(out[0, 0], expected_first, atol=1e-6)
    np.testing.assert_array_equal(out[1], pre.transform(test[1:])[0])


def test_unfitted_round_trip_and_bad_state():
    back = _json_round_trip(Preprocessor(scaler="minmax"))
    assert back.scaler == "minmax" and back.n_features_ is None
    with pytest.raises(FedadError, match="not fitted"):
        back.transform(np.zeros((2, 2)))
    with pytest.raises(FedadError, match="not a fedad preprocessing"):
        Preprocessor.from_dict({"scaler": "standard"})
    d = Preprocessor().fit(_data(20)).to_dict()
    d["impute_mean"] = [0.0]
    with pytest.raises(FedadError, match="impute_mean"):
        Preprocessor.from_dict(d)


# ------------------------------------------------------------------ validation
def test_bad_input_errors():
    pre = Preprocessor().fit(_data(30, d=3))
    with pytest.raises(FedadError, match="expects 3 features, got 2"):
        pre.transform(np.zeros((4, 2)))
    with pytest.raises(FedadError, match="2-D"):
        pre.transform(np.zeros(3))
    with pytest.raises(FedadError, match="infinite"):
        pre.transform([[1.0, np.inf, 0.0]])
    with pytest.raises(FedadError, match="numeric"):
        pre.transform([["a", "b", "c"]])
    X = _data(10)
    X[:, 1] = np.nan
    with pytest.raises(FedadError, match=r"column\(s\) \[1\] are entirely missing"):
        Preprocessor().fit(X)
    with pytest.raises(FedadError, match="empty"):
        Preprocessor().fit(np.empty((0, 3)))
    with pytest.raises(FedadError, match="scaler is not fitted"):
        Preprocessor().fit_local(_data(10)).transform(_data(2))
    with pytest.raises(FedadError, match="preprocessing expects 3"):
        Preprocessor().fit_local(_data(10)).set_scaler_stats(ScalerStats.from_data(np.zeros((2, 2))))


@pytest.mark.parametrize(
    "kwargs",
    [
        dict(scaler="robust"),
        dict(detrend="linear"),
        dict(denoise_window=0),
        dict(clip_quantile=0.5),
        dict(knn_neighbors=2.5),
        dict(impute="mean"),
    ],
)
def test_bad_parameters(kwargs):
    with pytest.raises(FedadError):
        Preprocessor(**kwargs)


def test_none_strings_mean_no_step():
    pre = Preprocessor(detrend="none", denoise="none", impute="none")
    assert pre.detrend is None and pre.denoise is None and pre.impute is None


# ------------------------------------------------------------------ windows
def test_sliding_windows_shape_content_and_no_copy():
    X = np.arange(20, dtype=np.float32).reshape(10, 2)
    W = sliding_windows(X, 4)
    assert W.shape == (7, 4, 2) and W.dtype == np.float32
    np.testing.assert_array_equal(W[0], X[0:4])
    np.testing.assert_array_equal(W[6], X[6:10])
    assert np.shares_memory(W, X)
    np.testing.assert_array_equal(sliding_windows(X, 1)[:, 0, :], X)
    assert sliding_windows(X, 10).shape == (1, 10, 2)


def test_window_scores_map_to_the_window_ending_at_each_record():
    out = window_scores_to_records([10.0, 20.0, 30.0], n=5, window=3)
    np.testing.assert_array_equal(out, [10, 10, 10, 20, 30])
    np.testing.assert_array_equal(window_scores_to_records([1.0, 2.0], n=2, window=1), [1, 2])


def test_window_errors():
    with pytest.raises(FedadError, match="longer than the data"):
        sliding_windows(np.zeros((3, 2)), 4)
    with pytest.raises(FedadError, match=">= 1"):
        sliding_windows(np.zeros((3, 2)), 0)
    with pytest.raises(FedadError, match="2-D"):
        sliding_windows(np.zeros(3), 1)
    with pytest.raises(FedadError, match="expected 3 window scores"):
        window_scores_to_records(np.zeros(4), n=5, window=3)

"""Plain numpy aggregation math, checked by hand and with hypothesis (no Flower)."""

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from fedad.server.aggregation import (
    apply_update,
    array_shapes,
    compute_update,
    coordinate_median,
    flatten,
    stack_updates,
    unflatten,
    validate_update,
    validate_vector,
    weighted_average,
    weighted_mean,
)

SHAPES = [(3, 2), (2,), (1, 1, 4)]


def _arrays(seed=0, dtype=np.float32):
    rng = np.random.default_rng(seed)
    return [rng.normal(size=s).astype(dtype) for s in SHAPES]


def test_flatten_concatenates_in_order_as_float64():
    a = [np.array([[1, 2], [3, 4]], dtype=np.float32), np.array([5.0]), np.zeros((0, 3))]
    v = flatten(a)
    assert v.dtype == np.float64
    assert v.tolist() == [1, 2, 3, 4, 5]
    assert flatten([]).shape == (0,)


@settings(max_examples=40, deadline=None)
@given(st.lists(st.lists(st.integers(0, 4), min_size=0, max_size=3).map(tuple), min_size=1, max_size=5))
def test_unflatten_inverts_flatten(shapes):
    rng = np.random.default_rng(len(shapes))
    arrays = [rng.normal(size=s) for s in shapes]
    back = unflatten(flatten(arrays), shapes)
    assert [b.shape for b in back] == [tuple(s) for s in shapes]
    for a, b in zip(arrays, back, strict=True):
        np.testing.assert_array_equal(a, b)


def test_unflatten_rejects_a_vector_of_the_wrong_size():
    with pytest.raises(ValueError, match="does not fill"):
        unflatten(np.zeros(5), [(2, 2)])
    with pytest.raises(ValueError):
        unflatten(np.zeros((2, 2)), [(2, 2)])


def test_validate_update_accepts_good_arrays():
    arrays = _arrays()
    assert validate_update(arrays, array_shapes(arrays)) is None
    assert validate_update([a.astype(np.int64) for a in arrays], SHAPES) is None


@pytest.mark.parametrize("bad_value", [np.nan, np.inf, -np.inf])
def test_validate_update_rejects_non_finite_values(bad_value):
    arrays = _arrays()
    arrays[1][0] = bad_value
    reason = validate_update(arrays, SHAPES)
    assert reason is not None and "array 1" in reason and "non-finite" in reason


def test_validate_update_rejects_wrong_count_shape_and_dtype():
    arrays = _arrays()
    assert "wrong number of arrays" in validate_update(arrays[:2], SHAPES)
    assert "shape (2, 3)" in validate_update([arrays[0].reshape(2, 3)] + arrays[1:], SHAPES)
    # same size, other shape is still wrong
    assert "expected (1, 1, 4)" in validate_update(arrays[:2] + [arrays[2].reshape(4)], SHAPES)
    assert "non-numeric" in validate_update([np.array([["a", "b"]] * 3)] + arrays[1:], SHAPES)


def test_validate_vector():
    assert validate_vector(np.zeros(4), 4) is None
    assert "shape" in validate_vector(np.zeros(3), 4)
    assert "shape" in validate_vector(np.zeros((2, 2)), 4)
    assert "non-finite" in validate_vector(np.array([0.0, np.nan, 1.0, np.inf]), 4)
    assert "non-real" in validate_vector(np.zeros(4, dtype=complex), 4)


def test_compute_and_apply_update_round_trip_and_keep_dtypes():
    g, new = _arrays(0), _arrays(1)
    u = compute_update(new, g)
    assert u.shape == (sum(int(np.prod(s)) for s in SHAPES),)
    back = apply_update(g, u)
    assert [b.dtype for b in back] == [np.float32] * 3
    for a, b in zip(new, back, strict=True):
        np.testing.assert_allclose(a, b, rtol=1e-6)


def test_weighted_average_is_fedavg():
    r1 = ([np.array([1.0, 2.0]), np.array([[0.0]])], 1)
    r2 = ([np.array([3.0, 6.0]), np.array([[4.0]])], 3)
    out = weighted_average([r1, r2])
    np.testing.assert_allclose(out[0], [2.5, 5.0])
    np.testing.assert_allclose(out[1], [[3.0]])


def test_weighted_mean_and_zero_weights():
    u = np.array([[1.0, 0.0], [0.0, 1.0], [2.0, 2.0]])
    np.testing.assert_allclose(weighted_mean(u, [1, 1, 2]), [1.25, 1.25])
    np.testing.assert_allclose(weighted_mean(u, [0, 0, 0]), [0.0, 0.0])
    assert weighted_mean(np.zeros((0, 3)), []).shape == (3,)


def test_coordinate_median_ignores_a_minority_of_outliers():
    u = np.array([[1.0, 1.0], [1.1, 0.9], [0.9, 1.1], [1e6, -1e6], [1.0, 1.0]])
    np.testing.assert_allclose(coordinate_median(u), [1.0, 1.0])
    assert coordinate_median(np.zeros((0, 2))).shape == (2,)


def test_stack_updates():
    m = stack_updates([np.arange(3), np.ones((3,), dtype=np.float32)])
    assert m.shape == (2, 3) and m.dtype == np.float64
    assert stack_updates([]).shape == (0, 0)

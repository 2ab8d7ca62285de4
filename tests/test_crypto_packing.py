"""Quantization, slot layout and packing: pure integer arithmetic, no keys."""

import time

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from fedad.common.crypto.exceptions import PackingError
from fedad.common.crypto.packing import (
    SlotLayout,
    dequantize_mean,
    pack,
    quantization_error_bound,
    quantize,
    unpack,
)


def reference_pack(q, layout):
    """Slow, obviously-correct packing: slot i of a block at bit i*s."""
    s, L = layout.slot_bits, layout.slots_per_block
    return [sum(int(v) << (i * s) for i, v in enumerate(q[j : j + L])) for j in range(0, len(q), L)]


def test_headroom_is_ceil_log2_of_bound_plus_one():
    assert [SlotLayout.headroom_for(w) for w in (1, 2, 3, 4, 7, 8, 1000, 1023, 1024)] == [1, 2, 2, 3, 3, 4, 10, 10, 11]
    for w in range(1, 300):
        h = SlotLayout.headroom_for(w)
        assert w < 2**h and (h == 1 or w >= 2 ** (h - 1))


def test_layout_geometry_matches_the_documented_numbers():
    layout = SlotLayout(bits=16, headroom_bits=4, key_bits=2048)
    assert (layout.slot_bits, layout.slots_per_block, layout.max_sum) == (20, 102, 15)
    assert SlotLayout.for_max_sum(16, 1000, 2048) == SlotLayout(16, 10, 2048)
    assert layout.blocks_for(102) == 1 and layout.blocks_for(103) == 2


@pytest.mark.parametrize(
    "kwargs",
    [
        dict(bits=0, headroom_bits=4, key_bits=2048),
        dict(bits=33, headroom_bits=4, key_bits=2048),
        dict(bits=16, headroom_bits=-1, key_bits=2048),
        dict(bits=32, headroom_bits=33, key_bits=2048),
        dict(bits=16, headroom_bits=4, key_bits=20),
        dict(bits=16.0, headroom_bits=4, key_bits=2048),
    ],
)
def test_invalid_layouts_raise(kwargs):
    with pytest.raises(PackingError):
        SlotLayout(**kwargs)
    with pytest.raises(PackingError):
        SlotLayout.headroom_for(0)


@settings(max_examples=60, deadline=None)
@given(
    bits=st.integers(1, 32),
    headroom=st.integers(0, 20),
    key_bits=st.sampled_from([256, 1024, 2048]),
    count=st.integers(1, 400),
    seed=st.integers(0, 2**32 - 1),
)
def test_pack_matches_reference_and_unpack_inverts(bits, headroom, key_bits, count, seed):
    layout = SlotLayout(bits, headroom, key_bits)
    q = np.random.default_rng(seed).integers(0, 2**bits, size=count, dtype=np.uint64)
    blocks = pack(q, layout)
    assert blocks == reference_pack(q, layout)
    assert all(b.bit_length() <= key_bits - 2 for b in blocks)
    np.testing.assert_array_equal(unpack(blocks, layout, count), q)


@settings(max_examples=60, deadline=None)
@given(
    bits=st.integers(1, 16),
    weights=st.lists(st.integers(0, 50), min_size=1, max_size=8).filter(lambda w: sum(w) > 0),
    extra_bound=st.integers(0, 100),
    count=st.integers(1, 300),
    saturate=st.booleans(),
    seed=st.integers(0, 2**32 - 1),
)
def test_weighted_sum_of_packed_blocks_never_carries_between_slots(bits, weights, extra_bound, count, saturate, seed):
    """The headroom argument on plaintexts: sum_k w_k * P_k unpacks to the exact slot sums."""
    layout = SlotLayout.for_max_sum(bits, sum(weights) + extra_bound, 1024)
    rng = np.random.default_rng(seed)
    top = 2**bits - 1
    qs = [
        np.full(count, top, np.uint64) if saturate else rng.integers(0, top + 1, count, dtype=np.uint64)
        for _ in weights
    ]
    packed = [pack(q, layout) for q in qs]
    summed = [sum(w * p[i] for w, p in zip(weights, packed, strict=True)) for i in range(len(packed[0]))]
    assert all(b.bit_length() <= 1022 for b in summed)  # below n for any 1024-bit key
    expected = sum(int(w) * q.astype(object) for w, q in zip(weights, qs, strict=True))
    np.testing.assert_array_equal(unpack(summed, layout, count).astype(object), expected)


def test_quantize_round_to_nearest_error_is_half_a_step():
    x = np.linspace(-1.0, 1.0, 10001)
    q, clipped = quantize(x, 1.0, 8)
    assert q.dtype == np.uint64 and clipped == 0 and q.min() == 0 and q.max() == 255
    back = dequantize_mean(q, 1, 1.0, 8)
    assert np.abs(back - x).max() <= quantization_error_bound(1.0, 8, stochastic=False) * (1 + 1e-9)


def test_quantize_stochastic_is_within_a_step_and_unbiased():
    rng = np.random.default_rng(0)
    x = np.full(200_000, 0.36)  # between the 4-bit grid points 1/3 and 7/15
    q, _ = quantize(x, 1.0, 4, rng)
    back = dequantize_mean(q, 1, 1.0, 4)
    assert np.abs(back - x).max() <= quantization_error_bound(1.0, 4, stochastic=True) * (1 + 1e-9)
    assert abs(back.mean() - 0.36) < 1e-3
    assert abs(dequantize_mean(quantize(x, 1.0, 4)[0], 1, 1.0, 4).mean() - 0.36) > 0.02  # always rounds to 1/3


def test_quantize_counts_and_clips_outliers():
    q, clipped = quantize(np.array([-5.0, -1.0, 0.0, 1.0, 5.0, np.inf]), 1.0, 16)
    assert clipped == 3
    assert list(q) == [0, 0, 32768, 65535, 65535, 65535]
    with pytest.raises(PackingError, match="NaN"):
        quantize(np.array([0.0, np.nan]), 1.0, 16)
    with pytest.raises(PackingError):
        quantize(np.zeros(3), 0.0, 16)
    with pytest.raises(PackingError):
        quantize(np.zeros(3), 1.0, 0)


def test_pack_rejects_values_that_do_not_fit():
    layout = SlotLayout(8, 4, 1024)
    with pytest.raises(PackingError, match="does not fit"):
        pack(np.array([256], np.uint64), layout)
    with pytest.raises(PackingError, match="non-negative"):
        pack(np.array([-1, 2]), layout)
    with pytest.raises(PackingError, match="empty"):
        pack(np.array([], np.uint64), layout)
    with pytest.raises(PackingError, match="integers"):
        pack(np.array([1.0]), layout)


def test_unpack_detects_malformed_blocks():
    layout = SlotLayout(8, 4, 1024)
    blocks = pack(np.arange(100, dtype=np.uint64), layout)
    with pytest.raises(PackingError, match="need"):
        unpack(blocks[:-1], layout, 100)
    with pytest.raises(PackingError, match="bits"):
        unpack([1 << 1022] + blocks[1:], layout, 100)
    with pytest.raises(PackingError, match="padding"):
        unpack(blocks, layout, 99)  # slot 99 is non-zero but outside the count


def test_pack_and_unpack_of_50k_values_is_fast():
    layout = SlotLayout.for_max_sum(16, 1000, 2048)
    q = np.random.default_rng(0).integers(0, 2**16, 50_000, dtype=np.uint64)
    best = float("inf")
    for _ in range(3):
        start = time.perf_counter()
        out = unpack(pack(q, layout), layout, q.size)
        best = min(best, time.perf_counter() - start)
    np.testing.assert_array_equal(out, q)
    assert best < 0.1, f"pack+unpack of 50k values took {best * 1e3:.0f} ms"

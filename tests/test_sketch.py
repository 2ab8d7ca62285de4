"""Homomorphic sketches of packed ciphertexts (fedad.common.crypto.sketch), with real Paillier keys.

- the sketch computed on ciphertexts and decrypted with the private key is exactly the plaintext reference
  ``sketch_quantized`` (odd and even block counts, a partial last block, extreme values);
- quantization offsets cancel, also in the padding slots of a partial last block;
- ``secure_layout``'s headroom covers both the weight total and 2t; ``SketchPlan.check`` refuses less;
- plans are a deterministic function of the public seed, with disjoint halves of t = B // 2 blocks;
- a client that packs a value above 2^bits is caught by ``decode_sketch``;
- ``leakage`` is m x L / d; norms and cosines survive in sketch space (loosely).

1024-bit keys (tests only).
"""

from __future__ import annotations

import numpy as np
import pytest

from fedad.common.crypto.encryption import encrypt_blocks
from fedad.common.crypto.exceptions import PackingError
from fedad.common.crypto.keys import generate_keypair
from fedad.common.crypto.packing import SlotLayout, pack, quantize
from fedad.common.crypto.sketch import (
    SEED_BYTES,
    SketchPlan,
    decode_sketch,
    leakage,
    pad_value,
    secure_layout,
    sketch_ciphertexts,
    sketch_quantized,
)
from fedad.server.defence.sketch_round import WEIGHT_TOTAL, sketch_vector

KEY_BITS = 1024


@pytest.fixture(scope="module")
def keys():
    return generate_keypair(KEY_BITS)


def seed(k: int) -> bytes:
    return np.random.default_rng(k).bytes(SEED_BYTES)


def encrypted_sketch(keys, q: np.ndarray, plan: SketchPlan, layout: SlotLayout, blocks: list[int] | None = None):
    """Encrypt q's packed blocks (or the given plaintext blocks), sketch homomorphically, decrypt, decode."""
    pub, priv = keys
    blocks = pack(q, layout) if blocks is None else blocks
    cts = encrypt_blocks(pub, blocks, workers=1)
    rows = sketch_ciphertexts(pub, cts, plan, layout, q.size)
    assert len(rows) == plan.rows
    assert all(0 < c < pub.nsquare for c in rows)
    return decode_sketch([priv.raw_decrypt(c) for c in rows], plan, layout)


# (bits, n_values): B odd / even, last block full / partial / holding a single value
CASES = [(16, 39 * 5), (16, 39 * 4 + 7), (16, 39 * 6 + 1), (8, 300), (12, 1000), (3, 250)]


@pytest.mark.parametrize("bits,n_values", CASES)
def test_homomorphic_sketch_equals_the_plaintext_sketch(keys, bits, n_values):
    layout = secure_layout(KEY_BITS, bits, n_values, WEIGHT_TOTAL)
    n_blocks = layout.blocks_for(n_values)
    rng = np.random.default_rng(bits * 100_000 + n_values)
    top = (1 << bits) - 1
    q = rng.integers(0, top + 1, n_values, dtype=np.uint64)
    q[:5] = [0, top, 0, top, top]  # extremes: no borrow or carry between slots
    for rows in (1, 5):
        plan = SketchPlan.draw(seed(n_values + rows), n_blocks, rows)
        got = encrypted_sketch(keys, q, plan, layout)
        want = sketch_quantized(q, plan, layout)
        assert got.dtype == np.int64 and got.shape == (rows, layout.slots_per_block)
        np.testing.assert_array_equal(got, want)
        # the reference itself is sum_j sign_(r,j) q_(j,i), the padding slots holding the quantized zero
        padded = np.full(n_blocks * layout.slots_per_block, pad_value(layout), dtype=np.int64)
        padded[:n_values] = q.astype(np.int64)
        np.testing.assert_array_equal(want, plan.signs() @ padded.reshape(n_blocks, -1))


def test_cases_cover_odd_block_counts_and_partial_last_blocks():
    shapes = [(secure_layout(KEY_BITS, b, n, WEIGHT_TOTAL), n) for b, n in CASES]
    assert any(layout.blocks_for(n) % 2 == 1 for layout, n in shapes)
    assert any(layout.blocks_for(n) % 2 == 0 for layout, n in shapes)
    assert any(n % layout.slots_per_block for layout, n in shapes)
    assert any(n % layout.slots_per_block == 0 for layout, n in shapes)
    assert any(n % layout.slots_per_block == 1 for layout, n in shapes)


@pytest.mark.parametrize("n_values", [39 * 4, 39 * 4 + 7, 39 * 5 + 20])
def test_offsets_cancel_a_constant_update_has_a_zero_sketch(keys, n_values):
    layout = secure_layout(KEY_BITS, 16, n_values, WEIGHT_TOTAL)
    plan = SketchPlan.draw(seed(n_values), layout.blocks_for(n_values), 4)
    if n_values % layout.slots_per_block == 0:  # whole blocks: any constant cancels
        for c in (0, 1, 12345, 65535):
            q = np.full(n_values, c, dtype=np.uint64)
            assert not sketch_quantized(q, plan, layout).any()
            assert not encrypted_sketch(keys, q, plan, layout).any()
    # a zero update quantizes to 2^(b-1), also what the partial last block's padding is sketched as
    q, _ = quantize(np.zeros(n_values), 0.5, 16)
    assert (q == pad_value(layout)).all()
    assert not sketch_quantized(q, plan, layout).any()
    assert not encrypted_sketch(keys, q, plan, layout).any()
    # ... so the sketch of the update shifted by a constant is the sketch of the centred update
    rng = np.random.default_rng(n_values)
    delta = rng.integers(-300, 301, n_values)
    a = (pad_value(layout) + delta).astype(np.uint64)
    np.testing.assert_array_equal(
        sketch_quantized(a, plan, layout),
        plan.signs() @ np.pad(delta, (0, plan.n_blocks * layout.slots_per_block - n_values)).reshape(plan.n_blocks, -1),
    )


def test_sketches_are_linear_in_the_update(keys):
    # the property the scores rely on: sketch(q1) - sketch(q2) only depends on q1 - q2
    n_values = 39 * 3 + 11
    layout = secure_layout(KEY_BITS, 16, n_values, WEIGHT_TOTAL)
    plan = SketchPlan.draw(seed(3), layout.blocks_for(n_values), 6)
    rng = np.random.default_rng(3)
    q1 = rng.integers(1000, 60000, n_values).astype(np.uint64)
    shift = rng.integers(-500, 501, n_values)
    q2 = (q1.astype(np.int64) + shift).astype(np.uint64)
    diff = encrypted_sketch(keys, q1, plan, layout) - encrypted_sketch(keys, q2, plan, layout)
    full = np.zeros(plan.n_blocks * layout.slots_per_block, dtype=np.int64)
    full[:n_values] = -shift
    np.testing.assert_array_equal(diff, plan.signs() @ full.reshape(plan.n_blocks, -1))


def test_secure_layout_headroom_covers_the_weight_total_and_the_sketch():
    for key_bits in (1024, 2048):
        for n_values in (10, 2_164, 100_000, 1_000_000, 10_000_000):
            for weight_total in (1, WEIGHT_TOTAL, 70_000):
                layout = secure_layout(key_bits, 16, n_values, weight_total)
                n_blocks = layout.blocks_for(n_values)
                assert layout.max_sum >= weight_total
                assert layout.max_sum >= n_blocks >= 2 * (n_blocks // 2)  # 2t <= B <= 2^h - 1
                if n_blocks >= 2:
                    SketchPlan.draw(seed(1), n_blocks, 2).check(layout)  # does not raise
                # the least such headroom: one bit less fails one of the two bounds
                if layout.headroom_bits > SlotLayout.headroom_for(weight_total):
                    smaller = SlotLayout(16, layout.headroom_bits - 1, key_bits)
                    assert smaller.max_sum < smaller.blocks_for(n_values)
    # a huge update: the sketch needs more headroom than the weights
    layout = secure_layout(KEY_BITS, 16, 10_000_000, WEIGHT_TOTAL)
    assert layout.headroom_bits > SlotLayout.headroom_for(WEIGHT_TOTAL)
    assert layout.max_sum >= layout.blocks_for(10_000_000) > WEIGHT_TOTAL


def test_plan_is_a_deterministic_function_of_the_seed():
    for n_blocks in (2, 3, 28, 57):
        a = SketchPlan.draw(seed(n_blocks), n_blocks, 8)
        assert a == SketchPlan.draw(seed(n_blocks), n_blocks, 8)
        assert a.rows == 8 and a.n_blocks == n_blocks and a.half == n_blocks // 2
        for plus, minus in zip(a.plus, a.minus, strict=True):
            assert len(plus) == len(minus) == n_blocks // 2
            assert not set(plus) & set(minus)
            assert set(plus) | set(minus) <= set(range(n_blocks))
            assert list(plus) == sorted(plus) and list(minus) == sorted(minus)
        signs = a.signs()
        assert signs.shape == (8, n_blocks)
        assert (signs.sum(axis=1) == 0).all() and (np.abs(signs).sum(axis=1) == 2 * (n_blocks // 2)).all()
        if n_blocks > 3:
            others = [SketchPlan.draw(seed(k), n_blocks, 8) for k in range(100, 105)]
            assert all((o.plus, o.minus) != (a.plus, a.minus) for o in others)
    # rows of one plan differ from each other (fresh permutations), and blocks are all used over the rows
    plan = SketchPlan.draw(seed(7), 57, 16)
    assert len(set(plan.plus)) == 16
    assert set().union(*plan.plus, *plan.minus) == set(range(57))


@pytest.mark.parametrize(
    "args,match",
    [
        ((b"\0" * 31, 10, 2), "seed"),
        ((b"\0" * 33, 10, 2), "seed"),
        ((b"\0" * 32, 1, 2), "at least 2 blocks"),
        ((b"\0" * 32, 10, 0), "rows"),
    ],
)
def test_plan_refuses_bad_parameters(args, match):
    with pytest.raises(PackingError, match=match):
        SketchPlan.draw(*args)


def test_check_refuses_a_sketch_beyond_the_headroom(keys):
    pub, _ = keys
    layout = SlotLayout(16, 2, KEY_BITS)  # max_sum 3
    SketchPlan.draw(seed(0), 3, 2).check(layout)  # t = 1: 2t = 2 <= 3
    plan = SketchPlan.draw(seed(0), 4, 2)  # t = 2: 2t = 4 > 3
    with pytest.raises(PackingError, match="headroom"):
        plan.check(layout)
    q = np.zeros(4 * layout.slots_per_block, dtype=np.uint64)
    with pytest.raises(PackingError, match="headroom"):
        sketch_ciphertexts(pub, encrypt_blocks(pub, pack(q, layout), workers=1), plan, layout, q.size)


def test_sketch_ciphertexts_refuses_a_mismatched_update(keys):
    pub, _ = keys
    layout = secure_layout(KEY_BITS, 16, 200, WEIGHT_TOTAL)
    plan = SketchPlan.draw(seed(0), layout.blocks_for(200), 2)
    cts = encrypt_blocks(pub, pack(np.zeros(200, dtype=np.uint64), layout), workers=1)
    with pytest.raises(PackingError, match="blocks"):
        sketch_ciphertexts(pub, cts[:-1], plan, layout, 200)
    with pytest.raises(PackingError, match="blocks"):
        sketch_ciphertexts(pub, cts, plan, layout, 200 + layout.slots_per_block)
    with pytest.raises(PackingError, match="blocks"):
        sketch_quantized(np.zeros(10, dtype=np.uint64), plan, layout)
    with pytest.raises(PackingError, match="rows expected"):
        decode_sketch([0], plan, layout)


def test_a_value_above_the_quantization_range_is_caught(keys):
    # a malicious client packs its blocks by hand: one slot holds 2^(b + h - 1), far above 2^b - 1
    n_values, bits = 39 * 6 + 10, 16
    layout = secure_layout(KEY_BITS, bits, n_values, WEIGHT_TOTAL)
    plan = SketchPlan.draw(seed(11), layout.blocks_for(n_values), 8)
    rng = np.random.default_rng(11)
    q = rng.integers(0, 1 << bits, n_values, dtype=np.uint64)
    honest = pack(q, layout)
    np.testing.assert_array_equal(encrypted_sketch(keys, q, plan, layout, honest), sketch_quantized(q, plan, layout))
    big = 1 << (layout.slot_bits - 1)
    assert big > plan.offset(layout) * 2  # out of the sketch's range whatever the other blocks hold
    for block, slot in ((plan.plus[0][0], 3), (plan.minus[0][0], 0), (plan.plus[2][-1], layout.slots_per_block - 1)):
        forged = list(honest)
        forged[block] = (honest[block] & ~(((1 << layout.slot_bits) - 1) << (slot * layout.slot_bits))) | (
            big << (slot * layout.slot_bits)
        )
        with pytest.raises(PackingError, match="out of range|bits"):
            encrypted_sketch(keys, q, plan, layout, forged)
    # the check itself, on a hand-built row: one slot at 2 O + 1 (every other row fine)
    pub, _ = keys
    offset = plan.offset(layout)
    fine = sum(offset << (i * layout.slot_bits) for i in range(layout.slots_per_block))
    rows = [fine] * plan.rows
    assert not decode_sketch(rows, plan, layout).any()
    rows[5] = fine + ((offset + 1) << (7 * layout.slot_bits))
    with pytest.raises(PackingError, match="row 5"):
        decode_sketch(rows, plan, layout)
    rows[5] = pub.n - 1  # a negative slot sum wraps around mod n
    with pytest.raises(PackingError):
        decode_sketch(rows, plan, layout)


def test_leakage_is_rows_times_slots_over_the_update_size():
    layout = secure_layout(2048, 16, 2_164, WEIGHT_TOTAL)
    assert layout.slots_per_block == 78
    assert leakage(8, layout, 2_164) == pytest.approx(8 * 78 / 2_164)
    assert leakage(1, layout, 78) == 1.0
    assert leakage(4, layout, 100_000) == pytest.approx(4 * layout.slots_per_block / 100_000)


def cosine(a: np.ndarray, b: np.ndarray) -> float:
    return float(a @ b / (np.linalg.norm(a) * np.linalg.norm(b)))


def test_norms_and_cosines_survive_in_sketch_space():
    # updates the size of the dense autoencoder (2164 values), a partial last block under a 2048-bit key
    clip, bits, n_values, rows = 0.5, 16, 2_164, 8
    layout = secure_layout(2048, bits, n_values, WEIGHT_TOTAL)
    n_blocks = layout.blocks_for(n_values)
    assert n_values % layout.slots_per_block  # padding slots in the last block
    rng = np.random.default_rng(5)
    errors = []
    for trial in range(6):
        plan = SketchPlan.draw(seed(1000 + trial), n_blocks, rows)
        base = rng.normal(0.0, 2e-3, n_values)
        updates = {
            "same": base,
            "correlated": base + rng.normal(0.0, 2e-3, n_values),
            "unrelated": rng.normal(0.0, 2e-3, n_values),
            "flipped": -base,
            "scaled": 5 * base,
        }
        q = {k: quantize(u, clip, bits, rng)[0] for k, u in updates.items()}
        centred = {k: (v.astype(np.float64) - ((1 << bits) - 1) / 2) for k, v in q.items()}
        sk = {k: sketch_vector(sketch_quantized(v, plan, layout), clip, bits) for k, v in q.items()}
        assert sk["same"].size == rows * layout.slots_per_block
        for k in ("correlated", "unrelated", "flipped", "scaled"):
            true, est = cosine(centred["same"], centred[k]), cosine(sk["same"], sk[k])
            errors.append(abs(true - est))
            assert abs(true - est) < 0.2, (trial, k, true, est)
        assert cosine(sk["same"], sk["flipped"]) < -0.95
        assert cosine(sk["same"], sk["scaled"]) > 0.95
        ratio = np.linalg.norm(sk["scaled"]) / np.linalg.norm(sk["same"])
        assert 4.0 < ratio < 6.0
        # ||sketch||^2 ~ m (2t / B) ||update||^2
        step = 2 * clip / ((1 << bits) - 1)
        expected = rows * (2 * plan.half / n_blocks) * float(np.sum((centred["correlated"] * step) ** 2))
        assert 0.5 < float(np.sum(sk["correlated"] ** 2)) / expected < 2.0
    assert np.mean(errors) < 0.08

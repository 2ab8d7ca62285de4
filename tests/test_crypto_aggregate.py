"""Encrypt -> weighted homomorphic sum -> decrypt: exact integer sums, mean within the error bound."""

import math
import os
import signal

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from fedad.common.crypto import obfuscation
from fedad.common.crypto.codec import decode_message, encode_message
from fedad.common.crypto.decryptor import Decryptor, LocalDecryptor
from fedad.common.crypto.encryption import encrypt_blocks, weighted_sum
from fedad.common.crypto.exceptions import CiphertextError, KeyMismatchError, PackingError
from fedad.common.crypto.keys import generate_keypair
from fedad.common.crypto.obfuscation import precompute_obfuscators
from fedad.common.crypto.packing import SlotLayout, pack, quantization_error_bound, quantize, unpack
from fedad.common.crypto.update import decrypt_mean, encrypt_update, integer_weights, slot_layout


@pytest.fixture(scope="module")
def keys():
    return generate_keypair(1024)


@settings(max_examples=40, deadline=None)
@given(
    n_clients=st.integers(1, 5),
    bits=st.sampled_from([4, 8, 16]),
    count=st.integers(1, 250),
    weights_seed=st.integers(0, 2**32 - 1),
    max_weight=st.sampled_from([1, 3, 40]),
    saturate=st.booleans(),
)
def test_decrypted_weighted_sum_is_the_exact_integer_sum(
    keys, n_clients, bits, count, weights_seed, max_weight, saturate
):
    pub, priv = keys
    rng = np.random.default_rng(weights_seed)
    weights = [int(w) for w in rng.integers(1, max_weight + 1, n_clients)]
    layout = slot_layout(pub, bits, sum(weights))
    top = 2**bits - 1
    qs = [
        np.full(count, top, np.uint64) if saturate else rng.integers(0, top + 1, count, dtype=np.uint64)
        for _ in range(n_clients)
    ]
    ciphertexts = [encrypt_blocks(pub, pack(q, layout), workers=1) for q in qs]
    aggregate = weighted_sum(pub, ciphertexts, weights, max_total_weight=layout.max_sum)
    slot_sums = unpack(LocalDecryptor(priv).decrypt_blocks(aggregate), layout, count)
    expected = sum(w * q.astype(object) for w, q in zip(weights, qs, strict=True))
    np.testing.assert_array_equal(slot_sums.astype(object), expected)


@pytest.mark.parametrize("stochastic", [False, True])
def test_decrypted_mean_is_within_the_documented_bound(keys, stochastic):
    pub, priv = keys
    rng = np.random.default_rng(7)
    shapes = [(12, 8), (8,), (300,)]
    clip, bits = 0.05, 12
    sample_counts = [1200, 300, 950, 40]
    weights = integer_weights(sample_counts, max_weight=50)
    layout = slot_layout(pub, bits, 50 * len(sample_counts))  # the bound the server announces
    updates = [[rng.normal(0, 0.02, s) for s in shapes] for _ in weights]
    messages = [encrypt_update(pub, u, clip, bits, layout, rng if stochastic else None, workers=1) for u in updates]

    received = [decode_message(pub, m, expected_layout=layout, expected_count=404)[0] for m in messages]
    aggregate = encode_message(pub, weighted_sum(pub, received, weights, layout.max_sum), layout, 404)
    mean = decrypt_mean(LocalDecryptor(priv), aggregate, sum(weights), shapes, clip, bits)

    assert [m.shape for m in mean] == shapes and all(m.dtype == np.float32 for m in mean)
    total = sum(weights)
    for i in range(len(shapes)):
        exact = sum(w * u[i] for w, u in zip(weights, updates, strict=True)) / total
        clipped_mass = (
            sum(w * np.abs(u[i] - np.clip(u[i], -clip, clip)) for w, u in zip(weights, updates, strict=True)) / total
        )
        bound = quantization_error_bound(clip, bits, stochastic) + clipped_mass + 1e-6  # + float32 output rounding
        assert (np.abs(mean[i] - exact) <= bound).all()


def test_decrypt_mean_from_raw_blocks_needs_the_layout(keys):
    pub, priv = keys
    layout = slot_layout(pub, 8, 3)
    x = np.linspace(-1, 1, 50)
    ciphertexts, _, _ = decode_message(pub, encrypt_update(pub, [x], 1.0, 8, layout, workers=1))
    with pytest.raises(PackingError, match="layout"):
        decrypt_mean(LocalDecryptor(priv), ciphertexts, 1, [(50,)], 1.0, 8)
    mean = decrypt_mean(LocalDecryptor(priv), ciphertexts, 1, [(50,)], 1.0, 8, layout=layout, dtype=np.float64)
    assert np.abs(mean[0] - x).max() <= quantization_error_bound(1.0, 8, stochastic=False) + 1e-12
    with pytest.raises(PackingError, match="headroom"):
        decrypt_mean(LocalDecryptor(priv), ciphertexts, 4, [(50,)], 1.0, 8, layout=layout)
    with pytest.raises(PackingError, match="bits"):
        decrypt_mean(LocalDecryptor(priv), ciphertexts, 1, [(50,)], 1.0, 12, layout=layout)


def test_decrypting_with_the_wrong_key_is_refused(keys):
    pub, _ = keys
    _, other_priv = generate_keypair(1024)
    message = encrypt_update(pub, [np.zeros(10)], 1.0, 8, slot_layout(pub, 8, 3), workers=1)
    with pytest.raises(KeyMismatchError):
        decrypt_mean(LocalDecryptor(other_priv), message, 1, [(10,)], 1.0, 8)


def test_every_encryption_is_obfuscated(keys):
    pub, priv = keys
    a, b = encrypt_blocks(pub, [5, 5], workers=1)
    assert a != b  # fresh r per ciphertext
    assert a != (1 + 5 * pub.n) % pub.nsquare  # not the bare g^m
    assert LocalDecryptor(priv).decrypt_blocks([a, b]) == [5, 5]


def test_precomputed_obfuscators_are_consumed_once(keys):
    pub, priv = keys
    pool = precompute_obfuscators(pub, 5, workers=1)
    first = encrypt_blocks(pub, [1, 2, 3], obfuscators=pool)
    assert len(pool) == 2
    with pytest.raises(ValueError, match="obfuscators"):
        encrypt_blocks(pub, [1, 2, 3], obfuscators=pool)
    assert LocalDecryptor(priv).decrypt_blocks(first) == [1, 2, 3]


@pytest.mark.parametrize("use_factors", [False, True])
def test_obfuscators_are_fresh_nth_residues(keys, use_factors):
    """x^lambda = 1 mod n^2 exactly for the n-th residues r^n (lambda = lcm(p-1, q-1)): the set encryption
    needs; the factored path must land in the same subgroup and decrypt to 0."""
    pub, priv = keys
    assert obfuscation.can_use_factors(priv)
    lam = math.lcm(priv.p - 1, priv.q - 1)
    obfuscators = precompute_obfuscators(pub, 6, workers=1, private_key=priv if use_factors else None)
    assert len(set(obfuscators)) == 6
    for x in obfuscators:
        assert 1 < x < pub.nsquare and math.gcd(x, pub.n) == 1
        assert pow(x, lam, pub.nsquare) == 1
        assert priv.raw_decrypt(x) == 0
    assert pow(obfuscators[0] * (1 + pub.n) % pub.nsquare, lam, pub.nsquare) != 1  # sanity: g is not one


def test_encryption_with_the_clients_own_key_decrypts(keys):
    pub, priv = keys
    blocks = list(range(1000, 1020))
    assert LocalDecryptor(priv).decrypt_blocks(encrypt_blocks(pub, blocks, workers=2, private_key=priv)) == blocks
    _, other = generate_keypair(1024)
    with pytest.raises(ValueError, match="does not match"):
        encrypt_blocks(pub, blocks, workers=1, private_key=other)


def test_process_pool_encryption(keys):
    pub, priv = keys
    blocks = list(range(100, 124))
    ciphertexts = encrypt_blocks(pub, blocks, workers=2)
    assert len(set(ciphertexts)) == len(blocks)
    assert LocalDecryptor(priv).decrypt_blocks(ciphertexts) == blocks


def test_a_dead_pool_worker_is_replaced(keys):
    pub, priv = keys
    precompute_obfuscators(pub, 8, workers=2)
    victim = next(iter(obfuscation._pool._processes.values()))
    os.kill(victim.pid, signal.SIGKILL)
    victim.join()
    ciphertexts = encrypt_blocks(pub, list(range(10)), workers=2)
    assert LocalDecryptor(priv).decrypt_blocks(ciphertexts) == list(range(10))


def test_encrypt_rejects_plaintexts_outside_zero_n(keys):
    pub, _ = keys
    with pytest.raises(ValueError, match="outside"):
        encrypt_blocks(pub, [pub.n], workers=1)
    with pytest.raises(ValueError, match="outside"):
        encrypt_blocks(pub, [-1], workers=1)


def test_weighted_sum_validates_its_inputs(keys):
    pub, _ = keys
    c = encrypt_blocks(pub, [1, 2], workers=1)
    with pytest.raises(ValueError, match="2 weights"):
        weighted_sum(pub, [c], [1, 2])
    with pytest.raises(ValueError, match="non-negative integers"):
        weighted_sum(pub, [c], [-1])
    with pytest.raises(ValueError, match="non-negative integers"):
        weighted_sum(pub, [c], [1.5])
    with pytest.raises(ValueError, match="all weights are zero"):
        weighted_sum(pub, [c], [0])
    with pytest.raises(ValueError, match="above the announced bound"):
        weighted_sum(pub, [c, c], [2, 2], max_total_weight=3)
    with pytest.raises(ValueError, match="client 1 sent 1 blocks"):
        weighted_sum(pub, [c, c[:1]], [1, 1])


def test_dropping_a_client_is_a_zero_weight(keys):
    pub, priv = keys
    layout = SlotLayout.for_max_sum(8, 7, pub.n.bit_length())
    qs = [np.array([10, 20, 30], np.uint64), np.array([1, 2, 3], np.uint64)]
    cts = [encrypt_blocks(pub, pack(q, layout), workers=1) for q in qs]
    dropped = weighted_sum(pub, cts, [0, 3])
    np.testing.assert_array_equal(unpack(LocalDecryptor(priv).decrypt_blocks(dropped), layout, 3), [3, 6, 9])


def test_local_decryptor_speaks_the_protocol_and_validates(keys):
    pub, priv = keys
    decryptor = LocalDecryptor(priv)
    assert isinstance(decryptor, Decryptor)
    assert "p=" not in repr(decryptor) and str(priv.p) not in repr(decryptor)
    with pytest.raises(CiphertextError, match="ciphertext 1"):
        decryptor.decrypt_blocks([pub.encrypt(1).ciphertext(False), pub.nsquare])


def test_integer_weights_scale_sample_counts():
    assert integer_weights([1000, 500, 1], 100) == [100, 50, 1]
    assert integer_weights([7], 1) == [1]
    with pytest.raises(ValueError):
        integer_weights([0, 5], 10)


def test_overflowing_the_headroom_is_detected_or_prevented(keys):
    """Without the max_total_weight guard, a too-large weight sum corrupts slots: unpack must not hide it."""
    pub, priv = keys
    layout = SlotLayout(bits=8, headroom_bits=1, key_bits=pub.n.bit_length())  # absorbs weights summing to 1
    q = np.full(layout.slots_per_block, 255, np.uint64)
    c = encrypt_blocks(pub, pack(q, layout), workers=1)
    with pytest.raises(ValueError, match="announced bound"):
        weighted_sum(pub, [c, c, c, c], [1, 1, 1, 1], max_total_weight=layout.max_sum)
    overflowed = LocalDecryptor(priv).decrypt_blocks(weighted_sum(pub, [c, c, c, c], [1, 1, 1, 1]))
    with pytest.raises(PackingError):
        unpack(overflowed, layout, layout.slots_per_block)
    with pytest.raises(PackingError):
        quantize(np.zeros(1), 1.0, 33)

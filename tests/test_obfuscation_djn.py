"""DJN short-exponent obfuscators (secure-robust clients and blinding masks): valid, fresh, decryptable."""

from __future__ import annotations

import numpy as np
import pytest

from fedad.client.secure import PublicKeyClient
from fedad.common.crypto.codec import decode_message
from fedad.common.crypto.keys import generate_keypair, save_keypair
from fedad.common.crypto.obfuscation import (
    ObfuscatorReserve,
    djn_exponent_bits,
    random_obfuscators_bytes,
    short_obfuscators_bytes,
)
from fedad.common.crypto.packing import SlotLayout, unpack


@pytest.fixture(scope="module")
def keypair():
    return generate_keypair(1024)


def test_exponent_length():
    assert djn_exponent_bits(2048) == 512
    assert djn_exponent_bits(1024) == 256  # never below 256


def test_short_obfuscators_are_fresh_nth_residues(keypair):
    pub, priv = keypair
    base = int.from_bytes(random_obfuscators_bytes(pub.n, 1), "big")
    width = 2 * ((pub.n.bit_length() + 7) // 8)
    raw = short_obfuscators_bytes(pub.n, base, 50, 256)
    values = [int.from_bytes(raw[i : i + width], "big") for i in range(0, len(raw), width)]
    assert len(set(values)) == 50  # fresh exponent each time
    assert all(priv.raw_decrypt(v) == 0 for v in values)  # n-th residues: encryptions of 0


def test_reserve_with_short_exponents_encrypts_correctly(keypair):
    pub, priv = keypair
    reserve = ObfuscatorReserve(pub, short_exponent_bits=256)
    reserve.refill(3)
    obfs = reserve.take(5)  # 3 precomputed, 2 computed here
    assert len(set(obfs)) == 5
    for m, r in zip([0, 1, 12345, pub.n - 1, 7], obfs, strict=True):
        c = (1 + m * pub.n) * r % pub.nsquare
        assert priv.raw_decrypt(c) == m


@pytest.mark.parametrize("obfuscation", ["djn", "full"])
def test_public_key_client_update_decrypts_to_its_quantized_update(tmp_path, keypair, obfuscation):
    pub, priv = keypair
    save_keypair(tmp_path, pub, priv)
    client = PublicKeyClient(str(tmp_path / "public.key"), obfuscation)
    rng = np.random.default_rng(0)
    glob = [rng.normal(size=(20, 10)).astype(np.float32), rng.normal(size=10).astype(np.float32)]
    new = [g + rng.normal(scale=0.01, size=g.shape).astype(np.float32) for g in glob]
    config = {"bits": 16, "clip": 0.5, "headroom": 10}
    msg = client.encrypt_update(new, glob, config).tobytes()
    layout = SlotLayout(16, 10, pub.n.bit_length())
    cts, _, count = decode_message(pub, msg, expected_layout=layout)
    q = unpack([priv.raw_decrypt(c) for c in cts], layout, count).astype(np.float64)
    update = q * (2 * 0.5 / 65535) - 0.5
    truth = np.concatenate([(n - g).ravel() for n, g in zip(new, glob, strict=True)])
    assert count == truth.size
    assert np.max(np.abs(update - truth)) <= 2 * 0.5 / 65535 + 1e-6  # one quantization step (stochastic)

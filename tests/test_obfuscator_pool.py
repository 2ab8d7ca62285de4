"""The paillier client's obfuscator pool: bounded, filled in the background, every obfuscator used once."""

from __future__ import annotations

import gmpy2
import numpy as np
import pytest

from fedad.common.crypto.decryptor import LocalDecryptor
from fedad.common.crypto.keys import generate_keypair, save_keypair
from fedad.common.crypto.obfuscator_pool import ObfuscatorPool
from fedad.common.crypto.update import decrypt_mean


@pytest.fixture(scope="module")
def keys(tmp_path_factory):
    pub, priv = generate_keypair(1024)  # tests only
    path = tmp_path_factory.mktemp("pool-keys")
    save_keypair(path, pub, priv)
    return pub, priv, path


def _is_nth_residue(x: int, priv) -> bool:
    """x^lcm(p-1, q-1) = 1 mod n^2 exactly for the n-th residues (what r^n mod n^2 is)."""
    p, q = int(priv.p), int(priv.q)
    n2 = (p * q) ** 2
    lam = (p - 1) * (q - 1) // int(gmpy2.gcd(p - 1, q - 1))
    return int(gmpy2.powmod(x, lam, n2)) == 1


def test_the_pool_fills_to_its_capacity_and_no_further(keys):
    pub, priv, _ = keys
    pool = ObfuscatorPool(pub, 6, priv)
    try:
        assert pool.wait_full(120)
        assert pool.ready == 6 and pool.made == 6
        assert pool.memory_bytes == 6 * 2 * 128  # 1024-bit key: 256-byte obfuscators
    finally:
        pool.close()


def test_every_obfuscator_is_handed_out_once(keys):
    pub, priv, _ = keys
    pool = ObfuscatorPool(pub, 5, priv)
    seen: list[int] = []
    try:
        for count in (3, 5, 7, 2, 5):  # some takes outrun the pool: the shortfall is computed in place
            seen += pool.take(count)
        pool.wait_full(120)
        assert len(seen) == 22 == pool.handed
        assert len(set(seen)) == len(seen)  # never the same one twice
        assert pool.made == pool.handed + pool.ready  # none made is lost or duplicated
        assert all(_is_nth_residue(x, priv) for x in seen)
        ready = pool.take(5)
        assert not set(ready) & set(seen)
    finally:
        pool.close()


def test_secure_client_encrypts_from_the_pool_and_decrypts(keys):
    from fedad.client.secure import SecureClient

    pub, priv, path = keys
    client = SecureClient(str(path / "private.key"))
    config = {"bits": 16, "clip": 0.5, "max_sum": 10, "total_weight": 1}
    rng = np.random.default_rng(0)
    shapes = [(30, 20), (20,)]
    try:
        for round_no in range(3):
            weights = [rng.uniform(-0.4, 0.4, s).astype(np.float32) for s in shapes]
            if round_no:
                assert client.pool is not None and client.pool.wait_full(120)  # refilled between rounds
                before = client.pool.inline
            msg = client.encrypt_weights(weights, config)
            assert client.pool is not None
            if round_no:
                assert client.pool.inline == before  # this round's encryption computed no obfuscator itself
            mean = decrypt_mean(LocalDecryptor(priv), msg.tobytes(), 1, shapes, 0.5, 16)
            assert max(float(np.abs(a - b).max()) for a, b in zip(mean, weights, strict=True)) < 1e-4
        assert client.pool.handed == 3 * client.pool.capacity
        assert client.pool.inline == client.pool.capacity  # only round 1, before any pool existed
    finally:
        if client.pool is not None:
            client.pool.close()

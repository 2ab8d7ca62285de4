"""Paillier encryption of packed blocks and the server's homomorphic weighted sum.

With g = n + 1, g^m mod n^2 = 1 + m*n, so c = (1 + m*n) * r^n mod n^2: one multiplication once the
obfuscator r^n is known (see obfuscation.py). Decrypting prod_k c_k^(w_k) mod n^2 gives sum_k w_k m_k
mod n, which the slot layout keeps below n.
"""

from __future__ import annotations

from collections.abc import Sequence

import gmpy2

from fedad.common.crypto.obfuscation import precompute_obfuscators


def encrypt_blocks(
    public_key,
    blocks: Sequence[int],
    workers: int | None = None,
    obfuscators: list[int] | None = None,
    private_key=None,
) -> list[int]:
    """Encrypt plaintext blocks (each 0 <= m < n), every one with a fresh obfuscator r^n mod n^2.

    Obfuscators are computed on ``workers`` cores (None: all) -- faster from the factors when the
    client passes its own ``private_key`` -- unless ``obfuscators`` supplies precomputed ones (from
    ``precompute_obfuscators``); those are consumed: popped from the list, so none is used twice.
    """
    n = gmpy2.mpz(public_key.n)
    n_square = n * n
    for i, m in enumerate(blocks):
        if not 0 <= m < n:
            raise ValueError(f"plaintext block {i} is outside [0, n)")
    if obfuscators is None:
        obfuscators = precompute_obfuscators(public_key, len(blocks), workers, private_key)
    if len(obfuscators) < len(blocks):
        raise ValueError(f"{len(blocks)} blocks need as many obfuscators, {len(obfuscators)} given")
    out = []
    for m in blocks:
        obfuscator = obfuscators.pop()
        out.append(int((1 + gmpy2.mpz(m) * n) * obfuscator % n_square))
    return out


def weighted_sum(
    public_key,
    ciphertexts_per_client: Sequence[Sequence[int]],
    weights: Sequence[int],
    max_total_weight: int | None = None,
) -> list[int]:
    """Blockwise prod_k C_k^(w_k) mod n^2: an encryption of sum_k w_k m_k. Weights are ints >= 0.

    ``max_total_weight`` (the layout's ``max_sum``) guards the slot headroom: a larger sum of weights
    would let slots carry into each other, so it raises ValueError instead.
    """
    if len(ciphertexts_per_client) != len(weights):
        raise ValueError(f"{len(ciphertexts_per_client)} clients but {len(weights)} weights")
    if not ciphertexts_per_client:
        raise ValueError("no client ciphertexts to sum")
    int_weights = []
    for w in weights:
        if int(w) != w or int(w) < 0:
            raise ValueError(f"weights must be non-negative integers, got {w!r}")
        int_weights.append(int(w))
    total = sum(int_weights)
    if total == 0:
        raise ValueError("all weights are zero: nothing to aggregate")
    if max_total_weight is not None and total > max_total_weight:
        raise ValueError(f"weights sum to {total}, above the announced bound {max_total_weight}")
    n_blocks = len(ciphertexts_per_client[0])
    for k, cts in enumerate(ciphertexts_per_client):
        if len(cts) != n_blocks:
            raise ValueError(f"client {k} sent {len(cts)} blocks, client 0 sent {n_blocks}")
    n = gmpy2.mpz(public_key.n)
    n_square = n * n
    acc = [gmpy2.mpz(1)] * n_blocks
    for cts, w in zip(ciphertexts_per_client, int_weights, strict=True):
        if w == 0:
            continue
        for i, c in enumerate(cts):
            term = gmpy2.mpz(c) if w == 1 else gmpy2.powmod(c, w, n_square)
            acc[i] = acc[i] * term % n_square
    return [int(c) for c in acc]

"""Blind decryption: the aggregator one-time-pads a ciphertext's plaintext before the key holder sees it.

blind(c) = c * Enc(r) mod n^2 with r uniform in [0, n) and a fresh obfuscator: it decrypts to (m + r) mod n,
which is uniform whatever m is, so the key holder learns nothing; ``unblind`` subtracts r mod n. The fresh
obfuscator also makes the blinded ciphertext unlinkable to the one the aggregator holds.
"""

from __future__ import annotations

import secrets
from collections.abc import Sequence

import gmpy2


def blind(public_key, ciphertexts: Sequence[int], obfuscators: list[int]) -> tuple[list[int], list[int]]:
    """(blinded ciphertexts, masks): each c times an encryption of a fresh uniform mask; consumes obfuscators."""
    if len(obfuscators) < len(ciphertexts):
        raise ValueError(f"{len(ciphertexts)} ciphertexts need as many obfuscators, {len(obfuscators)} given")
    n = gmpy2.mpz(public_key.n)
    n_square = n * n
    blinded, masks = [], []
    for c in ciphertexts:
        r = secrets.randbelow(int(n))
        enc_r = (1 + r * n) * obfuscators.pop() % n_square
        blinded.append(int(gmpy2.mpz(c) * enc_r % n_square))
        masks.append(r)
    return blinded, masks


def unblind(public_key, plaintexts: Sequence[int], masks: Sequence[int]) -> list[int]:
    """The plaintexts with their masks removed: (p - r) mod n."""
    if len(plaintexts) != len(masks):
        raise ValueError(f"{len(plaintexts)} plaintexts for {len(masks)} masks")
    n = int(public_key.n)
    return [(int(p) - int(r)) % n for p, r in zip(plaintexts, masks, strict=True)]

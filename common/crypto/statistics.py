"""Encrypted federation statistics: fixed-point sums (scaler) and packed counts (score histograms).

Scaler sums can be large and signed, so each value travels as its own fixed-point integer (2^-24
resolution, negative values as n - |m|) in one ciphertext; histograms are small non-negative counts,
packed 32 bits + headroom per slot like model updates. The server multiplies ciphertexts (adds plaintexts)
and never decrypts; clients decrypt the sums through a ``Decryptor``.
"""

from __future__ import annotations

import struct
from collections.abc import Sequence

import gmpy2
import numpy as np

from fedad.common.crypto.codec import check_ciphertext, ciphertext_bytes, decode_message, encode_message
from fedad.common.crypto.decryptor import Decryptor
from fedad.common.crypto.encryption import encrypt_blocks, weighted_sum
from fedad.common.crypto.exceptions import KeyMismatchError, LayoutMismatchError, MessageFormatError
from fedad.common.crypto.keys import key_fingerprint
from fedad.common.crypto.packing import SlotLayout, pack, unpack, unpack_lenient

FIXED_POINT_BITS = 24
COUNT_BITS = 32
_FP_MAGIC = b"FDFP"
_FP_HEADER = struct.Struct(">4s8sBI")


def encrypt_fixed_point(public_key, values: np.ndarray, private_key=None) -> bytes:
    """Encrypt floats as fixed-point integers, one ciphertext each (signed, 2^-24 resolution)."""
    n = public_key.n
    ints = [int(round(float(v) * (1 << FIXED_POINT_BITS))) % n for v in np.asarray(values, dtype=np.float64).ravel()]
    cts = encrypt_blocks(public_key, ints, workers=1, private_key=private_key)
    width = ciphertext_bytes(public_key)
    head = _FP_HEADER.pack(_FP_MAGIC, bytes.fromhex(key_fingerprint(public_key)), FIXED_POINT_BITS, len(cts))
    return head + b"".join(c.to_bytes(width, "big") for c in cts)


def decode_fixed_point(public_key, data: bytes, expected_count: int | None = None) -> list[int]:
    """Parse and validate a fixed-point message; returns its ciphertexts."""
    if not isinstance(data, (bytes, bytearray)) or len(data) < _FP_HEADER.size:
        raise MessageFormatError("truncated or missing encrypted statistics")
    magic, fingerprint, bits, count = _FP_HEADER.unpack_from(data)
    if magic != _FP_MAGIC or bits != FIXED_POINT_BITS:
        raise MessageFormatError("not a fedad encrypted-statistics message")
    if fingerprint.hex() != key_fingerprint(public_key):
        raise KeyMismatchError(
            f"statistics encrypted under key {fingerprint.hex()}, this run uses {key_fingerprint(public_key)}"
        )
    if expected_count is not None and count != expected_count:
        raise LayoutMismatchError(f"{count} encrypted statistics, expected {expected_count}")
    width = ciphertext_bytes(public_key)
    if len(data) != _FP_HEADER.size + count * width:
        raise MessageFormatError(f"encrypted statistics of {len(data)} bytes do not hold {count} ciphertexts")
    cts = [
        int.from_bytes(data[_FP_HEADER.size + i * width : _FP_HEADER.size + (i + 1) * width], "big")
        for i in range(count)
    ]
    for i, c in enumerate(cts):
        check_ciphertext(public_key, c, i)
    return cts


def sum_fixed_point(public_key, messages: Sequence[bytes], expected_count: int) -> bytes:
    """Homomorphic sum of fixed-point messages (the server's side; no key needed)."""
    per_client = [decode_fixed_point(public_key, m, expected_count) for m in messages]
    nsq = gmpy2.mpz(public_key.nsquare)
    acc = [gmpy2.mpz(1)] * expected_count
    for cts in per_client:
        acc = [a * c % nsq for a, c in zip(acc, cts, strict=True)]
    width = ciphertext_bytes(public_key)
    head = _FP_HEADER.pack(_FP_MAGIC, bytes.fromhex(key_fingerprint(public_key)), FIXED_POINT_BITS, expected_count)
    return head + b"".join(int(c).to_bytes(width, "big") for c in acc)


def decrypt_fixed_point(decryptor: Decryptor, data: bytes, expected_count: int) -> np.ndarray:
    """Floats from a (summed) fixed-point message."""
    n = decryptor.public_key.n
    plain = decryptor.decrypt_blocks(decode_fixed_point(decryptor.public_key, data, expected_count))
    signed = [m - n if m > n // 2 else m for m in plain]
    return np.array([m / (1 << FIXED_POINT_BITS) for m in signed], dtype=np.float64)


def counts_layout(public_key, max_clients: int) -> SlotLayout:
    """Slots of 32-bit counts with headroom for ``max_clients`` summands."""
    return SlotLayout.for_max_sum(COUNT_BITS, max(1, int(max_clients)), public_key.n.bit_length())


def encrypt_counts(public_key, counts: np.ndarray, max_clients: int, private_key=None) -> bytes:
    """Pack and encrypt non-negative integer counts (each < 2^32)."""
    q = np.asarray(counts, dtype=np.uint64)
    if q.size and int(q.max()) >= 1 << COUNT_BITS:
        raise ValueError("a count does not fit in 32 bits")
    layout = counts_layout(public_key, max_clients)
    return encode_message(
        public_key, encrypt_blocks(public_key, pack(q, layout), workers=1, private_key=private_key), layout, q.size
    )


def sum_counts(public_key, messages: Sequence[bytes], max_clients: int, count: int) -> bytes:
    """Homomorphic sum of packed count messages (weights 1); raises on a malformed message."""
    layout = counts_layout(public_key, max_clients)
    cts = [decode_message(public_key, m, expected_layout=layout, expected_count=count)[0] for m in messages]
    return encode_message(public_key, weighted_sum(public_key, cts, [1] * len(cts), layout.max_sum), layout, count)


def decrypt_counts(
    decryptor: Decryptor, data: bytes, max_clients: int, count: int, lenient: bool = False
) -> np.ndarray:
    """Summed counts from a packed count message (``lenient``: out-of-range contributions cut, not fatal)."""
    layout = counts_layout(decryptor.public_key, max_clients)
    cts, _, _ = decode_message(decryptor.public_key, data, expected_layout=layout, expected_count=count)
    plain = decryptor.decrypt_blocks(cts)
    if lenient:
        return unpack_lenient(plain, layout, count).astype(np.int64)
    return unpack(plain, layout, count).astype(np.int64)

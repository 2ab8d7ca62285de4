"""Whole-update helpers for the Paillier strategy: model arrays -> encrypted message -> mean arrays.

Round protocol (see docs/paillier.md): the server announces the integer weight bound W_bound (and the
clip range R, bits b) in the round config; each client builds ``slot_layout(pub, b, W_bound)``, calls
``encrypt_update``; the server decodes each message (rejecting bad clients), computes
``weighted_sum`` with integer weights summing to W <= W_bound and sends the aggregate back; clients
call ``decrypt_mean(decryptor, aggregate, W, shapes, R, b)``.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from fedad.common.crypto.codec import decode_message, encode_message
from fedad.common.crypto.decryptor import Decryptor
from fedad.common.crypto.encryption import encrypt_blocks
from fedad.common.crypto.exceptions import PackingError
from fedad.common.crypto.packing import SlotLayout, dequantize_mean, pack, quantize, unpack, unpack_lenient


def slot_layout(public_key, bits: int, max_sum: int) -> SlotLayout:
    """The round's layout for this key: b-bit values, headroom for multipliers summing to ``max_sum``."""
    return SlotLayout.for_max_sum(bits, max_sum, public_key.n.bit_length())


def integer_weights(sample_counts: Sequence[int], max_weight: int) -> list[int]:
    """Sample counts scaled to ints in [1, max_weight]: round(max_weight * n_k / max n), at least 1."""
    counts = np.asarray(sample_counts, dtype=np.float64)
    if counts.size == 0 or (counts <= 0).any():
        raise ValueError("sample counts must be positive")
    if int(max_weight) < 1:
        raise ValueError(f"max_weight must be a positive integer, got {max_weight!r}")
    scaled = np.rint(int(max_weight) * counts / counts.max()).astype(np.int64)
    return [int(w) for w in np.maximum(scaled, 1)]


def flatten_arrays(arrays: Sequence[np.ndarray]) -> np.ndarray:
    """All arrays' values in order, as one float64 vector."""
    if not arrays:
        raise PackingError("the update has no arrays")
    return np.concatenate([np.asarray(a, dtype=np.float64).ravel() for a in arrays])


def split_vector(vector: np.ndarray, shapes: Sequence[tuple[int, ...]], dtype=np.float32) -> list[np.ndarray]:
    """Inverse of ``flatten_arrays``: cut a vector into arrays of ``shapes``."""
    sizes = [int(np.prod(s, dtype=np.int64)) for s in shapes]
    if sum(sizes) != vector.size:
        raise PackingError(f"shapes hold {sum(sizes)} values, the vector has {vector.size}")
    out, start = [], 0
    for shape, size in zip(shapes, sizes, strict=True):
        out.append(vector[start : start + size].reshape(shape).astype(dtype))
        start += size
    return out


def encrypt_update(
    public_key,
    arrays: Sequence[np.ndarray],
    clip: float,
    bits: int,
    layout: SlotLayout,
    rng: np.random.Generator | None = None,
    workers: int | None = None,
    obfuscators: list[int] | None = None,
    private_key=None,
) -> bytes:
    """Clip, quantize (stochastic when ``rng`` is given), pack, encrypt and serialise one client's update.

    ``obfuscators`` (precomputed, consumed) or ``private_key`` (the client's own: faster obfuscators)
    are optional speed-ups; see encryption.encrypt_blocks.
    """
    if layout.bits != bits:
        raise PackingError(f"layout packs {layout.bits}-bit values but bits={bits}")
    q, _ = quantize(flatten_arrays(arrays), clip, bits, rng)
    ciphertexts = encrypt_blocks(
        public_key, pack(q, layout), workers=workers, obfuscators=obfuscators, private_key=private_key
    )
    return encode_message(public_key, ciphertexts, layout, q.size)


def decrypt_mean(
    decryptor: Decryptor,
    aggregate: bytes | Sequence[int],
    total_weight: int,
    shapes: Sequence[tuple[int, ...]],
    clip: float,
    bits: int,
    *,
    layout: SlotLayout | None = None,
    dtype=np.float32,
    lenient: bool = False,
) -> list[np.ndarray]:
    """Weighted mean arrays from an encrypted aggregate (message bytes, or ciphertext blocks + ``layout``).

    ``total_weight`` is W = sum of the integer weights the server applied. ``lenient``: out-of-range
    contributions are cut to their slots and the mean clamped to [-clip, clip] instead of raising.
    """
    count = sum(int(np.prod(s, dtype=np.int64)) for s in shapes)
    if isinstance(aggregate, (bytes, bytearray, memoryview)):
        ciphertexts, layout, _ = decode_message(
            decryptor.public_key, bytes(aggregate), expected_layout=layout, expected_count=count
        )
    else:
        if layout is None:
            raise PackingError("decrypting raw ciphertext blocks needs their layout")
        ciphertexts = list(aggregate)
    if layout.bits != bits:
        raise PackingError(f"aggregate packs {layout.bits}-bit values but bits={bits}")
    if not 1 <= int(total_weight) <= layout.max_sum:
        raise PackingError(f"total weight {total_weight} is outside 1..{layout.max_sum} (the layout's headroom)")
    if lenient:
        slot_sums = unpack_lenient(decryptor.decrypt_blocks(list(ciphertexts)), layout, count)
        mean = np.clip(dequantize_mean(slot_sums, total_weight, clip, bits), -float(clip), float(clip))
        return split_vector(mean, shapes, dtype)
    slot_sums = unpack(decryptor.decrypt_blocks(list(ciphertexts)), layout, count)
    return split_vector(dequantize_mean(slot_sums, total_weight, clip, bits), shapes, dtype)

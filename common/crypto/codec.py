"""Wire format of an encrypted update (or aggregate): a fixed binary header, then fixed-width ciphertexts.

    offset  size  field (all integers big-endian)
    0       4     magic b"FDAP"
    4       1     format version (1)
    5       1     reserved, 0
    6       8     key fingerprint: first 8 bytes of sha256(n), i.e. keys.key_fingerprint as raw bytes
    14      2     layout key_bits (must equal the bit length of n)
    16      1     layout bits b (quantization bits per value)
    17      1     layout headroom_bits h
    18      4     count: number of values packed
    22      4     number of ciphertext blocks (must be ceil(count / L))
    26      ...   blocks, each 2 * key_bytes big-endian, 0 < c < n^2, gcd(c, n) = 1

No pickle: ``decode_message`` checks every field where the bytes arrive and raises a specific
``CiphertextError`` subclass, so the server can reject one client and continue with the rest.
"""

from __future__ import annotations

import struct
from collections.abc import Sequence

import gmpy2

from fedad.common.crypto.exceptions import (
    CiphertextError,
    KeyMismatchError,
    LayoutMismatchError,
    MessageFormatError,
    PackingError,
)
from fedad.common.crypto.keys import key_bytes, key_fingerprint
from fedad.common.crypto.packing import SlotLayout

MAGIC = b"FDAP"
VERSION = 1
_HEADER = struct.Struct(">4sBB8sHBBII")
HEADER_BYTES = _HEADER.size


def ciphertext_bytes(public_key) -> int:
    """Width of one serialised ciphertext: 2 * key_bytes."""
    return 2 * key_bytes(public_key)


def message_bytes(public_key, layout: SlotLayout, count: int) -> int:
    """Exact size of a message carrying ``count`` values in ``layout``."""
    return HEADER_BYTES + layout.blocks_for(count) * ciphertext_bytes(public_key)


def check_ciphertext(public_key, c: int, index: int = 0) -> None:
    """Raise CiphertextError unless c is an int in (0, n^2) coprime with n (a valid Paillier ciphertext)."""
    n = public_key.n
    if not isinstance(c, int) or isinstance(c, bool):
        raise CiphertextError(f"ciphertext {index} is not an integer")
    if not 0 < c < public_key.nsquare:
        raise CiphertextError(f"ciphertext {index} is outside (0, n^2)")
    if gmpy2.gcd(c, n) != 1:
        raise CiphertextError(f"ciphertext {index} shares a factor with n")


def encode_message(public_key, blocks: Sequence[int], layout: SlotLayout, count: int) -> bytes:
    """Serialise ciphertext ``blocks`` carrying ``count`` values packed in ``layout``."""
    if layout.key_bits != public_key.n.bit_length():
        raise LayoutMismatchError(
            f"layout is for a {layout.key_bits}-bit key, the public key has {public_key.n.bit_length()} bits"
        )
    if count < 1 or count > 0xFFFFFFFF:
        raise LayoutMismatchError(f"value count {count} is out of range")
    if len(blocks) != layout.blocks_for(count):
        raise LayoutMismatchError(f"{count} values need {layout.blocks_for(count)} blocks, got {len(blocks)}")
    fingerprint = bytes.fromhex(key_fingerprint(public_key))
    header = _HEADER.pack(
        MAGIC, VERSION, 0, fingerprint, layout.key_bits, layout.bits, layout.headroom_bits, count, len(blocks)
    )
    width = ciphertext_bytes(public_key)
    parts = [header]
    for i, c in enumerate(blocks):
        check_ciphertext(public_key, int(c), i)
        parts.append(int(c).to_bytes(width, "big"))
    return b"".join(parts)


def decode_message(
    public_key,
    data: bytes,
    expected_blocks: int | None = None,
    *,
    expected_layout: SlotLayout | None = None,
    expected_count: int | None = None,
) -> tuple[list[int], SlotLayout, int]:
    """Parse and validate a message; returns (ciphertexts, layout, count).

    Raises MessageFormatError (truncated, bad magic/version/lengths), KeyMismatchError (other key),
    LayoutMismatchError (layout, count or block count not as expected) or CiphertextError (a block
    outside (0, n^2) or not coprime with n) -- all ValueError subclasses.
    """
    if not isinstance(data, (bytes, bytearray, memoryview)):
        raise MessageFormatError(f"an encrypted message must be bytes, got {type(data).__name__}")
    data = bytes(data)
    if len(data) < HEADER_BYTES:
        raise MessageFormatError(f"truncated message: {len(data)} bytes, the header alone needs {HEADER_BYTES}")
    magic, version, reserved, fingerprint, key_bits, bits, headroom, count, n_blocks = _HEADER.unpack_from(data)
    if magic != MAGIC:
        raise MessageFormatError(f"not a fedad encrypted message (magic {magic!r}, expected {MAGIC!r})")
    if version != VERSION:
        raise MessageFormatError(f"unsupported message format version {version} (this build reads {VERSION})")
    if reserved != 0:
        raise MessageFormatError(f"reserved header byte is {reserved}, expected 0")
    ours = key_fingerprint(public_key)
    if fingerprint.hex() != ours:
        raise KeyMismatchError(f"message was encrypted under key {fingerprint.hex()}, this aggregation uses {ours}")
    if key_bits != public_key.n.bit_length():
        raise LayoutMismatchError(f"layout is for a {key_bits}-bit key, the public key has {public_key.n.bit_length()}")
    try:
        layout = SlotLayout(bits=bits, headroom_bits=headroom, key_bits=key_bits)
    except PackingError as exc:
        raise MessageFormatError(f"invalid slot layout in header: {exc}") from None
    if count < 1:
        raise LayoutMismatchError("message carries zero values")
    if n_blocks != layout.blocks_for(count):
        raise LayoutMismatchError(
            f"{count} values in {layout.slots_per_block} slots per block need {layout.blocks_for(count)} blocks, "
            f"header says {n_blocks}"
        )
    if expected_layout is not None and layout != expected_layout:
        raise LayoutMismatchError(f"slot layout {layout} differs from this round's {expected_layout}")
    if expected_count is not None and count != expected_count:
        raise LayoutMismatchError(f"message carries {count} values, expected {expected_count}")
    if expected_blocks is not None and n_blocks != expected_blocks:
        raise LayoutMismatchError(f"message carries {n_blocks} blocks, expected {expected_blocks}")
    width = ciphertext_bytes(public_key)
    need = HEADER_BYTES + n_blocks * width
    if len(data) < need:
        raise MessageFormatError(f"truncated message: {len(data)} bytes, {n_blocks} blocks need {need}")
    if len(data) > need:
        raise MessageFormatError(f"message has {len(data) - need} trailing bytes after {n_blocks} blocks")
    ciphertexts = []
    for i in range(n_blocks):
        start = HEADER_BYTES + i * width
        c = int.from_bytes(data[start : start + width], "big")
        check_ciphertext(public_key, c, i)
        ciphertexts.append(c)
    return ciphertexts, layout, count

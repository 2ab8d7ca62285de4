"""Wire format: round trip, and every kind of bad input raises its specific CiphertextError subclass."""

import struct

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from fedad.common.crypto.codec import HEADER_BYTES, ciphertext_bytes, decode_message, encode_message, message_bytes
from fedad.common.crypto.encryption import encrypt_blocks
from fedad.common.crypto.exceptions import (
    CiphertextError,
    KeyMismatchError,
    LayoutMismatchError,
    MessageFormatError,
)
from fedad.common.crypto.keys import generate_keypair, key_fingerprint
from fedad.common.crypto.packing import SlotLayout, pack

COUNT = 150


@pytest.fixture(scope="module")
def key():
    return generate_keypair(1024)[0]


@pytest.fixture(scope="module")
def layout(key):
    return SlotLayout.for_max_sum(16, 100, key.n.bit_length())


@pytest.fixture(scope="module")
def message(key, layout):
    q = np.random.default_rng(0).integers(0, 2**16, COUNT, dtype=np.uint64)
    return encode_message(key, encrypt_blocks(key, pack(q, layout), workers=1), layout, COUNT)


def with_block(key, message, index, value):
    width = ciphertext_bytes(key)
    start = HEADER_BYTES + index * width
    return message[:start] + value.to_bytes(width, "big") + message[start + width :]


def with_header(message, **fields):
    names = ["magic", "version", "reserved", "fingerprint", "key_bits", "bits", "headroom", "count", "blocks"]
    fmt = struct.Struct(">4sBB8sHBBII")
    values = dict(zip(names, fmt.unpack_from(message), strict=True))
    values.update(fields)
    return fmt.pack(*(values[n] for n in names)) + message[fmt.size :]


def test_round_trip(key, layout, message):
    ciphertexts, got_layout, count = decode_message(
        key, message, expected_blocks=layout.blocks_for(COUNT), expected_layout=layout, expected_count=COUNT
    )
    assert got_layout == layout and count == COUNT and len(ciphertexts) == layout.blocks_for(COUNT)
    assert len(message) == message_bytes(key, layout, COUNT)
    assert message[6:14].hex() == key_fingerprint(key)
    assert encode_message(key, ciphertexts, layout, COUNT) == message


def test_errors_are_value_errors():
    for cls in (MessageFormatError, KeyMismatchError, LayoutMismatchError):
        assert issubclass(cls, CiphertextError) and issubclass(cls, ValueError)


@pytest.mark.parametrize("cut", [0, 5, HEADER_BYTES - 1, HEADER_BYTES, HEADER_BYTES + 100, -1])
def test_truncated_message(key, message, cut):
    with pytest.raises(MessageFormatError, match="truncated"):
        decode_message(key, message[:cut])


def test_trailing_bytes(key, message):
    with pytest.raises(MessageFormatError, match="trailing"):
        decode_message(key, message + b"\0")


def test_not_bytes(key):
    with pytest.raises(MessageFormatError, match="must be bytes"):
        decode_message(key, [1, 2, 3])


@pytest.mark.parametrize(
    "fields, error, match",
    [
        (dict(magic=b"PK\x03\x04"), MessageFormatError, "magic"),
        (dict(version=2), MessageFormatError, "version"),
        (dict(reserved=1), MessageFormatError, "reserved"),
        (dict(fingerprint=b"\0" * 8), KeyMismatchError, "different|encrypted under key"),
        (dict(key_bits=2048), LayoutMismatchError, "2048-bit key"),
        (dict(bits=0), MessageFormatError, "invalid slot layout"),
        (dict(bits=40), MessageFormatError, "invalid slot layout"),
        (dict(count=0), LayoutMismatchError, "zero values"),
        (dict(count=COUNT * 10), LayoutMismatchError, "need"),
        (dict(blocks=1), LayoutMismatchError, "need"),
        (dict(headroom=3), LayoutMismatchError, "need"),  # more slots per block: block count no longer matches
    ],
)
def test_bad_header_fields(key, message, fields, error, match):
    with pytest.raises(error, match=match):
        decode_message(key, with_header(message, **fields))


def test_message_under_another_key_is_a_key_mismatch(layout, message):
    other = generate_keypair(1024)[0]
    with pytest.raises(KeyMismatchError, match=key_fingerprint(other)):
        decode_message(other, message)


def test_unexpected_layout_count_or_block_count(key, layout, message):
    with pytest.raises(LayoutMismatchError, match="differs"):
        decode_message(key, message, expected_layout=SlotLayout(16, 8, layout.key_bits))
    with pytest.raises(LayoutMismatchError, match="expected 151"):
        decode_message(key, message, expected_count=COUNT + 1)
    with pytest.raises(LayoutMismatchError, match="expected 99"):
        decode_message(key, message, expected_blocks=99)


@pytest.mark.parametrize("bad", ["zero", "n_square", "max", "multiple_of_p"])
def test_invalid_ciphertext_values(key, message, bad):
    value = {
        "zero": 0,
        "n_square": key.n**2,
        "max": 256 ** ciphertext_bytes(key) - 1,
        "multiple_of_p": key.n,  # gcd(c, n) = n
    }[bad]
    with pytest.raises(CiphertextError, match="ciphertext 2 "):
        decode_message(key, with_block(key, message, 2, value))


def test_encode_validates_too(key, layout, message):
    ciphertexts, _, _ = decode_message(key, message)
    with pytest.raises(LayoutMismatchError):
        encode_message(key, ciphertexts[:-1], layout, COUNT)
    with pytest.raises(LayoutMismatchError, match="2048-bit key"):
        encode_message(key, ciphertexts, SlotLayout(16, 7, 2048), COUNT)
    with pytest.raises(CiphertextError, match="outside"):
        encode_message(key, [0] + ciphertexts[1:], layout, COUNT)


@settings(max_examples=150, deadline=None)
@given(data=st.data())
def test_any_corruption_is_rejected_or_decodes_cleanly(key, message, data):
    """Random truncations and byte flips raise CiphertextError subclasses, never anything else."""
    raw = bytearray(message)
    if data.draw(st.booleans()):
        raw = raw[: data.draw(st.integers(0, len(raw)))]
    for _ in range(data.draw(st.integers(0, 3))):
        if raw:
            i = data.draw(st.integers(0, len(raw) - 1))
            raw[i] ^= data.draw(st.integers(1, 255))
    try:
        decode_message(key, bytes(raw))
    except CiphertextError:
        pass

"""Compressed model updates (`--compress q8`, `q8+topk:F`): 8-bit quantised deltas with client-side error feedback.

A client sends its update (new weights minus the round's global weights, flattened in the model's order)
instead of its weights: optionally only the top-k fraction of coordinates by magnitude, each quantised to
an int8 code times a per-block float32 scale (max |v| / 127 over ``BLOCK`` kept values). What the codes
could not carry (rounding, coordinates left out) is kept by the client and added to its next update (error
feedback, Seide et al. 2014; Stich et al. 2018), so nothing is lost, only delayed. The server decodes and
adds the delta to the global weights before any strategy math; everything it decodes is checked first.
The global model goes down in the same format (dense q8 steps between versions): ``fedad.common.broadcast``.

Wire format (one uint8 array; all integers big-endian):

| offset | size | field |
|---|---|---|
| 0 | 4 | magic `FDQC` |
| 4 | 1 | version (1) |
| 5 | 1 | scheme: 1 = dense q8, 2 = top-k q8 |
| 6 | 2 | reserved, 0 |
| 8 | 4 | d, the update's length |
| 12 | 4 | k, values sent (= d for dense) |
| 16 | 4 | scales: ceil(k / 1024) float32 |
| 20 | 4 x scales | float32 scales, big-endian |
| ... | ceil(d / 8) | top-k only: a bitmap of d bits, which coordinates are sent (LSB first; padding bits 0) |
| ... | k | int8 codes, in coordinate order |
"""

from __future__ import annotations

import re
import struct
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

MAGIC = b"FDQC"
VERSION = 1
DENSE, TOPK = 1, 2
BLOCK = 1024
HEADER = struct.Struct(">4sBBHIII")
MAX_SCALE = 1e6  # a code of 127 at this scale is far beyond any sane update; FedAvg's norm bound sees the rest


class CompressionError(ValueError):
    """A compressed update that cannot be decoded (the server refuses that answer, with this reason)."""


@dataclass(frozen=True)
class Compression:
    """A compression scheme: 8-bit codes, optionally only the ``topk`` fraction of largest coordinates."""

    topk: float | None = None

    @property
    def name(self) -> str:
        return "q8" if self.topk is None else f"q8+topk:{self.topk:g}"

    def kept(self, dim: int) -> int:
        """How many of ``dim`` coordinates are sent."""
        return dim if self.topk is None else max(1, min(dim, int(round(self.topk * dim))))


def parse_compression(value: str | None) -> Compression | None:
    """`none` (None), `q8`, or `q8+topk:F` with 0 < F <= 1; ValueError with a clear message otherwise."""
    text = (value or "none").strip().lower()
    if text in ("", "none"):
        return None
    if text == "q8":
        return Compression()
    m = re.fullmatch(r"q8\+topk:([0-9.eE+-]+)", text)
    if m:
        try:
            f = float(m.group(1))
        except ValueError:
            f = float("nan")
        if 0.0 < f <= 1.0:
            return Compression(topk=f)
        raise ValueError(f"--compress top-k fraction must be in (0, 1], got {m.group(1)}")
    raise ValueError(f"unknown --compress '{value}' (choose none, q8 or q8+topk:F, e.g. q8+topk:0.1)")


def _quantise(values: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(float32 scale per block, int8 codes): code = round(v / scale), scale = max |v| / 127 of its block."""
    n_blocks = max(1, -(-values.size // BLOCK))
    padded = np.zeros(n_blocks * BLOCK)
    padded[: values.size] = values
    blocks = padded.reshape(n_blocks, BLOCK)
    scales = (np.abs(blocks).max(axis=1) / 127.0).astype(np.float32)
    safe = np.where(scales > 0, scales, 1.0).astype(np.float64)
    codes = np.clip(np.rint(blocks / safe[:, None]), -127, 127).astype(np.int8).ravel()[: values.size]
    return scales, codes


def _dequantise(scales: np.ndarray, codes: np.ndarray) -> np.ndarray:
    per_value = np.repeat(scales.astype(np.float64), BLOCK)[: codes.size]
    return codes.astype(np.float64) * per_value


def encode_update(update: np.ndarray, scheme: Compression) -> tuple[bytes, np.ndarray]:
    """(the message, the update the server will decode from it) for a flat float update."""
    v = np.asarray(update, dtype=np.float64).ravel()
    if not np.all(np.isfinite(v)):
        raise ValueError("the update has non-finite values")
    d = v.size
    k = scheme.kept(d)
    if scheme.topk is None:
        idx = np.arange(d)
        bitmap = b""
    else:
        idx = np.sort(np.argpartition(-np.abs(v), k - 1)[:k]) if k < d else np.arange(d)
        mask = np.zeros(d, dtype=bool)
        mask[idx] = True
        bitmap = np.packbits(mask, bitorder="little").tobytes()
    scales, codes = _quantise(v[idx])
    header = HEADER.pack(MAGIC, VERSION, DENSE if scheme.topk is None else TOPK, 0, d, k, scales.size)
    message = header + scales.astype(">f4").tobytes() + bitmap + codes.tobytes()
    sent = np.zeros(d)
    sent[idx] = _dequantise(scales, codes)
    return message, sent


def decode_update(data: bytes, dim: int, scheme: Compression) -> np.ndarray:
    """The flat float64 update a compressed message carries; CompressionError on anything malformed."""
    if not isinstance(data, (bytes, bytearray, memoryview)):
        raise CompressionError("a compressed update must be bytes")
    data = bytes(data)
    if len(data) < HEADER.size:
        raise CompressionError(f"compressed update truncated: {len(data)} bytes, the header alone is {HEADER.size}")
    magic, version, kind, reserved, d, k, n_scales = HEADER.unpack_from(data)
    if magic != MAGIC or version != VERSION or reserved != 0:
        raise CompressionError("not a fedad compressed update (bad magic, version or reserved field)")
    want = DENSE if scheme.topk is None else TOPK
    if kind != want:
        raise CompressionError(f"compressed with scheme {kind}, the round asks for {scheme.name}")
    if d != dim:
        raise CompressionError(f"compressed update has {d} values, the model has {dim}")
    if k != scheme.kept(dim):
        raise CompressionError(f"compressed update sends {k} values, {scheme.name} sends {scheme.kept(dim)}")
    if n_scales != max(1, -(-k // BLOCK)):
        raise CompressionError(f"compressed update has {n_scales} scales for {k} values")
    bitmap_bytes = 0 if kind == DENSE else -(-d // 8)
    expected = HEADER.size + 4 * n_scales + bitmap_bytes + k
    if len(data) != expected:
        raise CompressionError(f"compressed update is {len(data)} bytes, its header implies {expected}")
    offset = HEADER.size
    scales = np.frombuffer(data, dtype=">f4", count=n_scales, offset=offset).astype(np.float64)
    offset += 4 * n_scales
    if not (np.all(np.isfinite(scales)) and np.all(scales >= 0) and np.all(scales <= MAX_SCALE)):
        raise CompressionError(f"compressed update has a scale outside [0, {MAX_SCALE:g}] or non-finite")
    if kind == DENSE:
        idx = np.arange(d)
    else:
        bits = np.unpackbits(np.frombuffer(data, dtype=np.uint8, count=bitmap_bytes, offset=offset), bitorder="little")
        offset += bitmap_bytes
        if bits[d:].any():
            raise CompressionError("compressed update's coordinate bitmap has padding bits set")
        idx = np.flatnonzero(bits[:d])
        if idx.size != k:
            raise CompressionError(f"compressed update's bitmap selects {idx.size} values, its header says {k}")
    codes = np.frombuffer(data, dtype=np.int8, count=k, offset=offset)
    out = np.zeros(d)
    out[idx] = _dequantise(scales.astype(np.float32), codes)
    return out


def decompress_weights(
    arrays: Sequence[np.ndarray], global_weights: Sequence[np.ndarray], scheme: Compression
) -> list[np.ndarray]:
    """New weights from a compressed answer (one uint8 array) and the round's global weights."""
    if len(arrays) != 1 or np.asarray(arrays[0]).dtype != np.uint8 or np.asarray(arrays[0]).ndim != 1:
        raise CompressionError(f"expected one compressed update ({scheme.name}: a uint8 array), got {len(arrays)}")
    dim = int(sum(np.asarray(g).size for g in global_weights))
    delta = decode_update(np.asarray(arrays[0]).tobytes(), dim, scheme)
    out, start = [], 0
    for g in global_weights:
        g = np.asarray(g)
        out.append((g.astype(np.float64) + delta[start : start + g.size].reshape(g.shape)).astype(g.dtype))
        start += g.size
    return out


class ErrorFeedback:
    """A client's compressor: adds what earlier messages could not carry, keeps what this one cannot."""

    def __init__(self, scheme: Compression):
        self.scheme = scheme
        self.residual: np.ndarray | None = None

    def compress(self, new_weights: Sequence[np.ndarray], global_weights: Sequence[np.ndarray]) -> np.ndarray:
        """The uint8 message for this round's update (new weights minus the global weights)."""
        delta = np.concatenate(
            [
                (np.asarray(w, np.float64) - np.asarray(g, np.float64)).ravel()
                for w, g in zip(new_weights, global_weights, strict=True)
            ]
        )
        if self.residual is None or self.residual.size != delta.size:
            self.residual = np.zeros(delta.size)
        corrected = delta + self.residual
        message, sent = encode_update(corrected, self.scheme)
        self.residual = corrected - sent
        return np.frombuffer(message, dtype=np.uint8)

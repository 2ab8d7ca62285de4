"""Explicit byte encodings for what crosses the wire besides model weights (no pickle, checked on arrival)."""

from __future__ import annotations

import json
from typing import Any

import numpy as np


class WireError(ValueError):
    """A message from a peer has the wrong size, type or content."""


def encode_array(values: np.ndarray, dtype: str = "<f8") -> bytes:
    """Little-endian bytes of a 1-D array."""
    return np.ascontiguousarray(np.asarray(values).ravel(), dtype=dtype).tobytes()


def decode_array(data: Any, dtype: str = "<f8", length: int | None = None, finite: bool = True) -> np.ndarray:
    """Inverse of ``encode_array``, checking type, length and (for floats) finiteness."""
    if not isinstance(data, (bytes, bytearray)):
        raise WireError(f"expected bytes, got {type(data).__name__}")
    item = np.dtype(dtype).itemsize
    if len(data) % item:
        raise WireError(f"{len(data)} bytes is not a whole number of {dtype} values")
    arr = np.frombuffer(bytes(data), dtype=dtype)
    if length is not None and arr.size != length:
        raise WireError(f"expected {length} values, got {arr.size}")
    if finite and arr.dtype.kind == "f" and not np.all(np.isfinite(arr)):
        raise WireError("non-finite values")
    return arr.astype(np.float64 if arr.dtype.kind == "f" else np.int64)


def encode_json(obj: Any) -> str:
    """Compact JSON for config values (Flower config values must be scalars or bytes)."""
    return json.dumps(obj, separators=(",", ":"), sort_keys=True)


def decode_json(text: Any) -> Any:
    """Parse a JSON config value sent by a peer."""
    if not isinstance(text, str):
        raise WireError(f"expected a JSON string, got {type(text).__name__}")
    try:
        return json.loads(text)
    except json.JSONDecodeError as exc:
        raise WireError(f"malformed JSON: {exc}") from None

"""The broadcast model under `--compress`: what every node holds, versioned, moved by q8 steps with error feedback.

The server keeps two models. The exact global model X (float64) gets every aggregated update; the broadcast
model B (the model's dtypes, float32) is exactly what the nodes hold. A new version sends the dense q8 code of
X - B (`step_message`, the same wire format as the clients' updates, `fedad.common.compression`) and sets
B to B plus its decoded value (`apply_step`, one function on the server and on every node, so all hold
bit-identical weights). What the codes could not carry, X - B, goes out with the next version (server-side
error feedback): B stays within one step's rounding of X however many versions go by; nothing accumulates.
The nodes train from B and send their updates against B, so the strategies aggregate around B
(`carry_update`: X moves by the aggregate's step from B). The federation's model (threshold, evaluation,
saved models, report) is B, the one every node holds; X is the server's error-feedback state only.

A node holds (version, digest, weights) (`HeldModel`). Each instruction names the version it carries, the
SHA-256 digest of its weights (`weights_digest`) and how it travels (`choose_download`):

- ``held``: no tensors; the node reported holding this version;
- ``delta``: one uint8 array, the step from version ``model_base`` to this one; only to a node that
  reported holding ``model_base``;
- ``full``: the weights themselves (a node that joined late, rejoined, or holds another version).

A node refuses a step from a version it does not hold, and any model whose digest differs from the one named.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from fedad.common.compression import Compression, CompressionError, decode_update, encode_update

STEP = Compression()  # versions always travel as dense q8 steps, whatever the clients' upload scheme
DOWNLOADS = ("held", "delta", "full")


class BroadcastError(ValueError):
    """A model instruction this node cannot apply (a step from a version it does not hold, a digest mismatch)."""


def weights_digest(weights: Sequence[np.ndarray]) -> str:
    """SHA-256 (hex) over every array's dtype, shape and bytes, in order."""
    h = hashlib.sha256()
    for w in weights:
        a = np.ascontiguousarray(w)
        h.update(f"{a.dtype.str}{a.shape}".encode())
        h.update(a.tobytes())
    return h.hexdigest()


def _flat(weights: Sequence[np.ndarray]) -> np.ndarray:
    return np.concatenate([np.asarray(w, dtype=np.float64).ravel() for w in weights]) if weights else np.zeros(0)


def step_message(exact: Sequence[np.ndarray], held: Sequence[np.ndarray]) -> bytes:
    """The dense q8 message of the step from the held (broadcast) model to the exact one."""
    message, _ = encode_update(_flat(exact) - _flat(held), STEP)
    return message


def apply_step(held: Sequence[np.ndarray], message: bytes) -> list[np.ndarray]:
    """The held model plus a step message, in the held arrays' shapes and dtypes (CompressionError if malformed)."""
    delta = decode_update(message, int(sum(np.asarray(w).size for w in held)), STEP)
    out, start = [], 0
    for w in held:
        w = np.asarray(w)
        out.append((w.astype(np.float64) + delta[start : start + w.size].reshape(w.shape)).astype(w.dtype))
        start += w.size
    return out


def next_version(exact: Sequence[np.ndarray], held: Sequence[np.ndarray]) -> tuple[bytes, list[np.ndarray]]:
    """(the step message, the new broadcast model): the held model moved as close to the exact one as q8 allows."""
    message = step_message(exact, held)
    return message, apply_step(held, message)


def carry_update(
    exact: Sequence[np.ndarray], held: Sequence[np.ndarray], aggregated: Sequence[np.ndarray]
) -> list[np.ndarray]:
    """The exact model moved by the aggregate's step from the held model (float64): X + (W - B)."""
    return [
        np.asarray(x, np.float64) + (np.asarray(w, np.float64) - np.asarray(b, np.float64))
        for x, b, w in zip(exact, held, aggregated, strict=True)
    ]


def choose_download(node_holds: int | None, version: int, step_base: int | None) -> str:
    """How a version reaches a node: held (it has it), delta (it has the step's base) or full (anything else)."""
    if node_holds is not None and node_holds == version:
        return "held"
    if node_holds is not None and step_base is not None and node_holds == step_base:
        return "delta"
    return "full"


class HeldModel:
    """A node's copy of the broadcast model: applies the server's model instructions, refuses what does not fit."""

    def __init__(self) -> None:
        self.version: int | None = None
        self.digest: str | None = None
        self.weights: list[np.ndarray] | None = None

    def receive(self, arrays: Sequence[np.ndarray], config: Mapping[str, Any]) -> list[np.ndarray]:
        """The model an instruction carries (a copy), now held; BroadcastError (and nothing held) when it cannot be."""
        kind = config.get("model")
        try:
            version, digest = int(config["model_version"]), str(config["model_digest"])
        except (KeyError, TypeError, ValueError):
            raise BroadcastError("the model instruction has no valid model_version and model_digest") from None
        if kind == "full":
            weights = [np.array(a, copy=True) for a in arrays]
        elif kind == "delta":
            base = config.get("model_base")
            if self.weights is None or base != self.version:
                held = self.version
                self.forget()
                raise BroadcastError(f"the server sent a step from model version {base}; this node holds {held}")
            if len(arrays) != 1 or np.asarray(arrays[0]).dtype != np.uint8 or np.asarray(arrays[0]).ndim != 1:
                self.forget()
                raise BroadcastError("a model step must be one uint8 array")
            try:
                weights = apply_step(self.weights, np.asarray(arrays[0]).tobytes())
            except CompressionError as exc:
                self.forget()
                raise BroadcastError(f"malformed model step: {exc}") from None
        elif kind == "held":
            if self.weights is None or version != self.version:
                held = self.version
                self.forget()
                raise BroadcastError(f"the server says this node holds model version {version}; it holds {held}")
            weights = self.weights
        else:
            raise BroadcastError(f"unknown model download {kind!r} (expected one of {', '.join(DOWNLOADS)})")
        if weights_digest(weights) != digest:
            self.forget()
            raise BroadcastError(f"model version {version} ({kind}) does not match the digest the server named")
        self.version, self.digest, self.weights = version, digest, weights
        return [w.copy() for w in weights]

    def forget(self) -> None:
        """Hold nothing (the next model must come in full)."""
        self.version = self.digest = self.weights = None

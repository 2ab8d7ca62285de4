"""A client's mean embedding as secure-robust sends it: L2-normalised, quantized in [-1, 1], one packed block.

Embedding trust (seed paper 001) uses only the embedding's direction, so nothing is lost by normalising on
the client; the key holder's blind decryption then gives the aggregator this one vector per client per round.
"""

from __future__ import annotations

import numpy as np

from fedad.common.crypto.packing import SlotLayout, dequantize_mean, quantize

EMBEDDING_BITS = 16


def embedding_layout(key_bits: int) -> SlotLayout:
    """Embeddings are never summed: no headroom."""
    return SlotLayout(EMBEDDING_BITS, 0, int(key_bits))


def quantize_embedding(embedding: np.ndarray, rng: np.random.Generator | None = None) -> np.ndarray:
    """The mean embedding L2-normalised and quantized in [-1, 1] (uint64 levels)."""
    e = np.asarray(embedding, dtype=np.float64).ravel()
    norm = float(np.linalg.norm(e))
    return quantize(e / norm if norm > 0.0 else e, 1.0, EMBEDDING_BITS, rng)[0]


def dequantize_embedding(q: np.ndarray) -> np.ndarray:
    """Float embedding from its quantized levels."""
    return dequantize_mean(np.asarray(q, dtype=np.float64), 1, 1.0, EMBEDDING_BITS)

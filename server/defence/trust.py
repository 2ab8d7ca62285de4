"""Trust weights (direction, embedding, history, capped counts) and the per-client trust history."""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence

import numpy as np

from fedad.common.errors import FedadError
from fedad.server.defence.scoring import cosine_to


def l2_normalise_rows(x: np.ndarray) -> np.ndarray:
    """Rows scaled to unit L2 norm; zero rows stay zero."""
    x = np.asarray(x, dtype=np.float64)
    norms = np.linalg.norm(x, axis=1, keepdims=True)
    return np.divide(x, norms, out=np.zeros_like(x), where=norms > 0.0)


def embedding_trust(embeddings: np.ndarray) -> np.ndarray:
    """Trust 1 / (1 + ||z_i - g||^2) of L2-normalised mean embeddings z_i, g their coordinate-wise median."""
    z = l2_normalise_rows(embeddings)
    if z.shape[0] == 0:
        return np.zeros(0)
    g = np.median(z, axis=0)
    return 1.0 / (1.0 + np.sum((z - g) ** 2, axis=1))


def direction_trust(updates: np.ndarray, reference: np.ndarray) -> np.ndarray:
    """FLTrust direction trust: cosine of each update to the reference update, clipped at 0."""
    return np.maximum(cosine_to(np.asarray(updates, dtype=np.float64), reference), 0.0)


def rescale_updates(updates: np.ndarray, target_norm: float) -> np.ndarray:
    """Each update rescaled to the target norm (magnitude normalisation); zero updates stay zero."""
    return l2_normalise_rows(updates) * float(target_norm)


def cap_sample_counts(num_examples: np.ndarray, cap: float | None) -> np.ndarray:
    """Example counts clipped to cap x their median, so that claiming many examples buys little weight."""
    counts = np.asarray(num_examples, dtype=np.float64)
    if cap is None or counts.size == 0:
        return counts
    return np.minimum(counts, cap * float(np.median(counts)))


def trust_weights(
    direction: np.ndarray,
    embedding: np.ndarray | None,
    history: np.ndarray | None,
    num_examples: np.ndarray,
    sample_cap: float | None = 4.0,
) -> np.ndarray:
    """Aggregation weights embedding x direction x history x capped count, normalised to sum 1 (or all 0)."""
    w = np.asarray(direction, dtype=np.float64) * cap_sample_counts(num_examples, sample_cap)
    if embedding is not None:
        w = w * np.asarray(embedding, dtype=np.float64)
    if history is not None:
        w = w * np.asarray(history, dtype=np.float64)
    total = float(w.sum())
    return w / total if total > 0.0 else np.zeros_like(w)


def reference_norm(updates: np.ndarray, reference: np.ndarray, mode: str = "median_norm") -> float:
    """Common norm the updates are rescaled to: the median update norm, or the norm of the reference update."""
    if mode == "median_norm":
        return float(np.median(np.linalg.norm(updates, axis=1))) if updates.shape[0] else 0.0
    if mode == "reference":
        return float(np.linalg.norm(reference))
    raise FedadError(f"unknown norm reference {mode!r}: choose median_norm or reference")


def relative_trust(round_trust: np.ndarray) -> np.ndarray:
    """Round trust divided by its median and clipped to [0, 1]: what the trust history accumulates."""
    round_trust = np.asarray(round_trust, dtype=np.float64)
    if round_trust.size == 0:
        return round_trust.copy()
    med = float(np.median(round_trust))
    if med <= 0.0:
        return np.where(round_trust > 0.0, 1.0, 0.0)
    return np.clip(round_trust / med, 0.0, 1.0)


class TrustHistory:
    """Per-client trust across rounds, an exponential moving average keyed by client name.

    ``update`` folds in one round: h <- decay * h + (1 - decay) * t with t in [0, 1] (the round's relative
    trust; 0 for a flagged or rejected client). A client seen for the first time starts from ``initial``.
    """

    def __init__(self, decay: float = 0.7, initial: float = 1.0):
        if not 0.0 <= decay < 1.0:
            raise FedadError(f"trust history decay must be in [0, 1), got {decay}")
        if not 0.0 <= initial <= 1.0:
            raise FedadError(f"initial trust must be in [0, 1], got {initial}")
        self.decay, self.initial = float(decay), float(initial)
        self.values: dict[str, float] = {}

    def get(self, name: str) -> float:
        """Current trust of a client (``initial`` if never seen)."""
        return self.values.get(name, self.initial)

    def update(self, names: Sequence[str], round_trust: Sequence[float] | np.ndarray) -> np.ndarray:
        """Fold one round's trust (in [0, 1]) into the history; returns the clients' new values."""
        out = []
        for name, t in zip(names, round_trust, strict=True):
            t = min(max(float(t), 0.0), 1.0) if math.isfinite(float(t)) else 0.0
            value = self.decay * self.get(name) + (1.0 - self.decay) * t
            self.values[name] = value
            out.append(value)
        return np.array(out, dtype=np.float64)

    def to_dict(self) -> dict:
        """JSON-able state for checkpoints."""
        return {"decay": self.decay, "initial": self.initial, "values": dict(sorted(self.values.items()))}

    @classmethod
    def from_dict(cls, d: Mapping) -> TrustHistory:
        """Rebuild from ``to_dict`` output; FedadError on a malformed checkpoint."""
        try:
            history = cls(float(d["decay"]), float(d["initial"]))
            values = {str(k): float(v) for k, v in dict(d["values"]).items()}
        except (KeyError, TypeError, ValueError) as e:
            raise FedadError(f"malformed trust history checkpoint: {e}") from None
        if any(not 0.0 <= v <= 1.0 for v in values.values()):
            raise FedadError("malformed trust history checkpoint: values must lie in [0, 1]")
        history.values = values
        return history

"""The one validation layer for everything a node sends: names, counts, metrics, features, histograms, tensors.

Plain functions, no Flower: each checks one value's type, range and shape and returns it decoded, or
raises ``InvalidMessage`` saying what is wrong. The server runs every node's result through these before
any strategy sees it; a violation refuses that node's result for the round (the reason goes to
rounds.jsonl and report.json), never an exception in the server.
"""

from __future__ import annotations

import hashlib
import math
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from fedad.common.wire import WireError

MAX_EXAMPLES = 100_000_000  # plant-wide cap on any count a node declares (rows, samples, confusion counts)
MAX_FEATURES = 4_096  # most feature columns a node may declare
MAX_NAME_CHARS = 128  # longest client or feature name
MAX_ABS_WEIGHT = 1e4  # model weights beyond this are a corrupted or hostile update, not training
MAX_METRIC = 1e300  # losses and timings must be finite (a diverged model's honest loss is huge, not invalid)
TENSOR_DTYPES = (np.dtype("<f4"), np.dtype("<f8"))  # what a plaintext update may be made of


class InvalidMessage(WireError):
    """A node's message breaks the protocol; the text says how (it is the refusal reason)."""


def count(value: Any, what: str, *, low: int = 0, high: int = MAX_EXAMPLES) -> int:
    """An integer count in [low, high] (bools and floats are refused)."""
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)):
        raise InvalidMessage(f"{what} must be an integer, got {type(value).__name__}")
    if not low <= int(value) <= high:
        raise InvalidMessage(f"{what} {int(value)} is outside {low}..{high}")
    return int(value)


def real(value: Any, what: str, *, low: float = -MAX_METRIC, high: float = MAX_METRIC) -> float:
    """A finite real in [low, high] (an int is accepted, a bool or a string is not)."""
    if isinstance(value, bool) or not isinstance(value, (int, float, np.integer, np.floating)):
        raise InvalidMessage(f"{what} must be a number, got {type(value).__name__}")
    v = float(value)
    if not math.isfinite(v) or not low <= v <= high:
        raise InvalidMessage(f"{what} {v!r} is not finite or outside [{low:g}, {high:g}]")
    return v


def text(value: Any, what: str, *, max_chars: int = MAX_NAME_CHARS) -> str:
    """A non-empty string of at most ``max_chars`` printable characters."""
    if not isinstance(value, str):
        raise InvalidMessage(f"{what} must be a string, got {type(value).__name__}")
    if not 0 < len(value) <= max_chars or not value.isprintable():
        raise InvalidMessage(f"{what} must be 1..{max_chars} printable characters")
    return value


def blob(value: Any, what: str, *, max_bytes: int) -> bytes:
    """Bytes of at most ``max_bytes``."""
    if not isinstance(value, (bytes, bytearray)):
        raise InvalidMessage(f"{what} must be bytes, got {type(value).__name__}")
    if len(value) > max_bytes:
        raise InvalidMessage(f"{what} has {len(value)} bytes, more than {max_bytes}")
    return bytes(value)


def feature_list(value: Any) -> tuple[str, ...]:
    """A JSON list of distinct feature names (strings), at most ``MAX_FEATURES`` of them."""
    import json

    if not isinstance(value, str) or len(value) > MAX_FEATURES * (MAX_NAME_CHARS + 4):
        raise InvalidMessage("the feature list must be a JSON string of bounded size")
    try:
        names = json.loads(value)
    except json.JSONDecodeError:
        raise InvalidMessage("the feature list is not JSON") from None
    if not isinstance(names, list) or not 0 < len(names) <= MAX_FEATURES:
        raise InvalidMessage(f"the feature list must be a list of 1..{MAX_FEATURES} names")
    for n in names:
        text(n, "a feature name")
    if len(set(names)) != len(names):
        raise InvalidMessage("the feature list repeats a name")
    return tuple(names)


def histogram(value: Any, n_bins: int, *, max_total: int = MAX_EXAMPLES, what: str = "histogram") -> np.ndarray:
    """``n_bins`` non-negative int64 counts (little-endian bytes) summing to at most ``max_total``."""
    data = blob(value, what, max_bytes=8 * n_bins)
    if len(data) != 8 * n_bins:
        raise InvalidMessage(f"{what} has {len(data)} bytes, expected {8 * n_bins} ({n_bins} int64 counts)")
    counts = np.frombuffer(data, dtype="<i8").astype(np.int64)
    if (counts < 0).any():
        raise InvalidMessage(f"{what} has negative counts")
    if int(counts.sum()) > max_total or (counts > max_total).any():
        raise InvalidMessage(f"{what} sums to more than {max_total}")
    return counts


def scaler_stats(value: Any, n_features: int, *, max_count: int = MAX_EXAMPLES):
    """Plaintext scaler statistics for ``n_features`` features: finite, count 1..max_count, sumsq >= 0."""
    from fedad.common.federated_stats import decode_scaler_stats

    blob(value, "scaler statistics", max_bytes=8 * (1 + 4 * n_features))
    stats = decode_scaler_stats(value, n_features)
    count(stats.count, "the scaler's row count", low=1, high=max_count)
    if (np.asarray(stats.sumsq) < 0).any():
        raise InvalidMessage("scaler statistics have a negative sum of squares")
    return stats


def tensors(
    arrays: Sequence[np.ndarray], shapes: Sequence[tuple[int, ...]], *, max_abs: float = MAX_ABS_WEIGHT
) -> list[np.ndarray]:
    """Model arrays: float32/float64 only, the model's shapes, finite, every value within ``max_abs``."""
    if len(arrays) != len(shapes):
        raise InvalidMessage(f"wrong number of arrays: {len(arrays)}, expected {len(shapes)}")
    out = []
    for i, (a, shape) in enumerate(zip(arrays, shapes, strict=True)):
        if not isinstance(a, np.ndarray):
            raise InvalidMessage(f"array {i} is a {type(a).__name__}, not an array")
        if a.dtype.newbyteorder("<") not in TENSOR_DTYPES:
            raise InvalidMessage(f"array {i} has dtype {a.dtype}, only float32/float64 are accepted")
        if tuple(a.shape) != tuple(shape):
            raise InvalidMessage(f"array {i} has shape {tuple(a.shape)}, expected {tuple(shape)}")
        if a.size and not np.isfinite(a).all():
            raise InvalidMessage(f"array {i} has non-finite values (NaN/Inf)")
        if a.size and float(np.abs(a).max()) > max_abs:
            raise InvalidMessage(f"array {i} has a value of magnitude {float(np.abs(a).max()):.3g} > {max_abs:g}")
        out.append(a)
    return out


def aggregate(arrays: Sequence[np.ndarray], shapes: Sequence[tuple[int, ...]]) -> str | None:
    """Why a new global model must not be sent (shape, NaN/Inf, magnitude), or None when it is sane."""
    try:
        tensors([np.asarray(a) for a in arrays], shapes)
    except InvalidMessage as exc:
        return str(exc)
    return None


def tensor_bytes(tensors_: Sequence[bytes], max_bytes: int) -> None:
    """Serialized tensors whose total size is at most ``max_bytes`` (checked before decoding them)."""
    if not isinstance(tensors_, (list, tuple)):
        raise InvalidMessage("tensors must be a list of byte strings")
    total = 0
    for t in tensors_:
        if not isinstance(t, (bytes, bytearray)):
            raise InvalidMessage("a tensor is not bytes")
        total += len(t)
    if total > max_bytes:
        raise InvalidMessage(f"update of {total} bytes, more than the {max_bytes} this model can need")


def name(metrics: Mapping[str, Any] | None) -> str | None:
    """The node's self-reported name, or None when it sent none (a malformed one is refused)."""
    if not metrics or "name" not in metrics:
        return None
    return text(metrics["name"], "the node's name")


def metrics_map(value: Any) -> Mapping[str, Any]:
    """The metrics dict itself: string keys, at most 64 of them."""
    if value is None:
        return {}
    if not isinstance(value, Mapping) or len(value) > 64 or not all(isinstance(k, str) for k in value):
        raise InvalidMessage("metrics must be a mapping of at most 64 string keys")
    return value


def stats_result(num_examples: Any, metrics: Any, *, encrypted: bool, max_blob: int) -> tuple[tuple[str, ...], int]:
    """A statistics-phase answer: (its feature names, its declared training-row count)."""
    m = metrics_map(metrics)
    feats = feature_list(m.get("features"))
    declared = count(num_examples, "the declared row count", low=1)
    key = "stats_enc" if encrypted else "stats"
    if key not in m:
        raise InvalidMessage(f"the statistics answer has no {key!r}")
    blob(m[key], key, max_bytes=max_blob)
    return feats, declared


def fit_result(num_examples: Any, metrics: Any, *, declared: int | None) -> tuple[int, int]:
    """A training answer's metrics; (examples used, examples claimed): claims are capped at the declared count."""
    m = metrics_map(metrics)
    claimed = count(num_examples, "num_examples", low=1)
    for key in ("train_loss", "seconds", "encrypt_seconds"):
        if key in m:
            real(m[key], key, low=0.0 if key != "train_loss" else -MAX_METRIC)
    for key in ("embedding", "embedding_enc"):
        if key in m:
            blob(m[key], key, max_bytes=1 << 20)
    used = claimed if declared is None else min(claimed, declared)
    return used, claimed


TEST_COUNTS = ("tp", "fp", "tn", "fn")


def evaluate_result(
    phase: str,
    loss: Any,
    num_examples: Any,
    metrics: Any,
    *,
    n_bins: int,
    encrypted: bool,
    max_blob: int,
    max_rows: int | None = None,
) -> dict:
    """An evaluation answer (val, threshold or test) with its metrics decoded and range-checked."""
    m = metrics_map(metrics)
    high = MAX_EXAMPLES if max_rows is None else max_rows
    out: dict = {"loss": real(loss, "loss"), "num_examples": count(num_examples, "num_examples", high=high)}
    if phase == "threshold":
        if encrypted:
            out["hist_enc"] = blob(m.get("hist_enc"), "hist_enc", max_bytes=max_blob)
        else:
            out["hist"] = histogram(m.get("hist"), n_bins, max_total=high)
    elif phase == "test":
        if "threshold" in m:
            out["threshold"] = real(m["threshold"], "threshold")
        if any(k in m for k in TEST_COUNTS):
            c = {k: count(m.get(k), k) for k in TEST_COUNTS}
            if sum(c.values()) > high:
                raise InvalidMessage(f"confusion counts sum to {sum(c.values())}, more than {high}")
            pos = histogram(m.get("pos_hist"), n_bins, what="pos_hist")
            neg = histogram(m.get("neg_hist"), n_bins, what="neg_hist")
            if int(pos.sum()) != c["tp"] + c["fn"] or int(neg.sum()) != c["fp"] + c["tn"]:
                raise InvalidMessage("score histograms do not sum to the confusion counts")
            out.update(c, pos_hist=pos, neg_hist=neg)
        if "outside_range" in m:
            out["outside_range"] = real(m["outside_range"], "outside_range", low=0.0, high=1.0)
            out["outside_feature"] = count(m.get("outside_feature"), "outside_feature", low=-1, high=MAX_FEATURES)
    return out


def digest(tensors_: Sequence[bytes]) -> str:
    """SHA-256 of an answer's serialized tensors: equal digests mean a bit-for-bit repeat."""
    h = hashlib.sha256()
    for t in tensors_:
        h.update(len(t).to_bytes(8, "big"))
        h.update(t)
    return h.hexdigest()


class ReplayGuard:
    """Refuses an answer that repeats the same node's previous-round answer bit for bit."""

    def __init__(self) -> None:
        self.last: dict[str, tuple[int, str]] = {}

    def check(self, who: str, rnd: int, tensors_: Sequence[bytes]) -> str | None:
        """Why ``who``'s round-``rnd`` answer is a replay, or None; remembers it either way."""
        d = digest(tensors_)
        prev = self.last.get(who)
        self.last[who] = (rnd, d)
        if prev is not None and prev[0] < rnd and prev[1] == d:
            return f"repeats its round-{prev[0]} update bit for bit (replay)"
        return None

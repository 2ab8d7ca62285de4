"""The demo's baselines kept beside its results and reused when plant, seed and settings are the same."""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path

import numpy as np

CACHE_FILE = "baselines.json"


def baseline_key(datasets, spec, epochs: int) -> str:
    """A hash of the shards' values and everything that shapes the baselines (model, epochs, seed, scaling)."""
    h = hashlib.sha256()
    settings = {k: v for k, v in spec.to_dict().items() if k != "feature_names"}
    h.update(json.dumps({"spec": settings, "epochs": epochs, "version": 1}, sort_keys=True).encode())
    for d in datasets:
        h.update(np.ascontiguousarray(d.X, dtype=np.float64).tobytes())
        h.update(b"-" if d.y is None else np.ascontiguousarray(d.y, dtype=np.int8).tobytes())
    return h.hexdigest()


def load_baselines(out: Path, key: str) -> dict | None:
    """The cached baselines for ``key``, or None (missing, other key, unreadable)."""
    try:
        cached = json.loads((out / CACHE_FILE).read_text())
    except (OSError, ValueError):
        return None
    if not isinstance(cached, dict) or cached.get("key") != key or not isinstance(cached.get("baselines"), dict):
        return None
    return cached["baselines"]


def save_baselines(out: Path, key: str, baselines: dict) -> None:
    """Write the cache atomically."""
    tmp = out / f".{CACHE_FILE}.tmp"
    tmp.write_text(json.dumps({"key": key, "baselines": baselines}, indent=1) + "\n")
    os.replace(tmp, out / CACHE_FILE)

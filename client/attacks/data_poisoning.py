"""Data poisoning for autoencoders: train honestly on corrupted data so the global model reconstructs faults.

The update is left unchanged: the attack lives entirely in the training set, so the update is an ordinary
gradient-descent result on other data. That makes it the hardest attack for deviation tests.
"""

from __future__ import annotations

import numpy as np

from fedad.client.attacks.base import Attack
from fedad.common.errors import FedadError

MODES = ("mixed", "anomalies", "shift", "noise")


class DataPoisoning(Attack):
    """Replace the training set by faults the model should learn to reconstruct (and so miss).

    ``mode``: ``anomalies`` trains on the shard's anomalous samples (``y == 1``; corrupted copies when it
    has none), ``shift`` on normal samples offset by ``shift`` per-feature standard deviations (a fixed
    random sign per feature, like a sensor bias), ``noise`` on normal samples plus N(0, (noise * std)^2),
    ``mixed`` (default) on all of these together. With ``keep_normal`` the clean normal samples stay in
    the set too, which keeps the local loss and the update looking ordinary.
    """

    name = "data_poisoning"
    scale_param = "shift"

    def __init__(
        self,
        mode: str = "mixed",
        shift: float = 3.0,
        noise: float = 1.0,
        keep_normal: bool = True,
        start_round: int = 1,
        seed: int = 0,
    ):
        super().__init__(start_round, seed)
        if mode not in MODES:
            raise FedadError(f"unknown data poisoning mode {mode!r}: choose one of {', '.join(MODES)}")
        self.mode, self.shift, self.noise, self.keep_normal = mode, float(shift), float(noise), bool(keep_normal)

    def poison_data(self, X: np.ndarray, y: np.ndarray | None = None) -> np.ndarray:
        X = np.asarray(X)
        if X.ndim < 2 or X.shape[0] == 0:
            raise FedadError(f"data poisoning needs a non-empty (samples, ..., features) array, got {X.shape}")
        if y is not None and len(y) != X.shape[0]:
            raise FedadError(f"labels ({len(y)}) and samples ({X.shape[0]}) differ in length")
        labels = np.zeros(X.shape[0], dtype=bool) if y is None else np.asarray(y).astype(bool)
        normal, faults = X[~labels], X[labels]
        if normal.shape[0] == 0:
            normal = X
        rng = np.random.default_rng([self.seed, 7919])
        flat = normal.reshape(-1, X.shape[-1]).astype(np.float64)
        std = np.nanstd(flat, axis=0)
        std = np.where(np.isfinite(std) & (std > 0), std, 1.0)
        parts = [normal] if self.keep_normal else []
        if self.mode in ("mixed", "anomalies") and faults.shape[0]:
            parts.append(faults)
        if self.mode in ("mixed", "shift") or (self.mode == "anomalies" and not faults.shape[0]):
            signs = rng.choice([-1.0, 1.0], size=X.shape[-1])
            parts.append(normal + self.shift * signs * std)
        if self.mode in ("mixed", "noise"):
            parts.append(normal + rng.normal(0.0, 1.0, size=normal.shape) * self.noise * std)
        out = np.concatenate(parts, axis=0).astype(X.dtype, copy=False)
        return out[rng.permutation(out.shape[0])]

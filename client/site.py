"""One site's local work in a federation: statistics, local training, validation, threshold and test counts.

Raw records stay in this object; what it returns are weights, counts, sums and histograms.
"""
from __future__ import annotations

import time
from typing import TYPE_CHECKING

import numpy as np

from fedad.common.errors import FedadError
from fedad.common.federation_spec import FederationSpec
from fedad.common.preprocessing import Preprocessor, ScalerStats, sliding_windows, window_scores_to_records
from fedad.common.split import split_site

if TYPE_CHECKING:
    from fedad.common.data import Dataset


class Site:
    """A client's data and model, driven phase by phase by the server's instructions."""

    def __init__(self, data: "Dataset", device: str = "cpu"):
        from fedad.common.training import resolve_device

        self.data = data
        self.device = resolve_device(device)
        self.split = split_site(data.X, data.y)
        if len(self.split.train) < 2 or len(self.split.val) < 1:
            raise FedadError(f"{data.source}: too few normal rows to train ({len(data.X)} rows in all)")
        self._spec_key: str | None = None
        self._scaler_key: bytes | None = None
        self.model = None

    @property
    def n_features(self) -> int:
        return self.data.X.shape[1]

    def check_features(self, spec: FederationSpec) -> None:
        """Refuse a federation whose model takes other features than this site's data has."""
        names = spec.feature_names
        if names is not None and list(names) != list(self.data.feature_names):
            raise FedadError(
                f"this node's data has {self.n_features} features {self.data.feature_names[:6]}..., but the "
                f"federation's model takes {len(names)}: {names[:6]}... (check the shard's columns)")

    def configure(self, spec: FederationSpec, spec_key: str) -> None:
        """(Re)build the local preprocessing and model when the federation's spec changes."""
        if spec_key == self._spec_key:
            return
        from fedad.common.models.registry import build_model

        self.check_features(spec)
        self.spec = spec
        self.pre = Preprocessor(**spec.preprocessing)
        self.pre.fit_local(self.split.train)
        self.model = build_model(spec.model, self.n_features, window=spec.window, **spec.sizes).to(self.device)
        self._spec_key, self._scaler_key = spec_key, None

    def scaler_stats(self) -> ScalerStats:
        """Count/sum/sum-of-squares/min/max of the prescaled training rows: all the scaler needs."""
        return self.pre.local_scaler_stats(self.split.train)

    def set_scaler(self, stats: ScalerStats | None, key: bytes) -> None:
        """Adopt the scaler (global, or this site's own under site scaling); transform the local splits once."""
        if key == self._scaler_key:
            return
        self.pre.set_scaler_stats(self.scaler_stats() if self.spec.scaling == "site" else stats)
        w = self.spec.window
        self.train_samples = self._samples(self.split.train, w)
        self.val_samples = self._samples(self.split.val, w)
        self._scaler_key = key

    def _samples(self, rows: np.ndarray, window: int) -> np.ndarray:
        z = self.pre.transform(rows)
        return z if window <= 1 else np.ascontiguousarray(sliding_windows(z, window))

    def train(self, weights: list[np.ndarray] | None, epochs: int, round_seed: int,
              global_embedding: np.ndarray | None = None, direction_only: bool = False) -> dict:
        """Local training from the global weights (aligned to ``global_embedding`` where the model has that term)."""
        from fedad.common.training import get_weights, set_weights, train_model

        if weights:
            set_weights(self.model, weights)
        if hasattr(self.model, "set_global_embedding"):
            try:
                self.model.set_global_embedding(global_embedding, direction_only)
            except ValueError as exc:
                raise FedadError(f"bad global embedding from the server: {exc}") from None
        t0 = time.perf_counter()
        hist = train_model(self.model, self.train_samples, None, epochs=epochs, batch_size=self.spec.batch_size,
                           lr=self.spec.lr, weight_decay=self.spec.weight_decay, patience=epochs + 1,
                           device=self.device, seed=round_seed)
        return {"weights": get_weights(self.model), "train_loss": float(hist["train_loss"][-1]),
                "seconds": time.perf_counter() - t0, "examples": len(self.train_samples)}

    def _load(self, weights: list[np.ndarray]) -> None:
        """Adopt the global weights for scoring, with score statistics fitted on this site's training data."""
        from fedad.common.training import calibrate, set_weights

        set_weights(self.model, weights)
        calibrate(self.model, self.train_samples, self.device)

    def record_scores(self, weights: list[np.ndarray], rows: np.ndarray) -> np.ndarray:
        """Per-record anomaly scores of ``rows`` under the given global weights."""
        from fedad.common.training import reconstruction_errors

        self._load(weights)
        samples = self._samples(rows, self.spec.window)
        s = reconstruction_errors(self.model, samples, self.device)
        return s if self.spec.window <= 1 else window_scores_to_records(s, len(rows), self.spec.window)

    def val_loss(self, weights: list[np.ndarray]) -> float:
        """Mean anomaly score of the global model on this site's validation rows."""
        from fedad.common.training import reconstruction_errors

        self._load(weights)
        return float(np.mean(reconstruction_errors(self.model, self.val_samples, self.device)))

    def save_model(self, path, weights: list[np.ndarray], threshold: float):
        """This site's deployable model: the global weights and threshold with this site's preprocessing."""
        from fedad.common.detector import AutoencoderDetector

        det = AutoencoderDetector(model=self.spec.model, window=self.spec.window, seed=self.spec.seed,
                                  threshold_quantile=self.spec.threshold_quantile,
                                  preprocessing=dict(self.spec.preprocessing), model_sizes=dict(self.spec.sizes))
        self._load(weights)  # the saved centre and scales are this site's
        det.model_, det.preprocessor_, det.device_ = self.model, self.pre, self.device
        det.n_features_ = det.n_features_in_ = self.n_features
        det.feature_names_, det.threshold_, det.history_ = list(self.data.feature_names), float(threshold), {}
        return det.save(path)

    def mean_embedding(self, weights: list[np.ndarray]) -> np.ndarray:
        """Mean latent code of the local training data under the global encoder (for trust weighting)."""
        from fedad.common.training import mean_embedding, set_weights

        set_weights(self.model, weights)
        return mean_embedding(self.model, self.train_samples, self.device)

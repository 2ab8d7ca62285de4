"""One site's local work in a federation: statistics, local training, validation, threshold and test counts.

Raw records stay in this object; what it returns are weights, counts, sums and histograms.
"""

from __future__ import annotations

import time
from typing import TYPE_CHECKING

import numpy as np

from fedad.common.errors import FedadError
from fedad.common.federation_spec import FederationSpec
from fedad.common.models.base import EmbeddingAligned
from fedad.common.preprocessing import Preprocessor, ScalerStats, sliding_windows, window_scores_to_records
from fedad.common.scoring import aggregate_errors, feature_errors, feature_scales
from fedad.common.split import Split, split_site

if TYPE_CHECKING:
    from fedad.common.data import Dataset
    from fedad.common.models.base import Autoencoder


class Site:
    """A client's data and model, driven phase by phase by the server's instructions."""

    def __init__(
        self,
        data: Dataset,
        device: str = "cpu",
        val_fraction: float = 0.2,
        test_fraction: float | None = None,
        test_data: Dataset | None = None,
    ) -> None:
        """Split ``data`` into training, validation (``val_fraction`` of the normal fitting rows) and test rows
        (the last ``test_fraction``, default 0.2); with ``test_data`` that file is the test set and all of
        ``data`` fits the model."""
        from fedad.common.training import resolve_device

        if not 0.0 < val_fraction < 1.0:
            raise FedadError(f"--val-fraction must be between 0 and 1 (exclusive), got {val_fraction}")
        if test_data is not None and test_fraction:
            raise FedadError(
                "give --test-data or --test-fraction, not both (with --test-data all of --data fits the model)"
            )
        test_fraction = 0.0 if test_data is not None else (0.2 if test_fraction is None else test_fraction)
        if not 0.0 <= test_fraction < 1.0:
            raise FedadError(f"--test-fraction must be in [0, 1), got {test_fraction}")
        self.data = data
        self.device = resolve_device(device)
        self.split = split_site(data.X, data.y, test_fraction=test_fraction, val_fraction=val_fraction)
        if len(self.split.train) < 2 or len(self.split.val) < 1:
            raise FedadError(f"{data.source}: too few normal rows to train ({len(data.X)} rows in all)")
        if test_data is not None:
            if list(test_data.feature_names) != list(data.feature_names):
                raise FedadError(
                    f"{test_data.source}: its features {test_data.feature_names[:6]}... differ from "
                    f"those of {data.source}: {data.feature_names[:6]}..."
                )
            self.split = Split(train=self.split.train, val=self.split.val, test=test_data.X, test_labels=test_data.y)
        self._spec_key: str | None = None
        self._scaler_key: bytes | None = None
        self.model: Autoencoder | None = None  # built by ``configure`` from the federation's spec
        # set by ``configure`` and ``set_scaler``, before any phase that uses them
        self.spec: FederationSpec
        self.pre: Preprocessor
        self.train_samples: np.ndarray
        self.val_samples: np.ndarray
        # (scaler key, weights hash) -> feature scales of the last ``feature_scales`` call
        self._scales: tuple[tuple[bytes | None, int], np.ndarray] | None = None

    @property
    def n_features(self) -> int:
        return self.data.X.shape[1]

    def configured_model(self) -> Autoencoder:
        """The model ``configure`` built (FedadError before the federation's spec has arrived)."""
        if self.model is None:
            raise FedadError("no model yet: the federation's spec has not arrived")
        return self.model

    def check_features(self, spec: FederationSpec) -> None:
        """Refuse a federation whose model takes other features than this site's data has."""
        names = spec.feature_names
        if names is not None and list(names) != list(self.data.feature_names):
            from fedad.common.feature_diff import describe_feature_difference

            raise FedadError(
                f"this node's data has {self.n_features} features, but the federation's model takes {len(names)} "
                f"({describe_feature_difference(self.data.feature_names, names)}; check the shard's columns)"
            )

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
        chosen = self.scaler_stats() if self.spec.scaling == "site" else stats
        if chosen is None:
            raise FedadError("global scaling needs the federation's scaler statistics; none were given")
        self.pre.set_scaler_stats(chosen)
        w = self.spec.window
        self.train_samples = self._samples(self.split.train, w)
        self.val_samples = self._samples(self.split.val, w)
        self._scaler_key = key

    def _samples(self, rows: np.ndarray, window: int) -> np.ndarray:
        z = self.pre.transform(rows)
        return z if window <= 1 else np.ascontiguousarray(sliding_windows(z, window))

    def train(
        self,
        weights: list[np.ndarray] | None,
        epochs: int,
        round_seed: int,
        global_embedding: np.ndarray | None = None,
        direction_only: bool = False,
        extra_rows: np.ndarray | None = None,
    ) -> dict:
        """Local training from the global weights (aligned to ``global_embedding`` where the model has that term);
        ``extra_rows``: raw records trained on besides the training split (``--learn-from-stream``); the
        example count stays the training split's (the count the server was told)."""
        from fedad.common.training import get_weights, set_weights, train_model

        model = self.configured_model()
        if weights:
            set_weights(model, weights)
        if isinstance(model, EmbeddingAligned):  # the same test as hasattr(model, "set_global_embedding")
            try:
                model.set_global_embedding(global_embedding, direction_only)
            except ValueError as exc:
                raise FedadError(f"bad global embedding from the server: {exc}") from None
        t0 = time.perf_counter()
        samples = self.train_samples
        if extra_rows is not None and len(extra_rows) >= max(1, self.spec.window):
            samples = np.concatenate(
                [samples, self._samples(np.asarray(extra_rows, dtype=np.float64), self.spec.window)]
            )
        hist = train_model(
            model,
            samples,
            None,
            epochs=epochs,
            batch_size=self.spec.batch_size,
            lr=self.spec.lr,
            weight_decay=self.spec.weight_decay,
            patience=epochs + 1,
            device=self.device,
            seed=round_seed,
        )
        return {
            "weights": get_weights(model),
            "train_loss": float(hist["train_loss"][-1]),
            "seconds": time.perf_counter() - t0,
            "examples": len(self.train_samples),
        }

    def _load(self, weights: list[np.ndarray]) -> None:
        """Adopt the global weights for scoring, with score statistics fitted on this site's training data."""
        from fedad.common.training import calibrate, set_weights

        model = self.configured_model()
        set_weights(model, weights)
        calibrate(model, self.train_samples, self.device)

    def record_scores(self, weights: list[np.ndarray], rows: np.ndarray) -> np.ndarray:
        """Per-record anomaly scores of ``rows`` under the given global weights and the spec's ``score``
        (normalised scores divide by this site's own training error scales)."""
        from fedad.common.training import reconstruction_errors

        self._load(weights)
        model = self.configured_model()
        samples = self._samples(rows, self.spec.window)
        score = self.spec.score  # FederationSpec already maps contrastive to its own fitted score
        if score == "mse":
            s = reconstruction_errors(model, samples, self.device)
        else:
            s = aggregate_errors(
                feature_errors(model, samples, self.device),
                self.feature_scales(weights),
                score,
                self.spec.top_k,
            )
        return s if self.spec.window <= 1 else window_scores_to_records(s, len(rows), self.spec.window)

    def feature_scales(self, weights: list[np.ndarray]) -> np.ndarray:
        """Error scale per feature (``scoring.feature_scales``) of this site's training samples under ``weights``
        (cached)."""
        key = (self._scaler_key, hash(tuple(w.tobytes() for w in weights)))
        if self._scales is None or self._scales[0] != key:
            self._load(weights)  # weights and this site's score calibration (contrastive), never weights alone
            errors = feature_errors(self.configured_model(), self.train_samples, self.device)
            self._scales = (key, feature_scales(errors))
        return self._scales[1]

    def val_loss(self, weights: list[np.ndarray]) -> float:
        """Mean anomaly score of the global model on this site's validation rows."""
        from fedad.common.training import reconstruction_errors

        self._load(weights)
        return float(np.mean(reconstruction_errors(self.configured_model(), self.val_samples, self.device)))

    def save_model(self, path, weights: list[np.ndarray], threshold: float):
        """This site's deployable model: the global weights and threshold with this site's preprocessing."""
        return self.detector(weights, threshold).save(path)

    def detector(self, weights: list[np.ndarray], threshold: float, stream_state: bool = True):
        """An ``AutoencoderDetector`` of the global weights and threshold with this site's preprocessing, on its
        own copy of the model (later rounds do not change it); ``stream_state``: what --rule adaptive needs."""
        import copy

        from fedad.common.detector import AutoencoderDetector

        det = AutoencoderDetector(
            model=self.spec.model,
            window=self.spec.window,
            seed=self.spec.seed,
            threshold_quantile=self.spec.threshold_quantile,
            score=self.spec.score,
            top_k=self.spec.top_k,
            threshold_rule=self.spec.threshold_rule,
            target_far=self.spec.target_far,
            preprocessing=dict(self.spec.preprocessing),
            model_sizes=dict(self.spec.sizes),
        )
        self._load(weights)  # the saved centre and scales are this site's
        det.model_ = copy.deepcopy(self.configured_model()).eval()
        det.preprocessor_, det.device_ = copy.deepcopy(self.pre), self.device
        det.n_features_ = det.n_features_in_ = self.n_features
        det.feature_names_, det.threshold_, det.history_ = list(self.data.feature_names), float(threshold), {}
        det.feature_scales_ = self.feature_scales(weights)
        if stream_state:
            from fedad.common.stream_rule import fit_stream_state

            fit_stream_state(det, np.concatenate([self.split.train, self.split.val]))  # `fedad score --rule adaptive`
        return det

    def mean_embedding(self, weights: list[np.ndarray]) -> np.ndarray:
        """Mean latent code of the local training data under the global encoder (for trust weighting)."""
        from fedad.common.training import mean_embedding, set_weights

        model = self.configured_model()
        set_weights(model, weights)
        return mean_embedding(model, self.train_samples, self.device)

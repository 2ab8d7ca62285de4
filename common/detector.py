"""``AutoencoderDetector``: preprocessing + autoencoder + threshold behind the scikit-learn/PyOD interface."""

from __future__ import annotations

import inspect
import json
import math
import os
import shutil
import tempfile
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch

from fedad.common.errors import FedadError
from fedad.common.models.names import effective_score
from fedad.common.models.registry import MODEL_NAMES, build_model, check_n_models, default_window
from fedad.common.preprocessing import Preprocessor, sliding_windows, window_scores_to_records
from fedad.common.scoring import (
    DEFAULT_SCORE,
    DEFAULT_TOP_K,
    aggregate_errors,
    check_score,
    feature_errors,
    feature_scales,
    scales_from_list,
    scales_to_list,
)
from fedad.common.stream_rule import fit_stream_state
from fedad.common.threshold_rule import DEFAULT_RULE, check_rule, expected_far, threshold_by_rule
from fedad.common.training import ProgressFn, calibrate, reconstruction_errors, resolve_device, train_model

FORMAT = "fedad.detector"
FORMAT_VERSION = 1
CONFIG_FILE = "detector.json"
WEIGHTS_FILE = "model.pt"
# records preprocessed and scored per block when preprocessing is row-wise (a few MB: stays in cache)
SCORE_BLOCK_ROWS = 65536
# scores of the last fitting records saved with a model, for the streaming alarm rule's threshold
FIT_SCORES_KEPT = 10000
# n_models="auto": fits of fewer training samples than this (at the default batch of 256, at most 4 optimiser
# steps an epoch) average AUTO_MODELS initialisations; larger fits train one model
AUTO_MODELS_BELOW = 1000
AUTO_MODELS = 5


class AutoencoderDetector:
    """Anomaly detector: scores are reconstruction errors of an autoencoder trained on normal records.

    ``fit(X)`` fits the preprocessing on X, trains on windows (sequence models) or rows, holds out the last
    ``val_fraction`` of the records (time order, as ``fedad.common.split`` does) for early stopping,
    measures each feature's reconstruction error scale on the training part (``feature_scales_``, used by
    the ``score``s of ``fedad.common.scoring``), and sets ``threshold_`` from the validation scores under
    ``threshold_rule`` (``fedad.common.threshold_rule``: the ``threshold_quantile``, or peaks-over-threshold
    at risk ``target_far``). ``decision_function`` gives one score per input record; a sequence model's
    window score is assigned to the record that ends the window. ``fit_scores_`` holds the scores of all
    fitting records (training then validation part, time order) for streaming alarm rules. ``n_models``: K
    initialisations reconstructing as their mean (``fedad.common.models.averaged``); ``"auto"`` takes
    ``AUTO_MODELS`` for fits of fewer than ``AUTO_MODELS_BELOW`` training samples, one otherwise.
    """

    # set by fit (or load): what the adaptive stream rule needs (fedad.common.stream_rule.fit_stream_state)
    drift_ratios_: np.ndarray
    feature_sd_: np.ndarray
    stream_fit_errors_: np.ndarray | None

    def __init__(
        self,
        model: str = "dense",
        window: int | None = None,
        epochs: int = 50,
        batch_size: int = 256,
        lr: float = 1e-3,
        weight_decay: float = 1e-5,
        patience: int | None = 5,
        val_fraction: float = 0.2,
        threshold_quantile: float = 0.99,
        target_far: float | None = None,
        score: str = DEFAULT_SCORE,
        top_k: int = DEFAULT_TOP_K,
        threshold_rule: str = DEFAULT_RULE,
        device: str = "auto",
        seed: int = 0,
        preprocessing: dict[str, Any] | None = None,
        model_sizes: dict[str, Any] | None = None,
        n_models: int | str = "auto",
    ) -> None:
        self.model = model
        self.window = window
        self.epochs = epochs
        self.batch_size = batch_size
        self.lr = lr
        self.weight_decay = weight_decay
        self.patience = patience
        self.val_fraction = val_fraction
        self.threshold_quantile = threshold_quantile
        self.target_far = target_far
        self.score = effective_score(model, score)  # contrastive scores with its own score
        self.top_k = top_k
        self.threshold_rule = threshold_rule
        self.device = device
        self.seed = seed
        self.preprocessing = preprocessing
        self.model_sizes = model_sizes
        self.n_models = n_models

    # ----------------------------------------------------------------- scikit-learn plumbing
    def get_params(self, deep: bool = True) -> dict[str, Any]:
        """Constructor parameters."""
        names = inspect.signature(type(self).__init__).parameters
        return {name: getattr(self, name) for name in names if name != "self"}

    def set_params(self, **params: Any) -> AutoencoderDetector:
        """Set constructor parameters (takes effect at the next ``fit``)."""
        valid = self.get_params()
        for key, value in params.items():
            if key not in valid:
                raise ValueError(f"unknown parameter {key!r} for {type(self).__name__}")
            setattr(self, key, value)
        return self

    def __repr__(self) -> str:
        return f"{type(self).__name__}({', '.join(f'{k}={v!r}' for k, v in self.get_params().items())})"

    @property
    def window_(self) -> int:
        """Records per model sample of the fitted model."""
        self._check_fitted()
        return self.model_.window

    # ----------------------------------------------------------------- fitting
    def fit(
        self,
        X: Any,
        feature_names: Sequence[str] | None = None,
        progress: ProgressFn | None = None,
        X_val: Any | None = None,
    ) -> AutoencoderDetector:
        """Train on the records X (n, d), assumed normal and in time order.

        ``X_val``: validation records given explicitly (e.g. pooled from several sites' own validation
        parts); X is then used whole for training and preprocessing, and ``val_fraction`` is not applied.
        ``progress(epoch, epochs, train_loss, val_loss)`` is called after each epoch.
        """
        self._check_params()
        X = _as_records(X)
        n, d = X.shape
        if feature_names is not None and len(feature_names) != d:
            raise FedadError(f"{len(feature_names)} feature names for {d} features")
        window = default_window(self.model) if self.window is None else int(self.window)
        device = resolve_device(self.device)
        torch.manual_seed(self.seed)
        sizes = {k: v for k, v in (self.model_sizes or {}).items() if k != "n_models"}  # n_models decides that
        model = build_model(self.model, d, window=window, **sizes)
        pre = Preprocessor(**(self.preprocessing or {}))
        Z = pre.fit_transform(X)
        if X_val is not None:
            V = _as_records(X_val)
            if V.shape[1] != d:
                raise FedadError(f"validation records have {V.shape[1]} features, training records {d}")
            if len(V) < (window if model.sequence else 1) or n < (window if model.sequence else 1):
                raise FedadError(f"too few records ({n} training, {len(V)} validation) for window {window}")
            Z, n = np.concatenate([Z, pre.transform(V)]), n + len(V)
            cut = len(X)
        else:
            cut = self._n_train(n, window, model.sequence)  # training records first, validation records last
        k = self._models_for(cut - (window - 1 if model.sequence else 0))
        if k > 1:  # the same first member, then the next draws of the seeded generator
            torch.manual_seed(self.seed)
            model = build_model(self.model, d, window=window, **sizes, n_models=k)
        if model.sequence:
            train = np.ascontiguousarray(sliding_windows(Z[:cut], window))
            val = np.ascontiguousarray(sliding_windows(Z[cut:], window)) if cut < n else None
        else:
            train, val = Z[:cut], (Z[cut:] if cut < n else None)
        history = train_model(
            model,
            train,
            val,
            epochs=self.epochs,
            batch_size=self.batch_size,
            lr=self.lr,
            weight_decay=self.weight_decay,
            patience=self.patience,
            device=device,
            seed=self.seed,
            progress=progress,
        )
        calibrate(model, train, device)  # scoring statistics of the normal training data (contrastive)
        self.model_ = model
        self.device_ = device
        self.feature_scales_: np.ndarray | None = feature_scales(feature_errors(model, train, device))
        # threshold on per-record scores of held-out records, the same mapping decision_function applies
        held_out = val if val is not None else train
        scores = self._sample_scores(held_out)
        train_scores = self._sample_scores(train)
        if model.sequence:
            scores = window_scores_to_records(scores, len(held_out) + window - 1, window)
            train_scores = window_scores_to_records(train_scores, cut, window)

        self.preprocessor_ = pre
        self.history_ = history
        self.n_features_ = d
        self.n_features_in_ = d
        names = feature_names if feature_names is not None else [f"x{i}" for i in range(d)]
        self.feature_names_ = [str(f) for f in names]
        self.validation_scores_ = scores
        fit_scores = np.concatenate([train_scores, scores]) if val is not None else train_scores
        self.fit_scores_: np.ndarray | None = fit_scores
        self.threshold_ = float(
            threshold_by_rule(scores, self.threshold_rule, self.threshold_quantile, self.target_far)
        )
        fit_stream_state(self, X)  # what the streaming alarm rule (fedad.common.stream_rule) needs
        return self

    @property
    def expected_far_(self) -> float:
        """The false-alarm rate on normal records the threshold rule is set for."""
        return expected_far(self.threshold_rule, self.threshold_quantile, self.target_far)

    def _sample_scores(self, samples: np.ndarray) -> np.ndarray:
        """Scores of model samples (rows or windows) under ``score``."""
        if self.score == "mse":
            return reconstruction_errors(self.model_, samples, self.device_)
        return aggregate_errors(
            feature_errors(self.model_, samples, self.device_), self.feature_scales_, self.score, self.top_k
        )

    def feature_errors(self, X: Any) -> np.ndarray:
        """Squared reconstruction error per record and feature (n, d); sequence models: over the window
        that ends at the record (the first window-1 records get the first window's errors)."""
        self._check_fitted()
        X = self._checked(X)
        Z = self.preprocessor_.transform(X)
        if not self.model_.sequence:
            return feature_errors(self.model_, Z, self.device_)
        w = self.model_.window
        E = feature_errors(self.model_, sliding_windows(Z, w), self.device_)
        out = np.empty((len(Z), Z.shape[1]), dtype=np.float64)
        out[w - 1 :] = E
        out[: w - 1] = E[0]
        return out

    def _models_for(self, samples: int) -> int:
        """How many initialisations ``n_models`` averages for a fit of ``samples`` training samples."""
        if self.n_models != "auto":
            return int(self.n_models)
        return AUTO_MODELS if samples < AUTO_MODELS_BELOW and self.model != "contrastive" else 1

    def _check_params(self) -> None:
        if self.model not in MODEL_NAMES:
            raise FedadError(f"unknown model '{self.model}' (choose from {', '.join(MODEL_NAMES)})")
        check_n_models(self.n_models, self.model, auto=True)
        if not 0.0 <= float(self.val_fraction) < 1.0:
            raise FedadError(f"val_fraction must be in [0, 1), got {self.val_fraction}")
        if self.target_far is None and not 0.0 < float(self.threshold_quantile) <= 1.0:
            raise FedadError(f"threshold quantile must be in (0, 1], got {self.threshold_quantile}")
        if self.target_far is not None and not 0.0 <= float(self.target_far) < 1.0:
            raise FedadError(f"target FAR must be in [0, 1), got {self.target_far}")
        self.score = effective_score(self.model, self.score)  # also after set_params(model=...)
        check_score(self.score, self.top_k)
        check_rule(self.threshold_rule)

    def _n_train(self, n: int, window: int, sequence: bool) -> int:
        """Number of leading training records; the validation part is the last ``val_fraction`` of the
        records, in time order (the convention of ``fedad.common.split``; no window straddles the two)."""
        n_val = max(1, int(round(n * float(self.val_fraction)))) if self.val_fraction else 0
        need = 1
        if sequence:
            n_val = max(n_val, window) if n_val else 0
            need = window
        if n - n_val < need:
            what = f"window {window}" if sequence else "training and validation"
            least = need * 2 if n_val else need
            raise FedadError(f"too few records ({n}) for {what}: need at least {least}")
        return n - n_val

    # ----------------------------------------------------------------- scoring
    def decision_function(self, X: Any) -> np.ndarray:
        """Anomaly score per record of X (n, d), float64 (n,); higher is more anomalous."""
        self._check_fitted()
        X = self._checked(X)
        window = self.model_.window
        if self.score != "mse":
            return aggregate_errors(self.feature_errors(X), self.feature_scales_, self.score, self.top_k)
        if not self.model_.sequence and self._rowwise_preprocessing():
            # block by block, so each block's preprocessed rows are still in cache when the model reads them
            out = np.empty(len(X), dtype=np.float64)
            for start in range(0, len(X), SCORE_BLOCK_ROWS):
                Z = self.preprocessor_.transform(X[start : start + SCORE_BLOCK_ROWS])
                out[start : start + len(Z)] = reconstruction_errors(self.model_, Z, self.device_)
            return out
        Z = self.preprocessor_.transform(X)
        if not self.model_.sequence:
            return reconstruction_errors(self.model_, Z, self.device_)
        scores = reconstruction_errors(self.model_, sliding_windows(Z, window), self.device_)
        return window_scores_to_records(scores, len(X), window)

    def _checked(self, X: Any) -> np.ndarray:
        X = _as_records(X)
        if X.shape[1] != self.n_features_:
            raise FedadError(f"the model takes {self.n_features_} features, the data has {X.shape[1]}")
        if self.model_.sequence and len(X) < self.model_.window:
            raise FedadError(f"too few records ({len(X)}) to score with window {self.model_.window}")
        return X

    def _rowwise_preprocessing(self) -> bool:
        """True when each record is preprocessed on its own (no detrending or denoising across records)."""
        pre = self.preprocessor_
        return pre.detrend is None and pre.denoise is None

    def predict(self, X: Any) -> np.ndarray:
        """1 for records scored above ``threshold_``, else 0; int8 (n,)."""
        return (self.decision_function(X) > self.threshold_).astype(np.int8)

    def _check_fitted(self) -> None:
        if not hasattr(self, "model_"):
            raise RuntimeError(f"{type(self).__name__} is not fitted; call fit(X) or load(dir) first")

    # ----------------------------------------------------------------- persistence
    def save(self, path: str | os.PathLike) -> Path:
        """Write ``detector.json`` + ``model.pt`` into the directory ``path``, replacing it as a whole.

        The files are written to a temporary sibling directory that is then renamed into place, so a reader
        never sees a half-written model. An existing ``path`` must be a model directory (or empty).
        """
        self._check_fitted()
        from fedad.common.outputs import staging_dir

        target, tmp = staging_dir(path)  # an ensemble is replaced too
        try:
            (tmp / CONFIG_FILE).write_text(json.dumps(self._config(), indent=2, allow_nan=False) + "\n")
            state = {k: v.detach().cpu() for k, v in self.model_.state_dict().items()}
            torch.save(state, tmp / WEIGHTS_FILE)
            mask = os.umask(0)
            os.umask(mask)
            os.chmod(tmp, 0o777 & ~mask)  # mkdtemp makes it owner-only
            _replace_dir(tmp, target)
        except BaseException:
            shutil.rmtree(tmp, ignore_errors=True)
            raise
        return target

    def _config(self) -> dict[str, Any]:
        params = self.get_params()
        params["window"] = self.model_.window
        params["model_sizes"] = self.model_.config()
        return {
            "format": FORMAT,
            "format_version": FORMAT_VERSION,
            "model": self.model,
            "n_features": self.n_features_,
            "window": self.model_.window,
            "model_sizes": self.model_.config(),
            "feature_names": self.feature_names_,
            "threshold": _finite_or_none(self.threshold_),
            "expected_far": self.expected_far_,
            "feature_scales": scales_to_list(getattr(self, "feature_scales_", None)),
            "fit_scores": _score_tail(getattr(self, "fit_scores_", None)),
            "stream": self._stream_state(),
            "params": params,
            "preprocessing": self.preprocessor_.to_dict(),
            "history": {
                k: [_finite_or_none(v) for v in vs] if isinstance(vs, list) else vs for k, vs in self.history_.items()
            },
        }

    def _stream_state(self) -> dict[str, Any] | None:
        errors = getattr(self, "stream_fit_errors_", None)
        if errors is None:
            return None
        return {
            "drift_ratios": [float(v) for v in self.drift_ratios_],
            "feature_sd": [float(v) for v in self.feature_sd_],
            "fit_errors": [[float(f"{v:.6g}") for v in row] for row in errors],
        }

    @classmethod
    def load(cls, path: str | os.PathLike, device: str | None = None) -> AutoencoderDetector:
        """A fitted detector from a directory written by ``save``, on ``device`` (None: auto)."""
        root = Path(path)
        if not root.is_dir():
            raise FedadError(f"model directory not found: {root}")
        config_path, weights_path = root / CONFIG_FILE, root / WEIGHTS_FILE
        for p in (config_path, weights_path):
            if not p.is_file():
                raise FedadError(f"{root} is not a fedad model directory: {p.name} is missing")
        try:
            cfg = json.loads(config_path.read_text())
        except (json.JSONDecodeError, UnicodeDecodeError) as exc:
            raise FedadError(f"{config_path} is not valid JSON: {exc}") from None
        if not isinstance(cfg, dict) or cfg.get("format") != FORMAT:
            raise FedadError(f"{config_path} is not a fedad detector file")
        if cfg.get("format_version") != FORMAT_VERSION:
            raise FedadError(
                f"{config_path}: unsupported format version {cfg.get('format_version')!r} "
                f"(this fedad reads version {FORMAT_VERSION})"
            )
        try:
            params = dict(cfg["params"])
            name, n_features, window = cfg["model"], int(cfg["n_features"]), int(cfg["window"])
            sizes, feature_names, threshold = dict(cfg["model_sizes"]), list(cfg["feature_names"]), cfg["threshold"]
            preprocessing = cfg["preprocessing"]
        except (KeyError, TypeError, ValueError) as exc:
            raise FedadError(f"{config_path}: missing or bad field {exc}") from None
        if len(feature_names) != n_features:
            raise FedadError(f"{config_path}: {len(feature_names)} feature names for {n_features} features")
        params["device"] = "auto" if device is None else device
        params.setdefault("score", "mse")  # models saved before scores existed
        params.setdefault("threshold_rule", "quantile")
        params.setdefault("n_models", 1)  # models saved before n_models: their re-fits stay one model
        try:
            det = cls(**params)
        except TypeError as exc:
            raise FedadError(f"{config_path}: bad params: {exc}") from None
        model = build_model(name, n_features, window=window, **sizes)
        try:
            state = torch.load(weights_path, map_location="cpu", weights_only=True)
            model.load_state_dict(state)
        except Exception as exc:  # corrupt file, foreign pickle, wrong keys or shapes
            raise FedadError(f"cannot load model weights {weights_path}: {str(exc).splitlines()[0]}") from None
        det.device_ = resolve_device(det.device)
        det.model_ = model.to(det.device_).eval()
        det.preprocessor_ = Preprocessor.from_dict(preprocessing)
        det.n_features_ = det.n_features_in_ = n_features
        det.feature_names_ = [str(f) for f in feature_names]
        try:
            det.threshold_ = math.inf if threshold is None else float(threshold)
        except (TypeError, ValueError):
            raise FedadError(f"{config_path}: missing or bad field 'threshold' ({threshold!r})") from None
        det.history_ = cfg.get("history") or {}
        det.feature_scales_ = scales_from_list(cfg.get("feature_scales"), n_features)
        if det.score != "mse" and det.feature_scales_ is None:
            raise FedadError(f"{config_path}: score {det.score!r} needs feature_scales")
        fit_scores = cfg.get("fit_scores")
        det.fit_scores_ = None if fit_scores is None else np.asarray(fit_scores, dtype=np.float64)
        stream = cfg.get("stream")
        det.stream_fit_errors_ = None
        if isinstance(stream, dict):
            try:
                det.drift_ratios_ = np.asarray(stream["drift_ratios"], dtype=np.float64).reshape(n_features)
                det.feature_sd_ = np.asarray(stream["feature_sd"], dtype=np.float64).reshape(n_features)
                det.stream_fit_errors_ = np.asarray(stream["fit_errors"], dtype=np.float64).reshape(-1, n_features)
            except (KeyError, TypeError, ValueError) as exc:
                raise FedadError(f"{config_path}: bad stream state: {exc}") from None
        return det


def _as_records(X: Any) -> np.ndarray:
    """X as a float64 (n, d) array with n >= 1; FedadError otherwise."""
    try:
        arr = np.asarray(X, dtype=np.float64)
    except (TypeError, ValueError) as exc:
        raise FedadError(f"records must be numeric: {exc}") from None
    if arr.ndim != 2 or arr.shape[0] == 0 or arr.shape[1] == 0:
        raise FedadError(f"expected a non-empty 2-D array (records x features), got shape {arr.shape}")
    return arr


def _score_tail(scores: np.ndarray | None, keep: int = FIT_SCORES_KEPT) -> list[float] | None:
    """The last ``keep`` fitting-record scores as a JSON list (what a streaming rule needs at scoring time)."""
    return None if scores is None else [float(v) for v in np.asarray(scores)[-keep:]]


def _finite_or_none(value: Any) -> Any:
    return value if not isinstance(value, float) or math.isfinite(value) else None


def _replace_dir(src: Path, dst: Path) -> None:
    """Rename ``src`` to ``dst``; an existing ``dst`` is moved aside first and removed afterwards."""
    if not dst.exists():
        os.replace(src, dst)
        return
    old = Path(tempfile.mkdtemp(prefix=f".{dst.name}.old-", dir=dst.parent))
    os.replace(dst, old / dst.name)
    try:
        os.replace(src, dst)
    except BaseException:
        os.replace(old / dst.name, dst)
        raise
    finally:
        shutil.rmtree(old, ignore_errors=True)

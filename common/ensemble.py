"""``EnsembleDetector``: fedad's autoencoders and classical baselines combined into one rank-normalised score.

``fit(X)`` holds out the last ``val_fraction`` of the records (time order, ``AutoencoderDetector``'s
convention; at least one window when a member is a sequence model) and fits every member on the leading
part: autoencoders with that part as their explicit validation records (early stopping), baselines on the
training part alone. Each member's score is then rank-normalised through the empirical CDF of its scores
on the validation rows: r(s) = #{validation scores <= s} / n_val, so validation rows map into [0, 1]
monotonically; above the largest validation score s_max the map goes on linearly,
1 + (s - s_max) / (s_max - median), so that records beyond everything seen keep their order and the
ensemble can exceed any threshold set on validation rows. The ensemble score of a record is the mean of its
members' normalised scores (members in name order, so the order they are given in does not matter), and
``threshold_`` is the project's threshold rule (``fedad.common.threshold_rule``: pot at ``target_far`` by
default, or the ``threshold_quantile``) applied to the ensemble scores of the validation rows.

Sequence members already give one score per record (a window's score goes to the record that ends it), so
all members align row by row. ``save(dir)`` writes ``ensemble.json`` (members, parameters, each member's
sorted validation scores, threshold) and one subdirectory per member under ``members/``: an autoencoder's
``detector.json`` + ``model.pt``, a baseline's ``baseline.json`` (``fedad.common.baseline_state``: JSON
arrays, no pickle); baselines score through that JSON state from ``fit`` on, so a loaded ensemble scores
exactly as the fitted one. Local use only (`fedad train --model ensemble`): federated training of an
ensemble is out of scope.
"""

from __future__ import annotations

import inspect
import json
import math
import os
import shutil
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from fedad.common.baselines import BASELINES, BaselineDetector
from fedad.common.errors import FedadError
from fedad.common.models.names import DEFAULT_WINDOW, MODEL_NAMES
from fedad.common.scoring import DEFAULT_SCORE, DEFAULT_TOP_K
from fedad.common.threshold_rule import DEFAULT_RULE, check_rule, expected_far, threshold_by_rule

FORMAT = "fedad.ensemble"
FORMAT_VERSION = 1
CONFIG_FILE = "ensemble.json"
MEMBERS_DIR = "members"
BASELINE_FILE = "baseline.json"
DEFAULT_MEMBERS: tuple[str, ...] = ("dense", "iforest")
MEMBER_NAMES: tuple[str, ...] = tuple(MODEL_NAMES) + tuple(BASELINES)


def check_members(members: Iterable[str] | str) -> tuple[str, ...]:
    """Member names validated (a comma-separated string or a sequence), in name order; FedadError otherwise."""
    names = [m.strip() for m in members.split(",")] if isinstance(members, str) else [str(m) for m in members]
    unknown = [m for m in names if m not in MEMBER_NAMES]
    if unknown:
        raise FedadError(f"unknown ensemble member {unknown[0]!r} (choose from {', '.join(MEMBER_NAMES)})")
    if len(set(names)) != len(names):
        raise FedadError(f"ensemble members repeat a name: {','.join(names)}")
    if len(names) < 2:
        raise FedadError(f"an ensemble needs at least two members, got {','.join(names) or 'none'}")
    return tuple(sorted(names))


def rank_normalise(reference: np.ndarray, scores: np.ndarray) -> np.ndarray:
    """Scores mapped through the empirical CDF of the sorted ``reference`` scores, linear above its maximum."""
    ref = np.asarray(reference, dtype=np.float64)
    s = np.asarray(scores, dtype=np.float64)
    out = np.searchsorted(ref, s, side="right") / len(ref)
    top = float(ref[-1])
    spread = top - float(np.median(ref))
    spread = spread if spread > 0 else max(abs(top), 1.0) * 1e-12
    above = s > top
    out[above] = 1.0 + (s[above] - top) / spread
    return np.where(np.isnan(s), 1.0, out)  # a member that cannot score a record counts it as its worst


class EnsembleDetector:
    """Anomaly detector: mean of rank-normalised member scores (see the module docstring)."""

    def __init__(
        self,
        members: Sequence[str] | str = DEFAULT_MEMBERS,
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
    ) -> None:
        self.members = members
        self.window = window
        self.epochs = epochs
        self.batch_size = batch_size
        self.lr = lr
        self.weight_decay = weight_decay
        self.patience = patience
        self.val_fraction = val_fraction
        self.threshold_quantile = threshold_quantile
        self.target_far = target_far
        self.score = score
        self.top_k = top_k
        self.threshold_rule = threshold_rule
        self.device = device
        self.seed = seed
        self.preprocessing = preprocessing

    def get_params(self, deep: bool = True) -> dict[str, Any]:
        """Constructor parameters."""
        return {k: getattr(self, k) for k in _PARAMS}

    def __repr__(self) -> str:
        return f"{type(self).__name__}({', '.join(f'{k}={v!r}' for k, v in self.get_params().items())})"

    @property
    def expected_far_(self) -> float:
        """The false-alarm rate on normal records the threshold rule is set for."""
        return expected_far(self.threshold_rule, self.threshold_quantile, self.target_far)

    # ----------------------------------------------------------------- fitting
    def fit(self, X: Any, feature_names: Sequence[str] | None = None, progress: Any = None) -> EnsembleDetector:
        """Fit every member on the leading records of X (normal, time order) and rank on the held-out rest.

        ``progress(epoch, epochs, train_loss, val_loss)`` is passed to the autoencoder members.
        """
        from fedad.common.detector import _as_records

        names = check_members(self.members)
        check_rule(self.threshold_rule)
        if not 0.0 < float(self.val_fraction) < 1.0:
            raise FedadError(
                f"an ensemble needs validation rows: val_fraction must be in (0, 1), got {self.val_fraction}"
            )
        X = _as_records(X)
        n, d = X.shape
        if feature_names is not None and len(feature_names) != d:
            raise FedadError(f"{len(feature_names)} feature names for {d} features")
        need = max(self._window(m) for m in names)
        n_val = max(need, int(round(n * float(self.val_fraction))), 2)
        if n - n_val < max(need, 2):
            raise FedadError(
                f"too few records ({n}) for an ensemble of {','.join(names)}: need at least {n_val + max(need, 2)}"
            )
        train, val = X[: n - n_val], X[n - n_val :]
        fitted: dict[str, Any] = {}
        for name in names:
            fitted[name] = self._fit_member(name, train, val, progress)
        self.members_ = fitted
        self.reference_ = {name: np.sort(det.decision_function(val)) for name, det in fitted.items()}
        self.n_features_ = self.n_features_in_ = d
        names_ = feature_names if feature_names is not None else [f"x{i}" for i in range(d)]
        self.feature_names_ = [str(f) for f in names_]
        self.validation_scores_ = self.decision_function(val)
        self.threshold_ = float(
            threshold_by_rule(self.validation_scores_, self.threshold_rule, self.threshold_quantile, self.target_far)
        )
        return self

    def _window(self, name: str) -> int:
        if name not in DEFAULT_WINDOW or DEFAULT_WINDOW[name] == 1:
            return 1
        return int(self.window) if self.window is not None else DEFAULT_WINDOW[name]

    def _fit_member(self, name: str, train: np.ndarray, val: np.ndarray, progress: Any) -> Any:
        if name in BASELINES:
            from fedad.common.baseline_state import baseline_from_state, baseline_state

            cls = BASELINES[name]
            kwargs = {"seed": self.seed} if "seed" in inspect.signature(cls).parameters else {}
            det: BaselineDetector = cls(**kwargs).fit(train)
            # score through the JSON state from now on, so a saved and loaded ensemble scores exactly alike
            return baseline_from_state(json.loads(json.dumps(baseline_state(det))))
        from fedad.common.detector import AutoencoderDetector

        ae = AutoencoderDetector(
            model=name,
            window=self.window if self._window(name) > 1 else None,
            epochs=self.epochs,
            batch_size=self.batch_size,
            lr=self.lr,
            weight_decay=self.weight_decay,
            patience=self.patience,
            threshold_quantile=self.threshold_quantile,
            target_far=self.target_far,
            score=self.score,
            top_k=self.top_k,
            threshold_rule=self.threshold_rule,
            device=self.device,
            seed=self.seed,
            preprocessing=self.preprocessing,
            n_models=1,  # the ensemble combines its members; each autoencoder member is one model
        )
        return ae.fit(train, progress=progress, X_val=val)

    # ----------------------------------------------------------------- scoring
    def member_scores(self, X: Any) -> dict[str, np.ndarray]:
        """Each member's rank-normalised score per record, {name: (n,)}."""
        self._check_fitted()
        from fedad.common.detector import _as_records

        X = _as_records(X)
        if X.shape[1] != self.n_features_:
            raise FedadError(f"the model takes {self.n_features_} features, the data has {X.shape[1]}")
        return {
            name: rank_normalise(self.reference_[name], det.decision_function(X)) for name, det in self.members_.items()
        }

    def decision_function(self, X: Any) -> np.ndarray:
        """Ensemble score per record: the mean of the members' rank-normalised scores; higher is more anomalous."""
        parts = self.member_scores(X)
        total = np.zeros(len(next(iter(parts.values()))), dtype=np.float64)
        for name in sorted(parts):
            total += parts[name]
        return total / len(parts)

    def predict(self, X: Any) -> np.ndarray:
        """1 for records scored above ``threshold_``, else 0; int8 (n,)."""
        return (self.decision_function(X) > self.threshold_).astype(np.int8)

    def _check_fitted(self) -> None:
        if not hasattr(self, "members_"):
            raise RuntimeError(f"{type(self).__name__} is not fitted; call fit(X) or load(dir) first")

    # ----------------------------------------------------------------- persistence
    def save(self, path: str | os.PathLike) -> Path:
        """Write ``ensemble.json`` + ``members/<name>/`` into ``path``, replacing it as a whole (temporary
        sibling directory renamed into place)."""
        from fedad.common.baseline_state import baseline_state
        from fedad.common.detector import _replace_dir

        self._check_fitted()
        from fedad.common.outputs import staging_dir

        target, tmp = staging_dir(path)
        try:
            for name, det in self.members_.items():
                sub = tmp / MEMBERS_DIR / name
                if name in BASELINES:
                    sub.mkdir(parents=True)
                    (sub / BASELINE_FILE).write_text(json.dumps(baseline_state(det), allow_nan=False) + "\n")
                else:
                    det.save(sub)
            (tmp / CONFIG_FILE).write_text(json.dumps(self._config(), indent=2, allow_nan=False) + "\n")
            mask = os.umask(0)
            os.umask(mask)
            for p in [tmp, *(q for q in tmp.rglob("*") if q.is_dir())]:
                os.chmod(p, 0o777 & ~mask)  # mkdtemp makes them owner-only
            _replace_dir(tmp, target)
        except BaseException:
            shutil.rmtree(tmp, ignore_errors=True)
            raise
        return target

    def _config(self) -> dict[str, Any]:
        params = self.get_params()
        params["members"] = list(self.members_)
        return {
            "format": FORMAT,
            "format_version": FORMAT_VERSION,
            "members": list(self.members_),
            "n_features": self.n_features_,
            "feature_names": self.feature_names_,
            "threshold": self.threshold_ if math.isfinite(self.threshold_) else None,
            "expected_far": self.expected_far_,
            "params": params,
            "reference_scores": {name: [float(v) for v in ref] for name, ref in self.reference_.items()},
        }

    @classmethod
    def load(cls, path: str | os.PathLike, device: str | None = None) -> EnsembleDetector:
        """A fitted ensemble from a directory written by ``save``, autoencoders on ``device`` (None: auto)."""
        from fedad.common.baseline_state import baseline_from_state
        from fedad.common.detector import AutoencoderDetector

        root = Path(path)
        config_path = root / CONFIG_FILE
        if not config_path.is_file():
            raise FedadError(f"{root} is not a fedad ensemble directory: {CONFIG_FILE} is missing")
        try:
            cfg = json.loads(config_path.read_text())
        except (json.JSONDecodeError, UnicodeDecodeError) as exc:
            raise FedadError(f"{config_path} is not valid JSON: {exc}") from None
        if not isinstance(cfg, dict) or cfg.get("format") != FORMAT:
            raise FedadError(f"{config_path} is not a fedad ensemble file")
        if cfg.get("format_version") != FORMAT_VERSION:
            raise FedadError(f"{config_path}: unsupported format version {cfg.get('format_version')!r}")
        try:
            params = {k: v for k, v in dict(cfg["params"]).items() if k in _PARAMS}
            names = check_members(cfg["members"])
            n_features, feature_names = int(cfg["n_features"]), [str(f) for f in cfg["feature_names"]]
            reference = {m: np.asarray(cfg["reference_scores"][m], dtype=np.float64) for m in names}
            threshold = cfg["threshold"]
        except (KeyError, TypeError, ValueError) as exc:
            raise FedadError(f"{config_path}: missing or bad field {exc}") from None
        if len(feature_names) != n_features or any(r.ndim != 1 or r.size == 0 for r in reference.values()):
            raise FedadError(f"{config_path}: inconsistent feature names or reference scores")
        params["device"] = "auto" if device is None else device
        det = cls(**params)
        members: dict[str, Any] = {}
        for name in names:
            sub = root / MEMBERS_DIR / name
            if name in BASELINES:
                file = sub / BASELINE_FILE
                if not file.is_file():
                    raise FedadError(f"{root}: member {name} is missing ({file})")
                try:
                    state = json.loads(file.read_text())
                except (json.JSONDecodeError, UnicodeDecodeError) as exc:
                    raise FedadError(f"{file} is not valid JSON: {exc}") from None
                member: Any = baseline_from_state(state, str(file))
                if member.n_features_in_ != n_features:
                    raise FedadError(f"{file}: {member.n_features_in_} features, the ensemble {n_features}")
            else:
                member = AutoencoderDetector.load(sub, device=device)
                if member.model != name or member.n_features_ != n_features:
                    raise FedadError(f"{sub}: holds a {member.model} model on {member.n_features_} features")
            members[name] = member
        det.members_ = members
        det.reference_ = reference
        det.n_features_ = det.n_features_in_ = n_features
        det.feature_names_ = feature_names
        det.threshold_ = math.inf if threshold is None else float(threshold)
        return det


_PARAMS: tuple[str, ...] = tuple(p for p in inspect.signature(EnsembleDetector.__init__).parameters if p != "self")


def is_model_dir(path: Path) -> bool:
    """True when ``path`` holds a saved fedad model (autoencoder or ensemble)."""
    from fedad.common.detector import CONFIG_FILE as DETECTOR_FILE

    return (path / CONFIG_FILE).is_file() or (path / DETECTOR_FILE).is_file()


def load_model(path: str | os.PathLike, device: str | None = None) -> Any:
    """The detector saved in ``path``: an ``EnsembleDetector`` when it holds ``ensemble.json``, else an
    ``AutoencoderDetector``."""
    if (Path(path) / CONFIG_FILE).is_file():
        return EnsembleDetector.load(path, device=device)
    from fedad.common.detector import AutoencoderDetector

    return AutoencoderDetector.load(path, device=device)

"""Record preprocessing (seed paper §3.3): impute -> clip -> detrend -> denoise -> scale, plus windowing.

Every step is fitted on training data only. For federation the scaler is split off: a client fits the local
steps (``fit_local``), sends ``local_scaler_stats(X)`` (counts, sums, sums of squares, min, max — no rows),
the server merges them with ``ScalerStats.merge`` and every client calls ``set_scaler_stats(merged)``.
Standard and min-max scaling are fully determined by those merged statistics.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd

from fedad.common.errors import FedadError

SCALERS = ("standard", "minmax", "none")
DETRENDS = (None, "diff", "ma")
DENOISES = (None, "ma", "median")
IMPUTES = ("knn", None)

# The KNN reference set is kept small so that it serialises into detector.json and imputation stays fast.
KNN_REFERENCE_MAX_ROWS = 2000
_REFERENCE_SEED = 0
_FORMAT = "fedad.preprocessor"
_FORMAT_VERSION = 1


def _as_2d(X: Any, what: str = "X") -> np.ndarray:
    """``X`` as a float64 (n, d) array (no copy when it already is one); FedadError otherwise."""
    try:
        arr = np.asarray(X, dtype=np.float64)
    except (TypeError, ValueError) as exc:
        raise FedadError(f"{what} must be numeric: {exc}") from None
    if arr.ndim != 2:
        raise FedadError(f"{what} must be a 2-D array (records x features), got {arr.ndim}-D shape {arr.shape}")
    return arr


def _nan_mask_or_none(X: np.ndarray, what: str = "X") -> np.ndarray | None:
    """Row-wise NaN mask, or None when every value is finite; infinities are rejected."""
    finite = np.isfinite(X)
    if finite.all():
        return None
    nan = np.isnan(X)
    if (~finite & ~nan).any():
        raise FedadError(f"{what} contains infinite values; replace them with NaN (missing) or finite numbers")
    return nan


def _floats(a: np.ndarray) -> list[float | None]:
    """JSON-able list: finite floats as float, NaN/inf as None."""
    return [float(v) if math.isfinite(v) else None for v in np.asarray(a, dtype=np.float64).ravel()]


def _array(values: Any, name: str, none_as: float = np.nan) -> np.ndarray:
    try:
        return np.array([none_as if v is None else v for v in values], dtype=np.float64)
    except (TypeError, ValueError):
        raise FedadError(f"preprocessing state: '{name}' must be a list of numbers") from None


@dataclass(eq=False)
class ScalerStats:
    """Per-feature sufficient statistics for standard and min-max scaling; what clients share instead of rows.

    ``count`` is the number of rows; ``feature_count`` the per-feature number of non-NaN values (equal to
    ``count`` when there are no NaNs, filled in automatically when omitted). Min/max of a feature without
    values are +inf/-inf, the identities of ``merge``.
    """

    count: int
    sum: np.ndarray
    sumsq: np.ndarray
    min: np.ndarray
    max: np.ndarray
    # None (the default) means `count` values in every feature; __post_init__ always replaces it with an array
    feature_count: np.ndarray = field(default=None)  # type: ignore[arg-type]

    def __post_init__(self) -> None:
        self.count = int(self.count)
        for name in ("sum", "sumsq", "min", "max"):
            setattr(self, name, np.asarray(getattr(self, name), dtype=np.float64).reshape(-1))
        d = self.sum.shape[0]
        if any(getattr(self, n).shape[0] != d for n in ("sumsq", "min", "max")):
            raise FedadError("scaler statistics: sum, sumsq, min and max must have one value per feature")
        if self.feature_count is None:
            self.feature_count = np.full(d, self.count, dtype=np.int64)
        else:
            self.feature_count = np.asarray(self.feature_count, dtype=np.int64).reshape(-1)
            if self.feature_count.shape[0] != d:
                raise FedadError("scaler statistics: feature_count must have one value per feature")
        if self.count < 0 or (self.feature_count < 0).any() or (self.feature_count > self.count).any():
            raise FedadError("scaler statistics: counts must be non-negative and feature counts <= count")

    @property
    def n_features(self) -> int:
        return int(self.sum.shape[0])

    @classmethod
    def from_data(cls, X: Any) -> ScalerStats:
        """Statistics of the rows of ``X`` (n, d), ignoring NaNs."""
        X = _as_2d(X)
        n, d = X.shape
        nan = _nan_mask_or_none(X)
        if nan is None:
            if n == 0:
                return cls(0, np.zeros(d), np.zeros(d), np.full(d, np.inf), np.full(d, -np.inf))
            return cls(n, X.sum(axis=0), np.einsum("ij,ij->j", X, X), X.min(axis=0), X.max(axis=0))
        valid = ~nan
        Xz = np.where(valid, X, 0.0)
        return cls(
            count=n,
            sum=Xz.sum(axis=0),
            sumsq=np.einsum("ij,ij->j", Xz, Xz),
            min=np.where(valid, X, np.inf).min(axis=0),
            max=np.where(valid, X, -np.inf).max(axis=0),
            feature_count=valid.sum(axis=0),
        )

    @classmethod
    def merge(cls, stats_list: list[ScalerStats]) -> ScalerStats:
        """Statistics of the union of the shards that ``stats_list`` describe."""
        stats_list = list(stats_list)
        if not stats_list:
            raise FedadError("cannot merge an empty list of scaler statistics")
        d = stats_list[0].n_features
        if any(s.n_features != d for s in stats_list):
            got = sorted({s.n_features for s in stats_list})
            raise FedadError(f"cannot merge scaler statistics with different feature counts: {got}")
        return cls(
            count=sum(s.count for s in stats_list),
            sum=np.sum([s.sum for s in stats_list], axis=0),
            sumsq=np.sum([s.sumsq for s in stats_list], axis=0),
            min=np.min([s.min for s in stats_list], axis=0),
            max=np.max([s.max for s in stats_list], axis=0),
            feature_count=np.sum([s.feature_count for s in stats_list], axis=0),
        )

    def mean(self) -> np.ndarray:
        """Per-feature mean (0 for a feature without values)."""
        fc = self.feature_count.astype(np.float64)
        return np.divide(self.sum, fc, out=np.zeros_like(self.sum), where=fc > 0)

    def std(self) -> np.ndarray:
        """Per-feature population std from count/sum/sumsq; 1 where it is zero (or lost to rounding)."""
        fc = self.feature_count.astype(np.float64)
        mean_sq = np.divide(self.sumsq, fc, out=np.zeros_like(self.sumsq), where=fc > 0)
        var = mean_sq - self.mean() ** 2
        # sumsq/n - mean^2 cancels: anything within the rounding error of sumsq/n is a constant feature.
        var[var <= 64 * np.finfo(np.float64).eps * mean_sq] = 0.0
        std = np.sqrt(np.maximum(var, 0.0))
        std[std == 0.0] = 1.0
        return std

    def to_dict(self) -> dict[str, Any]:
        """JSON-able form (non-finite min/max as None)."""
        return {
            "count": self.count,
            "feature_count": [int(c) for c in self.feature_count],
            "sum": _floats(self.sum),
            "sumsq": _floats(self.sumsq),
            "min": _floats(self.min),
            "max": _floats(self.max),
        }

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> ScalerStats:
        """Inverse of ``to_dict``."""
        try:
            return cls(
                count=d["count"],
                sum=_array(d["sum"], "sum"),
                sumsq=_array(d["sumsq"], "sumsq"),
                min=_array(d["min"], "min", none_as=np.inf),
                max=_array(d["max"], "max", none_as=-np.inf),
                feature_count=d.get("feature_count"),  # type: ignore[arg-type]  # None: count in every feature
            )
        except (KeyError, TypeError) as exc:
            raise FedadError(f"malformed scaler statistics: missing or bad field {exc}") from None


def _causal_rolling(X: np.ndarray, window: int, how: str) -> np.ndarray:
    """Mean or median over the last ``window`` rows including the current one (fewer at the start)."""
    if window == 1:
        return X
    rolling = pd.DataFrame(X, copy=False).rolling(window, min_periods=1)
    out = rolling.mean() if how == "mean" else rolling.median()
    return out.to_numpy(dtype=np.float64)


class Preprocessor:
    """impute -> clip -> detrend -> denoise -> scale; each step fitted on training data only.

    - impute="knn": sklearn KNNImputer on a standardised reference sample (at most
      ``KNN_REFERENCE_MAX_ROWS`` training rows), applied only to rows that contain NaN. Without the reference
      set (``to_dict(include_local=False)``) NaNs are filled with the training column means. With
      impute=None NaNs pass through (and propagate through detrend/denoise/scale).
    - clip_quantile=q: clip each feature to the [q, 1-q] quantiles of the (imputed) training data.
    - detrend="diff": first difference, first row 0; "ma": subtract the causal moving average of the last
      ``detrend_window`` rows. Both are stateless: a transformed block starts afresh.
    - denoise="ma"|"median": causal moving mean/median over the last ``denoise_window`` rows.
    - scaler: "standard" (population mean/std), "minmax" (to [0, 1] on the training range) or "none",
      determined by ``ScalerStats`` so merged federated statistics scale exactly like pooled data.
    """

    def __init__(
        self,
        scaler: str = "standard",
        detrend: str | None = None,
        detrend_window: int = 60,
        denoise: str | None = None,
        denoise_window: int = 5,
        impute: str | None = "knn",
        knn_neighbors: int = 5,
        clip_quantile: float | None = None,
    ) -> None:
        self.scaler = scaler
        self.detrend = detrend
        self.detrend_window = detrend_window
        self.denoise = denoise
        self.denoise_window = denoise_window
        self.impute = impute
        self.knn_neighbors = knn_neighbors
        self.clip_quantile = clip_quantile
        self._validate_params()
        self._reset()

    # ----------------------------------------------------------------- parameters and state
    def _validate_params(self) -> None:
        def choice(name: str, options: tuple) -> None:
            if getattr(self, name) not in options:
                shown = ", ".join("none" if o is None else o for o in options)
                raise FedadError(f"preprocessing: {name} must be one of {shown}, got {getattr(self, name)!r}")

        # "none" spelled as a string (YAML/CLI) means no step
        for name in ("detrend", "denoise", "impute"):
            if isinstance(getattr(self, name), str) and getattr(self, name).lower() in ("none", "null", ""):
                setattr(self, name, None)
        choice("scaler", SCALERS)
        choice("detrend", DETRENDS)
        choice("denoise", DENOISES)
        choice("impute", IMPUTES)
        for name in ("detrend_window", "denoise_window", "knn_neighbors"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 1:
                raise FedadError(f"preprocessing: {name} must be an integer >= 1, got {value!r}")
            setattr(self, name, int(value))
        q = self.clip_quantile
        if q is not None:
            if isinstance(q, bool) or not isinstance(q, (int, float)) or not 0.0 <= q < 0.5:
                raise FedadError(f"preprocessing: clip_quantile must be in [0, 0.5), got {q!r}")
            self.clip_quantile = float(q)

    def _reset(self) -> None:
        self.n_features_: int | None = None
        self.impute_mean_: np.ndarray | None = None
        self.impute_std_: np.ndarray | None = None
        self.impute_reference_: np.ndarray | None = None
        self.clip_low_: np.ndarray | None = None
        self.clip_high_: np.ndarray | None = None
        self.scaler_stats_: ScalerStats | None = None
        self._offset: np.ndarray | None = None
        self._scale: np.ndarray | None = None
        self._imputer = None

    def get_params(self) -> dict[str, Any]:
        """Constructor parameters."""
        return {
            "scaler": self.scaler,
            "detrend": self.detrend,
            "detrend_window": self.detrend_window,
            "denoise": self.denoise,
            "denoise_window": self.denoise_window,
            "impute": self.impute,
            "knn_neighbors": self.knn_neighbors,
            "clip_quantile": self.clip_quantile,
        }

    def __repr__(self) -> str:
        args = ", ".join(f"{k}={v!r}" for k, v in self.get_params().items())
        return f"Preprocessor({args})"

    # ----------------------------------------------------------------- fitting
    def fit(self, X: Any) -> Preprocessor:
        """Fit every step on ``X``; the scaler on the local statistics (== fit_local + set_scaler_stats)."""
        Xp = self._fit_local(X)
        self.set_scaler_stats(ScalerStats.from_data(Xp))
        return self

    def fit_transform(self, X: Any) -> np.ndarray:
        """``fit(X).transform(X)``, float32."""
        Xp = self._fit_local(X)
        self.set_scaler_stats(ScalerStats.from_data(Xp))
        return self._scale_rows(Xp)

    def fit_local(self, X: Any) -> Preprocessor:
        """Fit every step but the scaler (federation: the scaler comes from merged ``ScalerStats``)."""
        self._fit_local(X)
        return self

    def _fit_local(self, X: Any) -> np.ndarray:
        X = _as_2d(X)
        n, d = X.shape
        if n == 0 or d == 0:
            raise FedadError(f"cannot fit preprocessing on empty data (shape {X.shape})")
        nan = _nan_mask_or_none(X)
        if nan is not None:
            empty = np.flatnonzero(nan.all(axis=0))
            if empty.size:
                raise FedadError(
                    f"feature column(s) {empty.tolist()} are entirely missing (NaN) in the training data; "
                    "drop them or select features explicitly"
                )
        self._reset()
        self.n_features_ = d
        if self.impute == "knn":
            self._fit_imputer(X, nan)
            if nan is not None:
                X = self._impute(X, nan)
        if self.clip_quantile is not None:
            low, high = np.nanquantile(X, [self.clip_quantile, 1.0 - self.clip_quantile], axis=0)
            self.clip_low_, self.clip_high_ = low.astype(np.float64), high.astype(np.float64)
        return self._after_impute(X)

    def _fit_imputer(self, X: np.ndarray, nan: np.ndarray | None) -> None:
        if nan is None:
            self.impute_mean_, std = X.mean(axis=0), X.std(axis=0)
        else:
            self.impute_mean_, std = np.nanmean(X, axis=0), np.nanstd(X, axis=0)
        std[~(std > 0)] = 1.0
        self.impute_std_ = std
        n = X.shape[0]
        if n <= KNN_REFERENCE_MAX_ROWS:
            rows = np.arange(n)
        else:
            rows = np.sort(np.random.default_rng(_REFERENCE_SEED).choice(n, KNN_REFERENCE_MAX_ROWS, replace=False))
            if nan is not None:
                # every feature needs donors in the reference set, however sparse it is in the training data
                missing = nan[rows].all(axis=0)
                extra = [np.flatnonzero(~nan[:, j])[: self.knn_neighbors] for j in np.flatnonzero(missing)]
                if extra:
                    rows = np.union1d(rows, np.concatenate(extra))
        self.impute_reference_ = np.array(X[rows], dtype=np.float64)
        self._imputer = None

    # ----------------------------------------------------------------- federation hooks
    def set_scaler_stats(self, stats: ScalerStats) -> Preprocessor:
        """Use ``stats`` (e.g. merged over clients) for the scaler."""
        if not isinstance(stats, ScalerStats):
            raise FedadError(f"set_scaler_stats expects ScalerStats, got {type(stats).__name__}")
        if self.n_features_ is not None and stats.n_features != self.n_features_:
            raise FedadError(
                f"scaler statistics have {stats.n_features} features, preprocessing expects {self.n_features_}"
            )
        empty = np.flatnonzero(stats.feature_count == 0)
        if self.scaler != "none" and empty.size:
            raise FedadError(f"scaler statistics have no values for feature(s) {empty.tolist()}")
        if self.scaler == "standard":
            offset, scale = stats.mean(), stats.std()
        elif self.scaler == "minmax":
            offset, scale = stats.min.copy(), stats.max - stats.min
            scale[~(scale > 0)] = 1.0
        else:
            offset, scale = None, None
        self.scaler_stats_ = stats
        self._offset, self._scale = offset, scale
        if self.n_features_ is None:
            self.n_features_ = stats.n_features
        return self

    def local_scaler_stats(self, X: Any) -> ScalerStats:
        """Statistics of ``prescale(X)``: what a client sends to have the scaler fitted federatedly."""
        return ScalerStats.from_data(self.prescale(X))

    def prescale(self, X: Any) -> np.ndarray:
        """Apply every step but the scaler; float64 (n, d)."""
        if not self._local_fitted():
            raise FedadError("preprocessing is not fitted: call fit() or fit_local() first")
        X = self._check_transform_input(X)
        nan = _nan_mask_or_none(X)
        if self.impute == "knn" and nan is not None:
            X = self._impute(X, nan)
        return self._after_impute(X)

    # ----------------------------------------------------------------- transform
    def transform(self, X: Any) -> np.ndarray:
        """Preprocess ``X`` (n, d) with the fitted steps; float32 (n, d)."""
        if self.scaler != "none" and self._offset is None:
            raise FedadError("preprocessing scaler is not fitted: call fit() or set_scaler_stats() first")
        return self._scale_rows(self.prescale(X))

    def _local_fitted(self) -> bool:
        if self.n_features_ is None:
            return False
        if self.impute == "knn" and self.impute_mean_ is None:
            return False
        return self.clip_quantile is None or self.clip_low_ is not None

    def _check_transform_input(self, X: Any) -> np.ndarray:
        X = _as_2d(X)
        if X.shape[1] != self.n_features_:
            raise FedadError(f"preprocessing expects {self.n_features_} features, got {X.shape[1]}")
        return X

    def _after_impute(self, X: np.ndarray) -> np.ndarray:
        """clip -> detrend -> denoise; never modifies ``X`` in place."""
        if self.clip_low_ is not None:
            X = np.clip(X, self.clip_low_, self.clip_high_)
        if self.detrend == "diff":
            out = np.empty_like(X)
            out[:1] = 0.0
            np.subtract(X[1:], X[:-1], out=out[1:])
            X = out
        elif self.detrend == "ma":
            X = X - _causal_rolling(X, self.detrend_window, "mean")
        if self.denoise is not None:
            X = _causal_rolling(X, self.denoise_window, "mean" if self.denoise == "ma" else "median")
        return X

    def _scale_rows(self, X: np.ndarray) -> np.ndarray:
        if self.scaler == "none":
            return X.astype(np.float32)
        out = X - self._offset
        out /= self._scale
        return out.astype(np.float32)

    def _impute(self, X: np.ndarray, nan: np.ndarray) -> np.ndarray:
        """Fill the NaNs of ``X``; only rows that contain NaN are touched. Returns a new array."""
        assert self.impute_mean_ is not None and self.impute_std_ is not None  # only called once fitted
        out = np.array(X, dtype=np.float64)
        rows = np.flatnonzero(nan.any(axis=1))
        if self.impute_reference_ is not None:
            imputer = self._get_imputer()
            z = (out[rows] - self.impute_mean_) / self.impute_std_
            z = imputer.transform(z)
            out[rows] = z * self.impute_std_ + self.impute_mean_
        # without a reference set (include_local=False), or where KNN found no donor: training column means
        still = np.isnan(out[rows])
        if still.any():
            block = out[rows]
            block[still] = np.broadcast_to(self.impute_mean_, block.shape)[still]
            out[rows] = block
        return out

    def _get_imputer(self):
        if self._imputer is None:
            from sklearn.impute import KNNImputer

            assert self.impute_reference_ is not None  # only called with a reference set
            z = (self.impute_reference_ - self.impute_mean_) / self.impute_std_
            self._imputer = KNNImputer(n_neighbors=self.knn_neighbors, keep_empty_features=True).fit(z)
        return self._imputer

    # ----------------------------------------------------------------- serialisation
    def to_dict(self, include_local: bool = True) -> dict[str, Any]:
        """JSON-able parameters and fitted state (no arrays, no pickle).

        ``include_local=False`` leaves out the KNN reference rows (client-local records); the result still
        loads, and imputation then falls back to the training column means.
        """
        d: dict[str, Any] = {"format": _FORMAT, "version": _FORMAT_VERSION, "params": self.get_params()}
        d["n_features"] = self.n_features_
        d["impute_mean"] = None if self.impute_mean_ is None else _floats(self.impute_mean_)
        d["impute_std"] = None if self.impute_std_ is None else _floats(self.impute_std_)
        if include_local and self.impute_reference_ is not None:
            d["impute_reference"] = [_floats(row) for row in self.impute_reference_]
        d["clip_low"] = None if self.clip_low_ is None else _floats(self.clip_low_)
        d["clip_high"] = None if self.clip_high_ is None else _floats(self.clip_high_)
        d["scaler_stats"] = None if self.scaler_stats_ is None else self.scaler_stats_.to_dict()
        return d

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> Preprocessor:
        """Inverse of ``to_dict``."""
        if not isinstance(d, dict) or d.get("format") != _FORMAT:
            raise FedadError(f"not a fedad preprocessing state (expected format '{_FORMAT}')")
        if d.get("version") != _FORMAT_VERSION:
            raise FedadError(f"unsupported preprocessing state version {d.get('version')!r}")
        params = d.get("params")
        if not isinstance(params, dict):
            raise FedadError("preprocessing state: 'params' must be a mapping")
        try:
            pre = cls(**params)
        except TypeError as exc:
            raise FedadError(f"preprocessing state: bad params: {exc}") from None
        n = d.get("n_features")
        if n is None:
            return pre
        if isinstance(n, bool) or not isinstance(n, int) or n < 1:
            raise FedadError(f"preprocessing state: n_features must be a positive integer, got {n!r}")

        def vector(name: str) -> np.ndarray | None:
            if d.get(name) is None:
                return None
            a = _array(d[name], name)
            if a.shape != (n,) or not np.isfinite(a).all():
                raise FedadError(f"preprocessing state: '{name}' must hold {n} finite numbers")
            return a

        pre.n_features_ = n
        pre.impute_mean_, pre.impute_std_ = vector("impute_mean"), vector("impute_std")
        pre.clip_low_, pre.clip_high_ = vector("clip_low"), vector("clip_high")
        if pre.impute == "knn" and (pre.impute_mean_ is None or pre.impute_std_ is None):
            raise FedadError("preprocessing state: impute='knn' needs 'impute_mean' and 'impute_std'")
        if pre.clip_quantile is not None and (pre.clip_low_ is None or pre.clip_high_ is None):
            raise FedadError("preprocessing state: clip_quantile needs 'clip_low' and 'clip_high'")
        reference = d.get("impute_reference")
        if reference is not None and pre.impute == "knn":
            try:
                ref = np.array([[np.nan if v is None else v for v in row] for row in reference], dtype=np.float64)
            except (TypeError, ValueError):
                raise FedadError("preprocessing state: 'impute_reference' must be a list of rows of numbers") from None
            if ref.ndim != 2 or ref.shape[1] != n or ref.shape[0] == 0:
                raise FedadError(f"preprocessing state: 'impute_reference' must be rows of {n} values")
            pre.impute_reference_ = ref
        if d.get("scaler_stats") is not None:
            pre.set_scaler_stats(ScalerStats.from_dict(d["scaler_stats"]))
        return pre


def sliding_windows(X: Any, window: int) -> np.ndarray:
    """Windows of ``window`` consecutive rows: (n - window + 1, window, d), a read-only view (no copy)."""
    X = np.asarray(X)
    if X.ndim != 2:
        raise FedadError(f"sliding_windows expects a 2-D array (records x features), got shape {X.shape}")
    if isinstance(window, bool) or not isinstance(window, (int, np.integer)) or window < 1:
        raise FedadError(f"window must be an integer >= 1, got {window!r}")
    if window > X.shape[0]:
        raise FedadError(f"window {window} is longer than the data ({X.shape[0]} records)")
    # (n-w+1, d, w) view -> (n-w+1, w, d); still a view, strides only
    return np.lib.stride_tricks.sliding_window_view(X, window, axis=0).transpose(0, 2, 1)


def window_scores_to_records(scores: Any, n: int, window: int) -> np.ndarray:
    """One score per record from one score per window (as made by ``sliding_windows``); float64 (n,).

    Each record gets the score of the window that ends at it (its most recent context, so scoring is causal
    and a streaming detector can emit it when the record arrives); the first window-1 records, which end no
    window, get the first window's score. window=1 is the identity.
    """
    scores = np.asarray(scores, dtype=np.float64).reshape(-1)
    if isinstance(window, bool) or not isinstance(window, (int, np.integer)) or window < 1:
        raise FedadError(f"window must be an integer >= 1, got {window!r}")
    if n < window or scores.shape[0] != n - window + 1:
        raise FedadError(
            f"expected {max(n - window + 1, 0)} window scores for {n} records and window {window}, "
            f"got {scores.shape[0]}"
        )
    out = np.empty(n, dtype=np.float64)
    out[window - 1 :] = scores
    out[: window - 1] = scores[0]
    return out

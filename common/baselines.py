"""Classical baselines from the seed paper, with the detector interface of ``AutoencoderDetector``.

Every baseline takes its parameters in ``__init__`` only; ``fit(X)`` learns from (mostly normal) rows,
``decision_function(X)`` gives one score per row (higher = more anomalous), ``predict(X)`` is
``decision_function(X) > threshold_``. ``threshold_`` is the ``threshold_quantile`` quantile of the
training scores ``decision_scores_`` (``fedad.common.threshold.threshold_from_scores``, the same rule as the
autoencoder detector applies to its validation scores), except for the IQR rule,
whose classic form flags a row when any feature leaves its fences (``threshold_ = 0``).

Missing values (NaN) are filled with the per-feature training median before scoring, so the baselines
accept what ``load_dataset`` returns.
"""

from __future__ import annotations

import warnings
from abc import ABC, abstractmethod

import numpy as np
from sklearn.decomposition import PCA
from sklearn.ensemble import IsolationForest
from sklearn.svm import OneClassSVM

from fedad.common.errors import FedadError
from fedad.common.threshold import threshold_from_scores


class BaselineDetector(ABC):
    """Shared fit/predict plumbing: NaN filling, training scores and the quantile threshold."""

    threshold_quantile: float | None = 0.99

    def fit(self, X: np.ndarray, y: np.ndarray | None = None) -> BaselineDetector:
        """Learn from the rows of X (y is ignored: the baselines are unsupervised)."""
        X = np.asarray(X, dtype=np.float64)
        if X.ndim != 2 or X.shape[0] < 2 or X.shape[1] < 1:
            raise ValueError(f"fit needs a 2-D array with at least 2 rows and 1 feature, got shape {X.shape}")
        q = self.threshold_quantile
        if q is not None and not 0.0 < q <= 1.0:
            raise FedadError(f"threshold_quantile must be in (0, 1], got {q}")
        self.n_features_in_ = X.shape[1]
        finite = np.isfinite(X)
        if finite.all():
            med = np.median(X, axis=0)
        else:
            with warnings.catch_warnings():  # an all-missing column has no median: it is filled with 0
                warnings.simplefilter("ignore", RuntimeWarning)
                med = np.nanmedian(np.where(finite, X, np.nan), axis=0)
        self.fill_values_ = np.nan_to_num(med, nan=0.0)
        X = self._fill(X)
        self._fit(X)
        self.decision_scores_ = self._score(X)
        self.threshold_ = self._threshold(self.decision_scores_)
        return self

    def decision_function(self, X: np.ndarray) -> np.ndarray:
        """Anomaly score per row, higher = more anomalous."""
        self._check_fitted()
        X = np.asarray(X, dtype=np.float64)
        if X.ndim != 2 or X.shape[1] != self.n_features_in_:
            raise ValueError(f"expected an (n, {self.n_features_in_}) array, got shape {X.shape}")
        return self._score(self._fill(X))

    def predict(self, X: np.ndarray) -> np.ndarray:
        """0/1 per row: 1 when the score exceeds ``threshold_``."""
        return (self.decision_function(X) > self.threshold_).astype(np.int8)

    def _threshold(self, train_scores: np.ndarray) -> float:
        return threshold_from_scores(
            train_scores, quantile=0.99 if self.threshold_quantile is None else self.threshold_quantile
        )

    def _fill(self, X: np.ndarray) -> np.ndarray:
        bad = ~np.isfinite(X)
        if bad.any():
            X = np.where(bad, self.fill_values_, X)
        return X

    def _check_fitted(self) -> None:
        if not hasattr(self, "threshold_"):
            raise RuntimeError(f"{type(self).__name__} is not fitted; call fit(X) first")

    @abstractmethod
    def _fit(self, X: np.ndarray) -> None:
        """Fit the detector's model on training rows."""

    @abstractmethod
    def _score(self, X: np.ndarray) -> np.ndarray:
        """Anomaly score per row (higher = more anomalous)."""

    def __repr__(self) -> str:
        params = ", ".join(f"{k}={v!r}" for k, v in vars(self).items() if not k.endswith("_"))
        return f"{type(self).__name__}({params})"


def _standardize_stats(X: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Mean and std per feature; constant features get std 1 so they never divide by zero."""
    mean = X.mean(axis=0)
    std = X.std(axis=0)
    return mean, np.where(std > 1e-12, std, 1.0)


class IQRDetector(BaselineDetector):
    """Per-feature interquartile-range rule (Tukey fences).

    Fences per feature are [Q1 - k*IQR, Q3 + k*IQR] from the training rows. A row's score is the largest,
    over features, distance outside the fences measured in IQR units (0 when every feature is inside).
    A feature with IQR 0 (e.g. a mostly-constant or one-hot column) is measured in units of its standard
    deviation instead, or of 1.0 when that is 0 too. With ``threshold_quantile=None`` (default) the classic
    rule applies: ``threshold_ = 0``, so a row is flagged when any feature is outside its fences; a float
    uses the training-score quantile like the other detectors.
    """

    def __init__(self, k: float = 1.5, threshold_quantile: float | None = None):
        self.k = k
        self.threshold_quantile = threshold_quantile

    def _fit(self, X: np.ndarray) -> None:
        q1, q3 = np.quantile(X, [0.25, 0.75], axis=0)
        iqr = q3 - q1
        std = X.std(axis=0)
        self.unit_ = np.where(iqr > 1e-12, iqr, np.where(std > 1e-12, std, 1.0))
        self.lower_ = q1 - self.k * iqr
        self.upper_ = q3 + self.k * iqr

    def _score(self, X: np.ndarray) -> np.ndarray:
        outside = np.maximum(self.lower_ - X, 0.0) + np.maximum(X - self.upper_, 0.0)
        return (outside / self.unit_).max(axis=1)

    def _threshold(self, train_scores: np.ndarray) -> float:
        return 0.0 if self.threshold_quantile is None else super()._threshold(train_scores)


class IsolationForestDetector(BaselineDetector):
    """scikit-learn Isolation Forest; score = minus its ``score_samples`` (higher = easier to isolate)."""

    def __init__(
        self,
        n_estimators: int = 100,
        max_samples: int | str = "auto",
        threshold_quantile: float = 0.99,
        seed: int = 0,
        n_jobs: int | None = None,
    ):
        self.n_estimators = n_estimators
        self.max_samples = max_samples
        self.threshold_quantile = threshold_quantile
        self.seed = seed
        self.n_jobs = n_jobs

    def _fit(self, X: np.ndarray) -> None:
        self.model_ = IsolationForest(
            n_estimators=self.n_estimators, max_samples=self.max_samples, random_state=self.seed, n_jobs=self.n_jobs
        ).fit(X)

    def _score(self, X: np.ndarray) -> np.ndarray:
        return -self.model_.score_samples(X)


class OneClassSVMDetector(BaselineDetector):
    """RBF One-Class SVM on standardised features, trained on at most ``max_train_rows`` random rows.

    Kernel SVM training is quadratic in rows, so larger training sets are subsampled (seeded) for speed;
    ``decision_scores_`` and ``threshold_`` still come from all training rows.
    Score = minus the SVM's decision function (positive outside the learned support).
    """

    def __init__(
        self,
        nu: float = 0.05,
        gamma: str | float = "scale",
        max_train_rows: int = 5000,
        threshold_quantile: float = 0.99,
        seed: int = 0,
    ):
        self.nu = nu
        self.gamma = gamma
        self.max_train_rows = max_train_rows
        self.threshold_quantile = threshold_quantile
        self.seed = seed

    def _fit(self, X: np.ndarray) -> None:
        self.mean_, self.scale_ = _standardize_stats(X)
        Z = (X - self.mean_) / self.scale_
        if Z.shape[0] > self.max_train_rows:
            rows = np.random.default_rng(self.seed).choice(Z.shape[0], self.max_train_rows, replace=False)
            Z = Z[np.sort(rows)]
        self.model_ = OneClassSVM(kernel="rbf", nu=self.nu, gamma=self.gamma).fit(Z)

    def _score(self, X: np.ndarray) -> np.ndarray:
        return -self.model_.decision_function((X - self.mean_) / self.scale_)


class PCADetector(BaselineDetector):
    """PCA reconstruction error (the Q / SPE statistic) on standardised features.

    Keeps the top components that explain ``variance`` of the training variance (or ``n_components``
    when given); score = squared distance of a standardised row from the principal subspace.
    """

    def __init__(self, variance: float = 0.95, n_components: int | None = None, threshold_quantile: float = 0.99):
        self.variance = variance
        self.n_components = n_components
        self.threshold_quantile = threshold_quantile

    def _fit(self, X: np.ndarray) -> None:
        self.mean_, self.scale_ = _standardize_stats(X)
        Z = (X - self.mean_) / self.scale_
        max_k = min(Z.shape) - 1 if min(Z.shape) > 1 else 1
        k = self.n_components if self.n_components is not None else self.variance
        if isinstance(k, int):
            k = max(1, min(k, max_k))
        self.pca_ = PCA(n_components=k, svd_solver="full").fit(Z)
        if self.pca_.n_components_ >= Z.shape[1]:  # full rank keeps nothing out: drop the last component
            self.pca_ = PCA(n_components=max(1, Z.shape[1] - 1), svd_solver="full").fit(Z)
        self.n_components_ = int(self.pca_.n_components_)

    def _score(self, X: np.ndarray) -> np.ndarray:
        Z = (X - self.mean_) / self.scale_
        recon = self.pca_.inverse_transform(self.pca_.transform(Z))
        return ((Z - recon) ** 2).sum(axis=1)


BASELINES: dict[str, type[BaselineDetector]] = {
    "iqr": IQRDetector,
    "iforest": IsolationForestDetector,
    "ocsvm": OneClassSVMDetector,
    "pca": PCADetector,
}

BASELINE_LABELS: dict[str, str] = {
    "iqr": "IQR",
    "iforest": "Isolation Forest",
    "ocsvm": "One-Class SVM",
    "pca": "PCA",
}

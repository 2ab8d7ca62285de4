"""The adaptive alarm rule for streams (``fedad score --rule adaptive``): a fitted detector, applied causally.

For plants that do not return to their training state after a disturbance (test rigs such as SKAB). The
detector saved by ``fit`` carries what the rule needs, computed on its fitting records only: how much
each feature drifts slowly (``drift_ratios_``: features at or above ``drift_ratio`` are left out of the
stream score, 400 rows cannot teach their level),
each feature's standard deviation (the unit of an abrupt change) and the normalised feature errors of the
last fitting records (threshold and first trailing windows). The stream score of a record is
log(1 + max over the non-drifting features of |error| / training error scale), the ``max`` score of
``fedad.common.scoring``. The alarm and re-baselining logic is ``fedad.common.rebaseline.StreamAlarms`` (batch:
``adaptive_alarms``; live, block by block: ``AdaptiveStream``):
record t alarms when the trailing mean of the last ``smooth`` scores exceeds median + ``threshold_scale``
x (max - median) of the fitting records' trailing means; during an alarm, an abrupt input change that
lowers the score ends the episode, the next ``collect`` records are judged normal and a fresh detector
(same parameters) is fitted on them. Record t's decision uses records 0..t of the stream only.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np

from fedad.common.errors import FedadError
from fedad.common.rebaseline import drift_ratios
from fedad.common.scoring import feature_scales

DRIFT_WINDOW = 60
# normalised feature errors of the last fitting records kept with a model (threshold, first trailing windows)
STREAM_ROWS_KEPT = 1000


@dataclass(frozen=True)
class AdaptiveParams:
    """Parameters of the adaptive rule (defaults: chosen on SKAB, see bench/skab.py --held-out-groups)."""

    smooth: int = 45
    threshold_scale: float = 2.0
    change_window: int = 20
    change_sds: float = 3.0
    drop: float = 0.3
    collect: int = 120
    drift_ratio: float = 0.6  # features whose 60-row rolling mean varies by this share of their sd are left out

    def rule_kwargs(self) -> dict[str, Any]:
        """The alarm and re-baselining parameters, as ``rebaseline.stream_alarms`` / ``StreamAlarms`` take them."""
        return {k: v for k, v in asdict(self).items() if k != "drift_ratio"}


def normalised_errors(detector: Any, X: np.ndarray) -> np.ndarray:
    """|reconstruction error| / training error scale (``scoring.feature_scales``) per record and feature (n, d)."""
    return np.sqrt(detector.feature_errors(X)) / detector.feature_scales_


def fit_stream_state(detector: Any, X: np.ndarray) -> None:
    """Set what the rule needs on a fitted detector from normal records X (raw, time order): each feature's
    drift ratio and standard deviation (missing values skipped) and the normalised errors of the last
    ``STREAM_ROWS_KEPT`` records (None when fewer records than the model's window)."""
    X = np.asarray(X, dtype=np.float64)
    n, d = X.shape
    detector.drift_ratios_ = drift_ratios(X, DRIFT_WINDOW) if n >= DRIFT_WINDOW else np.zeros(d)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # an all-missing column
        detector.feature_sd_ = np.nan_to_num(np.nanstd(X, axis=0))
    tail = X[-STREAM_ROWS_KEPT:]
    detector.stream_fit_errors_ = normalised_errors(detector, tail) if len(tail) >= detector.window_ else None


def rebaseline_on(detector: Any, X: np.ndarray) -> None:
    """Take a stream's own normal start X as the detector's reference: feature error scales and stream state
    from X (a shared, e.g. federated, model scoring a site whose normal state it never saw on its own)."""
    X = np.asarray(X, dtype=np.float64)
    if len(X) < max(2, detector.window_):
        raise FedadError(f"too few baseline rows ({len(X)}) for a model with window {detector.window_}")
    detector.feature_scales_ = feature_scales(detector.feature_errors(X))
    fit_stream_state(detector, X)


def stream_scores(detector: Any, X: np.ndarray, keep: np.ndarray) -> np.ndarray:
    """log(1 + max over the kept features of |error| / training error scale) per record of X."""
    return np.log1p(normalised_errors(detector, X)[:, keep].max(axis=1))


def kept_features(detector: Any, drift_ratio: float) -> np.ndarray:
    """Mask of the features the rule scores: those whose drift ratio is below ``drift_ratio`` (all when none is)."""
    keep = np.asarray(detector.drift_ratios_) < drift_ratio
    return keep if keep.any() else np.ones_like(keep)


def _rule_parts(detector: Any, params: AdaptiveParams, refit: Callable[[np.ndarray], Any] | None):
    """(kept features, fitting-record stream scores, scorer factory) of the rule on a fitted detector."""
    from fedad.common.detector import AutoencoderDetector

    if getattr(detector, "stream_fit_errors_", None) is None:
        raise FedadError(
            "this model holds no stream state (saved by an older fedad or trained on fewer rows "
            "than its window); retrain it with `fedad train` to use --rule adaptive"
        )
    keep = kept_features(detector, params.drift_ratio)

    def fit_fresh(rows: np.ndarray) -> Any:
        return AutoencoderDetector(**{**detector.get_params(), "device": str(detector.device_)}).fit(rows)

    def scorer(rows: np.ndarray) -> Callable[[np.ndarray], np.ndarray]:
        fresh = (refit or fit_fresh)(rows)
        return lambda Z: stream_scores(fresh, Z, keep)

    fit_scores = np.log1p(np.asarray(detector.stream_fit_errors_)[:, keep].max(axis=1))
    return keep, fit_scores, scorer


def adaptive_alarms(
    detector: Any,
    X: np.ndarray,
    params: AdaptiveParams = AdaptiveParams(),
    refit: Callable[[np.ndarray], Any] | None = None,
):
    """``Rebaselined`` (stream scores, alarms, threshold, re-baseline rows) of the records X that follow the
    detector's fitting records. ``refit(rows)`` returns a detector fitted on the rows (default: a fresh one
    with the same parameters; benches pass a memoised one)."""
    from fedad.common.rebaseline import stream_alarms

    keep, fit_scores, scorer = _rule_parts(detector, params, refit)
    X = np.asarray(X, dtype=np.float64)
    return stream_alarms(
        X,
        stream_scores(detector, X, keep),
        fit_scores,
        detector.feature_sd_,
        scorer,
        **params.rule_kwargs(),
    )


class AdaptiveStream:
    """The adaptive rule applied live, block by block (``fedad.common.live_scorer``): the same decisions as
    ``adaptive_alarms`` on the whole stream."""

    def __init__(self, detector: Any, params: AdaptiveParams = AdaptiveParams()) -> None:
        from fedad.common.rebaseline import StreamAlarms

        self.keep, fit_scores, make_scorer = _rule_parts(detector, params, None)
        self.detector = detector
        self.scorer: Callable[[np.ndarray], np.ndarray] = lambda Z: stream_scores(detector, Z, self.keep)

        def fit(rows: np.ndarray) -> Callable[[np.ndarray], np.ndarray]:
            self.scorer = make_scorer(rows)  # the model in force from the next record on
            return self.scorer

        self.rule = StreamAlarms(
            fit_scores,
            detector.feature_sd_,
            fit,
            **params.rule_kwargs(),
        )

    def step(self, X: np.ndarray, n_context: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(scores, alarms, thresholds) of the records X[n_context:]; X[:n_context]: the records before them
        (a sequence model's window context)."""
        X = np.asarray(X, dtype=np.float64)

        new = X[n_context:]
        scores = self.scorer(X)[n_context:]

        def rescore_block(scorer: Callable[[np.ndarray], np.ndarray], j: int) -> np.ndarray:
            return scorer(X[j:])[n_context:]  # record j with the n_context records before it

        scores, alarms = self.rule.feed(new, scores, rescore_block)
        return scores, alarms, np.full(len(new), self.rule.threshold)

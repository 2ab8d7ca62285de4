"""Streaming re-baselining: a detector that re-fits its normal model after the plant leaves an alarm state.

Built for test rigs such as SKAB, where a detector is fitted on the first rows of an experiment and the
plant does not come back to that state after a disturbance: slow sensors (temperatures) keep drifting, and
the state after a valve experiment differs from the state before it, so the normal rows after a disturbance
raise alarms for the rest of the experiment. Two label-free steps, both decided from data the detector has
already seen:

- ``drifting_features``: sensors whose training rows are dominated by slow drift (the standard deviation of
  their rolling mean over ``window`` rows is at least ``ratio`` of their standard deviation) are left out;
  400 rows cannot teach their level.
- ``rebaseline_scores``: a streaming alarm rule with re-fitting. Record t is an alarm when the trailing
  mean of the last ``smooth`` scores exceeds the threshold set on the fitting rows (median + scale x
  (max - median) of their trailing-mean scores). While it alarms, an abrupt change of the inputs (the mean
  of the last ``change_window`` rows differs from the mean of the ``change_window`` rows before by more
  than ``change_sds`` training standard deviations in some feature) that lowers the mean score by more than
  ``drop`` is taken as the end of the disturbance: the next ``collect`` rows are judged normal (no alarm),
  a fresh model is fitted on them (with the ``change_window`` rows before), and it scores the rows after.

Every decision about row t uses rows 0..t only, and no labels: the detector adapts on the unlabelled stream.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from fedad.common.errors import FedadError

Scorer = Callable[[np.ndarray], np.ndarray]
FitFn = Callable[[np.ndarray], Scorer]


def drift_ratios(X: np.ndarray, window: int = 60) -> np.ndarray:
    """Per column of X (n, d): the standard deviation of its rolling mean over ``window`` rows divided by its
    standard deviation (0 for constant columns); near 1 for slow drift, near 0 for fast noise."""
    X = np.asarray(X, dtype=np.float64)
    if X.ndim != 2 or len(X) < window:
        raise FedadError(f"drift ratios need a 2-D array with at least {window} rows, got shape {X.shape}")
    with np.errstate(invalid="ignore", divide="ignore"), warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # an all-missing column: its ratio is 0
        sd = np.nan_to_num(np.nanstd(X, axis=0))  # missing values (imputed later) are skipped, not spread
        slow = np.nan_to_num(pd.DataFrame(X).rolling(window).mean().std().to_numpy())
        return np.where(sd > 0, slow / np.where(sd > 0, sd, 1.0), 0.0)


def drifting_features(X: np.ndarray, window: int = 60, ratio: float = 0.6) -> np.ndarray:
    """Boolean mask (d,) of the columns of X (n, d) whose rolling mean over ``window`` rows varies by at
    least ``ratio`` of their standard deviation (constant columns are not drifting)."""
    return drift_ratios(X, window) >= ratio


@dataclass
class Rebaselined:
    """Output of ``rebaseline_scores``: record scores under the model in force, the alarms (int8), the
    threshold, and the rows at which a re-baseline started (the alarm episode was judged over)."""

    scores: np.ndarray
    alarms: np.ndarray
    threshold: float
    events: list[int] = field(default_factory=list)


def rebaseline_scores(
    X: np.ndarray,
    fit: FitFn,
    train_rows: int,
    smooth: int = 45,
    threshold_scale: float = 2.0,
    change_window: int = 20,
    change_sds: float = 3.0,
    drop: float = 0.3,
    collect: int = 120,
) -> Rebaselined:
    """Stream the records X (n, d) through the re-baselining rule (see the module docstring).

    ``fit(rows)`` fits a detector on the rows and returns its scorer (records -> one score each, higher is
    more anomalous); it is called on ``X[:train_rows]`` and at each re-baseline. Rows before ``train_rows``
    are the fitting rows and never alarm.
    """
    X = np.asarray(X, dtype=np.float64)
    n = len(X)
    if not 0 < train_rows <= n:
        raise FedadError(f"train_rows must be in 1..{n}, got {train_rows}")
    scores = np.asarray(fit(X[:train_rows])(X), dtype=np.float64)
    res = stream_alarms(
        X[train_rows:],
        scores[train_rows:],
        scores[:train_rows],
        X[:train_rows].std(axis=0),
        fit,
        smooth=smooth,
        threshold_scale=threshold_scale,
        change_window=change_window,
        change_sds=change_sds,
        drop=drop,
        collect=collect,
    )
    return Rebaselined(
        scores=np.concatenate([scores[:train_rows], res.scores]),
        alarms=np.concatenate([np.zeros(train_rows, dtype=np.int8), res.alarms]),
        threshold=res.threshold,
        events=[train_rows + e for e in res.events],
    )


def stream_threshold(fit_scores: np.ndarray, smooth: int = 45, threshold_scale: float = 2.0) -> tuple[float, float]:
    """(threshold, median) of the trailing means over ``smooth`` of the fitting records' scores: median +
    ``threshold_scale`` x (max - median)."""
    s = np.asarray(fit_scores, dtype=np.float64).reshape(-1)
    if s.size == 0 or smooth < 1:
        raise FedadError("the streaming rule needs the fitting records' scores and smooth >= 1")
    trailing = pd.Series(s).rolling(smooth, min_periods=1).mean().to_numpy()
    median = float(np.median(trailing))
    return median + threshold_scale * (float(trailing.max()) - median), median


class StreamAlarms:
    """The re-baselining alarm rule (see ``stream_alarms``), fed block by block: every decision about record t
    uses records 0..t only, so feeding a stream in blocks of any size gives the same decisions as one block."""

    def __init__(
        self,
        fit_scores: np.ndarray,
        feature_sd: np.ndarray,
        fit: FitFn,
        smooth: int = 45,
        threshold_scale: float = 2.0,
        change_window: int = 20,
        change_sds: float = 3.0,
        drop: float = 0.3,
        collect: int = 120,
    ) -> None:
        if smooth < 1 or change_window < 1 or collect < 1:
            raise FedadError("smooth, change_window and collect must be >= 1")
        self.threshold, self.median = stream_threshold(fit_scores, smooth, threshold_scale)
        self.smooth, self.w, self.change_sds, self.drop, self.collect = smooth, change_window, change_sds, drop, collect
        self.fit = fit
        context = np.asarray(fit_scores, dtype=np.float64)
        self._scores = context[len(context) - (smooth - 1) :] if smooth > 1 else np.empty(0)  # trailing history
        self._rows: np.ndarray | None = None  # the last 2 x change_window records
        sd = np.asarray(feature_sd, dtype=np.float64)
        self._sd = np.where(sd > 0, sd, 1e-12)
        self.t = 0  # records decided
        self._end: int | None = None  # while collecting after a re-baseline: the first record of the new model
        self._collected: list[np.ndarray] = []
        self.events: list[int] = []

    def feed(
        self, X: np.ndarray, scores: np.ndarray, rescore: Callable[[Scorer, int], np.ndarray]
    ) -> tuple[np.ndarray, np.ndarray]:
        """(final scores, alarms int8) of the next records X (k, d); ``scores``: their scores under the model in
        force; ``rescore(scorer, j)``: the scores of X[j:] under a fresh scorer (fitted here at a re-baseline)."""
        X = np.asarray(X, dtype=np.float64)
        k = len(X)
        if len(scores) != k:
            raise FedadError(f"{len(scores)} scores for {k} records")
        scores = np.array(scores, dtype=np.float64)
        alarms = np.zeros(k, dtype=np.int8)
        keep_scores = max(self.smooth, 2 * self.w)
        w = self.w
        for j in range(k):
            x = X[j]
            if self._end is not None:
                if self.t < self._end:  # judged normal while collected
                    self._collected.append(x)
                    scores[j] = self.median
                    self._push(x, scores[j], keep_scores)
                    self.t += 1
                    continue
                try:  # all collected: a fresh model, fitted on the rows collected and the w before
                    scorer = self.fit(np.stack(self._collected))
                except FedadError:
                    scorer = None  # too few rows for this model: the model in force stays
                if scorer is not None:
                    scores[j:] = np.asarray(rescore(scorer, j), dtype=np.float64)
                self._end, self._collected = None, []
            self._push(x, scores[j], keep_scores)
            s = self._scores
            if s[-self.smooth :].mean() > self.threshold:
                alarms[j] = 1
                rows = self._rows
                if self.t + 1 >= 2 * w and rows is not None:
                    recent, before = rows[-w:].mean(axis=0), rows[-2 * w : -w].mean(axis=0)
                    if (np.abs(recent - before) / self._sd).max() > self.change_sds and s[-w:].mean() < s[
                        -2 * w : -w
                    ].mean() - self.drop:
                        # the episode is over: the next ``collect`` records are judged normal (no alarm) while
                        # they are collected; once all are in, a fresh model is fitted on them (with the w before)
                        self.events.append(self.t)
                        self._end = self.t + 1 + self.collect
                        self._collected = list(rows[-w:])
            self.t += 1
        return scores, alarms

    def _push(self, x: np.ndarray, score: float, keep_scores: int) -> None:
        """Append one record and its final score to the trailing histories."""
        self._scores = np.append(self._scores[-(keep_scores - 1) :], score)
        rows = x[None, :] if self._rows is None else np.vstack([self._rows[-(2 * self.w - 1) :], x])
        self._rows = rows


def stream_alarms(
    X: np.ndarray,
    scores: np.ndarray,
    fit_scores: np.ndarray,
    feature_sd: np.ndarray,
    fit: FitFn,
    smooth: int = 45,
    threshold_scale: float = 2.0,
    change_window: int = 20,
    change_sds: float = 3.0,
    drop: float = 0.3,
    collect: int = 120,
) -> Rebaselined:
    """The re-baselining alarm rule over a stream X (n, d) that follows the fitting records.

    ``scores``: the fitted model's scores of X; ``fit_scores``: its scores of the fitting records (time
    order; the threshold and the first trailing windows come from them); ``feature_sd``: the fitting
    records' standard deviation per feature (the unit of an abrupt change); ``fit(rows)`` fits a fresh
    model and returns its scorer (a re-baseline). Record t's decision uses records 0..t of X only
    (``StreamAlarms`` applies the same rule block by block).
    """
    X = np.asarray(X, dtype=np.float64)
    if len(scores) != len(X):
        raise FedadError(f"{len(scores)} scores for {len(X)} records")
    rule = StreamAlarms(fit_scores, feature_sd, fit, smooth, threshold_scale, change_window, change_sds, drop, collect)
    back = change_window + collect  # a fresh scorer sees the rows it was fitted on first, as context

    def rescore(scorer: Scorer, j: int) -> np.ndarray:
        return np.asarray(scorer(X[j - back :]), dtype=np.float64)[back:]

    out, alarms = rule.feed(X, scores, rescore)
    return Rebaselined(scores=out, alarms=alarms, threshold=rule.threshold, events=rule.events)

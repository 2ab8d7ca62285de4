"""``LiveScorer``: score records one by one (or in micro-batches) as they arrive, with an atomic model hand-over.

The detector's own ``decision_function`` and the model's threshold make each decision (the adaptive rule:
``fedad.common.stream_rule.AdaptiveStream``), so a live decision equals the batch ``fedad score`` decision on
the same records. A sequence model scores the window that ends at a record: the scorer keeps the last
``window - 1`` raw records as context, and the first ``window - 1`` records of a stream wait for the first full
window (whose score they get, as in batch). Preprocessing that works across records (detrend, denoise) is
refused: a record's decision could then depend on later records.

``swap(model)`` replaces (detector, threshold, version) between two scoring calls: a call scores all its
records with the model in force when it started, no record is dropped or scored twice, and every decision
names the version that made it.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from fedad.common.errors import FedadError


@dataclass(frozen=True)
class LiveModel:
    """What scores a record: a fitted detector (its preprocessing inside), its threshold and a version name."""

    detector: Any
    version: str
    threshold: float | None = None  # None: the detector's ``threshold_``

    @property
    def limit(self) -> float:
        """The score above which a record alarms (threshold rule)."""
        return float(self.detector.threshold_ if self.threshold is None else self.threshold)


@dataclass(frozen=True)
class Decision:
    """One record's decision: its index in the stream, time (from the time column, or None), score,
    threshold, alarm, the model version that decided, arrival-to-decision latency in milliseconds and the
    wall-clock time of the decision (unix seconds)."""

    record: int
    time: str | None
    score: float
    threshold: float
    alarm: bool
    version: str
    latency_ms: float
    at: float = 0.0

    def to_dict(self) -> dict[str, Any]:
        """The JSON object of an alarm line."""
        return {
            "record": self.record,
            "time": self.time,
            "score": self.score,
            "threshold": self.threshold,
            "alarm": self.alarm,
            "version": self.version,
            "latency_ms": round(self.latency_ms, 4),
            "at": round(self.at, 6),
        }


@dataclass
class Decisions:
    """The decisions of one scoring call as arrays (records ``first``, ``first + 1``, ...); iterating gives
    ``Decision`` objects, made only for the records asked for (``alarmed()``: the alarms only)."""

    first: int
    times: list[str | None]
    scores: np.ndarray
    thresholds: np.ndarray
    alarms: np.ndarray
    version: str
    latency_ms: np.ndarray
    at: float = 0.0  # wall-clock time of the decisions (unix seconds)

    def __len__(self) -> int:
        return len(self.scores)

    def __getitem__(self, i: int) -> Decision:
        return Decision(
            record=self.first + i,
            time=self.times[i],
            score=float(self.scores[i]),
            threshold=float(self.thresholds[i]),
            alarm=bool(self.alarms[i]),
            version=self.version,
            latency_ms=float(self.latency_ms[i]),
            at=self.at,
        )

    def __iter__(self) -> Iterator[Decision]:
        return (self[i] for i in range(len(self)))

    def alarmed(self) -> Iterator[Decision]:
        """The alarms among the decisions."""
        return (self[int(i)] for i in np.flatnonzero(self.alarms))

    @classmethod
    def empty(cls, version: str) -> Decisions:
        """No decision (a sequence model's first window is not full yet)."""
        z = np.empty(0)
        return cls(0, [], z, z, np.zeros(0, dtype=bool), version, z)


def record_window(detector: Any) -> int:
    """Records a decision about one record looks at (1 for row models; the window for sequence models)."""
    members = getattr(detector, "members_", None)
    if members is not None:  # an ensemble: its widest member
        return max(record_window(m) for m in members.values())
    model = getattr(detector, "model_", None)
    return int(model.window) if model is not None and model.sequence else 1


def check_live(detector: Any) -> None:
    """FedadError unless every record of the detector is preprocessed on its own (causal live scoring)."""
    members = getattr(detector, "members_", None)
    for det in members.values() if members is not None else [detector]:
        pre = getattr(det, "preprocessor_", None)
        if pre is not None and (pre.detrend is not None or pre.denoise is not None):
            raise FedadError(
                "live scoring needs row-wise preprocessing; this model detrends or denoises across records"
            )


class LiveScorer:
    """Causal scorer of a record stream under the threshold rule or an adaptive stream rule; thread-safe swap."""

    def __init__(self, model: LiveModel, adaptive: Any | None = None) -> None:
        """``adaptive``: an ``AdaptiveParams`` for ``--rule adaptive`` (None: the model's threshold)."""
        self._lock = threading.Lock()
        self._params = adaptive
        self._model = model
        self._rule = self._make_rule(model)
        self._context = np.empty((0, 0))  # last window-1 raw records
        self._pending: list[tuple[np.ndarray, str | None, float]] = []  # records before the first full window
        self.records = 0  # records decided so far (the next record's index)

    def _make_rule(self, model: LiveModel) -> Any:
        check_live(model.detector)
        if self._params is None:
            return None
        from fedad.common.stream_rule import AdaptiveStream

        return AdaptiveStream(model.detector, self._params)

    @property
    def version(self) -> str:
        """The version of the model in force."""
        return self._model.version

    @property
    def model(self) -> LiveModel:
        """The model in force."""
        return self._model

    def swap(self, model: LiveModel) -> None:
        """Hand over to ``model`` atomically: records scored after this call use it, none is lost or re-scored."""
        rule = self._make_rule(model)  # checks (and any state fitting) before taking the lock
        with self._lock:
            old = self._model.detector
            if model.detector.n_features_ != old.n_features_ or record_window(model.detector) != record_window(old):
                raise FedadError("the new model takes other features or another window than the model in force")
            self._model, self._rule = model, rule

    def score(
        self, rows: np.ndarray, times: Sequence[str | None] | None = None, arrived: Sequence[float] | None = None
    ) -> Decisions:
        """Decide the records ``rows`` (k, d), in order; ``arrived``: their ``time.perf_counter()`` arrival
        times (latency; default now). Records of a sequence model's first window wait for it to fill."""
        rows = np.asarray(rows, dtype=np.float64)
        if rows.ndim == 1:
            rows = rows[None, :]
        k = len(rows)
        if k == 0:
            return Decisions.empty(self.version)
        now = time.perf_counter()
        tl = list(times) if times is not None else [None] * k
        al = list(arrived) if arrived is not None else [now] * k
        with self._lock:
            model, rule = self._model, self._rule
            w = record_window(model.detector)
            if self._pending or self.records == 0 and w > 1 and self._context.size == 0:
                return self._fill_first_window(rows, tl, al, model, rule, w)
            return self._decide(rows, tl, al, model, rule, w)

    def _fill_first_window(self, rows, tl, al, model, rule, w) -> Decisions:
        self._pending.extend(zip(rows, tl, al, strict=True))
        if len(self._pending) < w:
            return Decisions.empty(model.version)
        pend, self._pending = self._pending, []
        X = np.stack([p[0] for p in pend])
        self._context = np.empty((0, X.shape[1]))
        return self._decide(X, [p[1] for p in pend], [p[2] for p in pend], model, rule, w)

    def _decide(self, rows, tl, al, model, rule, w) -> Decisions:
        ctx = self._context if self._context.size else np.empty((0, rows.shape[1]))
        X = np.concatenate([ctx, rows]) if len(ctx) else rows
        if rule is None:
            scores = model.detector.decision_function(X)[len(ctx) :]
            limit = model.limit
            alarms = scores > limit
            limits = np.full(len(scores), limit)
        else:
            scores, alarms, limits = rule.step(X, len(ctx))
        self._context = X[len(X) - (w - 1) :] if w > 1 else X[:0]
        done, wall = time.perf_counter(), time.time()
        first = self.records
        self.records += len(rows)
        latency = (done - np.asarray(al, dtype=np.float64)) * 1000.0
        return Decisions(
            first, list(tl), np.asarray(scores, dtype=np.float64), np.asarray(limits, dtype=np.float64),
            np.asarray(alarms, dtype=bool), model.version, latency, wall,
        )  # fmt: skip

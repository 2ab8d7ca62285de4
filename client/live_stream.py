"""`fedad-client --stream`: the node scores its live stream with the newest global model while it takes part in rounds.

A daemon thread runs the live loop (``fedad.common.live_loop``). It starts reading when the first global model
arrives (records written before wait in the file or the pipe: none is dropped). Every new global model is handed
over atomically between two records (``LiveScorer.swap``); its version is the server round. Until the server
sends the federation's threshold (its test phase), a round's model alarms above this node's own threshold for it
(the spec's rule on its validation scores). ``--learn-from-stream N``: the newest N records scored normal (never
an alarm) are trained on at each round besides the node's training split.
"""

from __future__ import annotations

import collections
import logging
import threading
import time
from typing import Any

import numpy as np

from fedad.common.alarms import AlarmSink
from fedad.common.errors import FedadError
from fedad.common.live_loop import parser_factory, score_stream
from fedad.common.live_scorer import LiveModel, LiveScorer


class NodeStream:
    """The node's live scoring: hand-over of global models, the scoring thread, the learning buffer."""

    def __init__(
        self,
        path: str,
        features: list[str],
        log: logging.Logger,
        sink: AlarmSink,
        idle_exit: float | None = None,
        time_column: str | None = None,
        sep: str | None = None,
        telemetry: Any = None,
        learn_rows: int = 0,
    ) -> None:
        self.path, self.log, self.sink, self.idle_exit, self.telemetry = path, log, sink, idle_exit, telemetry
        self.parser_for = parser_factory(features, time_column, sep)
        self.scorer: LiveScorer | None = None
        self.thread: threading.Thread | None = None
        self.error: BaseException | None = None
        self._stop = threading.Event()
        self._done = threading.Event()  # the federation has ended
        self._last = time.monotonic()  # when the last record was decided
        self._ended = 0.0  # when the federation ended (monotonic; 0: not yet)
        # --learn-from-stream: the newest ``learn_rows`` records scored normal (alarms never join)
        self.learned: collections.deque[np.ndarray] | None = (
            collections.deque(maxlen=learn_rows) if learn_rows else None
        )
        self._learn_lock = threading.Lock()

    def offer(self, site: Any, weights: list, config: dict, threshold: float | None) -> None:
        """A global model arrived (``FedadClient.on_global``): build this site's detector of it and hand it over;
        ``threshold`` None: this node's own threshold for it (the spec's rule on its validation scores)."""
        from fedad.common.threshold_rule import threshold_by_rule

        if threshold is None:
            spec = site.spec
            scores = site.record_scores(weights, site.split.val)
            threshold = threshold_by_rule(scores, spec.threshold_rule, spec.threshold_quantile, spec.target_far)
        self.hand_over(site.detector(weights, float(threshold), stream_state=False), int(config.get("round", 0)))

    def hand_over(self, detector: Any, version: int) -> None:
        """Score every record from now on with ``detector`` (``version``: the server round)."""
        model = LiveModel(detector, str(version))
        if self.scorer is not None:
            if self.scorer.version == model.version and detector.threshold_ == self.scorer.model.limit:
                return
            self.scorer.swap(model)
        else:
            self.scorer = LiveScorer(model)
            self.thread = threading.Thread(target=self._run, name="fedad-stream", daemon=True)
            self.thread.start()
        if self.telemetry is not None:
            self.telemetry.set_version(version)
        self.log.info("live scoring with the global model of round %d (threshold %.4g)", version, detector.threshold_)

    def _observe(self, decisions: Any, rows: Any = None) -> None:
        self._last = time.monotonic()
        if self.learned is not None and rows is not None and len(rows) == len(decisions):
            # (a sequence model's first window is decided at once when it fills: those records are not learned)
            with self._learn_lock:
                for d, row in zip(decisions, rows, strict=True):
                    if not d.alarm:
                        self.learned.append(row)
        if self.telemetry is not None:
            self.telemetry.observe_decisions(decisions)

    def _run(self) -> None:
        assert self.scorer is not None
        try:
            n = score_stream(
                self.path,
                self.scorer,
                self.sink,
                self.parser_for,
                observe=self._observe,
                stop=self._should_stop,
            )
            self.log.info("live stream ended: %d records scored, %d alarms", n, self.sink.alarms)
        except FedadError as exc:
            self.error = exc
            self.log.error("live stream stopped: %s", exc)
        except BaseException as exc:  # noqa: BLE001 - the rounds go on; the error is logged and reported at exit
            self.error = exc
            self.log.exception("live stream failed")

    def learned_rows(self) -> np.ndarray | None:
        """The buffered stream records scored normal (None when learning is off or nothing is buffered yet)."""
        if self.learned is None:
            return None
        with self._learn_lock:
            return np.stack(self.learned) if self.learned else None

    def _should_stop(self) -> bool:
        """Stop following a file: asked to, or no line came for ``idle_exit`` s since the federation ended (or
        since the last line, if later): a line written just after the end is still scored."""
        idle = self.idle_exit is not None and time.monotonic() - max(self._last, self._ended) > self.idle_exit
        return self._stop.is_set() or (self._done.is_set() and idle)

    def wait(self) -> None:
        """The federation has ended: block until the stream ends (stdin at its end, a file idle for
        --stream-idle-exit seconds)."""
        self._ended = time.monotonic()
        self._done.set()
        if self.thread is not None:
            self.thread.join()

    def stop(self) -> None:
        """Ask the thread to end at its next idle poll."""
        self._stop.set()

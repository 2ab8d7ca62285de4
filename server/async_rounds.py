"""Asynchronous buffered rounds (``--async-buffer K``): no node waits for another; every K arrivals make a version.

One thread per admitted node loops: train from the newest global model, hand the answer to the aggregator,
evaluate every global version made since its last evaluation, train again -- from a newer version only: a node
never trains twice from the same model (two answers from one base would re-apply one delta, which made the
first versions overshoot by a factor of 50-250 before this rule). The main thread aggregates each
K arrivals (one per node: a node's newer answer replaces its older one in the buffer) through the strategy's
``aggregate_buffer`` (FedBuff, ``fedad.server.buffered``). An answer more than ``max_staleness`` versions old
is dropped. A version's validation loss is the sample-weighted mean of every node's loss on it, complete
once the slowest node has evaluated it; its record goes to rounds.jsonl then, in version order, with
``elapsed``: the seconds from the first instruction to when the version was made.
"""

from __future__ import annotations

import itertools
import json
import queue
import threading
import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np
from flwr.common import Code, EvaluateIns, FitIns, FitRes, Parameters, ndarrays_to_parameters, parameters_to_ndarrays
from flwr.server.client_proxy import ClientProxy

from fedad.common.errors import FedadError
from fedad.server import validation as check
from fedad.server.aggregation import apply_update, compute_update
from fedad.server.client_calls import ClientCallFailed
from fedad.server.convergence import stop_reason, versions_rule
from fedad.server.strategies.base import embedding_of

if TYPE_CHECKING:
    from fedad.server.federation import FedadServer

DEFAULT_MAX_STALENESS = 10


@dataclass
class Arrival:
    """One training answer: who, from which global version, under which dispatch number, and when."""

    proxy: ClientProxy
    name: str
    base: int
    base_parameters: Parameters  # the model it trained from (kept here: the server may forget that version)
    dispatch: int
    res: FitRes
    bytes_down: int


@dataclass
class Made:
    """A global version waiting for its validation losses before its record is written."""

    record: dict
    parameters: Parameters
    expected: set[str]
    losses: dict[str, tuple[float, int]] = field(default_factory=dict)


class AsyncRounds:
    """Drives one asynchronous run on a ``FedadServer`` (its screening, checkpoints and records)."""

    def __init__(self, server: FedadServer, buffer_size: int, max_staleness: int, server_lr: float) -> None:
        self.s, self.k, self.max_staleness, self.lr = server, int(buffer_size), int(max_staleness), float(server_lr)
        self.lock = threading.Lock()
        self.new_version = threading.Condition(self.lock)  # notified when a version is made or the run stops
        self.events: queue.Queue = queue.Queue()
        self.stop = threading.Event()
        self.dispatches = itertools.count(1)
        self.version = 0
        self.params: dict[int, Parameters] = {}
        self.alive: dict[str, str] = {}  # cid -> name of nodes whose thread runs
        self.cursor: dict[str, int] = {}  # cid -> the next version that node evaluates
        self.threads: dict[str, threading.Thread] = {}
        self.made: dict[int, Made] = {}
        self.written = 0
        self.timeout: float | None = None
        self.t0 = self.last = time.perf_counter()
        self.lowest: tuple[int, float, Parameters] | None = None

    # ---------------------------------------------------------------- the nodes' threads
    def _start(self, proxy: ClientProxy) -> None:
        with self.lock:
            self.alive[proxy.cid] = self.s._name(proxy)
            self.cursor[proxy.cid] = self.version + 1
        t = threading.Thread(target=self._work, args=(proxy,), name=f"async-{proxy.cid[:8]}", daemon=True)
        self.threads[proxy.cid] = t
        t.start()

    def _work(self, proxy: ClientProxy) -> None:
        """Train, hand over, evaluate the new versions; until the run stops or the node fails."""
        from fedad.server.federation import _payload_bytes as payload_bytes

        trained_from = -1  # the version of this node's last delivered answer: it waits for a newer one
        try:
            while not self.stop.is_set():
                with self.new_version:
                    while self.version <= trained_from and not self.stop.is_set():
                        self.new_version.wait(timeout=1.0)
                    if self.stop.is_set():
                        break
                    base = self.version
                    params = self.params[base]
                dispatch = next(self.dispatches)
                config = {**self.s._fit_config(dispatch), "version": base}
                res = proxy.fit(FitIns(params, config), timeout=self.timeout, group_id=dispatch)
                if not self.s._vet([(proxy, res)], self.timeout):  # refused (mutual TLS identity, bad name)
                    self.events.put(("gone", proxy, None))
                    return
                if res.status.code != Code.OK:
                    self.events.put(("failed", proxy, f"status {res.status.code.name}: {res.status.message}"))
                else:
                    down = payload_bytes(params, config)
                    self.events.put(
                        ("fit", proxy, Arrival(proxy, self.s._name(proxy), base, params, dispatch, res, down))
                    )
                    trained_from = base
                self._evaluate_new(proxy)
            self._evaluate_new(proxy)  # the run stopped: versions made since this node's last pass (the last one)
        except Exception as exc:  # noqa: BLE001 - a lost connection ends this node's thread, not the run
            self.events.put(("gone", proxy, ClientCallFailed(proxy, exc)))
            return
        self.events.put(("done", proxy, None))

    def _evaluate_new(self, proxy: ClientProxy) -> None:
        """Validation loss of every version made since this node's last evaluation (one pass)."""
        with self.lock:
            todo = [(v, self.params[v]) for v in range(self.cursor[proxy.cid], self.version + 1)]
        for v, params in todo:
            res = proxy.evaluate(EvaluateIns(params, self.s._config("val", v)), timeout=self.timeout, group_id=v)
            if self.s._vet([(proxy, res)], self.timeout):
                self.events.put(("val", proxy, (v, res)))
            with self.lock:
                self.cursor[proxy.cid] = v + 1

    # ---------------------------------------------------------------- the aggregator
    def run(self, start: int, num_rounds: int, timeout: float | None) -> tuple[int, str | None, Any]:
        """Versions ``start``..``num_rounds`` (or fewer under --rounds auto); (last version, stop reason, lowest)."""
        s = self.s
        self.timeout = timeout
        self.version = self.written = start - 1
        self.params[self.version] = s.parameters
        nodes = s._admitted_view().all()
        if len(nodes) < self.k:
            raise FedadError(f"--async-buffer {self.k} needs at least {self.k} admitted nodes; {len(nodes)} are here")
        if not s.participation.started:
            s.participation.started = sorted(s._name(p) for p in nodes.values())
            s.participation.last = set(s.participation.started)
        s.log.info(
            "asynchronous rounds: a new global version every %d arrivals (FedBuff, staleness weight 1/sqrt(1+t), "
            "server learning rate %g, answers over %d versions old dropped), %d nodes",
            self.k,
            self.lr,
            self.max_staleness,
            len(nodes),
        )
        if s.stop_rule is not None:  # --rounds auto: as many answers without improvement as in synchronous rounds
            patience = s.stop_rule.patience
            s.stop_rule = versions_rule(s.stop_rule, len(nodes), self.k)
            s.log.info(
                "--rounds auto: stop after %d versions without improvement (%d rounds' worth of answers of %d nodes)",
                s.stop_rule.patience,
                patience,
                len(nodes),
            )
        self.t0 = self.last = time.perf_counter()
        for proxy in nodes.values():
            self._start(proxy)
        buffer: dict[str, Arrival] = {}
        stale: dict[str, str] = {}
        failed: list[str] = []
        quiet = (timeout or 600.0) + 60.0  # no answer from any node for this long: the run cannot go on
        reason = None
        try:
            while self.version < num_rounds:
                if s.stop_rule is not None:
                    reason = stop_reason([r["loss"] for r in s.rounds], s.stop_rule, "version")
                    if reason:
                        break
                kind, proxy, data = self._next(quiet)
                if kind == "fit":
                    a: Arrival = data
                    t = self.version - a.base
                    if t > self.max_staleness:
                        stale[a.name] = f"{t} versions old (over --max-staleness {self.max_staleness})"
                        s.log.warning("dropped the answer of %s: %s", a.name, stale[a.name])
                        continue
                    if a.name in buffer:
                        s.log.info("%s answered again: its newer answer replaces the older one in the buffer", a.name)
                    buffer[a.name] = a
                    if len(buffer) >= self.k:
                        self._aggregate(list(buffer.values()), stale, failed)
                        buffer, stale, failed = {}, {}, []
                        s._admit_newcomers(timeout)
                        for cid, p in s._admitted_view().all().items():
                            if cid not in self.threads:
                                self._start(p)
                else:
                    self._handle(kind, proxy, data, failed)
                self._write()
        finally:
            self.stop.set()
            with self.new_version:
                self.new_version.notify_all()
        self._drain(quiet, failed)
        return self.version, reason, self.lowest

    def _next(self, quiet: float) -> tuple[str, ClientProxy, Any]:
        try:
            return self.events.get(timeout=quiet)
        except queue.Empty:
            raise FedadError(f"no node answered for {quiet:.0f} s (version {self.version})") from None

    def _handle(self, kind: str, proxy: ClientProxy, data: Any, failed: list[str]) -> None:
        """A validation answer, a failed call, or a node's thread that ended."""
        s = self.s
        if kind == "val":
            v, res = data
            kept = s._screen_evaluate("val", v, [(proxy, res)])
            if kept and v in self.made and np.isfinite(res.loss):
                self.made[v].losses[s._name(proxy)] = (float(res.loss), int(res.num_examples))
            return
        if kind == "failed":
            failed += s._record_failures("fit", self.version + 1, [ClientCallFailed(proxy, RuntimeError(data))])
            return
        with self.lock:
            name = self.alive.pop(proxy.cid, None)
            self.cursor.pop(proxy.cid, None)
        if kind == "gone" and isinstance(data, ClientCallFailed) and not self.stop.is_set():
            failed += s._record_failures("fit", self.version + 1, [data])
            s.log.warning("%s left the asynchronous run (version %d)", name, self.version)
        if not self.stop.is_set():
            need, rule = s._needed()
            if len(self.alive) < max(need, self.k):
                raise FedadError(
                    f"version {self.version}: only {len(self.alive)} node(s) left, fewer than "
                    + (f"--async-buffer {self.k}" if self.k >= need else rule)
                )

    def _drain(self, quiet: float, failed: list[str]) -> None:
        """After the last version: every node finishes its training (discarded) and evaluates what it has not."""
        while self.alive:
            kind, proxy, data = self._next(quiet)
            if kind != "fit":
                self._handle(kind, proxy, data, failed)
            self._write()
        self._write(final=True)

    def _aggregate(self, arrivals: list[Arrival], stale: dict[str, str], failed: list[str]) -> None:
        """One FedBuff step over the buffer: a new global version, its record waiting for validation losses."""
        from fedad.server.federation import _payload_bytes as payload_bytes

        s, v = self.s, self.version
        current = parameters_to_ndarrays(self.params[v])
        names: list[str] = []
        deltas, counts, staleness, embeddings = [], [], [], []
        rejected: dict[str, str] = {}
        capped_all: dict[str, list[int]] = {}
        per_client: list[dict[str, Any]] = []
        for a in arrivals:
            base = parameters_to_ndarrays(a.base_parameters)
            s.strategy.global_weights = base  # decoding (compressed deltas) and checks against its own base
            good, refused, capped = s._screen_fit(a.dispatch, [(a.proxy, a.res)])
            rejected.update(refused)
            capped_all.update(capped)
            m = a.res.metrics or {}
            per_client.append(
                {
                    "client": a.name,
                    "examples": int(a.res.num_examples) if good else 0,
                    "train_loss": float(m.get("train_loss", float("nan"))),
                    "seconds": float(m.get("seconds", 0.0)),
                    "bytes_up": sum(len(t) for t in a.res.parameters.tensors) + payload_bytes(None, m),
                    "bytes_down": a.bytes_down,
                    "version": a.base,
                    "staleness": v - a.base,
                }
            )
            if not good:
                continue
            names.append(a.name)
            deltas.append(compute_update(s.strategy.decode_weights(a.res.parameters), base))
            counts.append(float(a.res.num_examples))
            staleness.append(v - a.base)
            embeddings.append(embedding_of(m))
        s.strategy.global_weights = current
        new = self.params[v]
        aggregate_refused = None
        if names:
            try:
                step = s.strategy.aggregate_buffer(names, deltas, counts, staleness, embeddings, self.lr)
            except FedadError:
                raise
            except Exception as exc:  # noqa: BLE001 - a strategy bug must end the run cleanly, with a report
                s.log.exception("version %d: aggregation failed", v + 1)
                raise FedadError(f"version {v + 1}: aggregation failed ({type(exc).__name__}: {exc})") from None
            rejected.update(s.strategy.last_rejections)
            weights = apply_update(current, step)
            aggregate_refused = check.aggregate(weights, [w.shape for w in current])
            if aggregate_refused:
                s.log.error(
                    "version %d: new global model refused (%s); keeping the previous one", v + 1, aggregate_refused
                )
            else:
                new = ndarrays_to_parameters(weights)
        for name, why in rejected.items():
            s.log.warning("version %d: rejected update of %s: %s", v + 1, name, why)
        now = time.perf_counter()
        with self.new_version:
            self.version = v + 1
            self.params[v + 1] = new
            expected = set(self.alive.values())
            self.new_version.notify_all()
        s.parameters, s.current_round = new, v + 1
        for name in sorted(s.strategy.untrusted() - set(s.quarantined_in)):
            s.quarantined_in[name] = v + 1
            s.log.warning("version %d: client %s is quarantined from now on", v + 1, name)
        counted = [c for c in per_client if c["examples"] > 0 and np.isfinite(c["train_loss"])]
        total = sum(c["examples"] for c in counted) or 1
        record: dict[str, Any] = {
            "round": v + 1,
            "version": v + 1,
            "clients": sorted(a.name for a in arrivals),
            "staleness": {a.name: v - a.base for a in arrivals},
            "loss": None,
            "train_loss": sum(c["train_loss"] * c["examples"] for c in counted) / total,
            "bytes_up": sum(c["bytes_up"] for c in per_client),
            "bytes_down": sum(c["bytes_down"] for c in per_client),
            "seconds": now - self.last,
            "elapsed": now - self.t0,
            "failed": list(failed),
            "dropped": [],
            "rejoined": [],
            "rejected": rejected,
            "per_client": per_client,
            "strategy": s.strategy.name,
            "async_buffer": self.k,
        }
        if stale:
            record["stale"] = dict(stale)
        if capped_all:
            record["capped_examples"] = capped_all
        if getattr(s.strategy, "last_clipped", None):
            record["clipped"] = dict(s.strategy.last_clipped)
        if aggregate_refused:
            record["aggregate_refused"] = aggregate_refused
        if s.strategy.last_client_reports:
            record["flags"] = s.strategy.last_client_reports
            record.update(getattr(s.strategy, "last_summary", {}))
        self.last = now
        self.made[v + 1] = Made(record, new, expected)
        s._save_checkpoint(v + 1)
        self._prune()

    def _prune(self) -> None:
        """Forget global versions no node trains from or still evaluates."""
        with self.lock:
            low = min([self.version, *self.cursor.values()])
            for old in [u for u in self.params if u < low]:
                del self.params[old]

    def _write(self, final: bool = False) -> None:
        """Append the records of versions whose validation losses are all in (all there are, when ``final``)."""
        s = self.s
        while (v := self.written + 1) in self.made:
            m = self.made[v]
            with self.lock:
                expected = m.expected & set(self.alive.values())
            if not final and not expected <= set(m.losses):
                return
            n = sum(c for _, c in m.losses.values())
            loss = sum(x * c for x, c in m.losses.values()) / n if n > 0 else None
            m.record.update(loss=loss, val_clients=sorted(m.losses))
            s.rounds.append(m.record)
            with open(s.out / "rounds.jsonl", "a") as f:
                f.write(json.dumps(m.record) + "\n")
            s.on_round(m.record)
            if s.stop_rule is not None and loss is not None and (self.lowest is None or loss < self.lowest[1]):
                self.lowest = (v, loss, m.parameters)
            s.log.info(
                "version %d: buffer %s, staleness %s, val loss %s, made at %.2f s (%.2f s after the last)",
                v,
                ",".join(m.record["clients"]),
                ",".join(str(t) for t in m.record["staleness"].values()),
                "n/a" if loss is None else f"{loss:.5f}",
                m.record["elapsed"],
                m.record["seconds"],
            )
            del self.made[v]
            self.written = v

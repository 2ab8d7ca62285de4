"""Prometheus metrics of a fedad process (prometheus-client), served in text format on ``--metrics-port``.

One ``Telemetry`` per process, on its own registry (no process-wide default state). Every process exposes the
same families, so one dashboard reads servers, clients and key holders alike. Labels are bounded: the only
label is a client's name (at most ``MAX_CLIENT_LABELS`` distinct names; later ones count as ``other``) and the
key holder's two request outcomes.
"""

from __future__ import annotations

import argparse
import math
import threading
from collections.abc import Iterable
from typing import Any

import numpy as np
from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, start_http_server

from fedad.common.errors import FedadError

MAX_CLIENT_LABELS = 256
ROUND_BUCKETS = (0.5, 1.0, 2.0, 5.0, 10.0, 30.0, 60.0, 120.0, 300.0, 600.0, 1800.0)
LATENCY_BUCKETS = (0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 1.0)

# every metric family a fedad process exposes (sample names add _total, _bucket, _sum, _count)
METRICS: dict[str, str] = {
    "fedad_rounds": "counter",
    "fedad_round_seconds": "histogram",
    "fedad_clients_connected": "gauge",
    "fedad_client_bytes_up": "counter",
    "fedad_client_bytes_down": "counter",
    "fedad_client_flags": "counter",
    "fedad_client_trust": "gauge",
    "fedad_refused_results": "counter",
    "fedad_records_scored": "counter",
    "fedad_alarms": "counter",
    "fedad_scoring_latency_seconds": "histogram",
    "fedad_model_version": "gauge",
    "fedad_keyholder_requests": "counter",
}


def add_metrics_argument(parser: Any) -> None:
    """``--metrics-port`` (0 or absent: no metrics endpoint)."""
    parser.add_argument(
        "--metrics-port",
        type=int,
        default=0,
        metavar="PORT",
        help="serve Prometheus metrics on this port at /metrics (0: off)",
    )
    parser.add_argument(
        "--metrics-host", default="0.0.0.0", metavar="HOST", help="address the metrics endpoint listens on"
    )


class Telemetry:
    """The metric families of one process and the helpers that update them from fedad's own records."""

    def __init__(self) -> None:
        r = self.registry = CollectorRegistry()
        self.rounds = Counter("fedad_rounds", "Training rounds completed", registry=r)
        self.round_seconds = Histogram("fedad_round_seconds", "Seconds per round", buckets=ROUND_BUCKETS, registry=r)
        self.clients_connected = Gauge("fedad_clients_connected", "Clients connected to the server", registry=r)
        self.bytes_up = Counter("fedad_client_bytes_up", "Bytes a client sent", ["client"], registry=r)
        self.bytes_down = Counter("fedad_client_bytes_down", "Bytes sent to a client (models)", ["client"], registry=r)
        self.flags = Counter("fedad_client_flags", "Rounds a client was flagged in", ["client"], registry=r)
        self.trust = Gauge(
            "fedad_client_trust", "A client's aggregation weight in the last screened round", ["client"], registry=r
        )
        self.refused = Counter("fedad_refused_results", "Client results refused (updates and answers)", registry=r)
        self.records_scored = Counter("fedad_records_scored", "Records scored live", registry=r)
        self.alarms = Counter("fedad_alarms", "Alarms raised by live scoring", registry=r)
        self.latency = Histogram(
            "fedad_scoring_latency_seconds", "Arrival-to-decision latency", buckets=LATENCY_BUCKETS, registry=r
        )
        self.model_version = Gauge("fedad_model_version", "Version (server round) of the model in force", registry=r)
        self.keyholder_requests = Counter(
            "fedad_keyholder_requests", "Decryption requests to the key holder", ["outcome"], registry=r
        )
        self._clients: set[str] = set()
        self._lock = threading.Lock()
        self.server: Any = None

    def client(self, name: str) -> str:
        """The label value of a client name (bounded: ``other`` after MAX_CLIENT_LABELS distinct names)."""
        with self._lock:
            if name in self._clients:
                return name
            if len(self._clients) < MAX_CLIENT_LABELS:
                self._clients.add(name)
                return name
        return "other"

    def observe_round(self, record: dict) -> None:
        """Count one finished training round from the server's round record (rounds.jsonl)."""
        self.rounds.inc()
        self.round_seconds.observe(float(record.get("seconds", 0.0)))
        self.model_version.set(int(record["round"]))
        for c in record.get("per_client", []):
            label = self.client(str(c["client"]))
            self.bytes_up.labels(label).inc(max(0, int(c.get("bytes_up", 0))))
            self.bytes_down.labels(label).inc(max(0, int(c.get("bytes_down", 0))))
        self.refused.inc(len(record.get("rejected") or {}))
        for name, rep in (record.get("flags") or {}).items():
            label = self.client(str(name))
            if rep.get("flagged"):
                self.flags.labels(label).inc()
            weight = rep.get("weight")
            if isinstance(weight, (int, float)) and math.isfinite(weight):
                self.trust.labels(label).set(float(weight))

    def observe_decisions(self, decisions: Iterable[Any]) -> None:
        """Count live decisions (``fedad.common.live_scorer.Decision``): records, alarms, latency."""
        n = alarms = 0
        latencies = getattr(decisions, "latency_ms", None)  # a ``Decisions`` batch: its arrays
        if latencies is not None:
            n, alarms = len(latencies), int(np.count_nonzero(decisions.alarms))  # type: ignore[attr-defined]
            for v in latencies:
                self.latency.observe(float(v) / 1000.0)
        else:
            for d in decisions:
                n += 1
                alarms += bool(d.alarm)
                self.latency.observe(d.latency_ms / 1000.0)
        if n:
            self.records_scored.inc(n)
        if alarms:
            self.alarms.inc(alarms)

    def set_version(self, version: str | int) -> None:
        """Set the model version gauge when the version is a number (a server round)."""
        try:
            self.model_version.set(int(version))
        except (TypeError, ValueError):
            pass

    def watch_server(self, server: Any) -> None:
        """Follow a ``FedadServer``: every finished round (its ``on_round`` hook) and the connected clients."""
        server.on_round = self.observe_round
        self.clients_connected.set_function(lambda: float(server.client_manager().num_available()))

    def watch_client(self, client: Any, name: str) -> None:
        """Follow a ``FedadClient``'s training rounds: rounds, model version (the round), bytes down and up."""
        fit = client.fit
        label = self.client(name)

        def counted(parameters: Any, config: dict) -> Any:
            out = fit(parameters, config)
            if config.get("phase", "fit") == "fit":
                self.rounds.inc()
                self.set_version(config.get("round", 0))
                self.bytes_down.labels(label).inc(sum(_nbytes(p) for p in parameters))
                self.bytes_up.labels(label).inc(sum(_nbytes(w) for w in out[0]))
            return out

        client.fit = counted

    def watch_keyholder(self, holder: Any, refusal: type[Exception]) -> None:
        """Count a ``KeyHolder``'s decryption requests by outcome (served, refused)."""
        decrypt = holder.decrypt

        def counted(*args: Any, **kwargs: Any) -> Any:
            try:
                out = decrypt(*args, **kwargs)
            except refusal:
                self.keyholder_requests.labels("refused").inc()
                raise
            self.keyholder_requests.labels("served").inc()
            return out

        holder.decrypt = counted

    def serve(self, port: int, host: str = "0.0.0.0") -> Telemetry:
        """Serve /metrics on host:port in a daemon thread (FedadError when the port cannot be bound)."""
        if not 0 < port < 65536:
            raise FedadError(f"--metrics-port must be in 1..65535, got {port}")
        try:
            self.server, _ = start_http_server(port, addr=host, registry=self.registry)
        except OSError as exc:
            raise FedadError(f"cannot serve metrics on {host}:{port}: {exc.strerror or exc}") from None
        return self

    def close(self) -> None:
        """Stop the endpoint."""
        if self.server is not None:
            self.server.shutdown()
            self.server.server_close()
            self.server = None


def from_args(args: argparse.Namespace) -> Telemetry | None:
    """A serving ``Telemetry`` when ``--metrics-port`` is set, else None."""
    port = getattr(args, "metrics_port", 0) or 0
    if port == 0:
        return None
    return Telemetry().serve(port, getattr(args, "metrics_host", "0.0.0.0"))


def _nbytes(value: Any) -> int:
    """Bytes of an array or a bytes payload."""
    n = getattr(value, "nbytes", None)
    return int(n) if n is not None else len(value)

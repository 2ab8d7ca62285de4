"""The federation's round loop: statistics, training rounds, threshold and evaluation, with checkpoints.

A ``flwr.server.Server`` subclass, so Flower's gRPC runtime drives it; strategies only aggregate.
"""

from __future__ import annotations

import json
import logging
import os
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
from flwr.common import EvaluateIns, FitIns, Parameters, ndarrays_to_parameters, parameters_to_ndarrays
from flwr.server import History, Server
from flwr.server.client_manager import SimpleClientManager
from flwr.server.client_proxy import ClientProxy

from fedad.common.crypto.statistics import decode_fixed_point, sum_counts, sum_fixed_point
from fedad.common.errors import FedadError
from fedad.common.feature_diff import describe_feature_difference
from fedad.common.federated_stats import (
    N_BINS,
    combined_threshold,
    encode_scaler_stats,
    metrics_from_counts,
    rule_threshold,
)
from fedad.common.federation_spec import FederationSpec
from fedad.common.models.registry import model_aligns
from fedad.common.node_names import is_valid_node_name, safe_repr
from fedad.common.operating_range import describe_outside
from fedad.common.preprocessing import ScalerStats
from fedad.common.scoring import TAIL_MIN_SAMPLES, TAIL_QUANTILE
from fedad.common.threshold_rule import expected_far
from fedad.common.wire import WireError, encode_array, encode_json
from fedad.server import validation as check
from fedad.server.admission import AdmittedClients, drop_connection
from fedad.server.client_calls import ClientCallFailed, call_clients
from fedad.server.convergence import StopRule, stop_reason
from fedad.server.downlink import Downlink
from fedad.server.quorum import DEFAULT_MIN_FIT_CLIENTS, Participation, continue_quorum, describe_quorum
from fedad.server.report import format_round_flags
from fedad.server.strategies.base import BlindStrategy, FedadStrategy, SecureStrategy, client_name

CHECKPOINT_DIR = "checkpoint"
DIVERGENCE = 4.0  # Paillier: a new global model whose median validation loss rises this many times is refused
END_TIMEOUT = 10.0  # seconds a connected client has to take the end-of-run instruction (a dead one must not hold us)


def pooled_feature_scales(metrics: list[dict]) -> np.ndarray | None:
    """Training error scale per feature over all nodes: sqrt(sum(n * scale^2) / sum(n)) of the nodes' scales and
    training counts (their pooled RMS error where the nodes' scales are RMS; a weighted quadratic mean of their
    0.999 quantiles otherwise)."""
    from fedad.common.wire import decode_array

    total, count = None, 0
    for m in metrics:
        if "fe_sq_sum" not in (m or {}):
            return None
        try:
            v = decode_array(m["fe_sq_sum"])
        except WireError:
            return None
        if total is not None and v.shape != total.shape or not np.isfinite(v).all() or (v < 0).any():
            return None
        total = v if total is None else total + v
        count += int(m.get("fe_count", 0))
    if total is None or count <= 0:
        return None
    return np.maximum(np.sqrt(total / count), 1e-12)


def rms_scaled_nodes(metrics: dict[str, dict]) -> list[str]:
    """Nodes whose error scales are RMS (``fe_count`` under ``scoring.TAIL_MIN_SAMPLES`` training samples) in a
    federation where others have the 0.999 quantile: their scales are smaller, so their scores run higher against
    one global threshold. Empty when all nodes are on the same side (or none says its count)."""
    counts = {name: m["fe_count"] for name, m in metrics.items() if isinstance((m or {}).get("fe_count"), int)}
    small = sorted(name for name, n in counts.items() if n < TAIL_MIN_SAMPLES)
    return small if len(small) < len(counts) else []


class FederationFailed(Exception):
    """The run cannot go on (too few clients, no usable updates); the server exits non-zero."""


def _payload_bytes(parameters: Parameters | None, values: dict | None) -> int:
    """Bytes of tensors plus bytes/str values: what a message carries beyond protobuf framing."""
    n = sum(len(t) for t in parameters.tensors) if parameters is not None else 0
    for v in (values or {}).values():
        n += len(v) if isinstance(v, (bytes, str)) else 8
    return n


def _atomic_write(path: Path, text: str) -> None:
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(text)
    os.replace(tmp, path)


class _ClientManager(SimpleClientManager):
    """Flower's client manager that also tells the server when a client's connection ends."""

    def __init__(self) -> None:
        super().__init__()
        self.on_leave: Callable[[ClientProxy], None] = lambda proxy: None

    def unregister(self, client: ClientProxy) -> None:
        known = client.cid in self.clients
        super().unregister(client)
        if known:
            self.on_leave(client)


class FedadServer(Server):
    """Runs stats -> R training rounds -> threshold -> test, recording every round in ``out_dir``."""

    def __init__(
        self,
        *,
        strategy: FedadStrategy,
        spec: FederationSpec,
        out_dir: Path,
        min_clients: int,
        wait_timeout: float,
        resume: bool,
        log: logging.Logger,
        gate=None,
        features_from: str | None = None,
        admission_timeout: float = 60.0,
        max_examples: int = check.MAX_EXAMPLES,
        stop_rule: StopRule | None = None,
        min_fit_clients: int | float = DEFAULT_MIN_FIT_CLIENTS,
        rejoin_timeout: float = 30.0,
        async_buffer: int = 0,
        max_staleness: int = 10,
        server_lr: float = 1.0,
    ) -> None:
        manager = _ClientManager()
        manager.on_leave = self._client_left
        super().__init__(client_manager=manager, strategy=strategy)
        self.strategy: FedadStrategy = strategy
        self.spec, self.out, self.min_clients = spec, Path(out_dir), min_clients
        self.wait_timeout, self.resume, self.log = wait_timeout, resume, log
        self.stop_rule = stop_rule  # --rounds auto; None: exactly the rounds Flower asks for
        self.min_fit_clients = min_fit_clients  # the continue quorum (a count or a fraction of who started)
        self.participation = Participation()
        self.rejoin_timeout = float(rejoin_timeout)  # after round 1: how long dropped nodes may take to come back
        # --async-buffer K (0: synchronous rounds): a new global version every K answers (server/async_rounds.py)
        self.async_buffer, self.max_staleness, self.server_lr = int(async_buffer), int(max_staleness), float(server_lr)
        self.stopped: dict | None = None  # why and where a run that could not go on stopped
        self.scaler: ScalerStats | None = None
        self.scaler_bytes = b""
        self.rounds: list[dict] = []
        self.refused: dict[str, str] = {}
        self.failures: list[dict] = []
        self.result: dict = {}
        self.feature_scales: np.ndarray | None = None  # pooled training error scales (plaintext runs)
        self.admitted: set[str] = set()  # Flower cids whose features were checked
        self.departed: set[str] = set()  # names of clients whose connection ended since the last round
        self._departed_lock = threading.Lock()  # gRPC threads add to it while a round reads it
        self.current_round = 0
        self.on_round: Callable[[dict], None] = lambda record: None  # e.g. the Prometheus metrics
        self.pace: Callable[[int], bool] = lambda rnd: True  # before each round; False ends the rounds (continuous)
        self.gate = gate  # mutual TLS: a NodeGate (revocations, expiry); every proxy then carries .identity
        self.features_from = features_from  # the node whose features are the federation's (operator's choice)
        self.pending: list[tuple] = []  # statistics reports waiting for the --features-from node (not admitted)
        self.asked: set[str] = set()  # Flower cids asked for statistics (an idle one is asked once, then dropped)
        self.admission_timeout, self.max_examples = float(admission_timeout), int(max_examples)
        self.declared: dict[str, int] = {}  # training rows each node declared at the statistics phase
        self.replay = check.ReplayGuard()
        self.result_rejections: list[dict] = []  # evaluation answers refused (phase, round, client, reason)
        self.error: str | None = None  # why the run ended early (the report still gets written)
        self.max_update_bytes = 1 << 30  # set from the model's size once it is built
        self.median_val_loss: float | None = None  # Paillier: the nodes' median validation loss of the kept model
        self.quarantined_in: dict[str, int] = {}  # client name -> round the strategy quarantined it in
        self.resumed: list[dict] = []  # each --resume: the checkpoint's round and the round it replays
        self.encrypted = bool(getattr(strategy, "encrypted", False))  # Paillier: sums stay ciphertexts here
        self.blind = bool(getattr(strategy, "plaintext_model", False))  # secure-robust: blind-decrypted aggregates
        # models with an alignment term get the global embedding; not under Paillier, where the server learns nothing
        self.aligns = model_aligns(spec.model) and not (self.encrypted and not self.blind)
        self.downlink: Downlink | None = None  # --compress: the global model goes down as q8 steps (set by the run)
        self.val_down: dict[str, tuple[int, str | None]] = {}  # the last validation call: cid -> (bytes, download)
        strategy.fit_config = self._fit_config
        strategy.evaluate_config = lambda r: self._config("val", r)

    def _secure(self) -> SecureStrategy:
        """The strategy of an encrypted run (``self.encrypted``): its public key and the values clients encrypt."""
        if not isinstance(self.strategy, SecureStrategy):
            raise TypeError(f"{self.strategy!r} says it is encrypted but has no public key and settings")
        return self.strategy

    def _blind(self) -> BlindStrategy:
        """The strategy of a blind-decrypting run (``self.blind``: secure-robust)."""
        if not isinstance(self.strategy, BlindStrategy):
            raise TypeError(f"{self.strategy!r} says its model is plaintext but cannot decrypt a histogram")
        return self.strategy

    def _features(self) -> list[str]:
        """The federation's features, fixed by the statistics phase (or the operator) before any model exists."""
        if self.spec.feature_names is None:
            raise RuntimeError("the federation's features are not fixed yet (statistics phase first)")
        return self.spec.feature_names

    # ---------------------------------------------------------------- configs sent to clients
    def _config(self, phase: str, rnd: int, **extra) -> dict:
        spec = self.spec.to_dict()
        if phase == "stats":  # a node answers with its features and the server says why it is refused, if it is
            spec["feature_names"] = None
        cfg = {"phase": phase, "round": rnd, "spec": encode_json(spec), **extra}
        if self.encrypted:
            cfg.update(self._secure().secure_config())
        if self.scaler_bytes and self.spec.scaling == "global":  # site scaling: nodes use their own statistics
            cfg["scaler_enc" if self.encrypted else "scaler"] = self.scaler_bytes
        return cfg

    def _fit_config(self, rnd: int) -> dict:
        extra = dict(getattr(self.strategy, "extra_fit_config", {}))
        if self.aligns:  # contrastive clients align to the mean embedding of the previous round
            extra["want_embedding"] = True
            g = self.strategy.global_embedding
            if g is not None:
                extra["global_embedding"] = encode_array(g)
                if self.blind:  # secure-robust: a mean of L2-normalised embeddings, only its direction means anything
                    extra["global_embedding_direction"] = True
        return self._config("fit", rnd, epochs=self.spec.local_epochs, **extra)

    # ---------------------------------------------------------------- helpers
    def _admitted_view(self) -> AdmittedClients:
        return AdmittedClients(self._client_manager, self.admitted, self.strategy)

    def _live(self) -> int:
        """Connected clients that passed admission: only these count toward --min-clients."""
        return len(AdmittedClients(self._client_manager, self.admitted, self.strategy).all())

    def _needed(self) -> tuple[int, str]:
        """Admitted nodes a round needs: --min-clients before round 1, the continue quorum after it."""
        if not self.participation.started:
            return self.min_clients, f"--min-clients is {self.min_clients}"
        started = len(self.participation.started)
        return continue_quorum(self.min_fit_clients, started), describe_quorum(self.min_fit_clients, started)

    def _wait(self, what: str, timeout: float | None) -> None:
        """Wait (bounded) until enough admitted nodes are connected (``_needed``), admitting newcomers meanwhile.

        Before round 1 the bound is --wait-timeout; later, --rejoin-timeout (a run that lost its quorum stops soon).
        """
        bound = self.rejoin_timeout if self.participation.started else self.wait_timeout
        deadline = time.monotonic() + bound
        while True:
            need, rule = self._needed()
            if self._live() >= need:
                return
            left = deadline - time.monotonic()
            if left <= 0:
                n, idle = self._live(), self._client_manager.num_available() - self._live()
                raise FederationFailed(
                    f"{what}: only {n} admitted client(s) after waiting {bound:.0f} s "
                    f"({idle} other connection(s) never passed admission); {rule}"
                )
            self._client_manager.wait_for(
                len(self.asked & set(self._client_manager.all())) + 1, timeout=max(1, int(min(left, 5.0)))
            )
            if self.scaler_bytes:  # the statistics phase is done: newcomers are checked against it
                self._admit_newcomers(timeout)
            elif self._unasked():
                self._stats_phase(timeout)

    def _unasked(self) -> list:
        return [
            c
            for cid, c in self._client_manager.all().items()
            if cid not in self.asked and self.strategy.names.get(cid) not in self.strategy.excluded
        ]

    @staticmethod
    def _workers(n: int) -> int:
        """One thread per client call: an idle node must never hold up an honest one (Flower's default is 6)."""
        return max(1, n)

    def _with_model(self, instructions: list) -> tuple[list, dict[str, str]]:
        """Under --compress each instruction brings its node to the model as held, a q8 step or in full."""
        if self.downlink is None:
            return instructions, {}
        sent, kinds = [], {}
        for proxy, ins in instructions:
            parameters, config, kind = self.downlink.dress(proxy.cid, ins.parameters, ins.config)
            sent.append((proxy, type(ins)(parameters, config)))
            kinds[proxy.cid] = kind
        full = sorted(self._name(p) for p, _ in instructions if kinds[p.cid] == "full")
        if full and self.downlink.version > 0:
            self.log.info("sending the full model to %s (no usable version held)", ", ".join(full))
        return sent, kinds

    def _call_with_model(self, method: str, instructions: list, timeout: float | None, rnd: int) -> tuple:
        """``call_clients`` for calls that carry the model: (results, failures, instructions as sent, downloads)."""
        sent, kinds = self._with_model(instructions)
        results, failures = call_clients(method, sent, self._workers(len(sent)), timeout, rnd)
        if self.downlink is not None:
            self.downlink.note(results, failures)
        return results, failures, sent, kinds

    def _name(self, proxy: ClientProxy) -> str:
        return self.strategy.names.get(proxy.cid, f"cid-{proxy.cid[:8]}")

    def _client_left(self, proxy: ClientProxy) -> None:
        """A client's connection ended mid-run (killed, crashed, network): name it in the log and the next round."""
        name = self.strategy.names.get(proxy.cid)
        if self.downlink is not None:
            self.downlink.forget(proxy.cid)
        if self.result or self.error or name is None or name in self.strategy.excluded:
            return  # the normal end, a refused client, or one that never said its name
        with self._departed_lock:
            self.departed.add(name)
        self.failures.append(
            {"phase": "connection", "round": self.current_round, "client": name, "error": "disconnected"}
        )
        self.log.warning("client %s disconnected (round %d)", name, self.current_round)

    def _take_departed(self) -> set[str]:
        """The clients that left since the last call, emptied in one step (a departure is never read twice or lost)."""
        with self._departed_lock:
            departed, self.departed = self.departed, set()
        return departed

    def _record_failures(self, phase: str, rnd: int, failures) -> list[str]:
        names = []
        for f in failures:
            if isinstance(f, ClientCallFailed):
                who, why = self._name(f.proxy), str(f)
            elif isinstance(f, BaseException):  # call_clients wraps every exception with its proxy: a bug if here
                who, why = "connection", f"{type(f).__name__}: {str(f).splitlines()[0] if str(f) else ''}"
            else:
                proxy, res = f
                who, why = self._name(proxy), res.status.message
            self.failures.append({"phase": phase, "round": rnd, "client": who, "error": why})
            self.log.warning("round %d %s: client %s failed (%s)", rnd, phase, who, why)
            names.append(who)
        return names

    # ---------------------------------------------------------------- phases
    def _collect_stats(self, clients, timeout: float | None) -> list[tuple]:
        """Ask clients for their feature names and scaler statistics; (proxy, name, features, stats) each.

        A connection that does not answer within the admission timeout is dropped and never counted.
        """
        # without the feature names: the server decides who matches (and reports it), not each node on its own
        open_spec = encode_json({**self.spec.to_dict(), "feature_names": None})
        ins = FitIns(Parameters(tensors=[], tensor_type=""), self._config("stats", 0, spec=open_spec))
        wait = self.admission_timeout if timeout is None else min(timeout, self.admission_timeout)
        self.asked |= {c.cid for c in clients}
        results, failures = call_clients("fit", [(c, ins) for c in clients], self._workers(len(clients)), wait, 0)
        self._record_failures("stats", 0, failures)
        answered = {proxy.cid for proxy, _ in results}
        for c in clients:
            if c.cid not in answered:
                self.log.warning(
                    "dropping connection %s: no usable answer to the statistics phase (admission timeout %.0f s)",
                    c.cid[:8],
                    wait,
                )
                drop_connection(self._client_manager, c)
        results = self._vet(results, timeout)
        reports = []
        for proxy, res in results:
            try:
                name = check.name(res.metrics) or f"cid-{proxy.cid[:8]}"
            except check.InvalidMessage as exc:
                self._refuse(proxy, f"cid-{proxy.cid[:8]}", f"malformed statistics: {exc}", timeout)
                continue
            self.strategy.names[proxy.cid] = name
            try:
                feats, declared = check.stats_result(
                    res.num_examples, res.metrics, encrypted=self.encrypted, max_blob=1 << 24
                )
                declared = check.count(declared, "the declared row count", low=1, high=self.max_examples)
                if self.encrypted:
                    decode_fixed_point(self._secure().public_key, res.metrics["stats_enc"], 1 + 2 * len(feats))
                    stats = res.metrics["stats_enc"]
                else:
                    stats = check.scaler_stats(res.metrics["stats"], len(feats), max_count=self.max_examples)
                    if stats.count != declared:
                        raise check.InvalidMessage(f"declares {declared} rows but its statistics count {stats.count}")
            except Exception as exc:  # noqa: BLE001 - anything a node sends wrong refuses that node only
                self._refuse(proxy, name, f"malformed statistics: {exc}", timeout)
                continue
            self.declared[name] = declared
            reports.append((proxy, name, feats, stats))
        return reports

    def _admit(self, reports, expected: tuple, timeout: float | None) -> list:
        """Admit clients whose features match the federation's; refuse the others (both sides say why)."""
        kept = []
        for proxy, name, feats, stats in reports:
            if feats != expected:
                self._refuse(
                    proxy,
                    name,
                    f"its data has {len(feats)} features, the federation's model takes "
                    f"{len(expected)} ({describe_feature_difference(feats, expected)})",
                    timeout,
                )
            else:
                self.admitted.add(proxy.cid)
                kept.append(stats)
        return kept

    def _schema(self, reports) -> tuple:
        """The federation's features: the operator's list, the designated node's, or the one all nodes share.

        Never a majority vote: whoever connects first must not decide what the honest nodes are measured against.
        """
        if self.spec.feature_names:
            return tuple(self.spec.feature_names)
        if self.features_from:
            mine = [f for _, name, f, _ in reports if name == self.features_from]
            if not mine:
                raise FederationFailed(
                    f"--features-from {self.features_from}: that node sent no statistics (is it connected?)"
                )
            return mine[0]
        schemas = {f for _, _, f, _ in reports}
        if len(schemas) > 1:
            raise FederationFailed(
                f"the {len(reports)} nodes disagree on the feature schema ({len(schemas)} different "
                "column sets); fix it as the operator: fedad-server --features FILE or "
                "--features-from NODE"
            )
        return next(iter(schemas))

    def _stats_phase(self, timeout: float | None) -> None:
        """Federated scaler: the operator's feature set (see ``_schema``), clients send sums instead of rows."""
        live = self._client_manager.all()
        reports = [r for r in self.pending if r[0].cid in live] + self._collect_stats(self._unasked(), timeout)
        reports.sort(key=lambda r: (str(r[1]), r[0].cid))  # name order, as _vet's: the merged sums repeat run to run
        self.pending = []
        if not reports:  # every connection so far was refused or silent: wait for others (bounded by --wait-timeout)
            self.log.warning("no client sent usable statistics yet; waiting for others")
            return
        if self.features_from and all(name != self.features_from for _, name, _, _ in reports):
            # the operator's designated node decides the schema: the others wait (not admitted) until it reports
            self.pending = reports
            self.log.info(
                "waiting for %s (--features-from) before admitting %d node(s)", self.features_from, len(reports)
            )
            return
        expected = self._schema(reports)
        kept = self._admit(reports, expected, timeout)
        if not kept:
            self.log.warning("no node of the statistics phase was admitted; waiting for others")
            return
        self.spec.feature_names = list(expected)
        if self.encrypted:  # the server only multiplies ciphertexts; clients decrypt the summed statistics
            self.scaler_bytes = sum_fixed_point(self._secure().public_key, kept, 1 + 2 * len(expected))
            self.log.info("federated scaler from %d clients (encrypted sums), %d features", len(kept), len(expected))
            return
        self.scaler = ScalerStats.merge(kept)
        self.scaler_bytes = encode_scaler_stats(self.scaler)
        self.log.info(
            "federated scaler from %d clients, %d training rows, %d features",
            len(kept),
            self.scaler.count,
            len(expected),
        )

    def _admit_newcomers(self, timeout: float | None) -> None:
        """Clients that connected (or reconnected) after the statistics phase get their features checked."""
        new = self._unasked()
        if new:
            kept = self._admit(self._collect_stats(new, timeout), tuple(self._features()), timeout)
            self.log.info("admitted %d newly connected client(s)", len(kept))

    def _vet(self, results: list, timeout: float | None) -> list:
        """Keep results whose sender may be heard, in node-name order; refuse the others (who, why) without
        stopping the round.

        Under mutual TLS a result's name is its connection's certificate subject: a result claiming another name,
        or from a revoked or expired certificate, is refused. Without it, the claimed name must be a valid name.
        Name order makes every float sum over the results (weights, scaler statistics, losses) the same from run
        to run whatever order the clients connected in, so a seed's federation is repeatable to the bit.
        """
        kept = []
        for proxy, res in results:
            metrics = res.metrics if res.metrics is not None else {}
            claimed = metrics.get("name")
            identity = getattr(proxy, "identity", None)
            if identity is not None:
                self.strategy.names[proxy.cid] = identity.name
                reason = None
                if claimed is not None and claimed != identity.name:
                    reason = f"its result claims the name {safe_repr(claimed)} but its certificate is {identity.name}"
                elif self.gate is not None:
                    reason = self.gate.problem(identity)
                if reason is not None:
                    if self.gate is not None:
                        self.gate.refuse(identity.name, reason)
                    self._refuse(proxy, identity.name, reason, timeout)
                    continue
                metrics["name"] = identity.name
                res.metrics = metrics
            elif claimed is not None and not is_valid_node_name(claimed):
                self._refuse(proxy, f"cid-{proxy.cid[:8]}", f"invalid node name {safe_repr(claimed)}", timeout)
                continue
            kept.append((proxy, res))
        kept.sort(key=lambda pr: (str((pr[1].metrics or {}).get("name", "")), pr[0].cid))
        return kept

    def _refuse(self, proxy, name: str, reason: str, timeout: float | None) -> None:
        self.refused[name] = reason
        self.strategy.names[proxy.cid] = name
        self.strategy.excluded.add(name)
        self.log.error("refusing client %s: %s", name, reason)
        ins = FitIns(Parameters(tensors=[], tensor_type=""), {"phase": "refused", "reason": reason})
        call_clients("fit", [(proxy, ins)], 1, 10.0, 0)  # the client exits with the reason; its failure is expected
        drop_connection(self._client_manager, proxy)

    def _initial_weights(self) -> list[np.ndarray]:
        import torch

        from fedad.common.models.registry import build_model
        from fedad.common.training import get_weights

        torch.manual_seed(self.spec.seed)
        model = build_model(self.spec.model, len(self._features()), window=self.spec.window, **self.spec.sizes)
        weights = get_weights(model)
        # an honest update is the model's float64 size at most (Paillier packs ~7 bytes per value): x2 headroom
        self.max_update_bytes = 2 * 8 * int(sum(w.size for w in weights)) + (1 << 16)
        if self.encrypted:
            self._secure().n_values = int(sum(w.size for w in weights))
            try:
                getattr(self.strategy, "check_settings", lambda: None)()
            except FedadError as exc:
                raise FederationFailed(str(exc)) from None
        return weights

    def _screen_fit(self, rnd: int, results) -> tuple[list, dict[str, str], dict[str, list[int]]]:
        """Run every training answer through the validation layer (and the strategy's own decoding).

        Returns (answers to aggregate, refused name -> reason, capped name -> [claimed, used]). Counts
        above what the node declared at the statistics phase are capped; bit-for-bit replays are refused.
        """
        good, refused, capped = [], {}, {}
        for proxy, res in results:
            name = self.strategy.names.get(proxy.cid, f"cid-{proxy.cid[:8]}")
            try:
                reported = check.name(res.metrics)
                if reported is not None and reported != name:
                    raise check.InvalidMessage(f"answers as {reported!r} but was admitted as {name!r}")
                used, claimed = check.fit_result(res.num_examples, res.metrics, declared=self.declared.get(name))
                check.tensor_bytes(res.parameters.tensors, self.max_update_bytes)
                why = self.replay.check(name, rnd, res.parameters.tensors)
                if why:
                    raise check.InvalidMessage(why)
                self.strategy.check_result(res)
            except Exception as exc:  # noqa: BLE001 - anything one node sends wrong refuses that node only
                refused[name] = str(exc) or type(exc).__name__
                continue
            if used != claimed:
                capped[name] = [claimed, used]
                res.num_examples = used
            good.append((proxy, res))
        return good, refused, capped

    def _train_round(self, rnd: int, timeout: float | None) -> dict:
        t0 = time.perf_counter()
        view = AdmittedClients(self._client_manager, self.admitted, self.strategy)
        instructions = self.strategy.configure_fit(rnd, self.parameters, view)
        results, failures, sent, fit_kinds = self._call_with_model("fit", instructions, timeout, rnd)
        failed = self._record_failures("fit", rnd, failures)
        results = self._vet(results, timeout)
        trained = {self._name(proxy) for proxy, _ in results}
        just_failed = set(self.rounds[-1]["failed"]) if self.rounds else set()  # killed mid-fit: named there
        failed += sorted(
            n for n in self._take_departed() if n not in failed and n not in trained and n not in just_failed
        )
        good, refused, capped = self._screen_fit(rnd, results)
        previous = (self.parameters, getattr(self.strategy, "total_weight", None))  # Paillier: the kept aggregate
        try:
            new, _ = self.strategy.aggregate_fit(rnd, good, failures)
        except FedadError as exc:  # e.g. the key holder refused or is unreachable (secure-robust)
            raise FederationFailed(f"round {rnd}: {exc}") from None
        except Exception as exc:  # noqa: BLE001 - a strategy bug must end the run cleanly, with a report
            self.log.exception("round %d: aggregation failed", rnd)
            raise FederationFailed(f"round {rnd}: aggregation failed ({type(exc).__name__}: {exc})") from None
        rejected = {**refused, **dict(self.strategy.last_rejections)}
        for name, why in rejected.items():
            self.log.warning("round %d: rejected update of %s: %s", rnd, name, why)
        for name, (claimed, used) in capped.items():
            self.log.warning("round %d: %s claims %d examples, capped at the %d it declared", rnd, name, claimed, used)
        used = len(good) - len(self.strategy.last_rejections)
        left_out = self.strategy.untrusted() | self.strategy.excluded  # kept out on purpose: not a drop
        dropped, rejoined = self.participation.observe(
            rnd, trained | (self.participation.last & left_out), set(failed) - left_out
        )
        for name in dropped:
            self.log.warning("round %d: client %s dropped out of the run", rnd, name)
        for name in rejoined:
            self.log.info("round %d: client %s is back in the run", rnd, name)
        need, rule = self._needed()
        if new is None or used < need:
            blame = "; ".join(f"{n}: {w}" for n, w in sorted(rejected.items()))
            raise FederationFailed(
                f"round {rnd}: only {used} usable update(s) from {len(instructions)} client(s) "
                f"({len(failures)} failed{', dropped: ' + ', '.join(dropped) if dropped else ''}), "
                f"fewer than {rule}" + (f"; rejected: {blame}" if blame else "")
            )
        aggregate_refused = None
        if not self.encrypted or self.blind:  # a plaintext global model: never send a broken one
            aggregate_refused = check.aggregate(
                parameters_to_ndarrays(new), [w.shape for w in parameters_to_ndarrays(self.parameters)]
            )
            if aggregate_refused:
                self.log.error(
                    "round %d: new global model refused (%s); keeping the previous one", rnd, aggregate_refused
                )
                new = self.parameters
        if self.downlink is not None and not aggregate_refused:  # the version every node will hold
            new = ndarrays_to_parameters(self.downlink.advance(parameters_to_ndarrays(new)))
        down = {ins_proxy.cid: _payload_bytes(ins.parameters, ins.config) for ins_proxy, ins in sent}
        per_client: list[dict[str, Any]] = []
        cids: list[str] = []
        ok = {proxy.cid for proxy, _ in good}
        for proxy, res in results:
            name = self.strategy.names.get(proxy.cid, f"cid-{proxy.cid[:8]}")
            m = (res.metrics or {}) if proxy.cid in ok else {}
            cids.append(proxy.cid)
            per_client.append(
                {
                    "client": name,
                    "examples": int(res.num_examples) if proxy.cid in ok else 0,
                    "train_loss": float(m.get("train_loss", float("nan"))),
                    "seconds": float(m.get("seconds", 0.0)),
                    "bytes_up": sum(len(t) for t in res.parameters.tensors) + (_payload_bytes(None, m) if m else 0),
                    "bytes_down": down.get(proxy.cid, 0),
                }
            )
        self.parameters = new
        loss, answers = self._evaluate_val(rnd, timeout)
        for cid, c in zip(cids, per_client, strict=True):  # the new model went down for validation too
            c["bytes_down"] += self.val_down.get(cid, (0, None))[0]
            if self.downlink is not None:
                c["model_fit"], c["model_val"] = fit_kinds.get(cid), self.val_down.get(cid, (0, None))[1]
        if self.encrypted and not self.blind and aggregate_refused is None:
            aggregate_refused = self._diverged(answers)
            if aggregate_refused:  # the server cannot read a Paillier aggregate: the nodes' losses on it can tell
                self.log.error(
                    "round %d: new global model refused (%s); keeping the previous one", rnd, aggregate_refused
                )
                self.parameters, self.strategy.total_weight = previous  # type: ignore[attr-defined]  # Paillier's (this branch)
                loss = self.rounds[-1]["loss"] if self.rounds else loss
        counted = [c for c in per_client if c["examples"] > 0 and np.isfinite(c["train_loss"])]
        total = sum(c["examples"] for c in counted) or 1
        record = {
            "round": rnd,
            "clients": sorted(c["client"] for c in per_client),
            "loss": loss,
            "train_loss": sum(c["train_loss"] * c["examples"] for c in counted) / total,
            "bytes_up": sum(c["bytes_up"] for c in per_client),
            "bytes_down": sum(down.values()) + sum(b for b, _ in self.val_down.values()),  # to every node sent to
            "bytes_down_val": sum(b for b, _ in self.val_down.values()),
            "seconds": time.perf_counter() - t0,
            "failed": failed,
            "dropped": dropped,
            "rejoined": rejoined,
            "rejected": rejected,
            "per_client": per_client,
            "strategy": self.strategy.name,
        }
        if self.encrypted and not self.blind and self.median_val_loss is not None:
            record["median_val_loss"] = self.median_val_loss
        if capped:
            record["capped_examples"] = capped
        if getattr(self.strategy, "last_clipped", None):
            record["clipped"] = dict(self.strategy.last_clipped)
        if aggregate_refused:
            record["aggregate_refused"] = aggregate_refused
        if self.downlink is not None:
            record["model_version"] = self.downlink.version
        if self.strategy.last_client_reports:
            record["flags"] = self.strategy.last_client_reports
            record.update(getattr(self.strategy, "last_summary", {}))
        return record

    def _diverged(self, answers) -> str | None:
        """Why the nodes' validation losses say the new (unreadable) global model is broken, or None.

        The median of the nodes' losses (one node cannot move it) against the median of the last round's:
        more than ``DIVERGENCE`` times higher means a node poisoned the encrypted aggregate.
        """
        losses = [float(r.loss) for _, r in answers]
        last = self.rounds[-1].get("median_val_loss") if self.rounds else self.median_val_loss
        self.median_val_loss = float(np.median(losses)) if losses else None
        if self.median_val_loss is None or last is None or last <= 0:
            return None
        if self.median_val_loss > DIVERGENCE * last:
            median = self.median_val_loss
            self.median_val_loss = last  # the kept model's
            return f"median validation loss {median:.3g} is over {DIVERGENCE:g}x the last round's {last:.3g}"
        return None

    def _screen_evaluate(self, phase: str, rnd: int, results) -> list[tuple]:
        """Evaluation answers that pass the validation layer, as (proxy, res, decoded); the others are recorded."""
        kept = []
        for proxy, res in results:
            name = self.strategy.names.get(proxy.cid, f"cid-{proxy.cid[:8]}")
            # validation and test rows (labelled anomalies included) against the training rows it declared:
            # a generous bound for crash-proofing; histogram sums vs. declared counts are the threshold's business
            rows = min(self.max_examples, self.declared.get(name, self.max_examples) * 20 + 10_000)
            try:
                decoded = check.evaluate_result(
                    phase,
                    res.loss,
                    res.num_examples,
                    res.metrics,
                    n_bins=N_BINS,
                    encrypted=self.encrypted,
                    max_blob=1 << 24,
                    max_rows=rows,
                )
            except Exception as exc:  # noqa: BLE001 - a malformed answer refuses that answer only
                self.result_rejections.append({"phase": phase, "round": rnd, "client": name, "reason": str(exc)})
                self.log.warning("round %d %s: refused the answer of %s: %s", rnd, phase, name, exc)
                continue
            kept.append((proxy, res, decoded))
        return kept

    def _evaluate_val(self, rnd: int, timeout: float | None) -> tuple[float | None, list]:
        view = AdmittedClients(self._client_manager, self.admitted, self.strategy)
        instructions = self.strategy.configure_evaluate(rnd, self.parameters, view)
        results, failures, sent, kinds = self._call_with_model("evaluate", instructions, timeout, rnd)
        self.val_down = {p.cid: (_payload_bytes(ins.parameters, ins.config), kinds.get(p.cid)) for p, ins in sent}
        self._record_failures("val", rnd, failures)
        results = self._vet(results, timeout)
        kept = [(p, r) for p, r, _ in self._screen_evaluate("val", rnd, results)]
        loss, _ = self.strategy.aggregate_evaluate(rnd, kept, failures)
        return loss, kept

    def _threshold_and_test(self, rnd: int, timeout: float | None) -> tuple[float, dict]:
        spec = self.spec
        top_k = spec.top_k if spec.score == "topk" else None
        self.threshold_info: dict[str, Any] = {
            "score": spec.score,
            "top_k": top_k,
            "rule": spec.threshold_rule,
            "scope": spec.threshold_scope,
            "alarm_rule": spec.alarm_rule,
            "expected_far": expected_far(spec.threshold_rule, spec.threshold_quantile, spec.target_far),
            "combination": (
                "per node"
                if spec.threshold_scope == "site"
                else "summed encrypted histogram"
                if self.encrypted
                else "pooled histograms clamped to the plausible node thresholds (threshold_combine); histograms "
                "not summing to the declared count dropped"
            ),
        }
        self._admit_newcomers(timeout)  # a node that connected after the last round is checked like the others
        # quarantined nodes, and nodes whose update was refused in the last round: a poisoner's histogram
        # could otherwise move the threshold although none of its updates shaped the model
        refused_last = set(self.rounds[-1].get("rejected", {})) if self.rounds else set()
        untrusted = self.strategy.untrusted() | refused_last
        clients = [
            c
            for c in AdmittedClients(self._client_manager, self.admitted, self.strategy).all().values()
            if self.strategy.names.get(c.cid) not in untrusted
        ]
        if untrusted:
            self.log.info(
                "leaving quarantined or refused client(s) %s out of the threshold and evaluation",
                ", ".join(sorted(untrusted)),
            )
        if self.encrypted:  # a node admitted after the last round: the histograms' headroom must count it too
            secure = self._secure()
            secure.max_clients = max(secure.max_clients, len(clients))
        ins = EvaluateIns(self.parameters, self._config("threshold", rnd))
        results, failures, _, _ = self._call_with_model("evaluate", [(c, ins) for c in clients], timeout, rnd)
        self._record_failures("threshold", rnd, failures)
        results = self._vet(results, timeout)
        answers = self._screen_evaluate("threshold", rnd, results)
        if self.encrypted:  # summed encrypted histogram goes back; each client decrypts it and sets the threshold
            secure = self._secure()
            msgs = []
            for proxy, _, d in answers:
                try:  # a malformed ciphertext message refuses that node's histogram, not the run
                    sum_counts(secure.public_key, [d["hist_enc"]], secure.max_clients, N_BINS)
                    msgs.append(d["hist_enc"])
                except Exception as exc:  # noqa: BLE001
                    name = self.strategy.names.get(proxy.cid, proxy.cid[:8])
                    self.result_rejections.append(
                        {
                            "phase": "threshold",
                            "round": rnd,
                            "client": name,
                            "reason": f"bad encrypted histogram: {exc}",
                        }
                    )
            if not msgs:
                raise FederationFailed("no client sent validation scores for the threshold")
            hist_sum = sum_counts(secure.public_key, msgs, secure.max_clients, N_BINS)
            if self.blind:  # secure-robust: the key holder blind-decrypts the sum, the server sets the threshold
                try:
                    counts = self._blind().decrypt_histogram(hist_sum, rnd + 1, len(msgs), N_BINS)
                except FedadError as exc:
                    raise FederationFailed(f"threshold: {exc}") from None
                threshold = rule_threshold(counts, self.spec)
                ins = EvaluateIns(self.parameters, self._config("test", rnd, threshold=threshold))
            else:
                ins = EvaluateIns(self.parameters, self._config("test", rnd, hist_sum_enc=hist_sum))
        else:
            histograms = {}
            for proxy, res, d in answers:
                histograms[self._name(proxy)] = (d["hist"], int(res.num_examples))
            try:
                combined = combined_threshold(histograms, self.spec)
            except ValueError as exc:
                raise FederationFailed(f"no client sent validation scores for the threshold ({exc})") from None
            for name, why in combined.dropped.items():
                self.log.warning("threshold: left out the histogram of %s: %s", name, why)
            threshold = combined.threshold
            self.feature_scales = pooled_feature_scales([res.metrics for _, res, _ in answers])
            small = rms_scaled_nodes({self._name(proxy): res.metrics for proxy, res, _ in answers})
            if small and self.spec.threshold_scope == "global":
                self.threshold_info["rms_scaled_nodes"] = small
                self.log.warning(
                    "threshold: %s scored with RMS error scales (fewer than %d training samples) beside nodes "
                    "with %g-quantile scales: their scores run higher against the one global threshold (more "
                    "false alarms there); --threshold-scope site gives every node its own",
                    ", ".join(small),
                    TAIL_MIN_SAMPLES,
                    TAIL_QUANTILE,
                )
            self.threshold_info.update(
                pooled=combined.pooled, node_thresholds=combined.node_thresholds, dropped=combined.dropped
            )
            ins = EvaluateIns(self.parameters, self._config("test", rnd, threshold=threshold))
        results, failures, _, _ = self._call_with_model("evaluate", [(c, ins) for c in clients], timeout, rnd)
        self._record_failures("test", rnd, failures)
        results = self._vet(results, timeout)
        self._tell_quarantined(ins, untrusted, rnd, timeout)
        tp = fp = tn = fn = 0
        pos, neg = np.zeros(N_BINS, np.int64), np.zeros(N_BINS, np.int64)
        per_client, thresholds = {}, []
        tested = self._screen_evaluate("test", rnd, results)
        for proxy, res, d in tested:
            if "threshold" in d:
                thresholds.append(d["threshold"])
            if "tp" not in d:
                continue
            tp, fp, tn, fn = tp + d["tp"], fp + d["fp"], tn + d["tn"], fn + d["fn"]
            pos += d["pos_hist"]
            neg += d["neg_hist"]
            entry: dict[str, Any] = {k: d[k] for k in ("tp", "fp", "tn", "fn")}
            if "outside_range" in d:  # the node's share of test rows outside its training rows' range
                features, i = self._features(), d["outside_feature"]
                entry["outside_training_range"] = d["outside_range"]
                entry["most_outside_feature"] = features[i] if 0 <= i < len(features) else None
            per_client[self.strategy.names.get(proxy.cid, client_name(res, proxy))] = entry
        metrics = metrics_from_counts(tp, fp, tn, fn, pos, neg) if (tp + fp + tn + fn) else {}
        outside = describe_outside(per_client)
        if outside:
            self.log.warning("%s", outside)
        self.score_histograms = (pos, neg)
        metrics["per_client"] = per_client
        if self.spec.threshold_scope == "site":  # each node used its own threshold; report them
            threshold = float(np.median(thresholds)) if thresholds else float("nan")
            self.threshold_info["site_thresholds"] = {
                self._name(proxy): d["threshold"] for proxy, _, d in tested if "threshold" in d
            }
        elif self.encrypted and not self.blind:
            if not thresholds or max(thresholds) != min(thresholds):
                raise FederationFailed(f"clients disagree on the decrypted threshold: {sorted(set(thresholds))}")
            threshold = thresholds[0]
        self.threshold_info.update(threshold=threshold)
        return threshold, metrics

    def _tell_quarantined(self, ins: EvaluateIns, untrusted: set[str], rnd: int, timeout: float | None) -> None:
        """Quarantined nodes get the final model and threshold with the round they were quarantined in: they
        say so and still write their model; what they report back is not counted."""
        names = self.strategy.names
        told = [
            (c, EvaluateIns(ins.parameters, {**ins.config, "quarantined": self.quarantined_in.get(n, 0)}))
            for c in self.strategy.clients(self._client_manager)
            if (n := names.get(c.cid, "")) in untrusted and c.cid in self.admitted
        ]
        if told:
            _, failures, _, _ = self._call_with_model("evaluate", told, timeout, rnd)
            self._record_failures("quarantined", rnd, failures)

    # ---------------------------------------------------------------- checkpoints
    def _save_checkpoint(self, rnd: int) -> None:
        ck = self.out / CHECKPOINT_DIR
        ck.mkdir(parents=True, exist_ok=True)
        weights = parameters_to_ndarrays(self.parameters)
        tmp = ck / ".weights.tmp.npz"
        np.savez(tmp, *weights)
        os.replace(tmp, ck / "weights.npz")
        if self.downlink is not None:  # the exact model: the broadcast one plus what the steps have not carried yet
            tmp = ck / ".exact.tmp.npz"
            np.savez(tmp, *self.downlink.exact)
            os.replace(tmp, ck / "exact.npz")
        if self.encrypted:
            scaler = None
        elif self.scaler is None:
            raise RuntimeError("no federated scaler to checkpoint (the statistics phase sets it before any round)")
        else:
            scaler = self.scaler.to_dict()
        state = {
            "round": rnd,
            "spec": self.spec.to_dict(),
            "scaler": scaler,
            "scaler_enc": self.scaler_bytes.hex() if self.encrypted else None,
            "strategy": self.strategy.state_dict(),
            "rounds": self.rounds,
            "refused": self.refused,
            "failures": self.failures,
            "declared": self.declared,
            "quarantined_in": self.quarantined_in,
            "resumed": self.resumed,
            "participation": self.participation.to_dict(),
            "model_version": self.downlink.version if self.downlink is not None else None,
        }
        _atomic_write(ck / "state.json", json.dumps(state))

    def _load_checkpoint(self) -> int:
        ck = self.out / CHECKPOINT_DIR
        state = json.loads((ck / "state.json").read_text())
        with np.load(ck / "weights.npz", allow_pickle=False) as z:
            weights = [z[f"arr_{i}"] for i in range(len(z.files))]
        self.spec = FederationSpec.from_dict(state["spec"])
        if self.encrypted:
            self.scaler_bytes = bytes.fromhex(state["scaler_enc"])
        else:
            self.scaler = ScalerStats.from_dict(state["scaler"])
            self.scaler_bytes = encode_scaler_stats(self.scaler)
        self.strategy.load_state_dict(state["strategy"])
        self.rounds, self.refused, self.failures = state["rounds"], state["refused"], state["failures"]
        self.declared = {str(k): int(v) for k, v in state.get("declared", {}).items()}
        self.quarantined_in = {str(k): int(v) for k, v in state.get("quarantined_in", {}).items()}
        self.resumed = list(state.get("resumed", []))
        self.participation = Participation.from_dict(state.get("participation"))
        if not self.participation.started and self.rounds:  # a checkpoint from before participation was kept
            self.participation.started = list(self.rounds[0]["clients"])
            self.participation.last = set(self.rounds[-1]["clients"])
        self.parameters = ndarrays_to_parameters(weights)
        if self.downlink is not None:
            exact = None
            if (ck / "exact.npz").is_file() and state.get("model_version") is not None:
                with np.load(ck / "exact.npz", allow_pickle=False) as z:
                    exact = [z[f"arr_{i}"] for i in range(len(z.files))]
            self.downlink.start(weights, exact, int(state.get("model_version") or 0) if exact is not None else 0)
        n_values = getattr(self.strategy, "n_values", None) or int(sum(w.size for w in weights))
        self.max_update_bytes = 2 * 8 * int(n_values) + (1 << 16)
        return int(state["round"])

    # ---------------------------------------------------------------- the run
    def fit(self, num_rounds: int, timeout: float | None) -> tuple[History, float]:
        """Flower's entry point: never raises, so Flower always stops its gRPC server (no hung process);
        why a run ended early is kept in ``self.error`` for the report."""
        t_start = time.perf_counter()
        try:
            self._run(num_rounds, timeout, t_start)
        except FederationFailed as exc:
            self.error = str(exc)
        except Exception as exc:  # noqa: BLE001 - a bug must still end the run with a report, not a hang
            self.log.exception("the run failed")
            self.error = f"internal error: {type(exc).__name__}: {exc}"
        if self.error:
            self.stopped = self.stop_record(self.error)
        return History(), time.perf_counter() - t_start

    def stop_record(self, reason: str) -> dict:
        """Where and why a run that could not go on stopped: the report's ``stopped`` block."""
        started = len(self.participation.started)
        connected = sorted(self._name(c) for c in self._admitted_view().all().values())
        dropped = self.participation.dropped_in()
        for name in sorted(self.participation.last - set(connected) - set(dropped)):  # gone before the round began
            dropped[name] = self.current_round
        return {
            "reason": reason,
            "rounds_completed": self.rounds[-1]["round"] if self.rounds else 0,
            "in_round": self.current_round,
            "started": list(self.participation.started),
            "continue_quorum": continue_quorum(self.min_fit_clients, started) if started else None,
            "min_clients": self.min_clients,
            "connected": connected,
            "dropped": dropped,
        }

    def disconnect_all_clients(self, timeout: float | None) -> None:
        """End every connection within seconds: after a failed run each admitted node first hears why (it exits
        non-zero saying so); then Flower's reconnect instruction, bounded so a dead peer cannot hold the server."""
        bound = END_TIMEOUT if timeout is None else min(timeout, END_TIMEOUT)
        if self.error:
            ins = FitIns(Parameters(tensors=[], tensor_type=""), {"phase": "ended", "reason": self.error})
            told = list(self._admitted_view().all().values())
            if told:
                self.log.info("telling %d connected client(s) that the run stopped", len(told))
                call_clients("fit", [(c, ins) for c in told], self._workers(len(told)), bound, 0)
        super().disconnect_all_clients(timeout=bound)

    def _run(self, num_rounds: int, timeout: float | None, t_start: float) -> None:
        start = 1
        if self.strategy.compress is not None and not self.encrypted:
            self.downlink = Downlink()
        if self.resume:
            start = self._load_checkpoint() + 1
            replays = start if start <= num_rounds else None  # None: only the threshold and test phase again
            self.resumed.append({"after_round": start - 1, "replayed_round": replays, "time": time.time()})
            self.log.info("resuming after round %d from %s", start - 1, self.out / CHECKPOINT_DIR)
            _atomic_write(self.out / "rounds.jsonl", "".join(json.dumps(r) + "\n" for r in self.rounds))
            self._first_admission(timeout)
        else:
            (self.out / "rounds.jsonl").write_text("")
            self._first_admission(timeout)
            self.parameters = ndarrays_to_parameters(self._initial_weights())
            if self.downlink is not None:
                self.downlink.start(parameters_to_ndarrays(self.parameters))
            if self.encrypted and not self.blind:  # the initial model's losses: round 1's divergence baseline
                _, answers = self._evaluate_val(0, timeout)
                losses = [float(r.loss) for _, r in answers]
                self.median_val_loss = float(np.median(losses)) if losses else None
        if self.async_buffer:
            last, reason, lowest = self._async_rounds(start, num_rounds, timeout)
        else:
            last, reason, lowest = self._sync_rounds(start, num_rounds, timeout)
        self._finish(num_rounds, timeout, t_start, last, reason, lowest)

    def _async_rounds(self, start: int, num_rounds: int, timeout: float | None) -> tuple[int, str | None, Any]:
        """--async-buffer K: buffered asynchronous versions instead of rounds (``fedad.server.async_rounds``)."""
        from fedad.server.async_rounds import AsyncRounds

        try:
            return AsyncRounds(self, self.async_buffer, self.max_staleness, self.server_lr).run(
                start, num_rounds, timeout
            )
        except FedadError as exc:
            raise FederationFailed(str(exc)) from None

    def _sync_rounds(self, start: int, num_rounds: int, timeout: float | None) -> tuple[int, str | None, Any]:
        """Rounds ``start``..``num_rounds`` (fewer under --rounds auto or a paced stop): (last, reason, lowest)."""
        last, reason = start - 1, None
        lowest: tuple[int, float, Parameters] | None = None  # --rounds auto: the model of the lowest loss
        for rnd in range(start, num_rounds + 1):
            if self.stop_rule is not None:
                reason = stop_reason([r["loss"] for r in self.rounds], self.stop_rule)
                if reason:
                    break
            if not self.pace(rnd):
                reason = f"continuous run stopped before round {rnd}"
                break
            self.current_round = rnd
            self._admit_newcomers(timeout)
            self._wait(f"round {rnd}", timeout)
            record = self._train_round(rnd, timeout)
            for name in sorted(self.strategy.untrusted() - set(self.quarantined_in)):
                self.quarantined_in[name] = rnd
                self.log.warning("round %d: client %s is quarantined from now on", rnd, name)
            self.rounds.append(record)
            with open(self.out / "rounds.jsonl", "a") as f:
                f.write(json.dumps(record) + "\n")
            self.on_round(record)
            self._save_checkpoint(rnd)
            last = rnd
            # (not under Paillier: an older encrypted aggregate would need that round's decryption settings)
            if (
                self.stop_rule is not None
                and record["loss"] is not None
                and not (self.encrypted and not self.blind)
                and (lowest is None or record["loss"] < lowest[1])
            ):
                lowest = (rnd, record["loss"], self.parameters)
            self.log.info(
                "round %d/%s: %d clients, val loss %.5f, train loss %.5f, %.2f s, %.1f kB up, %.1f kB down",
                rnd,
                f"<={num_rounds}" if self.stop_rule else num_rounds,
                len(record["clients"]),
                record["loss"] or float("nan"),
                record["train_loss"],
                record["seconds"],
                record["bytes_up"] / 1e3,
                record["bytes_down"] / 1e3,
            )
            flag_line = format_round_flags(record)
            if flag_line:
                self.log.info("%s", flag_line)
        return last, reason, lowest

    def _finish(
        self, num_rounds: int, timeout: float | None, t_start: float, last: int, reason: str | None, lowest: Any
    ) -> None:
        """After the rounds: the stop reason and the model kept, then threshold, test and the run's result."""
        unit = "version" if self.async_buffer else "round"  # async: rounds are global versions
        if self.stop_rule is not None:
            reason = (
                reason
                or stop_reason([r["loss"] for r in self.rounds], self.stop_rule, unit)
                or f"reached the cap of {num_rounds} {unit}s"
            )
            self.log.info("stopped after %s %d: %s", unit, last, reason)
            if lowest is not None and lowest[0] != last:
                self.parameters = lowest[2]
                self.log.info("using the global model of %s %d (lowest validation loss %.5g)", unit, *lowest[:2])
        convergence = {
            "rounds_run": last,
            "rule": "auto" if self.stop_rule else "fixed",
            "stop_reason": reason or f"fixed number of {unit}s ({num_rounds})",
            "model_round": lowest[0] if lowest is not None else last,
            **(self.stop_rule.to_dict() if self.stop_rule else {}),
        }
        if self.async_buffer:  # rounds are global versions, one every K answers
            convergence.update(
                async_buffer=self.async_buffer, max_staleness=self.max_staleness, server_lr=self.server_lr
            )
        threshold, metrics = self._threshold_and_test(last, timeout)
        self.result = {
            "threshold": threshold,
            "metrics": metrics,
            "seconds": time.perf_counter() - t_start,
            "convergence": convergence,
            "detection": self.threshold_info,
        }

    def _first_admission(self, timeout: float | None) -> None:
        """Wait for --min-clients connections (resumed: the continue quorum of the nodes that started, as some may
        have dropped before the restart), ask them for statistics, then wait until enough are admitted."""
        need, rule = self._needed()
        if not self._client_manager.wait_for(need, timeout=int(self.wait_timeout)):
            n = self._client_manager.num_available()
            raise FederationFailed(
                f"waiting for clients: only {n} client(s) connected after waiting {self.wait_timeout:.0f} s; {rule}"
            )
        if self.scaler_bytes:  # resumed: the federation's features and scaler come from the checkpoint
            self._admit_newcomers(timeout)
        else:
            self._stats_phase(timeout)
        self._wait("waiting for clients", timeout)

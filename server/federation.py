"""The federation's round loop: statistics, training rounds, threshold and evaluation, with checkpoints.

A ``flwr.server.Server`` subclass, so Flower's gRPC runtime drives it; strategies only aggregate.
"""
from __future__ import annotations

import json
import logging
import os
import time
from collections import Counter
from pathlib import Path

import numpy as np
from flwr.common import EvaluateIns, FitIns, Parameters, ndarrays_to_parameters, parameters_to_ndarrays
from flwr.server import History, Server
from flwr.server.client_manager import SimpleClientManager
from flwr.server.server import evaluate_clients, fit_clients

from fedad.common.federation_spec import FederationSpec
from fedad.common.federated_stats import (decode_histogram, decode_scaler_stats, encode_scaler_stats,
                                          global_threshold, metrics_from_counts, N_BINS)
from fedad.common.crypto.statistics import decode_fixed_point, sum_counts, sum_fixed_point
from fedad.common.errors import FedadError
from fedad.common.models.registry import model_aligns
from fedad.common.preprocessing import ScalerStats
from fedad.common.wire import WireError, decode_json, encode_array, encode_json
from fedad.server.strategies.base import FedadStrategy, client_name

CHECKPOINT_DIR = "checkpoint"


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


class FedadServer(Server):
    """Runs stats -> R training rounds -> threshold -> test, recording every round in ``out_dir``."""

    def __init__(self, *, strategy: FedadStrategy, spec: FederationSpec, out_dir: Path, min_clients: int,
                 wait_timeout: float, resume: bool, log: logging.Logger) -> None:
        super().__init__(client_manager=SimpleClientManager(), strategy=strategy)
        self.strategy: FedadStrategy = strategy
        self.spec, self.out, self.min_clients = spec, Path(out_dir), min_clients
        self.wait_timeout, self.resume, self.log = wait_timeout, resume, log
        self.scaler: ScalerStats | None = None
        self.scaler_bytes = b""
        self.rounds: list[dict] = []
        self.refused: dict[str, str] = {}
        self.failures: list[dict] = []
        self.result: dict = {}
        self.admitted: set[str] = set()  # Flower cids whose features were checked
        self.encrypted = bool(getattr(strategy, "encrypted", False))  # Paillier: sums stay ciphertexts here
        self.blind = bool(getattr(strategy, "plaintext_model", False))  # secure-robust: blind-decrypted aggregates
        # models with an alignment term get the global embedding; not under Paillier, where the server learns nothing
        self.aligns = model_aligns(spec.model) and not (self.encrypted and not self.blind)
        strategy.fit_config = self._fit_config
        strategy.evaluate_config = lambda r: self._config("val", r)

    # ---------------------------------------------------------------- configs sent to clients
    def _config(self, phase: str, rnd: int, **extra) -> dict:
        cfg = {"phase": phase, "round": rnd, "spec": encode_json(self.spec.to_dict()), **extra}
        if self.encrypted:
            cfg.update(self.strategy.secure_config())
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
    def _wait(self, what: str) -> None:
        if not self._client_manager.wait_for(self.min_clients, timeout=int(self.wait_timeout)):
            n = self._client_manager.num_available()
            raise FederationFailed(f"{what}: only {n} client(s) connected after waiting {self.wait_timeout:.0f} s; "
                                   f"--min-clients is {self.min_clients}")

    def _record_failures(self, phase: str, rnd: int, failures) -> list[str]:
        names = []
        for f in failures:
            if isinstance(f, BaseException):
                who, why = "unknown", f"{type(f).__name__}: {str(f).splitlines()[0] if str(f) else ''}"
            else:
                proxy, res = f
                who, why = self.strategy.names.get(proxy.cid, f"cid-{proxy.cid[:8]}"), res.status.message
            self.failures.append({"phase": phase, "round": rnd, "client": who, "error": why})
            self.log.warning("round %d %s: client %s failed (%s)", rnd, phase, who, why)
            names.append(who)
        return names

    # ---------------------------------------------------------------- phases
    def _collect_stats(self, clients, timeout: float | None) -> list[tuple]:
        """Ask clients for their feature names and scaler statistics; (proxy, name, features, stats) each."""
        ins = FitIns(Parameters(tensors=[], tensor_type=""), self._config("stats", 0))
        results, failures = fit_clients([(c, ins) for c in clients], self.max_workers, timeout, 0)
        self._record_failures("stats", 0, failures)
        reports = []
        for proxy, res in results:
            name = client_name(res, proxy)
            self.strategy.names[proxy.cid] = name
            try:
                feats = tuple(decode_json(res.metrics["features"]))
                if self.encrypted:
                    decode_fixed_point(self.strategy.public_key, res.metrics["stats_enc"], 1 + 2 * len(feats))
                    stats = res.metrics["stats_enc"]
                else:
                    stats = decode_scaler_stats(res.metrics["stats"], len(feats))
            except (KeyError, ValueError) as exc:
                self._refuse(proxy, name, f"malformed statistics: {exc}", timeout)
                continue
            reports.append((proxy, name, feats, stats))
        return reports

    def _admit(self, reports, expected: tuple, timeout: float | None) -> list:
        """Admit clients whose features match the federation's; refuse the others (both sides say why)."""
        kept = []
        for proxy, name, feats, stats in reports:
            if feats != expected:
                self._refuse(proxy, name, f"its data has {len(feats)} features {list(feats)[:4]}..., the federation's "
                             f"model takes {len(expected)}: {list(expected)[:4]}...", timeout)
            else:
                self.admitted.add(proxy.cid)
                kept.append(stats)
        return kept

    def _stats_phase(self, timeout: float | None) -> None:
        """Federated scaler: the majority's feature set wins, clients send sums instead of rows."""
        reports = self._collect_stats(self.strategy.clients(self._client_manager), timeout)
        if not reports:
            raise FederationFailed("no client sent usable statistics")
        majority, _ = Counter(f for _, _, f, _ in reports).most_common(1)[0]
        names = self.spec.feature_names
        expected = tuple(names) if names else majority
        kept = self._admit(reports, expected, timeout)
        self.spec.feature_names = list(expected)
        if self.encrypted:  # the server only multiplies ciphertexts; clients decrypt the summed statistics
            self.scaler_bytes = sum_fixed_point(self.strategy.public_key, kept, 1 + 2 * len(expected))
            self.log.info("federated scaler from %d clients (encrypted sums), %d features", len(kept), len(expected))
            return
        self.scaler = ScalerStats.merge(kept)
        self.scaler_bytes = encode_scaler_stats(self.scaler)
        self.log.info("federated scaler from %d clients, %d training rows, %d features", len(kept), self.scaler.count,
                      len(expected))

    def _admit_newcomers(self, timeout: float | None) -> None:
        """Clients that connected (or reconnected) after the statistics phase get their features checked."""
        new = [c for cid, c in self._client_manager.all().items()
               if cid not in self.admitted and self.strategy.names.get(cid) not in self.strategy.excluded]
        if new:
            kept = self._admit(self._collect_stats(new, timeout), tuple(self.spec.feature_names), timeout)
            self.log.info("admitted %d newly connected client(s)", len(kept))

    def _refuse(self, proxy, name: str, reason: str, timeout: float | None) -> None:
        self.refused[name] = reason
        self.strategy.excluded.add(name)
        self.log.error("refusing client %s: %s", name, reason)
        ins = FitIns(Parameters(tensors=[], tensor_type=""), {"phase": "refused", "reason": reason})
        fit_clients([(proxy, ins)], 1, 10.0, 0)  # the client exits with the reason; its failure is expected

    def _initial_weights(self) -> list[np.ndarray]:
        import torch

        from fedad.common.models.registry import build_model
        from fedad.common.training import get_weights

        torch.manual_seed(self.spec.seed)
        model = build_model(self.spec.model, len(self.spec.feature_names), window=self.spec.window, **self.spec.sizes)
        weights = get_weights(model)
        if self.encrypted:
            self.strategy.n_values = int(sum(w.size for w in weights))
            try:
                getattr(self.strategy, "check_settings", lambda: None)()
            except FedadError as exc:
                raise FederationFailed(str(exc)) from None
        return weights

    def _train_round(self, rnd: int, timeout: float | None) -> dict:
        t0 = time.perf_counter()
        instructions = self.strategy.configure_fit(rnd, self.parameters, self._client_manager)
        results, failures = fit_clients(instructions, self.max_workers, timeout, rnd)
        failed = self._record_failures("fit", rnd, failures)
        try:
            new, _ = self.strategy.aggregate_fit(rnd, results, failures)
        except FedadError as exc:  # e.g. the key holder refused or is unreachable (secure-robust)
            raise FederationFailed(f"round {rnd}: {exc}") from None
        rejected = dict(self.strategy.last_rejections)
        for name, why in rejected.items():
            self.log.warning("round %d: rejected update of %s: %s", rnd, name, why)
        used = len(results) - len(rejected)
        if new is None or used < self.min_clients:
            raise FederationFailed(f"round {rnd}: only {used} usable update(s) from {len(instructions)} client(s) "
                                   f"({len(failures)} failed), fewer than --min-clients {self.min_clients}")
        down = {ins_proxy.cid: _payload_bytes(ins.parameters, ins.config) for ins_proxy, ins in instructions}
        per_client = []
        for proxy, res in results:
            name = client_name(res, proxy)
            m = res.metrics or {}
            per_client.append({"client": name, "examples": int(res.num_examples),
                               "train_loss": float(m.get("train_loss", float("nan"))),
                               "seconds": float(m.get("seconds", 0.0)),
                               "bytes_up": _payload_bytes(res.parameters, m), "bytes_down": down.get(proxy.cid, 0)})
        self.parameters = new
        loss, _ = self._evaluate_val(rnd, timeout)
        total = sum(c["examples"] for c in per_client) or 1
        record = {
            "round": rnd, "clients": sorted(c["client"] for c in per_client), "loss": loss,
            "train_loss": sum(c["train_loss"] * c["examples"] for c in per_client) / total,
            "bytes_up": sum(c["bytes_up"] for c in per_client), "bytes_down": sum(c["bytes_down"] for c in per_client),
            "seconds": time.perf_counter() - t0, "failed": failed, "rejected": rejected, "per_client": per_client,
            "strategy": self.strategy.name,
        }
        if self.strategy.last_client_reports:
            record["flags"] = self.strategy.last_client_reports
            record.update(getattr(self.strategy, "last_summary", {}))
        return record

    def _evaluate_val(self, rnd: int, timeout: float | None) -> tuple[float | None, list]:
        instructions = [(c, ins) for c, ins in self.strategy.configure_evaluate(rnd, self.parameters,
                                                                                self._client_manager)
                        if c.cid in self.admitted]  # a node that connected mid-round is checked first
        results, failures = evaluate_clients(instructions, self.max_workers, timeout, rnd)
        self._record_failures("val", rnd, failures)
        loss, _ = self.strategy.aggregate_evaluate(rnd, results, failures)
        return loss, results

    def _threshold_and_test(self, rnd: int, timeout: float | None) -> tuple[float, dict]:
        self._admit_newcomers(timeout)  # a node that connected after the last round is checked like the others
        untrusted = self.strategy.untrusted()
        clients = [c for c in self.strategy.clients(self._client_manager)
                   if self.strategy.names.get(c.cid) not in untrusted and c.cid in self.admitted]
        if untrusted:  # a quarantined poisoner could otherwise inflate the threshold with its histogram
            self.log.info("leaving quarantined client(s) %s out of the threshold and evaluation",
                          ", ".join(sorted(untrusted)))
        ins = EvaluateIns(self.parameters, self._config("threshold", rnd))
        results, failures = evaluate_clients([(c, ins) for c in clients], self.max_workers, timeout, rnd)
        self._record_failures("threshold", rnd, failures)
        if self.encrypted:  # summed encrypted histogram goes back; each client decrypts it and sets the threshold
            msgs = [res.metrics["hist_enc"] for _, res in results if "hist_enc" in (res.metrics or {})]
            if not msgs:
                raise FederationFailed("no client sent validation scores for the threshold")
            hist_sum = sum_counts(self.strategy.public_key, msgs, self.strategy.max_clients, N_BINS)
            if self.blind:  # secure-robust: the key holder blind-decrypts the sum, the server sets the threshold
                try:
                    counts = self.strategy.decrypt_histogram(hist_sum, rnd + 1, len(msgs), N_BINS)
                except FedadError as exc:
                    raise FederationFailed(f"threshold: {exc}") from None
                threshold = global_threshold(counts, self.spec.threshold_quantile)
                ins = EvaluateIns(self.parameters, self._config("test", rnd, threshold=threshold))
            else:
                ins = EvaluateIns(self.parameters, self._config("test", rnd, hist_sum_enc=hist_sum))
        else:
            counts = np.zeros(N_BINS, dtype=np.int64)
            for _, res in results:
                counts += decode_histogram(res.metrics["hist"])
            if counts.sum() == 0:
                raise FederationFailed("no client sent validation scores for the threshold")
            threshold = global_threshold(counts, self.spec.threshold_quantile)
            ins = EvaluateIns(self.parameters, self._config("test", rnd, threshold=threshold))
        results, failures = evaluate_clients([(c, ins) for c in clients], self.max_workers, timeout, rnd)
        self._record_failures("test", rnd, failures)
        tp = fp = tn = fn = 0
        pos, neg = np.zeros(N_BINS, np.int64), np.zeros(N_BINS, np.int64)
        per_client, thresholds = {}, []
        for proxy, res in results:
            m = res.metrics or {}
            if "threshold" in m:
                thresholds.append(float(m["threshold"]))
            if "tp" not in m:
                continue
            tp, fp, tn, fn = tp + int(m["tp"]), fp + int(m["fp"]), tn + int(m["tn"]), fn + int(m["fn"])
            pos += decode_histogram(m["pos_hist"])
            neg += decode_histogram(m["neg_hist"])
            per_client[client_name(res, proxy)] = {k: int(m[k]) for k in ("tp", "fp", "tn", "fn")}
        metrics = metrics_from_counts(tp, fp, tn, fn, pos, neg) if (tp + fp + tn + fn) else {}
        self.score_histograms = (pos, neg)
        metrics["per_client"] = per_client
        if self.encrypted and not self.blind:
            if not thresholds or max(thresholds) != min(thresholds):
                raise FederationFailed(f"clients disagree on the decrypted threshold: {sorted(set(thresholds))}")
            threshold = thresholds[0]
        return threshold, metrics

    # ---------------------------------------------------------------- checkpoints
    def _save_checkpoint(self, rnd: int) -> None:
        ck = self.out / CHECKPOINT_DIR
        ck.mkdir(parents=True, exist_ok=True)
        weights = parameters_to_ndarrays(self.parameters)
        tmp = ck / ".weights.tmp.npz"
        np.savez(tmp, *weights)
        os.replace(tmp, ck / "weights.npz")
        state = {"round": rnd, "spec": self.spec.to_dict(),
                 "scaler": None if self.encrypted else self.scaler.to_dict(),
                 "scaler_enc": self.scaler_bytes.hex() if self.encrypted else None,
                 "strategy": self.strategy.state_dict(), "rounds": self.rounds, "refused": self.refused,
                 "failures": self.failures}
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
        self.parameters = ndarrays_to_parameters(weights)
        return int(state["round"])

    # ---------------------------------------------------------------- the run
    def fit(self, num_rounds: int, timeout: float | None) -> tuple[History, float]:
        t_start = time.perf_counter()
        start = 1
        if self.resume:
            start = self._load_checkpoint() + 1
            self.log.info("resuming after round %d from %s", start - 1, self.out / CHECKPOINT_DIR)
            _atomic_write(self.out / "rounds.jsonl", "".join(json.dumps(r) + "\n" for r in self.rounds))
            self._wait("waiting for clients")
        else:
            (self.out / "rounds.jsonl").write_text("")
            self._wait("waiting for clients")
            self._stats_phase(timeout)
            self.parameters = ndarrays_to_parameters(self._initial_weights())
        for rnd in range(start, num_rounds + 1):
            self._wait(f"round {rnd}")
            self._admit_newcomers(timeout)
            record = self._train_round(rnd, timeout)
            self.rounds.append(record)
            with open(self.out / "rounds.jsonl", "a") as f:
                f.write(json.dumps(record) + "\n")
            self._save_checkpoint(rnd)
            self.log.info("round %d/%d: %d clients, val loss %.5f, train loss %.5f, %.2f s, %.1f kB up", rnd,
                          num_rounds, len(record["clients"]), record["loss"] or float("nan"), record["train_loss"],
                          record["seconds"], record["bytes_up"] / 1e3)
        threshold, metrics = self._threshold_and_test(num_rounds, timeout)
        self.result = {"threshold": threshold, "metrics": metrics, "seconds": time.perf_counter() - t_start}
        return History(), time.perf_counter() - t_start

"""Flower adapter of a site: decodes the server's instructions, calls ``Site``, encodes the answers."""

from __future__ import annotations

import hashlib
import logging
import time
from collections.abc import Callable
from typing import Any

import flwr
import numpy as np

from fedad.client.site import Site
from fedad.common.broadcast import BroadcastError, HeldModel
from fedad.common.errors import FedadError
from fedad.common.federated_stats import (
    N_BINS,
    decode_scaler_stats,
    encode_histogram,
    encode_scaler_stats,
    histogram,
    rule_threshold,
)
from fedad.common.federation_spec import FederationSpec
from fedad.common.preprocessing import ScalerStats
from fedad.common.threshold_rule import threshold_by_rule
from fedad.common.wire import WireError, decode_array, decode_json, encode_array, encode_json


class RunStopped(FedadError):
    """The server could not go on with the run (quorum lost, timeout, fatal error) and told this node so."""

    exit_code = 1


class Contact:
    """Remembers whether the server has talked to us since the last (re)connection."""

    def __init__(self) -> None:
        self.seen = False

    def __call__(self) -> bool:
        return self.seen

    def reset(self) -> None:
        self.seen = False


class FedadClient(flwr.client.NumPyClient):
    """Answers the server's phases: stats, fit, val, threshold, test (and refused).

    In Paillier mode (``secure``) statistics, histograms and weights leave encrypted, and the global model
    and sums arrive encrypted; only this client's private key opens them. Under secure-robust statistics,
    histograms, updates and embeddings leave encrypted under the public key; model and threshold arrive
    in plaintext.
    """

    def __init__(self, site: Site, name: str, log: logging.Logger, attack=None, secure=None, model_out=None):
        self.site, self.name, self.log, self.attack, self.secure = site, name, log, attack, secure
        self.model_out = model_out
        self.slowdown = 1.0  # --slowdown F: answer F times slower than training takes (a test and bench aid)
        self.quarantined: int | None = None  # the round the server quarantined this node in, once it says so
        self.contact = Contact()
        self._scaler_cache: tuple[bytes, ScalerStats] | None = None
        self._global_cache: tuple[bytes, list[np.ndarray]] | None = None  # one decryption per aggregate
        self.held = HeldModel()  # --compress: the broadcast model this node holds (versions arrive as q8 steps)
        self._site_threshold: float | None = None  # --threshold-scope site: from this node's own scores only
        # called with (global weights, config, threshold or None) for every global model (live scoring, --stream)
        self.on_global: Callable[[list[np.ndarray], dict, float | None], None] | None = None
        # records to train on besides the training split (--learn-from-stream), asked for at every round
        self.extra_rows: Callable[[], np.ndarray | None] | None = None

    def _spec(self, config: dict) -> FederationSpec:
        raw = config["spec"]
        spec = FederationSpec.from_dict(decode_json(raw))
        self.site.check_features(spec)
        # the statistics phase sends the spec without feature names (the server checks them): same model either way
        unnamed = encode_json({**spec.to_dict(), "feature_names": None})
        self.site.configure(spec, hashlib.sha256(unnamed.encode()).hexdigest())
        mode = config.get("secure")
        if mode and self.secure is None:
            flag = "--private-key private.key" if mode == "paillier" else "--public-key public.key"
            raise FedadError(f"the server runs encrypted aggregation ({mode}): start this node with {flag}")
        if self.secure is not None:
            if mode != self.secure.mode:
                raise FedadError(
                    f"this node is set up for {self.secure.mode} but the server runs "
                    f"{mode or 'plaintext aggregation'}; refusing to send its update"
                )
            self.secure.check(config)
        key = config.get("scaler") or config.get("scaler_enc")
        if spec.scaling == "site":  # this node's own statistics; the federation's sums are not needed
            self.site.set_scaler(None, b"site")
        elif key:
            if self._scaler_cache is None or self._scaler_cache[0] != key:
                stats = (
                    decode_scaler_stats(key, self.site.n_features)
                    if "scaler" in config
                    else self.secure.decrypt_stats(key, self.site.n_features)
                )
                self._scaler_cache = (key, stats)
            self.site.set_scaler(self._scaler_cache[1], key)
        return spec

    def _global(self, parameters: list[np.ndarray], config: dict) -> list[np.ndarray]:
        """The global weights: decrypted in Paillier mode, this node's held model moved as told under --compress,
        as sent otherwise."""
        if config.get("model"):
            try:
                return self.held.receive(parameters, config)
            except BroadcastError as exc:
                raise FedadError(f"cannot apply the server's global model: {exc}") from None
        if config.get("encrypted_global"):
            key = hashlib.sha256(parameters[0].tobytes() + str(config["total_weight"]).encode()).digest()
            if self._global_cache is None or self._global_cache[0] != key:
                shapes = [w.shape for w in self._weights()]
                self._global_cache = (key, self.secure.decrypt_weights(parameters, config, shapes))
            return [w.copy() for w in self._global_cache[1]]
        return parameters

    def _acknowledge(self, metrics: dict, config: dict) -> dict:
        """Under --compress an answer says which model version this node now holds (the server sends steps from it)."""
        if config.get("model") and self.held.version is not None:
            metrics["model_version"] = self.held.version
        return metrics

    def _features_match(self, config: dict) -> bool:
        """Whether this node's columns are the federation's (always so before the federation has chosen)."""
        names = decode_json(config["spec"]).get("feature_names")
        return names is None or list(names) == list(self.site.data.feature_names)

    def get_parameters(self, config):
        self.contact.seen = True
        return [] if self.site.model is None else self._weights()

    def _weights(self) -> list[np.ndarray]:
        from fedad.common.training import get_weights

        return get_weights(self.site.configured_model())

    def fit(self, parameters, config):
        self.contact.seen = True
        phase = config.get("phase", "fit")
        if phase == "refused":
            raise FedadError(f"the server refused this node: {config.get('reason', 'no reason given')}")
        if phase == "ended":
            raise RunStopped(f"the server stopped the run: {config.get('reason', 'no reason given')}")
        if phase == "stats" and not self._features_match(config):  # the server refuses, names why, records it
            return [], 0, {"name": self.name, "features": encode_json(self.site.data.feature_names)}
        spec = self._spec(config)
        if phase == "stats":
            stats = self.site.scaler_stats()
            metrics: dict[str, Any] = {"name": self.name, "features": encode_json(self.site.data.feature_names)}
            if self.secure is not None:
                metrics["stats_enc"] = self.secure.encrypt_stats(stats)
            else:
                metrics["stats"] = encode_scaler_stats(stats)
            self.log.info(
                "sent %sscaler statistics of %d training rows", "encrypted " if self.secure else "", stats.count
            )
            return [], stats.count, metrics
        rnd = int(config.get("round", 0))
        global_weights = self._global(parameters, config)
        sealed = self.secure is not None and self.secure.mode == "secure-robust"
        if sealed:  # obfuscators are computed in a worker process while the model trains
            self.secure.prepare(config, int(sum(w.size for w in global_weights)))
        try:  # the contrastive alignment target: the mean embedding of the previous round
            target = decode_array(config["global_embedding"]) if "global_embedding" in config else None
        except WireError as exc:
            raise FedadError(f"the server sent a malformed global embedding: {exc}") from None
        direction = bool(config.get("global_embedding_direction"))
        if target is not None:
            self.log.info(
                "round %d: aligning to the global embedding (%d values, norm %.4f%s)",
                rnd,
                target.size,
                float(np.linalg.norm(target)),
                ", direction only" if direction else "",
            )
        extra = self.extra_rows() if self.extra_rows is not None else None
        out = self.site.train(
            global_weights,
            int(config.get("epochs", spec.local_epochs)),
            spec.seed * 1000 + rnd,
            global_embedding=target,
            direction_only=direction,
            extra_rows=extra,
        )
        if extra is not None:
            self.log.info("round %d: also trained on %d stream records scored normal", rnd, len(extra))
        if self.slowdown > 1.0:
            time.sleep((self.slowdown - 1.0) * out["seconds"])
        weights, examples = out["weights"], out["examples"]
        if self.attack is not None:
            weights, examples = self.attack.apply(rnd, global_weights, weights, examples, self.log)
        metrics = {"name": self.name, "train_loss": out["train_loss"], "seconds": out["seconds"]}
        if config.get("want_embedding"):
            embedding = self.site.mean_embedding(global_weights)
            if sealed:
                metrics["embedding_enc"] = self.secure.encrypt_embedding(embedding)
            else:
                metrics["embedding"] = encode_array(embedding)
        t_enc = time.perf_counter()
        if sealed:
            weights = [self.secure.encrypt_update(weights, global_weights, config)]
        elif self.secure is not None:
            weights = [self.secure.encrypt_weights(weights, config)]
        elif config.get("compress"):
            weights = [self._compressor(str(config["compress"])).compress(weights, global_weights)]
        if self.secure is not None:
            metrics["encrypt_seconds"] = time.perf_counter() - t_enc
        self.log.info(
            "round %d: trained on %d samples, loss %.5f, %.2f s%s",
            rnd,
            out["examples"],
            out["train_loss"],
            out["seconds"],
            f", encrypted in {metrics['encrypt_seconds']:.2f} s" if self.secure is not None else "",
        )
        return weights, examples, self._acknowledge(metrics, config)

    def _compressor(self, scheme: str):
        """The error-feedback compressor the server's scheme asks for (its residual is kept across rounds)."""
        from fedad.common.compression import ErrorFeedback, parse_compression

        current = getattr(self, "_feedback", None)
        if current is None or current.scheme.name != scheme:
            try:
                parsed = parse_compression(scheme)
            except ValueError as exc:
                raise FedadError(f"the server asks for an unknown compression: {exc}") from None
            if parsed is None:
                raise FedadError(f"the server asks for compression '{scheme}', which sends nothing compressed")
            current = self._feedback = ErrorFeedback(parsed)
            self.log.info("sending %s-compressed updates (error feedback kept on this node)", parsed.name)
        return current

    def _operating_range(self, split) -> dict[str, Any]:
        """The share of test records outside the training records' range, and the feature most often there."""
        from fedad.common.operating_range import outside_training_range

        r = outside_training_range(split.train, split.test)
        note = r.note(list(self.site.data.feature_names), "test rows", "this node's training rows")
        if note:
            self.log.warning("%s", note)
        return {"outside_range": r.share, "outside_feature": r.most_outside}

    def evaluate(self, parameters, config):
        self.contact.seen = True
        self._spec(config)
        weights = self._global(parameters, config)
        phase = config.get("phase", "val")
        if phase == "threshold":
            scores = self.site.record_scores(weights, self.site.split.val)
            spec = self.site.spec
            if spec.threshold_scope == "site":  # only then: the tail fit imports scipy (~0.6 CPU-s per node)
                self._site_threshold = threshold_by_rule(
                    scores, spec.threshold_rule, spec.threshold_quantile, spec.target_far
                )
            hist = histogram(scores)
            m: dict[str, Any] = {"name": self.name}
            if spec.score != "mse" and self.secure is None:  # for the server's global model (global scaling)
                scales = self.site.feature_scales(weights)
                n_train = len(self.site.train_samples)
                # n * scale^2 (the sum of squared errors where the scales are RMS, under 1,000 samples); the server
                # pools sqrt(sum / count) (server.federation.pooled_feature_scales) and compares the counts
                m.update(fe_sq_sum=encode_array(np.square(scales) * n_train), fe_count=n_train)
            if self.secure is not None:
                m["hist_enc"] = self.secure.encrypt_histogram(hist, config)
            else:
                m["hist"] = encode_histogram(hist)
            return float(np.mean(scores)), len(scores), self._acknowledge(m, config)
        if phase == "test":
            if "quarantined" in config:
                self.quarantined = int(config["quarantined"])
                self.log.warning(
                    "quarantined by the server in round %s: this node's updates were left out of the "
                    "global model from then on; it still gets the final model",
                    config["quarantined"],
                )
            split = self.site.split
            scores = self.site.record_scores(weights, split.test) if len(split.test) else np.zeros(0)
            spec = self.site.spec
            if spec.threshold_scope == "site":  # this node's own threshold, from its own validation scores
                if self._site_threshold is None:
                    scores_val = self.site.record_scores(weights, split.val)
                    self._site_threshold = threshold_by_rule(
                        scores_val, spec.threshold_rule, spec.threshold_quantile, spec.target_far
                    )
                t = self._site_threshold
            elif "hist_sum_enc" in config:  # Paillier: the threshold comes from the decrypted summed histogram
                counts = self.secure.decrypt_histogram(config["hist_sum_enc"], config, N_BINS)
                t = rule_threshold(counts, spec)
            else:
                t = float(config["threshold"])
            pred = scores > t
            if spec.alarm_rule == "adaptive" and len(split.test):  # the streaming rule over the test rows, in order
                from fedad.common.stream_rule import adaptive_alarms

                res = adaptive_alarms(self.site.detector(weights, t), split.test)
                pred = res.alarms.astype(bool)
                self.log.info("adaptive alarm rule: %d re-baseline(s) in the test rows", len(res.events))
            m = {"name": self.name, "n_test": len(scores), "alarms": int(pred.sum()), "threshold": t}
            if len(split.test):
                m.update(self._operating_range(split))
            if split.test_labels is not None:
                y = split.test_labels.astype(bool)
                m.update(
                    tp=int((pred & y).sum()),
                    fp=int((pred & ~y).sum()),
                    tn=int((~pred & ~y).sum()),
                    fn=int((~pred & y).sum()),
                    pos_hist=encode_histogram(histogram(scores[y])),
                    neg_hist=encode_histogram(histogram(scores[~y])),
                )
            self.log.info("evaluated %d test rows at threshold %.4g: %d alarms", len(scores), t, int(pred.sum()))
            if self.on_global is not None:
                self.on_global(weights, config, float(t))
            if self.model_out:
                self.log.info("saved this node's model to %s", self.site.save_model(self.model_out, weights, t))
            return float(np.mean(scores)) if len(scores) else 0.0, len(scores), self._acknowledge(m, config)
        loss = self.site.val_loss(weights)
        if self.on_global is not None:
            self.on_global(weights, config, None)
        return loss, len(self.site.val_samples), self._acknowledge({"name": self.name}, config)

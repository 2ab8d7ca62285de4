"""Shared Flower adapter of the poisoning-robust strategies: updates in, ``aggregate_round`` math, report out.

The math (scores, flags, trust weights, history, quarantine) is plain numpy in ``fedad.server.defence.round``.
"""

from __future__ import annotations

import numpy as np
from flwr.common import Parameters, Scalar, ndarrays_to_parameters

from fedad.common.wire import WireError, decode_array
from fedad.server.aggregation import apply_update, compute_update, validate_update
from fedad.server.buffered import buffered_update
from fedad.server.defence.config import FlagConfig, TrustConfig
from fedad.server.defence.flags import flag_precision_recall
from fedad.server.defence.quarantine import Quarantine
from fedad.server.defence.round import aggregate_round
from fedad.server.defence.trust import TrustHistory
from fedad.server.strategies.base import FedadStrategy, client_name


class RobustStrategy(FedadStrategy):
    """Scores every update against the majority; ``mode`` is flag, trust or robust (one file each)."""

    mode = "robust"

    def __init__(
        self,
        *,
        malicious: tuple[str, ...] = (),
        quarantine_after: int = 3,
        flag_config: FlagConfig = FlagConfig(),
        trust_config: TrustConfig = TrustConfig(),
        **kwargs,
    ) -> None:
        super().__init__(**kwargs)
        self.malicious = set(malicious)
        self.flag_config, self.trust_config = flag_config, trust_config
        self.history, self.quarantine = TrustHistory(), Quarantine(max_flags=quarantine_after)
        self.last_summary: dict = {}

    @property
    def name(self) -> str:  # type: ignore[override]  # a property over the base class attribute name
        return self.mode

    @property
    def extra_fit_config(self) -> dict[str, Scalar]:
        """Trust weighting needs each client's mean latent embedding under the global encoder."""
        extra = super().extra_fit_config
        return {**extra, "want_embedding": True} if self.mode in ("trust", "robust") else extra

    def check_result(self, res) -> None:
        """Raise when the update's tensors or the embedding are malformed."""
        super().check_result(res)
        emb = (res.metrics or {}).get("embedding")
        if emb is not None:
            decode_array(emb)

    def aggregate_fit(self, server_round: int, results, failures) -> tuple[Parameters | None, dict[str, Scalar]]:
        global_weights = self.round_weights()
        shapes = [w.shape for w in global_weights]
        dim = int(sum(np.prod(s) for s in shapes))
        names: list[str] = []
        updates: list[np.ndarray | None] = []  # None: rejected (reason in invalid)
        counts: list[float] = []
        embeddings: list[np.ndarray | None] = []
        invalid: dict[str, str] = {}
        for proxy, res in results:
            name = client_name(res, proxy)
            self.names[proxy.cid] = name
            names.append(name)
            counts.append(float(res.num_examples))
            update: np.ndarray | None = None
            try:
                weights = self.decode_weights(res.parameters)
                reason = validate_update(weights, shapes)
            except Exception as exc:  # noqa: BLE001 - undecodable tensors from a peer
                reason = f"undecodable update: {exc}"
            else:
                if not reason:
                    update = compute_update(weights, global_weights)
            if reason:
                invalid[name] = reason
            updates.append(update)
            emb = (res.metrics or {}).get("embedding")
            try:
                embeddings.append(None if emb is None else decode_array(emb))
            except WireError:
                embeddings.append(None)
        self.last_rejections = invalid
        if not names:
            return None, {}
        result = self._score(names, updates, counts, dim, embeddings, invalid)
        if not result.kept:
            return None, {}
        kept = set(result.kept)
        self.note_embeddings([e if n in kept else None for n, e in zip(names, embeddings, strict=True)], counts)
        return ndarrays_to_parameters(apply_update(global_weights, result.update)), {}

    def aggregate_buffer(self, names, deltas, counts, staleness, embeddings, server_lr: float = 1.0) -> np.ndarray:
        """Score the buffer's deltas against each other (``aggregate_round``), then a FedBuff step over the kept
        ones: each enters with its share of the round's weight, as the defence rescaled it, times s(staleness)."""
        result = self._score(names, deltas, counts, deltas[0].size if deltas else 0, embeddings, {})
        self.last_rejections, self.last_clipped = {}, {}
        rows = [
            (rec["rescale"] if rec["rescale"] is not None else 1.0) * d
            for rec, d in zip(result.records, deltas, strict=True)
        ]
        shares = [float(rec["weight"]) for rec in result.records]
        kept = set(result.kept)
        self.note_embeddings([e if n in kept else None for n, e in zip(names, embeddings, strict=True)], counts)
        return buffered_update(rows, shares, staleness, server_lr)

    def _score(self, names, updates, counts, dim: int, embeddings, rejected: dict):
        """``aggregate_round`` over these updates; keeps its per-client records, flags and flag precision/recall."""
        result = aggregate_round(
            self.mode,
            names,
            updates,
            counts,
            dim=dim,
            embeddings=embeddings if self.mode != "flag" else None,
            rejected=rejected,
            history=self.history,
            quarantine=self.quarantine,
            flag_config=self.flag_config,
            trust_config=self.trust_config,
        )
        self.last_client_reports = {r["client"]: r for r in result.records}
        caught = result.flagged | (self.quarantine.quarantined & set(names))
        self.last_summary = {"flagged": sorted(result.flagged), "kept": result.kept}
        if self.malicious:
            p, r = flag_precision_recall(caught, self.malicious & set(names))
            self.last_summary.update(flag_precision=p, flag_recall=r)
        return result

    def untrusted(self) -> set[str]:
        return set(self.quarantine.quarantined)

    def aggregate_updates(self, server_round: int, accepted) -> list[np.ndarray]:
        """Unused: ``aggregate_fit`` scores all results together, invalid ones included."""
        return []

    def state_dict(self) -> dict:
        return {**super().state_dict(), "history": self.history.to_dict(), "quarantine": self.quarantine.to_dict()}

    def load_state_dict(self, state: dict) -> None:
        super().load_state_dict(state)
        if "history" in state:
            self.history = TrustHistory.from_dict(state["history"])
        if "quarantine" in state:
            self.quarantine = Quarantine.from_dict(state["quarantine"])

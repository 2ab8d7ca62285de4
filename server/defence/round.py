"""One round of ``flag``, ``trust`` or ``robust`` aggregation over flat updates (``aggregate_round``)."""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

import numpy as np

from fedad.common.errors import FedadError
from fedad.server.aggregation import coordinate_median, stack_updates, validate_vector, weighted_mean
from fedad.server.defence.config import FlagConfig, TrustConfig
from fedad.server.defence.flags import flag_deviating_updates
from fedad.server.defence.quarantine import Quarantine
from fedad.server.defence.trust import (
    TrustHistory,
    direction_trust,
    embedding_trust,
    reference_norm,
    relative_trust,
    rescale_updates,
    trust_weights,
)

STRATEGIES = ("flag", "trust", "robust")


@dataclass
class RoundResult:
    """One round's aggregate update and the per-client report records (input order)."""

    update: np.ndarray
    records: list[dict] = field(default_factory=list)

    @property
    def flagged(self) -> set[str]:
        """Names of the clients flagged (or rejected) this round."""
        return {r["client"] for r in self.records if r["flagged"]}

    @property
    def kept(self) -> list[str]:
        """Names of the clients whose update entered the aggregate with a positive weight."""
        return [r["client"] for r in self.records if r["weight"] > 0.0]


def _num(x) -> float | None:
    """A JSON-able float (None for NaN/Inf)."""
    x = float(x)
    return x if math.isfinite(x) else None


def _empty_record(name: str, num_examples: float | None) -> dict:
    keys = (
        "distance",
        "cosine",
        "norm_ratio",
        "norm",
        "spread",
        "closeness",
        "size_factor",
        "z_distance",
        "z_cosine",
        "z_norm",
        "z_spread",
        "embedding_trust",
        "direction_trust",
        "history",
        "rescale",
    )
    return {
        "client": name,
        "num_examples": num_examples,
        **{k: None for k in keys},
        "weight": 0.0,
        "flagged": False,
        "excluded": True,
        "reason": None,
    }


def _most_common_length(updates: Sequence[np.ndarray | None]) -> int:
    lengths = [int(np.size(u)) for u in updates if u is not None]
    return max(sorted(set(lengths)), key=lengths.count) if lengths else 0


def _count_problem(count) -> str | None:
    try:
        ok = math.isfinite(float(count)) and float(count) >= 0.0
    except (TypeError, ValueError):
        ok = False
    return None if ok else f"invalid example count {count!r}"


def _screen(
    names: Sequence[str],
    updates: Sequence[np.ndarray | None],
    num_examples: Sequence[float],
    dim: int,
    rejected: Mapping[str, str],
    quarantine: Quarantine | None,
) -> tuple[list[dict], list[int]]:
    """Empty records for every client, rejected/quarantined ones filled in; indices of the valid ones."""
    records: list[dict] = []
    valid: list[int] = []
    seen: set[str] = set()
    for i, (name, update, count) in enumerate(zip(names, updates, num_examples, strict=True)):
        record = _empty_record(str(name), _num(count) if _count_problem(count) is None else None)
        reason: str | None
        if update is None:
            reason = rejected.get(name) or "no update"
        else:
            reason = validate_vector(update, dim) or _count_problem(count)
        if reason is None and name in seen:
            reason = "duplicate client name in this round"
        seen.add(name)
        if reason is not None:
            record.update(flagged=True, reason=f"rejected: {reason}")
        elif quarantine is not None and quarantine.is_quarantined(name):
            record["reason"] = f"quarantined (flagged in {quarantine.flag_counts.get(name, 0)} rounds)"
        else:
            valid.append(i)
        records.append(record)
    return records, valid


def aggregate_round(
    strategy: str,
    names: Sequence[str],
    updates: Sequence[np.ndarray | None],
    num_examples: Sequence[float],
    *,
    dim: int | None = None,
    embeddings: Sequence[np.ndarray | None] | None = None,
    rejected: Mapping[str, str] | None = None,
    history: TrustHistory | None = None,
    quarantine: Quarantine | None = None,
    flag_config: FlagConfig = FlagConfig(),
    trust_config: TrustConfig = TrustConfig(),
) -> RoundResult:
    """Aggregate one round's flat updates with the ``flag``, ``trust`` or ``robust`` strategy.

    ``updates[i]`` may be None for a client the caller already rejected (reason in ``rejected``; an
    adapter checks arrays with ``validate_update`` first). Updates of another length than ``dim`` (default:
    the most common length), with NaN/Inf, a bad example count or a repeated name are rejected here.
    Rejected clients are flagged in every strategy; quarantined ones are left out of ``flag``/``robust``
    before scoring. ``embeddings`` holds each client's mean latent embedding (None: no embedding trust); a
    missing or malformed one gets embedding trust 0. ``history`` (trust, robust) and ``quarantine`` (flag,
    robust) are updated in place; the weights use the history after this round has been folded in.
    Returns the flat aggregate update to add to the global weights (zeros if nobody is kept).
    """
    if strategy not in STRATEGIES:
        raise FedadError(f"unknown robust strategy {strategy!r}: choose one of {', '.join(STRATEGIES)}")
    n = len(names)
    if len(updates) != n or len(num_examples) != n or (embeddings is not None and len(embeddings) != n):
        raise ValueError("names, updates, num_examples (and embeddings) must have the same length")
    dim = _most_common_length(updates) if dim is None else int(dim)
    excluding = strategy != "trust"
    records, valid = _screen(names, updates, num_examples, dim, dict(rejected or {}), quarantine if excluding else None)
    history = history if strategy != "flag" and trust_config.use_history else None

    total = np.zeros(dim)
    if valid:
        matrix = stack_updates([u for i in valid if (u := updates[i]) is not None])
        counts = np.array([float(num_examples[i]) for i in valid])
        report = flag_deviating_updates(matrix, flag_config, counts)
        for j, i in enumerate(valid):
            for key, values in (*report.scores.items(), *report.z.items()):
                records[i][key] = _num(values[j])
            if excluding and report.flagged[j]:
                records[i].update(flagged=True, reason=report.reasons[j])
        keep = np.flatnonzero(~report.flagged) if excluding else np.arange(len(valid))
        weights = np.zeros(len(valid))
        if keep.size and strategy == "flag":
            weights[keep] = counts[keep]
            total = weighted_mean(matrix[keep], counts[keep])
        elif keep.size:
            total, weights[keep] = _trust_aggregate(
                matrix[keep],
                counts[keep],
                [records[valid[j]] for j in keep],
                None if embeddings is None else [embeddings[valid[j]] for j in keep],
                history,
                trust_config,
            )
        share = weights / weights.sum() if weights.sum() > 0 else weights
        for j, i in enumerate(valid):
            records[i].update(weight=float(share[j]), excluded=bool(share[j] <= 0.0))

    flagged = [r["client"] for r in records if r["flagged"]]
    if history is not None:
        history.update(flagged, [0.0] * len(flagged))
    if quarantine is not None and excluding:
        for name in quarantine.record(flagged):
            record = records[list(names).index(name)]
            record["reason"] = f"{record['reason']}; quarantined from now on"
    return RoundResult(total, records)


def _trust_aggregate(
    matrix: np.ndarray,
    counts: np.ndarray,
    records: list[dict],
    embeddings: list[np.ndarray | None] | None,
    history: TrustHistory | None,
    config: TrustConfig,
) -> tuple[np.ndarray, np.ndarray]:
    """Trust-weighted mean of rescaled updates; fills the trust fields of ``records``."""
    reference = coordinate_median(matrix)
    direction = direction_trust(matrix, reference)
    emb = None
    if embeddings is not None:
        emb = _embedding_trust_or_zero(embeddings)
    round_trust = direction * (emb if emb is not None else 1.0)
    hist = None
    if history is not None:
        names = [r["client"] for r in records]
        hist = history.update(names, relative_trust(round_trust))
    weights = trust_weights(direction, emb, hist, counts, config.sample_cap)
    target = reference_norm(matrix, reference, config.norm_reference)
    rescaled = rescale_updates(matrix, target)
    norms = np.linalg.norm(matrix, axis=1)
    for j, r in enumerate(records):
        r["rescale"] = float(target / norms[j]) if norms[j] > 0.0 else 0.0  # update j enters as rescale x itself
        r["direction_trust"] = _num(direction[j])
        r["embedding_trust"] = None if emb is None else _num(emb[j])
        r["history"] = None if hist is None else _num(hist[j])
    return weighted_mean(rescaled, weights), weights


def _embedding_trust_or_zero(embeddings: list[np.ndarray | None]) -> np.ndarray:
    """Embedding trust; a missing, non-finite or odd-sized embedding gets trust 0."""
    sizes = [int(np.size(e)) for e in embeddings if e is not None]
    k = max(set(sizes), key=sizes.count) if sizes else 0
    ok = [e is not None and np.size(e) == k and bool(np.all(np.isfinite(e))) for e in embeddings]
    trust = np.zeros(len(embeddings))
    if any(ok):
        rows = np.vstack(
            [np.asarray(e, dtype=np.float64).ravel() for e, good in zip(embeddings, ok, strict=True) if good]
        )
        trust[np.array(ok)] = embedding_trust(rows)
    return trust

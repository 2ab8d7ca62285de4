"""Poisoning-robust aggregation math: deviation flags, trust weights, trust history and quarantine.

Plain numpy, no Flower; ``fedad.server.strategies`` adapt Flower's calls to ``aggregate_round``.
Updates are flat float64 vectors (see ``fedad.server.aggregation``), stacked into an (n, d) matrix.

Strategies (``STRATEGIES``):

- ``flag`` (seed paper 000, "a node whose update deviates significantly from the majority is flagged"):
  per round, every update is scored against the coordinate-wise median update: distance, cosine, norm
  ratio and spread alignment (``update_scores``); each becomes a MAD-based robust z-score across clients
  (two passes, see ``flag_deviating_updates``) and a client is flagged when one passes
  ``FlagConfig.z_threshold`` in its bad direction, or when it is a near-duplicate of another client
  (colluders sending one crafted vector). Flagged clients are left out of a FedAvg of the rest; a client
  flagged in ``Quarantine.max_flags`` rounds is left out from then on.
- ``trust`` (seed paper 001): every valid update is kept, rescaled to a common norm (FLTrust-style) and
  weighted by ``embedding trust x direction trust x trust history x capped example count``
  (``trust_weights``); a weight of 0 (update against the median direction) removes it.
- ``robust``: ``flag`` (with quarantine) first, then ``trust`` over the clients that were not flagged.

Every strategy rejects and flags non-finite or wrong-shape updates (``validate_vector`` here,
``fedad.server.aggregation.validate_update`` for arrays in the adapters).
"""
from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field

import numpy as np

from fedad.common.errors import FedadError
from fedad.server.aggregation import coordinate_median, stack_updates, validate_vector, weighted_mean

STRATEGIES = ("flag", "trust", "robust")
MAD_TO_SIGMA = 1.4826  # MAD * 1.4826 estimates the standard deviation of a normal sample
_TINY = 1e-12


@dataclass(frozen=True)
class FlagConfig:
    """Thresholds of the deviation flags; defaults chosen on the non-IID simulation in tests/test_robust.py and
    on real autoencoder updates of the synthetic plant (bench/poisoning.py: 10 clients, 3 attackers)."""

    z_threshold: float = 3.5  # flag when a robust z-score passes this in the bad direction
    prescreen_z: float = 2.0  # first pass: clients past this are left out when re-estimating median and MAD
    distance_offset: float = 0.1  # z of log(distance + offset x median norm): tiny distances do not count
    log_distance_floor: float = 0.2  # MAD floor of that log distance (0.2 ~ 20 % spread)
    cosine_floor: float = 0.065  # MAD floor of the cosine to the median update (cosine units)
    log_norm_floor: float = 0.1  # MAD floor of log(norm ratio) above the median
    log_norm_floor_low: float = 0.2  # ... and below it: a smaller update weighs less, zero/IPM are far below
    spread_floor: float = 0.05  # MAD floor of the spread alignment (cosine units)
    closeness_threshold: float = 0.1  # near-duplicate: nearest neighbour < this x median nearest distance
    min_clients: int = 3  # fewer valid clients than this: only invalid updates are flagged
    min_clients_cluster: int = 4  # fewer than this: no near-duplicate flags (a pair could be the majority)
    min_clients_reestimate: int = 4  # second pass only when at least this many clients stay (a MAD of 3 is rough)


@dataclass(frozen=True)
class TrustConfig:
    """Parameters of the trust weights."""

    norm_reference: str = "median_norm"  # rescale updates to: median update norm | "reference" (||median||)
    sample_cap: float | None = 4.0  # example counts are clipped to sample_cap x their median (None: no cap)
    use_history: bool = True


# ----------------------------------------------------------------------------------------------- scores


def robust_z_scores(values: np.ndarray, floor: float = 0.0, reference: np.ndarray | None = None,
                    floor_below: float | None = None) -> np.ndarray:
    """MAD z-scores (x - median) / (1.4826 * max(MAD, floor)), median and MAD over the ``reference`` rows.

    ``floor_below`` (default ``floor``) replaces the floor for values below the median.
    """
    values = np.asarray(values, dtype=np.float64)
    base = values if reference is None else values[np.asarray(reference, dtype=bool)]
    if base.size == 0:
        return np.zeros_like(values)
    med = float(np.median(base))
    mad = float(np.median(np.abs(base - med)))
    diff = values - med
    below = floor if floor_below is None else floor_below
    scale = MAD_TO_SIGMA * np.where(diff < 0.0, max(mad, below), max(mad, floor))
    unusual = np.where(diff > 0.0, np.inf, np.where(diff < 0.0, -np.inf, 0.0))  # no spread and no floor
    return np.where(scale > 0.0, diff / np.where(scale > 0.0, scale, 1.0), unusual)


def cosine_to(updates: np.ndarray, reference: np.ndarray) -> np.ndarray:
    """Cosine similarity of each row to a reference vector; 0 where either has zero norm."""
    norms = np.linalg.norm(updates, axis=1)
    ref_norm = float(np.linalg.norm(reference))
    denom = norms * ref_norm
    dots = updates @ reference
    return np.where(denom > 0.0, dots / np.where(denom > 0.0, denom, 1.0), 0.0).clip(-1.0, 1.0)


def pairwise_distances(updates: np.ndarray) -> np.ndarray:
    """Euclidean distances between all rows, (n, n), computed on rows centred at their median."""
    centred = updates - coordinate_median(updates)
    sq = np.einsum("ij,ij->i", centred, centred)
    d2 = sq[:, None] + sq[None, :] - 2.0 * (centred @ centred.T)
    np.fill_diagonal(d2, 0.0)
    return np.sqrt(np.maximum(d2, 0.0))


def closeness_scores(updates: np.ndarray) -> np.ndarray:
    """Nearest-neighbour distance of each row over the median nearest-neighbour distance (small = near-duplicate)."""
    n = updates.shape[0]
    if n < 2:
        return np.ones(n)
    dist = pairwise_distances(updates)
    np.fill_diagonal(dist, np.inf)
    nearest = dist.min(axis=1)
    typical = float(np.median(nearest))
    if typical <= 0.0:
        return np.ones(n)  # most updates have an exact twin: nothing stands out as a cluster
    return nearest / typical


def spread_alignment(updates: np.ndarray, reference: np.ndarray) -> np.ndarray:
    """Cosine of each update's deviation from the reference to the coordinate-wise spread (std) vector.

    Benign deviations have random signs per coordinate, so this is near 0 (about 1/sqrt(d)) for them; ALIE
    (mu - z sigma) and min-max/min-sum with the std perturbation (mu - gamma sigma) move every coordinate
    against its spread, which makes it clearly negative even when each colluder adds its own noise.
    """
    return cosine_to(updates - reference, np.std(updates, axis=0))


def update_scores(updates: np.ndarray) -> dict[str, np.ndarray]:
    """Per-client raw scores against the coordinate-wise median update (see ``FlagConfig`` for their use)."""
    updates = np.asarray(updates, dtype=np.float64)
    reference = coordinate_median(updates)
    norms = np.linalg.norm(updates, axis=1)
    median_norm = float(np.median(norms)) if norms.size else 0.0
    if median_norm > 0.0:
        norm_ratio = norms / median_norm
    else:
        norm_ratio = np.where(norms > 0.0, np.inf, 1.0)
    return {
        "distance": np.linalg.norm(updates - reference, axis=1),
        "cosine": cosine_to(updates, reference),
        "norm_ratio": norm_ratio,
        "norm": norms,
        "spread": spread_alignment(updates, reference),
        "closeness": closeness_scores(updates),
    }


# which side of each z-score is bad: +1 high, -1 low, 0 both. Spread: ALIE and min-max/min-sum (std
# perturbation) move against the spread (negative); on real autoencoder updates honest outliers of a
# heterogeneous federation align positively with it (the spread is largely theirs), so only low is bad.
BAD_SIDE = {"z_distance": 1, "z_cosine": -1, "z_norm": 0, "z_spread": -1}


def z_score_inputs(scores: Mapping[str, np.ndarray], config: FlagConfig = FlagConfig()
                   ) -> dict[str, tuple[np.ndarray, float]]:
    """The values each z-score is computed on, with their MAD floor (the norm's low side: ``log_norm_floor_low``).

    Distance and norm ratio are taken in logs (their benign spread is multiplicative); the distance gets
    ``distance_offset`` x the median norm added first, so that differences between near-identical updates
    (distances far below the update norms) never look large.
    """
    norms = np.asarray(scores["norm"], dtype=np.float64)
    offset = config.distance_offset * (float(np.median(norms)) if norms.size else 0.0)
    return {
        "z_distance": (np.log(np.asarray(scores["distance"]) + offset + _TINY), config.log_distance_floor),
        "z_cosine": (np.asarray(scores["cosine"], dtype=np.float64), config.cosine_floor),
        "z_norm": (np.log(np.maximum(np.asarray(scores["norm_ratio"], dtype=np.float64), _TINY)),
                   config.log_norm_floor),
        "z_spread": (np.asarray(scores["spread"], dtype=np.float64), config.spread_floor),
    }


def deviation_z_scores(scores: Mapping[str, np.ndarray], config: FlagConfig = FlagConfig(),
                       reference: np.ndarray | None = None) -> dict[str, np.ndarray]:
    """Robust z-scores of (log) distance, cosine, log norm ratio and spread alignment, median/MAD over ``reference``."""
    below = {"z_norm": config.log_norm_floor_low}
    return {name: robust_z_scores(values, floor, reference, below.get(name))
            for name, (values, floor) in z_score_inputs(scores, config).items()}


def past_threshold(z: Mapping[str, np.ndarray], threshold: float) -> dict[str, np.ndarray]:
    """Per z-score, which clients pass ``threshold`` in its bad direction."""
    return {name: np.abs(z[name]) > threshold if side == 0 else side * z[name] > threshold
            for name, side in BAD_SIDE.items()}


def near_duplicates(closeness: np.ndarray, config: FlagConfig = FlagConfig()) -> np.ndarray:
    """Clients whose nearest neighbour is suspiciously close, when they are a minority of at least 4 clients."""
    close = np.asarray(closeness) < config.closeness_threshold
    if close.size < config.min_clients_cluster or 2 * int(close.sum()) >= close.size:
        return np.zeros(close.size, dtype=bool)
    return close


def flag_reasons(scores: Mapping[str, np.ndarray], z: Mapping[str, np.ndarray], duplicates: np.ndarray,
                 config: FlagConfig = FlagConfig()) -> list[str | None]:
    """Human-readable reason per client for every score past its threshold, or None when it passes."""
    n = len(scores["distance"])
    if n < config.min_clients:
        return [None] * n
    past = past_threshold(z, config.z_threshold)
    reasons: list[str | None] = []
    for i in range(n):
        parts = []
        if past["z_cosine"][i]:
            parts.append(f"cosine {scores['cosine'][i]:.2f} to median (z={z['z_cosine'][i]:.1f})")
        if past["z_norm"][i]:
            parts.append(f"norm ratio {scores['norm_ratio'][i]:.3g} to median norm (z={z['z_norm'][i]:+.1f})")
        if past["z_distance"][i]:
            parts.append(f"distance {scores['distance'][i]:.3g} to median update (z={z['z_distance'][i]:.1f})")
        if past["z_spread"][i]:
            parts.append(f"deviation aligned with the coordinate-wise spread: cosine {scores['spread'][i]:+.2f} "
                         f"(z={z['z_spread'][i]:+.1f})")
        if duplicates[i]:
            parts.append(f"near-duplicate of another update (nearest distance "
                         f"{scores['closeness'][i]:.3f} x the median nearest distance)")
        reasons.append("; ".join(parts) if parts else None)
    return reasons


@dataclass
class FlagReport:
    """Scores, z-scores, flags and reasons of one round's valid updates (rows in input order)."""

    scores: dict[str, np.ndarray]
    z: dict[str, np.ndarray]
    flagged: np.ndarray
    reasons: list[str | None]


def flag_deviating_updates(updates: np.ndarray, config: FlagConfig = FlagConfig()) -> FlagReport:
    """Score every update against the majority and flag those that deviate (seed paper 000).

    Two passes: robust z-scores over all clients first; then the median and MAD are re-estimated over the
    clients that pass ``prescreen_z`` and are not near-duplicates (if they are a majority and at least
    ``min_clients_reestimate``), so that a colluding minority on one side neither drags the median nor
    inflates the MAD. Flags use the second pass's z-scores against ``z_threshold``, plus the near-duplicate
    test.
    """
    updates = np.asarray(updates, dtype=np.float64)
    n = updates.shape[0]
    scores = update_scores(updates)
    duplicates = near_duplicates(scores["closeness"], config)
    z = deviation_z_scores(scores, config)
    clean = ~duplicates
    for mask in past_threshold(z, config.prescreen_z).values():
        clean &= ~mask
    if n >= config.min_clients and int(clean.sum()) >= max(n // 2 + 1, config.min_clients_reestimate):
        z = deviation_z_scores(scores, config, clean)
    reasons = flag_reasons(scores, z, duplicates, config)
    return FlagReport(scores, z, np.array([r is not None for r in reasons], dtype=bool), reasons)


def flag_precision_recall(flagged: Iterable[str], malicious: Iterable[str]) -> tuple[float | None, float | None]:
    """Precision and recall of flagged clients against the truly malicious ones; None where undefined.

    Nothing flagged: precision is 0/0, None (not 1.0: a round that caught nobody must not read as perfect);
    nothing malicious: recall is None. An attack-free round with flags scores (0.0, None).
    """
    flagged, malicious = set(flagged), set(malicious)
    hits = len(flagged & malicious)
    precision = hits / len(flagged) if flagged else None
    recall = hits / len(malicious) if malicious else None
    return precision, recall


# ------------------------------------------------------------------------------------------------ trust


def l2_normalise_rows(x: np.ndarray) -> np.ndarray:
    """Rows scaled to unit L2 norm; zero rows stay zero."""
    x = np.asarray(x, dtype=np.float64)
    norms = np.linalg.norm(x, axis=1, keepdims=True)
    return np.divide(x, norms, out=np.zeros_like(x), where=norms > 0.0)


def embedding_trust(embeddings: np.ndarray) -> np.ndarray:
    """Trust 1 / (1 + ||z_i - g||^2) of L2-normalised mean embeddings z_i, g their coordinate-wise median."""
    z = l2_normalise_rows(embeddings)
    if z.shape[0] == 0:
        return np.zeros(0)
    g = np.median(z, axis=0)
    return 1.0 / (1.0 + np.sum((z - g) ** 2, axis=1))


def direction_trust(updates: np.ndarray, reference: np.ndarray) -> np.ndarray:
    """FLTrust direction trust: cosine of each update to the reference update, clipped at 0."""
    return np.maximum(cosine_to(np.asarray(updates, dtype=np.float64), reference), 0.0)


def rescale_updates(updates: np.ndarray, target_norm: float) -> np.ndarray:
    """Each update rescaled to the target norm (magnitude normalisation); zero updates stay zero."""
    return l2_normalise_rows(updates) * float(target_norm)


def cap_sample_counts(num_examples: np.ndarray, cap: float | None) -> np.ndarray:
    """Example counts clipped to cap x their median, so that claiming many examples buys little weight."""
    counts = np.asarray(num_examples, dtype=np.float64)
    if cap is None or counts.size == 0:
        return counts
    return np.minimum(counts, cap * float(np.median(counts)))


def trust_weights(direction: np.ndarray, embedding: np.ndarray | None, history: np.ndarray | None,
                  num_examples: np.ndarray, sample_cap: float | None = 4.0) -> np.ndarray:
    """Aggregation weights embedding x direction x history x capped count, normalised to sum 1 (or all 0)."""
    w = np.asarray(direction, dtype=np.float64) * cap_sample_counts(num_examples, sample_cap)
    if embedding is not None:
        w = w * np.asarray(embedding, dtype=np.float64)
    if history is not None:
        w = w * np.asarray(history, dtype=np.float64)
    total = float(w.sum())
    return w / total if total > 0.0 else np.zeros_like(w)


def reference_norm(updates: np.ndarray, reference: np.ndarray, mode: str = "median_norm") -> float:
    """Common norm the updates are rescaled to: the median update norm, or the norm of the reference update."""
    if mode == "median_norm":
        return float(np.median(np.linalg.norm(updates, axis=1))) if updates.shape[0] else 0.0
    if mode == "reference":
        return float(np.linalg.norm(reference))
    raise FedadError(f"unknown norm reference {mode!r}: choose median_norm or reference")


def relative_trust(round_trust: np.ndarray) -> np.ndarray:
    """Round trust divided by its median and clipped to [0, 1]: what the trust history accumulates."""
    round_trust = np.asarray(round_trust, dtype=np.float64)
    if round_trust.size == 0:
        return round_trust.copy()
    med = float(np.median(round_trust))
    if med <= 0.0:
        return np.where(round_trust > 0.0, 1.0, 0.0)
    return np.clip(round_trust / med, 0.0, 1.0)


class TrustHistory:
    """Per-client trust across rounds, an exponential moving average keyed by client name.

    ``update`` folds in one round: h <- decay * h + (1 - decay) * t with t in [0, 1] (the round's relative
    trust; 0 for a flagged or rejected client). A client seen for the first time starts from ``initial``.
    """

    def __init__(self, decay: float = 0.7, initial: float = 1.0):
        if not 0.0 <= decay < 1.0:
            raise FedadError(f"trust history decay must be in [0, 1), got {decay}")
        if not 0.0 <= initial <= 1.0:
            raise FedadError(f"initial trust must be in [0, 1], got {initial}")
        self.decay, self.initial = float(decay), float(initial)
        self.values: dict[str, float] = {}

    def get(self, name: str) -> float:
        """Current trust of a client (``initial`` if never seen)."""
        return self.values.get(name, self.initial)

    def update(self, names: Sequence[str], round_trust: Sequence[float]) -> np.ndarray:
        """Fold one round's trust (in [0, 1]) into the history; returns the clients' new values."""
        out = []
        for name, t in zip(names, round_trust, strict=True):
            t = min(max(float(t), 0.0), 1.0) if math.isfinite(float(t)) else 0.0
            value = self.decay * self.get(name) + (1.0 - self.decay) * t
            self.values[name] = value
            out.append(value)
        return np.array(out, dtype=np.float64)

    def to_dict(self) -> dict:
        """JSON-able state for checkpoints."""
        return {"decay": self.decay, "initial": self.initial, "values": dict(sorted(self.values.items()))}

    @classmethod
    def from_dict(cls, d: Mapping) -> "TrustHistory":
        """Rebuild from ``to_dict`` output; FedadError on a malformed checkpoint."""
        try:
            history = cls(float(d["decay"]), float(d["initial"]))
            values = {str(k): float(v) for k, v in dict(d["values"]).items()}
        except (KeyError, TypeError, ValueError) as e:
            raise FedadError(f"malformed trust history checkpoint: {e}") from None
        if any(not 0.0 <= v <= 1.0 for v in values.values()):
            raise FedadError("malformed trust history checkpoint: values must lie in [0, 1]")
        history.values = values
        return history


class Quarantine:
    """Clients flagged in ``max_flags`` rounds (not necessarily consecutive) are excluded from then on."""

    def __init__(self, max_flags: int = 3):
        if int(max_flags) < 1:
            raise FedadError(f"quarantine needs max_flags >= 1, got {max_flags}")
        self.max_flags = int(max_flags)
        self.flag_counts: dict[str, int] = {}
        self.quarantined: set[str] = set()

    def is_quarantined(self, name: str) -> bool:
        """Whether a client is excluded for good."""
        return name in self.quarantined

    def record(self, flagged: Iterable[str]) -> list[str]:
        """Count one round's flags; returns the clients quarantined by this round."""
        newly = []
        for name in dict.fromkeys(flagged):
            self.flag_counts[name] = self.flag_counts.get(name, 0) + 1
            if self.flag_counts[name] >= self.max_flags and name not in self.quarantined:
                self.quarantined.add(name)
                newly.append(name)
        return newly

    def to_dict(self) -> dict:
        """JSON-able state for checkpoints."""
        return {"max_flags": self.max_flags, "flag_counts": dict(sorted(self.flag_counts.items())),
                "quarantined": sorted(self.quarantined)}

    @classmethod
    def from_dict(cls, d: Mapping) -> "Quarantine":
        """Rebuild from ``to_dict`` output; FedadError on a malformed checkpoint."""
        try:
            q = cls(int(d["max_flags"]))
            q.flag_counts = {str(k): int(v) for k, v in dict(d["flag_counts"]).items()}
            q.quarantined = {str(n) for n in d["quarantined"]}
        except (KeyError, TypeError, ValueError) as e:
            raise FedadError(f"malformed quarantine checkpoint: {e}") from None
        return q


# -------------------------------------------------------------------------------------------- one round


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


def _empty_record(name: str, num_examples: float) -> dict:
    keys = ("distance", "cosine", "norm_ratio", "norm", "spread", "closeness", "z_distance", "z_cosine", "z_norm",
            "z_spread",
            "embedding_trust", "direction_trust", "history", "rescale")
    return {"client": name, "num_examples": num_examples, **{k: None for k in keys},
            "weight": 0.0, "flagged": False, "excluded": True, "reason": None}


def _most_common_length(updates: Sequence[np.ndarray | None]) -> int:
    lengths = [int(np.size(u)) for u in updates if u is not None]
    return max(sorted(set(lengths)), key=lengths.count) if lengths else 0


def _count_problem(count) -> str | None:
    try:
        ok = math.isfinite(float(count)) and float(count) >= 0.0
    except (TypeError, ValueError):
        ok = False
    return None if ok else f"invalid example count {count!r}"


def _screen(names: Sequence[str], updates: Sequence[np.ndarray | None], num_examples: Sequence[float], dim: int,
            rejected: Mapping[str, str], quarantine: Quarantine | None) -> tuple[list[dict], list[int]]:
    """Empty records for every client, rejected/quarantined ones filled in; indices of the valid ones."""
    records, valid, seen = [], [], set()
    for i, (name, update, count) in enumerate(zip(names, updates, num_examples)):
        record = _empty_record(str(name), _num(count) if _count_problem(count) is None else None)
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
    records, valid = _screen(names, updates, num_examples, dim, dict(rejected or {}),
                             quarantine if excluding else None)
    history = history if strategy != "flag" and trust_config.use_history else None

    total = np.zeros(dim)
    if valid:
        matrix = stack_updates([updates[i] for i in valid])
        counts = np.array([float(num_examples[i]) for i in valid])
        report = flag_deviating_updates(matrix, flag_config)
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
                matrix[keep], counts[keep], [records[valid[j]] for j in keep],
                None if embeddings is None else [embeddings[valid[j]] for j in keep], history, trust_config)
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


def _trust_aggregate(matrix: np.ndarray, counts: np.ndarray, records: list[dict],
                     embeddings: list[np.ndarray | None] | None, history: TrustHistory | None,
                     config: TrustConfig) -> tuple[np.ndarray, np.ndarray]:
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
        rows = np.vstack([np.asarray(e, dtype=np.float64).ravel() for e, good in zip(embeddings, ok) if good])
        trust[np.array(ok)] = embedding_trust(rows)
    return trust

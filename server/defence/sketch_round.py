"""Robust aggregation of updates the aggregator cannot read: the numpy side of ``--strategy secure-robust``.

The aggregator sees, per client and round, only m decrypted sketch rows (``fedad.common.crypto.sketch``) and
one mean embedding. ``score_sketches`` runs the poisoning issue's scoring (``fedad.server.defence.round.
aggregate_round``: distance to median, cosine, norm ratio, spread, near-duplicates, trust history,
quarantine) on the sketches in place of the updates; ``integer_coefficients`` turns the resulting weights
into the integer ciphertext exponents of the encrypted weighted sum, and ``update_from_mean`` scales the
decrypted mean back. ``simulate_round`` is the same round computed on the quantized integers in the clear
(what the decryptions return, exactly): the benchmark's fast path, checked against real ciphertexts in tests.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np

from fedad.common.crypto.embedding import dequantize_embedding, quantize_embedding
from fedad.common.crypto.packing import SlotLayout, dequantize_mean, quantize, unpack
from fedad.common.crypto.sketch import SketchPlan, sketch_quantized
from fedad.server.defence.config import FlagConfig, TrustConfig
from fedad.server.defence.quarantine import Quarantine
from fedad.server.defence.round import RoundResult, aggregate_round
from fedad.server.defence.trust import TrustHistory

WEIGHT_TOTAL = 1000  # integer weights of the encrypted sum add up to at most this (weight resolution 1e-3)


def quantization_step(clip: float, bits: int) -> float:
    """Value of one quantization level: 2R / (2^b - 1)."""
    return 2.0 * float(clip) / ((1 << int(bits)) - 1)


def sketch_vector(sketch: np.ndarray, clip: float, bits: int) -> np.ndarray:
    """A client's (m, L) integer sketch as one flat float vector in update units."""
    return np.asarray(sketch, dtype=np.float64).ravel() * quantization_step(clip, bits)


def score_sketches(
    mode: str,
    names: Sequence[str],
    sketches: Sequence[np.ndarray | None],
    num_examples: Sequence[float],
    *,
    embeddings: Sequence[np.ndarray | None] | None,
    rejected: Mapping[str, str],
    history: TrustHistory,
    quarantine: Quarantine,
    flag_config: FlagConfig = FlagConfig(),
    trust_config: TrustConfig = TrustConfig(),
) -> RoundResult:
    """Flags, trust and weights of one round from the clients' flat sketch vectors (None: rejected).

    The returned ``update`` is in sketch space and unused; the weights are in ``records``.
    """
    dim = max((np.size(s) for s in sketches if s is not None), default=0)
    return aggregate_round(
        mode,
        names,
        sketches,
        num_examples,
        dim=dim,
        embeddings=embeddings,
        rejected=rejected,
        history=history,
        quarantine=quarantine,
        flag_config=flag_config,
        trust_config=trust_config,
    )


def coefficients(records: Sequence[dict]) -> np.ndarray:
    """Each client's coefficient in the aggregate update sum_k c_k u_k: its weight x its norm rescale factor."""
    return np.array([float(r["weight"]) * (1.0 if r.get("rescale") is None else float(r["rescale"])) for r in records])


def integer_coefficients(coefs: np.ndarray, total: int = WEIGHT_TOTAL) -> tuple[list[int], float]:
    """(a, C): integer exponents a_k = floor(total c_k / C) summing to <= total, and C = sum c_k.

    sum_k c_k u_k = C x (sum_k a_k u_k / sum_k a_k) up to the weights' rounding.
    """
    coefs = np.asarray(coefs, dtype=np.float64)
    big = float(coefs.sum())
    if not np.isfinite(big) or big <= 0.0:
        return [0] * coefs.size, 0.0
    ints = np.floor(int(total) * coefs / big).astype(np.int64)
    return [int(a) for a in ints], big


def lenient_slots(plaintexts: Sequence[int], layout: SlotLayout, count: int) -> np.ndarray:
    """The first ``count`` slot values of decrypted blocks, ignoring the padding slots of the last block.

    Clients prove nothing about their plaintexts, so a client may have put a value in its padding slots;
    the strict ``unpack`` would refuse the whole aggregate for it. A block wider than its slots (an
    overflow) still raises ValueError.
    """
    return unpack(list(plaintexts), layout, len(plaintexts) * layout.slots_per_block)[: int(count)]


def mean_from_slots(slot_sums: np.ndarray, total_weight: int, clip: float, bits: int) -> np.ndarray:
    """Dequantized weighted mean, clamped to [-clip, clip]: an out-of-range value a client packed (no range
    proofs) can carry into or borrow from a neighbouring slot; the clamp keeps every value within the clip."""
    return np.clip(dequantize_mean(slot_sums, total_weight, clip, bits), -float(clip), float(clip))


def update_from_mean(mean: np.ndarray, scale: float) -> np.ndarray:
    """The aggregate update from the decrypted weighted mean sum a_k u_k / sum a_k."""
    return np.asarray(mean, dtype=np.float64) * float(scale)


def simulate_round(
    mode: str,
    names: Sequence[str],
    updates: Sequence[np.ndarray],
    num_examples: Sequence[float],
    embeddings: Sequence[np.ndarray] | None,
    *,
    clip: float,
    bits: int,
    layout: SlotLayout,
    rows: int,
    seed: bytes,
    history: TrustHistory,
    quarantine: Quarantine,
    rng: np.random.Generator,
    flag_config: FlagConfig = FlagConfig(),
    trust_config: TrustConfig = TrustConfig(),
) -> tuple[np.ndarray, RoundResult]:
    """One secure-robust round on plaintext integers: exactly what the encrypted path decrypts.

    Clients quantize their updates (stochastic rounding from ``rng``) and embeddings; the aggregator sees
    sketches and embeddings only and applies integer exponents to the quantized updates.
    Returns (aggregate update, round result).
    """
    qs = [quantize(u, clip, bits, rng)[0].astype(np.int64) for u in updates]
    plan = SketchPlan.draw(seed, layout.blocks_for(qs[0].size), rows)
    sketches = [sketch_vector(sketch_quantized(q, plan, layout), clip, bits) for q in qs]
    embs = None if embeddings is None else [dequantize_embedding(quantize_embedding(e, rng)) for e in embeddings]
    result = score_sketches(
        mode,
        names,
        sketches,
        num_examples,
        embeddings=embs,
        rejected={},
        history=history,
        quarantine=quarantine,
        flag_config=flag_config,
        trust_config=trust_config,
    )
    ints, scale = integer_coefficients(coefficients(result.records))
    if sum(ints) == 0:
        return np.zeros(qs[0].size), result
    slot_sums = np.sum([a * q for a, q in zip(ints, qs, strict=True) if a], axis=0)
    return update_from_mean(mean_from_slots(slot_sums, sum(ints), clip, bits), scale), result

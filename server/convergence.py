"""When a federation with ``--rounds auto`` stops: the federated validation loss stopped improving, or a cap.

Plain functions over the per-round validation losses (the sample-weighted mean reconstruction error of
the global model on every client's validation rows), unit-tested without Flower.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import asdict, dataclass, replace

# documented defaults of --rounds auto (fedad-server --help, README)
# (the synthetic plant's loss has plateaus of a few rounds at ~0.5 % per round before it drops again, so a
# shorter patience or a larger min_delta stops a small demo on a plateau, far from converged)
DEFAULT_PATIENCE = 5
DEFAULT_MIN_DELTA = 0.005
DEFAULT_MAX_ROUNDS = 100


@dataclass(frozen=True)
class StopRule:
    """Stop after ``patience`` rounds without a relative improvement of ``min_delta``, or at ``max_rounds``."""

    patience: int = DEFAULT_PATIENCE
    min_delta: float = DEFAULT_MIN_DELTA
    max_rounds: int = DEFAULT_MAX_ROUNDS

    def to_dict(self) -> dict:
        return asdict(self)


def best_round(losses: Sequence[float | None], min_delta: float) -> int | None:
    """1-based round whose loss last improved on the best so far by more than ``min_delta`` (relative)."""
    best, at = math.inf, None
    for i, loss in enumerate(losses, start=1):
        if loss is None or not math.isfinite(loss):
            continue
        if at is None or loss < best * (1.0 - min_delta):
            best, at = loss, i
    return at


def stop_reason(losses: Sequence[float | None], rule: StopRule, unit: str = "round") -> str | None:
    """Why the federation should stop after ``len(losses)`` rounds (or versions: ``unit``), or None to go on."""
    n = len(losses)
    if n >= rule.max_rounds:
        return f"reached the cap of {rule.max_rounds} {unit}s (--max-rounds) before the validation loss settled"
    at = best_round(losses, rule.min_delta)
    if at is None:
        return None if n < rule.patience else f"no client reported a validation loss in {n} {unit}s"
    if n - at >= rule.patience:
        return (
            f"converged: the validation loss did not improve by {rule.min_delta:.1%} for {rule.patience} "
            f"{unit}s (last such improvement: {losses[at - 1]:.5g} in {unit} {at})"
        )
    return None


def versions_rule(rule: StopRule, nodes: int, buffer: int) -> StopRule:
    """The rule of an asynchronous run: patience in versions of ``buffer`` answers, as many answers as
    ``rule.patience`` rounds of all ``nodes`` (never fewer versions than rounds); the cap stays in versions."""
    return replace(rule, patience=max(rule.patience, math.ceil(rule.patience * int(nodes) / max(int(buffer), 1))))

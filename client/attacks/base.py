"""Base class of the poisoning attacks: a malicious client's hooks on its data, update and example count.

Attacks work on flat update vectors (the client's new weights minus the global weights, flattened layer
after layer). A client calls, in this order: ``poison_data`` on its training set before local training,
then (for colluding attacks, ``needs_benign``) shares its honest update through a
``fedad.client.attacks.collusion.CollusionChannel``, then ``poison_weights`` (or ``poison_update`` on the
flat vector) and ``poison_num_examples`` before answering the server. Only used for security testing.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import ClassVar

import numpy as np

from fedad.common.errors import FedadError


def flat(arrays: Sequence[np.ndarray]) -> np.ndarray:
    """Arrays flattened in order into one float64 vector."""
    if len(arrays) == 0:
        return np.zeros(0)
    return np.concatenate([np.asarray(a, dtype=np.float64).ravel() for a in arrays])


def unflat_like(vector: np.ndarray, like: Sequence[np.ndarray]) -> list[np.ndarray]:
    """Split a flat vector into arrays shaped and typed like ``like``."""
    out, offset = [], 0
    for a in like:
        a = np.asarray(a)
        out.append(np.asarray(vector[offset : offset + a.size]).reshape(a.shape).astype(a.dtype))
        offset += a.size
    if offset != np.size(vector):
        raise ValueError(f"vector of length {np.size(vector)} does not fill arrays of {offset} values")
    return out


def benign_stats(benign: Sequence[np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
    """Coordinate-wise mean and (population) standard deviation of the benign updates the attacker knows."""
    stacked = np.vstack([np.asarray(b, dtype=np.float64).ravel() for b in benign])
    return stacked.mean(axis=0), stacked.std(axis=0)


class Attack:
    """A malicious client's behaviour; the base class is honest (every hook returns its input)."""

    name: ClassVar[str] = "none"
    needs_benign: ClassVar[bool] = False  # True: wants the colluders' honest updates (collusion channel)
    scale_param: ClassVar[str | None] = None  # constructor parameter that ``make_attack(scale=...)`` sets

    def __init__(self, start_round: int = 1, seed: int = 0):
        if int(start_round) < 0:
            raise FedadError(f"attack start round must be >= 0, got {start_round}")
        self.start_round, self.seed = int(start_round), int(seed)

    def is_active(self, server_round: int) -> bool:
        """Whether the attack acts in this server round (it starts at ``start_round``)."""
        return int(server_round) >= self.start_round

    def rng(self, server_round: int) -> np.random.Generator:
        """Reproducible generator for one round (seeded with the attack seed and the round)."""
        return np.random.default_rng([self.seed, int(server_round)])

    def poison_data(self, X: np.ndarray, y: np.ndarray | None = None) -> np.ndarray:
        """Training samples the client trains on; honest: unchanged."""
        return X

    def poison_update(
        self, update: np.ndarray, benign: list[np.ndarray] | None, rng: np.random.Generator
    ) -> np.ndarray:
        """Flat update sent to the server; honest: unchanged."""
        return np.asarray(update, dtype=np.float64)

    def poison_num_examples(self, num_examples: int) -> int:
        """Example count claimed to the server; honest: unchanged."""
        return int(num_examples)

    def poison_weights(
        self,
        server_round: int,
        global_weights: Sequence[np.ndarray],
        new_weights: Sequence[np.ndarray],
        benign: list[np.ndarray] | None = None,
    ) -> list[np.ndarray]:
        """New weights to send: global + poisoned update (unchanged before ``start_round``)."""
        if not self.is_active(server_round) or len(global_weights) == 0:
            return list(new_weights)
        base = flat(global_weights)
        update = flat(new_weights) - base
        poisoned = self.poison_update(update, benign, self.rng(server_round))
        return unflat_like(base + poisoned, new_weights)

    def __repr__(self) -> str:
        params = ", ".join(f"{k}={v!r}" for k, v in vars(self).items())
        return f"{type(self).__name__}({params})"

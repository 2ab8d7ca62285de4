"""Zero / free-rider attack: send no change (the unchanged global model) while claiming many examples."""

from __future__ import annotations

import numpy as np

from fedad.client.attacks.base import Attack


class Zero(Attack):
    """Send a zero update and claim ``claim_factor`` x the real example count."""

    name = "zero"
    scale_param = "claim_factor"

    def __init__(self, claim_factor: float = 10.0, start_round: int = 1, seed: int = 0):
        super().__init__(start_round, seed)
        self.claim_factor = float(claim_factor)

    def poison_update(self, update, benign, rng) -> np.ndarray:
        return np.zeros_like(np.asarray(update, dtype=np.float64))

    def poison_num_examples(self, num_examples: int) -> int:
        return max(1, int(round(self.claim_factor * num_examples)))

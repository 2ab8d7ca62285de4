"""Wires a poisoning attack into a client's rounds (security testing only): data, collusion, update, count."""

from __future__ import annotations

import logging

import numpy as np

from fedad.client.attacks.base import flat
from fedad.client.attacks.collusion import CollusionChannel
from fedad.client.attacks.registry import make_attack
from fedad.common.errors import FedadError


class AttackRunner:
    """Applies ``--attack`` to a ``Site``: poisons its training rows once, then every update it sends."""

    def __init__(
        self,
        name: str,
        scale: float | None,
        start_round: int,
        client: str,
        collusion_dir: str | None = None,
        colluders: int | None = None,
        seed: int = 0,
        num_clients: int | None = None,
    ):
        params = {}
        if name == "alie" and scale is None:  # z from the federation's size and the number of colluders
            params = {"num_clients": num_clients, "num_malicious": colluders}
            if num_clients is None:
                raise FedadError("attack alie needs --num-clients (the federation's size) or --attack-scale (z)")
        self.attack = make_attack(name, scale=scale, start_round=start_round, seed=seed, **params)
        self.client, self.collusion_dir, self.colluders = client, collusion_dir, colluders
        if self.attack.needs_benign and not (collusion_dir and colluders):
            raise FedadError(f"attack {name} needs --collusion-dir and --colluders (a channel shared by the attackers)")

    def prepare(self, site) -> None:
        """Data poisoning: replace the site's training rows before statistics and training."""
        n_fit = len(site.data.X) - len(site.split.test)
        X, y = site.data.X[:n_fit], None if site.data.y is None else site.data.y[:n_fit]
        poisoned = self.attack.poison_data(X, y)
        if poisoned is not X:
            site.split.train = poisoned

    def apply(
        self,
        rnd: int,
        global_weights: list[np.ndarray],
        new_weights: list[np.ndarray],
        num_examples: int,
        log: logging.Logger,
    ) -> tuple[list[np.ndarray], int]:
        """The weights and example count this malicious client reports for round ``rnd``."""
        if not self.attack.is_active(rnd):
            return new_weights, num_examples
        benign = None
        if self.attack.needs_benign:
            honest = flat(new_weights) - flat(global_weights)
            assert self.collusion_dir and self.colluders  # checked in __init__
            benign = CollusionChannel(self.collusion_dir, rnd, self.client, self.colluders).exchange(honest)
        weights = self.attack.poison_weights(rnd, global_weights, new_weights, benign)
        count = self.attack.poison_num_examples(num_examples)
        log.warning("SECURITY TEST: round %d update poisoned with %s", rnd, self.attack.name)
        return weights, count

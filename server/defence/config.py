"""Thresholds of the deviation flags and parameters of the trust weights."""

from __future__ import annotations

from dataclasses import dataclass


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
    # Sites of unequal size: a site with fewer rows runs fewer local steps, so its honest update is smaller
    # (and a big site's larger and farther from the median). Updates are scored after dividing by the size
    # their example count predicts: (count / median count) ** slope, slope a robust (Theil-Sen) fit of log norm
    # on log count, clipped to [0, 1]. Count ratios are clipped to [1 / size_ratio_floor, size_ratio_cap] first:
    # a client's count is its own word, so (like the trust weights' sample_cap) a claim of a huge count buys at
    # most a 4 ** slope larger update; a small count only excuses a smaller update, which weighs little anyway.
    size_aware: bool = True
    size_ratio_cap: float = 4.0
    size_ratio_floor: float = 100.0


@dataclass(frozen=True)
class TrustConfig:
    """Parameters of the trust weights."""

    norm_reference: str = "median_norm"  # rescale updates to: median update norm | "reference" (||median||)
    sample_cap: float | None = 4.0  # example counts are clipped to sample_cap x their median (None: no cap)
    use_history: bool = True

"""``flag`` (seed paper 000): updates that deviate from the majority are flagged and left out; repeat
offenders are quarantined. Scores: distance to the coordinate-wise median, cosine to it, norm ratio,
near-duplicates, each as a MAD-based robust z-score (``fedad.server.defence.flags.flag_deviating_updates``)."""

from __future__ import annotations

from fedad.server.strategies.robust_base import RobustStrategy


class Flag(RobustStrategy):
    """FedAvg over the updates that were not flagged."""

    mode = "flag"

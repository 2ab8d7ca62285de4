"""``trust`` (seed paper 001): every update is kept but weighted by embedding trust 1/(1+||z_i - g||^2),
FLTrust-style direction trust (cosine to the median update, clipped at 0, norms equalised) and a per-client
trust history across rounds (``fedad.server.defence.trust.trust_weights``)."""

from __future__ import annotations

from fedad.server.strategies.robust_base import RobustStrategy


class Trust(RobustStrategy):
    """Trust-weighted aggregation of all valid updates."""

    mode = "trust"

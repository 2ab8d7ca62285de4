"""``robust`` = ``flag`` then ``trust``: deviating clients are flagged and left out, the rest are trust-weighted.
The recommended mode for plants with untrusted nodes."""

from __future__ import annotations

from fedad.server.strategies.robust_base import RobustStrategy


class Robust(RobustStrategy):
    """Flag-and-exclude, then trust-weight the remaining updates."""

    mode = "robust"

"""Quarantine: clients flagged in too many rounds are excluded from then on."""

from __future__ import annotations

from collections.abc import Iterable, Mapping

from fedad.common.errors import FedadError


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
        return {
            "max_flags": self.max_flags,
            "flag_counts": dict(sorted(self.flag_counts.items())),
            "quarantined": sorted(self.quarantined),
        }

    @classmethod
    def from_dict(cls, d: Mapping) -> Quarantine:
        """Rebuild from ``to_dict`` output; FedadError on a malformed checkpoint."""
        try:
            q = cls(int(d["max_flags"]))
            q.flag_counts = {str(k): int(v) for k, v in dict(d["flag_counts"]).items()}
            q.quarantined = {str(n) for n in d["quarantined"]}
        except (KeyError, TypeError, ValueError) as e:
            raise FedadError(f"malformed quarantine checkpoint: {e}") from None
        return q

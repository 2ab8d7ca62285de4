"""Start quorum vs continue quorum, and who dropped out of (or rejoined) the run in which round.

``--min-clients`` is how many admitted nodes the server waits for before round 1; ``--min-fit-clients``
(a count, or a fraction of the nodes that started round 1) is how many usable updates a later round
needs to count. Plain functions and a small record: no Flower here.
"""

from __future__ import annotations

import math
from argparse import ArgumentTypeError
from dataclasses import dataclass, field

DEFAULT_MIN_FIT_CLIENTS = 0.6  # of the nodes that started round 1: a 10-node plant goes on with >= 6


def parse_min_fit_clients(text: str | int | float) -> int | float:
    """``--min-fit-clients``: an integer >= 1 (a count) or a fraction in (0, 1) of the nodes that started."""
    raw = str(text).strip()
    try:
        value = float(raw)
    except ValueError:
        raise ArgumentTypeError(f"expected a count >= 1 or a fraction in (0, 1], got {text!r}") from None
    if value.is_integer() and value >= 1 and "." not in raw:
        return int(value)
    if 0 < value <= 1:
        return value
    raise ArgumentTypeError(f"expected a count >= 1 or a fraction in (0, 1], got {text!r}")


def continue_quorum(min_fit_clients: int | float, started: int) -> int:
    """Usable updates a round needs to count: the count itself, or ceil(fraction x started), at least 1."""
    if isinstance(min_fit_clients, int):
        return max(1, min_fit_clients)
    return max(1, math.ceil(min_fit_clients * started - 1e-9))


def describe_quorum(min_fit_clients: int | float, started: int) -> str:
    """The continue quorum in words, for logs and errors."""
    need = continue_quorum(min_fit_clients, started)
    if isinstance(min_fit_clients, int):
        return f"--min-fit-clients {min_fit_clients}"
    return f"--min-fit-clients {min_fit_clients:g} of the {started} node(s) that started = {need}"


@dataclass
class Participation:
    """Who started round 1, and per round who dropped out of or rejoined the run (by node name)."""

    started: list[str] = field(default_factory=list)
    events: list[dict] = field(default_factory=list)  # {"round", "client", "event": "dropped" | "rejoined"}
    last: set[str] = field(default_factory=set)  # the nodes whose update counted in the last round

    def observe(self, rnd: int, took_part: set[str], failed: set[str]) -> tuple[list[str], list[str]]:
        """Record round ``rnd``: (dropped, rejoined) against the previous round (round 1 sets ``started``).

        A node dropped when it took part in the previous round (or started) and not in this one, or it
        failed this round; it rejoined when it is back after having dropped.
        """
        if not self.started:
            self.started = sorted(took_part | failed)
            self.last = set(self.started)
        dropped = sorted((self.last - took_part) | (failed - took_part))
        gone = {e["client"] for e in self.events if e["event"] == "dropped"} - {
            e["client"] for e in self.events if e["event"] == "rejoined"
        }
        rejoined = sorted((took_part - self.last) & gone)
        self.events += [{"round": rnd, "client": n, "event": "dropped"} for n in dropped if n not in gone]
        self.events += [{"round": rnd, "client": n, "event": "rejoined"} for n in rejoined]
        self.last = set(took_part)
        return dropped, rejoined

    def dropped_in(self) -> dict[str, int]:
        """Node name -> the round it last dropped in, for nodes that have not rejoined since."""
        out: dict[str, int] = {}
        for e in self.events:
            if e["event"] == "dropped":
                out[e["client"]] = e["round"]
            else:
                out.pop(e["client"], None)
        return out

    def to_dict(self) -> dict:
        return {"started": list(self.started), "events": list(self.events), "last": sorted(self.last)}

    @classmethod
    def from_dict(cls, d: dict | None) -> Participation:
        d = d or {}
        return cls(
            started=[str(n) for n in d.get("started", [])],
            events=[dict(e) for e in d.get("events", [])],
            last={str(n) for n in d.get("last", [])},
        )

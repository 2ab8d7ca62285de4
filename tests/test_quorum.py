"""Start vs continue quorum and the drop/rejoin record (plain functions, no Flower)."""

from __future__ import annotations

from argparse import ArgumentTypeError

import pytest

from fedad.server.quorum import Participation, continue_quorum, describe_quorum, parse_min_fit_clients


def test_min_fit_clients_parses_counts_and_fractions():
    assert parse_min_fit_clients("7") == 7 and isinstance(parse_min_fit_clients("7"), int)
    assert parse_min_fit_clients("0.6") == pytest.approx(0.6)
    assert parse_min_fit_clients("1.0") == 1.0 and isinstance(parse_min_fit_clients("1.0"), float)
    assert parse_min_fit_clients(3) == 3  # a YAML config gives an int
    assert parse_min_fit_clients(0.5) == 0.5
    for bad in ("0", "-1", "1.5", "0.0", "many", ""):
        with pytest.raises(ArgumentTypeError):
            parse_min_fit_clients(bad)


def test_continue_quorum_of_a_fraction_rounds_up():
    assert continue_quorum(0.6, 10) == 6  # the compose plant goes on with >= 6 of 10
    assert continue_quorum(0.6, 4) == 3  # ceil(2.4)
    assert continue_quorum(0.5, 4) == 2
    assert continue_quorum(1.0, 7) == 7
    assert continue_quorum(0.01, 3) == 1
    assert continue_quorum(5, 10) == 5 and continue_quorum(5, 3) == 5  # a count is a count
    assert "= 6" in describe_quorum(0.6, 10) and describe_quorum(4, 10) == "--min-fit-clients 4"


def test_participation_names_who_dropped_and_rejoined_per_round():
    p = Participation()
    assert p.observe(1, {"a", "b", "c", "d"}, set()) == ([], [])
    assert p.started == ["a", "b", "c", "d"]
    assert p.observe(2, {"a", "b", "c"}, {"d"}) == (["d"], [])
    assert p.observe(3, {"a", "b"}, set()) == (["c"], [])  # c simply did not answer
    assert p.observe(4, {"a", "b"}, set()) == ([], [])  # still gone: not dropped twice
    assert p.observe(5, {"a", "b", "d"}, set()) == ([], ["d"])
    assert p.dropped_in() == {"c": 3}
    assert [(e["round"], e["client"], e["event"]) for e in p.events] == [
        (2, "d", "dropped"),
        (3, "c", "dropped"),
        (5, "d", "rejoined"),
    ]
    q = Participation.from_dict(p.to_dict())  # checkpointed and resumed
    assert q.observe(6, {"a", "b", "c", "d"}, set()) == ([], ["c"])
    assert q.dropped_in() == {}


def test_a_node_that_fails_in_round_one_counts_as_started_and_dropped():
    p = Participation()
    assert p.observe(1, {"a", "b"}, {"c"}) == (["c"], [])
    assert p.started == ["a", "b", "c"]

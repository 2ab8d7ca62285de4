"""--rounds auto: the stopping rule on the federated validation losses."""

from __future__ import annotations

import pytest

from fedad.server.convergence import StopRule, best_round, stop_reason, versions_rule
from fedad.server.main import build_parser, parse_rounds, stop_rule


def test_stops_after_patience_rounds_without_a_relative_improvement():
    rule = StopRule(patience=3, min_delta=0.01, max_rounds=50)
    losses = [1.0, 0.5, 0.3, 0.299, 0.2985, 0.298]  # rounds 4-6 improve by less than 1 % on round 3
    assert [stop_reason(losses[:k], rule) is None for k in range(1, 6)] == [True] * 5
    reason = stop_reason(losses, rule)
    assert reason and "converged" in reason and "round 3" in reason


def test_slow_steady_improvement_keeps_going_and_a_plateau_followed_by_a_drop_is_not_the_end():
    rule = StopRule(patience=5, min_delta=0.005, max_rounds=100)
    steady = [1.0 * 0.994**k for k in range(30)]  # 0.6 % per round: always an improvement
    assert stop_reason(steady, rule) is None
    plateau = [1.0, 0.6, 0.4, 0.398, 0.397, 0.396, 0.395, 0.2]  # flat for 4 rounds, then a drop
    assert stop_reason(plateau, rule) is None
    assert best_round(plateau, 0.005) == 8


def test_cap_and_missing_losses():
    assert "cap of 4 rounds" in stop_reason([1.0, 0.5, 0.25, 0.125], StopRule(max_rounds=4))
    assert stop_reason([None, None], StopRule(patience=3)) is None
    assert "no client reported" in stop_reason([None, None, None], StopRule(patience=3))
    assert best_round([None, float("nan"), 2.0, 1.0], 0.0) == 4


def test_asynchronous_patience_counts_the_answers_of_as_many_synchronous_rounds():
    rule = StopRule(patience=5, min_delta=0.005, max_rounds=100)
    assert versions_rule(rule, nodes=10, buffer=8) == StopRule(patience=7, min_delta=0.005, max_rounds=100)
    assert versions_rule(rule, nodes=10, buffer=10).patience == 5
    assert versions_rule(rule, nodes=10, buffer=3).patience == 17
    assert versions_rule(rule, nodes=4, buffer=8).patience == 5  # never fewer versions than rounds
    losses = [1.0, 0.5, 0.4] + [0.41] * 6
    assert stop_reason(losses, rule, "version") == (
        "converged: the validation loss did not improve by 0.5% for 5 versions "
        "(last such improvement: 0.4 in version 3)"
    )
    assert stop_reason(losses, versions_rule(rule, nodes=10, buffer=8), "version") is None
    assert "cap of 3 versions" in stop_reason([1.0, 0.5, 0.25], StopRule(max_rounds=3), "version")


def test_server_option_parses_auto_or_a_number():
    assert parse_rounds("auto") == "auto" and parse_rounds("7") == 7
    args = build_parser().parse_args(["--rounds", "auto", "--patience", "2", "--max-rounds", "9"])
    assert stop_rule(args) == StopRule(patience=2, min_delta=0.005, max_rounds=9)
    assert stop_rule(build_parser().parse_args(["--rounds", "4"])) is None
    with pytest.raises(SystemExit):
        build_parser().parse_args(["--rounds", "often"])


@pytest.mark.integration
def test_a_real_federation_with_rounds_auto_stops_by_the_rule_and_reports_why(tmp_path):
    import json

    from procs import finish, free_port, rounds, start_client, start_server

    from fedad.common.synth import write_plant

    write_plant(tmp_path / "plant", nodes=2, records=6000, seed=2, formats=("csv",))
    out, logs = tmp_path / "run", tmp_path / "logs"
    logs.mkdir()
    address = f"127.0.0.1:{free_port()}"
    server = start_server(
        address,
        out,
        "--rounds",
        "auto",
        "--patience",
        "2",
        "--min-delta",
        "0.05",
        "--max-rounds",
        "25",
        "--min-clients",
        "2",
    )
    clients = [start_client(address, tmp_path / "plant" / f"node_0{k}.csv", f"n{k}", logs) for k in (1, 2)]
    assert finish([server, *clients]) == [0, 0, 0], (tmp_path / "run-server.log").read_text()[-2000:]
    losses = [r["loss"] for r in rounds(out)]
    rule = StopRule(patience=2, min_delta=0.05, max_rounds=25)
    # it ran exactly until the rule said stop: not one round less, not one more
    assert all(stop_reason(losses[:k], rule) is None for k in range(1, len(losses)))
    assert stop_reason(losses, rule) is not None
    conv = json.loads((out / "report.json").read_text())["convergence"]
    assert conv["rounds_run"] == len(losses) and conv["stop_reason"] == stop_reason(losses, rule)
    assert losses[conv["model_round"] - 1] == min(losses)  # the lowest-loss round's model is the one kept
    assert f"stopped after round {len(losses)}" in (tmp_path / "run-server.log").read_text()

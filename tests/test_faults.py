"""Faults over real gRPC on 127.0.0.1: a lost quorum stops the run at once with a partial report, a suspended
node is dropped (keepalive) and rejoins, a node whose server is gone gives up after --connect-timeout."""

from __future__ import annotations

import json
import signal
import time

import pytest
from procs import finish, free_port, rounds, start_client, start_server, wait_for

from fedad.client.health import is_healthy

pytestmark = pytest.mark.integration

LONG = "900"  # --wait-timeout / --round-timeout: far beyond what any check below waits, so no timeout ends a run


@pytest.fixture(scope="module")
def plant(tmp_path_factory):
    from fedad.common.synth import write_plant

    d = tmp_path_factory.mktemp("plant")
    write_plant(d, nodes=4, records=60_000, seed=5, formats=("csv",))
    return sorted(d.glob("node_*.csv"))


def _dirs(tmp_path):
    (tmp_path / "logs").mkdir()
    return tmp_path / "run", tmp_path / "logs"


def test_a_lost_quorum_stops_the_run_with_a_partial_report_and_ends_every_node(plant, tmp_path):
    out, logs = _dirs(tmp_path)
    address = f"127.0.0.1:{free_port()}"
    server = start_server(
        address,
        out,
        *("--rounds", "50", "--min-clients", "4", "--min-fit-clients", "3", "--local-epochs", "2"),
        *("--wait-timeout", LONG, "--round-timeout", LONG, "--rejoin-timeout", "5"),
    )
    clients = [start_client(address, plant[i], f"node{i}", logs) for i in range(4)]
    wait_for(lambda: len(rounds(out)) >= 1, 300, "round 1", [server, *clients])
    for c in clients[2:]:
        c.send_signal(signal.SIGKILL)
    t_kill = time.monotonic()
    codes = finish([server, *clients[:2]], timeout=300)
    stopped_after = time.monotonic() - t_kill
    text = (tmp_path / "run-server.log").read_text()
    assert codes == [1, 1, 1], text[-3000:]
    # it stopped on the lost quorum, not on any of the 900 s timeouts
    assert stopped_after < 200, stopped_after
    report = json.loads((out / "report.json").read_text())
    assert report["status"] == "failed"
    stopped = report["stopped"]
    # killed mid-round: the round ends with too few updates; between rounds: too few nodes to start the next
    assert stopped["reason"].endswith("--min-fit-clients 3") or "fewer than --min-fit-clients 3" in stopped["reason"]
    assert stopped["rounds_completed"] == len(rounds(out)) >= 1
    assert stopped["started"] == ["node0", "node1", "node2", "node3"]
    assert stopped["connected"] == ["node0", "node1"]
    assert set(stopped["dropped"]) == {"node2", "node3"}
    assert all(r > stopped["rounds_completed"] - 1 for r in stopped["dropped"].values()), stopped
    assert [r["round"] for r in report["rounds"]] == list(range(1, stopped["rounds_completed"] + 1))
    assert "unknown" not in json.dumps(report)
    for name in ("node0", "node1"):  # the surviving nodes heard why, in one line, and exited 1
        log = (logs / f"{name}.log").read_text()
        assert "error: the server stopped the run: " in log and "--min-fit-clients 3" in log, log[-2000:]
        assert "Traceback" not in log, log[-3000:]


def test_a_suspended_node_is_dropped_by_keepalive_then_rejoins(plant, tmp_path):
    out, logs = _dirs(tmp_path)
    address = f"127.0.0.1:{free_port()}"
    server = start_server(
        address,
        out,
        *("--rounds", "400", "--min-clients", "4", "--local-epochs", "1", "--keepalive", "1"),
        *("--wait-timeout", LONG, "--round-timeout", LONG),
    )
    # --connect-timeout 30: once the server is killed at the end, the nodes give up after 30 s, not 120
    clients = [
        start_client(address, plant[i], f"node{i}", logs, "--keepalive", "1", "--connect-timeout", "30")
        for i in range(4)
    ]
    procs = [server, *clients]
    wait_for(lambda: len(rounds(out)) >= 1, 300, "round 1", procs)
    # SIGSTOP: the process stops answering keepalive pings like a node behind a cut network cable
    clients[3].send_signal(signal.SIGSTOP)
    try:
        wait_for(
            lambda: "client node3 disconnected" in (tmp_path / "run-server.log").read_text(),
            300,
            "the server to drop the silent node",
            [],
        )
        dropped_at = len(rounds(out))
        time.sleep(0.5)
    finally:
        clients[3].send_signal(signal.SIGCONT)
    wait_for(lambda: any("node3" in r.get("rejoined", []) for r in rounds(out)), 300, "node3 to rejoin", procs)
    server.send_signal(signal.SIGKILL)  # enough seen: the rest of the 400 rounds would only take time
    server.wait()
    for c in clients:
        c.wait(timeout=300)
    recs = rounds(out)
    dropped = [r["round"] for r in recs if "node3" in r.get("dropped", [])]
    back = [r["round"] for r in recs if "node3" in r.get("rejoined", [])]
    assert dropped and back and dropped[0] < back[0], [(r["round"], r["clients"]) for r in recs]
    assert dropped[0] <= dropped_at + 1
    assert all("node3" not in r["clients"] for r in recs if dropped[0] <= r["round"] < back[0])
    assert "node3" in recs[back[0] - 1]["clients"]  # takes part again from the round it came back in
    node_log = (logs / "node3.log").read_text()
    assert "lost (UNAVAILABLE); reconnecting" in node_log or "lost (" in node_log, node_log[-2000:]


def test_a_node_whose_server_is_gone_gives_up_after_connect_timeout(plant, tmp_path):
    out, logs = _dirs(tmp_path)
    address = f"127.0.0.1:{free_port()}"
    server = start_server(address, out, "--rounds", "400", "--min-clients", "2", "--local-epochs", "1")
    health = [tmp_path / f"health-{i}" for i in range(2)]
    clients = [
        start_client(address, plant[i], f"node{i}", logs, "--connect-timeout", "4", "--health-file", str(health[i]))
        for i in range(2)
    ]
    wait_for(lambda: len(rounds(out)) >= 1, 300, "round 1", [server, *clients])
    wait_for(lambda: all(is_healthy(h)[0] for h in health), 60, "fresh health files", [server, *clients])
    server.send_signal(signal.SIGKILL)
    server.wait()
    codes = finish(clients, timeout=300)
    assert codes == [1, 1]
    for i in range(2):
        log = (logs / f"node{i}.log").read_text()
        assert f"error: lost the fedad server at {address} and could not reconnect within 4 s" in log, log[-2000:]
        assert "Traceback" not in log, log[-2000:]
        assert not health[i].exists()  # a node without its server is not healthy


def test_a_terminated_server_exits_non_zero_with_a_report(tmp_path):
    out = tmp_path / "run"
    server = start_server(f"127.0.0.1:{free_port()}", out, "--min-clients", "2", "--wait-timeout", LONG)
    log = tmp_path / "run-server.log"
    wait_for(lambda: log.exists() and "listening on" in log.read_text(), 120, "the server to listen", [server])
    server.send_signal(signal.SIGTERM)  # docker stop / restart
    assert finish([server], timeout=120) == [1], log.read_text()[-2000:]
    report = json.loads((out / "report.json").read_text())
    assert report["status"] == "failed" and report["stopped"]["reason"].startswith("terminated by a signal")


def test_a_restarted_server_resumes_with_the_nodes_that_are_left(plant, tmp_path):
    out, logs = _dirs(tmp_path)
    address = f"127.0.0.1:{free_port()}"
    args = ("--rounds", "6", "--min-clients", "4", "--local-epochs", "3", "--wait-timeout", LONG)
    server = start_server(address, out, *args)
    clients = [start_client(address, plant[i], f"node{i}", logs, "--connect-timeout", "300") for i in range(4)]
    wait_for(lambda: len(rounds(out)) >= 1, 300, "round 1", [server, *clients])
    clients[3].send_signal(signal.SIGKILL)
    wait_for(lambda: any("node3" in r["dropped"] for r in rounds(out)), 300, "node3 to drop", [server, *clients[:3]])
    server.send_signal(signal.SIGKILL)  # a crash after the drop: 3 of the 4 that started are left (>= 0.6 x 4)
    server.wait()
    done = len(rounds(out))
    server = start_server(address, out, *args, "--resume")
    codes = finish([server, *clients[:3]], timeout=300)
    assert codes == [0, 0, 0, 0], (tmp_path / "run-server.log").read_text()[-3000:]
    recs = rounds(out)
    assert [r["round"] for r in recs] == list(range(1, 7))
    assert all(r["clients"] == ["node0", "node1", "node2"] for r in recs[done:])
    report = json.loads((out / "report.json").read_text())
    assert report["status"] == "ok" and report["participation"]["dropped"] == {
        "node3": next(r["round"] for r in recs if "node3" in r["dropped"])
    }

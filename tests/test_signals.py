"""SIGTERM (docker stop, kill) unwinds a fedad command like Ctrl-C: its cleanup runs, one line says so, exit 143.

Before, Python's default ended the process on the spot: a node's health file stayed behind and `fedad demo`
left its server and clients running."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest
from procs import ENV, finish, free_port, rounds, start_client, start_server, wait_for

from fedad.common.config import run_cli

LONG = "900"  # --wait-timeout / --round-timeout: far beyond what any check below waits

# a command body that says it is ready, then works until stopped; its finally block is the cleanup under test
BODY = """
import sys, time
from pathlib import Path
from fedad.common.config import run_cli
d = Path(sys.argv[1])
def body():
    try:
        (d / "ready").write_text("1")
        while True:
            time.sleep(0.05)
    finally:
        (d / "cleaned").write_text("1")
sys.exit(run_cli(body))
"""


def _popen(cmd: list[str], log: Path) -> subprocess.Popen:
    proc = subprocess.Popen(cmd, stdout=open(log, "a"), stderr=subprocess.STDOUT, env=ENV)
    proc.log_path = log  # type: ignore[attr-defined]  # watched for progress
    return proc


def test_sigterm_runs_the_commands_cleanup_and_exits_143_with_one_line(tmp_path):
    proc = _popen([sys.executable, "-c", BODY, str(tmp_path)], tmp_path / "out.log")
    wait_for(lambda: (tmp_path / "ready").exists(), 120, "the command to start", [proc])
    proc.send_signal(signal.SIGTERM)
    assert finish([proc], timeout=120) == [143]
    assert (tmp_path / "cleaned").exists()
    assert (tmp_path / "out.log").read_text().strip().splitlines() == ["-c: stopped by SIGTERM"]


def test_a_command_run_in_process_leaves_the_callers_sigterm_handler_as_it_was():
    def mine(signum, frame):
        raise AssertionError("not called")

    before = signal.signal(signal.SIGTERM, mine)
    try:
        assert run_cli(lambda: 0) == 0
        assert signal.getsignal(signal.SIGTERM) is mine  # someone else's handler: left alone throughout
        signal.signal(signal.SIGTERM, signal.SIG_DFL)
        seen = []
        assert run_cli(lambda: seen.append(signal.getsignal(signal.SIGTERM)) or 3) == 3
        assert seen[0] is not signal.SIG_DFL  # installed for the command ...
        assert signal.getsignal(signal.SIGTERM) is signal.SIG_DFL  # ... and taken back after it
    finally:
        signal.signal(signal.SIGTERM, before)


@pytest.fixture(scope="module")
def plant(tmp_path_factory):
    from fedad.common.synth import write_plant

    d = tmp_path_factory.mktemp("plant")
    write_plant(d, nodes=1, records=30_000, seed=2, formats=("csv",))
    return sorted(d.glob("node_*.csv"))


@pytest.mark.integration
def test_a_node_stopped_by_sigterm_removes_its_health_file_and_says_so(plant, tmp_path):
    (tmp_path / "logs").mkdir()
    out, health = tmp_path / "run", tmp_path / "node0.health"
    address = f"127.0.0.1:{free_port()}"
    server = start_server(address, out, "--rounds", "5000", "--min-clients", "1", "--wait-timeout", LONG)
    client = start_client(address, plant[0], "node0", tmp_path / "logs", "--health-file", str(health))
    wait_for(lambda: len(rounds(out)) >= 1 and health.exists(), 300, "round 1 and a health file", [server, client])
    client.send_signal(signal.SIGTERM)
    assert finish([client], timeout=120) == [143]
    assert not health.exists()
    assert "fedad-client: stopped by SIGTERM" in client.log_path.read_text()
    server.send_signal(signal.SIGTERM)
    finish([server], timeout=120)


def _processes_mentioning(text: str, but: int) -> dict[int, str]:
    """pid -> command line of the running processes other than ``but`` whose command line contains ``text``."""
    found = {}
    for cmdline in Path("/proc").glob("[0-9]*/cmdline"):
        pid = int(cmdline.parent.name)
        if pid == but:
            continue
        try:
            line = " ".join(a.decode(errors="replace") for a in cmdline.read_bytes().split(b"\0"))
        except OSError:  # the process has gone
            continue
        if text in line:
            found[pid] = line
    return found


@pytest.mark.integration
@pytest.mark.skipif(not Path("/proc/self/cmdline").exists(), reason="needs /proc to list the demo's processes")
def test_fedad_demo_stopped_by_sigterm_stops_its_server_and_clients(tmp_path):
    out = tmp_path / "demo"
    demo = _popen(
        [
            sys.executable,
            "-m",
            "fedad.common.cli",
            "demo",
            *("--clients", "2", "--records", "20000", "--rounds", "5000", "--no-baselines", "--out", str(out)),
        ],
        tmp_path / "demo.log",
    )
    try:
        wait_for(lambda: len(rounds(out)) >= 1, 300, "round 1 of the demo", [demo])
        assert len(_processes_mentioning(str(out), demo.pid)) == 3  # fedad-server and 2 clients
        demo.send_signal(signal.SIGTERM)
        assert finish([demo], timeout=300) == [143]
        assert _processes_mentioning(str(out), demo.pid) == {}
    finally:  # whatever failed, leave nothing running
        for pid in _processes_mentioning(str(out), demo.pid):
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
    assert "fedad demo: stopped by SIGTERM" in (tmp_path / "demo.log").read_text()
    assert json.loads((out / "report.json").read_text())["status"] == "failed"

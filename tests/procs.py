"""Helpers for integration tests: real fedad-server / fedad-client processes on 127.0.0.1.

Waits are bounded by progress, not by the clock alone: a ``timeout`` is how long the processes may go
without any observable progress (a line in one of their logs, a process exiting) before the test fails;
the overall bound is ``OVERALL_FACTOR`` times that, so a loaded 2-core machine slows a test down but does
not fail it, while a hung run still fails.
"""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import sys
import time
from pathlib import Path

ENV = dict(
    os.environ,
    FLWR_TELEMETRY_ENABLED="0",
    FLWR_DISABLE_UPDATE_CHECK="1",
    PYTHONUNBUFFERED="1",
    OMP_NUM_THREADS="1",
    MKL_NUM_THREADS="1",
)


OVERALL_FACTOR = 10


class Progress:
    """Observable progress of some processes: their log files growing, or one of them exiting."""

    def __init__(self, procs=(), paths=()) -> None:
        self.procs = list(procs)
        self.paths = [Path(x) for x in paths] + [q.log_path for q in self.procs if getattr(q, "log_path", None)]
        self.last = self._state()

    def _state(self) -> tuple:
        sizes = tuple(p.stat().st_size if p.exists() else -1 for p in self.paths)
        return sizes, tuple(q.poll() is not None for q in self.procs)

    def moved(self) -> bool:
        """Whether anything changed since the last call."""
        now = self._state()
        moved, self.last = now != self.last, now
        return moved


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def keyholder_cmd() -> list[str]:
    """The installed ``fedad-keyholder`` command, as an operator runs it, or its module where not installed."""
    script = shutil.which("fedad-keyholder") or str(Path(sys.executable).with_name("fedad-keyholder"))
    return [script] if Path(script).is_file() else [sys.executable, "-m", "fedad.server.keyholder"]


def start_server(address: str, out: Path, *args: str, log: Path | None = None) -> subprocess.Popen:
    log = log or out.with_name(out.name + "-server.log")
    cmd = [sys.executable, "-m", "fedad.server.main", "--address", address, "--out", str(out), *args]
    proc = subprocess.Popen(cmd, stdout=open(log, "a"), stderr=subprocess.STDOUT, env=ENV)
    proc.log_path = log  # type: ignore[attr-defined]  # watched for progress
    return proc


def start_client(address: str, data: Path, name: str | None, log_dir: Path, *args: str) -> subprocess.Popen:
    """A fedad-client process logging to ``log_dir``/NAME.log; ``name`` None leaves --name to the client (its
    default: the certificate's subject under mutual TLS, else the data file's stem) and names the log after the
    data file."""
    cmd = [sys.executable, "-m", "fedad.client.main", "--server", address, "--data", str(data), "--device", "cpu"]
    cmd += ["--name", name] if name is not None else []
    log = log_dir / f"{name if name is not None else data.stem}.log"
    proc = subprocess.Popen([*cmd, *args], stdout=open(log, "a"), stderr=subprocess.STDOUT, env=ENV)
    proc.log_path = log  # type: ignore[attr-defined]  # watched for progress
    return proc


def run_module(module: str, *args: str, timeout: float = 600) -> subprocess.CompletedProcess:
    """``python -m MODULE ARGS`` to its exit, its output captured as text: a command the test expects to end by
    itself (a refusal, a one-shot job). ``timeout`` is slack for a busy machine, not a limit on the command."""
    cmd = [sys.executable, "-m", module, *args]
    return subprocess.run(cmd, capture_output=True, text=True, env=ENV, timeout=timeout)


def run_client(address: str, data: Path, *args: str, timeout: float = 600) -> subprocess.CompletedProcess:
    """One fedad-client run to its exit (``run_module``): a node that should stop by itself."""
    return run_module(
        "fedad.client.main", "--server", address, "--data", str(data), "--device", "cpu", *args, timeout=timeout
    )


def wait_for(predicate, timeout: float, what: str, procs=(), watch=()) -> None:
    """Wait until ``predicate()``; fail after ``timeout`` s without progress of ``procs``/``watch`` (their
    logs, their exits), or after ``OVERALL_FACTOR`` x ``timeout`` in all; ``procs`` are killed on failure."""
    progress = Progress(procs, watch)
    start = stall = time.monotonic()
    while True:
        if predicate():
            return
        now = time.monotonic()
        if progress.moved():
            stall = now
        if now - stall > timeout or now - start > OVERALL_FACTOR * timeout:
            break
        time.sleep(0.2)
    for p in procs:
        p.kill()
    raise AssertionError(
        f"gave up waiting for {what}: {now - stall:.0f} s without progress ({now - start:.0f} s in all)"
    )


def rounds(out: Path) -> list[dict]:
    path = out / "rounds.jsonl"
    if not path.exists():
        return []
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def checkpointed(out: Path) -> int:
    """The round of the server's last checkpoint in ``out`` (0: none yet)."""
    try:
        return json.loads((out / "checkpoint" / "state.json").read_text())["round"]
    except (FileNotFoundError, json.JSONDecodeError):
        return 0


def finish(procs, timeout: float = 240, watch=()) -> list[int]:
    """Exit codes of ``procs``, once all have exited; fails (killing them) after ``timeout`` s without progress
    (a log line of any of them, one exiting, a change in ``watch``) or ``OVERALL_FACTOR`` x ``timeout`` in all."""
    wait_for(lambda: all(p.poll() is not None for p in procs), timeout, "the processes to exit", procs, watch)
    return [p.wait() for p in procs]

"""Helpers for integration tests: real fedad-server / fedad-client processes on 127.0.0.1."""

from __future__ import annotations

import json
import os
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


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start_server(address: str, out: Path, *args: str, log: Path | None = None) -> subprocess.Popen:
    log = log or out.with_name(out.name + "-server.log")
    cmd = [sys.executable, "-m", "fedad.server.main", "--address", address, "--out", str(out), *args]
    return subprocess.Popen(cmd, stdout=open(log, "a"), stderr=subprocess.STDOUT, env=ENV)


def start_client(address: str, data: Path, name: str, log_dir: Path, *args: str) -> subprocess.Popen:
    cmd = [
        sys.executable,
        "-m",
        "fedad.client.main",
        "--server",
        address,
        "--data",
        str(data),
        "--name",
        name,
        "--device",
        "cpu",
        *args,
    ]
    return subprocess.Popen(cmd, stdout=open(log_dir / f"{name}.log", "a"), stderr=subprocess.STDOUT, env=ENV)


def wait_for(predicate, timeout: float, what: str, procs=()) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return
        time.sleep(0.2)
    for p in procs:
        p.kill()
    raise AssertionError(f"timed out after {timeout:.0f} s waiting for {what}")


def rounds(out: Path) -> list[dict]:
    path = out / "rounds.jsonl"
    if not path.exists():
        return []
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def finish(procs, timeout: float = 240) -> list[int]:
    codes = []
    for p in procs:
        try:
            codes.append(p.wait(timeout=timeout))
        except subprocess.TimeoutExpired:
            for q in procs:
                q.kill()
            raise
    return codes

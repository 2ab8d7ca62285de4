"""One whole federation as OS processes on 127.0.0.1, shared by the benches that time real rounds."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path

ENV = dict(
    os.environ,
    FLWR_TELEMETRY_ENABLED="0",
    FLWR_DISABLE_UPDATE_CHECK="1",
    PYTHONUNBUFFERED="1",
    OMP_NUM_THREADS="1",
    MKL_NUM_THREADS="1",
)


def rounds_arg(text: str) -> str:
    """A bench's --rounds: what fedad-server --rounds parses (``parse_rounds``), a positive count or 'auto'."""
    from argparse import ArgumentTypeError

    from fedad.server.main import parse_rounds

    rounds = parse_rounds(text)
    if rounds != "auto" and int(rounds) < 1:
        raise ArgumentTypeError(f"expected a positive integer or 'auto', got {text!r}")
    return str(rounds)


def free_address() -> str:
    """A free host:port on 127.0.0.1."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return f"127.0.0.1:{sock.getsockname()[1]}"


def run_federation(
    name: str,
    out: Path,
    address: str,
    server_args: Sequence[str],
    shards: Sequence[Path],
    client_args: Callable[[Path], Sequence[str]],
    timeout: float,
    side: Sequence[tuple[str, Sequence[str]]] = (),
) -> tuple[float, list[dict], dict]:
    """fedad-server (``--address``/``--out`` plus ``server_args``) and one fedad-client per shard
    (``client_args(shard)`` after the common options); ``side`` processes (log name, argv) start first and are
    stopped at the end. Logs in OUT/logs. Returns (wall seconds of server and clients, rounds.jsonl records,
    report.json); RuntimeError with the server log's tail when any of them fails."""
    out.mkdir(parents=True)
    logs = out / "logs"
    logs.mkdir()

    def start(log: str, argv: Sequence[str]) -> subprocess.Popen:
        return subprocess.Popen(list(argv), stdout=open(logs / f"{log}.log", "w"), stderr=subprocess.STDOUT, env=ENV)

    helpers = [start(log, argv) for log, argv in side]
    t0 = time.perf_counter()
    procs = [
        start(
            "server", [sys.executable, "-m", "fedad.server.main", "--address", address, "--out", str(out), *server_args]
        )
    ]
    for shard in shards:
        procs.append(
            start(
                shard.stem,
                [
                    sys.executable,
                    "-m",
                    "fedad.client.main",
                    "--server",
                    address,
                    "--data",
                    str(shard),
                    "--name",
                    shard.stem,
                    "--device",
                    "cpu",
                    "--connect-timeout",
                    "300",
                    *client_args(shard),
                ],
            )
        )
    try:
        codes = [p.wait(timeout=timeout) for p in procs]
    finally:
        for p in [*procs, *helpers]:
            if p.poll() is None:
                p.kill()
    wall = time.perf_counter() - t0
    if any(codes):
        tail = (logs / "server.log").read_text().strip().splitlines()[-3:]
        raise RuntimeError(f"{name} federation failed (exit codes {codes}): {' | '.join(tail)}")
    recs = [json.loads(line) for line in (out / "rounds.jsonl").read_text().splitlines() if line.strip()]
    return wall, recs, json.loads((out / "report.json").read_text())

"""The node's liveness file (``fedad-client --health-file``): fresh while its gRPC stream to the server is up.

A background thread rewrites the file every ``interval`` seconds while the channel is READY and removes it
as soon as the channel is not (keepalive turns a dead stream into a failed channel within seconds); a
stopped or hung process stops refreshing it. A container healthcheck therefore reads real liveness:

    python -m fedad.client.health /run/fedad/health --max-age 30      # exit 0: healthy, 1: not
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import threading
import time
from collections.abc import Sequence
from pathlib import Path

import grpc

DEFAULT_INTERVAL = 5.0
DEFAULT_MAX_AGE = 30.0


class LinkHealth:
    """Tracks the channel's connectivity and keeps ``path`` fresh while it is READY (no file: not healthy)."""

    def __init__(self, path: str | os.PathLike, server: str, interval: float = DEFAULT_INTERVAL) -> None:
        self.path, self.server, self.interval = Path(path), server, float(interval)
        self.ready = False
        self._stop = threading.Event()
        self._wake = threading.Event()
        self._thread = threading.Thread(target=self._loop, name="fedad-health", daemon=True)

    def on_state(self, state: grpc.ChannelConnectivity) -> None:
        """gRPC channel connectivity callback: READY means the stream to the server is up."""
        ready = state == grpc.ChannelConnectivity.READY
        if ready != self.ready:
            self.ready = ready
            self._wake.set()

    def start(self) -> LinkHealth:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.path.unlink(missing_ok=True)  # a previous run's file must not read as this run's liveness
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        self._wake.set()
        self._thread.join(timeout=5)
        self.path.unlink(missing_ok=True)

    def _loop(self) -> None:
        while not self._stop.is_set():
            if self.ready:
                self._write()
            else:
                self.path.unlink(missing_ok=True)
            self._wake.wait(self.interval)
            self._wake.clear()

    def _write(self) -> None:
        tmp = self.path.with_name(f".{self.path.name}.tmp")
        tmp.write_text(json.dumps({"status": "connected", "server": self.server, "updated": time.time()}) + "\n")
        os.replace(tmp, self.path)


def is_healthy(path: str | os.PathLike, max_age: float = DEFAULT_MAX_AGE) -> tuple[bool, str]:
    """(healthy, why): the file exists and was refreshed within ``max_age`` seconds."""
    p = Path(path)
    try:
        age = time.time() - p.stat().st_mtime
    except FileNotFoundError:
        return False, f"{p}: no health file (not connected to the server)"
    if age > max_age:
        return False, f"{p}: last refreshed {age:.0f} s ago (over {max_age:g} s: stream lost or process stalled)"
    return True, f"{p}: connected, refreshed {age:.0f} s ago"


def main(argv: Sequence[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m fedad.client.health", description=__doc__)
    p.add_argument("path", help="the file given to fedad-client --health-file")
    p.add_argument("--max-age", type=float, default=DEFAULT_MAX_AGE, help="seconds a refresh stays valid")
    args = p.parse_args(argv)
    ok, why = is_healthy(args.path, args.max_age)
    print(why, file=sys.stdout if ok else sys.stderr)
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())

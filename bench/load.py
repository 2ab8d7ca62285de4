"""Run a command on a loaded machine: N busy CPU processes spin while it runs; prints its wall time and exit code.

The busy processes are always stopped (normal end, failure, Ctrl-C). The exit code is the command's.

    python bench/load.py -- python -m pytest -q -m integration
    python bench/load.py --busy 8 --json load.json -- python -m pytest -q tests/test_faults.py
"""

from __future__ import annotations

import argparse
import json
import multiprocessing
import os
import platform
import subprocess
import sys
import time
from collections.abc import Sequence


def spin(stop) -> None:
    """Burn one core until ``stop`` is set."""
    x = 0
    while not stop.is_set():
        for _ in range(100_000):
            x = (x * 1103515245 + 12345) & 0x7FFFFFFF


def run_loaded(command: Sequence[str], busy: int) -> tuple[int, float]:
    """(exit code, wall seconds) of ``command`` while ``busy`` processes spin; they are stopped in every case."""
    stop = multiprocessing.Event()
    spinners = [multiprocessing.Process(target=spin, args=(stop,), daemon=True) for _ in range(busy)]
    for p in spinners:
        p.start()
    t0 = time.perf_counter()
    try:
        code = subprocess.call(list(command))
    finally:
        seconds = time.perf_counter() - t0
        stop.set()
        for p in spinners:
            p.join(timeout=5)
            if p.is_alive():
                p.kill()
                p.join()
    return code, seconds


def main(argv: Sequence[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--busy", type=int, default=8, help="busy CPU processes running beside the command")
    p.add_argument("--json", default=None, metavar="FILE", help="also write the result here")
    p.add_argument("command", nargs=argparse.REMAINDER, help="the command, after --")
    args = p.parse_args(argv)
    command = args.command[1:] if args.command[:1] == ["--"] else args.command
    if not command or args.busy < 0:
        p.error("give the command after -- and --busy >= 0")
    code, seconds = run_loaded(command, args.busy)
    result = {
        "command": command,
        "busy_processes": args.busy,
        "cpus": os.cpu_count(),
        "wall_s": round(seconds, 1),
        "exit_code": code,
        "python": platform.python_version(),
    }
    cpus = os.cpu_count()
    print(f"{' '.join(command)}: exit {code} in {seconds:.1f} s with {args.busy} busy processes on {cpus} CPUs")
    if args.json:
        with open(args.json, "w") as f:
            json.dump(result, f, indent=2)
    return code


if __name__ == "__main__":
    sys.exit(main())

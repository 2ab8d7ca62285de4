"""Torch intra-op threads: `--threads N`, or auto: the cores shared among the host's fedad processes."""

from __future__ import annotations

import argparse
import os
from pathlib import Path

# argv entries (basename) or `-m` modules that mark a compute-heavy fedad process
FEDAD_PROGRAMS = ("fedad-client", "fedad-server", "fedad-keyholder")
FEDAD_MODULES = ("fedad.client.main", "fedad.server.main", "fedad.server.keyholder")
FEDAD_SUBCOMMANDS = ("train", "score", "evaluate")
MAX_THREADS = 1024


def parse_threads(value: str) -> int | None:
    """--threads: 'auto' (None) or a positive integer."""
    if value.strip().lower() == "auto":
        return None
    try:
        n = int(value)
    except ValueError:
        raise argparse.ArgumentTypeError(f"--threads must be 'auto' or a positive integer (got '{value}')") from None
    if not 1 <= n <= MAX_THREADS:  # torch aborts the process when it cannot start that many threads
        raise argparse.ArgumentTypeError(f"expected between 1 and {MAX_THREADS} threads, got {n}")
    return n


def add_threads_argument(parser) -> None:
    """Add --threads (default auto) to a parser or argument group."""
    parser.add_argument(
        "--threads",
        type=parse_threads,
        default="auto",
        help="torch CPU threads of this process; auto: the usable cores divided by the number of fedad "
        "processes on this host (fedad-client, fedad-server, fedad train/score), 1 when that is unknown",
    )


def usable_cores() -> int:
    """Cores this process may run on (its CPU affinity), at least 1."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except (AttributeError, OSError):
        return max(1, os.cpu_count() or 1)


def is_fedad_command(argv: list[str]) -> bool:
    """True when a process's argv is a fedad client, server, key holder, or `fedad train/score/evaluate`."""
    for i, arg in enumerate(argv[:4]):
        base = os.path.basename(arg)
        following = argv[i + 1] if i + 1 < len(argv) else ""
        if base in FEDAD_PROGRAMS or (arg == "-m" and following in FEDAD_MODULES):
            return True
        umbrella = base == "fedad" or (arg == "-m" and following == "fedad.common.cli")
        subcommand = following if base == "fedad" else (argv[i + 2] if i + 2 < len(argv) else "")
        if umbrella and subcommand in FEDAD_SUBCOMMANDS:
            return True
    return False


def fedad_pids(proc: Path = Path("/proc")) -> list[int] | None:
    """Ids of this host's fedad compute processes (this one included); None when /proc is unreadable."""
    try:
        entries = [p for p in proc.iterdir() if p.name.isdigit()]
    except OSError:
        return None
    pids = []
    for entry in entries:
        try:
            raw = (entry / "cmdline").read_bytes()
        except OSError:  # the process ended, or is not ours to read
            continue
        if raw and is_fedad_command([a.decode(errors="replace") for a in raw.rstrip(b"\0").split(b"\0")]):
            pids.append(int(entry.name))
    return pids


def count_fedad_processes(proc: Path = Path("/proc")) -> int | None:
    """How many fedad compute processes this host runs; None when unknown (no /proc, or none seen)."""
    pids = fedad_pids(proc)
    return len(pids) or None if pids is not None else None


def choose_threads(requested: int | None, cores: int, processes: int | None) -> int:
    """Torch threads: the requested count, else cores // fedad processes (at least 1; 1 when the count is unknown)."""
    if requested is not None:
        return max(1, requested)
    if not processes or processes < 1:
        return 1
    return max(1, cores // processes)


def apply_threads(requested: int | None) -> tuple[int, str]:
    """Set torch's intra-op threads; returns (threads, a phrase that says why, for the log)."""
    import torch

    if requested is not None:
        n, why = choose_threads(requested, 1, None), "--threads"
    else:
        cores, processes = usable_cores(), count_fedad_processes()
        n = choose_threads(None, cores, processes)
        why = (
            f"auto: {cores} cores / {processes} fedad processes on this host"
            if processes
            else "auto: the number of fedad processes on this host is unknown"
        )
    torch.set_num_threads(n)
    return n, why

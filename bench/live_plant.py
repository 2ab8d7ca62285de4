"""A live plant on this box: do N nodes keep up with R records/s each while the federation runs rounds?

The synthetic plant (``fedad.common.synth``, --records-per-node records per node) is each node's shard. A
continuous server (`fedad-server --rounds 0 --round-interval`) and one `fedad-client --stream` per node run as
OS processes on 127.0.0.1 (one torch thread each); the emitter (``fedad.common.emitter``, the one of `fedad
data emit`) appends each node's own records to its growing CSV at --rate records/s (the wall-clock time of each
write is logged: record i's ``sent`` time). Emitting starts once round 1 has ended (every node holds a model) and lasts
--seconds while rounds go on every --round-interval. Every decision is written (``--all-decisions``) with the
wall-clock time it was made (``at``), so per node:

- scored/s: decisions of the window's records made within the window, per second;
- arrival-to-decision latency p50/p99: ``at - sent`` (file write to decision: the file poll, parsing, scoring,
  and any wait behind earlier records and behind training on the same cores);
- backlog: records written but not decided yet, sampled every second (max over the window, and at its end);
- kept up: every record of the window decided by its end + --drain seconds and the backlog at the window's end
  under one second of records.

    python bench/live_plant.py                                   # 10 nodes, 1,000 records/s each, 120 s
    python bench/live_plant.py --rate 500 --seconds 60 --json plant.json
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
from _federation_run import ENV, free_address


def rounds_done(out: Path) -> int:
    path = out / "rounds.jsonl"
    return len(path.read_text().splitlines()) if path.is_file() else 0


def node_stats(path: Path, t0: float, t1: float, emitted: int, rate: float, log: np.ndarray) -> dict:
    """One node's numbers from its decision lines (``record``, ``at``); ``log``: (lines written so far, wall
    time) after each write of the emitter."""
    records, at = [], []
    with open(path) as f:
        for line in f:
            d = json.loads(line)
            records.append(int(d["record"]))
            at.append(float(d["at"]))
    a = np.asarray(at)
    s = log[np.searchsorted(log[:, 0], np.asarray(records), side="right"), 1]  # when each record was written
    window = (s >= t0) & (s <= t1)
    lat = (a[window] - s[window]) * 1000.0
    ticks = np.arange(t0 + 1.0, t1 + 1e-9, 1.0)
    s_sorted, a_sorted = np.sort(s), np.sort(a)
    backlog = np.searchsorted(s_sorted, ticks, side="right") - np.searchsorted(a_sorted, ticks, side="right")
    end_backlog = int(backlog[-1]) if len(backlog) else 0
    decided = int(window.sum())
    return {
        "emitted": emitted,
        "decided": decided,
        "scored_per_s": float(((a >= t0) & (a <= t1) & window).sum() / (t1 - t0)),
        "p50_ms": float(np.percentile(lat, 50)) if len(lat) else None,
        "p99_ms": float(np.percentile(lat, 99)) if len(lat) else None,
        "max_ms": float(lat.max()) if len(lat) else None,
        "backlog_max": int(backlog.max()) if len(backlog) else 0,
        "backlog_end": end_backlog,
        "kept_up": decided >= emitted and end_backlog <= rate,
    }


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--nodes", type=int, default=10)
    ap.add_argument("--rate", type=float, default=1000.0, help="records/s per node")
    ap.add_argument("--seconds", type=float, default=120.0, help="measured window")
    ap.add_argument("--round-interval", default="20s", help="the server's --round-interval")
    ap.add_argument("--local-epochs", type=int, default=1)
    ap.add_argument("--records-per-node", type=int, default=20_000, help="each node's shard (and replayed stream)")
    ap.add_argument("--drain", type=float, default=10.0, help="seconds after the window for the last decisions")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--json", default=None, metavar="FILE")
    ap.add_argument("--keep", default=None, metavar="DIR", help="keep the run's files (logs, decisions) here")
    args = ap.parse_args(argv)

    from fedad.common.emitter import Emitter, feed_from_file
    from fedad.common.synth import write_plant

    work = Path(args.keep) if args.keep else Path(tempfile.mkdtemp(prefix="fedad-live-plant-"))
    work.mkdir(parents=True, exist_ok=True)
    logs, streams, alarms, out = work / "logs", work / "streams", work / "alarms", work / "server"
    for d in (logs, streams, alarms):
        d.mkdir(exist_ok=True)
    write_plant(work / "plant", args.nodes, args.nodes * args.records_per_node, args.seed, formats=("csv",))
    names = [f"node_{k:02d}" for k in range(1, args.nodes + 1)]
    feeds = [feed_from_file(work / "plant" / f"{n}.csv", streams / f"{n}.csv") for n in names]
    emitter = Emitter(feeds, args.rate)
    emitter.start(clock=False)  # headers now; records from the window's start

    address = free_address()

    def start(log: str, argv: list[str]) -> subprocess.Popen:
        return subprocess.Popen(argv, stdout=open(logs / f"{log}.log", "w"), stderr=subprocess.STDOUT, env=ENV)

    server = start(
        "server",
        [
            sys.executable, "-m", "fedad.server.main", "--address", address, "--out", str(out),
            "--rounds", "0", "--round-interval", args.round_interval, "--min-clients", str(args.nodes),
            "--local-epochs", str(args.local_epochs), "--seed", str(args.seed), "--stop-file", str(work / "STOP"),
        ],
    )  # fmt: skip
    clients = [
        start(
            n,
            [
                sys.executable, "-m", "fedad.client.main", "--server", address, "--name", n, "--device", "cpu",
                "--threads", "1", "--data", str(work / "plant" / f"{n}.csv"), "--stream", str(streams / f"{n}.csv"),
                "--alarms", str(alarms / f"{n}.jsonl"), "--all-decisions",
            ],
        )
        for n in names
    ]  # fmt: skip
    procs = [server, *clients]
    result: dict = {}
    try:
        began = time.monotonic()
        while rounds_done(out) < 1:  # every node holds round 1's model
            if any(p.poll() is not None for p in procs):
                raise SystemExit(f"a process ended before round 1; logs in {logs}")
            if time.monotonic() - began > 900:
                raise SystemExit(f"no round 1 after 900 s; logs in {logs}")
            time.sleep(0.5)
        r0 = rounds_done(out)
        load0 = os.getloadavg()
        emitter.begin()
        t0 = time.time()
        writes: list[tuple[int, float]] = [(0, t0)]
        emitter.run(args.seconds, tick_s=0.01, on_tick=lambda e: writes.append((e.feeds[0].written, time.time())))
        t1 = time.time()
        log = np.asarray(writes, dtype=np.float64)
        r1 = rounds_done(out)
        load = os.getloadavg()
        emitted = feeds[0].written
        deadline = time.monotonic() + args.drain  # the last records of the window
        while time.monotonic() < deadline:
            counts = [
                sum(1 for _ in open(alarms / f"{n}.jsonl")) if (alarms / f"{n}.jsonl").exists() else 0 for n in names
            ]
            if min(counts) >= emitted:
                break
            time.sleep(0.5)
        nodes = {n: node_stats(alarms / f"{n}.jsonl", t0, t1, emitted, args.rate, log) for n in names}
        result = {
            "nodes": args.nodes,
            "rate": args.rate,
            "seconds": args.seconds,
            "round_interval": args.round_interval,
            "local_epochs": args.local_epochs,
            "records_per_node": args.records_per_node,
            "rounds_in_window": r1 - r0,
            "rounds_total": rounds_done(out),
            "loadavg_before": load0,
            "loadavg_1_5_15": load,
            "cpus": os.cpu_count(),
            "per_node": nodes,
            "kept_up": all(v["kept_up"] for v in nodes.values()),
        }
    finally:
        for p in procs:
            if p.poll() is None:
                p.send_signal(signal.SIGTERM)
        for p in procs:
            try:
                p.wait(timeout=30)
            except subprocess.TimeoutExpired:
                p.kill()
        if not args.keep:
            shutil.rmtree(work, ignore_errors=True)
    if not result:
        return 1
    print(
        f"{args.nodes} nodes x {args.rate:g} records/s for {args.seconds:g} s, {result['rounds_in_window']} round(s) "
        f"in the window (interval {args.round_interval}, {args.local_epochs} local epoch(s)), "
        f"load average {load[0]:.2f} / {load[1]:.2f} / {load[2]:.2f} on {os.cpu_count()} CPUs"
    )
    print(
        f"{'node':<8} {'scored/s':>9} {'p50 ms':>8} {'p99 ms':>8} {'max ms':>9} {'backlog max':>11} {'end':>6}  kept up"
    )
    for n, v in result["per_node"].items():
        print(
            f"{n:<8} {v['scored_per_s']:>9.0f} {v['p50_ms'] or float('nan'):>8.1f} {v['p99_ms'] or float('nan'):>8.1f} "
            f"{v['max_ms'] or float('nan'):>9.1f} {v['backlog_max']:>11} {v['backlog_end']:>6}  "
            f"{'yes' if v['kept_up'] else 'NO'}"
        )
    print(f"kept up: {'yes, every node' if result['kept_up'] else 'NO'}")
    if args.json:
        Path(args.json).write_text(json.dumps(result, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())

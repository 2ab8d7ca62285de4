"""Live scoring latency and batch throughput of the dense autoencoder on one CPU core.

A paced producer emits CSV lines at a fixed rate (record i is due at t0 + i / rate); the scorer takes every line
already due, parses them with ``fedad.common.stream_source.RowParser.parse_block`` (one pyarrow call from 16
lines on, else line by line) and decides them with
``fedad.common.live_scorer.LiveScorer`` (the path of `fedad score --follow` and `fedad-client --stream`).
Arrival-to-decision latency = decision time - due time, so time a record waits while earlier ones are scored
counts. When several records are due at once they are scored in one call (micro-batching, at most
--max-batch); at low rates each call scores one record. Producer and scorer share one thread (the producer is a
schedule, not a second process), so the numbers are the scorer's own cost on one core
(torch.set_num_threads(1)).

Hand-over: during the 10k records/s run (or the middle rate) a second thread loads a model directory and swaps
it in (``LiveScorer.swap``) every --swap-every seconds; the latency of records due while a load+swap runs is
reported separately. Batch: ``AutoencoderDetector.decision_function`` on --batch-rows raw records.

    python bench/live.py                         # rates 1k, 10k, 100k records/s, 5 s each
    python bench/live.py --json live.json --seconds 3
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import threading
import time
from pathlib import Path

import numpy as np
import torch

from fedad.common.detector import AutoencoderDetector
from fedad.common.live_scorer import LiveModel, LiveScorer
from fedad.common.stream_source import RowParser

N_FEATURES = 12
TARGET_P99_MS = 10.0
TARGET_BATCH = 1_000_000


def records(n: int, seed: int = 0) -> np.ndarray:
    """Raw float64 records on a low-dimensional manifold (content does not change the speed)."""
    rng = np.random.default_rng(seed)
    return rng.normal(size=(n, 3)) @ rng.normal(size=(3, N_FEATURES)) + 0.05 * rng.normal(size=(n, N_FEATURES))


def csv_lines(X: np.ndarray) -> list[str]:
    """The records as CSV data lines (6 significant digits, as a sensor gateway would write them)."""
    return [",".join(f"{v:.6g}" for v in row) + "\n" for row in X]


def run_rate(
    scorer: LiveScorer,
    parser: RowParser,
    lines: list[str],
    rate: float,
    seconds: float,
    max_batch: int,
    swapping: threading.Event | None = None,
) -> dict:
    """Stream ``rate`` records/s for ``seconds``; latencies (ms) overall and of records due while a swap ran."""
    n = int(rate * seconds)
    lat = np.empty(n)
    during = np.zeros(n, dtype=bool)
    calls = 0
    t0 = time.perf_counter() + 0.01
    i = 0
    while i < n:
        now = time.perf_counter()
        due = min(n, int((now - t0) * rate) + 1) if now >= t0 else 0
        if due <= i:
            wait = t0 + i / rate - now
            if wait > 0.0005:
                time.sleep(wait - 0.0003)
            continue
        j = min(due, i + max_batch)
        rows, _, _ = parser.parse_block([lines[k % len(lines)] for k in range(i, j)], i + 2)
        if swapping is not None and swapping.is_set():
            during[i:j] = True
        decisions = scorer.score(rows)
        done = time.perf_counter()
        if swapping is not None and swapping.is_set():
            during[i:j] = True
        lat[i:j] = (done - (t0 + np.arange(i, j) / rate)) * 1000.0
        calls += 1
        assert len(decisions) == j - i
        i = j
    warm = min(n // 10, int(rate * 0.5))  # the first half second (or tenth) warms up
    keep = np.arange(n) >= warm
    row = {
        "rate": int(rate),
        "records": int(keep.sum()),
        "p50_ms": float(np.percentile(lat[keep], 50)),
        "p99_ms": float(np.percentile(lat[keep], 99)),
        "max_ms": float(lat[keep].max()),
        "records_per_call": float(n / calls),
    }
    sel = keep & during
    if sel.any():
        row.update(
            handover_records=int(sel.sum()),
            handover_p50_ms=float(np.percentile(lat[sel], 50)),
            handover_p99_ms=float(np.percentile(lat[sel], 99)),
            handover_max_ms=float(lat[sel].max()),
        )
    return row


def swapper(
    scorer: LiveScorer, model_dir: Path, every: float, stop: threading.Event, swapping: threading.Event
) -> None:
    """Every ``every`` seconds: load the model directory and hand it over (what a node does with a new model)."""
    version = 1
    while not stop.wait(every):
        swapping.set()
        det = AutoencoderDetector.load(model_dir, device="cpu")
        version += 1
        scorer.swap(LiveModel(det, str(version)))
        swapping.clear()


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--rates", type=float, nargs="+", default=[1_000, 10_000, 100_000], help="records/s per node")
    ap.add_argument("--seconds", type=float, default=5.0, help="seconds per rate")
    ap.add_argument("--max-batch", type=int, default=4096, help="most records scored per call")
    ap.add_argument("--swap-every", type=float, default=0.5, help="seconds between model hand-overs")
    ap.add_argument("--batch-rows", type=int, default=2_000_000, help="records of the batch throughput run")
    ap.add_argument("--json", default=None, metavar="FILE", help="write the results here")
    args = ap.parse_args(argv)
    torch.set_num_threads(1)
    X = records(200_000)
    det = AutoencoderDetector("dense", epochs=2, device="cpu", seed=0).fit(X[:20_000])
    lines = csv_lines(X[:50_000])
    names = [f"x{i}" for i in range(N_FEATURES)]
    parser = RowParser(",".join(names) + "\n", names)
    rows = []
    handover_rate = 10_000 if 10_000 in args.rates else sorted(args.rates)[len(args.rates) // 2]
    with tempfile.TemporaryDirectory() as tmp:
        det.save(Path(tmp) / "m")
        for rate in args.rates:
            scorer = LiveScorer(LiveModel(det, "1"))
            rows.append(run_rate(scorer, parser, lines, rate, args.seconds, args.max_batch))
            print(f"rate {rate:g}: {rows[-1]}", file=sys.stderr)
        scorer = LiveScorer(LiveModel(det, "1"))
        stop, swapping = threading.Event(), threading.Event()
        th = threading.Thread(target=swapper, args=(scorer, Path(tmp) / "m", args.swap_every, stop, swapping))
        th.start()
        try:
            hand = run_rate(scorer, parser, lines, handover_rate, args.seconds, args.max_batch, swapping)
        finally:
            stop.set()
            th.join()
        hand["swaps"] = int(scorer.version) - 1
    big = records(args.batch_rows, seed=1)
    det.decision_function(big[:100_000])
    best = min(_timed(lambda: det.decision_function(big)) for _ in range(3))
    batch = args.batch_rows / best
    print("| records/s | p50 ms | p99 ms | max ms | records per call |")
    print("|---:|---:|---:|---:|---:|")
    for r in rows:
        print(
            f"| {r['rate']:,} | {r['p50_ms']:.3f} | {r['p99_ms']:.3f} | {r['max_ms']:.2f} "
            f"| {r['records_per_call']:.1f} |"
        )
    print(
        f"\nhand-over at {hand['rate']:,} records/s ({hand['swaps']} swaps, load + swap each): all records p50 "
        f"{hand['p50_ms']:.3f} ms, p99 {hand['p99_ms']:.3f} ms, max {hand['max_ms']:.2f} ms; "
        + (
            f"{hand['handover_records']} records due during a hand-over: p50 {hand['handover_p50_ms']:.3f} ms, "
            f"p99 {hand['handover_p99_ms']:.3f} ms, max {hand['handover_max_ms']:.2f} ms"
            if "handover_records" in hand
            else "no record was due during a hand-over"
        )
    )
    p99_10k = next((r["p99_ms"] for r in rows if r["rate"] == 10_000), None)
    print(
        f"batch decision_function: {batch:,.0f} records/s (target {TARGET_BATCH:,}); p99 at 10k records/s: "
        + (f"{p99_10k:.3f} ms (target < {TARGET_P99_MS} ms)" if p99_10k is not None else "not run")
    )
    if args.json:
        out = {"rows": rows, "handover": hand, "batch_rows_per_s": batch, "threads": 1, "max_batch": args.max_batch}
        Path(args.json).write_text(json.dumps(out, indent=2) + "\n")
    return 0


def _timed(fn) -> float:
    t0 = time.perf_counter()
    fn()
    return time.perf_counter() - t0


if __name__ == "__main__":
    sys.exit(main())

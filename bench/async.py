"""Benchmark: asynchronous buffered rounds (`--async-buffer K`, FedBuff) against synchronous rounds, slow nodes.

Both runs are whole federations as OS processes on 127.0.0.1 (fedad-server + N fedad-client over gRPC) on
the same synthetic plant (`fedad data synth`: N nodes, --records split evenly, seed), the last --slow nodes
started with `--slowdown F` (each answers F times slower than it trains: it sleeps (F - 1) x its training
time, so it costs no extra CPU). Sync: fedavg, --rounds R. Async: fedavg --async-buffer K, --versions V.
Both default to `auto` (fedad-server --rounds auto, the product's stop rule), so each run stops when its own
validation loss settles and the two F1s compare converged models.

Time to the target validation loss: the federated validation loss (sample-weighted over every node's
validation rows, as the server computes it) of each round / version, against the seconds since the first
training instruction when that model was made: sync, the cumulative round seconds (training, aggregation
and that round's validation); async, the record's ``elapsed`` (a version's loss is measured later, when the
slowest node has evaluated it, but the model existed then). The target is the sync run's final loss; when
the async run never reaches it, the larger of the two runs' lowest losses (printed as such).

    python bench/async.py [--clients 10] [--slow 2] [--slowdown 5] [--records 200000] [--rounds auto|R]
                          [--async-buffer K (default: the fast nodes)] [--versions auto|V] [--json async.json]

Target (issue 17): >= 2x shorter wall time to the same validation loss with 2 slow nodes; F1 within 0.02.
"""

from __future__ import annotations

import argparse
import itertools
import json
import os
import sys
import tempfile
import time
from pathlib import Path

from _federation_run import free_address, rounds_arg, run_federation

TARGET_RATIO, TARGET_F1 = 2.0, 0.02


def curve(recs: list[dict], mode: str) -> list[tuple[float, float | None]]:
    """(seconds since the first training instruction when the model was made, its validation loss) per record."""
    if mode == "async":
        return [(float(r["elapsed"]), r["loss"]) for r in recs]
    return [(t, r["loss"]) for t, r in zip(itertools.accumulate(float(r["seconds"]) for r in recs), recs, strict=True)]


def time_to(points: list[tuple[float, float | None]], target: float) -> float | None:
    """The first time the loss is at or below ``target`` (None: never)."""
    return next((t for t, loss in points if loss is not None and loss <= target), None)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--clients", type=int, default=10)
    ap.add_argument("--slow", type=int, default=2, help="how many nodes (the last ones) are slow")
    ap.add_argument("--slowdown", type=float, default=5.0, help="the slow nodes answer this many times slower")
    ap.add_argument("--records", type=int, default=200_000, help="records of the whole plant")
    ap.add_argument("--rounds", type=rounds_arg, default="auto", help="synchronous rounds, or auto")
    ap.add_argument(
        "--async-buffer", type=int, default=None, help="K: answers per asynchronous version (default: the fast nodes)"
    )
    ap.add_argument("--versions", type=rounds_arg, default="auto", help="asynchronous versions, or auto")
    ap.add_argument(
        "--max-staleness",
        type=int,
        default=None,
        help="fedad-server --max-staleness for the async run (default: the server's own default)",
    )
    ap.add_argument("--local-epochs", type=int, default=2)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--timeout", type=float, default=1800.0, help="seconds a whole run may take")
    ap.add_argument("--json", default=None, metavar="FILE")
    args = ap.parse_args()
    if args.async_buffer is None:
        args.async_buffer = max(1, args.clients - args.slow)
    from fedad.common.synth import write_plant

    load = os.getloadavg()
    rows = []
    with tempfile.TemporaryDirectory(prefix="fedad-bench-async-") as tmp:
        plant = Path(tmp) / "plant"
        write_plant(plant, nodes=args.clients, records=args.records, seed=args.seed, formats=("csv",))
        shards = sorted(plant.glob("node_*.csv"))
        slow = set(shards[len(shards) - args.slow :])
        slow_names = sorted(p.stem for p in slow)
        common = ["--min-clients", str(args.clients), "--local-epochs", str(args.local_epochs)]
        common += ["--seed", str(args.seed)]

        def client_args(shard: Path) -> list[str]:
            return ["--slowdown", str(args.slowdown)] if shard in slow else []

        stale = [] if args.max_staleness is None else ["--max-staleness", str(args.max_staleness)]
        runs = {
            "sync": ["--rounds", args.rounds, *common],
            "async": ["--rounds", args.versions, "--async-buffer", str(args.async_buffer), *stale, *common],
        }
        for mode, server_args in runs.items():
            print(f"  {mode}: fedad-server {' '.join(server_args)} ...", file=sys.stderr, flush=True)
            t0 = time.perf_counter()
            wall, recs, report = run_federation(
                mode, Path(tmp) / mode, free_address(), server_args, shards, client_args, args.timeout
            )
            m = report.get("metrics") or {}
            points = curve(recs, mode)
            rows.append(
                {
                    "mode": mode,
                    "rounds": len(recs),
                    "curve": points,
                    "final_loss": recs[-1]["loss"] if recs else None,
                    "best_loss": min((x for _, x in points if x is not None), default=None),
                    "stop_reason": (report.get("convergence") or {}).get("stop_reason"),
                    "f1": m.get("f1"),
                    "roc_auc": m.get("roc_auc"),
                    "training_s": points[-1][0] if points else None,
                    "wall_s": wall,
                    "bench_s": time.perf_counter() - t0,
                    "staleness": [t for r in recs for t in (r.get("staleness") or {}).values()],
                    "slow_answers": sum(n in r.get("staleness", {}) for r in recs for n in slow_names),
                    "stale_dropped": sum(len(r.get("stale") or {}) for r in recs),
                }
            )
    sync, asyn = rows
    target, how = sync["final_loss"], "the sync run's final validation loss"
    if time_to(asyn["curve"], target) is None:
        target, how = max(sync["best_loss"], asyn["best_loss"]), "the larger of the two runs' lowest losses"
    for r in rows:
        r["time_to_target_s"] = time_to(r["curve"], target)
    ratio = (
        sync["time_to_target_s"] / asyn["time_to_target_s"]
        if sync["time_to_target_s"] is not None and asyn["time_to_target_s"]
        else None
    )
    f1_delta = None if sync["f1"] is None or asyn["f1"] is None else asyn["f1"] - sync["f1"]
    ok = ratio is not None and ratio >= TARGET_RATIO and f1_delta is not None and abs(f1_delta) <= TARGET_F1
    print(
        f"\nSync vs async (fedavg, --async-buffer {args.async_buffer}), {args.clients} nodes x "
        f"{args.records // args.clients} records, {args.slow} of them --slowdown {args.slowdown:g}, "
        f"{args.local_epochs} local epochs, seed {args.seed}; load average at start "
        f"{load[0]:.1f} / {load[1]:.1f} / {load[2]:.1f}\n"
    )
    print(f"target validation loss {target:.5f} ({how})\n")
    print("| mode | rounds / versions | time to target s | final val loss | F1 | ROC-AUC | training s | wall s |")
    print("|---|---:|---:|---:|---:|---:|---:|---:|")
    for r in rows:
        tt = "never" if r["time_to_target_s"] is None else f"{r['time_to_target_s']:.1f}"
        f1 = "-" if r["f1"] is None else f"{r['f1']:.3f}"
        auc = "-" if r["roc_auc"] is None else f"{r['roc_auc']:.3f}"
        print(
            f"| {r['mode']} | {r['rounds']} | {tt} | {r['final_loss']:.5f} | {f1} | {auc} | "
            f"{r['training_s']:.1f} | {r['wall_s']:.1f} |"
        )
    for r in rows:
        print(f"{r['mode']} stopped: {r['stop_reason'] or '-'}")
    st = asyn["staleness"]
    if st:
        print(
            f"\nasync staleness of the aggregated answers: mean {sum(st) / len(st):.2f}, max {max(st)}; answers of the "
            f"slow nodes aggregated: {asyn['slow_answers']}, dropped as too stale: {asyn['stale_dropped']}"
        )
    print(
        f"\nsync / async time to target: {'-' if ratio is None else f'{ratio:.2f}x'} (target >= {TARGET_RATIO:g}x); "
        f"F1 async - sync: {'-' if f1_delta is None else f'{f1_delta:+.3f}'} (target within {TARGET_F1:g}): "
        f"{'met' if ok else 'NOT met'}"
    )
    if args.json:
        summary = {"target_loss": target, "target_rule": how, "ratio": ratio, "f1_delta": f1_delta, "met": ok}
        Path(args.json).write_text(json.dumps({"rows": rows, **summary, "load_average": load}, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())

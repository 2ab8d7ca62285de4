"""Benchmark: compressed updates (`--compress q8`, `q8+topk:F`) beside uncompressed, in the same run.

Each scheme runs the same `fedad demo` federation (server + N client processes over gRPC on 127.0.0.1,
same plant, seed and fixed number of rounds, no baselines) and reads its rounds.jsonl (bytes up and down
per round, as the server counts them: tensor bytes plus metrics and config) and report.json (federated F1
and ROC-AUC on every node's test rows). Compression applies to the clients' updates (bytes up) and to the
global model (bytes down: the q8 step between broadcast versions; the full model only where a node holds
none, as every node in round 1). Bytes down are everything sent in the round: the training instructions
and the validation ones (each carries the model: uncompressed, twice per round). "steady" is the mean over
rounds 2.. (no full downloads).

    python bench/compression.py [--schemes none q8 q8+topk:0.1] [--strategy fedavg] [--clients 10]
                                [--records 200000] [--rounds 8] [--json compression.json]

Targets (issue 17): >= 4x fewer bytes per round (up + down) with F1 within 0.01 of uncompressed.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

TARGET_RATIO, TARGET_F1 = 4.0, 0.01


def run_demo(scheme: str, args, out: Path) -> dict:
    cmd = [sys.executable, "-m", "fedad.common.cli", "demo", "--clients", str(args.clients)]
    cmd += ["--records", str(args.records), "--rounds", str(args.rounds), "--strategy", args.strategy]
    cmd += ["--seed", str(args.seed), "--no-baselines", "--compress", scheme, "--out", str(out)]
    t0 = time.perf_counter()
    p = subprocess.run(cmd, capture_output=True, text=True)
    wall = time.perf_counter() - t0
    if p.returncode:
        raise SystemExit(f"fedad demo --compress {scheme} failed: {p.stderr.strip().splitlines()[-1:]}")
    rounds = [json.loads(x) for x in (out / "rounds.jsonl").read_text().splitlines() if x.strip()]
    train = [r for r in rounds if r.get("bytes_up") is not None and r.get("phase", "fit") == "fit"] or rounds
    report = json.loads((out / "report.json").read_text())
    m = report.get("metrics") or {}
    up = sum(r["bytes_up"] for r in train) / len(train)
    down = sum(r["bytes_down"] for r in train) / len(train)
    later = [r for r in train if r["round"] > 1] or train
    steady = sum(r["bytes_up"] + r["bytes_down"] for r in later) / len(later)
    return {
        "scheme": scheme,
        "strategy": args.strategy,
        "clients": args.clients,
        "records": args.records,
        "rounds": len(train),
        "bytes_up_per_round": up,
        "bytes_down_per_round": down,
        "bytes_per_round": up + down,
        "bytes_per_round_steady": steady,
        "f1": m.get("f1"),
        "roc_auc": m.get("roc_auc"),
        "final_loss": train[-1].get("loss") if train else None,
        "wall_s": wall,
    }


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--schemes", nargs="+", default=["none", "q8", "q8+topk:0.1"])
    ap.add_argument("--strategy", default="fedavg", choices=("fedavg", "flag", "trust", "robust"))
    ap.add_argument("--clients", type=int, default=10)
    ap.add_argument("--records", type=int, default=200_000)
    ap.add_argument("--rounds", type=int, default=8)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--json", default=None, metavar="FILE")
    args = ap.parse_args()
    schemes = args.schemes if args.schemes[0] == "none" else ["none", *args.schemes]  # the baseline, same run
    load = os.getloadavg()[0]
    rows = []
    with tempfile.TemporaryDirectory(prefix="fedad-bench-compress-") as tmp:
        for scheme in schemes:
            print(f"  {scheme}: fedad demo ...", file=sys.stderr, flush=True)
            rows.append(run_demo(scheme, args, Path(tmp) / scheme.replace(":", "_").replace("+", "_")))
    base = rows[0]
    print(
        f"\nCompressed updates, {args.strategy}, {args.clients} clients x {args.records // args.clients} records, "
        f"{args.rounds} rounds, seed {args.seed} (load average at start {load:.1f})\n"
    )
    print(
        "| scheme | up kB/round | down kB/round | up ratio | down ratio | round ratio | steady round ratio | F1 | "
        "F1 - none | ROC-AUC | wall s | ok |"
    )
    print("|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---|")
    for r in rows:
        r["up_ratio"] = base["bytes_up_per_round"] / r["bytes_up_per_round"]
        r["down_ratio"] = base["bytes_down_per_round"] / r["bytes_down_per_round"]
        r["round_ratio"] = base["bytes_per_round"] / r["bytes_per_round"]
        r["steady_round_ratio"] = base["bytes_per_round_steady"] / r["bytes_per_round_steady"]
        r["f1_delta"] = None if r["f1"] is None or base["f1"] is None else r["f1"] - base["f1"]
        ok = r["scheme"] == "none" or (
            r["round_ratio"] >= TARGET_RATIO and r["f1_delta"] is not None and abs(r["f1_delta"]) <= TARGET_F1
        )
        r["meets_target"] = None if r["scheme"] == "none" else bool(ok)
        f1 = "-" if r["f1"] is None else f"{r['f1']:.3f}"
        d = "-" if r["f1_delta"] is None else f"{r['f1_delta']:+.3f}"
        auc = "-" if r["roc_auc"] is None else f"{r['roc_auc']:.3f}"
        print(
            f"| {r['scheme']} | {r['bytes_up_per_round'] / 1e3:.1f} | {r['bytes_down_per_round'] / 1e3:.1f} | "
            f"{r['up_ratio']:.2f}x | {r['down_ratio']:.2f}x | {r['round_ratio']:.2f}x | "
            f"{r['steady_round_ratio']:.2f}x | "
            f"{f1} | {d} | {auc} | {r['wall_s']:.0f} | "
            f"{'-' if r['scheme'] == 'none' else ('yes' if ok else 'NO')} |"
        )
    print(f"\nTargets: round ratio (up + down, all rounds) >= {TARGET_RATIO:g}x and |F1 - none| <= {TARGET_F1:g}")
    if args.json:
        Path(args.json).write_text(json.dumps({"rows": rows}, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""Benchmark: robust aggregation under encryption (``secure-robust``) against plaintext ``robust`` and ``paillier``.

Three parts, all measured in one run:

1. Detection (every attack of bench/poisoning.py, 10 clients, the last 3 malicious, 8 rounds): flag
   precision/recall and F1 drop of ``secure-robust`` (m sketch rows and one embedding per client), side by
   side with plaintext ``robust`` scoring the very same updates every round (paired: same run, same
   updates, its own trust history and quarantine) and with robust's own federation on the same setup.
   secure-robust runs on the quantized integers its decryptions
   return (``fedad.server.defence.sketch_round.simulate_round``: clients' stochastic quantization with clip R,
   sketches over a 2048-bit key's slot layout, integer exponents); that these integers are exactly what the
   Paillier path decrypts is tested in tests/test_blind_decryption.py. Target: P/R within 0.02 of the
   paired robust P/R, F1 drop <= 0.02 vs secure-robust's clean run.
2. Sketch-size sweep: the same for m in --sweep-rows, with the leakage m x L / d (numbers the aggregator learns
   per client over the update's dimensions).
3. Cost, real processes over gRPC on 127.0.0.1: fedad-server + 10 fedad-client processes (3 of them
   ``--attack sign-flip``) per strategy, + fedad-keyholder for secure-robust; per-round wall time (median of
   rounds 2..R of the server's rounds.jsonl) and bytes per round, flag P/R from the server's report.
   Target: secure-robust round <= 1.5x the paillier round.

    python bench/secure_robust.py [--json out.json] [--attacks sign_flip alie] [--sweep-rows 1 2 4 8 16]
                                  [--cost-records 20000] [--skip-cost] [--skip-sweep]

``--json`` writes rows with at least attack, strategy, f1, f1_drop, flag_precision, flag_recall, round_s, bytes
(round_s and bytes are null for the simulated detection rows, f1_drop/flags null where they do not apply).
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import poisoning as P
from _federation_run import free_address, run_federation

TARGET_PR_GAP, TARGET_DROP, TARGET_ROUND_RATIO = 0.02, 0.02, 1.5
COST_STRATEGIES = ("robust", "paillier", "secure-robust")


def _mean_defined(values) -> float | None:
    """Mean of the values that are defined (a round that flagged nobody has no precision)."""
    got = [v for v in values if v is not None]
    return statistics.mean(got) if got else None


def progress(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


# ------------------------------------------------------------------------------------------- detection


def detection(args, attacks: list[str], rows_m: int, strategies=("robust", "secure-robust")) -> list[dict]:
    """bench/poisoning.py's rows (in-process federations) for robust and secure-robust with m sketch rows."""
    ns = P.build_parser().parse_args([])  # poisoning's own defaults (its score and threshold options too)
    ns.__dict__.update(
        attacks=attacks,
        strategies=list(strategies),
        rounds=args.rounds,
        local_epochs=2,
        batch_size=256,
        lr=1e-3,
        records=args.records,
        data=None,
        quarantine_after=3,
        seed=args.seed,
        scaling="site",
        jobs=args.jobs,
        threads=1,
        sketch_rows=rows_m,
        update_clip=args.update_clip,
    )
    rows = P.run_bench(ns)
    for r in rows:
        r.update(
            sketch_rows=rows_m if r["strategy"] == "secure-robust" else None, round_s=None, bytes=None, mode="simulated"
        )
    return rows


def leakage_fraction(rows_m: int) -> float:
    """m x L / d for the dense AE of the synthetic plant under a 2048-bit key."""
    from fedad.common.crypto.sketch import leakage, secure_layout
    from fedad.common.models.registry import build_model
    from fedad.server.defence.sketch_round import WEIGHT_TOTAL

    d = int(sum(p.numel() for p in build_model("dense", 12).parameters()))
    return leakage(rows_m, secure_layout(P.SECURE_KEY_BITS, 16, d, WEIGHT_TOTAL), d)


# ------------------------------------------------------------------------------------------------ cost


def federation(
    strategy: str, shards: list[Path], out: Path, keys: Path, args, malicious: list[str], obfuscation: str = "djn"
) -> dict:
    """fedad-server (+ fedad-keyholder) + one fedad-client per shard; the last ``len(malicious)`` attack."""
    server = [
        "--strategy",
        strategy,
        "--rounds",
        str(args.cost_rounds),
        "--min-clients",
        str(len(shards)),
        "--local-epochs",
        "2",
        "--seed",
        str(args.seed),
        "--wait-timeout",
        "600",
        "--malicious",
        *malicious,
    ]
    side = []
    if strategy in ("paillier", "secure-robust"):
        server += ["--public-key", str(keys / "public.key")]
    if strategy == "secure-robust":
        kh_address = free_address()
        server += [
            "--keyholder",
            kh_address,
            "--sketch-rows",
            str(args.sketch_rows),
            "--update-clip",
            str(args.update_clip),
        ]
        side.append(
            (
                "keyholder",
                [
                    sys.executable,
                    "-m",
                    "fedad.server.keyholder",
                    "--listen",
                    kh_address,
                    "--private-key",
                    str(keys / "private.key"),
                    "--insecure",
                    "--max-clients",
                    str(len(shards)),
                    "--sketch-rows",
                    str(args.sketch_rows),
                    "--audit",
                    str(out / "keyholder.jsonl"),
                ],
            )
        )

    def client_args(shard: Path) -> list[str]:
        cmd = []
        if strategy == "paillier":
            cmd += ["--private-key", str(keys / "private.key")]
        if strategy == "secure-robust":
            cmd += ["--public-key", str(keys / "public.key"), "--obfuscation", obfuscation]
        if shard.stem in malicious:
            cmd += ["--attack", "sign-flip"]
        return cmd

    wall, recs, report = run_federation(
        strategy, out, free_address(), server, shards, client_args, args.cost_timeout, side
    )
    steady = recs[1:] if len(recs) >= 3 else recs
    flags = [r for r in recs if "flag_recall" in r][1:]  # pooled from round 2, as bench/poisoning
    out_row = {
        "attack": "sign_flip",
        "strategy": strategy,
        "mode": "processes",
        "f1": report["metrics"].get("f1"),
        "f1_drop": None,
        "round_s": statistics.median(r["seconds"] for r in steady),
        "rounds_s": [r["seconds"] for r in recs],
        "bytes": statistics.median(r["bytes_up"] + r["bytes_down"] for r in steady),
        "bytes_up": statistics.median(r["bytes_up"] for r in steady),
        "run_s": wall,
        "flag_precision": _mean_defined(r.get("flag_precision") for r in flags),
        "flag_recall": _mean_defined(r.get("flag_recall") for r in flags),
        "clients": len(shards),
        "records": args.cost_records,
        "rounds": len(recs),
    }
    if strategy == "secure-robust":
        audit = [json.loads(line) for line in (out / "keyholder.jsonl").read_text().splitlines()]
        out_row["keyholder_blocks_per_round"] = statistics.median(
            sum(
                e["blocks"]
                for e in audit
                if e.get("op") == "decrypt" and e["round"] == r["round"] and "refused" not in e
            )
            for r in recs
        )
        out_row["sketch_rows"] = args.sketch_rows
        out_row["obfuscation"] = obfuscation
        if obfuscation != "djn":
            out_row["strategy"] = f"secure-robust ({obfuscation} r^n)"
    return out_row


def cost(args) -> list[dict]:
    from fedad.common.crypto.keys import generate_keypair, save_keypair
    from fedad.common.synth import write_plant

    rows = []
    with tempfile.TemporaryDirectory(prefix="fedad-bench-secure-") as tmp:
        tmp_path = Path(tmp)
        progress(f"[cost] plant: {args.cost_records} records over 10 nodes; 2048-bit key ...")
        write_plant(tmp_path / "data", 10, args.cost_records, args.seed, formats=("csv",))
        shards = sorted((tmp_path / "data").glob("node_*.csv"))
        save_keypair(tmp_path / "keys", *generate_keypair(2048))
        malicious = [s.stem for s in shards[-3:]]
        runs = [
            (s, o) for s in args.cost_strategies for o in (args.client_obfuscation if s == "secure-robust" else ["-"])
        ]
        for strategy, obfuscation in runs:
            progress(f"[cost] {strategy}: server + 10 clients (3 sign-flip attackers), {args.cost_rounds} rounds ...")
            row = federation(
                strategy,
                shards,
                tmp_path / f"{strategy}-{obfuscation}",
                tmp_path / "keys",
                args,
                malicious,
                obfuscation,
            )
            progress(
                f"[cost] {strategy}: round {row['round_s']:.2f} s, {row['bytes'] / 1e3:.0f} kB/round, "
                f"F1 {row['f1']:.3f}"
            )
            rows.append(row)
    return rows


# ---------------------------------------------------------------------------------------------- output


def _f(v, spec=".3f", width=7) -> str:
    return "-".rjust(width) if v is None else format(v, spec).rjust(width)


def verdict(row: dict) -> bool:
    """Targets on one secure-robust row: flag P/R at most 0.02 below the paired robust P/R (the same updates
    scored in plaintext), F1 drop <= 0.02."""
    return (
        row["flag_precision"] >= row["paired_robust_precision"] - TARGET_PR_GAP
        and row["flag_recall"] >= row["paired_robust_recall"] - TARGET_PR_GAP
        and row["f1_drop"] <= TARGET_DROP
    )


def print_detection(rows: list[dict], rows_m: int) -> None:
    by = {(r["attack"], r["strategy"]): r for r in rows if r.get("sketch_rows") in (None, rows_m)}
    print(
        f"\nDetection, m = {rows_m} (in-process, 10 clients, last 3 malicious; secure-robust on the exact "
        "decrypted integers). Paired = plaintext robust scoring the very same updates each round; "
        "own run = robust's own federation:"
    )
    print(
        f"{'attack':<15}{'secure P':>9}{'R':>7}{'drop':>8} | {'paired P':>9}{'R':>7} | {'own run P':>10}{'R':>7}"
        f"{'drop':>8} | verdict"
    )
    for attack in dict.fromkeys(r["attack"] for r in rows):
        a, b = by.get((attack, "robust")), by.get((attack, "secure-robust"))
        if b is None:
            continue
        if attack == P.CLEAN:
            own = "" if a is None else f"F1 {a['f1']:.3f}"
            print(f"{attack:<15}{'F1 ' + _f(b['f1'], '.3f', 5):>24} | {'':>16} | {own:>25} |")
            continue
        own = (
            ""
            if a is None
            else f"{_f(a['flag_precision'], '.3f', 10)}{_f(a['flag_recall'])}{_f(a['f1_drop'], '+.3f', 8)}"
        )
        print(
            f"{attack:<15}{_f(b['flag_precision'], '.3f', 9)}{_f(b['flag_recall'])}{_f(b['f1_drop'], '+.3f', 8)} | "
            f"{_f(b['paired_robust_precision'], '.3f', 9)}{_f(b['paired_robust_recall'])} | {own:>25} | "
            f"{'met' if verdict(b) else 'NOT met'}"
        )


def print_sweep(sweep: list[dict]) -> None:
    print("\nSketch rows m vs detection and leakage (secure-robust, mean over attacks; worst attack in brackets):")
    print(
        f"{'m':>3}{'leakage':>9}{'flag P':>8}{'(min)':>8}{'flag R':>8}{'(min)':>8}{'F1 drop':>9}{'(max)':>8}"
        f"{'targets met':>13}"
    )
    for s in sweep:
        print(
            f"{s['sketch_rows']:>3}{s['leakage']:>9.3f}{s['flag_precision']:>8.3f}{s['min_precision']:>8.3f}"
            f"{s['flag_recall']:>8.3f}{s['min_recall']:>8.3f}{s['f1_drop']:>+9.3f}{s['max_drop']:>+8.3f}"
            f"{str(s['attacks_met']) + '/' + str(s['attacks']):>13}"
        )


def print_cost(rows: list[dict]) -> None:
    by = {r["strategy"]: r for r in rows}
    n = rows[0]["rounds"]
    which = f"median of rounds 2..{n}" if n >= 3 else "median of all rounds"  # as the rows take them
    print(
        f"\nCost (processes over gRPC on 127.0.0.1, 10 clients incl. 3 sign-flip attackers, "
        f"{rows[0]['records']} records, {which}):"
    )
    print(f"{'strategy':<26}{'round s':>9}{'vs paillier':>12}{'kB/round':>10}{'flag P':>8}{'flag R':>8}{'F1':>7}")
    ref = by.get("paillier", {}).get("round_s")
    for r in rows:
        ratio = f"{r['round_s'] / ref:.2f}x" if ref else "-"
        print(
            f"{r['strategy']:<26}{r['round_s']:>9.2f}{ratio:>12}{r['bytes'] / 1e3:>10.1f}"
            f"{_f(r['flag_precision'], '.3f', 8)}{_f(r['flag_recall'], '.3f', 8)}{_f(r['f1'], '.3f', 7)}"
        )
    if "secure-robust" in by and ref:  # the default (djn) client obfuscation
        ratio = by["secure-robust"]["round_s"] / ref
        print(
            f"target secure-robust <= {TARGET_ROUND_RATIO}x paillier round: {ratio:.2f}x "
            f"({'met' if ratio <= TARGET_ROUND_RATIO else 'NOT met'})"
        )


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--attacks", nargs="+", default=list(P.ATTACKS), choices=P.ATTACKS)
    ap.add_argument("--rounds", type=int, default=8, help="detection: rounds per federation")
    ap.add_argument("--records", type=int, default=10000, help="detection: records per client")
    ap.add_argument("--sketch-rows", type=int, default=16, help="m for the detection and cost parts")
    ap.add_argument("--sweep-rows", type=int, nargs="+", default=[2, 4, 8, 16, 24], help="m values to sweep")
    ap.add_argument("--update-clip", type=float, default=0.5, help="secure-robust clip R of update values")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--jobs", type=int, default=2, help="worker processes of the in-process parts")
    ap.add_argument("--cost-records", type=int, default=20000, help="cost: records per node")
    ap.add_argument("--cost-rounds", type=int, default=4, help="cost: rounds per federation")
    ap.add_argument("--cost-timeout", type=float, default=1200.0, help="cost: seconds before a run is killed")
    ap.add_argument("--cost-strategies", nargs="+", default=list(COST_STRATEGIES), choices=COST_STRATEGIES)
    ap.add_argument(
        "--client-obfuscation",
        nargs="+",
        default=["djn", "full"],
        choices=("djn", "full"),
        help="cost: secure-robust clients' encryption randomness (fedad-client --obfuscation), one run each",
    )
    ap.add_argument("--skip-detection", action="store_true", help="no detection table (implies --skip-sweep)")
    ap.add_argument("--skip-sweep", action="store_true")
    ap.add_argument("--skip-cost", action="store_true")
    ap.add_argument("--json", default=None, metavar="FILE")
    args = ap.parse_args(argv)
    t0 = time.perf_counter()
    rows, sweep = [], []
    if not args.skip_detection:
        rows = detection(args, args.attacks, args.sketch_rows)
        print_detection(rows, args.sketch_rows)
    if not (args.skip_sweep or args.skip_detection):
        main_rows = list(rows)
        for m in sorted(set(args.sweep_rows) | {args.sketch_rows}):
            got = main_rows if m == args.sketch_rows else detection(args, args.attacks, m, ("secure-robust",))
            if m != args.sketch_rows:
                rows += got
            attacked = [r for r in got if r["strategy"] == "secure-robust" and r["attack"] != P.CLEAN]
            sweep.append(
                {
                    "sketch_rows": m,
                    "leakage": leakage_fraction(m),
                    "flag_precision": float(np.mean([r["flag_precision"] for r in attacked])),
                    "min_precision": float(min(r["flag_precision"] for r in attacked)),
                    "flag_recall": float(np.mean([r["flag_recall"] for r in attacked])),
                    "min_recall": float(min(r["flag_recall"] for r in attacked)),
                    "f1_drop": float(np.mean([r["f1_drop"] for r in attacked])),
                    "max_drop": float(max(r["f1_drop"] for r in attacked)),
                    "attacks_met": sum(verdict(r) for r in attacked),
                    "attacks": len(attacked),
                }
            )
        sweep.sort(key=lambda s: s["sketch_rows"])
        print_sweep(sweep)
    costs = [] if args.skip_cost else cost(args)
    if costs:
        print_cost(costs)
    print(f"\ntotal {time.perf_counter() - t0:.0f} s")
    if args.json:
        Path(args.json).write_text(json.dumps({"rows": rows + costs, "sweep": sweep}, indent=1, default=float))
    return 0


if __name__ == "__main__":
    sys.exit(main())

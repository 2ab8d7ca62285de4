"""One hostile node beside honest ones: the issue-13 table, before (from the issue's measurements on the
code before the fix) and after (measured now, real processes over gRPC on 127.0.0.1, one case at a time).

Per case: a fedad-server, 3 honest fedad-client processes and one misbehaving node (tests/bad_client.py,
joining once the honest ones are admitted) on the fourth shard; the clean run has all four nodes honest. The honest
nodes beside a late hostile node run ``--slowdown 100`` (a round lasts about 100 x their training, a few seconds),
so it joins while rounds remain however fast training is, as in tests/test_hostile.py; those cases' round times
include that wait (the clean and idle cases run at full speed). A case whose hostile node never took part says so
in its outcome.
F1 and ROC-AUC of the run's report (every node that answered the test phase), F1 of the three honest nodes
alone (from their confusion counts), the run's outcome (ok / failed, and why), rounds completed, the
server's peak memory (VmHWM) and the slowest round. Plus the node-side CSV memory and the key holder's cap.

    python bench/hostile.py [--cases clean zero-count ...] [--rounds 3] [--json out.json]
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

ROOT = Path(__file__).resolve().parents[1]
BAD = ROOT / "tests" / "bad_client.py"
ENV = dict(
    os.environ,
    FLWR_TELEMETRY_ENABLED="0",
    FLWR_DISABLE_UPDATE_CHECK="1",
    PYTHONUNBUFFERED="1",
    OMP_NUM_THREADS="1",
    MKL_NUM_THREADS="1",
)

# case -> (strategy, bad-client kind or None, extra server args, what the issue measured before the fix)
CASES = {
    "clean": ("fedavg", None, (), "F1 0.373, AUC 0.886, ok (10 clients)"),
    "zero-count": ("fedavg", "zero-count", (), "F1 0.120, AUC 0.706, reported success"),
    "scaled": ("fedavg", "scaled", (), "accepted; next round honest clients diverged, run failed"),
    "huge": ("fedavg", "huge", (), "accepted; honest clients diverged, run failed"),
    "int64": ("fedavg", "int64", (), "accepted; honest clients diverged, run failed"),
    "metric-type": ("fedavg", "metric-type", (), "server traceback, then hung"),
    "features": ("fedavg", "features", (), "server traceback, then hung"),
    "no-hist": ("fedavg", "no-hist", (), "server traceback after the last round, no report"),
    "count-string": ("fedavg", "count-string", (), "server traceback after the last round, no report"),
    "hist-poison": ("fedavg", "hist-poison", (), "F1 0.000 (threshold past every score)"),
    "hist-poison-robust": ("robust", "hist-poison", (), "F1 0.000"),
    "replay": ("fedavg", "replay", (), "accepted"),
    "big": ("fedavg", "big", (), "500 MB tensor rejected; server 0.44 -> 2.85 GB, round 0.5 -> 22 s"),
    "idle": ("fedavg", "idle", ("--round-timeout", "10"), "50 idle: round 90 s instead of ~5 s"),
    "idle-min-clients": (
        "fedavg",
        "idle",
        ("--min-clients", "5", "--wait-timeout", "40"),
        "--min-clients 5 satisfied by 1 node + 4 idle",
    ),
    "pai-range": ("paillier", "pai-range", (), "every honest client crashed decrypting; run dead"),
    "pai-clip": ("paillier", "pai-clip", (), "AUC 0.500, reported success"),
}


# honest nodes beside a late hostile node: a round lasts ~100 x their training, so it still finds rounds to join
SLOW = ("--slowdown", "100")
# bad-client kinds that lie in the threshold or test phase, not in a round's update
LATE_PHASE_KINDS = ("no-hist", "count-string", "hist-poison")


def took_part(kind: str, recs: list[dict], report: dict) -> bool:
    """Whether mallory was in a round (answered, refused or failed) or refused at admission; a node that lies in
    the threshold or test phase counts once the report names it anywhere (a late node is still asked those)."""
    if kind in LATE_PHASE_KINDS:
        return "mallory" in json.dumps(report)
    rounds = [{k: r.get(k) for k in ("clients", "rejected", "failed")} for r in recs]
    return "mallory" in json.dumps([rounds, report.get("refused", {})])


def peak_kb(pid: int) -> int:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1])
    except OSError:
        pass
    return 0


def run_case(name: str, plant: list[Path], work: Path, rounds: int, keys: tuple[Path, Path] | None) -> dict:
    strategy, kind, extra, _ = CASES[name]
    out, logs = work / name, work / f"{name}-logs"
    logs.mkdir(parents=True)
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        address = f"127.0.0.1:{s.getsockname()[1]}"
    sargs = [
        "--rounds",
        str(rounds),
        "--min-clients",
        "3",
        "--local-epochs",
        "2",
        "--seed",
        "0",
        "--wait-timeout",
        "300",
        "--admission-timeout",
        "20",
        "--strategy",
        strategy,
        *extra,
    ]
    cargs: list[str] = []
    if strategy == "paillier":
        sargs += ["--public-key", str(keys[0])]
        cargs = ["--private-key", str(keys[1])]
    t0 = time.perf_counter()
    server = subprocess.Popen(
        [sys.executable, "-m", "fedad.server.main", "--address", address, "--out", str(out), *sargs],
        stdout=open(logs / "server.log", "w"),
        stderr=subprocess.STDOUT,
        env=ENV,
    )
    procs = []
    n_honest = 1 if name == "idle-min-clients" else (4 if kind is None else 3)
    if kind == "idle":
        n_idle = 4 if name == "idle-min-clients" else 50
        procs.append(
            subprocess.Popen(
                [
                    sys.executable,
                    str(BAD),
                    "--kind",
                    "idle",
                    "--server",
                    address,
                    "--connections",
                    str(n_idle),
                    "--hold",
                    "600",
                ],
                stdout=open(logs / "idle.log", "w"),
                stderr=subprocess.STDOUT,
                env=ENV,
            )
        )
    for i in range(n_honest):
        procs.append(
            subprocess.Popen(
                [
                    sys.executable,
                    "-m",
                    "fedad.client.main",
                    "--server",
                    address,
                    "--data",
                    str(plant[i]),
                    "--name",
                    f"node{i}",
                    "--device",
                    "cpu",
                    *(SLOW if kind not in (None, "idle") else ()),
                    *cargs,
                ],
                stdout=open(logs / f"node{i}.log", "w"),
                stderr=subprocess.STDOUT,
                env=ENV,
            )
        )
    go = work / f"{name}-go"
    if kind not in (None, "idle"):  # loaded, it connects once the honest nodes are admitted (then joins a round)
        procs.append(
            subprocess.Popen(
                [
                    sys.executable,
                    str(BAD),
                    "--kind",
                    kind,
                    "--server",
                    address,
                    "--data",
                    str(plant[3]),
                    "--name",
                    "mallory",
                    "--wait-for",
                    str(go),
                    *cargs,
                ],
                stdout=open(logs / "mallory.log", "w"),
                stderr=subprocess.STDOUT,
                env=ENV,
            )
        )
    peak = 0
    while server.poll() is None and time.perf_counter() - t0 < 900:
        peak = max(peak, peak_kb(server.pid))
        if not go.exists() and "federated scaler from" in (logs / "server.log").read_text():
            go.touch()
        time.sleep(0.2)
    if server.poll() is None:
        server.kill()
    for p in procs:
        try:
            p.wait(timeout=30)
        except subprocess.TimeoutExpired:
            p.kill()
    report = json.loads((out / "report.json").read_text()) if (out / "report.json").exists() else {}
    recs = (
        [json.loads(x) for x in (out / "rounds.jsonl").read_text().splitlines()]
        if (out / "rounds.jsonl").exists()
        else []
    )
    m = report.get("metrics") or {}
    honest_exit = [p.returncode for p in procs[-(n_honest + (kind not in (None, "idle"))) :][:n_honest]]
    outcome = report.get("status", "no report")
    if report.get("error"):
        outcome += f": {report['error'][:90]}"
    if kind not in (None, "idle") and not took_part(kind, recs, report):
        outcome += " (the hostile node never took part: this case measured nothing)"
    refusals = sorted(
        {w for r in recs for w in r.get("rejected", {}).values()}
        | set(report.get("refused", {}))
        | {x["phase"] + ": " + x["reason"] for x in report.get("rejected_results", [])}
    )
    per = report.get("per_client_test") or {}
    from fedad.common.metrics import metrics_from_confusion

    honest = [per[n] for n in ("node0", "node1", "node2") if n in per]
    f1_honest = metrics_from_confusion(*(sum(c[k] for c in honest) for k in ("tp", "fp", "tn", "fn")))["f1"]
    return {
        "case": name,
        "f1": m.get("f1"),
        "f1_honest": f1_honest,
        "roc_auc": m.get("roc_auc"),
        "outcome": outcome,
        "rounds": len(recs),
        "server_peak_mb": peak / 1024,
        "max_round_s": max((r["seconds"] for r in recs), default=None),
        "honest_exit_codes": honest_exit,
        "refusals": refusals[:3],
        "wall_s": time.perf_counter() - t0,
    }


def csv_memory(work: Path, mb: int) -> dict:
    """Peak RSS of a node process loading a ``mb`` MB CSV (default --max-rows, blocks of CSV_BLOCK_BYTES)."""
    from fedad.common.synth import write_plant

    d = work / "csv"
    rows = int(mb * 1e6 / 120)  # ~120 bytes per synthetic row
    write_plant(d, nodes=1, records=rows, seed=1, formats=("csv",))
    path = d / "node_01.csv"
    code = (
        "import resource, sys; from fedad.common.data import load_dataset; "
        f"ds = load_dataset({str(path)!r}, max_rows=2_000_000); "
        "print(len(ds.X), resource.getrusage(resource.RUSAGE_SELF).ru_maxrss)"
    )
    base = subprocess.run(
        [
            sys.executable,
            "-c",
            "import resource, fedad.common.data; print(0, resource.getrusage(resource.RUSAGE_SELF).ru_maxrss)",
        ],
        capture_output=True,
        text=True,
        env=ENV,
    ).stdout.split()
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=ENV).stdout.split()
    return {
        "csv_mb": path.stat().st_size / 1e6,
        "rows_kept": int(out[0]),
        "peak_mb": int(out[1]) / 1024,
        "import_baseline_mb": int(base[1]) / 1024,
    }


def keyholder_cap() -> dict:
    """A pinned aggregator asking for 60 rounds back to back from a run that declared 10."""
    from fedad.common.crypto.keys import generate_keypair
    from fedad.server.keyholder import Budget, KeyHolder, Refusal

    pub, priv = generate_keypair(1024)
    holder = KeyHolder(
        priv, Budget(max_clients=10, sketch_rows=4, max_aggregate_blocks=100, max_rounds=1000, min_round_interval=0.5)
    )
    opened = refused = 0
    t0 = time.perf_counter()
    for rnd in range(1, 61):
        try:
            holder.begin({"key": holder.fingerprint, "round": rnd, "clients": 10, "aggregate_blocks": 50, "rounds": 10})
            opened += 1
        except Refusal:
            refused += 1
    return {"asked": 60, "opened": opened, "refused": refused, "seconds": time.perf_counter() - t0}  # paced


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--cases", nargs="*", default=list(CASES), choices=list(CASES))
    ap.add_argument("--rounds", type=int, default=4)
    ap.add_argument("--records", type=int, default=4 * 10_000)
    ap.add_argument("--csv-mb", type=int, default=200, help="node-side CSV memory check (0: skip)")
    ap.add_argument("--out", default=None)
    ap.add_argument("--json", default=None)
    args = ap.parse_args()
    from fedad.common.synth import write_plant

    work = Path(args.out or tempfile.mkdtemp(prefix="fedad-bench-hostile-"))
    write_plant(work / "plant", nodes=4, records=args.records, seed=3, formats=("csv",))
    plant = sorted((work / "plant").glob("node_*.csv"))
    keys = None
    if any(CASES[c][0] == "paillier" for c in args.cases):
        from fedad.common.crypto.keys import generate_keypair, save_keypair

        keys = save_keypair(work / "keys", *generate_keypair(1024))
    rows = []
    for case in args.cases:
        print(f"running {case} ...", file=sys.stderr, flush=True)
        rows.append(run_case(case, plant, work, args.rounds, keys))
    print(
        f"\n{'case':<20} {'F1':>6} {'F1 hon':>6} {'AUC':>6} {'rounds':>6} {'srv MB':>7} {'max rnd s':>9}  "
        "outcome now | before"
    )
    for r in rows:
        f = lambda v: "   -  " if v is None else f"{v:6.3f}"  # noqa: E731
        rs = "-" if r["max_round_s"] is None else f"{r['max_round_s']:.1f}"
        print(
            f"{r['case']:<20} {f(r['f1'])} {f(r['f1_honest'])} {f(r['roc_auc'])} {r['rounds']:>6} "
            f"{r['server_peak_mb']:7.0f} "
            f"{rs:>9}  {r['outcome']} | {CASES[r['case']][3]}"
        )
        for why in r["refusals"]:
            print(f"{'':<20}   refused: {why[:110]}")
    result: dict = {"cases": rows}
    if args.csv_mb:
        result["csv"] = csv_memory(work, args.csv_mb)
        c = result["csv"]
        print(
            f"\nnode loading a {c['csv_mb']:.0f} MB CSV: peak {c['peak_mb']:.0f} MB (imports alone "
            f"{c['import_baseline_mb']:.0f} MB), {c['rows_kept']} rows kept | before: 1.66 GB peak"
        )
    result["keyholder"] = k = keyholder_cap()
    print(
        f"key holder, 60 rounds asked back to back by a run that declared 10: {k['opened']} opened "
        f"(paced over {k['seconds']:.1f} s), {k['refused']} refused | before: 60 opened, 10,680 blocks "
        "decrypted in 120 s"
    )
    if args.json:
        Path(args.json).write_text(json.dumps(result, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())

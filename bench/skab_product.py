"""SKAB through the product's own commands, local per file and federated (the three groups as three nodes).

    python bench/skab_product.py --data ../shared/datasets/skab [--json out.json] [--no-federated] [--limit N]

Local (the issue's protocol): each labelled file of valve1/, valve2/ and other/ (34 files) is cut into its
first 400 rows (first400.csv: the sensors and the `anomaly` column; SKAB's second label, `changepoint`, is
dropped) and the rest (rest.csv); then, with the defaults plus one documented option (--rule adaptive,
which the README tells SKAB-like users to pass):

    fedad train --data first400.csv --label-column anomaly --out MODEL
    fedad score --model MODEL --data rest.csv --label-column anomaly --rule adaptive --out scores.csv

Federated: valve1, valve2 and other are three fedad-client processes and a fedad-server (--rounds auto,
fedavg, defaults otherwise) over gRPC on 127.0.0.1. A node's --data is its files' first 400 rows one file after
another, its --test-data their remaining rows; it writes its final model (--model-out). Each file is then
scored by its own group's model, the file's first 400 rows as its normal start:

    fedad score --model GROUP_MODEL --data file.csv --rule adaptive --baseline-rows 400 --out scores.csv

In both, F1, FAR and MAR come from the confusion counts of the scores files' `is_anomaly` column on all
rows after the 400th of every file, pooled (the SKAB leaderboard's convention: F1 = TP / (TP + (FP + FN) /
2)). The commands run in this process (`fedad.common.cli.main`, the code of the `fedad` executable), the
federation as OS processes. No parameter is chosen here: the adaptive rule's defaults were picked on these
files (bench/skab.py --held-out-groups re-picks them leaving one group out), so the local row is in-sample
for those defaults; the federated row adds no choice of its own.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd
from _federation_run import free_address, run_federation

from fedad.common.cli import main as fedad

GROUPS = ("valve1", "valve2", "other")
TRAIN_ROWS = 400
TARGET = {"f1": 0.80, "far": 0.13, "mar": 0.25}


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data", default="../shared/datasets/skab", help="SKAB data/ directory (holds valve1/ ...)")
    ap.add_argument("--json", default=None, metavar="FILE", help="write the result rows as JSON here")
    ap.add_argument("--limit", type=int, default=None, help="use only the first N files of each group (quick runs)")
    ap.add_argument("--no-federated", dest="federated", action="store_false", help="local rows only")
    ap.add_argument("--work", default=None, help="keep the files and models here (default: a temporary directory)")
    ap.add_argument("--seed", type=int, default=0, help="fedad train --seed and fedad-server --seed")
    ap.add_argument("--timeout", type=float, default=1800.0, help="give the federation up after this many seconds")
    return ap.parse_args(argv)


def group_files(root: Path, group: str, limit: int | None) -> list[Path]:
    """The labelled files of one SKAB group in natural order."""
    d = root / group
    if not d.is_dir():
        raise SystemExit(f"skab_product.py: error: {d} not found; --data must be SKAB's data/ directory")
    return sorted(d.glob("*.csv"), key=lambda p: (len(p.stem), p.stem))[:limit]


def read(path: Path) -> pd.DataFrame:
    """One SKAB file: datetime, the eight sensors and `anomaly` (`changepoint` dropped)."""
    return pd.read_csv(path, sep=";").drop(columns=["changepoint"])


def counts(y: np.ndarray, p: np.ndarray) -> np.ndarray:
    """(tp, fp, tn, fn)."""
    y, p = y.astype(bool), p.astype(bool)
    return np.array([(p & y).sum(), (p & ~y).sum(), (~p & ~y).sum(), (~p & y).sum()], dtype=np.int64)


def metrics(c: np.ndarray) -> dict[str, float]:
    tp, fp, tn, fn = (int(v) for v in c)
    return {
        "f1": tp / (tp + (fp + fn) / 2) if tp + fp + fn else 0.0,
        "far": fp / (fp + tn) if fp + tn else 0.0,
        "mar": fn / (fn + tp) if fn + tp else 0.0,
        "rows": tp + fp + tn + fn,
    }


def run(argv: list[str]) -> None:
    """One `fedad` command in this process; a non-zero exit stops the bench."""
    code = fedad(argv)
    if code:
        raise SystemExit(f"skab_product.py: `fedad {' '.join(argv)}` exited {code}")


def flags(path: Path) -> np.ndarray:
    return pd.read_csv(path)["is_anomaly"].to_numpy()


def local(files: dict[str, list[Path]], work: Path, seed: int) -> tuple[dict, dict[str, np.ndarray]]:
    """Per file: fedad train on the first 400 rows, fedad score --rule adaptive on the rest."""
    total, per_file = np.zeros(4, np.int64), {}
    for group, paths in files.items():
        for path in paths:
            d = work / "local" / f"{group}_{path.stem}"
            d.mkdir(parents=True, exist_ok=True)
            df = read(path)
            df.iloc[:TRAIN_ROWS].to_csv(d / "first400.csv", index=False)
            df.iloc[TRAIN_ROWS:].to_csv(d / "rest.csv", index=False)
            run(
                ["train", "--data", str(d / "first400.csv"), "--label-column", "anomaly", "--out", str(d / "model")]
                + ["--seed", str(seed)]
            )
            run(
                ["score", "--model", str(d / "model"), "--data", str(d / "rest.csv"), "--label-column", "anomaly"]
                + ["--rule", "adaptive", "--out", str(d / "scores.csv")]
            )
            c = counts(df["anomaly"].to_numpy()[TRAIN_ROWS:], flags(d / "scores.csv"))
            per_file[f"{group}/{path.name}"] = c
            total += c
            print(f"  local {group}/{path.name}: f1 {metrics(c)['f1']:.3f}", flush=True)
    return metrics(total), per_file


def federated(
    files: dict[str, list[Path]], work: Path, timeout: float, seed: int
) -> tuple[dict, dict[str, np.ndarray], dict]:
    """The three groups as three nodes of one federation; each file scored by its group's model."""
    fed = work / "federated"
    shards: list[Path] = []
    for group, paths in files.items():
        frames = [read(p) for p in paths]
        (fed / "data").mkdir(parents=True, exist_ok=True)
        pd.concat([f.iloc[:TRAIN_ROWS] for f in frames]).to_csv(fed / "data" / f"{group}.csv", index=False)
        pd.concat([f.iloc[TRAIN_ROWS:] for f in frames]).to_csv(fed / "data" / f"{group}_test.csv", index=False)
        shards.append(fed / "data" / f"{group}.csv")

    def client_args(shard: Path) -> list[str]:
        g = shard.stem
        test = str(fed / "data" / f"{g}_test.csv")
        return ["--test-data", test, "--label-column", "anomaly", "--model-out", str(fed / "models" / g)]

    wall, rounds, report = run_federation(
        "skab",
        fed / "server",
        free_address(),
        ["--rounds", "auto", "--min-clients", str(len(shards)), "--seed", str(seed)],
        shards,
        client_args,
        timeout,
    )
    total, per_file = np.zeros(4, np.int64), {}
    for group, paths in files.items():
        for path in paths:
            d = fed / "scores"
            d.mkdir(parents=True, exist_ok=True)
            df = read(path)
            src = d / f"{group}_{path.stem}.csv"
            df.to_csv(src, index=False)
            out = d / f"{group}_{path.stem}_scores.csv"
            run(
                ["score", "--model", str(fed / "models" / group), "--data", str(src), "--label-column", "anomaly"]
                + ["--rule", "adaptive", "--baseline-rows", str(TRAIN_ROWS), "--out", str(out)]
            )
            c = counts(df["anomaly"].to_numpy()[TRAIN_ROWS:], flags(out)[TRAIN_ROWS:])
            per_file[f"{group}/{path.name}"] = c
            total += c
    info = {"wall_s": wall, "rounds": len(rounds), "convergence": report.get("convergence")}
    return metrics(total), per_file, info


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    root = Path(args.data)
    files = {g: group_files(root, g, args.limit) for g in GROUPS}
    n = sum(len(v) for v in files.values())
    with tempfile.TemporaryDirectory(prefix="skab-product-") as tmp:
        work = Path(args.work) if args.work else Path(tmp)
        t0 = time.perf_counter()
        rows = [{"setting": "local: fedad train + fedad score --rule adaptive", **local(files, work, args.seed)[0]}]
        local_s = time.perf_counter() - t0
        info = {}
        if args.federated:
            m, _, info = federated(files, work, args.timeout, args.seed)
            rows.append({"setting": "federated: 3 groups as 3 nodes, fedad score --baseline-rows 400", **m})
    print(
        f"\nSKAB through the product, {n} files, seed {args.seed}, rows after the 400th pooled (local {local_s:.0f} s)"
    )
    print(f"{'setting':66s} {'F1':>6s} {'FAR':>7s} {'MAR':>7s}")
    for r in rows:
        print(f"{r['setting']:66s} {r['f1']:6.3f} {r['far']:7.1%} {r['mar']:7.1%}")
    print(
        f"target: F1 >= {TARGET['f1']}, FAR <= {TARGET['far']:.0%}, MAR <= {TARGET['mar']:.0%} (local, in-sample "
        "rule defaults); federated within 0.02 F1 of local"
    )
    if len(rows) == 2:
        print(
            f"federated - local F1: {rows[1]['f1'] - rows[0]['f1']:+.3f}; federation: {info.get('rounds')} rounds, "
            f"{info.get('wall_s', 0):.0f} s"
        )
    if args.json:
        Path(args.json).write_text(
            json.dumps({"files": n, "seed": args.seed, "rows": rows, "federation": info}, indent=2, default=str)
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())

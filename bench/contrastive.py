"""Contrastive vs dense autoencoder, federated over 5 clients: ROC-AUC and F1 per data set and seed.

    nice -n 15 python bench/contrastive.py [--data ../shared/datasets] [--seeds 0 1 2] [--json out.json]
    nice -n 15 python bench/contrastive.py --sweep          # sensitivity of tau, lambda, mu, score mix, lr
    nice -n 15 python bench/contrastive.py --select         # how the defaults were chosen (a separate plant draw)

Data sets, each dealt to 5 clients (subsets, so the run takes minutes on 2 cores):
  plant  the non-IID synthetic plant (``fedad.common.synth``): nodes 1-5, --plant-records each, data seed = seed.
  skab   the 34 labelled SKAB files dealt round-robin into 5 pseudo-clients (file order kept).
  kdd    KDD Cup 99: per client --fit-rows normal rows of the 10 % training file, then --fit-rows / 4 rows drawn
         uniformly from the labelled test file (attacks = anomalies); log1p of the counts; IID clients.
  ton    TON_IoT --ton-device telemetry: rows shuffled (seed), per client --fit-rows rows then --fit-rows / 4
         rows; attacks = anomalies; IID clients.
Every client runs the product's ``fedad.client.site.Site`` (the same split: first 80 % of its rows fit, normal
rows only, last 20 % test; site scaling); the "server" is this process: FedAvg
(``fedad.server.aggregation.weighted_average``, what ``--strategy fedavg`` runs) and the global embedding
(``fedad.server.aggregation.global_embedding``, the mean of the clients' embeddings, sent the next round).
Not exercised: the gRPC transport. Threshold: the product's default rule on the summed validation histograms
(``rule_threshold``: POT at the spec's target false-alarm rate, as secure-robust sets it). ROC-AUC and F1 over
all clients' test rows pooled. Same rounds, epochs, batch size and lr for both.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np

CLIENTS = 5
DATASETS = ("plant", "skab", "kdd", "ton")
# the table's columns: model -> contrastive sizes ("contrastive": the defaults; "+centre": the combined score)
VARIANTS: dict[str, dict] = {"dense": {}, "contrastive": {}, "contrastive+centre": {"dist_weight": 0.25}}
# one-at-a-time variations around the defaults (model sizes, or "lr")
SWEEP = {
    "tau": [0.1, 0.2, 1.0],
    "lam": [0.0, 0.1, 0.5],
    "mu": [0.0, 1.0],
    "dist_weight": [0.25, 0.5, 1.0],
    "lr": [3e-4, 3e-3],
}


def progress(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--data", default="../shared/datasets", help="folder with skab/, kddcup99_10pct/, ton_iot/")
    p.add_argument("--datasets", nargs="+", default=list(DATASETS), choices=DATASETS)
    p.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2])
    p.add_argument("--rounds", type=int, default=10)
    p.add_argument("--local-epochs", type=int, default=2)
    p.add_argument("--batch-size", type=int, default=256)
    p.add_argument("--lr", type=float, default=1e-3)
    p.add_argument("--plant-records", type=int, default=4000)
    p.add_argument("--fit-rows", type=int, default=2400, help="kdd/ton: fitting rows per client")
    p.add_argument(
        "--ton-device", default="Weather", help="TON_IoT device (Weather: the one where the dense AE finds any signal)"
    )
    p.add_argument("--sweep", action="store_true", help="sensitivity sweep at the first seed instead of the table")
    p.add_argument(
        "--select",
        action="store_true",
        help="the sweep plus a small grid on a separate plant draw (nodes 6-10, seed 100)",
    )
    p.add_argument("--json", default=None, help="write the rows as JSON to this file")
    return p.parse_args(argv)


# ------------------------------------------------------------------------------------------------ data


def _dataset(X, names, y, source):
    from fedad.common.data import Dataset

    return Dataset(
        X=np.asarray(X, dtype=np.float64),
        feature_names=list(names),
        y=np.asarray(y, dtype=np.int8),
        time=None,
        source=source,
    )


def plant_shards(records: int, seed: int, nodes: range = range(1, CLIENTS + 1)) -> list:
    from fedad.common.synth import SENSORS, generate_node

    out = []
    for node in nodes:
        df = generate_node(node, records, seed)
        out.append(_dataset(df[list(SENSORS)].to_numpy(np.float64), SENSORS, df["label"].to_numpy(), f"node{node}"))
    return out


def skab_shards(root: Path) -> list:
    import pandas as pd

    from fedad.common.data import dataset_from_frame, load_skab_files

    files = [f for _, f in load_skab_files(root / "skab") if "anomaly" in f.columns]
    return [
        dataset_from_frame(
            pd.concat(files[i::CLIENTS], ignore_index=True),
            f"skab{i + 1}",
            "anomaly",
            "datetime",
            drop=("changepoint",),
        )
        for i in range(CLIENTS)
    ]


def pooled_shards(
    normal: np.ndarray,
    test_X: np.ndarray,
    test_y: np.ndarray,
    names: list[str],
    fit_rows: int,
    rng: np.random.Generator,
    source: str,
) -> list:
    """Per client: ``fit_rows`` normal rows then ``fit_rows / 4`` test rows (so the site's last 20 % is the test)."""
    n_test = fit_rows // 4
    a = rng.choice(len(normal), size=CLIENTS * fit_rows, replace=len(normal) < CLIENTS * fit_rows)
    b = rng.choice(len(test_X), size=CLIENTS * n_test, replace=len(test_X) < CLIENTS * n_test)
    out = []
    for i in range(CLIENTS):
        fa, tb = a[i * fit_rows : (i + 1) * fit_rows], b[i * n_test : (i + 1) * n_test]
        X = np.concatenate([normal[fa], test_X[tb]])
        y = np.concatenate([np.zeros(len(fa), np.int8), test_y[tb]])
        out.append(_dataset(X, names, y, f"{source}{i + 1}"))
    return out


_CACHE: dict = {}


def kdd_shards(root: Path, fit_rows: int, seed: int) -> list:
    from fedad.common.data import kdd_categories, load_dataset

    if "kdd" not in _CACHE:
        d = root / "kddcup99_10pct"
        cats = kdd_categories(d / "kddcup.data_10_percent.gz", d / "corrected.gz")
        train = load_dataset(d / "kddcup.data_10_percent.gz", format="kdd", categories=cats)
        test = load_dataset(d / "corrected.gz", format="kdd", categories=cats)
        _CACHE["kdd"] = (
            np.log1p(np.maximum(train.X[train.y == 0], 0)),
            np.log1p(np.maximum(test.X, 0)),
            test.y.astype(np.int8),
            train.feature_names,
        )
    normal, tx, ty, names = _CACHE["kdd"]
    return pooled_shards(normal, tx, ty, names, fit_rows, np.random.default_rng(seed), "kdd")


def ton_shards(root: Path, device: str, fit_rows: int, seed: int) -> list:
    from fedad.common.data import load_dataset

    key = f"ton-{device}"
    if key not in _CACHE:
        _CACHE[key] = load_dataset(root / "ton_iot" / f"Train_Test_IoT_{device}.csv", format="ton_iot")
    d = _CACHE[key]
    X, y = d.X, d.y.astype(np.int8)
    ok = np.all(np.isfinite(X), axis=1)
    X, y = X[ok], y[ok]
    rng = np.random.default_rng(seed)
    normal = np.flatnonzero(y == 0)
    held = rng.choice(normal, size=len(normal) // 2, replace=False)  # half the normal rows fit, the rest test
    rest = np.setdiff1d(np.arange(len(X)), held)
    return pooled_shards(X[held], X[rest], y[rest], d.feature_names, fit_rows, rng, "ton")


def shards_for(name: str, seed: int, args: argparse.Namespace) -> list:
    root = Path(args.data)
    if name == "plant":
        return plant_shards(args.plant_records, seed)
    if name == "skab":
        return skab_shards(root)
    if name == "kdd":
        return kdd_shards(root, args.fit_rows, seed)
    return ton_shards(root, args.ton_device, args.fit_rows, seed)


# ------------------------------------------------------------------------------------------------ federation


def federate(
    shards: list, model: str, seed: int, args: argparse.Namespace, sizes: dict | None = None, lr: float | None = None
) -> dict:
    """``args.rounds`` rounds of FedAvg over Sites (plus the global embedding for contrastive); pooled metrics."""
    import torch

    from fedad.client.site import Site
    from fedad.common.federated_stats import histogram, rule_threshold
    from fedad.common.federation_spec import FederationSpec
    from fedad.common.metrics import detection_metrics
    from fedad.common.models.registry import build_model, model_aligns
    from fedad.common.training import get_weights
    from fedad.server.aggregation import global_embedding, weighted_average

    spec = FederationSpec(
        model=model,
        window=1,
        sizes=dict(sizes or {}),
        preprocessing={"scaler": "standard"},
        scaling="site",
        feature_names=list(shards[0].feature_names),
        local_epochs=args.local_epochs,
        batch_size=args.batch_size,
        lr=args.lr if lr is None else lr,
        seed=seed,
    )
    sites = [Site(s, device="cpu") for s in shards]
    for site in sites:
        site.configure(spec, "bench")
        site.set_scaler(None, b"site")
    torch.manual_seed(seed)
    weights = get_weights(build_model(model, len(spec.feature_names), window=1, **spec.sizes))
    target = None
    t0 = time.perf_counter()
    for rnd in range(1, args.rounds + 1):
        results = [site.train(weights, spec.local_epochs, seed * 1000 + rnd, global_embedding=target) for site in sites]
        if model_aligns(model):  # what a client reports with want_embedding: its mean code under the global model
            embs = [site.mean_embedding(weights) for site in sites]
            target = global_embedding(embs, [r["examples"] for r in results])
        weights = weighted_average([(r["weights"], r["examples"]) for r in results])
    hist = sum(histogram(site.record_scores(weights, site.split.val)) for site in sites)
    threshold = rule_threshold(hist, spec)
    scores = np.concatenate([site.record_scores(weights, site.split.test) for site in sites])
    y = np.concatenate([site.split.test_labels for site in sites]).astype(np.int8)
    m = detection_metrics(y, scores, (scores > threshold).astype(np.int8))
    return {
        "roc_auc": m["roc_auc"],
        "f1": m["f1"],
        "threshold": threshold,
        "seconds": time.perf_counter() - t0,
        "n_test": int(len(y)),
        "anomaly_share": float(y.mean()),
    }


# ------------------------------------------------------------------------------------------------ runs


def run_table(args: argparse.Namespace) -> list[dict]:
    rows = []
    for name in args.datasets:
        for seed in args.seeds:
            shards = shards_for(name, seed, args)
            row: dict = {"dataset": name, "seed": seed}
            for model, sizes in VARIANTS.items():
                r = federate(shards, "dense" if model == "dense" else "contrastive", seed, args, sizes=sizes)
                row[model] = r
                progress(
                    f"{name:<6} seed {seed} {model:<18} roc_auc {r['roc_auc']:.4f} f1 {r['f1']:.4f} "
                    f"({r['seconds']:.0f} s)"
                )
            rows.append(row)
    return rows


def run_sweep(args: argparse.Namespace, select: bool) -> list[dict]:
    rows = []
    seed = args.seeds[0]
    names = ["plant-select"] if select else args.datasets
    for name in names:
        shards = plant_shards(args.plant_records, 100, range(6, 11)) if select else shards_for(name, seed, args)
        settings = [("default", None, {})] + [
            (k, v, {} if k == "lr" else {k: v}) for k, vs in SWEEP.items() for v in vs
        ]
        if select:  # second stage: the promising values together (tau, lambda, score mix)
            settings += [
                ("combo", f"{t}/{lam}/{w}", {"tau": t, "lam": lam, "dist_weight": w})
                for t in (0.1, 0.5)
                for lam in (0.1, 1.0)
                for w in (0.0, 0.25, 0.5)
            ]
            r = federate(shards, "dense", seed, args)
            rows.append({"dataset": name, "seed": seed, "param": "dense AE", "value": None, **r})
        for key, value, sizes in settings:
            r = federate(shards, "contrastive", seed, args, sizes=sizes, lr=value if key == "lr" else None)
            rows.append({"dataset": name, "seed": seed, "param": key, "value": value, **r})
            progress(f"{name:<12} {key:<11} {str(value):<7} roc_auc {r['roc_auc']:.4f} f1 {r['f1']:.4f}")
    return rows


def print_table(rows: list[dict]) -> None:
    print(
        f"{'dataset':<7} {'seed':>4} | {'dense auc':>9} {'contr auc':>9} {'diff':>7} {'+centre':>7} | "
        f"{'dense f1':>8} {'contr f1':>8} {'diff':>7} {'+centre':>7}"
    )
    for r in rows:
        d, c, k = r["dense"], r["contrastive"], r["contrastive+centre"]
        print(
            f"{r['dataset']:<7} {r['seed']:>4} | {d['roc_auc']:>9.4f} {c['roc_auc']:>9.4f} "
            f"{c['roc_auc'] - d['roc_auc']:>+7.4f} {k['roc_auc']:>7.4f} | {d['f1']:>8.4f} {c['f1']:>8.4f} "
            f"{c['f1'] - d['f1']:>+7.4f} {k['f1']:>7.4f}"
        )
    print()
    better, worse = 0, []
    for name in dict.fromkeys(r["dataset"] for r in rows):
        rs = [r for r in rows if r["dataset"] == name]
        da = float(np.mean([r["dense"]["roc_auc"] for r in rs]))
        ca = float(np.mean([r["contrastive"]["roc_auc"] for r in rs]))
        df = float(np.mean([r["dense"]["f1"] for r in rs]))
        cf = float(np.mean([r["contrastive"]["f1"] for r in rs]))
        ka = float(np.mean([r["contrastive+centre"]["roc_auc"] for r in rs]))
        kf = float(np.mean([r["contrastive+centre"]["f1"] for r in rs]))
        better += ca > da
        if ca < da - 0.02:
            worse.append(name)
        print(
            f"{name:<7} mean | {da:>9.4f} {ca:>9.4f} {ca - da:>+7.4f} {ka:>7.4f} | {df:>8.4f} {cf:>8.4f} "
            f"{cf - df:>+7.4f} {kf:>7.4f}"
        )
    ok = better >= 2 and not worse
    n_sets = len({r["dataset"] for r in rows})
    print(
        f"\ncontrastive (defaults) better on mean ROC-AUC on {better} of {n_sets} data sets; "
        f"worse by more than 0.02 on: {', '.join(worse) or 'none'} -> target {'MET' if ok else 'NOT MET'}"
    )


def print_sweep(rows: list[dict]) -> None:
    print(f"{'dataset':<12} {'param':<11} {'value':>13} {'roc_auc':>8} {'f1':>7}")
    for r in rows:
        print(f"{r['dataset']:<12} {r['param']:<11} {str(r['value']):>13} {r['roc_auc']:>8.4f} {r['f1']:>7.4f}")


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    import torch

    torch.set_num_threads(1)
    if args.sweep or args.select:
        rows = run_sweep(args, args.select)
        print_sweep(rows)
    else:
        rows = run_table(args)
        print_table(rows)
    if args.json:
        Path(args.json).write_text(json.dumps({"args": vars(args), "rows": rows}, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())

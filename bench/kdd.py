"""KDD Cup 99: train on normal traffic of the 10 % training set, detect attacks in the labelled test set.

    python bench/kdd.py --data ../shared/datasets/kddcup99_10pct [--json out.json] [--models dense,vae]

Data: kddcup.data_10_percent.gz (494,021 connections, 97,278 normal) and corrected.gz (311,029, 80.5 %
attacks, 17 attack types unseen in training), loaded with load_dataset(format="kdd"): protocol_type,
service and flag one-hot over the union of the values in both files, label 1 = attack (not `normal.`).

Protocol: every detector is fitted on normal rows of the training file only (no attack is ever seen), its
threshold is the 0.99 quantile of normal scores (the autoencoders: their default rule, --score and
--threshold-rule as `fedad train`, on their held-out validation rows), and
it is scored on the test file. For speed both sides are subsampled with a fixed seed: --train-rows normal
training rows (uniformly at random, without replacement) and --test-rows test rows (uniformly at random,
so the attack share stays ~80 %); 0 uses all rows. Preprocessing (--log1p, on by default): log(1 + x) of
every feature (all are >= 0) so byte counts spanning nine decades do not swamp the scaler; the
autoencoders then standardise as usual, and the baselines do their own scaling.

Sequence models (lstm, gru, cnn) get windows of 1 record: connections are not one time series.
Reported per detector: precision, recall, F1, ROC-AUC, PR-AUC, FAR, MAR (attacks = positive class), and
F1/FAR/MAR at a second threshold, the --alt-quantile of the same normal scores (still no test labels):
many attacks score just around the top percentile of normal traffic, so F1 swings with the quantile
while ROC-AUC does not.

For context only, not comparable: DAGMM (Zong et al. 2018) reports F1 0.937 on KDDCUP99 10 % with the
opposite convention (normal traffic, the 20 % minority, is the anomaly class) and a random 50/50 split.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

import numpy as np
from _options import names

MODELS = ("dense", "lstm", "gru", "cnn", "vae")
BASELINE_NAMES = ("iqr", "iforest", "ocsvm", "pca")
TRAIN_FILE, TEST_FILE = "kddcup.data_10_percent.gz", "corrected.gz"


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument(
        "--data", default="../shared/datasets/kddcup99_10pct", help=f"directory holding {TRAIN_FILE} and {TEST_FILE}"
    )
    ap.add_argument("--json", default=None, metavar="FILE", help="write config and result rows as JSON here")
    ap.add_argument("--models", default=",".join(MODELS), help="comma-separated autoencoders, or 'none'")
    ap.add_argument("--baselines", default=",".join(BASELINE_NAMES), help="comma-separated baselines, or 'none'")
    ap.add_argument("--train-rows", type=int, default=20000, help="normal training rows to sample (0: all)")
    ap.add_argument("--test-rows", type=int, default=50000, help="test rows to sample (0: all 311,029)")
    ap.add_argument("--no-log1p", dest="log1p", action="store_false", help="skip the log(1 + x) transform")
    ap.add_argument("--epochs", type=int, default=20)
    ap.add_argument("--batch-size", type=int, default=256)
    ap.add_argument(
        "--threshold-quantile",
        type=float,
        default=0.99,
        help="detector threshold: this quantile of normal scores (autoencoders: validation rows)",
    )
    from fedad.common.scoring import DEFAULT_SCORE, SCORES
    from fedad.common.threshold_rule import DEFAULT_RULE, THRESHOLD_RULES

    ap.add_argument("--score", default=DEFAULT_SCORE, choices=SCORES, help="autoencoder record score (fedad train)")
    ap.add_argument(
        "--threshold-rule",
        default=DEFAULT_RULE,
        choices=THRESHOLD_RULES,
        help="autoencoder threshold rule (fedad train; pot at risk --target-far, default 0.01)",
    )
    ap.add_argument("--target-far", type=float, default=None, help="the rule's false-alarm rate (fedad train)")
    ap.add_argument(
        "--alt-quantile",
        type=float,
        default=0.95,
        help="a second operating point reported beside it (same normal scores, no test labels)",
    )
    ap.add_argument("--threads", type=int, default=2, help="torch CPU threads")
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--seed", type=int, default=0)
    return ap.parse_args(argv)


def _sample(n: int, k: int, rng: np.random.Generator) -> np.ndarray:
    return np.arange(n) if k <= 0 or k >= n else np.sort(rng.choice(n, k, replace=False))


def make_detector(name: str, args: argparse.Namespace):
    from fedad.common.baselines import BASELINES
    from fedad.common.detector import AutoencoderDetector

    if name in BASELINES:
        cls = BASELINES[name]
        kw = {"seed": args.seed} if name in ("iforest", "ocsvm") else {}
        if name != "iqr":
            kw["threshold_quantile"] = args.threshold_quantile
        return cls(**kw)
    return AutoencoderDetector(
        model=name,
        window=1,
        epochs=args.epochs,
        batch_size=args.batch_size,
        threshold_quantile=args.threshold_quantile,
        device=args.device,
        seed=args.seed,
        score=args.score,
        threshold_rule=args.threshold_rule,
        target_far=args.target_far,
        preprocessing={"scaler": "standard", "impute": None},
    )


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    models = names(args.models, MODELS, "model")
    baselines = names(args.baselines, BASELINE_NAMES, "baseline")
    import torch

    from fedad.common.data import kdd_categories, load_dataset
    from fedad.common.metrics import detection_metrics
    from fedad.common.threshold import threshold_from_scores

    torch.set_num_threads(max(1, args.threads))
    root = Path(args.data)
    train_path, test_path = root / TRAIN_FILE, root / TEST_FILE
    for p in (train_path, test_path):
        if not p.is_file():
            raise SystemExit(f"kdd.py: error: {p} not found; --data must hold {TRAIN_FILE} and {TEST_FILE}")
    t0 = time.perf_counter()
    cats = kdd_categories(train_path, test_path)
    train = load_dataset(train_path, format="kdd", categories=cats)
    test = load_dataset(test_path, format="kdd", categories=cats)
    rng = np.random.default_rng(args.seed)
    normal = np.flatnonzero(train.y == 0)
    X_train = train.X[normal[_sample(len(normal), args.train_rows, rng)]]
    idx = _sample(len(test.X), args.test_rows, rng)
    X_test, y_test = test.X[idx], test.y[idx].astype(np.int8)
    if args.log1p:
        X_train, X_test = np.log1p(np.maximum(X_train, 0)), np.log1p(np.maximum(X_test, 0))
    print(
        f"loaded in {time.perf_counter() - t0:.1f} s: {X_train.shape[1]} features, {len(X_train)} normal "
        f"training rows (of {len(normal)}), {len(X_test)} test rows ({y_test.mean():.1%} attacks)",
        file=sys.stderr,
        flush=True,
    )

    rows = []
    for name in models + baselines:
        t = time.perf_counter()
        det = make_detector(name, args).fit(X_train)
        fit_s = time.perf_counter() - t
        scores = np.asarray(det.decision_function(X_test), dtype=np.float64)
        pred = (scores > det.threshold_).astype(np.int8)
        m = detection_metrics(y_test, scores, pred)
        # a second operating point from the same normal scores the threshold came from (no test labels)
        normal_scores = getattr(det, "validation_scores_", None)
        if normal_scores is None:
            normal_scores = det.decision_scores_
        alt = threshold_from_scores(normal_scores, quantile=args.alt_quantile)
        m_alt = detection_metrics(y_test, scores, (scores > alt).astype(np.int8))
        row = {
            "model": name,
            "kind": "baseline" if name in BASELINE_NAMES else "autoencoder",
            **m,
            "threshold": float(det.threshold_),
            "alt_quantile": {
                "quantile": args.alt_quantile,
                "threshold": alt,
                **{k: m_alt[k] for k in ("precision", "recall", "f1", "far", "mar")},
            },
            "fit_seconds": fit_s,
            "seconds": time.perf_counter() - t,
        }
        rows.append(row)
        print(
            f"{name}: F1 {m['f1']:.3f} ROC-AUC {m['roc_auc']:.3f} ({row['seconds']:.0f} s)", file=sys.stderr, flush=True
        )

    print(
        f"\nKDD Cup 99: fit on {len(X_train)} normal rows of {TRAIN_FILE}, test on {len(X_test)} rows of "
        f"{TEST_FILE} ({y_test.mean():.1%} attacks); threshold q{args.threshold_quantile} of normal scores\n"
    )
    q2 = f"q{args.alt_quantile}"
    print(
        f"{'detector':<20} {'precision':>9} {'recall':>7} {'F1':>6} {'ROC-AUC':>7} {'PR-AUC':>7} {'FAR%':>6} "
        f"{'MAR%':>6} | {'F1@' + q2:>9} {'FAR%':>6} {'MAR%':>6} {'time s':>7}"
    )
    for r in rows:
        label = f"{r['model']} ({'AE' if r['kind'] == 'autoencoder' else 'baseline'})"
        a = r["alt_quantile"]
        print(
            f"{label:<20} {r['precision']:9.3f} {r['recall']:7.3f} {r['f1']:6.3f} {r['roc_auc']:7.3f} "
            f"{r['pr_auc']:7.3f} {100 * r['far']:6.2f} {100 * r['mar']:6.2f} | {a['f1']:9.3f} "
            f"{100 * a['far']:6.2f} {100 * a['mar']:6.2f} {r['seconds']:7.1f}"
        )
    print("context (not comparable, opposite convention): DAGMM F1 0.937 with normal traffic as the anomaly")
    if args.json:
        out = {
            "benchmark": "kddcup99-10pct",
            "train_rows": len(X_train),
            "test_rows": len(X_test),
            "attack_share": float(y_test.mean()),
            "features": int(X_train.shape[1]),
            "config": {k: v for k, v in vars(args).items() if k != "json"},
            "rows": rows,
        }
        tmp = f"{args.json}.tmp"
        Path(tmp).write_text(json.dumps(out, indent=2) + "\n")
        os.replace(tmp, args.json)
        print(f"wrote {args.json}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())

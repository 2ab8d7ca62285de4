"""Ensemble vs its members through the product commands: dense alone, Isolation Forest alone, the ensemble.

    python bench/ensemble.py [--seeds 0 1 2] [--records 20000] [--members dense,iforest] [--kdd DIR]

Synthetic plant: node 1 of ``generate_node(1, records, seed)`` per seed, written to CSV; ``fedad train
--test-fraction 0.2`` (dense, then ``--model ensemble --members ...``) trains on the normal rows of the
first 80 %, and ``fedad evaluate --test-fraction 0.2 --baselines`` scores the last 20 % (the baselines,
Isolation Forest among them, fit on the normal rows of the same first 80 %). KDD Cup 99 (--kdd DIR holding
kddcup.data_10_percent.gz and corrected.gz): train on the normal rows of the 10 % file, evaluate on
corrected.gz (``fedad evaluate --train-data`` fits the baselines on the training file's normal rows).
Prints F1 and ROC-AUC per detector; nothing is asserted. Every threshold comes from the defaults (pot rule at
risk 0.01 on validation rows for the autoencoder and the ensemble, the 0.99 training quantile for the
baselines); no test label chooses anything.
"""

from __future__ import annotations

import argparse
import json
import tempfile
from pathlib import Path

from fedad.common.cli import main as fedad
from fedad.common.synth import generate_node


def run_case(
    data: str,
    work: Path,
    members: str,
    extra_train: list[str],
    extra_eval: list[str],
    baseline_args: list[str],
    models: list[str],
) -> dict[str, dict]:
    """Train dense and the ensemble on ``data``, evaluate both (dense with the baselines); metrics per detector."""
    rows: dict[str, dict] = {}
    for model in models:
        out = work / model
        argv = ["train", "--data", data, "--model", model, "--device", "cpu", "--out", str(out), *extra_train]
        if model == "ensemble":
            argv += ["--members", members]
        assert fedad(argv) == 0, argv
        ev = work / f"eval-{model}"
        argv = ["evaluate", "--model", str(out), "--data", extra_eval[0], "--out", str(ev), *extra_eval[1:]]
        if model == "dense":
            argv += ["--baselines", *baseline_args]
        assert fedad(argv) == 0, argv
        rows.update(json.loads((ev / "metrics.json").read_text()))
    return rows


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--seeds", type=int, nargs="*", default=[0, 1, 2], help="plant seeds (none: KDD only)")
    ap.add_argument("--records", type=int, default=20000)
    ap.add_argument("--members", default="dense,iforest")
    ap.add_argument("--models", default="dense,ensemble", help="which of dense (with the baselines), ensemble to run")
    ap.add_argument("--kdd", default=None, metavar="DIR", help="also measure on KDD Cup 99 from this directory")
    args = ap.parse_args()
    shown = ("autoencoder", "iforest", "ensemble")
    models = args.models.split(",")
    table: list[tuple[str, dict[str, dict]]] = []
    with tempfile.TemporaryDirectory() as tmp:
        for seed in args.seeds:
            work = Path(tmp) / f"plant-{seed}"
            work.mkdir()
            path = work / "node.csv"
            generate_node(1, args.records, seed=seed).to_csv(path, index=False)
            split = ["--test-fraction", "0.2"]
            rows = run_case(str(path), work, args.members, split, [str(path), *split], [], models)
            table.append((f"plant seed {seed}", rows))
        if args.kdd:
            work = Path(tmp) / "kdd"
            work.mkdir()
            train, test = str(Path(args.kdd) / "kddcup.data_10_percent.gz"), str(Path(args.kdd) / "corrected.gz")
            fmt = ["--format", "kdd"]
            rows = run_case(train, work, args.members, fmt, [test, *fmt], ["--train-data", train], models)
            table.append(("KDD Cup 99", rows))
    print(f"\n{'case':<16}" + "".join(f"{n + ' F1':>16}{n + ' AUC':>16}" for n in ("dense", "iforest", "ensemble")))
    for case, rows in table:
        cells = "".join(
            f"{rows[n]['f1']:>16.3f}{rows[n]['roc_auc']:>16.3f}" if n in rows else f"{'-':>16}{'-':>16}" for n in shown
        )
        print(f"{case:<16}{cells}")


if __name__ == "__main__":
    main()

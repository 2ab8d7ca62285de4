"""Evaluate a trained model (and optionally the classical baselines) on labelled data.

Scores every row of --data with the autoencoder detector saved by `fedad train`, thresholds with the
model's own threshold, and prints precision, recall, F1, ROC-AUC, PR-AUC, FAR (false alarm rate) and MAR
(missed alarm rate) as a table on stdout. Writes OUT/metrics.json ({name: {precision, recall, f1,
roc_auc, pr_auc, far, mar}}; the model is named "autoencoder", or "ensemble" for a model trained with
`fedad train --model ensemble`) and OUT/roc.png.

With --test-fraction F > 0, --data is split in time order as `fedad train --test-fraction F` splits a file
(fedad.common.split) and only its trailing F of rows is evaluated: the rows the model never saw when it was
trained on this same file with the same F. With 0 (`fedad train`'s default too) or without it, every row of
--data is evaluated.

With --baselines, IQR, Isolation Forest, One-Class SVM and PCA are fitted and scored on the same rows as the
model:
  * with --train-data: the baselines fit on the normal rows (label 0) of that file, and every detector is
    evaluated on all rows of --data (--test-fraction is refused);
  * without it: the normal rows of the leading 1 - F of --data fit the baselines, and every detector is
    evaluated on the trailing F (F defaults to 0.2 here).
"""

from __future__ import annotations

import argparse
import inspect
import sys
from pathlib import Path

import numpy as np

from fedad.common import arg_types
from fedad.common.errors import FedadError

FORMATS = ("auto", "csv", "parquet", "skab", "kdd", "ton_iot")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Options of `fedad evaluate`."""
    parser.add_argument(
        "--model",
        required=True,
        metavar="MODEL_DIR",
        help="directory written by `fedad train` (detector.json + model.pt, or an ensemble's ensemble.json)",
    )
    parser.add_argument("--data", required=True, metavar="PATH", help="labelled data file to evaluate on")
    parser.add_argument(
        "--label-column",
        default=None,
        metavar="COL",
        help="column with 0/1 labels (1 = anomaly); when not given, a column named 'label', or the "
        "format's own label (skab: anomaly, kdd/ton_iot: label)",
    )
    parser.add_argument("--format", default="auto", choices=FORMATS, help="format of --data and --train-data")
    parser.add_argument("--sep", default=None, help="CSV field separator; sniffed from the header when not given")
    parser.add_argument(
        "--baselines",
        action="store_true",
        help="also fit and evaluate IQR, Isolation Forest, One-Class SVM and PCA on the same split",
    )
    parser.add_argument(
        "--train-data",
        default=None,
        metavar="PATH",
        help="with --baselines: file whose normal rows fit the baselines (then all of --data is the test set)",
    )
    parser.add_argument(
        "--test-fraction",
        type=float,
        default=None,
        metavar="F",
        help="evaluate only the trailing fraction F of --data (time order), the part `fedad train --test-fraction "
        "F` held out of the same file; with --baselines (and no --train-data) the normal rows before it fit the "
        "baselines, and F defaults to 0.2. Default (or 0): every row of --data",
    )
    parser.add_argument("--seed", type=arg_types.seed, default=0, help="seed of the randomised baselines")
    parser.add_argument("--out", default="evaluation", metavar="DIR", help="directory for metrics.json and roc.png")


def run(args: argparse.Namespace) -> int:
    """Load, check, score, then print the table and write the files (only once everything succeeded)."""
    from fedad.common.baselines import BASELINES
    from fedad.common.evaluation import (
        Detector,
        detector_outputs,
        format_table,
        metrics_for_outputs,
        plot_roc,
        roc_curves,
        write_metrics,
    )

    model_dir = Path(args.model)
    if not model_dir.is_dir():
        raise FedadError(f"model directory not found: {model_dir}")
    _check_file(args.data, "--data")
    if args.train_data is not None:
        if not args.baselines:
            raise FedadError("--train-data only fits the baselines; add --baselines")
        _check_file(args.train_data, "--train-data")
    head_fits_baselines = args.baselines and args.train_data is None
    test_fraction = args.test_fraction if args.test_fraction is not None else (0.2 if head_fits_baselines else 0.0)
    if not 0.0 <= test_fraction < 1.0:
        raise FedadError(f"--test-fraction must be in [0, 1), got {test_fraction}")
    if test_fraction > 0 and args.train_data is not None:
        raise FedadError("--test-fraction splits --data; with --train-data every row of --data is the test set")
    if test_fraction == 0 and head_fits_baselines:
        raise FedadError(
            "--baselines fit on the rows before the test part: give --test-fraction above 0 or --train-data"
        )
    out = Path(args.out)
    if str(args.out) == "" or (out.exists() and not out.is_dir()):
        raise FedadError(f"--out {str(args.out)!r} must be a directory (metrics.json and roc.png go there)")
    from fedad.common.outputs import check_parent

    check_parent(out / "metrics.json", "--out")
    for option, path in (("--data", args.data), ("--train-data", args.train_data)):  # before loading anything
        if path is not None:
            _check_labels_in_header(path, args, option)

    detector = _load_detector(model_dir)
    data = _load_labelled(args.data, args, "--data")
    X, y = _model_columns(detector, data, args.data), data.y

    from fedad.common.ensemble import EnsembleDetector

    name = "ensemble" if isinstance(detector, EnsembleDetector) else "autoencoder"
    detectors: dict[str, Detector] = {name: detector}
    head: tuple[np.ndarray, ...] = ()  # the normal rows before the test part (what fits the baselines)
    if test_fraction > 0:
        from fedad.common.split import split_site

        split = split_site(X, y, test_fraction=test_fraction, val_fraction=0.2)
        head = (split.train, split.val)
        X, y = split.test, split.test_labels
        if len(X) == 0:
            raise FedadError("the test split is empty; use a larger --test-fraction")
        print(f"evaluating the last {len(X)} of the {len(data.X)} rows of {args.data}", file=sys.stderr)
    if args.baselines:
        if args.train_data is not None:
            train = _load_labelled(args.train_data, args, "--train-data")
            fit_X = _model_columns(detector, train, args.train_data)[train.y == 0]
            where = f"normal rows of {args.train_data}; test = all {len(X)} rows of {args.data}"
        else:  # test_fraction > 0 here (checked above)
            fit_X = np.concatenate(head)
            where = (
                f"normal rows of the first {len(data.X) - len(X)} rows of {args.data}; test = its last {len(X)} rows"
            )
        if len(fit_X) < 10:
            raise FedadError(f"only {len(fit_X)} normal rows to fit the baselines on; need at least 10")
        print(f"baselines fit on {len(fit_X)} {where}", file=sys.stderr)
        for name, cls in BASELINES.items():
            kwargs = {"seed": args.seed} if "seed" in inspect.signature(cls).parameters else {}
            print(f"fitting {name} ...", file=sys.stderr)
            detectors[name] = cls(**kwargs).fit(fit_X)

    print(f"scoring {len(X)} rows ({int(y.sum())} anomalous) ...", file=sys.stderr)
    outputs = detector_outputs(detectors, X)
    results = metrics_for_outputs(y, outputs)
    curves = roc_curves(y, outputs)

    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise FedadError(f"cannot create output directory {out}: {exc.strerror}") from None
    print(format_table(results))
    plot_roc(curves, out / "roc.png", title=f"ROC on {Path(args.data).name}")
    metrics_path = write_metrics(out, results)
    print(f"wrote {metrics_path} and {out / 'roc.png'}", file=sys.stderr)
    return 0


def _check_file(path: str, option: str) -> None:
    if not Path(path).exists():
        raise FedadError(f"{option} file not found: {path}")


def _load_detector(model_dir: Path):
    from fedad.common.ensemble import load_model

    try:
        return load_model(model_dir)
    except FedadError:
        raise
    except (OSError, ValueError, KeyError, RuntimeError) as exc:
        raise FedadError(f"cannot load a model from {model_dir}: {exc}") from None


def _check_labels_in_header(path: str, args: argparse.Namespace, option: str) -> None:
    """Refuse an unlabelled file from its header alone, before seconds or minutes of loading."""
    from fedad.common.data import has_label_column

    if not has_label_column(path, args.format, args.label_column, args.sep):
        hint = f"column '{args.label_column}' not found" if args.label_column else "no label column found"
        raise FedadError(f"{option} {path}: {hint} in its header; evaluation needs 0/1 labels (--label-column)")


def _load_labelled(path: str, args: argparse.Namespace, option: str):
    from fedad.common.data import load_dataset

    data = load_dataset(path, format=args.format, label_column=args.label_column, sep=args.sep)
    if data.y is None:
        hint = f"column '{args.label_column}' not found" if args.label_column else "no label column found"
        raise FedadError(f"{option} {path}: {hint}; evaluation needs 0/1 labels (--label-column)")
    if len(data.X) == 0:
        raise FedadError(f"{option} {path} has no rows")
    return data


def _model_columns(detector, data, path: str) -> np.ndarray:
    """The data's columns in the model's feature order: by name when the data has all the model's
    feature names, else by position when the widths agree; FedadError otherwise."""
    names = [str(f) for f in getattr(detector, "feature_names_", None) or []]
    have = [str(f) for f in data.feature_names]
    if names and set(names) <= set(have):
        return data.X[:, [have.index(f) for f in names]]
    n = detector.n_features_in_
    if data.X.shape[1] != n:
        missing = [f for f in names if f not in have]
        hint = f" (missing: {', '.join(missing[:5])})" if names and len(missing) < len(names) else ""
        raise FedadError(f"{path} has {data.X.shape[1]} features but the model was trained on {n}{hint}")
    return data.X

"""Train a local autoencoder anomaly detector on one data file and save it as a model directory.

Features are all numeric columns except the label and time columns. Rows labelled anomalous (label 1) are
left out of training when the data has a label column. With --test-fraction, the trailing fraction of
rows is held out entirely (the split `fedad evaluate` uses), so the model can be evaluated on unseen data.
The last --val-fraction of the remaining normal rows (time order) is the validation part: early stopping
on its loss. Scores (--score): each feature's reconstruction error divided by its error scale on the
training rows (the 0.999 quantile of its errors; the RMS error below 1,000 training rows), then the max
(default), mean or top-k mean over features, log(1 + .); `mse` is the plain
mean squared error. The threshold (--threshold-rule) comes from the validation scores: `pot` (default)
fits a generalised Pareto tail to their upper 2 % and sets the threshold at false-alarm risk --target-far
(default 0.01); `quantile` takes their --threshold-quantile (or 1 - --target-far).

Progress (epochs, losses) goes to stderr. MODEL_DIR receives detector.json (parameters, preprocessing
state, threshold, feature names) and model.pt (the weights), written to a temporary directory first and
then renamed into place.

--model ensemble --members dense,iforest (the default members) trains several autoencoders and classical
baselines (iforest, ocsvm, pca, iqr) on the same rows and combines them into one score
(fedad.common.ensemble): each member's score is ranked against its scores on the validation rows (empirical
CDF), the ranks are averaged, and the threshold rule above is applied to the validation rows' averages.
MODEL_DIR then holds ensemble.json and one subdirectory per member; `fedad score` and `fedad evaluate`
read it like any model. Ensembles are trained locally only (not in a federation).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from fedad.common import arg_types
from fedad.common.contrastive_options import add_contrastive_options, contrastive_sizes
from fedad.common.errors import FedadError
from fedad.common.models.names import DEFAULT_WINDOW, MODEL_NAMES

FORMATS = ("auto", "csv", "parquet", "skab", "kdd", "ton_iot")


def add_data_arguments(parser: argparse.ArgumentParser) -> None:
    """Options that say how to read a data file (shared with `fedad score`)."""
    parser.add_argument("--data", required=True, metavar="PATH", help="data file (CSV or Parquet)")
    parser.add_argument(
        "--format", default="auto", choices=FORMATS, help="data format; auto picks by file extension and columns"
    )
    parser.add_argument(
        "--label-column",
        default=None,
        metavar="COL",
        help="column with 0/1 labels (1 = anomaly); default: a column named 'label' if present",
    )
    parser.add_argument(
        "--time-column",
        default=None,
        metavar="COL",
        help="time column (not a feature); default: one named timestamp/time/datetime/date",
    )
    parser.add_argument("--sep", default=None, help="CSV field separator (default: sniffed)")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Options of `fedad train`."""
    add_data_arguments(parser)
    windows = ", ".join(f"{m} {w}" for m, w in DEFAULT_WINDOW.items())
    model = parser.add_argument_group("model and training")
    model.add_argument(
        "--model",
        default="dense",
        choices=(*MODEL_NAMES, "ensemble"),
        help="autoencoder architecture, or ensemble: several models and baselines (--members) in one score",
    )
    model.add_argument(
        "--members",
        default=None,
        metavar="A,B",
        help="with --model ensemble: comma-separated members, autoencoders (dense, lstm, gru, cnn, vae, "
        "contrastive) and baselines (iforest, ocsvm, pca, iqr); default dense,iforest. Each member's score is "
        "ranked against its validation scores and the ranks are averaged",
    )
    model.add_argument(
        "--n-models",
        type=arg_types.auto_or_count,
        default="auto",
        metavar="K",
        help="autoencoders of the same architecture trained from K random initialisations, reconstructing as "
        "their mean (fedad.common.models.averaged); auto: 5 for fits of fewer than 1,000 training samples, "
        "whose few optimiser steps leave a single model's errors depending on its seed, 1 otherwise",
    )
    model.add_argument(
        "--window",
        type=arg_types.count,
        default=None,
        metavar="W",
        help=f"records per sample; default per model ({windows})",
    )
    model.add_argument("--epochs", type=arg_types.count, default=50, metavar="E", help="maximum training epochs")
    model.add_argument(
        "--batch-size", type=arg_types.count, default=256, metavar="B", help="samples per optimiser step"
    )
    model.add_argument("--lr", type=float, default=1e-3, help="Adam learning rate")
    model.add_argument("--weight-decay", type=arg_types.finite, default=1e-5, help="Adam weight decay (L2)")
    model.add_argument(
        "--patience", type=int, default=5, help="stop after this many epochs without a lower validation loss (0: never)"
    )
    model.add_argument(
        "--val-fraction",
        type=float,
        default=0.2,
        help="last fraction of the normal training rows used for validation and the threshold",
    )
    model.add_argument(
        "--test-fraction",
        type=float,
        default=0.0,
        help="trailing fraction of all rows left out of training (for `fedad evaluate`)",
    )
    add_contrastive_options(model)
    model.add_argument("--device", default="auto", help="auto (CUDA when available), cpu, cuda or cuda:N")
    from fedad.common.threads import add_threads_argument

    add_threads_argument(model)
    model.add_argument("--seed", type=arg_types.seed, default=0, help="seed of weight initialisation and batch order")
    from fedad.common.scoring import DEFAULT_SCORE, DEFAULT_TOP_K, SCORES
    from fedad.common.threshold_rule import DEFAULT_RULE, THRESHOLD_RULES

    thresh = parser.add_argument_group("score and threshold")
    thresh.add_argument(
        "--score",
        default=DEFAULT_SCORE,
        choices=SCORES,
        help="record score from the per-feature errors normalised by their training scale",
    )
    thresh.add_argument(
        "--top-k", type=int, default=DEFAULT_TOP_K, metavar="K", help="features averaged by --score topk"
    )
    thresh.add_argument(
        "--threshold-rule",
        default=DEFAULT_RULE,
        choices=THRESHOLD_RULES,
        help="pot: generalised Pareto tail at risk --target-far; quantile: --threshold-quantile",
    )
    thresh.add_argument(
        "--threshold-quantile",
        type=float,
        default=0.99,
        metavar="Q",
        help="quantile rule: threshold = this quantile of the validation scores",
    )
    thresh.add_argument(
        "--target-far",
        type=float,
        default=None,
        metavar="F",
        help="target false-alarm rate: the pot rule's risk (default 0.01); quantile rule: 1 - F",
    )
    pre = parser.add_argument_group("preprocessing (fitted on the training rows)")
    pre.add_argument("--scaler", default="standard", choices=("standard", "minmax", "none"), help="feature scaling")
    pre.add_argument(
        "--detrend",
        default="none",
        choices=("none", "diff", "ma"),
        help="remove trends: first difference or moving average",
    )
    pre.add_argument("--denoise", default="none", choices=("none", "ma", "median"), help="causal smoothing filter")
    pre.add_argument("--impute", default="knn", choices=("knn", "none"), help="fill missing values (KNN)")
    pre.add_argument(
        "--clip-quantile",
        type=float,
        default=None,
        metavar="Q",
        help="clip each feature to its [Q, 1-Q] training quantiles",
    )
    parser.add_argument("--out", default="model", metavar="MODEL_DIR", help="model directory to write")


def preprocessing_options(args: argparse.Namespace) -> dict:
    """The Preprocessor keyword arguments that the options select."""

    def step(value: str | None) -> str | None:
        return None if value in (None, "none") else value

    return {
        "scaler": args.scaler,
        "detrend": step(args.detrend),
        "denoise": step(args.denoise),
        "impute": step(args.impute),
        "clip_quantile": args.clip_quantile,
    }


def run(args: argparse.Namespace) -> int:
    """Check the options, load, train, then save the model directory."""
    from fedad.common.data import load_dataset
    from fedad.common.detector import AutoencoderDetector

    _check_options(args)
    from fedad.common.threads import apply_threads

    threads, why = apply_threads(args.threads)  # said with the header: a refused fit prints only its error
    from fedad.common.outputs import check_model_out

    if str(args.out) == "":
        raise FedadError("--out '' names no directory; give the model directory to write")
    out = check_model_out(args.out, "--out")
    data = load_dataset(
        args.data, format=args.format, label_column=args.label_column, time_column=args.time_column, sep=args.sep
    )
    X = data.X
    n = len(X)
    n_test = int(round(n * args.test_fraction))
    X = X[: n - n_test]
    note = f"{n} rows, {X.shape[1]} features"
    if n_test:
        note += f"; last {n_test} rows held out (--test-fraction)"
    if data.y is not None:
        normal = data.y[: n - n_test] == 0
        note += f"; {int((~normal).sum())} anomalous rows left out"
        X = X[normal]
    if len(X) == 0:
        raise FedadError(f"{args.data}: no normal rows to train on ({note})")
    header = f"{args.data}: {note}; training {args.model} on {len(X)} rows"
    from fedad.common.missing import missing_values_note

    missing = missing_values_note(X, data.feature_names, preprocessing_options(args).get("impute"))
    if missing:
        header += f"\n{args.data}: {missing}"
    ignored = data.ignored_note()
    if ignored:
        header += f"\n{args.data}: {ignored}"
    header += f"\ntorch uses {threads} CPU thread(s) ({why})"

    def progress(epoch: int, epochs: int, train_loss: float, val_loss: float) -> None:
        if epoch == 1:  # printed once training runs, so a refused fit leaves only its error on stderr
            print(header, file=sys.stderr)
        _print_epoch(epoch, epochs, train_loss, val_loss)

    if args.model == "ensemble":
        return _train_ensemble(args, X, data.feature_names, header, progress, out)
    detector = AutoencoderDetector(
        model=args.model,
        model_sizes=contrastive_sizes(args) or None,
        n_models=args.n_models,
        **_detector_options(args),
    )
    detector.fit(X, feature_names=data.feature_names, progress=progress)
    detector.save(out)
    hist = detector.history_
    n_params = sum(p.numel() for p in detector.model_.parameters())
    print(
        f"saved {out}/: {args.model} autoencoder{_averaged_note(detector)}, window {detector.window_}, "
        f"{n_params} parameters, "
        f"{hist['epochs']} epochs (best {hist['best_epoch']}), {args.score} score, threshold "
        f"{detector.threshold_:.6g} ({args.threshold_rule} rule, expected false-alarm rate "
        f"{detector.expected_far_:.3g})"
    )
    return 0


def _averaged_note(detector) -> str:
    k = getattr(detector.model_, "n_members", 1)
    return f" (mean of {k} initialisations, --n-models)" if k > 1 else ""


def _train_ensemble(args: argparse.Namespace, X, feature_names, header: str, progress, out: Path) -> int:
    """Fit and save an ``EnsembleDetector`` (members from --members)."""
    from fedad.common.ensemble import EnsembleDetector

    members = _members(args)
    print(header.replace(" training ensemble ", f" training ensemble {','.join(members)} "), file=sys.stderr)

    detector = EnsembleDetector(members=members, **_detector_options(args))
    detector.fit(X, feature_names=feature_names, progress=_print_epoch)
    detector.save(out)
    print(
        f"saved {out}/: ensemble of {', '.join(detector.members_)} (mean of rank-normalised scores), threshold "
        f"{detector.threshold_:.6g} ({args.threshold_rule} rule, expected false-alarm rate "
        f"{detector.expected_far_:.3g})"
    )
    return 0


def _detector_options(args: argparse.Namespace) -> dict:
    """The options an ``AutoencoderDetector`` and an ``EnsembleDetector`` share, from the command line."""
    return {
        "window": args.window,
        "epochs": args.epochs,
        "batch_size": args.batch_size,
        "lr": args.lr,
        "weight_decay": args.weight_decay,
        "patience": args.patience,
        "val_fraction": args.val_fraction,
        "threshold_quantile": args.threshold_quantile,
        "target_far": args.target_far,
        "score": args.score,
        "top_k": args.top_k,
        "threshold_rule": args.threshold_rule,
        "device": args.device,
        "seed": args.seed,
        "preprocessing": preprocessing_options(args),
    }


def _print_epoch(epoch: int, epochs: int, train_loss: float, val_loss: float) -> None:
    print(f"epoch {epoch:>3}/{epochs}  train_loss {train_loss:.6f}  val_loss {val_loss:.6f}", file=sys.stderr)


def _members(args: argparse.Namespace) -> tuple[str, ...]:
    """The --members of an ensemble, checked; FedadError when given without --model ensemble."""
    from fedad.common.ensemble import DEFAULT_MEMBERS, check_members

    if args.members is not None and args.model != "ensemble":
        raise FedadError("--members only applies to --model ensemble")
    return check_members(DEFAULT_MEMBERS if args.members is None else args.members)


def _check_options(args: argparse.Namespace) -> None:
    if args.members is not None or args.model == "ensemble":
        _members(args)
    if args.model == "ensemble" and args.val_fraction <= 0:
        raise FedadError("--model ensemble needs validation rows to rank its members' scores: --val-fraction > 0")
    if not Path(args.data).exists():
        raise FedadError(f"--data file not found: {args.data}")
    positive = {"--epochs": args.epochs, "--batch-size": args.batch_size}
    if args.window is not None:
        positive["--window"] = args.window
    for option, value in positive.items():
        if value < 1:
            raise FedadError(f"{option} must be at least 1, got {value}")
    if args.patience < 0:
        raise FedadError(f"--patience must be >= 0, got {args.patience}")
    if args.model == "ensemble" and args.n_models not in ("auto", 1):
        raise FedadError("--n-models applies to one autoencoder: each member of --model ensemble is one model")
    if args.model != "ensemble":
        from fedad.common.models.registry import check_n_models

        check_n_models(args.n_models, args.model, "--n-models", auto=True)
    if not args.lr > 0 or args.weight_decay < 0:
        raise FedadError(f"--lr must be > 0 and --weight-decay >= 0, got {args.lr} and {args.weight_decay}")
    if not 0.0 <= args.val_fraction < 1.0:
        raise FedadError(f"--val-fraction must be in [0, 1), got {args.val_fraction}")
    if not 0.0 <= args.test_fraction < 1.0:
        raise FedadError(f"--test-fraction must be in [0, 1), got {args.test_fraction}")
    if not 0.0 < args.threshold_quantile <= 1.0:
        raise FedadError(f"--threshold-quantile must be in (0, 1], got {args.threshold_quantile}")
    if args.target_far is not None and not 0.0 <= args.target_far < 1.0:
        raise FedadError(f"--target-far must be in [0, 1), got {args.target_far}")
    if args.top_k < 1:
        raise FedadError(f"--top-k must be at least 1, got {args.top_k}")
    if args.clip_quantile is not None and not 0.0 <= args.clip_quantile < 0.5:
        raise FedadError(f"--clip-quantile must be in [0, 0.5), got {args.clip_quantile}")
    from fedad.common.training import resolve_device

    resolve_device(args.device)

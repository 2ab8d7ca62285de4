"""Score records with a model trained by `fedad train`: one output row per input row, in input order.

The output CSV has the columns score (higher is more anomalous; the model's --score, see `fedad train`)
and is_anomaly. --rule threshold (default): is_anomaly is 1 when score > the model's threshold (its rule and
expected false-alarm rate are printed). --rule adaptive: the streaming rule for plants that do not return to
their training state (test rigs such as SKAB; fedad.common.stream_rule): the rows are taken as the stream
that follows the training rows, score is log(1 + max over non-drifting features of the normalised error),
a row alarms when the trailing mean of the last --smooth scores exceeds a threshold from the training rows,
and after an abrupt change ends an alarm the model is re-fitted on the next --collect rows; a row's
decision uses no later row. The data must have the model's feature columns (matched by name; extra
columns are ignored). An ensemble (`fedad train --model ensemble`) scores with the mean of its members'
rank-normalised scores and its own threshold (--rule threshold only). The file is written to a temporary
name and renamed when complete.
"""

from __future__ import annotations

import argparse
import math
import os
import sys
import tempfile
from pathlib import Path
from typing import Any

import numpy as np

from fedad.common import arg_types
from fedad.common.commands.train import add_data_arguments
from fedad.common.errors import FedadError


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Options of `fedad score`."""
    parser.add_argument(
        "--model",
        required=True,
        metavar="MODEL_DIR",
        help="directory written by `fedad train` (detector.json + model.pt, or an ensemble's ensemble.json)",
    )
    add_data_arguments(parser)
    parser.add_argument(
        "--out", default=None, metavar="SCORES.csv", help="output CSV: score,is_anomaly per row (not with --follow)"
    )
    parser.add_argument("--device", default="auto", help="auto (CUDA when available), cpu, cuda or cuda:N")
    from fedad.common.threads import add_threads_argument

    add_threads_argument(parser)
    ad = add_rule_arguments(parser)
    ad.add_argument(
        "--baseline-rows",
        type=int,
        default=0,
        metavar="N",
        help="the first N rows of --data are this stream's normal start: feature error scales and the rule's "
        "statistics come from them instead of the model's training rows, and they never alarm (a shared or "
        "federated model scoring a site's own experiment; 0: off)",
    )
    from fedad.common.commands import score_follow

    score_follow.add_arguments(parser)


def add_rule_arguments(parser: argparse.ArgumentParser) -> argparse._ArgumentGroup:
    """--rule and the adaptive rule's options (`fedad score`, `fedad-client --stream`); returns their group."""
    parser.add_argument(
        "--rule",
        default="threshold",
        choices=("threshold", "adaptive"),
        help="alarm rule: the model's threshold per row, or the adaptive streaming rule",
    )
    from fedad.common.stream_rule import AdaptiveParams

    d = AdaptiveParams()
    ad = parser.add_argument_group("adaptive rule (--rule adaptive)")
    ad.add_argument("--smooth", type=arg_types.count, default=d.smooth, help="rows per trailing mean of scores")
    ad.add_argument(
        "--threshold-scale",
        type=float,
        default=d.threshold_scale,
        help="threshold = median + this x (max - median) of the training rows' trailing means",
    )
    ad.add_argument(
        "--change-window", type=arg_types.count, default=d.change_window, help="rows per mean compared for a change"
    )
    ad.add_argument("--change-sds", type=float, default=d.change_sds, help="change size, training std units")
    ad.add_argument("--drop", type=float, default=d.drop, help="fall of the mean score that ends an alarm")
    ad.add_argument("--collect", type=arg_types.count, default=d.collect, help="rows judged normal and re-fitted on")
    ad.add_argument(
        "--drift-ratio",
        type=float,
        default=d.drift_ratio,
        help="leave out features whose 60-row rolling mean in the training rows varies by at least "
        "this share of their std (>1: keep all)",
    )
    return ad


def run(args: argparse.Namespace) -> int:
    """Load the model and the data, score, then write the CSV."""
    from fedad.common.data import load_dataset
    from fedad.common.ensemble import EnsembleDetector, load_model

    if not Path(args.model).is_dir():
        if Path(args.model).exists():
            raise FedadError(f"--model {args.model} is a file; give the model directory `fedad train --out` wrote")
        raise FedadError(f"model directory not found: {args.model}")
    if not (args.follow and args.data == "-") and not Path(args.data).exists():
        raise FedadError(f"--data file not found: {args.data}")
    if args.rule != "adaptive":
        unused = adaptive_only_options(args)
        if unused:
            raise FedadError(f"{', '.join(unused)}: options of --rule adaptive; add it or leave them out")
    if args.follow:
        from fedad.common.commands.score_follow import follow

        detector = load_model(args.model, device=args.device)
        if isinstance(detector, EnsembleDetector) and args.rule == "adaptive":
            raise FedadError("--rule adaptive needs an autoencoder model; this model is an ensemble")
        return follow(args, detector)
    if args.out is None:
        raise FedadError("--out is required (or --follow for live scoring)")
    from fedad.common.outputs import check_file_out

    out = check_file_out(args.out, "--out", inputs=[args.data], keep_dirs=[args.model])
    params = adaptive_params(args) if args.rule == "adaptive" else None  # refused before anything is loaded
    from fedad.common.threads import apply_threads

    threads, why = apply_threads(args.threads)  # said once every check passed: bad input prints one line
    detector = load_model(args.model, device=args.device)
    ensemble = isinstance(detector, EnsembleDetector)
    if ensemble and args.rule == "adaptive":
        raise FedadError("--rule adaptive needs an autoencoder model; this model is an ensemble (use --rule threshold)")
    data = load_dataset(
        args.data, format=args.format, label_column=args.label_column, time_column=args.time_column, sep=args.sep
    )
    X = model_columns(detector.feature_names_, data.X, list(data.feature_names), args.data)
    if params is not None:
        from fedad.common.stream_rule import adaptive_alarms, kept_features, rebaseline_on, stream_scores

        base = args.baseline_rows
        if not 0 <= base < len(X):
            raise FedadError(f"--baseline-rows must be in [0, {len(X)}) for {len(X)} rows, got {base}")
        if 0 < base < params.smooth:  # the rule's threshold comes from trailing means of --smooth baseline rows
            raise FedadError(f"--baseline-rows {base} is fewer than --smooth ({params.smooth}) rows")
        if base:
            rebaseline_on(detector, X[:base])
        res = adaptive_alarms(detector, X[base:], params)
        scores, alarms = res.scores, res.alarms
        if base:  # baseline rows: their stream scores under the rule's features, never alarms
            head = stream_scores(detector, X[:base], kept_features(detector, params.drift_ratio))
            scores = np.concatenate([head, scores])
            alarms = np.concatenate([np.zeros(base, dtype=alarms.dtype), alarms])
        print(f"torch uses {threads} CPU thread(s) ({why})", file=sys.stderr)
        write_scores(out, scores, alarms)
        print(
            f"scored {len(X)} rows with the adaptive rule"
            + (f" ({base} baseline rows)" if base else "")
            + f": {int(alarms.sum())} alarms ({alarms.mean():.2%}), {len(res.events)} re-baseline(s); wrote {out}"
        )
        return 0
    scores = detector.decision_function(X)
    flags = (scores > detector.threshold_).astype(np.int8)
    print(f"torch uses {threads} CPU thread(s) ({why})", file=sys.stderr)
    write_scores(out, scores, flags)
    kind = "ensemble rank" if ensemble else detector.score
    print(
        f"scored {len(scores)} rows ({kind} score): {int(flags.sum())} anomalies ({flags.mean():.2%}) "
        f"above threshold {detector.threshold_:.6g} ({detector.threshold_rule} rule, expected false-alarm rate "
        f"{detector.expected_far_:.3g}); wrote {out}"
    )
    note = range_note(detector, X)
    if note:
        print(note)
    return 0


def range_note(detector: Any, X: np.ndarray) -> str | None:
    """A line when a notable share of ``X`` lies outside the range of the model's training records (the min/max its
    scaler saved); None otherwise, or when the preprocessing changes values before the scaler (detrend, denoise,
    clip), where raw records and that range are not comparable."""
    from fedad.common.operating_range import outside_bounds

    pre = getattr(detector, "preprocessor_", None)  # an ensemble has none
    stats = getattr(pre, "scaler_stats_", None)
    if pre is None or stats is None or pre.detrend or pre.denoise or pre.clip_quantile:
        return None
    return outside_bounds(stats.min, stats.max, X).note(
        list(detector.feature_names_), "rows", "the model's training rows"
    )


def adaptive_only_options(args: argparse.Namespace) -> list[str]:
    """The adaptive rule's options set away from their defaults (they mean nothing under --rule threshold)."""
    from dataclasses import asdict

    from fedad.common.stream_rule import AdaptiveParams

    names = [f"--{k.replace('_', '-')}" for k, v in asdict(AdaptiveParams()).items() if getattr(args, k) != v]
    return names + (["--baseline-rows"] if args.baseline_rows else [])


def adaptive_params(args: argparse.Namespace) -> Any:
    """The ``AdaptiveParams`` of the options; FedadError for bad values."""
    from fedad.common.stream_rule import AdaptiveParams

    params = AdaptiveParams(
        smooth=args.smooth,
        threshold_scale=args.threshold_scale,
        change_window=args.change_window,
        change_sds=args.change_sds,
        drop=args.drop,
        collect=args.collect,
        drift_ratio=args.drift_ratio,
    )
    if min(params.smooth, params.change_window, params.collect) < 1:
        raise FedadError("--smooth, --change-window and --collect must be at least 1")
    for option, value in (
        ("--threshold-scale", params.threshold_scale),
        ("--change-sds", params.change_sds),
        ("--drop", params.drop),
        ("--drift-ratio", params.drift_ratio),
    ):
        if not (math.isfinite(value) and value > 0):  # nan would silence every alarm, a negative one raise them all
            raise FedadError(f"{option} must be a finite number > 0, got {value}")
    return params


def model_columns(model_names: list[str], X: np.ndarray, names: list[str], source: str) -> np.ndarray:
    """The columns of X in the model's feature order, by name; FedadError when any is missing."""
    if names == model_names:
        return X
    missing = [f for f in model_names if f not in names]
    if missing:
        shown = ", ".join(missing[:5]) + (" ..." if len(missing) > 5 else "")
        raise FedadError(f"{source} has {len(names)} features but the model takes {len(model_names)}; missing: {shown}")
    return X[:, [names.index(f) for f in model_names]]


def write_scores(path: Path, scores: np.ndarray, flags: np.ndarray) -> None:
    """Write score,is_anomaly rows to ``path`` atomically (temporary file, then rename)."""
    import pyarrow as pa
    import pyarrow.csv as pa_csv

    from fedad.common.outputs import write_error

    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    except OSError as exc:
        raise write_error("--out", path, exc) from None
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(b"score,is_anomaly\n")  # plain header: pyarrow would quote the names
            table = pa.table({"score": pa.array(scores, pa.float64()), "is_anomaly": pa.array(flags, pa.int8())})
            pa_csv.write_csv(table, f, pa_csv.WriteOptions(include_header=False))
        os.chmod(tmp, 0o666 & ~_umask())  # mkstemp makes it owner-only
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask

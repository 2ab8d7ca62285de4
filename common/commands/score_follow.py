"""`fedad score --follow`: score a growing CSV file (tail) or stdin (`--data -`) record by record as it arrives.

Each record is decided by the model's preprocessing, score and threshold (or `--rule adaptive`), causally: the
same decisions as `fedad score` on the same records. Alarms go to --alarms PATH as JSON lines (record index,
time, score, threshold, alarm, model version, latency_ms), and to stdout with --print-alarms. A bad row (wrong
column count, text in a model column) is reported on stderr with its line number and skipped. Stdin ends at
end of input; a file is followed until --idle-exit seconds pass without a new line (default: forever).
"""

from __future__ import annotations

import argparse
import hashlib
import sys
from pathlib import Path
from typing import Any

from fedad.common.errors import FedadError


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """The live options of `fedad score` (--follow and what goes with it)."""
    live = parser.add_argument_group("live scoring (--follow)")
    live.add_argument(
        "--follow",
        action="store_true",
        help="score records as they are appended to --data (or arrive on stdin with --data -); needs --alarms "
        "or --print-alarms instead of --out",
    )
    live.add_argument("--alarms", default=None, metavar="PATH", help="append alarms here as JSON lines")
    live.add_argument("--print-alarms", action="store_true", help="also print each alarm's JSON line on stdout")
    live.add_argument("--all-decisions", action="store_true", help="write every record's decision, not only the alarms")
    live.add_argument(
        "--idle-exit",
        type=float,
        default=None,
        metavar="SECONDS",
        help="stop following a file after this long without a new line (default: follow forever)",
    )
    live.add_argument(
        "--model-version",
        default=None,
        help="the version name each decision carries (default: 'sha-' + 12 hex of the model config's SHA-256)",
    )


def model_version(model_dir: str) -> str:
    """'sha-' + 12 hex digits of the model directory's config file: the same model gives the same name."""
    for name in ("detector.json", "ensemble.json"):
        path = Path(model_dir) / name
        if path.is_file():
            return "sha-" + hashlib.sha256(path.read_bytes()).hexdigest()[:12]
    return Path(model_dir).name


def follow(args: argparse.Namespace, detector: Any) -> int:
    """Score the stream until it ends; returns the exit code."""
    from fedad.common.alarms import AlarmSink
    from fedad.common.live_loop import parser_factory, score_stream
    from fedad.common.live_scorer import LiveModel, LiveScorer

    if args.alarms is None and not args.print_alarms:
        raise FedadError("--follow needs --alarms PATH or --print-alarms")
    if args.baseline_rows:
        raise FedadError("--baseline-rows does not work with --follow yet")
    if args.idle_exit is not None and not args.idle_exit >= 0:  # NaN too: it would follow forever
        raise FedadError("--idle-exit must be a number >= 0")
    adaptive = None
    if args.rule == "adaptive":
        from fedad.common.commands.score import adaptive_params

        adaptive = adaptive_params(args)
    version = args.model_version or model_version(args.model)
    scorer = LiveScorer(LiveModel(detector, version), adaptive)  # checks before any output
    sink = AlarmSink(
        args.alarms,
        stdout=args.print_alarms,
        all_decisions=args.all_decisions,
        inputs=[args.data],
        keep_dirs=[args.model],
    )
    try:
        parser_for = parser_factory(list(detector.feature_names_), args.time_column, args.sep)
        score_stream(args.data, scorer, sink, parser_for, idle_exit=args.idle_exit if args.data != "-" else None)
    except KeyboardInterrupt:
        pass
    except BaseException:  # a stream refused before any alarm leaves no empty --alarms file behind
        sink.abandon()
        raise
    finally:
        sink.close()
    print(f"scored {scorer.records} records live (model {version}): {sink.alarms} alarms", file=sys.stderr)
    return 0

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
    from fedad.common.data import TIME_COLUMN_NAMES
    from fedad.common.live_scorer import LiveModel, LiveScorer
    from fedad.common.stream_source import RowParser, follow_lines, open_stream, read_batches

    if args.alarms is None and not args.print_alarms:
        raise FedadError("--follow needs --alarms PATH or --print-alarms")
    if args.baseline_rows:
        raise FedadError("--baseline-rows does not work with --follow yet")
    if args.idle_exit is not None and args.idle_exit < 0:
        raise FedadError("--idle-exit must be >= 0")
    adaptive = None
    if args.rule == "adaptive":
        from fedad.common.commands.score import adaptive_params

        adaptive = adaptive_params(args)
    version = args.model_version or model_version(args.model)
    scorer = LiveScorer(LiveModel(detector, version), adaptive)  # checks before any output
    features = list(detector.feature_names_)

    def parser_for(header: str) -> RowParser:
        names = {c.strip().strip('"') for c in header.split(args.sep or ",")}
        time_column = args.time_column or next((t for t in TIME_COLUMN_NAMES if t in names), None)
        return RowParser(header, features, time_column=time_column, sep=args.sep)

    stream = open_stream(args.data)
    sink = AlarmSink(args.alarms, stdout=args.print_alarms, all_decisions=args.all_decisions)
    lines = follow_lines(stream, follow=args.data != "-", idle_exit_s=args.idle_exit)
    try:
        for batch in read_batches(lines, parser_for):
            sink.write(scorer.score(batch.rows, batch.times, batch.arrived))
    except KeyboardInterrupt:
        pass
    finally:
        sink.close()
        if stream is not sys.stdin:
            stream.close()
    print(f"scored {scorer.records} records live (model {version}): {sink.alarms} alarms", file=sys.stderr)
    return 0

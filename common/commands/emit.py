"""Emit a live plant: every node's records appended to its own growing CSV at a fixed rate, in real time.

Each node's stream is OUT/node_01.csv, OUT/node_02.csv, ... (the header first, then --rate records per second,
complete lines only), for `fedad-client --stream` or `fedad score --follow` to score as they arrive. The records
are the node files of --source (a plant directory written by `fedad data synth`, node_NN.csv or .parquet,
replayed in order) or, without --source, the synthetic plant generated here (--nodes, --records, --seed,
--anomaly-rate: the same records as `fedad data synth` with the same options, anomaly episodes and their
labels included). At the end of its records a node starts over, its timestamps shifted on so time keeps going
forward. --sent-column adds the wall-clock time each line was written (a last column `sent`, unix seconds).

example: fedad data emit --nodes 10 --records 20000 --rate 1000 --out streams/
"""

from __future__ import annotations

import argparse
import signal
import sys
import threading
from pathlib import Path

from fedad.common import arg_types
from fedad.common.errors import FedadError


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--out", required=True, metavar="DIR", help="directory of the growing node_NN.csv streams")
    parser.add_argument(
        "--source", default=None, metavar="DIR", help="replay the node_NN.csv/.parquet files of this plant directory"
    )
    parser.add_argument(
        "--nodes", type=arg_types.count, default=10, help="nodes (without --source: of the synthetic plant)"
    )
    parser.add_argument(
        "--records", type=arg_types.count, default=20_000, help="synthetic records per node (replayed in a loop)"
    )
    parser.add_argument(
        "--seed", type=arg_types.seed, default=0, help="synthetic plant seed (the same as `fedad data synth`)"
    )
    parser.add_argument("--anomaly-rate", type=float, default=0.05, help="synthetic share of anomalous records")
    parser.add_argument("--rate", type=float, default=10.0, help="records per second per node")
    parser.add_argument("--seconds", type=float, default=None, help="stop after this long (default: until interrupted)")
    parser.add_argument("--sent-column", action="store_true", help="add each line's write time (column `sent`)")


def source_files(source: Path, nodes: int | None = None) -> list[Path]:
    """The node files of a plant directory, node_01 first (CSV preferred over Parquet)."""
    if not source.is_dir():
        raise FedadError(f"--source {source} is not a directory")
    stems = sorted({p.stem for p in source.glob("node_*") if p.suffix in (".csv", ".parquet")})
    files = [source / f"{s}.csv" if (source / f"{s}.csv").is_file() else source / f"{s}.parquet" for s in stems]
    if not files:
        raise FedadError(f"--source {source} has no node_NN.csv or node_NN.parquet file")
    return files[:nodes] if nodes else files


def run(args: argparse.Namespace) -> int:
    from fedad.common.emitter import Emitter, feed_from_file, feed_from_synth

    if args.nodes < 1:
        raise FedadError(f"--nodes must be at least 1, got {args.nodes}")
    if not args.rate > 0:
        raise FedadError(f"--rate must be > 0 records/s, got {args.rate}")
    if args.seconds is not None and args.seconds <= 0:
        raise FedadError(f"--seconds must be > 0, got {args.seconds}")
    out = Path(args.out)
    if out.exists() and not out.is_dir():
        raise FedadError(f"--out {out} exists and is not a directory")
    if args.source:
        files = source_files(Path(args.source), args.nodes)
        for f in files:  # the stream files are written from the start: never over the files they replay
            if (out / f"{f.stem}.csv").resolve() == f.resolve():
                raise FedadError(f"--out {out} would write {f.name} over the --source file it replays; give another")
        feeds = [feed_from_file(f, out / f"{f.stem}.csv") for f in files]
    else:
        if args.records < 100:
            raise FedadError(f"--records must be at least 100, got {args.records}")
        if not 0.0 <= args.anomaly_rate <= 0.5:
            raise FedadError(f"--anomaly-rate must be between 0 and 0.5, got {args.anomaly_rate}")
        feeds = [
            feed_from_synth(k, args.records, args.seed, out / f"node_{k:02d}.csv", args.anomaly_rate)
            for k in range(1, args.nodes + 1)
        ]
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise FedadError(f"cannot write to {out}: {exc.strerror or exc}") from None
    emitter = Emitter(feeds, args.rate, sent_column=args.sent_column)
    stopped = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stopped.set())
    print(f"emit: {len(feeds)} node stream(s) in {out}, {args.rate:g} records/s each", file=sys.stderr, flush=True)
    try:
        n = emitter.run(args.seconds, stop=stopped.is_set)
    except KeyboardInterrupt:
        n = feeds[0].written
    print(f"emit: {n} records per node written", file=sys.stderr, flush=True)
    return 0

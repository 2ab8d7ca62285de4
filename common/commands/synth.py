"""Write a synthetic 12-sensor plant: one data file per node plus manifest.json.

Each node is one motor-driven pump with its own machine, climate, grid, operating regime and calibration
(non-IID), sampled every 10 s. About --anomaly-rate of the records are labelled anomalies (label=1) in
contiguous episodes: spikes, drifts, stuck sensors, correlated faults and regime violations. The records
are split evenly over the nodes: node_01.csv / node_01.parquet, ... Same seed, same data.

example: fedad data synth --nodes 10 --records 1000000 --out data/plant
"""

from __future__ import annotations

import argparse
import sys
import time

from fedad.common import arg_types
from fedad.common.errors import FedadError
from fedad.common.synth import FORMATS, write_plant


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--nodes", type=arg_types.count, default=10, help="number of nodes (one file per node and format)"
    )
    parser.add_argument(
        "--records", type=arg_types.count, default=1_000_000, help="records in all, split evenly over the nodes"
    )
    parser.add_argument(
        "--out",
        default="data/plant",
        metavar="DIR",
        help="output directory (created; node files and manifest.json in it are replaced)",
    )
    parser.add_argument(
        "--seed", type=arg_types.seed, default=0, help="random seed; the same seed gives the same plant"
    )
    parser.add_argument(
        "--anomaly-rate", type=float, default=0.05, help="share of records in anomaly episodes (0 to 0.5)"
    )
    parser.add_argument(
        "--format",
        default=",".join(FORMATS),
        metavar="LIST",
        help=f"comma-separated output formats ({', '.join(FORMATS)})",
    )


def _formats(text: str) -> tuple[str, ...]:
    formats = tuple(f.strip().lower() for f in str(text).split(",") if f.strip())
    unknown = [f for f in formats if f not in FORMATS]
    if not formats or unknown:
        raise FedadError(
            f"--format: unknown format(s) {', '.join(unknown) or repr(text)}; choose from {', '.join(FORMATS)}"
        )
    return formats


def run(args: argparse.Namespace) -> int:
    if args.nodes < 1:
        raise FedadError(f"--nodes must be at least 1, got {args.nodes}")
    if args.records < args.nodes:
        raise FedadError(f"--records ({args.records}) must be at least --nodes ({args.nodes})")
    if not 0.0 <= args.anomaly_rate <= 0.5:
        raise FedadError(f"--anomaly-rate must be between 0 and 0.5, got {args.anomaly_rate}")
    formats = _formats(args.format)
    began = time.perf_counter()
    print(
        f"synth: {args.records} records over {args.nodes} nodes, seed {args.seed} -> {args.out}",
        file=sys.stderr,
        flush=True,
    )
    manifest = write_plant(
        args.out,
        args.nodes,
        args.records,
        args.seed,
        formats=formats,
        anomaly_rate=args.anomaly_rate,
        progress=lambda line: print(f"synth: {line}", file=sys.stderr, flush=True),
    )
    anomalous = sum(node["anomalous_rows"] for node in manifest["node_files"].values())
    print(
        f"synth: done in {time.perf_counter() - began:.1f} s, {anomalous} anomalous records",
        file=sys.stderr,
        flush=True,
    )
    print(args.out)
    return 0

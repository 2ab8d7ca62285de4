"""Run a whole federation on this machine: a synthetic plant, fedad-server and N fedad-client processes.

Generates the plant (one shard per node), starts the server and every client as separate OS processes on
127.0.0.1 over gRPC, shows progress per round, then prints the federated model's results beside a
centralized model (all shards pooled) and local-only models (each node alone) on the same shards
(--no-baselines skips them; they are kept in DIR/baselines.json and reused for the same plant, seed and
settings). Writes DIR/report.json (metrics, baselines, rounds), rounds.jsonl, plots, logs/, and every
node's model in DIR/models/NAME (its global weights, threshold and own scaler: try
`fedad score --model DIR/models/node_01 --data DIR/data/node_01.parquet --out scores.csv`); under
--scaling global also the server's model in DIR/model.
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
from pathlib import Path

from fedad.common import arg_types
from fedad.common.errors import FedadError
from fedad.common.operating_range import describe_outside
from fedad.server.convergence import DEFAULT_MAX_ROUNDS
from fedad.server.main import MODELS, add_detection_arguments, check_detection_args, parse_rounds


def add_arguments(parser) -> None:
    parser.add_argument("--clients", type=int, default=10, help="edge nodes (client processes)")
    parser.add_argument(
        "--rounds",
        type=parse_rounds,
        default="auto",
        help="federated training rounds, or 'auto': until the federated validation loss stops "
        "improving (fedad-server --rounds auto: --patience, --min-delta, --max-rounds)",
    )
    parser.add_argument("--max-rounds", type=int, default=DEFAULT_MAX_ROUNDS, help="--rounds auto: the cap on rounds")
    parser.add_argument("--records", type=arg_types.count, default=200_000, help="records in the whole plant")
    parser.add_argument("--local-epochs", type=int, default=2, help="local epochs per round")
    parser.add_argument("--model", default="dense", choices=MODELS, help="autoencoder")
    parser.add_argument(
        "--strategy",
        default="fedavg",
        choices=("fedavg", "paillier", "trust", "flag", "robust", "secure-robust"),
        help="aggregation strategy of fedad-server (paillier, secure-robust: a fresh key pair in "
        "DIR/keys; secure-robust also starts fedad-keyholder on 127.0.0.1, audit in DIR)",
    )
    parser.add_argument(
        "--scaling",
        default="site",
        choices=("site", "global"),
        help="feature scaling per node (site) or merged over all nodes (global); see fedad-server",
    )
    parser.add_argument(
        "--compress",
        default="none",
        help="plaintext strategies: compressed updates, q8 or q8+topk:F (fedad-server --compress)",
    )
    parser.add_argument("--seed", type=arg_types.seed, default=0, help="seed of the plant and the training")
    parser.add_argument("--port", type=int, default=0, help="server port on 127.0.0.1 (0: a free one)")
    parser.add_argument("--out", default="demo-results", help="output directory")
    parser.add_argument("--no-baselines", action="store_true", help="skip the centralized and local-only baselines")
    parser.add_argument("--timeout", type=float, default=900.0, help="give up after this many seconds")
    add_detection_arguments(parser)  # score and threshold options, passed to fedad-server and the baselines


def detection_args(args) -> list[str]:
    """The demo's score and threshold options as fedad-server arguments (the baselines get the same)."""
    out = ["--score", args.score, "--top-k", str(args.top_k), "--threshold-rule", args.threshold_rule]
    out += ["--threshold-scope", args.threshold_scope, "--alarm-rule", args.alarm_rule]
    if args.target_far is not None:
        out += ["--target-far", str(args.target_far)]
    return out


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _progress(out: Path, seen: int, rounds: str) -> int:
    path = out / "rounds.jsonl"
    if not path.exists():
        return seen
    lines = [line for line in path.read_text().splitlines() if line.strip()]
    for line in lines[seen:]:
        r = json.loads(line)
        print(
            f"  round {r['round']}/{rounds}: {len(r['clients'])} clients, val loss {r['loss']:.5f}, "
            f"{r['seconds']:.1f} s, {r['bytes_up'] / 1e3:.0f} kB up",
            file=sys.stderr,
            flush=True,
        )
    return len(lines)


def run(args) -> int:
    if args.clients < 1 or (args.rounds != "auto" and args.rounds < 1) or args.records < args.clients * 100:
        raise FedadError("need --clients >= 1, --rounds >= 1 or auto, and at least 100 --records per client")
    if args.max_rounds < 1:
        raise FedadError("--max-rounds must be at least 1")
    if args.local_epochs < 1:
        raise FedadError(f"--local-epochs must be at least 1 (got {args.local_epochs})")
    check_detection_args(args)
    from fedad.common.compression import parse_compression

    try:
        compressed = parse_compression(args.compress) is not None
    except ValueError as exc:
        raise FedadError(str(exc)) from None
    if compressed and args.strategy in ("paillier", "secure-robust"):
        raise FedadError(f"--compress is for the plaintext strategies; {args.strategy} packs its own ciphertexts")
    from fedad.common.synth import write_plant

    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    (out / "logs").mkdir(exist_ok=True)
    (out / "models").mkdir(exist_ok=True)
    t0 = time.perf_counter()
    print(
        f"[1/4] synthetic plant: {args.records} records over {args.clients} nodes -> {out / 'data'}",
        file=sys.stderr,
        flush=True,
    )
    write_plant(out / "data", args.clients, args.records, args.seed, formats=("parquet",))
    shards = sorted((out / "data").glob("node_*.parquet"))
    port = args.port or _free_port()
    address = f"127.0.0.1:{port}"
    env = dict(
        os.environ,
        FLWR_TELEMETRY_ENABLED="0",
        FLWR_DISABLE_UPDATE_CHECK="1",
        PYTHONUNBUFFERED="1",
        OMP_NUM_THREADS="1",
        MKL_NUM_THREADS="1",
    )
    server_cmd = [
        sys.executable,
        "-m",
        "fedad.server.main",
        "--address",
        address,
        "--rounds",
        str(args.rounds),
        "--max-rounds",
        str(args.max_rounds),
        "--min-clients",
        str(args.clients),
        "--out",
        str(out),
        "--model",
        args.model,
        "--strategy",
        args.strategy,
        "--scaling",
        args.scaling,
        "--local-epochs",
        str(args.local_epochs),
        "--seed",
        str(args.seed),
        "--wait-timeout",
        "300",
        "--compress",
        args.compress,
        *detection_args(args),
    ]
    client_extra, procs = [], []
    from fedad.common.threads import usable_cores

    client_threads = max(1, usable_cores() // len(shards))  # the clients share this host's cores
    if args.strategy in ("paillier", "secure-robust"):
        from fedad.common.crypto.keys import generate_keypair, save_keypair

        keys = out / "keys"
        save_keypair(keys, *generate_keypair(), force=True)
        server_cmd += ["--public-key", str(keys / "public.key")]
        client_extra = (
            ["--private-key", str(keys / "private.key")]
            if args.strategy == "paillier"
            else ["--public-key", str(keys / "public.key")]
        )
    if args.strategy == "secure-robust":  # the key holder: the only process given private.key
        kh_address = f"127.0.0.1:{_free_port()}"
        server_cmd += ["--keyholder", kh_address]
        (out / "keyholder-audit.jsonl").unlink(missing_ok=True)
        procs.append(
            subprocess.Popen(
                [
                    sys.executable,
                    "-m",
                    "fedad.server.keyholder",
                    "--listen",
                    kh_address,
                    "--private-key",
                    str(out / "keys" / "private.key"),
                    "--insecure",
                    "--max-clients",
                    str(args.clients),
                    "--audit",
                    str(out / "keyholder-audit.jsonl"),
                ],
                stdout=open(out / "logs" / "keyholder.log", "w"),
                stderr=subprocess.STDOUT,
                env=env,
            )
        )
    print(
        f"[2/4] fedad-server on {address} and {len(shards)} fedad-client processes, {client_threads} torch "
        f"thread(s) each (logs in {out / 'logs'})",
        file=sys.stderr,
        flush=True,
    )
    with open(out / "logs" / "server.log", "w") as slog:
        server = subprocess.Popen(server_cmd, stdout=slog, stderr=subprocess.STDOUT, env=env)
        for shard in shards:
            log = open(out / "logs" / f"{shard.stem}.log", "w")
            procs.append(
                subprocess.Popen(
                    [
                        sys.executable,
                        "-m",
                        "fedad.client.main",
                        "--server",
                        address,
                        "--data",
                        str(shard),
                        "--name",
                        shard.stem,
                        "--device",
                        "cpu",
                        "--connect-timeout",
                        "120",
                        "--model-out",
                        str(out / "models" / shard.stem),
                        "--threads",
                        str(client_threads),
                        *client_extra,
                    ],
                    stdout=log,
                    stderr=subprocess.STDOUT,
                    env=env,
                )
            )
        seen, deadline = 0, time.monotonic() + args.timeout
        try:
            total = f"<={args.max_rounds}" if args.rounds == "auto" else str(args.rounds)
            while server.poll() is None:
                seen = _progress(out, seen, total)
                if time.monotonic() > deadline:
                    raise FedadError(
                        f"the federation did not finish within --timeout {args.timeout:.0f} s (see {out / 'logs'})"
                    )
                time.sleep(0.5)
            _progress(out, seen, total)
        finally:
            for p in [server, *procs]:
                if p.poll() is None:
                    p.terminate()
            for p in procs:
                try:
                    p.wait(timeout=30)
                except subprocess.TimeoutExpired:
                    p.kill()
    if server.returncode != 0:
        tail = (out / "logs" / "server.log").read_text().strip().splitlines()[-3:]
        raise FedadError(f"fedad-server failed (exit {server.returncode}): {' | '.join(tail)}")
    report = json.loads((out / "report.json").read_text())
    fed_seconds = time.perf_counter() - t0
    conv = report.get("convergence") or {}
    rounds_run = int(conv.get("rounds_run") or len(report["rounds"]))
    print(
        f"  stopped after {rounds_run} rounds: {conv.get('stop_reason', 'n/a')}; kept the model of round "
        f"{conv.get('model_round', rounds_run)} (the lowest validation loss)",
        file=sys.stderr,
        flush=True,
    )
    if not args.no_baselines:
        # the baselines see every row as often as the federation did
        report["baselines"] = _baselines(args, out, shards, rounds_run * args.local_epochs)
        from fedad.server.report import plot_report_roc, write_report

        write_report(out, report)
        plot_report_roc(out, report)  # the baselines' operating points beside the federated curve
    print("[4/4] results (test part of every shard)", file=sys.stderr, flush=True)
    rows = [("federated", report["metrics"])] + [(k, v) for k, v in (report.get("baselines") or {}).items() if v]
    print(f"{'model':<12} {'precision':>9} {'recall':>7} {'f1':>6} {'roc_auc':>7} {'far':>6} {'mar':>6}")
    for name, m in rows:
        print(
            f"{name:<12} "
            + " ".join(
                f"{_f(m.get(k)):>{w}}"
                for k, w in (("precision", 9), ("recall", 7), ("f1", 6), ("roc_auc", 7), ("far", 6), ("mar", 6))
            )
        )
    outside = describe_outside(report.get("per_client_test") or {})
    if outside:
        print(outside)
    print(
        f"federation: {len(report['rounds'])} rounds in {fed_seconds:.1f} s wall ({conv.get('stop_reason', '')}); "
        f"report {out / 'report.json'}"
    )
    models = sorted(p.name for p in (out / "models").iterdir() if (p / "detector.json").is_file())
    if models:
        print(
            f"models: {len(models)} in {out / 'models'} (one per node: global weights, threshold, its own "
            f"scaler); e.g. fedad score --model {out / 'models' / models[0]} --data {shards[0]} --out scores.csv"
        )
    return 0


def _baselines(args, out: Path, shards: list[Path], epochs: int) -> dict:
    """Centralized and local-only baselines on the same shards, with progress; reused when cached."""
    from fedad.common.data import load_dataset
    from fedad.server.baseline_cache import baseline_key, load_baselines, save_baselines
    from fedad.server.comparison import centralized, local_only
    from fedad.server.main import build_parser, build_spec

    spec = build_spec(
        build_parser().parse_args(
            [
                "--model",
                args.model,
                "--local-epochs",
                str(args.local_epochs),
                "--seed",
                str(args.seed),
                "--scaling",
                args.scaling,
                *detection_args(args),
            ]
        )
    )
    datasets = [load_dataset(s) for s in shards]
    key = baseline_key(datasets, spec, epochs)
    cached = load_baselines(out, key)
    if cached is not None:
        print(
            f"[3/4] baselines: reusing {out / 'baselines.json'} (same plant, seed and settings)",
            file=sys.stderr,
            flush=True,
        )
        return cached
    print(
        f"[3/4] baselines on the same shards: 1 centralized and {len(datasets)} local-only models, {epochs} "
        "epochs each (the longest step on a busy machine; --no-baselines skips it)",
        file=sys.stderr,
        flush=True,
    )
    last = [0.0]

    def say(text: str) -> None:  # at most one line every 5 s, so a slow machine still shows it is working
        now = time.monotonic()
        if now - last[0] >= 5.0:
            last[0] = now
            print(f"  {text}", file=sys.stderr, flush=True)

    t0 = time.perf_counter()
    result = {
        "centralized": centralized(datasets, spec, epochs, say),
        "local_only": local_only(datasets, spec, epochs, say),
    }
    print(
        f"  baselines done in {time.perf_counter() - t0:.0f} s (kept in {out / 'baselines.json'})",
        file=sys.stderr,
        flush=True,
    )
    save_baselines(out, key, result)
    return result


def _f(v) -> str:
    return "-" if v is None else f"{v:.3f}"

"""fedad-server: the aggregator. Coordinates rounds over gRPC and never sees a raw record.

Per run: federated scaler statistics, R training rounds (each checkpointed, one JSONL line per round),
a global threshold from summed score histograms, federated evaluation from summed confusion counts,
then report.json, PNG plots and the global weights (OUT/global_weights.npz) in --out.
The model to score with: under the default --scaling site every node scales with its own statistics, so
each node saves its model (`fedad-client --model-out DIR`, then `fedad score --model DIR`); under
--scaling global the server also writes OUT/model (`fedad score --model OUT/model`).

examples:
  fedad-server --rounds 10 --min-clients 10 --out results/
  fedad-server --certificates ca.pem server.pem server.key --out results/      # mutual TLS: nodes need certificates
  fedad-server --certificates ca.pem server.pem server.key --revoked revoked.txt --features features.txt
  fedad-server --resume --out results/          # continue after a crash from the last checkpoint
  fedad-server --async-buffer 5 --rounds 40 --min-clients 10 --out results/   # no node waits for the slowest
"""

from __future__ import annotations

import os
import sys
import time
from argparse import ArgumentTypeError
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

from fedad.common import arg_types
from fedad.common.config import ArgumentParser, HelpFormatter, add_config_option, parse_args, run_cli
from fedad.common.contrastive_options import add_contrastive_options
from fedad.common.errors import FedadError
from fedad.common.models.names import MODEL_NAMES
from fedad.common.signals import Terminated
from fedad.server.convergence import DEFAULT_MAX_ROUNDS, DEFAULT_MIN_DELTA, DEFAULT_PATIENCE, StopRule
from fedad.server.quorum import DEFAULT_MIN_FIT_CLIENTS, parse_min_fit_clients

if TYPE_CHECKING:
    from fedad.server.strategies.base import ConfigFn

STRATEGIES = ("fedavg", "paillier", "trust", "flag", "robust", "secure-robust")
MODELS = MODEL_NAMES


def parse_rounds(text: str) -> int | str:
    """``--rounds``: a number of rounds (0: continuous) or 'auto'."""
    if str(text).strip().lower() == "auto":
        return "auto"
    try:
        return int(text)
    except ValueError:
        raise ArgumentTypeError(f"expected a number of rounds or 'auto', got {text!r}") from None


def stop_rule(args) -> StopRule | None:
    """The --rounds auto stopping rule, or None for a fixed number of rounds."""
    if args.rounds != "auto":
        return None
    return StopRule(patience=args.patience, min_delta=args.min_delta, max_rounds=args.max_rounds)


def build_parser() -> ArgumentParser:
    p = ArgumentParser(prog="fedad-server", description=__doc__, formatter_class=HelpFormatter)
    add_config_option(p)
    p.add_argument("--address", default="0.0.0.0:8080", help="host:port to listen on")
    p.add_argument(
        "--rounds",
        type=parse_rounds,
        default=10,
        help="training rounds, or 'auto': stop when the federated validation loss has not improved by "
        "--min-delta (relative) for --patience rounds, at most --max-rounds; the reason is logged and "
        "written to report.json; 0: continuous, a round every --round-interval until --stop-file appears",
    )
    p.add_argument(
        "--patience",
        type=int,
        default=DEFAULT_PATIENCE,
        help="--rounds auto: rounds without improvement before stopping (--async-buffer K: "
        "ceil(patience x nodes / K) versions, the answers of as many rounds)",
    )
    p.add_argument(
        "--min-delta",
        type=float,
        default=DEFAULT_MIN_DELTA,
        help="--rounds auto: relative drop of the validation loss that counts as an improvement",
    )
    p.add_argument("--max-rounds", type=int, default=DEFAULT_MAX_ROUNDS, help="--rounds auto: the cap on rounds")
    p.add_argument(
        "--min-clients",
        type=int,
        default=2,
        help="start quorum: admitted nodes the server waits for (up to --wait-timeout) before round 1",
    )
    p.add_argument(
        "--min-fit-clients",
        type=parse_min_fit_clients,
        default=DEFAULT_MIN_FIT_CLIENTS,
        metavar="N|FRACTION",
        help="continue quorum: usable updates a round needs to count, as a count (an integer >= 1) or a "
        "fraction in (0, 1] of the nodes that started round 1; a round with dropped nodes that keeps it "
        "goes on (who dropped is in rounds.jsonl and report.json), one below it stops the run (exit 1)",
    )
    p.add_argument(
        "--wait-timeout",
        type=float,
        default=300.0,
        help="seconds to wait for --min-clients before giving up (never waits forever)",
    )
    p.add_argument(
        "--rejoin-timeout",
        type=float,
        default=30.0,
        help="after round 1: seconds to wait for dropped nodes to come back when fewer than the continue "
        "quorum are connected before a round; then the run stops (partial report, exit 1)",
    )
    p.add_argument(
        "--round-timeout",
        type=float,
        default=600.0,
        help="seconds a client may take per round before it counts as failed",
    )
    p.add_argument(
        "--keepalive",
        type=float,
        default=10.0,
        help="gRPC keepalive: ping every node every this many seconds; a node silent for as long again is "
        "disconnected (named in the log and the next round) instead of holding a round until --round-timeout",
    )
    p.add_argument("--strategy", default="fedavg", choices=STRATEGIES, help="aggregation strategy")
    p.add_argument(
        "--async-buffer",
        type=int,
        default=0,
        metavar="K",
        help="asynchronous rounds (fedavg, flag, trust, robust): no node waits for another; each answer goes into "
        "a buffer and the node gets the newest global model at once; every K answers (one per node) make a new "
        "global version, FedBuff-weighted by staleness 1/sqrt(1+t) (flag/trust/robust score the K updates "
        "against each other, K >= 3); --rounds counts versions; 0: synchronous rounds. See docs/federation.md",
    )
    p.add_argument(
        "--max-staleness",
        type=int,
        default=10,
        help="--async-buffer: an answer trained from a global version more than this many versions old is dropped",
    )
    p.add_argument(
        "--server-lr",
        type=float,
        default=1.0,
        help="--async-buffer: server learning rate on the buffer's staleness-weighted mean delta",
    )
    p.add_argument(
        "--max-update-norm-ratio",
        type=float,
        default=10.0,
        help="fedavg: an update whose L2 norm is over this many times the median norm of the round's "
        "other updates is refused (or clipped, --update-norm-action); 0 turns the bound off",
    )
    p.add_argument(
        "--update-norm-action",
        default="refuse",
        choices=("refuse", "clip"),
        help="fedavg: what happens to an update over --max-update-norm-ratio",
    )
    p.add_argument(
        "--compress",
        default="none",
        help="plaintext strategies: clients send 8-bit quantised deltas (q8) against the round's global model, "
        "optionally only the top fraction F of coordinates (q8+topk:F, e.g. q8+topk:0.1), with error feedback "
        "on the client; the server decodes and checks them before aggregating. The global model goes down as "
        "q8 steps between versions every node holds (error feedback on the server; late or rejoining nodes get "
        "it in full)",
    )
    p.add_argument(
        "--admission-timeout",
        type=float,
        default=60.0,
        help="seconds a new connection has to answer the statistics phase; one that does not is "
        "dropped and never counts toward --min-clients",
    )
    p.add_argument(
        "--max-examples",
        type=int,
        default=100_000_000,
        help="plant-wide cap on the training rows one node may declare (its sample count in every "
        "round is also capped by what it declared)",
    )
    p.add_argument(
        "--malicious",
        nargs="*",
        default=[],
        metavar="NAME",
        help="security testing: names of the clients known to be poisoned; the flag report then "
        "adds flag precision and recall per round",
    )
    p.add_argument(
        "--quarantine-after",
        type=int,
        default=3,
        help="trust/flag/robust: a client flagged in this many rounds is quarantined",
    )
    p.add_argument(
        "--flag-z",
        type=float,
        default=3.5,
        help="flag/robust: robust z-score above which an update counts as deviating",
    )
    p.add_argument(
        "--public-key",
        default=None,
        metavar="FILE",
        help="Paillier public.key (fedad keygen) for --strategy paillier; a private key is refused",
    )
    p.add_argument("--paillier-bits", type=int, default=16, help="quantization bits per value under Paillier")
    p.add_argument(
        "--paillier-clip",
        type=float,
        default=4.0,
        help="Paillier: model weights are clipped to [-R, R] before quantization (error <= R/(2^bits-1))",
    )
    p.add_argument(
        "--keyholder",
        default=None,
        metavar="HOST:PORT",
        help="secure-robust: address of fedad-keyholder, the only holder of the private key",
    )
    p.add_argument(
        "--keyholder-certificates",
        nargs=3,
        metavar=("CA", "CERT", "KEY"),
        default=None,
        help="secure-robust: mutual TLS to the key holder: the CA that signed its certificate, and this "
        "aggregator's certificate and key (the one the key holder pins)",
    )
    p.add_argument(
        "--sketch-rows",
        type=int,
        default=16,
        help="secure-robust: sketch rows m decrypted per client per round (more rows: closer to the "
        "plaintext scores, more leakage: m x slots numbers per client)",
    )
    p.add_argument(
        "--update-clip",
        type=float,
        default=0.5,
        help="secure-robust: each update value is clipped to [-R, R] before quantization",
    )
    p.add_argument("--model", default="dense", choices=MODELS, help="autoencoder every client trains")
    p.add_argument(
        "--window", type=arg_types.count, default=None, help="window length for sequence models (model default)"
    )
    add_contrastive_options(p)
    p.add_argument("--local-epochs", type=int, default=2, help="local epochs per round on each client")
    p.add_argument("--batch-size", type=arg_types.count, default=256, help="local batch size")
    p.add_argument("--lr", type=float, default=1e-3, help="local Adam learning rate")
    p.add_argument("--weight-decay", type=arg_types.finite, default=1e-5, help="local L2 weight decay")
    p.add_argument("--scaler", default="standard", choices=("standard", "minmax"), help="feature scaler")
    p.add_argument(
        "--scaling",
        default="site",
        choices=("site", "global"),
        help="site: every node scales with its own statistics (its normal operating point; best on "
        "non-IID plants); global: every node uses the scaler merged from all nodes' count/sum/sum of "
        "squares",
    )
    p.add_argument(
        "--threshold-quantile",
        type=float,
        default=0.99,
        help="quantile rule: the threshold is this quantile of the clients' validation scores",
    )
    add_detection_arguments(p)
    p.add_argument("--seed", type=arg_types.seed, default=0, help="seed of the initial model and local training")
    p.add_argument("--out", default="results", help="directory for checkpoints, rounds.jsonl, report and model")
    p.add_argument("--resume", action="store_true", help="continue from the last checkpoint in --out")
    cont = p.add_argument_group("continuous federation (--rounds 0)")
    cont.add_argument(
        "--round-interval",
        default="0",
        metavar="DURATION",
        help="--rounds 0: start a round this long after the last one started (e.g. 30s, 5m, 1h; 0: back to back)",
    )
    cont.add_argument(
        "--stop-file",
        default=None,
        metavar="PATH",
        help="--rounds 0: when this file exists, no further round starts; the run sets its threshold, tests and "
        "reports as a finite run does",
    )
    cont.add_argument(
        "--keep-versions", type=int, default=100, help="--rounds 0: newest global models kept in OUT/versions/"
    )
    from fedad.common.telemetry import add_metrics_argument

    add_metrics_argument(p)
    p.add_argument(
        "--certificates",
        nargs=3,
        metavar=("CA", "CERT", "KEY"),
        default=None,
        help="enable TLS with these PEM files (fedad certs makes them); TLS is always mutual: every node "
        "must present a client certificate signed by the plant CA (--client-ca)",
    )
    p.add_argument(
        "--client-ca",
        default=None,
        metavar="CA_PEM",
        help="with --certificates: the CA whose client certificates are accepted (default: the CA of "
        "--certificates); a node's name is its certificate's subject",
    )
    p.add_argument(
        "--revoked",
        default=None,
        metavar="FILE",
        help="with --certificates: revoked node names or certificate serials (0x...), one per line; "
        "re-read every round, a revoked node is refused at its next message",
    )
    p.add_argument(
        "--features",
        default=None,
        metavar="FILE",
        help="the federation's feature columns, fixed by the operator: one name per line (or a CSV "
        "header line); nodes with other columns are refused",
    )
    p.add_argument(
        "--features-from",
        default=None,
        metavar="NODE",
        help="take the federation's feature columns from this node (by default every node must send "
        "the same columns; never a majority of whoever connects first)",
    )
    return p


def read_features(path: str) -> list[str]:
    """Feature names from a file: one per line, or comma-separated (a CSV header); ``#`` lines are comments."""
    if not Path(path).is_file():
        raise FedadError(f"--features file not found: {path}")
    names = [
        n.strip()
        for line in Path(path).read_text().splitlines()
        if not line.lstrip().startswith("#")
        for n in line.split(",")
        if n.strip()
    ]
    if not names or len(set(names)) != len(names):
        raise FedadError(f"--features {path}: needs at least one feature name and no repeats")
    return names


def add_detection_arguments(p) -> None:
    """Score and threshold options of a federation (shared with `fedad demo`)."""
    from fedad.common.scoring import DEFAULT_SCORE, DEFAULT_TOP_K, SCORES
    from fedad.common.threshold_rule import DEFAULT_RULE, THRESHOLD_RULES

    p.add_argument(
        "--score",
        default=DEFAULT_SCORE,
        choices=SCORES,
        help="record score: per-feature errors normalised by each node's training error scale, then "
        "max/mean/top-k over features (log scale); mse: the plain mean squared error",
    )
    p.add_argument("--top-k", type=int, default=DEFAULT_TOP_K, help="features averaged by --score topk")
    p.add_argument(
        "--threshold-rule",
        default=DEFAULT_RULE,
        choices=THRESHOLD_RULES,
        help="pot: generalised Pareto tail of the validation scores at risk --target-far; "
        "quantile: --threshold-quantile",
    )
    p.add_argument(
        "--target-far",
        type=float,
        default=None,
        help="false-alarm rate the threshold is set for (pot default 0.01; quantile: 1 - this)",
    )
    p.add_argument(
        "--threshold-scope",
        default="global",
        choices=("global", "site"),
        help="global: one threshold from the nodes' histograms (robust to one lying node); "
        "site: each node's own threshold from its own validation scores (non-IID plants)",
    )
    p.add_argument(
        "--alarm-rule",
        default="threshold",
        choices=("threshold", "adaptive"),
        help="how each node turns its test rows' scores into alarms: score > the threshold, or the adaptive "
        "streaming rule of `fedad score --rule adaptive` (re-baselines after abrupt changes; causal)",
    )


def check_detection_args(args) -> None:
    """Bad score or threshold options -> FedadError."""
    if args.top_k < 1:
        raise FedadError("--top-k must be at least 1")
    if args.target_far is not None and not 0 < args.target_far < 1:
        raise FedadError("--target-far must be between 0 and 1")


def build_spec(args):
    from fedad.common.contrastive_options import contrastive_sizes
    from fedad.common.federation_spec import FederationSpec
    from fedad.common.models.registry import default_window

    window = args.window or default_window(args.model)
    return FederationSpec(
        model=args.model,
        window=window,
        preprocessing={"scaler": args.scaler},
        scaling=args.scaling,
        local_epochs=args.local_epochs,
        batch_size=args.batch_size,
        lr=args.lr,
        weight_decay=args.weight_decay,
        seed=args.seed,
        threshold_quantile=args.threshold_quantile,
        feature_names=read_features(args.features) if args.features else None,
        score=args.score,
        top_k=args.top_k,
        threshold_rule=args.threshold_rule,
        target_far=args.target_far,
        threshold_scope=args.threshold_scope,
        alarm_rule=args.alarm_rule,
        sizes=contrastive_sizes(args),
    )


def build_strategy(args):
    noop: ConfigFn = lambda r: {}  # noqa: E731 - replaced by the server's configs
    if args.strategy == "paillier":
        from fedad.common.crypto.keys import load_public_key
        from fedad.server.strategies.paillier import PaillierFedAvg

        return PaillierFedAvg(
            public_key=load_public_key(args.public_key),
            bits=args.paillier_bits,
            clip=args.paillier_clip,
            fit_config=noop,
            evaluate_config=noop,
        )
    if args.strategy == "secure-robust":
        from fedad.common.crypto.keys import load_public_key
        from fedad.server.defence.config import FlagConfig
        from fedad.server.keyholder_client import BlindDecryptor, KeyHolderClient
        from fedad.server.strategies.secure_robust import SecureRobust
        from fedad.server.transport import read_certificates

        public_key = load_public_key(args.public_key)
        certs = read_certificates(*args.keyholder_certificates) if args.keyholder_certificates else None
        decryptor = BlindDecryptor(public_key, KeyHolderClient(args.keyholder, certs))
        decryptor.run_rounds = args.rounds  # the key holder opens no more than these (+1 final) for this run
        return SecureRobust(
            public_key=public_key,
            decryptor=decryptor,
            sketch_rows=args.sketch_rows,
            bits=args.paillier_bits,
            clip=args.update_clip,
            malicious=tuple(args.malicious),
            quarantine_after=args.quarantine_after,
            flag_config=FlagConfig(z_threshold=args.flag_z),
            fit_config=noop,
            evaluate_config=noop,
        )
    if args.strategy in ("trust", "flag", "robust"):
        from fedad.server.defence.config import FlagConfig
        from fedad.server.strategies.flag import Flag
        from fedad.server.strategies.robust import Robust
        from fedad.server.strategies.trust import Trust

        cls = {"trust": Trust, "flag": Flag, "robust": Robust}[args.strategy]
        return cls(
            malicious=tuple(args.malicious),
            quarantine_after=args.quarantine_after,
            flag_config=FlagConfig(z_threshold=args.flag_z),
            fit_config=noop,
            evaluate_config=noop,
        )
    from fedad.server.strategies.fedavg import FedAvg

    return FedAvg(
        max_update_norm_ratio=args.max_update_norm_ratio,
        norm_action=args.update_norm_action,
        fit_config=noop,
        evaluate_config=noop,
    )


def check_args(args) -> None:
    from fedad.common.address import check_can_listen, parse_host_port

    parse_host_port(args.address, "--address")
    if args.rounds != "auto" and args.rounds < 0:
        raise FedadError("--rounds must be at least 1, 0 (continuous) or 'auto'")
    from fedad.server.continuous import parse_duration

    args.round_interval_s = parse_duration(args.round_interval)
    if args.rounds != 0 and (args.stop_file or args.round_interval_s):
        raise FedadError("--round-interval and --stop-file work with --rounds 0 (continuous) only")
    if args.keep_versions < 1:
        raise FedadError("--keep-versions must be at least 1")
    if args.rounds == 0 and args.strategy == "secure-robust":
        raise FedadError(
            "--rounds 0 (continuous) does not work with --strategy secure-robust (the key holder's "
            "budget counts the run's rounds)"
        )
    if args.rounds == "auto" and (args.patience < 1 or args.max_rounds < 1 or not 0 <= args.min_delta < 1):
        raise FedadError("--rounds auto needs --patience >= 1, --max-rounds >= 1 and 0 <= --min-delta < 1")
    if args.local_epochs < 1:
        raise FedadError(f"--local-epochs must be at least 1 (got {args.local_epochs})")
    if args.batch_size < 1:
        raise FedadError(f"--batch-size must be at least 1 (got {args.batch_size})")
    if not args.lr > 0:
        raise FedadError(f"--lr must be positive (got {args.lr})")
    if args.min_clients < 1:
        raise FedadError("--min-clients must be at least 1")
    if not args.keepalive > 0 or args.rejoin_timeout < 0:
        raise FedadError("--keepalive must be positive and --rejoin-timeout >= 0")
    try:  # a --config file gives the value as YAML (an int or a float), not through argparse's type
        args.min_fit_clients = parse_min_fit_clients(args.min_fit_clients)
    except ArgumentTypeError as exc:
        raise FedadError(f"--min-fit-clients: {exc}") from None
    if isinstance(args.min_fit_clients, int) and args.min_fit_clients > args.min_clients:
        raise FedadError(
            f"--min-fit-clients {args.min_fit_clients} is more than --min-clients {args.min_clients}: a run "
            "that starts with only --min-clients nodes could never count a round"
        )
    if args.max_update_norm_ratio < 0 or not args.admission_timeout > 0 or args.max_examples < 1:
        raise FedadError("--max-update-norm-ratio must be >= 0, --admission-timeout > 0, --max-examples >= 1")
    if not 0 < args.threshold_quantile < 1:
        raise FedadError("--threshold-quantile must be between 0 and 1")
    check_detection_args(args)
    from fedad.common.compression import parse_compression

    try:
        compress = parse_compression(args.compress)
    except ValueError as exc:
        raise FedadError(str(exc)) from None
    if compress is not None and args.strategy in ("paillier", "secure-robust"):
        raise FedadError(f"--compress is for the plaintext strategies; {args.strategy} packs its own ciphertexts")
    if args.strategy in ("paillier", "secure-robust"):
        if not args.public_key:
            raise FedadError(f"--strategy {args.strategy} needs --public-key public.key (make one with fedad keygen)")
        if args.scaler != "standard":
            raise FedadError(f"--strategy {args.strategy} supports --scaler standard only (min/max are not additive)")
    elif args.public_key:
        raise FedadError("--public-key is only used with --strategy paillier or secure-robust")
    if args.strategy == "secure-robust":
        if not args.keyholder:
            raise FedadError("--strategy secure-robust needs --keyholder HOST:PORT (a running fedad-keyholder)")
        if args.scaling != "site":
            raise FedadError(
                "--strategy secure-robust supports --scaling site only (no node holds a private key "
                "to open merged statistics)"
            )
        if args.sketch_rows < 1:
            raise FedadError("--sketch-rows must be at least 1")
        if not args.update_clip > 0:
            raise FedadError("--update-clip must be positive")
    elif args.keyholder or args.keyholder_certificates:
        raise FedadError("--keyholder and --keyholder-certificates are only used with --strategy secure-robust")
    if (args.client_ca or args.revoked) and not args.certificates:
        raise FedadError("--client-ca and --revoked need TLS: give --certificates CA CERT KEY")
    check_async_args(args)
    if args.features and args.features_from:
        raise FedadError("give --features FILE or --features-from NODE, not both")
    if args.features_from:
        from fedad.common.node_names import check_node_name

        check_node_name(args.features_from, "--features-from")
    if args.resume and not (Path(args.out) / "checkpoint" / "state.json").is_file():
        raise FedadError(f"--resume: no checkpoint in {args.out}/checkpoint")
    check_can_listen(args.address, "--address")  # last: a port in use is said before anything starts


def check_async_args(args) -> None:
    """Bad --async-buffer combinations -> FedadError."""
    if args.async_buffer < 0:
        raise FedadError("--async-buffer must be >= 0 (0: synchronous rounds)")
    if not args.async_buffer:
        return
    if args.strategy in ("paillier", "secure-robust"):
        raise FedadError(
            f"--async-buffer does not work with --strategy {args.strategy} yet (how it would: docs/federation.md)"
        )
    if getattr(args, "compress", "none") not in (None, "none"):
        raise FedadError("--async-buffer does not work with --compress yet (compressed downloads are synchronous)")
    if args.rounds == 0:
        raise FedadError("--async-buffer does not work with --rounds 0 (continuous rounds are paced, not buffered)")
    if args.strategy in ("flag", "trust", "robust") and args.async_buffer < 3:
        raise FedadError(
            f"--strategy {args.strategy} scores the buffer's updates against each other: --async-buffer >= 3"
        )
    if args.async_buffer > args.min_clients:
        raise FedadError(
            f"--async-buffer {args.async_buffer} is more than --min-clients {args.min_clients}: a buffer holds one "
            "answer per node, so it could never fill"
        )
    if args.max_staleness < 0 or not args.server_lr > 0:
        raise FedadError("--max-staleness must be >= 0 and --server-lr positive")


def save_model(out: Path, spec, scaler, weights, threshold: float, scales=None) -> Path:
    """The global model as a fedad model directory (detector.json + model.pt)."""
    import torch

    from fedad.common.detector import AutoencoderDetector
    from fedad.common.models.registry import build_model
    from fedad.common.preprocessing import Preprocessor
    from fedad.common.training import set_weights

    det = AutoencoderDetector(
        model=spec.model,
        window=spec.window,
        threshold_quantile=spec.threshold_quantile,
        seed=spec.seed,
        preprocessing=spec.preprocessing,
        device="cpu",
        score=spec.score,
        top_k=spec.top_k,
        threshold_rule=spec.threshold_rule,
        target_far=spec.target_far,
    )
    model = build_model(spec.model, len(spec.feature_names), window=spec.window, **spec.sizes)
    set_weights(model, weights)
    pre = Preprocessor(**spec.preprocessing)
    pre.set_scaler_stats(scaler)
    if pre.impute == "knn":  # no client rows reach the server: missing values fall back to global means
        pre.impute_mean_, pre.impute_std_ = scaler.mean(), scaler.std()
    det.model_, det.preprocessor_, det.device_ = model.eval(), pre, torch.device("cpu")
    det.n_features_ = det.n_features_in_ = len(spec.feature_names)
    det.feature_names_, det.threshold_, det.history_ = list(spec.feature_names), float(threshold), {}
    det.feature_scales_ = scales  # the nodes' pooled training error scales (None: mse score)
    return det.save(out / "model")


def run(args) -> int:
    from fedad.common.logs import setup_logging

    # gRPC's own INFO lines (a failed TLS handshake per retrying client: WRONG_VERSION_NUMBER) are noise here;
    # the client names a TLS mismatch itself. GRPC_VERBOSITY=INFO brings them back.
    os.environ.setdefault("GRPC_VERBOSITY", "ERROR")

    check_args(args)
    log = setup_logging("server")
    strategy = build_strategy(args)  # loads and checks keys before anything listens
    from fedad.common.compression import parse_compression

    strategy.compress = parse_compression(args.compress)
    if args.strategy == "secure-robust":
        log.info("waiting for the key holder at %s", args.keyholder)
        strategy.decryptor.client.wait_ready(args.wait_timeout)
    import numpy as np
    from flwr.common import parameters_to_ndarrays

    from fedad.server import report as rep
    from fedad.server.federation import FedadServer, FederationFailed
    from fedad.server.transport import configure_flower_logging, max_message_bytes, read_certificates, serve

    configure_flower_logging("server")
    certs = read_certificates(*args.certificates) if args.certificates else None
    client_ca, gate = None, None
    if certs is not None:
        from fedad.server.node_gate import NodeGate, Revocations
        from fedad.server.transport import read_file

        client_ca = read_file(args.client_ca, "client CA certificate") if args.client_ca else certs[0]
        revocations = Revocations(args.revoked, log)
        revocations.reload()
        gate = NodeGate(revocations, log)
    spec = build_spec(args)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    server = FedadServer(
        strategy=strategy,
        spec=spec,
        out_dir=out,
        min_clients=args.min_clients,
        wait_timeout=args.wait_timeout,
        resume=args.resume,
        log=log,
        gate=gate,
        features_from=args.features_from,
        admission_timeout=args.admission_timeout,
        max_examples=args.max_examples,
        stop_rule=stop_rule(args),
        min_fit_clients=args.min_fit_clients,
        rejoin_timeout=args.rejoin_timeout,
        async_buffer=args.async_buffer,
        max_staleness=args.max_staleness,
        server_lr=args.server_lr,
    )
    from fedad.common.telemetry import from_args

    telemetry = from_args(args)  # --metrics-port: Prometheus /metrics
    if telemetry is not None:
        telemetry.watch_server(server)
    continuous = args.rounds == 0
    if continuous:  # a round every --round-interval until --stop-file appears
        from fedad.server.continuous import CONTINUOUS_ROUNDS, RoundPacer

        stop_file = Path(args.stop_file) if args.stop_file else None
        server.pace = RoundPacer(out, args.round_interval_s, stop_file, args.keep_versions, log)
        args.rounds = CONTINUOUS_ROUNDS
    rounds = args.max_rounds if args.rounds == "auto" else args.rounds
    if args.async_buffer:
        log.info("asynchronous: --rounds counts global versions, one every %d answers", args.async_buffer)
    t0 = time.perf_counter()
    limit = max_message_bytes(args.model, server.spec.window, server.spec.sizes)
    try:
        log.info(
            "listening on %s (TLS %s), strategy %s, model %s, %s rounds, waiting for %d clients (continue quorum "
            "--min-fit-clients %s)",
            args.address,
            "on, client certificates required" if certs else "off",
            args.strategy,
            args.model,
            f"auto (at most {rounds})" if args.rounds == "auto" else "continuous" if continuous else rounds,
            args.min_clients,
            args.min_fit_clients,
        )
        serve(
            args.address,
            server,
            rounds,
            args.round_timeout,
            certs,
            client_ca=client_ca,
            gate=gate,
            max_message_length=limit,
            keepalive_s=args.keepalive,
        )
    except FederationFailed as exc:
        server.error = str(exc)
    except (SystemExit, Terminated):  # SIGTERM/SIGINT (docker stop, Ctrl-C): Flower's handler raises SystemExit;
        # before serve registers it (the server is already listening), run_cli's raises Terminated
        if server.result and not server.error:
            raise
        server.error = f"terminated by a signal during round {server.current_round} (resume with --resume)"
    res = server.result
    participation = {
        **server.participation.to_dict(),
        "dropped": server.participation.dropped_in(),
        "min_clients": args.min_clients,
        "min_fit_clients": args.min_fit_clients,
    }
    if server.error or not res:
        error = server.error or "the run ended before its last round"
        log.error("run failed: %s", error)
        print(f"fedad-server: error: {error}", file=sys.stderr)
        rep.write_report(
            out,
            {
                "strategy": args.strategy,
                "model": args.model,
                "status": "failed",
                "error": error,
                "stopped": server.stopped or server.stop_record(error),
                "participation": participation,
                "rounds": [rep.round_summary(r) for r in server.rounds],
                "refused": server.refused,
                "refused_connections": gate.refusals if gate is not None else [],
                "failures": server.failures,
                "rejected_results": server.result_rejections,
                "resumed": server.resumed,
                "seconds": time.perf_counter() - t0,
            },
        )
        return 1
    model_dir = None
    if not server.encrypted or server.blind:  # under paillier the plaintext model exists only on the clients
        weights = parameters_to_ndarrays(server.parameters)
        np.savez(out / "global_weights.npz", *weights)
        scales = server.feature_scales
        if server.spec.scaling == "global" and (server.spec.score == "mse" or scales is not None):
            model_dir = save_model(out, server.spec, server.scaler, weights, res["threshold"], scales)
        else:
            log.info(
                "site scaling: no server-side model (each node scales with its own statistics); nodes save "
                "theirs with fedad-client --model-out DIR; --scaling global also writes %s",
                out / "model",
            )
    metrics = {k: res["metrics"].get(k) for k in rep.METRIC_KEYS}
    report = {
        "strategy": args.strategy,
        "model": args.model,
        "threshold": res["threshold"],
        "metrics": metrics,
        "detection": res.get("detection"),
        "per_client_test": res["metrics"].get("per_client", {}),
        "baselines": {"centralized": None, "local_only": None},
        "rounds": [rep.round_summary(r) for r in server.rounds],
        "refused": server.refused,
        "refused_connections": gate.refusals if gate is not None else [],
        "failures": server.failures,
        "rejected_results": server.result_rejections,
        "resumed": server.resumed,
        "status": "ok",
        "participation": participation,
        "seconds": time.perf_counter() - t0,
        "model_dir": None if model_dir is None else str(model_dir),
        "convergence": res["convergence"],
    }
    flag_rows = rep.write_flag_report(out, server.rounds)
    if flag_rows:
        report["flags"] = {
            "summary": flag_rows,
            "unflagged_metrics": rep.unflagged_metrics(report["per_client_test"], flag_rows),
            "malicious": sorted(args.malicious),
            "per_round": [
                {k: r.get(k) for k in ("round", "flagged", "flag_precision", "flag_recall")} for r in server.rounds
            ],
        }
    report["roc"] = rep.roc_from_histograms(*server.score_histograms)
    rep.write_report(out, report)
    rep.plot_rounds(out, server.rounds)
    if flag_rows:
        rep.plot_trust(out, server.rounds)
        print(rep.format_flag_summary(flag_rows, server.rounds))
        unflagged = report["flags"]["unflagged_metrics"]
        if unflagged is not None:
            log.info(
                "the %d never-flagged node(s) (%s): F1 %s, precision %s, recall %s, false alarms %s",
                len(unflagged["clients"]),
                ", ".join(unflagged["clients"]),
                _fmt(unflagged["f1"]),
                _fmt(unflagged["precision"]),
                _fmt(unflagged["recall"]),
                _fmt(unflagged["far"]),
            )
    rep.plot_report_roc(out, report)
    log.info(
        "done in %.1f s: F1 %s, precision %s, recall %s, ROC-AUC %s; report %s",
        report["seconds"],
        _fmt(metrics.get("f1")),
        _fmt(metrics.get("precision")),
        _fmt(metrics.get("recall")),
        _fmt(metrics.get("roc_auc")),
        out / "report.json",
    )
    return 0


def _fmt(v) -> str:
    return "n/a" if v is None else f"{v:.3f}"


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    return run_cli(lambda: run(parse_args(parser, argv)), parser.prog)


if __name__ == "__main__":
    sys.exit(main())

"""fedad-server: the aggregator. Coordinates rounds over gRPC and never sees a raw record.

Per run: federated scaler statistics, R training rounds (each checkpointed, one JSONL line per round),
a global threshold from summed score histograms, federated evaluation from summed confusion counts,
then report.json, PNG plots and the final model in --out (usable with `fedad score --model OUT/model`).

examples:
  fedad-server --rounds 10 --min-clients 10 --out results/
  fedad-server --certificates ca.pem server.pem server.key --out results/
  fedad-server --resume --out results/          # continue after a crash from the last checkpoint
"""
from __future__ import annotations

import sys
import time
from collections.abc import Sequence
from pathlib import Path

from fedad.common.config import ArgumentParser, HelpFormatter, add_config_option, parse_args, run_cli
from fedad.common.contrastive_options import add_contrastive_options
from fedad.common.errors import FedadError

STRATEGIES = ("fedavg", "paillier", "trust", "flag", "robust", "secure-robust")
MODELS = ("dense", "lstm", "gru", "cnn", "vae", "contrastive")


def build_parser() -> ArgumentParser:
    p = ArgumentParser(prog="fedad-server", description=__doc__, formatter_class=HelpFormatter)
    add_config_option(p)
    p.add_argument("--address", default="0.0.0.0:8080", help="host:port to listen on")
    p.add_argument("--rounds", type=int, default=10, help="training rounds")
    p.add_argument("--min-clients", type=int, default=2, help="clients needed to start and to continue each round")
    p.add_argument("--wait-timeout", type=float, default=300.0,
                   help="seconds to wait for --min-clients before giving up (never waits forever)")
    p.add_argument("--round-timeout", type=float, default=600.0,
                   help="seconds a client may take per round before it counts as failed")
    p.add_argument("--strategy", default="fedavg", choices=STRATEGIES, help="aggregation strategy")
    p.add_argument("--malicious", nargs="*", default=[], metavar="NAME",
                   help="security testing: names of the clients known to be poisoned; the flag report then "
                   "adds flag precision and recall per round")
    p.add_argument("--quarantine-after", type=int, default=3,
                   help="trust/flag/robust: a client flagged in this many rounds is quarantined")
    p.add_argument("--flag-z", type=float, default=3.5,
                   help="flag/robust: robust z-score above which an update counts as deviating")
    p.add_argument("--public-key", default=None, metavar="FILE",
                   help="Paillier public.key (fedad keygen) for --strategy paillier; a private key is refused")
    p.add_argument("--paillier-bits", type=int, default=16, help="quantization bits per value under Paillier")
    p.add_argument("--paillier-clip", type=float, default=4.0,
                   help="Paillier: model weights are clipped to [-R, R] before quantization (error <= R/(2^bits-1))")
    p.add_argument("--keyholder", default=None, metavar="HOST:PORT",
                   help="secure-robust: address of fedad-keyholder, the only holder of the private key")
    p.add_argument("--keyholder-certificates", nargs=3, metavar=("CA", "CERT", "KEY"), default=None,
                   help="secure-robust: mutual TLS to the key holder: the CA that signed its certificate, and this "
                   "aggregator's certificate and key (the one the key holder pins)")
    p.add_argument("--sketch-rows", type=int, default=16,
                   help="secure-robust: sketch rows m decrypted per client per round (more rows: closer to the "
                   "plaintext scores, more leakage: m x slots numbers per client)")
    p.add_argument("--update-clip", type=float, default=0.5,
                   help="secure-robust: each update value is clipped to [-R, R] before quantization")
    p.add_argument("--model", default="dense", choices=MODELS, help="autoencoder every client trains")
    p.add_argument("--window", type=int, default=None, help="window length for sequence models (model default)")
    add_contrastive_options(p)
    p.add_argument("--local-epochs", type=int, default=2, help="local epochs per round on each client")
    p.add_argument("--batch-size", type=int, default=256, help="local batch size")
    p.add_argument("--lr", type=float, default=1e-3, help="local Adam learning rate")
    p.add_argument("--weight-decay", type=float, default=1e-5, help="local L2 weight decay")
    p.add_argument("--scaler", default="standard", choices=("standard", "minmax"), help="feature scaler")
    p.add_argument("--scaling", default="site", choices=("site", "global"),
                   help="site: every node scales with its own statistics (its normal operating point; best on "
                   "non-IID plants); global: every node uses the scaler merged from all nodes' count/sum/sum of "
                   "squares")
    p.add_argument("--threshold-quantile", type=float, default=0.99,
                   help="global threshold: this quantile of the clients' validation scores")
    p.add_argument("--seed", type=int, default=0, help="seed of the initial model and local training")
    p.add_argument("--out", default="results", help="directory for checkpoints, rounds.jsonl, report and model")
    p.add_argument("--resume", action="store_true", help="continue from the last checkpoint in --out")
    p.add_argument("--certificates", nargs=3, metavar=("CA", "CERT", "KEY"), default=None,
                   help="enable TLS with these PEM files (fedad certs makes them)")
    return p


def build_spec(args):
    from fedad.common.federation_spec import FederationSpec
    from fedad.common.contrastive_options import contrastive_sizes
    from fedad.common.models.registry import default_window

    window = args.window or default_window(args.model)
    return FederationSpec(model=args.model, window=window, preprocessing={"scaler": args.scaler}, scaling=args.scaling,
                          local_epochs=args.local_epochs, batch_size=args.batch_size, lr=args.lr,
                          weight_decay=args.weight_decay, seed=args.seed, threshold_quantile=args.threshold_quantile,
                          sizes=contrastive_sizes(args))


def build_strategy(args):
    noop = lambda r: {}  # noqa: E731 - replaced by the server's configs
    if args.strategy == "paillier":
        from fedad.common.crypto.keys import load_public_key
        from fedad.server.strategies.paillier import PaillierFedAvg

        return PaillierFedAvg(public_key=load_public_key(args.public_key), bits=args.paillier_bits,
                              clip=args.paillier_clip, fit_config=noop, evaluate_config=noop)
    if args.strategy == "secure-robust":
        from fedad.common.crypto.keys import load_public_key
        from fedad.server.defence.config import FlagConfig
        from fedad.server.keyholder_client import BlindDecryptor, KeyHolderClient
        from fedad.server.strategies.secure_robust import SecureRobust
        from fedad.server.transport import read_certificates

        public_key = load_public_key(args.public_key)
        certs = read_certificates(*args.keyholder_certificates) if args.keyholder_certificates else None
        decryptor = BlindDecryptor(public_key, KeyHolderClient(args.keyholder, certs))
        return SecureRobust(public_key=public_key, decryptor=decryptor, sketch_rows=args.sketch_rows,
                            bits=args.paillier_bits, clip=args.update_clip, malicious=tuple(args.malicious),
                            quarantine_after=args.quarantine_after, flag_config=FlagConfig(z_threshold=args.flag_z),
                            fit_config=noop, evaluate_config=noop)
    if args.strategy in ("trust", "flag", "robust"):
        from fedad.server.defence.config import FlagConfig
        from fedad.server.strategies.flag import Flag
        from fedad.server.strategies.robust import Robust
        from fedad.server.strategies.trust import Trust

        cls = {"trust": Trust, "flag": Flag, "robust": Robust}[args.strategy]
        return cls(malicious=tuple(args.malicious), quarantine_after=args.quarantine_after,
                   flag_config=FlagConfig(z_threshold=args.flag_z), fit_config=noop, evaluate_config=noop)
    from fedad.server.strategies.fedavg import FedAvg

    return FedAvg(fit_config=noop, evaluate_config=noop)


def check_args(args) -> None:
    if args.rounds < 1:
        raise FedadError("--rounds must be at least 1")
    if args.min_clients < 1:
        raise FedadError("--min-clients must be at least 1")
    if not 0 < args.threshold_quantile < 1:
        raise FedadError("--threshold-quantile must be between 0 and 1")
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
            raise FedadError("--strategy secure-robust supports --scaling site only (no node holds a private key "
                             "to open merged statistics)")
        if args.sketch_rows < 1:
            raise FedadError("--sketch-rows must be at least 1")
        if not args.update_clip > 0:
            raise FedadError("--update-clip must be positive")
    elif args.keyholder or args.keyholder_certificates:
        raise FedadError("--keyholder and --keyholder-certificates are only used with --strategy secure-robust")
    if args.resume and not (Path(args.out) / "checkpoint" / "state.json").is_file():
        raise FedadError(f"--resume: no checkpoint in {args.out}/checkpoint")


def save_model(out: Path, spec, scaler, weights, threshold: float) -> Path:
    """The global model as a fedad model directory (detector.json + model.pt)."""
    import torch
    from fedad.common.detector import AutoencoderDetector
    from fedad.common.models.registry import build_model
    from fedad.common.preprocessing import Preprocessor
    from fedad.common.training import set_weights

    det = AutoencoderDetector(model=spec.model, window=spec.window, threshold_quantile=spec.threshold_quantile,
                              seed=spec.seed, preprocessing=spec.preprocessing, device="cpu")
    model = build_model(spec.model, len(spec.feature_names), window=spec.window, **spec.sizes)
    set_weights(model, weights)
    pre = Preprocessor(**spec.preprocessing)
    pre.set_scaler_stats(scaler)
    if pre.impute == "knn":  # no client rows reach the server: missing values fall back to global means
        pre.impute_mean_, pre.impute_std_ = scaler.mean(), scaler.std()
    det.model_, det.preprocessor_, det.device_ = model.eval(), pre, torch.device("cpu")
    det.n_features_ = det.n_features_in_ = len(spec.feature_names)
    det.feature_names_, det.threshold_, det.history_ = list(spec.feature_names), float(threshold), {}
    return det.save(out / "model")


def run(args) -> int:
    from fedad.common.logs import setup_logging

    check_args(args)
    log = setup_logging("server")
    strategy = build_strategy(args)  # loads and checks keys before anything listens
    if args.strategy == "secure-robust":
        log.info("waiting for the key holder at %s", args.keyholder)
        strategy.decryptor.client.wait_ready(args.wait_timeout)
    import numpy as np
    from fedad.server import report as rep
    from fedad.server.federation import FedadServer, FederationFailed
    from fedad.server.transport import configure_flower_logging, read_certificates, serve
    from flwr.common import parameters_to_ndarrays

    configure_flower_logging("server")
    certs = read_certificates(*args.certificates) if args.certificates else None
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    server = FedadServer(strategy=strategy, spec=build_spec(args), out_dir=out,
                         min_clients=args.min_clients, wait_timeout=args.wait_timeout, resume=args.resume, log=log)
    log.info("listening on %s (TLS %s), strategy %s, model %s, %d rounds, waiting for %d clients", args.address,
             "on" if certs else "off", args.strategy, args.model, args.rounds, args.min_clients)
    t0 = time.perf_counter()
    try:
        serve(args.address, server, args.rounds, args.round_timeout, certs)
    except FederationFailed as exc:
        log.error("run failed: %s", exc)
        print(f"fedad-server: error: {exc}", file=sys.stderr)
        return 1
    res = server.result
    if not res:
        print("fedad-server: error: the run ended before its last round", file=sys.stderr)
        return 1
    model_dir = None
    if not server.encrypted or server.blind:  # under paillier the plaintext model exists only on the clients
        weights = parameters_to_ndarrays(server.parameters)
        np.savez(out / "global_weights.npz", *weights)
        if server.spec.scaling == "global":  # with site scaling each node pairs the weights with its own scaler
            model_dir = save_model(out, server.spec, server.scaler, weights, res["threshold"])
    metrics = {k: res["metrics"].get(k) for k in rep.METRIC_KEYS}
    report = {
        "strategy": args.strategy, "model": args.model, "threshold": res["threshold"], "metrics": metrics,
        "per_client_test": res["metrics"].get("per_client", {}),
        "baselines": {"centralized": None, "local_only": None},
        "rounds": [rep.round_summary(r) for r in server.rounds], "refused": server.refused,
        "failures": server.failures, "seconds": time.perf_counter() - t0, "model_dir": None if model_dir is None else str(model_dir),
    }
    flag_rows = rep.write_flag_report(out, server.rounds)
    if flag_rows:
        report["flags"] = {"summary": flag_rows, "malicious": sorted(args.malicious),
                           "per_round": [{k: r.get(k) for k in ("round", "flagged", "flag_precision", "flag_recall")}
                                         for r in server.rounds]}
    rep.write_report(out, report)
    rep.plot_rounds(out, server.rounds)
    if flag_rows:
        rep.plot_trust(out, server.rounds)
        print(rep.format_flag_summary(flag_rows, server.rounds))
    rep.plot_roc_from_histograms(out, *server.score_histograms)
    log.info("done in %.1f s: F1 %s, precision %s, recall %s, ROC-AUC %s; report %s", report["seconds"],
             _fmt(metrics.get("f1")), _fmt(metrics.get("precision")), _fmt(metrics.get("recall")),
             _fmt(metrics.get("roc_auc")), out / "report.json")
    return 0


def _fmt(v) -> str:
    return "n/a" if v is None else f"{v:.3f}"


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    return run_cli(lambda: run(parse_args(parser, argv)))


if __name__ == "__main__":
    sys.exit(main())

"""fedad-client: an edge node. Trains the federation's autoencoder on its own shard and sends only updates.

Raw records never leave this process: it sends model weights, counts, scaler sums and score histograms.
Start order does not matter: the client retries until the server is up (bounded by --connect-timeout),
reconnects after a dropped connection, and exits 0 when the server ends the run. A node that the server's
robust strategy quarantined logs "quarantined by the server in round N", still writes --model-out (the final
global model and threshold) and also exits 0: the run completed, only its updates were left out. Exit 1: the
server could not be reached; 2: bad input or refused by the server.

examples:
  fedad-client --server plant-host:8080 --data shard.csv
  fedad-client --server plant-host:8080 --data shard.csv --root-certificates ca.pem --name press-7
"""
from __future__ import annotations

import os
import socket
import sys
from collections.abc import Sequence
from pathlib import Path

from fedad.common.config import ArgumentParser, HelpFormatter, add_config_option, parse_args, run_cli
from fedad.common.errors import FedadError

FORMATS = ("auto", "csv", "parquet", "skab", "kdd", "ton_iot")


def build_parser() -> ArgumentParser:
    p = ArgumentParser(prog="fedad-client", description=__doc__, formatter_class=HelpFormatter)
    add_config_option(p)
    p.add_argument("--server", default="127.0.0.1:8080", help="address of fedad-server, host:port")
    p.add_argument("--data", required=False, help="this node's data file (CSV or Parquet; required)")
    p.add_argument("--test-data", default=None, metavar="PATH",
                   help="a separate evaluation file with the same columns (labelled: precision, recall, F1 in the "
                   "server's report; unlabelled: alarms only, metrics null); all of --data then fits the model")
    p.add_argument("--val-fraction", type=float, default=0.2,
                   help="share of the normal fitting rows (the last ones, in time order) kept for the validation "
                   "loss and the threshold")
    p.add_argument("--test-fraction", type=float, default=None,
                   help="share of --data (its last rows) held out as the test set when there is no --test-data "
                   "(default 0.2; 0: all rows fit the model and nothing is evaluated)")
    p.add_argument("--format", default="auto", choices=FORMATS, help="data format (of --data and --test-data)")
    p.add_argument("--label-column", default=None,
                   help="0/1 label column (default: a column named 'label' if present); labelled anomalies "
                   "are left out of training and used for the federated evaluation")
    p.add_argument("--time-column", default=None, help="time column to exclude from the features")
    p.add_argument("--name", default=None, help="stable node name reported with every result "
                   "(default: the data file's name without extension)")
    p.add_argument("--model-out", default=None, metavar="DIR",
                   help="save this node's final model here (global weights and threshold with this node's "
                   "preprocessing), ready for fedad score")
    p.add_argument("--device", default="auto", help="torch device: auto (CUDA when present), cpu or cuda")
    p.add_argument("--connect-timeout", type=float, default=120.0,
                   help="seconds to keep retrying an unreachable server before giving up")
    p.add_argument("--root-certificates", default=None, metavar="CA_PEM",
                   help="CA certificate of a TLS server (fedad certs makes one)")
    p.add_argument("--private-key", default=None, metavar="FILE",
                   help="Paillier private.key (fedad keygen) for a server running --strategy paillier; "
                   "only clients ever hold it")
    p.add_argument("--public-key", default=None, metavar="FILE",
                   help="Paillier public.key for a server running --strategy secure-robust: this node encrypts "
                   "its update, embedding and histogram and can decrypt nothing")
    p.add_argument("--obfuscation", default="djn", choices=("djn", "full"),
                   help="secure-robust: encryption randomness: djn (short-exponent h^a, ~4x faster, DJN assumption) "
                   "or full (r^n, semantic security under DCR alone); see docs/secure-robust.md")
    from fedad.client.attacks.registry import ATTACK_NAMES

    p.add_argument("--attack", default=None, choices=ATTACK_NAMES, type=lambda s: s.replace("-", "_"),
                   help="security testing: poison this node's updates with the given attack")
    p.add_argument("--attack-scale", type=float, default=None, help="attack strength (attack-specific default)")
    p.add_argument("--attack-start-round", type=int, default=1, help="first round the attack is active")
    p.add_argument("--collusion-dir", default=None,
                   help="directory shared by colluding attackers only (alie, ipm, min-max)")
    p.add_argument("--colluders", type=int, default=None, help="number of colluding attackers")
    p.add_argument("--num-clients", type=int, default=None,
                   help="alie: the federation's size, which sets its z (attackers are assumed to know it)")
    return p


def run(args) -> int:
    from fedad.common.logs import setup_logging

    if not args.data:
        raise FedadError("--data is required: the path of this node's shard")
    if args.private_key and args.public_key:
        raise FedadError("give --private-key (strategy paillier) or --public-key (strategy secure-robust), not both")
    name = args.name or Path(args.data).stem
    log = setup_logging(f"client {name}")
    from fedad.server.transport import ServerUnreachable, configure_flower_logging, connect

    configure_flower_logging(f"client {name}")
    ca = None
    if args.root_certificates:
        if not os.path.isfile(args.root_certificates):
            raise FedadError(f"CA certificate not found: {args.root_certificates}")
        ca = Path(args.root_certificates).read_bytes()
    from fedad.client.flower_client import FedadClient
    from fedad.client.site import Site
    from fedad.common.data import load_dataset

    data = load_dataset(args.data, format=args.format, label_column=args.label_column, time_column=args.time_column)
    test_data = None
    if args.test_data:
        test_data = load_dataset(args.test_data, format=args.format, label_column=args.label_column,
                                 time_column=args.time_column)
    site = Site(data, device=args.device, val_fraction=args.val_fraction, test_fraction=args.test_fraction,
                test_data=test_data)
    attack = None
    if args.attack:
        from fedad.client.attack_runner import AttackRunner

        attack = AttackRunner(args.attack, args.attack_scale, args.attack_start_round, name,
                              args.collusion_dir, args.colluders, num_clients=args.num_clients)
        attack.prepare(site)
        log.warning("SECURITY TEST: this node runs attack '%s' from round %d", args.attack, args.attack_start_round)
    log.info("loaded %d rows x %d features from %s (device %s); connecting to %s", len(data.X), data.X.shape[1],
             args.data, site.device, args.server)
    log.info("%d training, %d validation and %d test rows (%s, %s)", len(site.split.train), len(site.split.val),
             len(site.split.test), f"test set {args.test_data}" if test_data is not None
             else "test set: tail of --data", "labelled" if site.split.test_labels is not None else "unlabelled")
    secure = None
    if args.public_key:
        from fedad.client.secure import PublicKeyClient

        secure = PublicKeyClient(args.public_key, args.obfuscation)
        log.info("secure-robust mode: updates, embeddings and histograms leave this node encrypted (key %s)",
                 secure.fingerprint)
    if args.private_key:
        from fedad.client.secure import SecureClient

        secure = SecureClient(args.private_key)
        log.info("Paillier mode: updates and statistics leave this node encrypted (key %s)", secure.fingerprint)
    client = FedadClient(site, name, log, attack, secure, args.model_out)
    try:
        connect(args.server, client.to_client(), ca, args.connect_timeout, client.contact, log)
    except ServerUnreachable as exc:
        print(f"fedad-client: error: {exc}", file=sys.stderr)
        return 1
    if client.quarantined is not None:
        log.warning("the server ended the run; this node was quarantined by the server in round %d (exit code 0: "
                    "the run completed, its updates were not used)", client.quarantined)
    else:
        log.info("the server ended the run; exiting")
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    return run_cli(lambda: run(parse_args(parser, argv)))


if __name__ == "__main__":
    sys.exit(main())

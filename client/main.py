"""fedad-client: an edge node. Trains the federation's autoencoder on its own shard and sends only updates.

Raw records never leave this process: it sends model weights, counts, scaler sums and score histograms.
Start order does not matter: the client retries until the server is up (bounded by --connect-timeout),
reconnects after a dropped connection, and exits 0 when the server ends the run. A node that the server's
robust strategy quarantined logs "quarantined by the server in round N", still writes --model-out (the final
global model and threshold) and also exits 0: the run completed, only its updates were left out. Exit 1: the
server could not be reached; 2: bad input or refused by the server; 143: stopped by SIGTERM (docker stop), after
removing its --health-file.

examples:
  fedad-client --server plant-host:8080 --data shard.csv
  fedad-client --server plant-host:8080 --data shard.csv --root-certificates ca.pem \
      --tls-certificate press-7.pem --tls-key press-7.key          # its name is the certificate's subject
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

from fedad.common.config import ArgumentParser, HelpFormatter, add_config_option, parse_args, run_cli
from fedad.common.errors import FedadError

if TYPE_CHECKING:
    from fedad.client.secure import PublicKeyClient, SecureClient

FORMATS = ("auto", "csv", "parquet", "skab", "kdd", "ton_iot")
KEEPALIVE_S = 10.0  # fedad.server.transport.KEEPALIVE_S (not imported here: --help stays fast)


def shown_attack_names() -> list[str]:
    """Attack names as the CLI shows them (dashes, like the other options)."""
    from fedad.client.attacks.registry import ATTACK_NAMES

    return [n.replace("_", "-") for n in ATTACK_NAMES]


def attack_name(value: str) -> str:
    """--attack: dashes or underscores; the registry's name (underscores)."""
    from fedad.client.attacks.registry import ATTACK_NAMES

    name = value.strip().replace("-", "_")
    if name not in ATTACK_NAMES:
        raise argparse.ArgumentTypeError(f"unknown attack '{value}' (choose from {', '.join(shown_attack_names())})")
    return name


def build_parser() -> ArgumentParser:
    p = ArgumentParser(prog="fedad-client", description=__doc__, formatter_class=HelpFormatter)
    add_config_option(p)
    p.add_argument("--server", default="127.0.0.1:8080", help="address of fedad-server, host:port")
    p.add_argument("--data", required=False, help="this node's data file (CSV or Parquet; required)")
    p.add_argument(
        "--test-data",
        default=None,
        metavar="PATH",
        help="a separate evaluation file with the same columns (labelled: precision, recall, F1 in the "
        "server's report; unlabelled: alarms only, metrics null); all of --data then fits the model",
    )
    p.add_argument(
        "--val-fraction",
        type=float,
        default=0.2,
        help="share of the normal fitting rows (the last ones, in time order) kept for the validation "
        "loss and the threshold",
    )
    p.add_argument(
        "--test-fraction",
        type=float,
        default=None,
        help="share of --data (its last rows) held out as the test set when there is no --test-data "
        "(default 0.2; 0: all rows fit the model and nothing is evaluated)",
    )
    p.add_argument("--format", default="auto", choices=FORMATS, help="data format (of --data and --test-data)")
    p.add_argument(
        "--label-column",
        default=None,
        help="0/1 label column (default: a column named 'label' if present); labelled anomalies "
        "are left out of training and used for the federated evaluation",
    )
    p.add_argument("--time-column", default=None, help="time column to exclude from the features")
    p.add_argument(
        "--max-rows",
        type=int,
        default=2_000_000,
        help="keep the most recent this many rows of a CSV, read in 16 MB blocks: the node's memory is "
        "bounded by it (about 2 x rows x features x 8 bytes), not by the file's size; 0: all rows",
    )
    p.add_argument(
        "--name",
        default=None,
        help="stable node name reported with every result: 1-64 letters, "
        "digits, _ . - (default: the subject of --tls-certificate, else the data file's name without "
        "extension); under TLS the server only accepts the certificate's subject",
    )
    p.add_argument(
        "--model-out",
        default=None,
        metavar="DIR",
        help="save this node's final model here (global weights and threshold with this node's "
        "preprocessing), ready for fedad score",
    )
    p.add_argument("--device", default="auto", help="torch device: auto (CUDA when present), cpu or cuda")
    from fedad.common.threads import add_threads_argument

    add_threads_argument(p)
    p.add_argument(
        "--connect-timeout",
        type=float,
        default=120.0,
        help="seconds to keep retrying an unreachable server before giving up; after a lost connection the "
        "node reconnects with backoff for as long again, then exits 1 saying so",
    )
    p.add_argument(
        "--keepalive",
        type=float,
        default=KEEPALIVE_S,
        help="gRPC keepalive: ping the server every this many seconds; a server silent for as long again "
        "counts as gone (the node reconnects)",
    )
    p.add_argument(
        "--health-file",
        default=None,
        metavar="PATH",
        help="liveness for container healthchecks: refreshed every 5 s while the stream to the server is up, "
        "removed when it is lost and at exit; `python -m fedad.client.health PATH` exits 0 only when fresh",
    )
    p.add_argument(
        "--root-certificates",
        default=None,
        metavar="CA_PEM",
        help="CA certificate of a TLS server (fedad certs makes one)",
    )
    p.add_argument(
        "--tls-certificate",
        default=None,
        metavar="PEM",
        help="this node's client certificate, signed by the plant CA (fedad enroll, then fedad certs sign); "
        "required by a TLS server",
    )
    p.add_argument(
        "--tls-key",
        default=None,
        metavar="KEY",
        help="the private key of --tls-certificate (fedad enroll made it; not the Paillier --private-key)",
    )
    p.add_argument(
        "--private-key",
        default=None,
        metavar="FILE",
        help="Paillier private.key (fedad keygen) for a server running --strategy paillier; only clients ever hold it",
    )
    p.add_argument(
        "--public-key",
        default=None,
        metavar="FILE",
        help="Paillier public.key for a server running --strategy secure-robust: this node encrypts "
        "its update, embedding and histogram and can decrypt nothing",
    )
    p.add_argument(
        "--obfuscation",
        default="djn",
        choices=("djn", "full"),
        help="secure-robust: encryption randomness: djn (short-exponent h^a, ~4x faster, DJN assumption) "
        "or full (r^n, semantic security under DCR alone); see docs/secure-robust.md",
    )
    p.add_argument(
        "--attack",
        default=None,
        type=attack_name,
        metavar="NAME",
        help="security testing: poison this node's updates with this attack: "
        f"{', '.join(shown_attack_names())} (sign_flip and sign-flip both work)",
    )
    p.add_argument(
        "--slowdown",
        type=float,
        default=1.0,
        metavar="F",
        help="test and bench aid: after each local training, sleep (F - 1) x its duration, so this node answers "
        "F times slower than it trains (a slow node for asynchronous rounds) without using more CPU",
    )
    p.add_argument("--attack-scale", type=float, default=None, help="attack strength (attack-specific default)")
    p.add_argument("--attack-start-round", type=int, default=1, help="first round the attack is active")
    p.add_argument(
        "--collusion-dir", default=None, help="directory shared by colluding attackers only (alie, ipm, min-max)"
    )
    p.add_argument("--colluders", type=int, default=None, help="number of colluding attackers")
    p.add_argument(
        "--num-clients",
        type=int,
        default=None,
        help="alie: the federation's size, which sets its z (attackers are assumed to know it)",
    )
    live = p.add_argument_group("live scoring")
    live.add_argument(
        "--stream",
        default=None,
        metavar="PATH|-",
        help="score this growing CSV file (or stdin: -) record by record with the newest global model while "
        "taking part in rounds; each decision names its model version (the server round)",
    )
    live.add_argument("--alarms", default=None, metavar="PATH", help="--stream: append alarms here as JSON lines")
    live.add_argument("--print-alarms", action="store_true", help="--stream: also print each alarm on stdout")
    live.add_argument("--all-decisions", action="store_true", help="--stream: write every decision, not only alarms")
    live.add_argument(
        "--learn-from-stream",
        type=int,
        default=0,
        metavar="N",
        help="--stream: train at each round also on the newest N stream records scored normal (alarms never "
        "join; 0: off)",
    )
    live.add_argument(
        "--stream-idle-exit",
        type=float,
        default=None,
        metavar="SECONDS",
        help="--stream: after the federation ends, stop when the file has had no new line for this long, counted "
        "from the end or the last line, whichever is later (default: follow it forever)",
    )
    from fedad.common.commands.score import add_rule_arguments

    add_rule_arguments(p)  # --stream --rule adaptive: the rule of `fedad score --rule adaptive`, the same options
    from fedad.common.telemetry import add_metrics_argument

    add_metrics_argument(p)
    return p


def run(args) -> int:
    from fedad.common.logs import setup_logging

    # gRPC's own INFO lines (a failed TLS handshake per retrying client: WRONG_VERSION_NUMBER) are noise here;
    # the client names a TLS mismatch itself. GRPC_VERBOSITY=INFO brings them back.
    os.environ.setdefault("GRPC_VERBOSITY", "ERROR")

    if not args.data:
        raise FedadError("--data is required: the path of this node's shard")
    adaptive = None  # --stream --rule adaptive: its AdaptiveParams
    if args.stream:
        if args.alarms is None and not args.print_alarms:
            raise FedadError("--stream needs --alarms PATH or --print-alarms")
        if args.stream != "-" and not os.path.isfile(args.stream):
            raise FedadError(f"--stream file not found: {args.stream}")
        if args.alarms is not None:
            from fedad.common.outputs import check_file_out

            check_file_out(
                args.alarms, "--alarms", inputs=[args.stream, args.data] if args.stream != "-" else [args.data]
            )
        if args.stream_idle_exit is not None and not args.stream_idle_exit >= 0:  # NaN too
            raise FedadError("--stream-idle-exit must be a number >= 0")
        if args.learn_from_stream < 0:
            raise FedadError("--learn-from-stream must be >= 0")
        from fedad.common.commands.score import adaptive_params

        adaptive = adaptive_params(args) if args.rule == "adaptive" else None
    elif args.alarms or args.print_alarms or args.all_decisions or args.stream_idle_exit is not None:
        raise FedadError("--alarms, --print-alarms, --all-decisions and --stream-idle-exit need --stream")
    elif args.rule != "threshold":
        raise FedadError("--rule needs --stream")
    elif args.learn_from_stream:
        raise FedadError("--learn-from-stream needs --stream")
    if args.model_out is not None:  # before the federation, not after it
        from fedad.common.outputs import check_model_out

        check_model_out(args.model_out, "--model-out")
    if args.private_key and args.public_key:
        raise FedadError("give --private-key (strategy paillier) or --public-key (strategy secure-robust), not both")
    from fedad.common.address import parse_host_port
    from fedad.common.node_names import check_node_name

    parse_host_port(args.server, "--server")
    if not args.keepalive > 0 or not args.connect_timeout >= 0:
        raise FedadError("--keepalive must be positive and --connect-timeout >= 0")
    if not args.slowdown >= 1.0:
        raise FedadError(f"--slowdown must be >= 1 (got {args.slowdown})")

    ca, identity = None, None
    if args.root_certificates:
        if not os.path.isfile(args.root_certificates):
            raise FedadError(f"CA certificate not found: {args.root_certificates}")
        ca = Path(args.root_certificates).read_bytes()
    if bool(args.tls_certificate) != bool(args.tls_key):
        raise FedadError("give --tls-certificate and --tls-key together (this node's certificate and its key)")
    if args.tls_certificate:
        if ca is None:
            raise FedadError("--tls-certificate needs --root-certificates CA.pem (the plant CA the server uses)")
        identity = _load_identity(args.tls_certificate, args.tls_key)
    if args.name:
        name = check_node_name(args.name, "--name")
    elif identity is not None:
        name = identity[0].name
    else:
        name = check_node_name(Path(args.data).stem, "the data file's name (give --name)")
    log = setup_logging(f"client {name}")
    from fedad.common.threads import apply_threads

    log.info("torch uses %d CPU thread(s) (%s)", *apply_threads(args.threads))
    from fedad.server.transport import ServerUnreachable, configure_client_channel, configure_flower_logging, connect

    configure_flower_logging(f"client {name}")
    if identity is not None:
        info, cert_pem, key_pem = identity
        if name != info.name:
            log.warning(
                "--name %s differs from this node's certificate subject %s: the server will refuse it", name, info.name
            )
        problem = info.validity_problem()
        if problem:
            log.warning("this node's %s: the server will refuse the connection", problem)
        log.info(
            "mutual TLS as %s (certificate serial 0x%x, valid until %s UTC)",
            info.name,
            info.serial,
            f"{info.not_after:%Y-%m-%d %H:%M}",
        )
    from fedad.client.flower_client import FedadClient
    from fedad.client.site import Site
    from fedad.client.tls_probe import check_tls_matches
    from fedad.common.data import load_dataset

    data = load_dataset(
        args.data,
        format=args.format,
        label_column=args.label_column,
        time_column=args.time_column,
        max_rows=args.max_rows or None,
    )
    test_data = None
    if args.test_data:
        test_data = load_dataset(
            args.test_data,
            format=args.format,
            label_column=args.label_column,
            time_column=args.time_column,
            max_rows=args.max_rows or None,
        )
    site = Site(
        data, device=args.device, val_fraction=args.val_fraction, test_fraction=args.test_fraction, test_data=test_data
    )
    from fedad.common.missing import missing_values_note

    note = missing_values_note(data.X, data.feature_names, "knn (the federation's preprocessing)")
    if note:
        log.warning("%s: %s", args.data, note)
    ignored = data.ignored_note()
    if ignored:
        log.info("%s: %s", args.data, ignored)
    attack = None
    if args.attack:
        from fedad.client.attack_runner import AttackRunner

        attack = AttackRunner(
            args.attack,
            args.attack_scale,
            args.attack_start_round,
            name,
            args.collusion_dir,
            args.colluders,
            num_clients=args.num_clients,
        )
        attack.prepare(site)
        log.warning("SECURITY TEST: this node runs attack '%s' from round %d", args.attack, args.attack_start_round)
    log.info(
        "loaded %d rows x %d features from %s (device %s); connecting to %s",
        len(data.X),
        data.X.shape[1],
        args.data,
        site.device,
        args.server,
    )
    log.info(
        "%d training, %d validation and %d test rows (%s, %s)",
        len(site.split.train),
        len(site.split.val),
        len(site.split.test),
        f"test set {args.test_data}" if test_data is not None else "test set: tail of --data",
        "labelled" if site.split.test_labels is not None else "unlabelled",
    )
    secure: PublicKeyClient | SecureClient | None = None
    if args.public_key:
        from fedad.client.secure import PublicKeyClient

        secure = PublicKeyClient(args.public_key, args.obfuscation)
        log.info(
            "secure-robust mode: updates, embeddings and histograms leave this node encrypted (key %s)",
            secure.fingerprint,
        )
    if args.private_key:
        from fedad.client.secure import SecureClient

        secure = SecureClient(args.private_key)
        log.info("Paillier mode: updates and statistics leave this node encrypted (key %s)", secure.fingerprint)
    client = FedadClient(site, name, log, attack, secure, args.model_out)
    client.slowdown = args.slowdown
    health = None
    if args.health_file:
        from fedad.client.health import LinkHealth

        health = LinkHealth(args.health_file, args.server).start()
    configure_client_channel(
        (identity[1], identity[2]) if identity is not None else None,
        args.keepalive,
        health.on_state if health is not None else None,
    )
    from fedad.common.telemetry import from_args

    telemetry = from_args(args)  # --metrics-port: Prometheus /metrics
    if telemetry is not None:
        telemetry.watch_client(client, name)
    stream = None
    if args.stream:
        from fedad.client.live_stream import NodeStream
        from fedad.common.alarms import AlarmSink

        sink = AlarmSink(args.alarms, stdout=args.print_alarms, all_decisions=args.all_decisions)
        stream = NodeStream(
            args.stream,
            list(data.feature_names),
            log,
            sink,
            idle_exit=args.stream_idle_exit,
            time_column=args.time_column,
            telemetry=telemetry,
            learn_rows=args.learn_from_stream,
            adaptive=adaptive,
        )
        client.on_global = lambda weights, config, t: stream.offer(site, weights, config, t)
        if args.learn_from_stream:
            client.extra_rows = stream.learned_rows
    try:
        connect(
            args.server,
            client.to_client(),
            ca,
            args.connect_timeout,
            client.contact,
            log,
            diagnose=lambda: check_tls_matches(args.server, ca is not None, identity is not None),
        )
    except ServerUnreachable as exc:
        print(f"fedad-client: error: {exc}", file=sys.stderr)
        return 1
    finally:
        if health is not None:
            health.stop()
        if stream is not None and stream.scorer is None:
            stream.sink.close()  # no global model ever arrived: nothing was scored
    if stream is not None and stream.scorer is not None:
        log.info("the federation ended; live scoring goes on with the last model until the stream ends")
        stream.wait()
        stream.sink.close()
        if stream.error is not None:
            print(f"fedad-client: error: live stream: {stream.error}", file=sys.stderr)
            return 2 if isinstance(stream.error, FedadError) else 1
    if client.quarantined is not None:
        log.warning(
            "the server ended the run; this node was quarantined by the server in round %d (exit code 0: "
            "the run completed, its updates were not used)",
            client.quarantined,
        )
    else:
        log.info("the server ended the run; exiting")
    return 0


def _load_identity(cert_path: str, key_path: str):
    """(CertificateInfo, certificate PEM, key PEM) of this node; the key must belong to the certificate."""
    from fedad.common.pki import certificate_info, load_certificate, load_private_key, same_public_key
    from fedad.server.transport import read_file

    cert_pem, key_pem = read_file(cert_path, "TLS client certificate"), read_file(key_path, "TLS client key")
    cert = load_certificate(cert_pem, cert_path)
    key = load_private_key(key_pem, key_path)
    if not same_public_key(key.public_key(), cert.public_key()):
        raise FedadError(f"{key_path} is not the key of {cert_path}")
    return certificate_info(cert), cert_pem, key_pem


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    return run_cli(lambda: run(parse_args(parser, argv)), parser.prog)


if __name__ == "__main__":
    sys.exit(main())

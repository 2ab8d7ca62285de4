"""fedad-keyholder: the only process holding the Paillier private key; a blind decryption service.

Under --strategy secure-robust the aggregator (fedad-server) holds only public.key. It blinds every
ciphertext with a fresh random mask before sending it here, so what this process decrypts is uniform noise
to it. It cannot tell what it decrypts, so it limits how much: per round at most
clients x (sketch rows + embedding blocks) + the aggregate's blocks, and one final round for the threshold
histogram. It refuses unknown or replayed rounds, malformed ciphertexts, other keys, requests beyond the
budget and, with TLS, any aggregator whose certificate is not the pinned one. Every request is written to
--audit (JSON lines). SIGINT or SIGTERM (Ctrl-C, docker stop) stops it within ~1 s: it logs how many blocks
it decrypted and exits 0.

examples:
  fedad certs --out certs --host keyholder --client aggregator     # ca.pem, server.pem/.key, aggregator.pem/.key
  fedad-keyholder --listen 0.0.0.0:8090 --private-key keys/private.key \\
      --certificates certs/ca.pem certs/server.pem certs/server.key --aggregator-cert certs/aggregator.pem
  fedad-keyholder --listen 127.0.0.1:8090 --private-key keys/private.key --insecure   # local tests only
"""

from __future__ import annotations

import json
import signal
import struct
import sys
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from fedad.common.config import ArgumentParser, HelpFormatter, add_config_option, parse_args, run_cli
from fedad.common.errors import FedadError

SERVICE = "fedad.KeyHolder"
BEGIN, DECRYPT = f"/{SERVICE}/BeginRound", f"/{SERVICE}/Decrypt"
KINDS = ("sketch", "embedding", "aggregate", "histogram")
_LEN = struct.Struct(">I")
MAX_MESSAGE = 64 * 1024 * 1024


# ------------------------------------------------------------------------------------------- wire format


def frame(header: dict, payload: bytes = b"") -> bytes:
    """A message: 4-byte big-endian header length, the JSON header, then the binary payload."""
    head = json.dumps(header, sort_keys=True).encode()
    return _LEN.pack(len(head)) + head + payload


def unframe(data: bytes) -> tuple[dict, bytes]:
    """(header, payload) of a message; ValueError when it is not one."""
    if len(data) < _LEN.size:
        raise ValueError("truncated message")
    (n,) = _LEN.unpack_from(data)
    if n > len(data) - _LEN.size:
        raise ValueError("header length past the end of the message")
    try:
        header = json.loads(data[_LEN.size : _LEN.size + n])
    except (UnicodeDecodeError, json.JSONDecodeError):
        raise ValueError("header is not JSON") from None
    if not isinstance(header, dict):
        raise ValueError("header is not a JSON object")
    return header, data[_LEN.size + n :]


def ints_to_bytes(values: Sequence[int], width: int) -> bytes:
    return b"".join(int(v).to_bytes(width, "big") for v in values)


def bytes_to_ints(data: bytes, width: int) -> list[int]:
    if len(data) % width:
        raise ValueError(f"payload of {len(data)} bytes is not a whole number of {width}-byte values")
    return [int.from_bytes(data[i : i + width], "big") for i in range(0, len(data), width)]


def certificate_fingerprint(pem: bytes) -> str:
    """SHA-256 (hex) of a PEM certificate's DER bytes: the value the key holder pins."""
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes

    try:
        return x509.load_pem_x509_certificate(pem).fingerprint(hashes.SHA256()).hex()
    except ValueError:
        raise FedadError("not a PEM certificate") from None


# ------------------------------------------------------------------------------------------------ policy


class Refusal(Exception):
    """A request the key holder will not serve; ``code`` names the gRPC status it maps to."""

    def __init__(self, code: str, message: str):
        super().__init__(message)
        self.code = code


@dataclass(frozen=True)
class Budget:
    """The key holder's caps, fixed when it starts (the aggregator cannot raise them)."""

    max_clients: int = 10
    sketch_rows: int = 16
    embedding_blocks: int = 1
    max_aggregate_blocks: int = 512
    max_rounds: int = 10_000  # run-wide cap on training rounds (the run's declared count is capped by it)
    min_round_interval: float = 0.0  # seconds that must pass between two rounds' openings

    def __post_init__(self) -> None:
        if not float(self.min_round_interval) >= 0:
            raise FedadError("--min-round-interval must be >= 0")
        for name in ("max_clients", "sketch_rows", "max_aggregate_blocks", "max_rounds"):
            if int(getattr(self, name)) < 1:
                raise FedadError(f"--{name.replace('_', '-')} must be at least 1")
        if int(self.embedding_blocks) < 0:
            raise FedadError("--embedding-blocks must be at least 0")


@dataclass
class RoundState:
    """One open round: what may still be decrypted, per kind."""

    round: int
    final: bool
    left: dict[str, int] = field(default_factory=dict)


class KeyHolder:
    """Decrypts blinded ciphertexts under a per-round budget; refuses everything else (``Refusal``).

    ``observer`` (tests, audits) is called with (round, kind, plaintexts) after each decryption: with an
    honest aggregator those are one-time-padded, uniform in [0, n).
    """

    def __init__(
        self,
        private_key,
        budget: Budget = Budget(),
        audit: Path | None = None,
        observer: Callable[[int, str, list[int]], None] | None = None,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], None] = time.sleep,
    ):
        from fedad.common.crypto.keys import key_fingerprint

        self._private_key = private_key
        self.public_key = private_key.public_key
        self.fingerprint = key_fingerprint(self.public_key)
        self.budget, self.audit, self.observer = budget, audit, observer
        self.current: RoundState | None = None
        self.last_round = 0
        self.aggregate_blocks: int | None = None  # fixed by the first round of the session
        self.closed = False
        self.decrypted = 0
        self.run_rounds: int | None = None  # training rounds the run declared in its first round (then fixed)
        self.opened = 0
        self.clock, self.sleep = clock, sleep
        self.last_open: float | None = None
        self._lock = threading.Lock()

    def histogram_blocks(self) -> int:
        """Blocks of the summed threshold histogram (fixed by the code's bins and the client cap)."""
        from fedad.common.crypto.statistics import counts_layout
        from fedad.common.federated_stats import N_BINS

        return counts_layout(self.public_key, self.budget.max_clients).blocks_for(N_BINS)

    def _log(self, entry: dict) -> None:
        if self.audit is not None:
            with open(self.audit, "a") as f:
                f.write(json.dumps({"time": round(time.time(), 3), **entry}) + "\n")

    def begin(self, header: dict) -> dict:
        """Open round ``header['round']``; returns the round's budget per kind."""
        with self._lock:
            try:
                out = self._begin(header)
            except Refusal as exc:
                self._log({"op": "begin", "round": header.get("round"), "refused": str(exc)})
                raise
            assert self.current is not None  # _begin opened it
            self._log({"op": "begin", "round": self.current.round, "final": self.current.final, "budget": out})
            return out

    def _begin(self, header: dict) -> dict:
        if header.get("key") != self.fingerprint:
            raise Refusal(
                "PERMISSION_DENIED",
                f"this key holder holds key {self.fingerprint}, the aggregator uses {header.get('key')}",
            )
        rnd, clients = header.get("round"), header.get("clients")
        final, blocks = bool(header.get("final", False)), header.get("aggregate_blocks")
        if not isinstance(rnd, int) or isinstance(rnd, bool) or rnd < 1:
            raise Refusal("INVALID_ARGUMENT", f"round must be a positive integer, got {rnd!r}")
        if self.closed:
            raise Refusal("FAILED_PRECONDITION", "the final round is over: this session decrypts nothing more")
        if rnd <= self.last_round:
            raise Refusal(
                "FAILED_PRECONDITION",
                f"round {rnd} was already opened (last round {self.last_round}); rounds must increase",
            )
        declared = header.get("rounds", self.run_rounds)
        if declared is not None and (
            not isinstance(declared, int) or isinstance(declared, bool) or not 1 <= declared <= self.budget.max_rounds
        ):
            raise Refusal(
                "RESOURCE_EXHAUSTED",
                f"a run of {declared!r} rounds; this key holder serves 1..{self.budget.max_rounds}",
            )
        if self.run_rounds is not None and declared != self.run_rounds:
            raise Refusal("INVALID_ARGUMENT", f"this session's run declared {self.run_rounds} rounds, not {declared}")
        cap = self.budget.max_rounds if declared is None else declared
        if (rnd > cap and not final) or rnd > cap + 1 or self.opened >= cap + 1:
            raise Refusal(
                "RESOURCE_EXHAUSTED",
                f"round {rnd} is past the run's {cap} rounds (+1 final): this session decrypts nothing more",
            )
        now = self.clock()
        if self.last_open is not None and now - self.last_open < self.budget.min_round_interval:
            # paced, not refused: an honest aggregator's quick round waits; a hammering one gets one round per interval
            self.sleep(self.budget.min_round_interval - (now - self.last_open))
            now = self.clock()
        if not isinstance(clients, int) or isinstance(clients, bool) or not 1 <= clients <= self.budget.max_clients:
            raise Refusal(
                "RESOURCE_EXHAUSTED",
                f"{clients!r} clients asked for; this key holder serves 1..{self.budget.max_clients}",
            )
        if final:
            left = {"histogram": self.histogram_blocks()}
        else:
            if (
                not isinstance(blocks, int)
                or isinstance(blocks, bool)
                or not 1 <= blocks <= self.budget.max_aggregate_blocks
            ):
                raise Refusal(
                    "RESOURCE_EXHAUSTED",
                    f"aggregate of {blocks!r} blocks asked for; the cap is {self.budget.max_aggregate_blocks}",
                )
            if self.budget.sketch_rows > blocks - 2:  # rows have rank <= B - 1: m >= B - 1 would reveal updates
                raise Refusal(
                    "FAILED_PRECONDITION",
                    f"an update of {blocks} blocks allows at most {blocks - 2} "
                    f"sketch rows per client; this key holder's budget is {self.budget.sketch_rows} "
                    "(start it with a smaller --sketch-rows)",
                )
            if self.aggregate_blocks is not None and blocks != self.aggregate_blocks:
                raise Refusal(
                    "INVALID_ARGUMENT",
                    f"the aggregate has {self.aggregate_blocks} blocks in this session, not {blocks}",
                )
            self.aggregate_blocks = blocks
            left = {
                "sketch": clients * self.budget.sketch_rows,
                "embedding": clients * self.budget.embedding_blocks,
                "aggregate": blocks,
            }
        self.current, self.last_round, self.closed = RoundState(rnd, final, left), rnd, final
        self.run_rounds, self.opened, self.last_open = declared, self.opened + 1, now
        return dict(left)

    def decrypt(self, header: dict, ciphertexts: list[int]) -> list[int]:
        """Plaintexts of blinded ciphertexts of the open round, charged to its budget."""
        from fedad.common.crypto.codec import check_ciphertext

        with self._lock:
            entry = {
                "op": "decrypt",
                "round": header.get("round"),
                "kind": header.get("kind"),
                "blocks": len(ciphertexts),
            }
            try:
                if header.get("key") != self.fingerprint:
                    raise Refusal(
                        "PERMISSION_DENIED",
                        f"ciphertexts under key {header.get('key')}, this key holder holds {self.fingerprint}",
                    )
                cur, kind = self.current, header.get("kind")
                if cur is None or header.get("round") != cur.round:
                    raise Refusal(
                        "FAILED_PRECONDITION",
                        f"round {header.get('round')!r} is not open (open: {None if cur is None else cur.round})",
                    )
                if not isinstance(kind, str) or kind not in cur.left:
                    raise Refusal(
                        "INVALID_ARGUMENT",
                        f"kind {kind!r} is not decrypted in this round (allowed: {', '.join(cur.left)})",
                    )
                if not ciphertexts:
                    raise Refusal("INVALID_ARGUMENT", "no ciphertexts in the request")
                for i, c in enumerate(ciphertexts):
                    try:
                        check_ciphertext(self.public_key, c, i)
                    except ValueError as exc:
                        raise Refusal("INVALID_ARGUMENT", f"malformed ciphertext: {exc}") from None
                if len(ciphertexts) > cur.left[kind]:
                    raise Refusal(
                        "RESOURCE_EXHAUSTED",
                        f"{len(ciphertexts)} {kind} blocks asked for in round "
                        f"{cur.round}, {cur.left[kind]} left in its budget",
                    )
                cur.left[kind] -= len(ciphertexts)
            except Refusal as exc:
                self._log({**entry, "refused": str(exc)})
                raise
            plaintexts = [self._private_key.raw_decrypt(c) for c in ciphertexts]
            self.decrypted += len(plaintexts)
            self._log(entry)
        if self.observer is not None:
            self.observer(cur.round, kind, list(plaintexts))
        return plaintexts


# ----------------------------------------------------------------------------------------------- service


class KeyHolderService:
    """gRPC handlers (raw bytes, no protobuf): pins the aggregator's certificate, maps Refusal to a status."""

    def __init__(self, holder: KeyHolder, pinned: str | None):
        self.holder, self.pinned = holder, pinned

    def _check_peer(self, context) -> None:
        import grpc

        if self.pinned is None:
            return
        pems = context.auth_context().get("x509_pem_cert") or []
        if not pems or certificate_fingerprint(pems[0]) != self.pinned:
            self.holder._log({"op": "connect", "peer": context.peer(), "refused": "certificate not pinned"})
            context.abort(grpc.StatusCode.PERMISSION_DENIED, "the aggregator's certificate is not the pinned one")

    def _serve(self, request: bytes, context, work) -> bytes:
        import grpc

        self._check_peer(context)
        try:
            header, payload = unframe(request)
            return work(header, payload)
        except Refusal as exc:
            context.abort(getattr(grpc.StatusCode, exc.code), str(exc))
        except ValueError as exc:
            context.abort(grpc.StatusCode.INVALID_ARGUMENT, f"malformed request: {exc}")
        raise AssertionError("unreachable: context.abort raises")

    def begin_round(self, request: bytes, context) -> bytes:
        return self._serve(request, context, lambda h, _: frame({"budget": self.holder.begin(h)}))

    def decrypt(self, request: bytes, context) -> bytes:
        from fedad.common.crypto.codec import ciphertext_bytes
        from fedad.common.crypto.keys import key_bytes

        def work(header, payload):
            pub = self.holder.public_key
            plain = self.holder.decrypt(header, bytes_to_ints(payload, ciphertext_bytes(pub)))
            return frame({"count": len(plain)}, ints_to_bytes(plain, key_bytes(pub)))

        return self._serve(request, context, work)

    def handler(self):
        import grpc

        ident = lambda b: b  # noqa: E731 - raw bytes in and out
        return grpc.method_handlers_generic_handler(
            SERVICE,
            {
                "BeginRound": grpc.unary_unary_rpc_method_handler(self.begin_round, ident, ident),
                "Decrypt": grpc.unary_unary_rpc_method_handler(self.decrypt, ident, ident),
            },
        )


def start_server(holder: KeyHolder, address: str, certificates: tuple[bytes, bytes, bytes] | None, pinned: str | None):
    """A started grpc.Server serving ``holder`` on ``address`` (mutual TLS when ``certificates``)."""
    from concurrent import futures

    import grpc

    options = [("grpc.max_receive_message_length", MAX_MESSAGE), ("grpc.max_send_message_length", MAX_MESSAGE)]
    server = grpc.server(futures.ThreadPoolExecutor(max_workers=4), options=options)
    server.add_generic_rpc_handlers((KeyHolderService(holder, pinned).handler(),))
    if certificates is None:
        port = server.add_insecure_port(address)
    else:
        ca, cert, key = certificates
        creds = grpc.ssl_server_credentials([(key, cert)], root_certificates=ca, require_client_auth=True)
        port = server.add_secure_port(address, creds)
    if port == 0:
        raise FedadError(f"cannot listen on {address} (address in use or invalid)")
    server.start()
    return server


# ---------------------------------------------------------------------------------------------------- CLI


def build_parser() -> ArgumentParser:
    p = ArgumentParser(prog="fedad-keyholder", description=__doc__, formatter_class=HelpFormatter)
    add_config_option(p)
    p.add_argument("--listen", default="0.0.0.0:8090", help="host:port the aggregator connects to")
    p.add_argument("--private-key", required=True, metavar="FILE", help="Paillier private.key (fedad keygen)")
    p.add_argument(
        "--certificates",
        nargs=3,
        metavar=("CA", "CERT", "KEY"),
        default=None,
        help="mutual TLS: the CA that signed the aggregator's certificate, this key holder's certificate "
        "and key (fedad certs --client aggregator makes all of them)",
    )
    p.add_argument(
        "--aggregator-cert",
        metavar="PEM",
        default=None,
        help="pin: serve only the aggregator presenting exactly this certificate (SHA-256 compared)",
    )
    p.add_argument(
        "--insecure",
        action="store_true",
        help="no TLS and no pinning (local tests only: anyone who can connect may spend the budget)",
    )
    p.add_argument("--max-clients", type=int, default=10, help="most clients a round may count in the budget")
    p.add_argument("--sketch-rows", type=int, default=16, help="sketch rows decrypted per client per round (m)")
    p.add_argument("--embedding-blocks", type=int, default=1, help="embedding blocks per client per round")
    p.add_argument("--max-aggregate-blocks", type=int, default=512, help="most blocks of one round's aggregate")
    p.add_argument(
        "--max-rounds",
        type=int,
        default=1000,
        help="run-wide cap on training rounds; the aggregator's declared round count (fixed by its first "
        "round) caps them further, plus one final round for the threshold",
    )
    p.add_argument(
        "--min-round-interval",
        type=float,
        default=1.0,
        help="seconds between the openings of two rounds: a round asked for sooner is held until then "
        "(limits decryptions per minute)",
    )
    p.add_argument("--audit", metavar="FILE", default=None, help="append every request (JSON lines) here")
    p.add_argument("--ready-file", metavar="FILE", default=None, help="write this file once listening (scripts)")
    from fedad.common.telemetry import add_metrics_argument

    add_metrics_argument(p)
    return p


def run(args) -> int:
    from fedad.common.crypto.keys import load_private_key
    from fedad.common.logs import setup_logging

    if args.insecure and (args.certificates or args.aggregator_cert):
        raise FedadError("--insecure cannot be combined with --certificates or --aggregator-cert")
    if not args.insecure and not (args.certificates and args.aggregator_cert):
        raise FedadError(
            "the key holder needs --certificates CA CERT KEY and --aggregator-cert PEM (mutual TLS "
            "with a pinned aggregator), or --insecure for local tests"
        )
    budget = Budget(
        args.max_clients,
        args.sketch_rows,
        args.embedding_blocks,
        args.max_aggregate_blocks,
        args.max_rounds,
        args.min_round_interval,
    )
    private_key = load_private_key(args.private_key)
    certs, pinned = None, None
    if not args.insecure:
        from fedad.server.transport import read_certificates

        certs = read_certificates(*args.certificates)
        pin_path = Path(args.aggregator_cert)
        if not pin_path.is_file():
            raise FedadError(f"--aggregator-cert: file not found: {pin_path}")
        pinned = certificate_fingerprint(pin_path.read_bytes())
    log = setup_logging("keyholder")
    holder = KeyHolder(private_key, budget, Path(args.audit) if args.audit else None)
    from fedad.common.telemetry import from_args

    telemetry = from_args(args)  # --metrics-port: Prometheus /metrics
    if telemetry is not None:
        telemetry.watch_keyholder(holder, Refusal)
    server = start_server(holder, args.listen, certs, pinned)
    log.info(
        "key holder %s listening on %s (%s); budget per round: %d clients x (%d sketch rows + %d embedding "
        "blocks) + <= %d aggregate blocks",
        holder.fingerprint,
        args.listen,
        f"mutual TLS, aggregator pinned {pinned[:16]}..." if pinned else "insecure",
        budget.max_clients,
        budget.sketch_rows,
        budget.embedding_blocks,
        budget.max_aggregate_blocks,
    )
    stopping = stop_on_signals()
    if args.ready_file:
        Path(args.ready_file).write_text(args.listen + "\n")
    while not stopping.is_set():
        server.wait_for_termination(timeout=0.5)
    log.info("stopping (signal %s)", stopping.signal_name)
    server.stop(grace=1.0).wait(timeout=10.0)
    log.info("stopped after %d decryptions", holder.decrypted)
    return 0


class _Stopping(threading.Event):
    signal_name = "?"


def stop_on_signals() -> _Stopping:
    """An event set by SIGINT or SIGTERM (Ctrl-C, docker stop), both made deliverable first: a process started
    with them blocked or ignored (the mask and SIG_IGN survive exec) would otherwise never stop gracefully."""
    stopping = _Stopping()
    wanted = {signal.SIGINT, signal.SIGTERM}
    signal.pthread_sigmask(signal.SIG_UNBLOCK, wanted)

    def handler(signum, _frame) -> None:
        stopping.signal_name = signal.Signals(signum).name
        stopping.set()

    for sig in wanted:
        signal.signal(sig, handler)
    return stopping


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    return run_cli(lambda: run(parse_args(parser, argv)), parser.prog)


if __name__ == "__main__":
    sys.exit(main())

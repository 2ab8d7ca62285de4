"""The one module that touches Flower's runtime: its gRPC server and client (the legacy gRPC-bidi path).

Flower 1.41's SuperLink runtime speaks HTTP and spawns a process per message (~12-20 s a round); the
deprecated-but-working gRPC path keeps client processes alive and runs rounds in milliseconds. A move to
SuperLink later touches only this file.

``flwr.server.start_server`` hard-codes ``require_client_auth=False``, so this module builds the gRPC server
itself (mutual TLS: every node presents a certificate signed by the plant CA) around Flower's own servicer,
and the client side swaps in a channel factory that presents the node's certificate. The Flower internals
used (pinned by tests/test_flower_internals.py, listed in docs/security.md):
``flwr.server.superlink.fleet.grpc_bidi.flower_service_servicer.FlowerServiceServicer`` (its
``grpc_client_proxy_factory`` argument and ``Join``), ``...grpc_bidi.grpc_client_proxy.GrpcClientProxy``,
``flwr.proto.transport_pb2_grpc.add_FlowerServiceServicer_to_server``, ``flwr.server.server.run_fl``,
``flwr.supercore.exit.register_signal_handlers`` and, client side,
``flwr.compat.client.grpc_client.connection.create_channel`` (the name ``grpc_connection`` calls).
"""

from __future__ import annotations

import logging
import os
import sys
import time
import warnings
from collections.abc import Callable
from typing import Protocol

os.environ.setdefault("FLWR_TELEMETRY_ENABLED", "0")
os.environ.setdefault("FLWR_DISABLE_UPDATE_CHECK", "1")

import grpc  # noqa: E402

GRPC_MAX_MESSAGE_LENGTH = 1_073_741_824  # 1 GiB: what a client accepts (a server's messages are its model)
MESSAGE_HEADROOM = 4  # the server accepts 4x a float64 model at the most features a node may declare
MESSAGE_BASE = 8 << 20  # plus 8 MiB for metrics, statistics and encrypted histograms
KEEPALIVE_S = 10.0  # both sides ping every this many seconds; a peer silent for as long again is dead


def keepalive_options(seconds: float) -> list[tuple[str, int]]:
    """gRPC channel/server options: ping the peer every ``seconds`` (also on an idle stream) and declare the
    transport dead when a ping is not answered within ``seconds`` more, so a dead stream ends its RPC."""
    ms = max(100, int(seconds * 1000))
    return [
        ("grpc.keepalive_time_ms", ms),
        ("grpc.keepalive_timeout_ms", ms),
        ("grpc.keepalive_permit_without_calls", 1),
        ("grpc.http2.max_pings_without_data", 0),
    ]


def server_keepalive_options(seconds: float) -> list[tuple[str, int]]:
    """The server's keepalive, plus accepting the clients' pings at that rate (gRPC's default would answer
    pings more frequent than every 5 minutes on an idle stream with GOAWAY 'too_many_pings')."""
    ms = max(100, int(seconds * 1000))
    return [
        *keepalive_options(seconds),
        ("grpc.http2.min_recv_ping_interval_without_data_ms", ms // 2),
        ("grpc.http2.min_ping_interval_without_data_ms", ms),
        ("grpc.http2.max_ping_strikes", 0),
    ]


class _DropNoise(logging.Filter):
    """Drops Flower's deprecation banners and the traceback it logs before re-raising a client error."""

    def filter(self, record: logging.LogRecord) -> bool:
        msg = str(record.msg)
        if "DEPRECATED FEATURE" in msg or "deprecated" in msg.lower():
            return False
        exc = record.exc_info[1] if record.exc_info else None
        return not (exc is not None and any(t.__name__ == "FedadError" for t in type(exc).__mro__))


def configure_flower_logging(tag: str) -> None:
    """Silence Flower's banners, keep its lines uncoloured off a terminal, tag them, stop double lines."""
    warnings.filterwarnings("ignore", category=DeprecationWarning)
    from flwr.common.logger import FLOWER_LOGGER, update_console_handler

    level = os.environ.get("FLWR_LOG_LEVEL", "WARNING").upper()
    update_console_handler(level=level, timestamps=True, colored=sys.stderr.isatty())
    FLOWER_LOGGER.setLevel(level)
    FLOWER_LOGGER.propagate = False
    FLOWER_LOGGER.addFilter(_DropNoise())
    for handler in FLOWER_LOGGER.handlers:
        handler.addFilter(_DropNoise())
        formatter = handler.formatter
        fmt = getattr(formatter, "_fmt", None)
        if formatter is not None and fmt:
            formatter._fmt = fmt.replace("%(message)s", f"[{tag}] flwr: %(message)s")


def _is_grpc_poll_race(exc: BaseException | None) -> bool:
    """Whether ``exc`` is grpc's channel-state poller finding its channel closed under it ('Channel closed!',
    raised in ``grpc._channel._poll_connectivity`` as 'Cannot monitor channel state' or 'Cannot invoke RPC')."""
    import traceback

    if not isinstance(exc, ValueError) or "Channel closed" not in str(exc):
        return False
    return any(frame.f_code.co_name == "_poll_connectivity" for frame, _ in traceback.walk_tb(exc.__traceback__))


def _quiet_grpc_thread_errors() -> None:
    """grpc's channel-state monitor thread raises 'Channel closed' when a retried connection is torn down:
    harmless, but it would print a traceback into the client's log on every retry."""
    import threading

    previous = threading.excepthook

    def hook(args):
        if _is_grpc_poll_race(args.exc_value):
            return
        previous(args)

    threading.excepthook = hook


def read_certificates(ca: str, cert: str, key: str) -> tuple[bytes, bytes, bytes]:
    """Read the CA, server certificate and server key PEM files for Flower's TLS server."""
    from fedad.common.errors import FedadError

    out = []
    for label, path in (("CA certificate", ca), ("server certificate", cert), ("server key", key)):
        if not os.path.isfile(path):
            raise FedadError(f"{label} not found: {path}")
        out.append(open(path, "rb").read())
    return out[0], out[1], out[2]


def read_file(path: str, label: str) -> bytes:
    """Bytes of a PEM file, or a one-line FedadError naming what is missing."""
    from fedad.common.errors import FedadError

    if not os.path.isfile(path):
        raise FedadError(f"{label} not found: {path}")
    return open(path, "rb").read()


def peer_certificate(context) -> bytes | None:
    """The PEM client certificate the TLS handshake verified for this RPC (None without mutual TLS)."""
    values = context.auth_context().get("x509_pem_cert") or []
    return bytes(values[0]) if values else None


def _authenticated_servicer(client_manager, gate):
    """Flower's FlowerServiceServicer behind a gate: each connection's certificate subject is its identity."""
    from flwr.proto import transport_pb2_grpc
    from flwr.server.superlink.fleet.grpc_bidi.flower_service_servicer import FlowerServiceServicer
    from flwr.server.superlink.fleet.grpc_bidi.grpc_client_proxy import GrpcClientProxy

    from fedad.common.errors import FedadError
    from fedad.common.pki import certificate_info, load_certificate

    class IdentifiedClientProxy(GrpcClientProxy):
        """Flower's client proxy, carrying the certificate identity of its connection."""

        def __init__(self, cid, bridge, identity) -> None:
            super().__init__(cid=cid, bridge=bridge)
            self.identity = identity

    class AuthenticatedServicer(transport_pb2_grpc.FlowerServiceServicer):
        """Refuses a connection without an acceptable certificate, then hands it to Flower's servicer."""

        def Join(self, request_iterator, context):  # noqa: N802 - gRPC method name
            pem = peer_certificate(context)
            if pem is None:  # the handshake requires one; kept as a second line of defence
                gate.refuse("unknown", "connection without a client certificate")
                context.abort(
                    grpc.StatusCode.UNAUTHENTICATED, "a client certificate signed by the plant CA is required"
                )
                return
            try:
                info = certificate_info(load_certificate(pem))
            except FedadError as exc:
                gate.refuse("unknown", f"unusable client certificate: {exc}")
                context.abort(grpc.StatusCode.PERMISSION_DENIED, f"refused by the fedad server: {exc}")
                return
            reason = gate.admit(info)
            if reason is not None:
                context.abort(grpc.StatusCode.PERMISSION_DENIED, f"refused by the fedad server: {reason}")
                return
            context.add_callback(lambda: gate.release(info))
            inner = FlowerServiceServicer(
                client_manager, grpc_client_proxy_factory=lambda cid, bridge: IdentifiedClientProxy(cid, bridge, info)
            )
            yield from inner.Join(request_iterator, context)

    return AuthenticatedServicer()


def build_grpc_server(
    address: str,
    client_manager,
    *,
    certificates: tuple[bytes, bytes, bytes] | None = None,
    client_ca: bytes | None = None,
    gate=None,
    max_message_length: int = GRPC_MAX_MESSAGE_LENGTH,
    max_workers: int = 1000,
    keepalive_s: float = KEEPALIVE_S,
) -> grpc.Server:
    """A gRPC server with Flower's servicer; with ``client_ca`` every client must present a certificate it signed."""
    import concurrent.futures

    from flwr.proto.transport_pb2_grpc import add_FlowerServiceServicer_to_server
    from flwr.server.superlink.fleet.grpc_bidi.flower_service_servicer import FlowerServiceServicer

    options = [
        ("grpc.max_concurrent_streams", max(100, max_workers)),
        ("grpc.max_send_message_length", max_message_length),
        ("grpc.max_receive_message_length", max_message_length),
        # pings both keep idle streams open through load balancers (Flower pings every 210 s) and find dead peers
        *server_keepalive_options(keepalive_s),
        ("grpc.so_reuseport", 0),  # a second server on a busy port must fail, not share it
    ]
    server = grpc.server(
        concurrent.futures.ThreadPoolExecutor(max_workers=max_workers),
        maximum_concurrent_rpcs=max_workers,
        options=options,
    )
    mutual = certificates is not None and client_ca is not None
    servicer = _authenticated_servicer(client_manager, gate) if mutual else FlowerServiceServicer(client_manager)
    add_FlowerServiceServicer_to_server(servicer, server)
    try:
        if certificates is None:
            port = server.add_insecure_port(address)
        else:
            _, cert, key = certificates
            credentials = grpc.ssl_server_credentials(
                ((key, cert),), root_certificates=client_ca, require_client_auth=mutual
            )
            port = server.add_secure_port(address, credentials)
    except RuntimeError:
        port = 0
    if port == 0:
        from fedad.common.errors import FedadError

        raise FedadError(f"cannot listen on {address} (port in use or address not local)")
    return server


def serve(
    address: str,
    server,
    num_rounds: int,
    round_timeout: float | None,
    certificates: tuple[bytes, bytes, bytes] | None = None,
    client_ca: bytes | None = None,
    gate=None,
    max_message_length: int = GRPC_MAX_MESSAGE_LENGTH,
    keepalive_s: float = KEEPALIVE_S,
) -> None:
    """Run ``server`` (a ``flwr.server.Server``) over gRPC at ``address`` for ``num_rounds`` rounds.

    With ``certificates`` and ``client_ca``: mutual TLS, each connection's certificate subject bound to its
    client proxy (``proxy.identity``) and checked by ``gate`` (a ``NodeGate``).
    """
    from flwr.server import ServerConfig
    from flwr.server.server import run_fl
    from flwr.supercore.exit import register_signal_handlers
    from flwr.supercore.telemetry import EventType

    if client_ca is not None and (certificates is None or gate is None):
        raise ValueError("mutual TLS needs the server certificates and a NodeGate")
    grpc_server = build_grpc_server(
        address,
        server.client_manager(),
        certificates=certificates,
        client_ca=client_ca,
        gate=gate,
        max_message_length=max_message_length,
        keepalive_s=keepalive_s,
    )
    grpc_server.start()
    register_signal_handlers(
        event_type=EventType.START_SERVER_LEAVE, exit_message="fedad-server terminated.", grpc_servers=[grpc_server]
    )
    try:
        run_fl(server=server, config=ServerConfig(num_rounds=num_rounds, round_timeout=round_timeout))
    finally:
        grpc_server.stop(grace=1)


def _client_channel_factory(
    identity: tuple[bytes, bytes] | None,
    keepalive_s: float,
    on_state: Callable[[grpc.ChannelConnectivity], None] | None,
):
    """Flower's ``create_channel`` with keepalive, a connectivity watcher and (mutual TLS) this node's
    certificate chain and key added to the TLS credentials."""

    def create_channel(
        server_address: str,
        insecure: bool,
        root_certificates: bytes | None = None,
        max_message_length: int = GRPC_MAX_MESSAGE_LENGTH,
        interceptors=None,
    ) -> grpc.Channel:
        options = [
            ("grpc.max_send_message_length", max_message_length),
            ("grpc.max_receive_message_length", max_message_length),
            *keepalive_options(keepalive_s),
        ]
        if insecure:
            if identity is not None:
                raise ValueError("a client certificate needs TLS (root certificates)")
            channel = grpc.insecure_channel(server_address, options=options)
        else:
            chain, key = identity if identity is not None else (None, None)
            credentials = grpc.ssl_channel_credentials(root_certificates, private_key=key, certificate_chain=chain)
            channel = grpc.secure_channel(server_address, credentials, options=options)
        if on_state is not None:
            channel.subscribe(on_state)
        return grpc.intercept_channel(channel, *interceptors) if interceptors else channel

    return create_channel


def configure_client_channel(
    identity: tuple[bytes, bytes] | None = None,
    keepalive_s: float = KEEPALIVE_S,
    on_state: Callable[[grpc.ChannelConnectivity], None] | None = None,
) -> None:
    """Make this process's Flower client use keepalive, report channel states to ``on_state`` and, with
    ``identity`` (certificate chain, key), present the node's certificate (mutual TLS) on every connection."""
    from flwr.compat.client.grpc_client import connection

    connection.create_channel = _client_channel_factory(identity, keepalive_s, on_state)


def use_client_certificate(certificate_chain: bytes, private_key: bytes) -> None:
    """Make this process's Flower client present ``certificate_chain`` (mutual TLS) on every connection."""
    configure_client_channel((certificate_chain, private_key))


def max_message_bytes(model: str, window: int, sizes: dict, n_features: int | None = None) -> int:
    """The server's gRPC receive limit: derived from the model's size, not Flower's 2 GB.

    The feature count is not known before the statistics phase, so the model is sized at
    ``validation.MAX_FEATURES`` (the most a node may declare); Paillier packs ~7 bytes per value, less
    than the float64 size counted here.
    """
    from fedad.common.models.registry import build_model
    from fedad.server.validation import MAX_FEATURES

    net = build_model(model, n_features or MAX_FEATURES, window=window, **sizes)
    n_values = sum(p.numel() for p in net.state_dict().values())
    return int(MESSAGE_BASE + MESSAGE_HEADROOM * 8 * n_values)


class ContactFlag(Protocol):
    """Whether the server has talked to the client since the last (re)connection (``FedadClient.contact``)."""

    def __call__(self) -> bool: ...

    def reset(self) -> None: ...


class ServerUnreachable(Exception):
    """The server could not be reached within the connection timeout."""


def connect(
    address: str,
    client,
    root_certificates: bytes | None,
    connect_timeout: float,
    has_contact: ContactFlag,
    log: logging.Logger,
    diagnose: Callable[[], None] | None = None,
) -> None:
    """Run a Flower client until the server ends the run, retrying with backoff while it is unreachable.

    Start order does not matter: a client started before its server retries until ``connect_timeout``.
    A dropped connection after contact is retried within the same bound, then given up. ``diagnose`` runs
    after a failed attempt and may raise a FedadError naming a problem no retry can fix (a TLS mismatch).
    """
    import flwr

    _quiet_grpc_thread_errors()
    delay, deadline, lost = 0.5, time.monotonic() + connect_timeout, False
    while True:
        try:
            flwr.client.start_client(
                server_address=address,
                client=client,
                grpc_max_message_length=GRPC_MAX_MESSAGE_LENGTH,
                root_certificates=root_certificates,
                insecure=root_certificates is None,
            )
            return
        except grpc.RpcError as exc:
            code = exc.code() if hasattr(exc, "code") else None
            if code == grpc.StatusCode.PERMISSION_DENIED:  # the server looked at this node's certificate and said no
                from fedad.common.errors import FedadError

                raise FedadError(exc.details() or "the fedad server refused this node") from None
            if code not in (
                grpc.StatusCode.UNAVAILABLE,
                grpc.StatusCode.DEADLINE_EXCEEDED,
                grpc.StatusCode.CANCELLED,
                grpc.StatusCode.UNKNOWN,
            ):
                raise
            if diagnose is not None and not has_contact():
                diagnose()
            if has_contact():
                log.warning(
                    "connection to %s lost (%s); reconnecting for up to %.0f s", address, code.name, connect_timeout
                )
                deadline, lost = time.monotonic() + connect_timeout, True
                has_contact.reset()
                delay = 0.5
            if time.monotonic() >= deadline:
                if lost:
                    raise ServerUnreachable(
                        f"lost the fedad server at {address} and could not reconnect within "
                        f"{connect_timeout:.0f} s (--connect-timeout); giving up"
                    ) from None
                raise ServerUnreachable(
                    f"could not reach the fedad server at {address} within {connect_timeout:.0f} s "
                    "(is it running, and is the address/port right?)"
                ) from None
            log.info(
                "server %s not reachable yet (%s); retrying in %.1f s", address, code.name if code else "error", delay
            )
            time.sleep(min(delay, max(0.0, deadline - time.monotonic())))
            delay = min(delay * 2, 10.0)

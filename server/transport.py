"""The one module that touches Flower's runtime: its gRPC server and client (``start_server``/``start_client``).

Flower 1.41's SuperLink runtime speaks HTTP and spawns a process per message (~12-20 s a round); the
deprecated-but-working gRPC path keeps client processes alive and runs rounds in milliseconds. A move to
SuperLink later touches only this file.
"""
from __future__ import annotations

import logging
import os
import sys
import time
import warnings
from collections.abc import Callable

os.environ.setdefault("FLWR_TELEMETRY_ENABLED", "0")
os.environ.setdefault("FLWR_DISABLE_UPDATE_CHECK", "1")

import grpc  # noqa: E402

GRPC_MAX_MESSAGE_LENGTH = 1_073_741_824  # 1 GiB: what a client accepts (a server's messages are its model)
MESSAGE_HEADROOM = 4         # the server accepts 4x a float64 model at the most features a node may declare
MESSAGE_BASE = 8 << 20       # plus 8 MiB for metrics, statistics and encrypted histograms


class _DropNoise(logging.Filter):
    """Drops Flower's deprecation banners and the traceback it logs before re-raising a client error."""

    def filter(self, record: logging.LogRecord) -> bool:
        msg = str(record.msg)
        if "DEPRECATED FEATURE" in msg or "deprecated" in msg.lower():
            return False
        exc = record.exc_info[1] if record.exc_info else None
        return not (exc is not None and type(exc).__name__ == "FedadError")


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
        if formatter is not None and getattr(formatter, "_fmt", None):
            formatter._fmt = formatter._fmt.replace("%(message)s", f"[{tag}] flwr: %(message)s")


def _quiet_grpc_thread_errors() -> None:
    """grpc's channel-state monitor thread raises 'Channel closed' when a retried connection is torn down:
    harmless, but it would print a traceback into the client's log on every retry."""
    import threading

    previous = threading.excepthook

    def hook(args):
        if isinstance(args.exc_value, ValueError) and "Cannot monitor channel state" in str(args.exc_value):
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


def serve(address: str, server, num_rounds: int, round_timeout: float | None,
          certificates: tuple[bytes, bytes, bytes] | None = None, max_message: int = GRPC_MAX_MESSAGE_LENGTH) -> None:
    """Run ``server`` (a ``flwr.server.Server``) over gRPC at ``address`` for ``num_rounds`` rounds."""
    import flwr

    flwr.server.start_server(
        server_address=address,
        server=server,
        config=flwr.server.ServerConfig(num_rounds=num_rounds, round_timeout=round_timeout),
        grpc_max_message_length=max_message,
        certificates=certificates,
    )


class ServerUnreachable(Exception):
    """The server could not be reached within the connection timeout."""


def connect(address: str, client, root_certificates: bytes | None, connect_timeout: float,
            has_contact: Callable[[], bool], log: logging.Logger) -> None:
    """Run a Flower client until the server ends the run, retrying with backoff while it is unreachable.

    Start order does not matter: a client started before its server retries until ``connect_timeout``.
    A dropped connection after contact is retried within the same bound, then given up.
    """
    import flwr

    _quiet_grpc_thread_errors()
    delay, deadline = 0.5, time.monotonic() + connect_timeout
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
            if code not in (grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.DEADLINE_EXCEEDED,
                            grpc.StatusCode.CANCELLED, grpc.StatusCode.UNKNOWN):
                raise
            if has_contact():
                log.warning("connection to %s lost (%s); reconnecting", address, code.name)
                deadline = time.monotonic() + connect_timeout
                has_contact.reset()  # type: ignore[attr-defined]
                delay = 0.5
            if time.monotonic() >= deadline:
                raise ServerUnreachable(
                    f"could not reach the fedad server at {address} within {connect_timeout:.0f} s "
                    "(is it running, and is the address/port right?)") from None
            log.info("server %s not reachable yet (%s); retrying in %.1f s", address,
                     code.name if code else "error", delay)
            time.sleep(min(delay, max(0.0, deadline - time.monotonic())))
            delay = min(delay * 2, 10.0)

"""HOST:PORT options checked before any work: their form, and whether this machine can listen there."""

from __future__ import annotations

import errno
import socket

from fedad.common.errors import FedadError


def parse_host_port(value: str, option: str) -> tuple[str, int]:
    """``host:port`` (``[v6]:port`` too) -> (host, port); a missing or bad port is one clear error."""
    host, sep, port = str(value).rpartition(":")
    if not sep or not host or not port.isdigit() or not 0 < int(port) < 65536:
        raise FedadError(f"{option} must be HOST:PORT with a port from 1 to 65535, e.g. 127.0.0.1:8080 (got '{value}')")
    return host.strip("[]"), int(port)


def check_can_listen(address: str, option: str = "--address") -> None:
    """Bind ``address`` once and let go, so a port in use is reported before anything starts."""
    host, port = parse_host_port(address, option)
    try:
        infos = socket.getaddrinfo(host or None, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE)
    except socket.gaierror as exc:
        raise FedadError(f"{option} {address}: cannot resolve host '{host}' ({exc.strerror})") from None
    family, kind, proto, _, sockaddr = infos[0]
    with socket.socket(family, kind, proto) as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # a port in TIME_WAIT after a run is free
        try:
            s.bind(sockaddr)
        except OSError as exc:
            if exc.errno == errno.EADDRINUSE:
                raise FedadError(
                    f"cannot listen on {address}: port {port} is already in use "
                    f"(another fedad-server? choose another port with {option})"
                ) from None
            raise FedadError(f"cannot listen on {address}: {exc.strerror}") from None

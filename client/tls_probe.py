"""Tell a TLS mismatch from an unreachable server: one TLS handshake attempt, no certificate checks.

gRPC reports a plaintext client at a TLS server (and the reverse) as UNAVAILABLE, like a wrong address.
"""
from __future__ import annotations

import socket
import ssl

from fedad.common.address import parse_host_port
from fedad.common.errors import FedadError


def server_speaks_tls(address: str, timeout: float = 5.0) -> bool | None:
    """True: ``address`` completes a TLS handshake; False: it answers, but not in TLS; None: no answer."""
    host, port = parse_host_port(address, "--server")
    ctx = ssl.create_default_context()
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE  # only the protocol matters here; gRPC checks the certificate itself
    ctx.set_alpn_protocols(["h2"])
    try:
        sock = socket.create_connection((host, port), timeout=timeout)
    except OSError:
        return None
    with sock:
        try:
            with ctx.wrap_socket(sock, server_hostname=host):
                return True
        except TimeoutError:
            return None
        except (ssl.SSLError, ConnectionError):  # plaintext HTTP/2 bytes or a closed connection, not a handshake
            return False
        except OSError:
            return None


def check_tls_matches(address: str, uses_tls: bool) -> None:
    """Raise a FedadError with the fix when the client's TLS setting and the server's differ."""
    speaks_tls = server_speaks_tls(address)
    if speaks_tls is None or speaks_tls == uses_tls:
        return
    if speaks_tls:
        raise FedadError(f"the server at {address} speaks TLS: pass --root-certificates CA_PEM (the CA that "
                         "signed its certificate; fedad certs writes ca.pem)")
    raise FedadError(f"the server at {address} does not speak TLS: drop --root-certificates, or start fedad-server "
                     "with --certificates")

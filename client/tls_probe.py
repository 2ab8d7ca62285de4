"""Tell a TLS mismatch from an unreachable server: one TLS handshake attempt, no certificate checks.

gRPC reports a plaintext client at a TLS server (and the reverse) as UNAVAILABLE, like a wrong address.
"""

from __future__ import annotations

import socket
import ssl

from fedad.common.address import parse_host_port
from fedad.common.errors import FedadError


def _wants_certificate(exc: ssl.SSLError) -> bool:
    """A TLS alert that means: the server requires a client certificate."""
    return "CERTIFICATE_REQUIRED" in str(exc) or "HANDSHAKE_FAILURE" in str(exc)


def probe_tls(address: str, timeout: float = 5.0) -> str | None:
    """What ``address`` speaks: "plain", "tls", "mutual" (TLS that wants a client certificate) or None (no answer)."""
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
            with ctx.wrap_socket(sock, server_hostname=host) as tls:
                try:  # TLS 1.3: a server that requires a client certificate refuses right after the handshake
                    if tls.recv(1) == b"":
                        return "mutual"  # closed at once without a byte (gRPC sends no alert we can read)
                except ssl.SSLError as exc:
                    if _wants_certificate(exc):
                        return "mutual"
                except OSError:
                    pass
                return "tls"
        except TimeoutError:
            return None
        except ssl.SSLError as exc:
            if _wants_certificate(exc):
                return "mutual"  # a TLS alert during the handshake: TLS, and it wants a client certificate
            return "plain"  # plaintext HTTP/2 bytes, not a handshake
        except ConnectionError:
            return "plain"
        except OSError:
            return None


def check_tls_matches(address: str, uses_tls: bool, has_certificate: bool = False) -> None:
    """Raise a FedadError with the fix when the client's TLS setting and the server's differ."""
    found = probe_tls(address)
    if found is None:
        return
    if found == "plain" and uses_tls:
        raise FedadError(
            f"the server at {address} does not speak TLS: drop --root-certificates, or start fedad-server "
            "with --certificates"
        )
    if found != "plain" and not uses_tls:
        raise FedadError(
            f"the server at {address} speaks TLS: pass --root-certificates CA_PEM (the CA that "
            "signed its certificate; fedad certs writes ca.pem) and this node's --tls-certificate "
            "and --tls-key"
        )
    if found == "mutual" and not has_certificate:
        raise FedadError(
            f"the server at {address} asks for a client certificate: pass --tls-certificate NODE.pem "
            "--tls-key NODE.key (fedad enroll, then fedad certs sign on the CA host)"
        )

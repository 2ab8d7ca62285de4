"""Make the plant's TLS certificate authority, the server certificate, and client certificates for nodes.

Writes ca.pem (every node and the server need it), ca.key (keep it offline: it signs node certificates),
server.pem and server.key (fedad-server --certificates ca.pem server.pem server.key). The server certificate
is valid for every --host given (DNS names or IP addresses). TLS in fedad is mutual: each node needs a client
certificate whose subject is its name. --client NAME issues one in one step (NAME.pem + NAME.key, for demos,
compose and the aggregator's certificate for the key holder); on a real plant the node keeps its key:
`fedad enroll` on the node, then `fedad certs sign` here. With an existing ca.pem + ca.key in --out,
--client only adds the new client certificates.
"""

from __future__ import annotations

import datetime as dt
import ipaddress
from collections.abc import Sequence
from pathlib import Path

from fedad.common.errors import FedadError
from fedad.common.node_names import check_node_name

FILES = ("ca.pem", "ca.key", "server.pem", "server.key")


def add_arguments(parser) -> None:
    parser.add_argument("--out", required=True, help="directory for ca.pem, ca.key, server.pem, server.key")
    parser.add_argument(
        "--host",
        action="append",
        default=None,
        help="host name or IP the server is reached at (repeatable; default: localhost, 127.0.0.1, server)",
    )
    parser.add_argument(
        "--client",
        action="append",
        default=None,
        metavar="NAME",
        help="also write NAME.pem and NAME.key: a CA-signed client certificate with subject NAME "
        "(repeatable; a node name, or e.g. aggregator for fedad-keyholder's pinned client)",
    )
    parser.add_argument("--days", type=int, default=365, help="validity in days of every certificate written")
    parser.add_argument("--force", action="store_true", help="overwrite existing files (a new CA)")


def _san(host: str):
    from cryptography import x509

    try:
        return x509.IPAddress(ipaddress.ip_address(host))
    except ValueError:
        return x509.DNSName(host)


def _client_blobs(clients, ca, ca_key, days: int) -> dict[str, bytes]:
    from fedad.common.pki import cert_pem, issue_client_certificate, key_pem, new_key

    blobs = {}
    for name in clients:
        ckey = new_key()
        blobs[f"{name}.pem"] = cert_pem(issue_client_certificate(name, ckey.public_key(), ca, ca_key, days))
        blobs[f"{name}.key"] = key_pem(ckey)
    return blobs


def _write(out: Path, blobs: dict[str, bytes]) -> dict[str, Path]:
    from fedad.common.files import write_private, write_public

    out.mkdir(parents=True, exist_ok=True)
    for name, blob in blobs.items():
        (write_private if name.endswith(".key") else write_public)(out / name, blob)
    return {name: out / name for name in blobs}


def make_certificates(out: Path, hosts: list[str], days: int = 365, clients: Sequence[str] = ()) -> dict[str, Path]:
    """Create a CA, a CA-signed server certificate for ``hosts`` and one client certificate per name in
    ``clients`` (NAME.pem, NAME.key); returns the written paths."""
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes

    from fedad.common.pki import CLOCK_SKEW, cert_pem, key_pem, new_key, subject_name

    now = dt.datetime.now(dt.UTC)
    ca_key = new_key()
    ca = (
        x509.CertificateBuilder()
        .subject_name(subject_name("fedad CA"))
        .issuer_name(subject_name("fedad CA"))
        .public_key(ca_key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - CLOCK_SKEW)
        .not_valid_after(now + dt.timedelta(days=days))
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .sign(ca_key, hashes.SHA256())
    )
    key = new_key()
    cert = (
        x509.CertificateBuilder()
        .subject_name(subject_name(hosts[0]))
        .issuer_name(ca.subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - CLOCK_SKEW)
        .not_valid_after(now + dt.timedelta(days=days))
        .add_extension(x509.SubjectAlternativeName([_san(h) for h in hosts]), critical=False)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .sign(ca_key, hashes.SHA256())
    )
    blobs = {
        "ca.pem": cert_pem(ca),
        "ca.key": key_pem(ca_key),
        "server.pem": cert_pem(cert),
        "server.key": key_pem(key),
    }
    blobs.update(_client_blobs(clients, ca, ca_key, days))
    return _write(out, blobs)


def add_clients(out: Path, clients: list[str], days: int = 365) -> dict[str, Path]:
    """Client certificates signed by the existing CA in ``out`` (ca.pem, ca.key)."""
    from fedad.common.pki import load_certificate, load_private_key

    ca = load_certificate((out / "ca.pem").read_bytes(), str(out / "ca.pem"))
    ca_key = load_private_key((out / "ca.key").read_bytes(), str(out / "ca.key"))
    return _write(out, _client_blobs(clients, ca, ca_key, days))


def run(args) -> int:
    out = Path(args.out)
    clients = args.client or []
    for name in clients:
        check_node_name(name, "--client")
        if name in ("ca", "server"):
            raise FedadError(f"--client {name}: that name is taken by the CA/server files")
    if args.days < 1:
        raise FedadError("--days must be at least 1")
    client_files = [f"{c}.{e}" for c in clients for e in ("pem", "key")]
    has_ca = (out / "ca.pem").is_file() and (out / "ca.key").is_file()
    if clients and has_ca and not args.force:  # enrol more nodes with the plant's existing CA
        existing = [f for f in client_files if (out / f).exists()]
        if existing:
            raise FedadError(f"{out} already holds {', '.join(existing)}; use another name, or --force for a new CA")
        add_clients(out, clients, args.days)
        print(f"wrote {', '.join(client_files)} in {out}, signed by the existing CA, valid {args.days} days")
        return 0
    existing = [f for f in (*FILES, *client_files) if (out / f).exists()]
    if existing and not args.force:
        raise FedadError(f"{out} already holds {', '.join(existing)}; use --force to replace them")
    hosts = args.host or ["localhost", "127.0.0.1", "server"]
    make_certificates(out, hosts, args.days, clients)
    extra = "".join(f", {c}.pem, {c}.key" for c in clients)
    print(f"wrote {out}/ca.pem, ca.key, server.pem, server.key{extra} for {', '.join(hosts)}, valid {args.days} days")
    return 0

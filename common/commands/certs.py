"""Make a TLS certificate authority and a server certificate for fedad-server (demos, compose, plants).

Writes ca.pem (give it to every client: --root-certificates), ca.key (keep it offline), server.pem and
server.key (for fedad-server --certificates ca.pem server.pem server.key). The server certificate is valid
for every --host given (DNS names or IP addresses).
"""
from __future__ import annotations

import datetime as dt
import ipaddress
import os
from pathlib import Path

from fedad.common.errors import FedadError

FILES = ("ca.pem", "ca.key", "server.pem", "server.key")


def add_arguments(parser) -> None:
    parser.add_argument("--out", required=True, help="directory for ca.pem, ca.key, server.pem, server.key")
    parser.add_argument("--host", action="append", default=None,
                        help="host name or IP the server is reached at (repeatable; default: localhost, "
                        "127.0.0.1, server)")
    parser.add_argument("--client", action="append", default=None, metavar="NAME",
                        help="also write NAME.pem and NAME.key: a CA-signed client certificate for mutual TLS "
                        "(e.g. --client aggregator: fedad-server presents it to fedad-keyholder, which pins it)")
    parser.add_argument("--days", type=int, default=365, help="validity in days")
    parser.add_argument("--force", action="store_true", help="overwrite existing files")


def _name(cn: str):
    from cryptography.x509.oid import NameOID
    from cryptography import x509

    return x509.Name([x509.NameAttribute(NameOID.ORGANIZATION_NAME, "fedad"), x509.NameAttribute(NameOID.COMMON_NAME, cn)])


def _san(host: str):
    from cryptography import x509

    try:
        return x509.IPAddress(ipaddress.ip_address(host))
    except ValueError:
        return x509.DNSName(host)


def make_certificates(out: Path, hosts: list[str], days: int = 365, clients: list[str] = ()) -> dict[str, Path]:
    """Create a CA, a CA-signed server certificate for ``hosts`` and one client certificate per name in
    ``clients`` (NAME.pem, NAME.key); returns the written paths."""
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec

    now = dt.datetime.now(dt.timezone.utc)
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca = (x509.CertificateBuilder().subject_name(_name("fedad CA")).issuer_name(_name("fedad CA"))
          .public_key(ca_key.public_key()).serial_number(x509.random_serial_number())
          .not_valid_before(now - dt.timedelta(minutes=5)).not_valid_after(now + dt.timedelta(days=days))
          .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
          .sign(ca_key, hashes.SHA256()))
    key = ec.generate_private_key(ec.SECP256R1())
    cert = (x509.CertificateBuilder().subject_name(_name(hosts[0])).issuer_name(ca.subject)
            .public_key(key.public_key()).serial_number(x509.random_serial_number())
            .not_valid_before(now - dt.timedelta(minutes=5)).not_valid_after(now + dt.timedelta(days=days))
            .add_extension(x509.SubjectAlternativeName([_san(h) for h in hosts]), critical=False)
            .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
            .sign(ca_key, hashes.SHA256()))

    client_certs = {}
    for name in clients:
        ckey = ec.generate_private_key(ec.SECP256R1())
        ccert = (x509.CertificateBuilder().subject_name(_name(name)).issuer_name(ca.subject)
                 .public_key(ckey.public_key()).serial_number(x509.random_serial_number())
                 .not_valid_before(now - dt.timedelta(minutes=5)).not_valid_after(now + dt.timedelta(days=days))
                 .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
                 .add_extension(x509.ExtendedKeyUsage([x509.oid.ExtendedKeyUsageOID.CLIENT_AUTH]), critical=False)
                 .sign(ca_key, hashes.SHA256()))
        client_certs[name] = (ccert, ckey)

    def pem_key(k) -> bytes:
        return k.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                               serialization.NoEncryption())

    blobs = {"ca.pem": ca.public_bytes(serialization.Encoding.PEM), "ca.key": pem_key(ca_key),
             "server.pem": cert.public_bytes(serialization.Encoding.PEM), "server.key": pem_key(key)}
    for name, (ccert, ckey) in client_certs.items():
        blobs[f"{name}.pem"] = ccert.public_bytes(serialization.Encoding.PEM)
        blobs[f"{name}.key"] = pem_key(ckey)
    out.mkdir(parents=True, exist_ok=True)
    paths = {}
    for name, blob in blobs.items():
        tmp = out / f".{name}.tmp"
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600 if name.endswith(".key") else 0o644)
        with os.fdopen(fd, "wb") as f:
            f.write(blob)
        os.replace(tmp, out / name)
        paths[name] = out / name
    return paths


def run(args) -> int:
    out = Path(args.out)
    clients = args.client or []
    for name in clients:
        if not name or not name.replace("-", "").replace("_", "").isalnum() or name in ("ca", "server"):
            raise FedadError(f"--client {name!r}: use letters, digits, - and _ (not ca or server)")
    existing = [f for f in (*FILES, *(f"{c}.{e}" for c in clients for e in ("pem", "key"))) if (out / f).exists()]
    if existing and not args.force:
        raise FedadError(f"{out} already holds {', '.join(existing)}; use --force to replace them")
    if args.days < 1:
        raise FedadError("--days must be at least 1")
    hosts = args.host or ["localhost", "127.0.0.1", "server"]
    make_certificates(out, hosts, args.days, clients)
    extra = "".join(f", {c}.pem, {c}.key" for c in clients)
    print(f"wrote {out}/ca.pem, ca.key, server.pem, server.key{extra} for {', '.join(hosts)}")
    return 0

"""The plant's certificate authority: node keys, signing requests, client certificates and their subjects.

A node's identity is the common name (CN) of its client certificate; it must be a valid node name.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from fedad.common.errors import FedadError
from fedad.common.node_names import check_node_name, safe_repr

CLOCK_SKEW = dt.timedelta(minutes=5)  # not_valid_before is backdated this much


@dataclass(frozen=True)
class CertificateInfo:
    """What fedad reads from a certificate: subject CN, serial, validity window (UTC)."""

    name: str
    serial: int
    not_before: dt.datetime
    not_after: dt.datetime

    def validity_problem(self, now: dt.datetime | None = None) -> str | None:
        """Why the certificate is not valid at ``now`` (expired / not yet valid), or None."""
        now = now or dt.datetime.now(dt.UTC)
        if now < self.not_before:
            return f"certificate not valid before {self.not_before:%Y-%m-%d %H:%M} UTC"
        if now > self.not_after:
            return f"certificate expired on {self.not_after:%Y-%m-%d %H:%M} UTC"
        return None


def subject_name(cn: str) -> x509.Name:
    return x509.Name(
        [x509.NameAttribute(NameOID.ORGANIZATION_NAME, "fedad"), x509.NameAttribute(NameOID.COMMON_NAME, cn)]
    )


def common_name(name: x509.Name) -> str | None:
    attrs = name.get_attributes_for_oid(NameOID.COMMON_NAME)
    return str(attrs[0].value) if len(attrs) == 1 else None


def certificate_info(cert: x509.Certificate) -> CertificateInfo:
    """Subject CN, serial and validity of ``cert``; the CN must be a valid node name."""
    cn = common_name(cert.subject)
    check_node_name(cn, "certificate subject")
    return CertificateInfo(str(cn), cert.serial_number, cert.not_valid_before_utc, cert.not_valid_after_utc)


def load_certificate(data: bytes, what: str = "certificate") -> x509.Certificate:
    try:
        return x509.load_pem_x509_certificate(data)
    except ValueError as exc:
        raise FedadError(f"{what} is not a PEM certificate: {exc}") from None


def load_private_key(data: bytes, what: str = "private key"):
    try:
        return serialization.load_pem_private_key(data, password=None)
    except (ValueError, TypeError) as exc:
        raise FedadError(f"{what} is not an unencrypted PEM private key: {exc}") from None


def same_public_key(a, b) -> bool:
    """True when two public keys are the same key (compared as SubjectPublicKeyInfo bytes)."""
    spki = (serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)
    return bool(a.public_bytes(*spki) == b.public_bytes(*spki))


def new_key() -> ec.EllipticCurvePrivateKey:
    return ec.generate_private_key(ec.SECP256R1())


def key_pem(key) -> bytes:
    return key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )


def cert_pem(cert: x509.Certificate) -> bytes:
    return cert.public_bytes(serialization.Encoding.PEM)


def make_csr(name: str, key: ec.EllipticCurvePrivateKey) -> x509.CertificateSigningRequest:
    """A signing request whose subject is the node name."""
    check_node_name(name)
    return x509.CertificateSigningRequestBuilder().subject_name(subject_name(name)).sign(key, hashes.SHA256())


def csr_pem(csr: x509.CertificateSigningRequest) -> bytes:
    return csr.public_bytes(serialization.Encoding.PEM)


def load_csr(data: bytes) -> x509.CertificateSigningRequest:
    """Parse a signing request and check its self-signature and subject."""
    try:
        csr = x509.load_pem_x509_csr(data)
    except ValueError as exc:
        raise FedadError(f"not a PEM certificate signing request: {exc}") from None
    if not csr.is_signature_valid:
        raise FedadError("the signing request's signature does not verify (was it altered?)")
    check_node_name(common_name(csr.subject), "signing request subject")
    return csr


def issue_client_certificate(
    name: str, public_key, ca_cert: x509.Certificate, ca_key, days: float, now: dt.datetime | None = None
) -> x509.Certificate:
    """A CA-signed client certificate (TLS client auth only) with subject CN ``name``, valid for ``days``."""
    check_node_name(name)
    if not same_public_key(ca_cert.public_key(), ca_key.public_key()):
        raise FedadError("the CA key does not belong to the CA certificate")
    now = now or dt.datetime.now(dt.UTC)
    return (
        x509.CertificateBuilder()
        .subject_name(subject_name(name))
        .issuer_name(ca_cert.subject)
        .public_key(public_key)
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - CLOCK_SKEW)
        .not_valid_after(now + dt.timedelta(days=days))
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.CLIENT_AUTH]), critical=False)
        .sign(ca_key, hashes.SHA256())
    )


def sign_csr(
    csr: x509.CertificateSigningRequest, ca_cert: x509.Certificate, ca_key, days: float, name: str | None = None
) -> x509.Certificate:
    """Issue the client certificate a node asked for; ``name``, if given, must equal the request's subject."""
    cn = str(common_name(csr.subject))
    if name is not None and name != cn:
        raise FedadError(f"the signing request is for {safe_repr(cn)}, not {safe_repr(name)}")
    return issue_client_certificate(cn, csr.public_key(), ca_cert, ca_key, days)

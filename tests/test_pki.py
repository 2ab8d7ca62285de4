"""The plant CA: enrollment (key + request), signing, one-step client certificates, revocation lists, the gate."""

from __future__ import annotations

import datetime as dt

import pytest
from cryptography import x509
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID
from procs import run_client, run_module

from fedad.common.errors import FedadError
from fedad.common.pki import (
    CertificateInfo,
    certificate_info,
    issue_client_certificate,
    load_certificate,
    load_csr,
    load_private_key,
    make_csr,
    new_key,
    sign_csr,
)
from fedad.server.node_gate import NodeGate, Revocations, parse_revocations


def fedad(*args):
    return run_module("fedad.common.cli", *args)


@pytest.fixture(scope="module")
def ca_dir(tmp_path_factory):
    d = tmp_path_factory.mktemp("ca")
    p = fedad("certs", "--out", str(d), "--host", "localhost")
    assert p.returncode == 0, p.stderr
    return d


def test_enroll_then_sign_gives_a_client_certificate_for_the_node_name(ca_dir, tmp_path):
    p = fedad("enroll", "--name", "node_07", "--out", str(tmp_path))
    assert p.returncode == 0, p.stderr
    key, csr = tmp_path / "node_07.key", tmp_path / "node_07.csr"
    assert key.stat().st_mode & 0o777 == 0o600
    before = key.read_bytes()
    again = fedad("enroll", "--name", "node_07", "--out", str(tmp_path))
    assert again.returncode == 2 and "--force" in again.stderr and key.read_bytes() == before  # never silently
    p = fedad("certs", "sign", "--csr", str(csr), "--ca-dir", str(ca_dir), "--days", "30")
    assert p.returncode == 0, p.stderr
    cert = x509.load_pem_x509_certificate((tmp_path / "node_07.pem").read_bytes())
    ca = x509.load_pem_x509_certificate((ca_dir / "ca.pem").read_bytes())
    assert cert.subject.get_attributes_for_oid(NameOID.COMMON_NAME)[0].value == "node_07"
    cert.verify_directly_issued_by(ca)
    lifetime = cert.not_valid_after_utc - cert.not_valid_before_utc
    assert dt.timedelta(days=30) <= lifetime <= dt.timedelta(days=30, minutes=10)
    eku = cert.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value
    assert list(eku) == [ExtendedKeyUsageOID.CLIENT_AUTH]
    assert not cert.extensions.get_extension_for_class(x509.BasicConstraints).value.ca
    # the certificate is for the key that stayed on the node
    node_key = load_private_key(key.read_bytes())
    assert node_key.public_key().public_numbers() == cert.public_key().public_numbers()
    assert "serial 0x" in p.stdout and "valid 30 days" in p.stdout
    # the CA side never overwrites silently either, and refuses a request for another name than expected
    assert fedad("certs", "sign", "--csr", str(csr), "--ca-dir", str(ca_dir)).returncode == 2
    wrong = fedad(
        "certs",
        "sign",
        "--csr",
        str(csr),
        "--ca-dir",
        str(ca_dir),
        "--name",
        "node_08",
        "--out",
        str(tmp_path / "x.pem"),
    )
    assert wrong.returncode == 2 and "not 'node_08'" in wrong.stderr


def test_bad_names_are_refused_by_every_tool(ca_dir, tmp_path):
    for args in (
        ("enroll", "--name", "../x", "--out", str(tmp_path)),
        ("enroll", "--name", "a\nb", "--out", str(tmp_path)),
        ("certs", "--out", str(tmp_path / "c"), "--client", "bad name"),
    ):
        p = fedad(*args)
        assert p.returncode == 2 and "not a valid node name" in p.stderr, p.stderr
    assert not any(tmp_path.iterdir())
    with pytest.raises(FedadError):
        make_csr("../../etc", new_key())


def test_a_request_with_a_broken_signature_is_refused():
    from cryptography.hazmat.primitives.serialization import Encoding

    der = bytearray(make_csr("node_01", new_key()).public_bytes(Encoding.DER))
    der[-5] ^= 0xFF  # flip a byte of the signature
    broken = x509.load_der_x509_csr(bytes(der)).public_bytes(Encoding.PEM)
    with pytest.raises(FedadError, match="signature"):
        load_csr(broken)


def test_certs_client_adds_nodes_to_an_existing_ca(ca_dir):
    ca_before = (ca_dir / "ca.pem").read_bytes()
    p = fedad("certs", "--out", str(ca_dir), "--client", "node_03", "--days", "7")
    assert p.returncode == 0, p.stderr
    assert (ca_dir / "ca.pem").read_bytes() == ca_before and (ca_dir / "node_03.key").stat().st_mode & 0o777 == 0o600
    cert = load_certificate((ca_dir / "node_03.pem").read_bytes())
    cert.verify_directly_issued_by(load_certificate(ca_before))
    assert certificate_info(cert).name == "node_03"
    again = fedad("certs", "--out", str(ca_dir), "--client", "node_03")
    assert again.returncode == 2 and "node_03.pem" in again.stderr


def test_signing_with_a_key_of_another_ca_is_refused(ca_dir, tmp_path):
    ca = load_certificate((ca_dir / "ca.pem").read_bytes())
    with pytest.raises(FedadError, match="does not belong"):
        issue_client_certificate("node_01", new_key().public_key(), ca, new_key(), days=1)
    key = load_private_key((ca_dir / "ca.key").read_bytes())
    cert = sign_csr(make_csr("node_02", new_key()), ca, key, days=1)
    assert certificate_info(cert).name == "node_02"


def _info(name="node_01", serial=0xABC, days_left=10.0):
    now = dt.datetime.now(dt.UTC)
    return CertificateInfo(name, serial, now - dt.timedelta(days=1), now + dt.timedelta(days=days_left))


def test_validity_window():
    assert _info().validity_problem() is None
    assert "expired" in _info(days_left=-1).validity_problem()
    future = CertificateInfo(
        "n", 1, dt.datetime.now(dt.UTC) + dt.timedelta(days=1), dt.datetime.now(dt.UTC) + dt.timedelta(days=2)
    )
    assert "not valid before" in future.validity_problem()


def test_revocation_list_parsing():
    names, serials = parse_revocations("# comment\nnode_04\n0xABC  # by serial\n\n  node_05 \n")
    assert names == {"node_04", "node_05"} and serials == {0xABC}
    with pytest.raises(FedadError):
        parse_revocations("0xnothex\n")


def test_gate_refuses_revoked_expired_and_second_connections_and_rereads_the_list(tmp_path):
    path = tmp_path / "revoked.txt"
    gate = NodeGate(Revocations(str(path)))  # a missing list revokes nobody
    a = _info("node_01", serial=1)
    assert gate.admit(a) is None
    assert "already open" in gate.admit(_info("node_01", serial=1))
    assert "already open" in gate.admit(_info("node_01", serial=2))  # another certificate, same name: still one
    gate.release(a)
    assert gate.admit(a) is None
    assert gate.problem(a) is None
    path.write_text("node_01\n")
    assert "revoked" in gate.problem(a)  # re-read when asked, no restart
    path.write_text("0x7\n")
    assert gate.problem(a) is None and "revoked" in gate.admit(_info("node_02", serial=7))
    assert "expired" in gate.admit(_info("node_03", days_left=-0.1))
    assert [r["client"] for r in gate.refusals] == ["node_01", "node_01", "node_02", "node_03"]


def test_client_checks_its_certificate_and_key_before_connecting(ca_dir, tmp_path):
    p = fedad("certs", "--out", str(ca_dir), "--client", "node_11", "--client", "node_12")
    assert p.returncode == 0, p.stderr
    data = tmp_path / "shard.csv"
    data.write_text("a,b\n1,2\n")

    def client(*args):
        return run_client("127.0.0.1:1", data, "--connect-timeout", "1", *args)

    ca = str(ca_dir / "ca.pem")
    wrong_key = client(
        "--root-certificates",
        ca,
        "--tls-certificate",
        str(ca_dir / "node_11.pem"),
        "--tls-key",
        str(ca_dir / "node_12.key"),
    )
    assert wrong_key.returncode == 2 and "is not the key of" in wrong_key.stderr
    no_ca = client("--tls-certificate", str(ca_dir / "node_11.pem"), "--tls-key", str(ca_dir / "node_11.key"))
    assert no_ca.returncode == 2 and "--root-certificates" in no_ca.stderr
    half = client("--root-certificates", ca, "--tls-certificate", str(ca_dir / "node_11.pem"))
    assert half.returncode == 2 and "together" in half.stderr
    bad_name = client("--name", "../etc/x")
    assert bad_name.returncode == 2 and "not a valid node name" in bad_name.stderr

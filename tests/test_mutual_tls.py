"""Trusted edge nodes over real gRPC with real certificates: mutual TLS, names bound to certificates,
revocation, expiry, one connection per name; without TLS: name validation and the operator's feature schema."""

from __future__ import annotations

import datetime as dt
import json
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest
from procs import ENV, finish, free_port, rounds, start_client, start_server, wait_for

pytestmark = pytest.mark.integration

SCRIPTED = str(Path(__file__).with_name("scripted_client.py"))


def fedad(*args: str, cwd: Path | None = None) -> subprocess.CompletedProcess:
    p = subprocess.run(
        [sys.executable, "-m", "fedad.common.cli", *args], capture_output=True, text=True, env=ENV, cwd=cwd
    )
    assert p.returncode == 0, p.stderr
    return p


def scripted(address: str, data: Path, name: str, log: Path, *args: str) -> subprocess.Popen:
    cmd = [sys.executable, SCRIPTED, "--server", address, "--data", str(data), "--name", name, *args]
    return subprocess.Popen(cmd, stdout=open(log, "a"), stderr=subprocess.STDOUT, env=ENV)


@pytest.fixture(scope="module")
def plant(tmp_path_factory):
    from fedad.common.synth import write_plant

    d = tmp_path_factory.mktemp("plant")
    write_plant(d, nodes=6, records=36_000, seed=5, formats=("csv",))
    return sorted(d.glob("node_*.csv"))


def _expired_certificate(certs: Path, out: Path) -> tuple[Path, Path]:
    """A node_06 certificate from the plant CA that expired yesterday."""
    from fedad.common.pki import (
        cert_pem,
        issue_client_certificate,
        key_pem,
        load_certificate,
        load_private_key,
        new_key,
    )

    ca = load_certificate((certs / "ca.pem").read_bytes())
    ca_key = load_private_key((certs / "ca.key").read_bytes())
    key = new_key()
    then = dt.datetime.now(dt.UTC) - dt.timedelta(days=3)
    cert = issue_client_certificate("node_06", key.public_key(), ca, ca_key, days=2, now=then)
    out.mkdir()
    (out / "node_06.pem").write_bytes(cert_pem(cert))
    (out / "node_06.key").write_bytes(key_pem(key))
    return out / "node_06.pem", out / "node_06.key"


def test_mutual_tls_refuses_impostors_and_revoked_nodes_and_admits_a_late_enrolled_node(plant, tmp_path):
    certs, other = tmp_path / "certs", tmp_path / "other-ca"
    fedad(
        "certs",
        "--out",
        str(certs),
        "--host",
        "localhost",
        *[a for n in ("node_01", "node_02", "node_03", "node_04") for a in ("--client", n)],
    )
    fedad("certs", "--out", str(other), "--host", "localhost", "--client", "node_03")
    # node_05 enrolls the real way: its key never leaves it; the CA signs its request
    edge = tmp_path / "edge05"
    fedad("enroll", "--name", "node_05", "--out", str(edge))
    fedad(
        "certs", "sign", "--csr", str(edge / "node_05.csr"), "--ca-dir", str(certs), "--name", "node_05", "--days", "30"
    )
    expired_pem, expired_key = _expired_certificate(certs, tmp_path / "expired")
    ca = str(certs / "ca.pem")

    def tls(name: str, where: Path = certs) -> list[str]:
        return [
            "--root-certificates",
            ca,
            "--tls-certificate",
            str(where / f"{name}.pem"),
            "--tls-key",
            str(where / f"{name}.key"),
        ]

    port = free_port()
    address = f"localhost:{port}"
    logs, out, revoked = tmp_path / "logs", tmp_path / "run", tmp_path / "revoked.txt"
    for d in (logs, logs / "impostor", logs / "twin"):
        d.mkdir()
    server = start_server(
        f"127.0.0.1:{port}",
        out,
        "--rounds",
        "8",
        "--min-clients",
        "2",
        "--local-epochs",
        "1",
        "--certificates",
        ca,
        str(certs / "server.pem"),
        str(certs / "server.key"),
        "--revoked",
        str(revoked),
    )
    short = ("--connect-timeout", "8")
    procs = {
        # node_02 is honest but slow (3 s more per round): it paces the rounds so that the test can act mid-run
        "node_02": scripted(
            address,
            plant[1],
            "node_02",
            logs / "node_02.log",
            "--fit-sleep",
            "3",
            "--tls",
            ca,
            str(certs / "node_02.pem"),
            str(certs / "node_02.key"),
        ),
        "node_03": start_client(address, plant[2], "node_03", logs, *tls("node_03")),
        "node_04": start_client(address, plant[3], "node_04", logs, *tls("node_04")),
        # holds node_01's certificate and key, claims to be node_02
        "impostor": start_client(address, plant[0], "node_02", logs / "impostor", *tls("node_01")),
        "no-cert": start_client(address, plant[5], "nocert", logs, "--root-certificates", ca, *short),
        "other-ca": start_client(
            address,
            plant[5],
            "otherca",
            logs,
            "--root-certificates",
            ca,
            "--tls-certificate",
            str(other / "node_03.pem"),
            "--tls-key",
            str(other / "node_03.key"),
            *short,
        ),
        "expired": start_client(
            address,
            plant[5],
            "node_06",
            logs,
            "--root-certificates",
            ca,
            "--tls-certificate",
            str(expired_pem),
            "--tls-key",
            str(expired_key),
            *short,
        ),
    }
    everyone = [server, *procs.values()]
    wait_for(lambda: len(rounds(out)) >= 1, 240, "round 1", everyone)
    # mid-run: a second process with node_03's certificate, the late node_05, and node_04 revoked
    procs["twin"] = start_client(address, plant[5], "node_03", logs / "twin", *tls("node_03"))
    procs["node_05"] = start_client(
        address,
        plant[4],
        "node_05",
        logs,
        "--root-certificates",
        ca,
        "--tls-certificate",
        str(edge / "node_05.pem"),
        "--tls-key",
        str(edge / "node_05.key"),
    )
    wait_for(
        lambda: any("node_04" in r["clients"] for r in rounds(out)),
        240,
        "a round with node_04",
        [server, *procs.values()],
    )
    revoked.write_text("# revoked by the operator\nnode_04\n")
    at_revocation = len(rounds(out))
    codes = dict(zip(["server", *procs], finish([server, *procs.values()], timeout=400), strict=True))
    text = (tmp_path / "run-server.log").read_text()
    assert codes["server"] == 0, text[-3000:]
    assert {k: codes[k] for k in ("node_02", "node_03", "node_05")} == {"node_02": 0, "node_03": 0, "node_05": 0}
    assert {k: codes[k] for k in ("node_04", "impostor", "twin")} == {"node_04": 2, "impostor": 2, "twin": 2}
    for k in ("no-cert", "other-ca", "expired"):  # the TLS handshake itself fails: they never get in
        assert codes[k] != 0, k
    report = json.loads((out / "report.json").read_text())
    recs = report["rounds"]
    assert len(recs) == 8
    joined = set().union(*(r["clients"] for r in recs))
    assert joined == {"node_02", "node_03", "node_04", "node_05"}, recs  # nobody else, under any name
    # the impostor: refused as what its certificate says it is, with the name it claimed
    assert "claims the name 'node_02' but its certificate is node_01" in report["refused"]["node_01"]
    # node_04: refused from its next message after the revocation, the run went on without it
    assert "revoked" in report["refused"]["node_04"]
    with_04 = [r["round"] for r in recs if "node_04" in r["clients"]]
    assert with_04 and max(with_04) <= at_revocation + 1, (with_04, at_revocation)
    assert "revoked" in (logs / "node_04.log").read_text()
    # two processes with one certificate: the second connection is refused and reported, the first goes on
    twin = [r for r in report["refused_connections"] if r["client"] == "node_03"]
    assert twin and "already open" in twin[0]["reason"]
    assert "already open" in (logs / "twin" / "node_03.log").read_text()
    assert all("node_03" in r["clients"] for r in recs[1:])
    # the correctly enrolled late node joined and stayed to the end
    assert "node_05" in recs[-1]["clients"] and "node_05" not in recs[0]["clients"]
    assert recs[-1]["clients"] == ["node_02", "node_03", "node_05"]
    assert report["metrics"]["f1"] is not None
    for name in ("nocert", "otherca", "node_06"):
        assert name not in text


def test_without_tls_names_are_validated_and_the_schema_is_the_operators(plant, tmp_path):
    logs, out = tmp_path / "logs", tmp_path / "run"
    logs.mkdir()
    (logs / "impostor").mkdir()
    bad = tmp_path / "sybil.csv"
    df = pd.read_csv(plant[3])
    df.drop(columns=[df.columns[2]]).to_csv(bad, index=False)
    features = tmp_path / "features.txt"
    features.write_text("\n".join(c for c in df.columns if c not in ("timestamp", "label")) + "\n")
    address = f"127.0.0.1:{free_port()}"
    # three sybils with their own columns connect first; the operator's --features decides, not the count
    sybils = [start_client(address, bad, f"sybil_{i}", logs) for i in range(3)]
    server = start_server(
        address, out, "--rounds", "2", "--min-clients", "2", "--local-epochs", "1", "--features", str(features)
    )
    forged = [
        scripted(address, plant[4], "node_09\n10:00:00 INFO [server] round 9/9 (FORGED LINE)", logs / "forged.log"),
        scripted(address, plant[5], "../../../../tmp/x", logs / "path.log"),
    ]
    wait_for(lambda: (out / "rounds.jsonl").exists(), 240, "the statistics phase", [server, *sybils, *forged])
    honest = [start_client(address, plant[i], f"node_0{i + 1}", logs) for i in range(2)]
    codes = finish([server, *honest, *sybils, *forged], timeout=400)
    text = (tmp_path / "run-server.log").read_text()
    assert codes == [0, 0, 0, 2, 2, 2, 2, 2], text[-3000:]
    report = json.loads((out / "report.json").read_text())
    assert all(r["clients"] == ["node_01", "node_02"] for r in report["rounds"])
    for i in range(3):
        assert "features" in report["refused"][f"sybil_{i}"]
    invalid = {k: v for k, v in report["refused"].items() if "invalid node name" in v}
    assert len(invalid) == 2 and all(k.startswith("cid-") for k in invalid), report["refused"]
    assert not any(line.startswith("10:00:00 INFO [server] round 9/9") for line in text.splitlines())
    assert "../../../../tmp/x" not in json.dumps(list(report["refused"]))  # never used as a key or a path
    assert "(FORGED LINE)" not in "".join(report["refused"])

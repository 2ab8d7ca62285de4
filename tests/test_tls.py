"""TLS over real gRPC: `fedad certs` makes a CA, a server certificate and node certificates; TLS is mutual."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest
from procs import ENV, finish, free_port, run_client, start_client, start_server

pytestmark = pytest.mark.integration


def test_tls_federation_and_a_client_without_the_ca(tmp_path):
    from fedad.common.synth import write_plant

    write_plant(tmp_path / "plant", nodes=2, records=20_000, seed=4, formats=("csv",))
    shards = sorted((tmp_path / "plant").glob("node_*.csv"))
    certs = tmp_path / "certs"
    p = subprocess.run(
        [
            sys.executable,
            "-m",
            "fedad.common.cli",
            "certs",
            "--out",
            str(certs),
            "--host",
            "localhost",
            "--client",
            "node_01",
            "--client",
            "node_02",
        ],
        capture_output=True,
        text=True,
        env=ENV,
    )
    assert p.returncode == 0, p.stderr
    assert (certs / "server.key").stat().st_mode & 0o777 == 0o600
    again = subprocess.run(
        [sys.executable, "-m", "fedad.common.cli", "certs", "--out", str(certs)],
        capture_output=True,
        text=True,
        env=ENV,
    )
    assert again.returncode == 2 and "--force" in again.stderr

    port = free_port()
    address = f"localhost:{port}"
    logs = tmp_path / "logs"
    logs.mkdir()
    out = tmp_path / "run"
    server = start_server(
        f"127.0.0.1:{port}",
        out,
        "--rounds",
        "2",
        "--min-clients",
        "2",
        "--certificates",
        str(certs / "ca.pem"),
        str(certs / "server.pem"),
        str(certs / "server.key"),
    )
    # no CA: the client says the server speaks TLS and what to pass (not "could not reach"), exit 2
    plain = run_client(address, shards[0], "--connect-timeout", "60")
    assert plain.returncode == 2, plain.stderr
    assert f"the server at {address} speaks TLS: pass --root-certificates" in plain.stderr
    assert "could not reach" not in plain.stderr and "Traceback" not in plain.stderr
    # the CA alone is not enough any more: TLS is mutual, a node needs a client certificate, and is told so
    ca_only = run_client(address, shards[0], "--root-certificates", str(certs / "ca.pem"), "--connect-timeout", "60")
    assert ca_only.returncode == 2, ca_only.stderr
    assert "asks for a client certificate: pass --tls-certificate" in ca_only.stderr
    # --name defaults to the certificate's subject (not to the data file's stem: the files are renamed)
    tls = ("--root-certificates", str(certs / "ca.pem"))
    clients = []
    for s in shards:
        data = s.rename(s.with_name(f"site-{s.stem[-1]}.csv"))
        pem, key = str(certs / f"{s.stem}.pem"), str(certs / f"{s.stem}.key")
        clients.append(start_client(address, data, None, logs, *tls, "--tls-certificate", pem, "--tls-key", key))
    assert finish([server, *clients]) == [0, 0, 0], (tmp_path / "run-server.log").read_text()[-2000:]
    report = json.loads((out / "report.json").read_text())
    assert [r["clients"] for r in report["rounds"]] == [["node_01", "node_02"]] * 2
    server_log = (tmp_path / "run-server.log").read_text()
    assert "TLS on, client certificates required" in server_log
    assert "WRONG_VERSION_NUMBER" not in server_log  # gRPC's handshake lines stay out of the log
    assert report["refused_connections"] == []


def test_a_tls_client_at_a_plaintext_server_is_told_so(tmp_path):
    from fedad.common.synth import write_plant

    write_plant(tmp_path / "plant", nodes=1, records=4_000, seed=4, formats=("csv",))
    certs = tmp_path / "certs"
    subprocess.run(
        [sys.executable, "-m", "fedad.common.cli", "certs", "--out", str(certs)],
        check=True,
        env=ENV,
        capture_output=True,
    )
    address = f"127.0.0.1:{free_port()}"
    out = tmp_path / "run"
    server = start_server(address, out, "--rounds", "1", "--min-clients", "1", "--wait-timeout", "120")
    try:
        p = run_client(
            address,
            tmp_path / "plant" / "node_01.csv",
            "--root-certificates",
            str(certs / "ca.pem"),
            "--connect-timeout",
            "60",
        )
    finally:
        server.kill()
        server.wait()
    assert p.returncode == 2, p.stderr
    assert f"the server at {address} does not speak TLS: drop --root-certificates" in p.stderr
    assert "Traceback" not in p.stderr

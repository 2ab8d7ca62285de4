"""Integration: a contrastive federation over real gRPC on 127.0.0.1 (3 clients, 2 rounds) with alignment."""

from __future__ import annotations

import json

import numpy as np
import pytest
from procs import finish, free_port, rounds, start_client, start_server

pytestmark = pytest.mark.integration


def test_contrastive_federation_sends_the_global_embedding_and_scores(tmp_path):
    from fedad.common.synth import write_plant

    plant = tmp_path / "plant"
    write_plant(plant, nodes=3, records=30_000, seed=3, formats=("csv",))
    shards = sorted(plant.glob("node_*.csv"))
    out, logs = tmp_path / "run", tmp_path / "logs"
    logs.mkdir()
    address = f"127.0.0.1:{free_port()}"
    node_model = tmp_path / "node0-model"
    clients = [
        start_client(address, shards[i], f"node{i}", logs, *(["--model-out", str(node_model)] if i == 0 else []))
        for i in range(3)
    ]
    server = start_server(
        address,
        out,
        "--rounds",
        "2",
        "--min-clients",
        "3",
        "--local-epochs",
        "3",
        "--model",
        "contrastive",
        "--strategy",
        "trust",
        "--mu",
        "0.5",
    )
    codes = finish([server, *clients], timeout=600)
    assert codes == [0, 0, 0, 0], (tmp_path / "run-server.log").read_text()[-3000:]
    recs = rounds(out)
    assert [r["round"] for r in recs] == [1, 2]
    assert all(r["clients"] == ["node0", "node1", "node2"] for r in recs)
    # round 1 has no global embedding yet; in round 2 every client aligns to the mean of round 1's embeddings
    for i in range(3):
        log = (logs / f"node{i}.log").read_text()
        assert "round 1: aligning" not in log and "round 2: aligning to the global embedding (8 values" in log, log
        assert "Traceback" not in log
    state = json.loads((out / "checkpoint" / "state.json").read_text())
    g = np.asarray(state["strategy"]["global_embedding"])
    assert g.shape == (8,) and np.all(np.isfinite(g))
    report = json.loads((out / "report.json").read_text())
    assert report["metrics"]["roc_auc"] > 0.6, report["metrics"]  # generous: 2 short rounds
    from fedad.common.detector import AutoencoderDetector

    det = AutoencoderDetector.load(node_model, device="cpu")
    assert det.model_.mu == 0.5 and float(det.model_.score_scale[1]) != 1.0  # calibrated on node0's data


def test_contrastive_under_secure_robust_aligns_to_the_blind_decrypted_mean_direction(tmp_path):
    import subprocess

    from procs import ENV, keyholder_cmd
    from test_secure_robust_federation import cli

    keys, certs, plant = tmp_path / "keys", tmp_path / "certs", tmp_path / "plant"
    cli("keygen", "--bits", "1024", "--out", str(keys))
    cli("certs", "--out", str(certs), "--host", "localhost", "--host", "127.0.0.1", "--client", "aggregator")
    cli("data", "synth", "--nodes", "3", "--records", "15000", "--seed", "3", "--format", "csv", "--out", str(plant))
    shards = sorted(plant.glob("node_*.csv"))
    run, logs = tmp_path / "run", tmp_path / "logs"
    logs.mkdir()
    kh_address, address = f"127.0.0.1:{free_port()}", f"127.0.0.1:{free_port()}"
    keyholder = subprocess.Popen(
        [
            *keyholder_cmd(),
            "--listen",
            kh_address,
            "--private-key",
            str(keys / "private.key"),
            "--certificates",
            str(certs / "ca.pem"),
            str(certs / "server.pem"),
            str(certs / "server.key"),
            "--aggregator-cert",
            str(certs / "aggregator.pem"),
            "--max-clients",
            "4",
            "--sketch-rows",
            "8",
        ],
        stdout=open(tmp_path / "keyholder.log", "w"),
        stderr=subprocess.STDOUT,
        env=ENV,
    )
    procs = [keyholder]
    try:
        server = start_server(
            address,
            run,
            "--strategy",
            "secure-robust",
            "--public-key",
            str(keys / "public.key"),
            "--keyholder",
            kh_address,
            "--keyholder-certificates",
            str(certs / "ca.pem"),
            str(certs / "aggregator.pem"),
            str(certs / "aggregator.key"),
            "--sketch-rows",
            "8",
            "--model",
            "contrastive",
            "--rounds",
            "2",
            "--min-clients",
            "3",
            "--local-epochs",
            "2",
            "--wait-timeout",
            "120",
            "--round-timeout",
            "300",
        )
        clients = [
            start_client(
                address, shard, f"node{i}", logs, "--public-key", str(keys / "public.key"), "--connect-timeout", "120"
            )
            for i, shard in enumerate(shards)
        ]
        procs += [server, *clients]
        codes = finish([server, *clients], timeout=600)
        assert codes == [0, 0, 0, 0], (tmp_path / "run-server.log").read_text()[-3000:]
    finally:
        for p in procs:
            if p.poll() is None:
                p.kill()
                p.wait()
    assert [r["round"] for r in rounds(run)] == [1, 2]
    for i in range(3):
        log = (logs / f"node{i}.log").read_text()
        assert "round 2: aligning to the global embedding (8 values" in log and "direction only)" in log, log
        assert "Traceback" not in log
    g = np.asarray(json.loads((run / "checkpoint" / "state.json").read_text())["strategy"]["global_embedding"])
    assert g.shape == (8,) and 0.0 < np.linalg.norm(g) <= 1.0 + 1e-6  # a mean of unit vectors

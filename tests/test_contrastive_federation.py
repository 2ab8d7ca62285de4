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
    clients = [start_client(address, shards[i], f"node{i}", logs,
                            *(["--model-out", str(node_model)] if i == 0 else [])) for i in range(3)]
    server = start_server(address, out, "--rounds", "2", "--min-clients", "3", "--local-epochs", "3",
                          "--model", "contrastive", "--strategy", "trust", "--mu", "0.5")
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

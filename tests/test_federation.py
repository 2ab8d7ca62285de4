"""Integration tests: fedad-server and fedad-client as separate processes over real gRPC on 127.0.0.1."""

from __future__ import annotations

import json
import signal

import numpy as np
import pandas as pd
import pytest
from procs import checkpointed, finish, free_port, rounds, run_client, start_client, start_server, wait_for

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def plant(tmp_path_factory):
    from fedad.common.synth import write_plant

    d = tmp_path_factory.mktemp("plant")
    write_plant(d, nodes=4, records=80_000, seed=3, formats=("csv",))
    return sorted(d.glob("node_*.csv"))


def _run_dir(tmp_path):
    out = tmp_path / "run"
    (tmp_path / "logs").mkdir()
    return out, tmp_path / "logs"


def test_three_clients_train_a_useful_global_model(plant, tmp_path):
    out, logs = _run_dir(tmp_path)
    address = f"127.0.0.1:{free_port()}"
    # clients first: start order must not matter
    node_model = tmp_path / "node0-model"
    clients = [
        start_client(address, plant[i], f"node{i}", logs, *(["--model-out", str(node_model)] if i == 0 else []))
        for i in range(3)
    ]
    server = start_server(address, out, "--rounds", "4", "--min-clients", "3", "--local-epochs", "4")
    codes = finish([server, *clients])
    assert codes == [0, 0, 0, 0], (tmp_path / "run-server.log").read_text()[-3000:]
    recs = rounds(out)
    assert [r["round"] for r in recs] == [1, 2, 3, 4]
    assert all(r["clients"] == ["node0", "node1", "node2"] for r in recs)
    assert recs[-1]["loss"] < recs[0]["loss"]
    assert all(r["bytes_up"] > 0 and r["bytes_down"] > 0 for r in recs)
    assert (out / "checkpoint" / "state.json").is_file() and (out / "checkpoint" / "weights.npz").is_file()
    report = json.loads((out / "report.json").read_text())
    m = report["metrics"]
    assert m["f1"] > 0.5 and m["roc_auc"] > 0.8, m  # chance is F1 ~0.1 at a 5% anomaly rate
    # the federated metrics are the nodes' summed confusion counts, recomputed here from per_client_test
    tp, fp, tn, fn = (sum(c[k] for c in report["per_client_test"].values()) for k in ("tp", "fp", "tn", "fn"))
    assert sorted(report["per_client_test"]) == ["node0", "node1", "node2"] and tp + fn > 0
    expected = {"precision": tp / (tp + fp), "recall": tp / (tp + fn), "far": fp / (fp + tn), "mar": fn / (tp + fn)}
    for key, value in expected.items():
        assert m[key] == pytest.approx(value), (key, m[key], value)
    assert {"round", "clients", "loss", "bytes_up", "bytes_down", "seconds"} <= set(report["rounds"][0])
    for png in ("loss.png", "clients.png", "roc.png"):
        assert (out / png).stat().st_size > 1000
    # site scaling (default): each node pairs the global weights with its own scaler in a regular model dir
    from fedad.common.detector import AutoencoderDetector

    det = AutoencoderDetector.load(node_model)
    X = pd.read_csv(plant[0]).drop(columns=["timestamp", "label"]).to_numpy()
    assert det.decision_function(X).shape == (len(X),)
    assert det.threshold_ == pytest.approx(report["threshold"])
    with np.load(out / "global_weights.npz") as z:
        assert len(z.files) == len(det.model_.state_dict())
    # no client log contains a traceback; the server log has no colour codes
    for log in logs.iterdir():
        assert "Traceback" not in log.read_text(), log.read_text()[-2000:]
    assert "\x1b[" not in (tmp_path / "run-server.log").read_text()


def test_killed_client_is_recorded_and_the_run_completes(plant, tmp_path):
    out, logs = _run_dir(tmp_path)
    address = f"127.0.0.1:{free_port()}"
    server = start_server(address, out, "--rounds", "6", "--min-clients", "3", "--local-epochs", "6")
    clients = [start_client(address, plant[i], f"node{i}", logs) for i in range(4)]
    wait_for(
        lambda: any(len(r["clients"]) == 4 for r in rounds(out)), 180, "a round with all 4 clients", [server, *clients]
    )
    clients[3].send_signal(signal.SIGKILL)
    codes = finish([server, *clients[:3]])
    assert codes == [0, 0, 0, 0], (tmp_path / "run-server.log").read_text()[-3000:]
    recs = rounds(out)
    assert len(recs) == 6
    assert recs[-1]["clients"] == ["node0", "node1", "node2"]
    report = json.loads((out / "report.json").read_text())
    # the failure is recorded: in the round it died in, or it is simply absent from the rounds after
    # the dead node is named (never "unknown"): in the failed list of the round it died in or the next one,
    # in report.json's failures and in a server log line
    died = [r["round"] for r in recs if "node3" in r["failed"]]
    assert died, recs
    assert not any("unknown" in r["failed"] for r in recs), recs
    assert any(f["client"] == "node3" for f in report["failures"]), report["failures"]
    assert "client node3 disconnected" in (tmp_path / "run-server.log").read_text()
    # the nodes left keep the default continue quorum (0.6 x those that started round 1): named as dropped, once
    dropped = [r["round"] for r in recs if "node3" in r["dropped"]]
    assert len(dropped) == 1 and dropped[0] in (died[0], died[0] + 1), recs
    assert report["participation"]["started"] == recs[0]["clients"]  # --min-clients 3: a 4th may join later
    assert report["participation"]["dropped"] == {"node3": dropped[0]}
    assert report["metrics"]["f1"] > 0.5


def test_server_resumes_after_a_crash(plant, tmp_path):
    out, logs = _run_dir(tmp_path)
    port = free_port()
    address = f"127.0.0.1:{port}"
    args = ("--rounds", "5", "--min-clients", "2", "--local-epochs", "3", "--scaling", "global")
    server = start_server(address, out, *args)
    clients = [start_client(address, plant[i], f"node{i}", logs, "--connect-timeout", "90") for i in range(2)]

    wait_for(lambda: checkpointed(out) >= 2, 120, "checkpoint of round 2", [server, *clients])
    server.send_signal(signal.SIGKILL)
    server.wait()
    crashed_at = checkpointed(out)
    assert crashed_at < 5
    server = start_server(address, out, *args, "--resume")
    codes = finish([server, *clients])
    assert codes == [0, 0, 0], (tmp_path / "run-server.log").read_text()[-3000:]
    recs = rounds(out)
    assert [r["round"] for r in recs] == [1, 2, 3, 4, 5]
    assert f"resuming after round {crashed_at}" in (tmp_path / "run-server.log").read_text()
    resumed = json.loads((out / "report.json").read_text())["resumed"]  # the report says which round was replayed
    assert [(r["after_round"], r["replayed_round"]) for r in resumed] == [(crashed_at, crashed_at + 1)], resumed
    # measured 0.737 (2 nodes, 5 rounds x 3 epochs, global scaling); a model half as good fails
    assert json.loads((out / "report.json").read_text())["metrics"]["f1"] > 0.55
    # global scaling: the server's model directory is directly usable (global scaler, weights, threshold)
    from fedad.common.detector import AutoencoderDetector

    det = AutoencoderDetector.load(out / "model")
    X = pd.read_csv(plant[3]).drop(columns=["timestamp", "label"]).to_numpy()
    assert det.decision_function(X).shape == (len(X),)


def test_a_resumed_server_goes_on_with_the_continue_quorum_when_a_node_died_before_the_restart(plant, tmp_path):
    """A node killed before the server's restart never comes back: the resumed run must not wait for
    --min-clients (all three) but go on with the continue quorum of the nodes that started (two of three)."""
    out, logs = _run_dir(tmp_path)
    address = f"127.0.0.1:{free_port()}"
    args = ("--rounds", "4", "--min-clients", "3", "--min-fit-clients", "2", "--local-epochs", "2")
    args += ("--wait-timeout", "120")
    server = start_server(address, out, *args)
    clients = [start_client(address, plant[i], f"node{i}", logs, "--connect-timeout", "120") for i in range(3)]

    wait_for(lambda: checkpointed(out) >= 1, 180, "checkpoint of round 1", [server, *clients])
    clients[2].send_signal(signal.SIGKILL)  # node2 is gone for good
    clients[2].wait()
    wait_for(lambda: checkpointed(out) >= 2, 180, "checkpoint of round 2 without node2", [server, *clients[:2]])
    server.send_signal(signal.SIGKILL)
    server.wait()
    crashed_at = checkpointed(out)
    server = start_server(address, out, *args, "--resume")
    codes = finish([server, *clients[:2]])
    log = (tmp_path / "run-server.log").read_text()
    assert codes == [0, 0, 0], log[-3000:]
    report = json.loads((out / "report.json").read_text())
    assert [r["round"] for r in report["rounds"]] == [1, 2, 3, 4]
    assert [r["after_round"] for r in report["resumed"]] == [crashed_at]
    assert all(sorted(r["clients"]) == ["node0", "node1"] for r in report["rounds"] if r["round"] > crashed_at)


def test_client_with_wrong_features_is_refused_and_the_run_goes_on(plant, tmp_path):
    out, logs = _run_dir(tmp_path)
    bad = tmp_path / "bad.csv"
    df = pd.read_csv(plant[3])
    df.drop(columns=[df.columns[3]]).to_csv(bad, index=False)
    features = tmp_path / "features.txt"
    features.write_text(",".join(c for c in df.columns if c not in ("timestamp", "label")) + "\n")
    address = f"127.0.0.1:{free_port()}"
    # 3 good nodes and 1 bad one; the operator fixed the columns (--features): whether the bad one is in the
    # statistics phase or joins later (checked on admission), it is refused and the run goes on with the 3 good ones
    server = start_server(
        address, out, "--rounds", "3", "--min-clients", "3", "--wait-timeout", "120", "--features", str(features)
    )
    procs = [start_client(address, bad, "badnode", logs)]
    procs += [start_client(address, plant[i], f"node{i}", logs) for i in range(3)]
    codes = finish([server, *procs])
    text = (tmp_path / "run-server.log").read_text()
    assert codes == [0, 2, 0, 0, 0], text[-3000:]
    report = json.loads((out / "report.json").read_text())
    assert "badnode" in report["refused"] and "features" in report["refused"]["badnode"]
    assert all(r["clients"] == ["node0", "node1", "node2"] for r in report["rounds"])
    assert "refusing client badnode" in text
    client_log = (logs / "badnode.log").read_text()
    assert "refused this node" in client_log and "11 features" in client_log
    assert "Traceback" not in client_log


def test_unreachable_server_gives_a_clear_error(plant, tmp_path):
    port = free_port()
    p = run_client(f"127.0.0.1:{port}", plant[0], "--connect-timeout", "3")
    assert p.returncode == 1
    assert f"could not reach the fedad server at 127.0.0.1:{port} within 3 s" in p.stderr
    assert "Traceback" not in p.stderr


def test_a_renamed_column_is_named_on_both_sides_and_recorded(plant, tmp_path):
    out, logs = _run_dir(tmp_path)
    bad = tmp_path / "renamed.csv"
    pd.read_csv(plant[3]).rename(columns={"vibration_rms": "vib_rms"}).to_csv(bad, index=False)
    address = f"127.0.0.1:{free_port()}"
    # long enough rounds (about 1 s each on a quiet machine) that the late node connects before the end
    server = start_server(address, out, "--rounds", "10", "--min-clients", "3", "--local-epochs", "20")
    procs = [start_client(address, plant[i], f"node{i}", logs) for i in range(3)]
    # the renamed node joins while the run goes: it is checked before it may train, and refused
    wait_for(lambda: len(rounds(out)) >= 1, 180, "round 1", [server, *procs])
    late = start_client(address, bad, "renamed", logs)
    codes = finish([server, *procs, late])
    text = (tmp_path / "run-server.log").read_text()
    assert codes == [0, 0, 0, 0, 2], text[-3000:]
    report = json.loads((out / "report.json").read_text())
    assert "renamed: vibration_rms -> vib_rms" in report["refused"]["renamed"], report["refused"]
    assert all("renamed" not in r["clients"] for r in report["rounds"])
    assert "refusing client renamed" in text and "unknown" not in text
    client_log = (logs / "renamed.log").read_text()
    assert "refused this node" in client_log and "vibration_rms -> vib_rms" in client_log, client_log[-2000:]

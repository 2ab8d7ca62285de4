"""fedad-client --stream: 3 nodes score growing files with the newest global model while rounds run (real gRPC)."""

from __future__ import annotations

import json

import numpy as np
import pytest
from procs import finish, free_port, rounds, start_client, start_server, wait_for
from test_telemetry_federation import scrape

pytestmark = pytest.mark.integration

CHUNK = 150


def test_three_clients_stream_while_rounds_run(tmp_path):
    from fedad.common.synth import write_plant

    write_plant(tmp_path / "plant", nodes=3, records=4000, seed=2, formats=("csv",))
    shards = sorted((tmp_path / "plant").glob("node_*.csv"))
    logs = tmp_path / "logs"
    logs.mkdir()
    lines = [s.read_text().splitlines(keepends=True) for s in shards]  # each node streams its own plant's rows
    streams = [tmp_path / f"stream{i}.csv" for i in range(3)]
    for path, text in zip(streams, lines, strict=True):
        path.write_text("".join(text[: 1 + CHUNK]))  # header + the first chunk, before any model exists
    written = [1 + CHUNK] * 3
    address = f"127.0.0.1:{free_port()}"
    out = tmp_path / "run"
    server = start_server(address, out, "--rounds", "5", "--min-clients", "3", "--local-epochs", "1")
    alarms = [tmp_path / f"alarms{i}.jsonl" for i in range(3)]
    mport = free_port()
    clients = [
        start_client(
            address, shard, f"node{i}", logs,
            "--stream", str(streams[i]), "--alarms", str(alarms[i]), "--all-decisions", "--stream-idle-exit", "15",
            *(["--metrics-port", str(mport), "--metrics-host", "127.0.0.1"] if i == 0 else []),
        )
        for i, shard in enumerate(shards)
    ]  # fmt: skip
    live_metrics: dict = {}

    def grow() -> None:
        for i in range(3):
            with open(streams[i], "a") as f:
                f.write("".join(lines[i][written[i] : written[i] + CHUNK]))
            written[i] += CHUNK

    done_rounds = 0

    def next_round_or_end() -> bool:
        return len(rounds(out)) > done_rounds or server.poll() is not None

    try:
        while server.poll() is None:  # one chunk per finished round: the files grow while rounds run
            wait_for(next_round_or_end, 300, f"round {done_rounds + 1}", [server, *clients])
            done_rounds = len(rounds(out))
            m = scrape(mport)  # node0's live-scoring metrics while the federation runs
            if m.get(("fedad_records_scored_total", ()), 0) > 0:
                live_metrics = m
            grow()
        grow()  # after the federation: the nodes go on scoring with the last model
        codes = finish([server, *clients], timeout=300)
    finally:
        for p in (server, *clients):
            if p.poll() is None:
                p.kill()
    assert codes == [0, 0, 0, 0], [(logs / f"node{i}.log").read_text()[-2000:] for i in range(3)]
    assert [r["round"] for r in rounds(out)] == [1, 2, 3, 4, 5]
    for i in range(3):
        got = [json.loads(x) for x in alarms[i].read_text().splitlines()]
        n = written[i] - 1
        assert [d["record"] for d in got] == list(range(n)), f"node{i}: a record lost or scored twice"
        header = lines[i][0].rstrip("\n").split(",")
        t = header.index("timestamp")
        assert [d["time"] for d in got] == [row.rstrip("\n").split(",")[t] for row in lines[i][1 : 1 + n]]
        versions = [int(d["version"]) for d in got]
        assert versions == sorted(versions), f"node{i}: versions went back"
        assert len(set(versions)) >= 2 and set(versions) <= {1, 2, 3, 4, 5}
        assert all(d["latency_ms"] >= 0 and d["threshold"] > 0 for d in got)
        assert any(d["alarm"] for d in got)
        assert "Traceback" not in (logs / f"node{i}.log").read_text()
        if i == 0:
            assert live_metrics, "node0's /metrics never counted a scored record"
            scored = live_metrics[("fedad_records_scored_total", ())]
            # one batch is counted latency first, then records, then alarms: a scrape may fall in between
            assert 0 < scored <= live_metrics[("fedad_scoring_latency_seconds_count", ())] <= n
            assert live_metrics[("fedad_alarms_total", ())] <= sum(d["alarm"] for d in got[: int(scored)])
            assert live_metrics[("fedad_model_version", ())] >= 1


def test_client_stream_adaptive_rule_equals_fedad_score_record_by_record(tmp_path):
    """`fedad-client --stream --rule adaptive`: the records of the final model decide exactly as `fedad score
    --rule adaptive` with the node's saved model on the same records (the rule starts afresh at a hand-over)."""
    import subprocess
    import sys
    import threading
    import time

    import pandas as pd
    from procs import ENV

    from fedad.common.emitter import Emitter, feed_from_file
    from fedad.common.synth import write_plant

    write_plant(tmp_path / "plant", nodes=2, records=8000, seed=3, formats=("csv",))
    shards = sorted((tmp_path / "plant").glob("node_*.csv"))
    logs = tmp_path / "logs"
    logs.mkdir()
    stream = tmp_path / "stream.csv"
    emitter = Emitter([feed_from_file(shards[0], stream)], rate=40)  # node0's own records, replayed live
    emitter.start()
    stop = threading.Event()
    feeding = threading.Thread(target=emitter.run, kwargs={"stop": stop.is_set}, daemon=True)
    address = f"127.0.0.1:{free_port()}"
    out = tmp_path / "run"
    alarms, model = tmp_path / "alarms.jsonl", tmp_path / "model"
    rule = ["--rule", "adaptive", "--smooth", "20", "--collect", "60"]
    server = start_server(address, out, "--rounds", "2", "--min-clients", "2", "--local-epochs", "1")
    clients = [
        start_client(
            address, shards[0], "node0", logs, "--stream", str(stream), "--alarms", str(alarms), "--all-decisions",
            "--stream-idle-exit", "20", "--model-out", str(model), "--threads", "1", *rule,
        ),
        start_client(address, shards[1], "node1", logs, "--threads", "1"),
    ]  # fmt: skip
    feeding.start()
    try:
        wait_for(lambda: server.poll() is not None, 300, "the federation's end", [server, *clients])
        time.sleep(5)  # node0 goes on scoring with the final model
        stop.set()
        feeding.join(timeout=30)
        feed = emitter.feeds[0]
        fault = [feed.line(feed.written + k) for k in range(400)]  # the plant goes on, with a fault in the middle
        for k in range(100, 250):
            cells = fault[k].split(",")
            cells[1:13] = [str(3.0 * float(c) + 10.0) for c in cells[1:13]]  # every sensor jumps
            fault[k] = ",".join(cells)
        with open(stream, "a") as f:
            f.write("".join(fault))
        feed.written += len(fault)  # node0 decides what is left, then exits after 20 s idle
        codes = finish([server, *clients], timeout=300)
    finally:
        stop.set()
        for p in (server, *clients):
            if p.poll() is None:
                p.kill()
    assert codes == [0, 0, 0], (logs / "node0.log").read_text()[-3000:]
    got = [json.loads(x) for x in alarms.read_text().splitlines()]
    written = emitter.feeds[0].written
    assert [d["record"] for d in got] == list(range(written)), "a record lost or scored twice"
    final = got[-1]["version"]
    first = next(i for i, d in enumerate(got) if d["version"] == final)
    assert all(d["version"] == final for d in got[first:])
    assert written - first >= 100, f"only {written - first} records under the final model"
    # the same records, batch: `fedad score --rule adaptive` with the model node0 saved at the end of the run
    lines = stream.read_text().splitlines(keepends=True)
    batch_in = tmp_path / "final.csv"
    batch_in.write_text(lines[0] + "".join(lines[1 + first : 1 + written]))
    scores = tmp_path / "scores.csv"
    r = subprocess.run(
        [sys.executable, "-m", "fedad.common.cli", "score", "--model", str(model), "--data", str(batch_in),
         "--out", str(scores), "--device", "cpu", "--threads", "1", *rule],
        env=ENV, capture_output=True, text=True, timeout=600,
    )  # fmt: skip
    assert r.returncode == 0, r.stderr
    batch = pd.read_csv(scores)
    live = got[first:]
    assert len(batch) == len(live)
    assert [bool(d["alarm"]) for d in live] == batch["is_anomaly"].astype(bool).tolist()
    np.testing.assert_allclose([d["score"] for d in live], batch["score"].to_numpy(), rtol=1e-5, atol=1e-9)
    assert any(d["alarm"] for d in live[-300:-150]) and not all(d["alarm"] for d in live)  # the fault alarms

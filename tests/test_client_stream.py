"""fedad-client --stream: 3 nodes score growing files with the newest global model while rounds run (real gRPC)."""

from __future__ import annotations

import json

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

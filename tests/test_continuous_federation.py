"""fedad-server --rounds 0: rounds go on until a stop file appears, a node joins mid-run, --resume continues."""

from __future__ import annotations

import json

import pytest
from procs import finish, free_port, rounds, start_client, start_server, wait_for

pytestmark = pytest.mark.integration


def test_continuous_rounds_versions_join_stop_and_resume(tmp_path):
    from fedad.common.synth import write_plant

    write_plant(tmp_path / "plant", nodes=3, records=3000, seed=5, formats=("csv",))
    shards = sorted((tmp_path / "plant").glob("node_*.csv"))
    logs = tmp_path / "logs"
    logs.mkdir()
    out, stop = tmp_path / "run", tmp_path / "stop"
    address = f"127.0.0.1:{free_port()}"
    args = ["--rounds", "0", "--round-interval", "1s", "--stop-file", str(stop), "--min-clients", "2"]
    args += ["--keep-versions", "1000"]
    server = start_server(address, out, *args, "--local-epochs", "1")
    procs = [server] + [start_client(address, shards[i], f"node{i}", logs) for i in range(2)]
    try:
        wait_for(lambda: len(rounds(out)) >= 2, 300, "two continuous rounds", procs)
        procs.append(start_client(address, shards[2], "node2", logs))  # a node joins the running federation
        wait_for(lambda: "node2" in rounds(out)[-1]["clients"], 300, "node2 in a round", procs)
        stop.touch()
        codes = finish(procs, timeout=300)
    finally:
        for p in procs:
            if p.poll() is None:
                p.kill()
    assert codes == [0, 0, 0, 0], (tmp_path / "run-server.log").read_text()[-3000:]
    recs = rounds(out)
    last = recs[-1]["round"]
    assert [r["round"] for r in recs] == list(range(1, last + 1)) and last >= 3
    assert sorted(p.name for p in (out / "versions").iterdir()) == [f"round-{r:06d}.npz" for r in range(1, last + 1)]
    report = json.loads((out / "report.json").read_text())
    assert report.get("status", "ok") != "failed" and report["convergence"]["rounds_run"] == last
    assert "continuous run stopped" in report["convergence"]["stop_reason"]

    stop.unlink()  # resume: the version sequence goes on from the checkpoint
    address = f"127.0.0.1:{free_port()}"
    server = start_server(address, out, *args, "--local-epochs", "1", "--resume")
    procs = [server] + [start_client(address, shards[i], f"node{i}", logs) for i in range(2)]
    try:
        wait_for(lambda: rounds(out) and rounds(out)[-1]["round"] > last, 300, "a resumed round", procs)
        stop.touch()
        codes = finish(procs, timeout=300)
    finally:
        for p in procs:
            if p.poll() is None:
                p.kill()
    assert codes == [0, 0, 0], (tmp_path / "run-server.log").read_text()[-3000:]
    recs = rounds(out)
    assert [r["round"] for r in recs] == list(range(1, recs[-1]["round"] + 1))
    assert (out / "versions" / f"round-{last + 1:06d}.npz").is_file()

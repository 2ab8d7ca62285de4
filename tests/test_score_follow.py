"""`fedad score --follow`: live decisions on a growing file or stdin equal `fedad score`'s, record by record."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from fedad.common.cli import main


def _rig(seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    n = 1400
    drive = np.sin(np.arange(n) / 15.0)
    X = np.column_stack([drive, 2 * drive, -drive, 0.5 * drive]) + rng.normal(scale=0.05, size=(n, 4))
    X[700:900, 2] += 4.0
    X[900:, 0] += 0.5
    return X[:400], X[400:]


COLS = ["a", "b", "c", "d"]


@pytest.fixture(scope="module")
def model(tmp_path_factory):
    d = tmp_path_factory.mktemp("follow")
    train, stream = _rig()
    pd.DataFrame(train, columns=COLS).to_csv(d / "train.csv", index=False)
    frame = pd.DataFrame(stream, columns=COLS)
    frame.insert(0, "timestamp", [f"t{i}" for i in range(len(stream))])
    frame.to_csv(d / "stream.csv", index=False)
    assert (
        main(["train", "--data", str(d / "train.csv"), "--epochs", "20", "--out", str(d / "m"), "--device", "cpu"]) == 0
    )
    return d


def _decisions(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines()]


@pytest.mark.parametrize("rule", ["threshold", "adaptive"])
def test_follow_equals_batch_score_record_by_record(model, rule, capsys):
    extra = ["--rule", rule] + (["--smooth", "20"] if rule == "adaptive" else [])
    base = ["score", "--model", str(model / "m"), "--data", str(model / "stream.csv"), "--device", "cpu", *extra]
    assert main([*base, "--out", str(model / f"batch-{rule}.csv")]) == 0
    live = model / f"live-{rule}.jsonl"
    assert main([*base, "--follow", "--idle-exit", "0", "--alarms", str(live), "--all-decisions"]) == 0
    batch = pd.read_csv(model / f"batch-{rule}.csv")
    got = _decisions(live)
    assert [d["record"] for d in got] == list(range(len(batch)))
    assert [d["time"] for d in got[:2]] == ["t0", "t1"]
    assert batch["is_anomaly"].sum() > 0
    np.testing.assert_array_equal([int(d["alarm"]) for d in got], batch["is_anomaly"].to_numpy())
    np.testing.assert_allclose([d["score"] for d in got], batch["score"].to_numpy(), rtol=1e-4, atol=1e-6)
    assert "records live" in capsys.readouterr().err


def _run(argv: list[str], **kw) -> subprocess.Popen:
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    return subprocess.Popen([sys.executable, "-m", "fedad.common.cli", *argv], env=env, text=True, **kw)


def test_follow_a_growing_file_with_bad_rows(model, tmp_path):
    """The file grows while the scorer follows it; bad rows are reported and skipped; alarms already written stay."""
    lines = (model / "stream.csv").read_text().splitlines(keepends=True)
    grow = tmp_path / "grow.csv"
    grow.write_text("".join(lines[:201]))  # header + 200 normal records
    alarms = tmp_path / "alarms.jsonl"
    proc = _run(
        ["score", "--model", str(model / "m"), "--data", str(grow), "--device", "cpu", "--follow",
         "--alarms", str(alarms), "--idle-exit", "20"],
        stderr=subprocess.PIPE, stdout=subprocess.PIPE,
    )  # fmt: skip
    try:
        with open(grow, "a") as f:
            f.write("t-bad,1,2,3\n")  # wrong column count
            f.write("t-bad2,1,x,3,4\n")  # text in a numeric column
            f.write("".join(lines[201:500]))
            f.flush()
            deadline = time.monotonic() + 120
            while not (alarms.exists() and alarms.stat().st_size) and time.monotonic() < deadline:
                time.sleep(0.2)  # alarms of the fault (records 300..) appear while the file is still open
            first = alarms.read_text()
            assert first, "no alarm while following"
            f.write("".join(lines[500:]))
        out, err = proc.communicate(timeout=180)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 0, err
    assert "line 202: 4 columns, the header has 5; row skipped" in err
    assert "line 203: column 3 is not a number" in err
    got = _decisions(alarms)
    assert alarms.read_text().startswith(first)  # nothing already written is lost
    batch_scores = pd.read_csv(model / "batch-threshold.csv") if (model / "batch-threshold.csv").exists() else None
    records = [d["record"] for d in got]
    assert records == sorted(set(records)) and all(0 <= r < len(lines) - 1 for r in records)
    assert all(g["time"] == f"t{g['record']}" for g in got)  # bad rows skipped: record i is still data row i
    if batch_scores is not None:
        assert records == np.flatnonzero(batch_scores["is_anomaly"].to_numpy()).tolist()


def test_follow_stdin_prints_alarms(model):
    text = (model / "stream.csv").read_text()
    proc = _run(
        ["score", "--model", str(model / "m"), "--data", "-", "--device", "cpu", "--follow", "--print-alarms"],
        stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
    )  # fmt: skip
    out, err = proc.communicate(text, timeout=180)
    assert proc.returncode == 0, err
    got = [json.loads(line) for line in out.splitlines()]
    assert got and all(d["alarm"] and d["version"].startswith("sha-") for d in got)
    assert {d["latency_ms"] >= 0 for d in got} == {True}


def test_follow_bad_options_exit_2(model, capsys):
    base = ["score", "--model", str(model / "m"), "--data", str(model / "stream.csv"), "--follow"]
    assert main(base) == 2
    assert "--alarms PATH or --print-alarms" in capsys.readouterr().err
    assert main(["score", "--model", str(model / "m"), "--data", str(model / "stream.csv")]) == 2
    assert "--out is required" in capsys.readouterr().err


def test_follow_stopped_by_sigterm_ends_cleanly_with_its_summary(model, tmp_path):
    """`docker stop` of a scorer that follows a file forever: exit 0 with the summary line, every decision kept."""
    import signal

    decisions = tmp_path / "decisions.jsonl"
    n = len((model / "stream.csv").read_text().splitlines()) - 1
    proc = _run(
        ["score", "--model", str(model / "m"), "--data", str(model / "stream.csv"), "--device", "cpu", "--follow",
         "--alarms", str(decisions), "--all-decisions"],
        stderr=subprocess.PIPE, stdout=subprocess.PIPE,
    )  # fmt: skip
    try:
        seen, still = -1, time.monotonic()
        while True:  # every record decided, then the scorer waits for more lines (no --idle-exit)
            size = decisions.stat().st_size if decisions.exists() else 0
            if size != seen:
                seen, still = size, time.monotonic()
            if decisions.exists() and len(decisions.read_text().splitlines()) >= n:
                break
            assert proc.poll() is None and time.monotonic() - still < 180, "the scorer stalled or ended"
            time.sleep(0.2)
        proc.send_signal(signal.SIGTERM)
        out, err = proc.communicate(timeout=180)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 0, err
    assert f"scored {n} records live" in err
    assert [d["record"] for d in _decisions(decisions)] == list(range(n))

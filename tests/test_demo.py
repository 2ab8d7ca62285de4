"""fedad demo end to end (real processes on 127.0.0.1): the documented model command works, baselines talk and
are reused."""

from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pandas as pd
import pytest
from procs import ENV

pytestmark = pytest.mark.integration

DEMO = ("--clients", "3", "--rounds", "2", "--records", "6000", "--local-epochs", "1", "--timeout", "600")


def _demo(out) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "fedad.common.cli", "demo", *DEMO, "--out", str(out)],
        capture_output=True,
        text=True,
        env=ENV,
        timeout=900,
    )


def test_demo_writes_the_documented_models_and_reuses_its_baselines(tmp_path):
    out = tmp_path / "demo-results"
    first = _demo(out)
    assert first.returncode == 0, first.stderr[-3000:]
    # the baselines step says what it does, how to skip it, and shows progress
    assert "--no-baselines skips it" in first.stderr and "centralized: epoch" in first.stderr, first.stderr
    # the documented command (README, fedad demo --help): fedad score --model DIR/models/node_01 --data ...
    assert "fedad score --model" in first.stdout
    scores = tmp_path / "scores.csv"
    p = subprocess.run(
        [
            sys.executable,
            "-m",
            "fedad.common.cli",
            "score",
            "--model",
            str(out / "models" / "node_01"),
            "--data",
            str(out / "data" / "node_01.parquet"),
            "--out",
            str(scores),
        ],
        capture_output=True,
        text=True,
        env=ENV,
        timeout=300,
    )
    assert p.returncode == 0, p.stderr
    assert len(pd.read_csv(scores)) == len(pd.read_parquet(out / "data" / "node_01.parquet"))
    assert sorted(d.name for d in (out / "models").iterdir()) == ["node_01", "node_02", "node_03"]
    baselines = json.loads((out / "report.json").read_text())["baselines"]
    assert baselines["centralized"]["f1"] is not None
    # same plant, seed and settings: the baselines are reused, not trained again
    again = _demo(out)
    assert again.returncode == 0, again.stderr[-3000:]
    assert "baselines: reusing" in again.stderr and "centralized: epoch" not in again.stderr
    assert json.loads((out / "report.json").read_text())["baselines"] == baselines


def test_two_runs_of_one_seed_make_the_same_global_model_to_the_bit(tmp_path):
    """Results are aggregated in node-name order, not in the order the clients happened to connect, so the float
    sums are the same each run (4 clients: before, two runs differed by ~1e-7 after 3 rounds)."""
    runs = []
    for name in ("a", "b"):
        out = tmp_path / name
        p = subprocess.run(
            [sys.executable, "-m", "fedad.common.cli", "demo", "--clients", "4", "--rounds", "3", "--records", "8000"]
            + ["--no-baselines", "--timeout", "600", "--out", str(out)],
            capture_output=True,
            text=True,
            env=ENV,
            timeout=900,
        )
        assert p.returncode == 0, p.stderr[-3000:]
        with np.load(out / "global_weights.npz") as w:
            runs.append([w[k] for k in w.files])
        runs[-1].append(json.loads((out / "report.json").read_text())["metrics"])
    first, second = runs
    assert len(first) == len(second) > 1
    for a, b in zip(first[:-1], second[:-1], strict=True):
        assert np.array_equal(a, b)
    assert first[-1] == second[-1]

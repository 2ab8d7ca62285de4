"""Every bench script runs through at its smallest settings: benches call product code, and a change there must
not leave one crashing (bench/secure_robust.py did, on a namespace missing the score options) or measuring
nothing (bench/hostile.py did, its hostile node joining after the last round). Numbers are not checked here:
the benches print them against their targets."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

import pytest
from procs import ENV

pytestmark = pytest.mark.integration

BENCH = Path(__file__).resolve().parents[1] / "bench"

# script -> its smallest run (JSON to {json}, run folders under {tmp}); those reading real data take {data}
SMALL: dict[str, list[str]] = {
    "gpu": ["--models", "dense", "--train-rows", "2000", "--score-rows", "10000", "--repeats", "1"],
    "throughput": ["--models", "dense", "--train-rows", "2000", "--score-rows", "10000", "--repeats", "1"],
    "train_steps": ["--models", "dense", "--rows", "2000", "--epochs", "1", "--repeats", "1"],
    "live": ["--rates", "1000", "--seconds", "1", "--batch-rows", "10000"],
    "load": ["--busy", "1", "--json", "{json}", "--", sys.executable, "-c", "print('hello')"],
    "federation": ["--records", "4000", "--clients", "2", "--rounds", "1", "--local-epochs", "1", "--no-baselines"]
    + ["--out", "{tmp}/run"],
    "compression": ["--clients", "2", "--records", "4000", "--rounds", "1"],
    "async": ["--clients", "2", "--slow", "1", "--slowdown", "2", "--records", "4000", "--rounds", "1"]
    + ["--versions", "1", "--local-epochs", "1", "--timeout", "300"],
    "live_plant": ["--nodes", "2", "--rate", "100", "--seconds", "5", "--round-interval", "2s"]
    + ["--records-per-node", "2000", "--drain", "3", "--keep", "{tmp}/run"],
    "scale": ["--clients", "10", "--distinct-ciphertexts", "2"],
    "paillier": ["--bits", "1024", "--repeats", "1", "--naive-sample", "10", "--naive-limit-s", "1"]
    + ["--round-clients", "2", "--round-rounds", "1", "--round-records", "4000", "--round-epochs", "1"],
    "poisoning": ["--attacks", "sign_flip", "--rounds", "2", "--local-epochs", "1", "--records", "1000", "--jobs", "1"],
    "secure_robust": ["--attacks", "sign_flip", "--rounds", "2", "--records", "1000", "--sketch-rows", "4"]
    + ["--sweep-rows", "2", "--jobs", "1", "--skip-cost"],
}
WITH_DATA: dict[str, list[str]] = {
    "kdd": ["--data", "{data}/kddcup99_10pct", "--train-rows", "2000", "--test-rows", "2000", "--epochs", "1"],
    "skab": ["--data", "{data}/skab", "--limit", "1", "--epochs", "1"],
    "skab_product": ["--data", "{data}/skab", "--limit", "1", "--timeout", "600"],
    "kdd_product": ["--data", "{data}/kddcup99_10pct", "--seeds", "0"],
    "contrastive": ["--data", "{data}", "--seeds", "0", "--rounds", "1", "--local-epochs", "1"]
    + ["--plant-records", "500", "--fit-rows", "200"],
}


def _bench(script: str, args: list[str], tmp: Path, data: Path | None = None) -> subprocess.CompletedProcess:
    fill = {"json": str(tmp / "out.json"), "tmp": str(tmp), "data": str(data)}
    argv = [a.format(**fill) for a in args]
    if "--json" not in argv:
        argv += ["--json", fill["json"]]
    # generous: a slow shared machine stretches a run, it must not fail it
    p = subprocess.run(
        [sys.executable, str(BENCH / f"{script}.py"), *argv], capture_output=True, text=True, env=ENV, timeout=1800
    )
    assert p.returncode == 0, f"{script}: {p.stderr[-3000:]}"
    assert "Traceback" not in p.stderr, p.stderr[-3000:]
    assert json.loads((tmp / "out.json").read_text()), f"{script} wrote an empty --json"
    return p


@pytest.mark.parametrize("script", sorted(SMALL))
def test_bench_runs_at_its_smallest(script, tmp_path):
    _bench(script, SMALL[script], tmp_path)


@pytest.mark.parametrize("script", sorted(WITH_DATA))
def test_bench_on_real_data_runs_at_its_smallest(script, tmp_path, datasets_dir):
    _bench(script, WITH_DATA[script], tmp_path, datasets_dir)


def test_hostile_bench_gets_its_hostile_node_into_the_run(tmp_path):
    args = ["--cases", "zero-count", "--rounds", "3", "--records", "8000", "--csv-mb", "0", "--out", "{tmp}/run"]
    _bench("hostile", args, tmp_path)
    (case,) = json.loads((tmp_path / "out.json").read_text())["cases"]
    assert "never took part" not in case["outcome"], case
    assert any("num_examples" in why for why in case["refusals"]), case  # the lie was seen and refused


def test_ensemble_bench_scores_every_detector_on_the_same_rows(tmp_path):
    p = subprocess.run(
        [sys.executable, str(BENCH / "ensemble.py"), "--seeds", "0", "--records", "2000"],
        capture_output=True,
        text=True,
        env=ENV,
        timeout=1800,
    )
    assert p.returncode == 0, p.stderr[-3000:]
    scored = set(re.findall(r"scoring (\d+) rows", p.stderr))
    assert scored == {"400"}, p.stderr[-3000:]  # dense, the baselines and the ensemble: the held-out fifth
    assert re.search(r"plant seed 0\s+[\d.]+", p.stdout), p.stdout

"""bench/skab.py's adaptive rule for the baselines: a re-baseline refits on the sensors it kept (no data needed)."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

import numpy as np

BENCH = Path(__file__).parents[1] / "bench"


def _skab_bench(monkeypatch):
    monkeypatch.syspath_prepend(str(BENCH))  # the bench imports its neighbours (_options) as a script does
    spec = importlib.util.spec_from_file_location("bench_skab", BENCH / "skab.py")
    module = importlib.util.module_from_spec(spec)
    monkeypatch.setitem(sys.modules, "bench_skab", module)
    spec.loader.exec_module(module)
    return module


def test_a_baseline_rebaselines_on_the_sensors_left_after_the_drifting_ones(monkeypatch):
    skab = _skab_bench(monkeypatch)
    rng = np.random.default_rng(0)
    n = 1600
    X = rng.normal(size=(n, 4))
    X[:, 3] += np.linspace(0.0, 40.0, n)  # a slow drift: left out of the score
    X[700:1000, 0] += 8.0  # a disturbance, then a new normal level that a re-baseline must take in
    X[1000:, 0] += 4.0
    args = skab.parse_args(["--baselines", "iqr", "--models", "none"])
    scores, _, alarms, rebaselines, left_out = skab.adaptive_rule("iqr", X, args)
    assert left_out == 1 and rebaselines >= 1  # the refit saw 3 sensors, as the first fit did
    assert len(scores) == len(alarms) == n and alarms[: skab.TRAIN_ROWS].sum() == 0
    assert alarms[720:1000].mean() > 0.5 and alarms[1300:].mean() < 0.1

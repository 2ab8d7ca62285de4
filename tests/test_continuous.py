"""Continuous federation (fedad.server.continuous, fedad-server --rounds 0): pacing, versions, stop, resume."""

from __future__ import annotations

import numpy as np
import pytest

from fedad.common.errors import FedadError
from fedad.server.continuous import RoundPacer, parse_duration, version_path


def test_durations():
    assert [parse_duration(t) for t in ("90", "90s", "1.5m", "2h", " 0 ")] == [90, 90, 90, 7200, 0]
    for bad in ("", "5 minutes", "-1s", "1d"):
        with pytest.raises(FedadError, match="round-interval"):
            parse_duration(bad)


def _checkpoint(out, value: float) -> None:
    (out / "checkpoint").mkdir(parents=True, exist_ok=True)
    np.savez(out / "checkpoint" / "weights.npz", np.full(3, value))


def test_pacer_keeps_each_version_and_the_newest_only(tmp_path):
    pacer = RoundPacer(tmp_path, interval=0.0, keep=2)
    assert pacer(1) and not (tmp_path / "versions").exists()  # nothing to keep before round 1
    for rnd in range(1, 5):
        _checkpoint(tmp_path, rnd)  # the server checkpoints round rnd, then asks for the next one
        assert pacer(rnd + 1)
    assert sorted(p.name for p in (tmp_path / "versions").iterdir()) == ["round-000003.npz", "round-000004.npz"]
    with np.load(version_path(tmp_path, 4)) as z:
        assert z["arr_0"].tolist() == [4.0, 4.0, 4.0]


def test_pacer_stops_at_the_stop_file_after_keeping_the_last_version(tmp_path):
    stop = tmp_path / "stop"
    pacer = RoundPacer(tmp_path, interval=3600.0, stop_file=stop, poll=0.01)
    assert pacer(1)
    _checkpoint(tmp_path, 1)
    stop.touch()  # a round-interval of an hour is not waited out once the stop file exists
    assert not pacer(2)
    assert version_path(tmp_path, 1).is_file()


def test_pacer_waits_for_the_interval(tmp_path):
    import time

    pacer = RoundPacer(tmp_path, interval=0.3, poll=0.01)
    t0 = time.monotonic()
    assert pacer(1) and pacer(2)
    assert time.monotonic() - t0 >= 0.3  # round 2 starts no earlier than the interval after round 1

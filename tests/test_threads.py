"""--threads: the choice function, the /proc scan and the CLIs' log line."""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from fedad.common.threads import (
    choose_threads,
    count_fedad_processes,
    fedad_pids,
    is_fedad_command,
    parse_threads,
    usable_cores,
)


def test_choose_threads_divides_the_cores_among_fedad_processes():
    assert choose_threads(None, cores=16, processes=1) == 16
    assert choose_threads(None, cores=16, processes=4) == 4
    assert choose_threads(None, cores=16, processes=5) == 3
    # 27 clients on a 2-core host: one thread each, never zero
    assert choose_threads(None, cores=2, processes=27) == 1


def test_choose_threads_is_one_when_unsure_and_honours_an_explicit_count():
    assert choose_threads(None, cores=16, processes=None) == 1
    assert choose_threads(None, cores=16, processes=0) == 1
    assert choose_threads(3, cores=2, processes=27) == 3


def test_parse_threads():
    assert parse_threads("auto") is None
    assert parse_threads("AUTO") is None
    assert parse_threads("4") == 4
    for bad in ("0", "-1", "two", "1.5"):
        with pytest.raises(argparse.ArgumentTypeError):
            parse_threads(bad)


def test_is_fedad_command_recognises_every_launch_form():
    assert is_fedad_command(["/venv/bin/python3", "/venv/bin/fedad-client", "--server", "h:1"])
    assert is_fedad_command(["/venv/bin/fedad-server", "--rounds", "3"])
    assert is_fedad_command(["python", "-m", "fedad.client.main", "--data", "x.csv"])
    assert is_fedad_command(["/venv/bin/python", "/venv/bin/fedad", "train", "--data", "x.csv"])
    assert is_fedad_command(["python", "-m", "fedad.common.cli", "score", "--model", "m"])
    assert not is_fedad_command(["/venv/bin/fedad", "demo"])  # the demo only waits on its children
    assert not is_fedad_command(["python", "-m", "pytest", "tests/test_threads.py"])
    assert not is_fedad_command(["vim", "fedad-client.log"][:1])
    assert not is_fedad_command([])


def _fake_proc(root: Path, cmdlines: dict[str, list[str]]) -> Path:
    for pid, argv in cmdlines.items():
        (root / pid).mkdir()
        (root / pid / "cmdline").write_bytes(b"\0".join(a.encode() for a in argv) + b"\0")
    return root


def test_count_fedad_processes_scans_cmdlines(tmp_path):
    proc = _fake_proc(
        tmp_path,
        {
            "10": ["/v/bin/python", "/v/bin/fedad-client", "--data", "a.csv"],
            "11": ["python", "-m", "fedad.client.main", "--data", "b.csv"],
            "12": ["/v/bin/fedad-server"],
            "13": ["bash"],
            "14": [],  # a kernel thread: empty cmdline
        },
    )
    (proc / "self").mkdir()  # non-numeric entries are ignored
    (proc / "99").mkdir()  # a process that vanished: no cmdline
    assert count_fedad_processes(proc) == 3


def test_count_fedad_processes_is_none_when_unsure(tmp_path):
    assert count_fedad_processes(tmp_path / "missing") is None
    assert count_fedad_processes(_fake_proc(tmp_path, {"5": ["bash"]})) is None


def test_count_sees_a_real_fedad_process():
    """A real `python -m fedad.client.main` child (waiting on --help's pipe) is counted on this host."""
    if not Path("/proc/self/cmdline").exists():
        pytest.skip("no /proc on this host")
    child = subprocess.Popen(
        [sys.executable, "-c", "import sys, time; time.sleep(60)", "-m", "fedad.client.main"],
        stdout=subprocess.DEVNULL,
    )
    try:
        # argv of this child: python -c CODE -m fedad.client.main -> the '-m' pair sits inside argv[:4]
        deadline = time.monotonic() + 60  # the child's argv shows in /proc once it has exec'd
        while child.pid not in (fedad_pids() or []) and time.monotonic() < deadline:
            time.sleep(0.05)
        assert child.pid in (fedad_pids() or [])
        assert os.getpid() not in (fedad_pids() or [])  # pytest is not a fedad process
    finally:
        child.kill()
        child.wait()


def test_usable_cores_matches_affinity():
    assert usable_cores() == len(os.sched_getaffinity(0))


def test_fedad_train_says_its_threads(tmp_path):
    """`fedad train --threads 1` sets and logs the count; auto logs the reason."""
    import numpy as np
    import pandas as pd

    rng = np.random.default_rng(0)
    pd.DataFrame(rng.normal(size=(300, 3)), columns=["a", "b", "c"]).to_csv(tmp_path / "d.csv", index=False)
    for threads, expected in (("1", "torch uses 1 CPU thread(s) (--threads)"), ("auto", "(auto: ")):
        res = subprocess.run(
            [sys.executable, "-m", "fedad.common.cli", "train", "--data", str(tmp_path / "d.csv")]
            + ["--out", str(tmp_path / f"m{threads}"), "--epochs", "1", "--threads", threads],
            capture_output=True,
            text=True,
            timeout=300,
        )
        assert res.returncode == 0, res.stderr
        assert expected in res.stderr
    res = subprocess.run(
        [sys.executable, "-m", "fedad.common.cli", "train", "--data", str(tmp_path / "d.csv")]
        + ["--out", str(tmp_path / "bad"), "--threads", "0"],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert res.returncode == 2 and "argument --threads: expected between 1 and 1024 threads, got 0" in res.stderr

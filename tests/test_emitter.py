"""The live plant's emitter (fedad.common.emitter, `fedad data emit`): due lines only, in order, replayed forever."""

from __future__ import annotations

import subprocess
import sys

import pandas as pd
import pytest
from procs import ENV

from fedad.common.emitter import Emitter, feed_from_file, feed_from_synth
from fedad.common.synth import SAMPLE_SECONDS, generate_node, write_plant


def test_synthetic_feed_is_the_plants_node_with_its_labelled_episodes(tmp_path):
    feed = feed_from_synth(2, 500, 7, tmp_path / "s.csv")
    frame = generate_node(2, 500, 7)
    assert feed.header.rstrip("\n").split(",") == list(frame.columns)
    emitter = Emitter([feed], rate=100)
    emitter.start()
    emitter.tick(emitter.started + 5.0)  # 500 records are due after 5 s at 100/s
    got = pd.read_csv(tmp_path / "s.csv")
    pd.testing.assert_frame_equal(got, frame, check_dtype=False)
    assert got["label"].sum() > 0  # anomaly episodes included


def test_only_due_lines_are_written_and_a_replay_shifts_the_time_on(tmp_path):
    write_plant(tmp_path / "plant", nodes=2, records=200, seed=1, formats=("csv", "parquet"))
    src = (tmp_path / "plant" / "node_01.csv").read_text().splitlines(keepends=True)
    feeds = [
        feed_from_file(tmp_path / "plant" / "node_01.csv", tmp_path / "out" / "a.csv"),
        feed_from_file(tmp_path / "plant" / "node_02.parquet", tmp_path / "out" / "b.csv"),
    ]
    emitter = Emitter(feeds, rate=50)
    emitter.start()
    t0 = emitter.started
    assert (tmp_path / "out" / "a.csv").read_text() == src[0]  # the header first, nothing due yet
    assert emitter.tick(t0 + 0.5) == 2 * 25
    assert (tmp_path / "out" / "a.csv").read_text() == "".join(src[:26])
    assert emitter.tick(t0 + 0.5) == 0  # nothing new is due
    emitter.tick(t0 + 2.5)  # 125 records: the 100 of the shard, then 25 of its replay
    lines = (tmp_path / "out" / "a.csv").read_text().splitlines(keepends=True)
    assert len(lines) == 126 and lines[:101] == src
    first, again = src[1].split(","), lines[101].split(",")
    assert int(again[0]) == int(first[0]) + 100 * SAMPLE_SECONDS and again[1:] == first[1:]
    b = pd.read_csv(tmp_path / "out" / "b.csv")
    assert len(b) == 125 and b["timestamp"].is_monotonic_increasing  # the Parquet node, as CSV lines
    pd.testing.assert_frame_equal(
        b.iloc[:100].reset_index(drop=True), pd.read_parquet(tmp_path / "plant" / "node_02.parquet"), check_dtype=False
    )


def test_sent_column_stamps_each_line(tmp_path):
    emitter = Emitter([feed_from_synth(1, 200, 0, tmp_path / "s.csv")], rate=100, sent_column=True)
    emitter.start()
    emitter.tick(emitter.started + 1.0)
    got = pd.read_csv(tmp_path / "s.csv")
    assert list(got.columns)[-1] == "sent" and len(got) == 100 and (got["sent"] > 1.7e9).all()


@pytest.mark.parametrize(
    "args,message",
    [
        (["--rate", "0"], "--rate must be > 0"),
        (["--source", "missing-dir"], "--source missing-dir is not a directory"),
        (["--records", "10"], "--records must be at least 100"),
        (["--seconds", "-1"], "--seconds must be > 0"),
    ],
)
def test_emit_bad_input_is_one_line_and_exit_2(tmp_path, args, message):
    p = subprocess.run(
        [sys.executable, "-m", "fedad.common.cli", "data", "emit", "--out", str(tmp_path / "o"), *args],
        capture_output=True, text=True, env=ENV, timeout=600, cwd=tmp_path,
    )  # fmt: skip
    lines = [x for x in p.stderr.splitlines() if x.strip()]
    assert p.returncode == 2 and len(lines) == 1 and message in lines[0], p.stderr
    assert not (tmp_path / "o").exists()


def test_emit_command_writes_every_nodes_stream(tmp_path):
    p = subprocess.run(
        [sys.executable, "-m", "fedad.common.cli", "data", "emit", "--out", str(tmp_path / "o"), "--nodes", "3",
         "--records", "300", "--rate", "200", "--seconds", "0.5"],
        capture_output=True, text=True, env=ENV, timeout=600,
    )  # fmt: skip
    assert p.returncode == 0, p.stderr
    for k in (1, 2, 3):
        got = pd.read_csv(tmp_path / "o" / f"node_{k:02d}.csv")
        assert len(got) == 100  # 0.5 s at 200 records/s
        pd.testing.assert_frame_equal(got, generate_node(k, 300, 0).iloc[:100], check_dtype=False)

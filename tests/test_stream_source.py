"""CSV records from a growing file or stdin (fedad.common.stream_source) and the alarm sink (fedad.common.alarms)."""

from __future__ import annotations

import io
import json
import math

import numpy as np
import pytest

from fedad.common.alarms import AlarmSink
from fedad.common.errors import FedadError
from fedad.common.live_scorer import Decision
from fedad.common.stream_source import BLOCK_PARSE_MIN, RowParser, follow_blocks, follow_lines, read_batches


def test_parser_takes_model_columns_by_name_and_missing_values():
    p = RowParser("time,b,a,extra\n", ["a", "b"], time_column="time")
    row, t = p.parse("2024-01-01 00:00,2.5,-1e3,text\n")
    assert t == "2024-01-01 00:00" and row.tolist() == [-1000.0, 2.5]
    row, _ = p.parse("t,,NaN,x\n")
    assert all(math.isnan(v) for v in row)
    assert RowParser("a;b\n", ["a", "b"]).sep == ";"


def test_parser_refuses_a_stream_without_model_columns():
    with pytest.raises(FedadError, match="no column for model feature"):
        RowParser("a,c\n", ["a", "b"])


def test_bad_rows_are_reported_and_skipped_and_the_stream_goes_on():
    text = "a,b\n1,2\n3\nx,4\n5,6,7\n\n8,9\n"
    reports: list[str] = []
    blocks = follow_blocks(io.StringIO(text), follow=False)
    batches = list(read_batches(blocks, lambda h: RowParser(h, ["a", "b"]), reports.append))
    rows = np.concatenate([b.rows for b in batches])
    assert rows.tolist() == [[1, 2], [8, 9]]
    assert len(reports) == 3
    assert reports[0].startswith("line 3: 1 columns") and "not a number" in reports[1] and "line 5" in reports[2]


def test_follow_waits_for_the_end_of_a_line_being_written(tmp_path):
    path = tmp_path / "s.csv"
    path.write_text("a,b\n1,")
    with open(path) as f:
        lines = follow_lines(f, follow=True, poll_s=0.01, idle_exit_s=0.3)
        assert next(lines) == "a,b\n"
        with open(path, "a") as w:
            w.write("2\n3,4\n")
        assert list(lines) == ["1,2\n", "3,4\n"]  # the half-written row came whole; then idle exit


def test_alarm_sink_appends_flushed_json_lines(tmp_path, capsys):
    path = tmp_path / "alarms.jsonl"
    path.write_text('{"earlier": true}\n')
    sink = AlarmSink(str(path), stdout=True)
    d = [Decision(i, None, float(i), 1.5, i > 1, "v3", 0.25, 1_800_000_000.5) for i in range(4)]
    assert sink.write(d) == 2
    lines = path.read_text().splitlines()  # readable before close: flushed
    assert json.loads(lines[0]) == {"earlier": True}
    assert [json.loads(x)["record"] for x in lines[1:]] == [2, 3]
    assert json.loads(lines[1]) == {
        "record": 2,
        "time": None,
        "score": 2.0,
        "threshold": 1.5,
        "alarm": True,
        "version": "v3",
        "latency_ms": 0.25,
        "at": 1_800_000_000.5,
    }
    assert len(capsys.readouterr().out.splitlines()) == 2
    sink.close()


def test_a_block_parses_like_its_lines_and_a_bad_line_in_it_is_still_named():
    rng = np.random.default_rng(0)
    p = RowParser("t,b,a,label\n", ["a", "b"], time_column="t")
    lines = [f"{i},{rng.normal():.17g},{rng.normal() * 1e6:.9g},0\n" for i in range(4 * BLOCK_PARSE_MIN)]
    lines[5] = "5,,NaN,0\n"  # missing values
    lines[6] = "6,NA,null,1\n"
    rows, times, problems = p.parse_block(lines, 2)
    assert problems == [] and times == [str(i) for i in range(len(lines))]
    one_by_one = np.stack([p.parse(line)[0] for line in lines])
    np.testing.assert_array_equal(rows, one_by_one)  # bit-identical, NaN where missing
    assert np.isnan(rows[5]).all() and np.isnan(rows[6]).all()
    bad = [*lines[:20], "x,1,oops,0\n", "1,2\n", *lines[20:]]
    rows, times, problems = p.parse_block(bad, 2)
    assert len(rows) == len(lines) and times[20] == "20"
    assert problems == [
        "line 22: column 3 is not a number: 'oops'; row skipped",
        "line 23: 2 columns, the header has 4; row skipped",
    ]


def test_blocks_hold_the_lines_there_now(tmp_path):
    path = tmp_path / "s.csv"
    path.write_text("a\n" + "".join(f"{i}\n" for i in range(10)))
    with open(path) as f:
        blocks = follow_blocks(f, follow=True, poll_s=0.01, idle_exit_s=0.3, max_lines=4)
        assert [len(next(blocks)) for _ in range(3)] == [4, 4, 3]  # header + 10 records, 4 at most per block
        with open(path, "a") as w:
            w.write("10\n11\n")
        assert list(blocks) == [["10\n", "11\n"]]

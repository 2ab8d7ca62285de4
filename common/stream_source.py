"""CSV records from a growing file (tail) or stdin, parsed line by line into the model's feature columns.

The first line is the header. Model features are found by name (extra columns are ignored; a missing one is a
``FedadError``). An empty field or NA/NaN is a missing value (the preprocessing imputes it). A bad row (wrong
column count, text in a model column) is reported on stderr with its line number and skipped; the stream
goes on. Only complete lines are parsed: a line still being written is read when its newline arrives.
"""

from __future__ import annotations

import math
import os
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import IO

import numpy as np

from fedad.common.errors import FedadError

MISSING = frozenset({"", "na", "nan", "null", "none", "n/a"})


@dataclass
class Batch:
    """Records that arrived together: rows (k, d) in model feature order, their times and arrival times."""

    rows: np.ndarray
    times: list[str | None]
    arrived: list[float]


class RowParser:
    """Turns CSV lines into model-ordered float rows; the header line fixes the columns."""

    def __init__(self, header: str, features: list[str], time_column: str | None = None, sep: str | None = None):
        line = header.rstrip("\r\n")
        self.sep = sep or _sniff(line)
        names = [c.strip().strip('"') for c in line.split(self.sep)]
        missing = [f for f in features if f not in names]
        if missing:
            shown = ", ".join(missing[:5]) + (" ..." if len(missing) > 5 else "")
            raise FedadError(f"the stream has no column for model feature(s): {shown}")
        self.n_columns = len(names)
        self.index = [names.index(f) for f in features]
        self.time_index = None
        if time_column is not None:
            if time_column not in names:
                raise FedadError(f"the stream has no time column {time_column!r}")
            self.time_index = names.index(time_column)

    def parse(self, line: str) -> tuple[np.ndarray, str | None]:
        """(row, time) of one data line; ValueError naming the problem for a bad one."""
        fields = line.rstrip("\r\n").split(self.sep)
        if len(fields) != self.n_columns:
            raise ValueError(f"{len(fields)} columns, the header has {self.n_columns}")
        row = np.empty(len(self.index), dtype=np.float64)
        for j, c in enumerate(self.index):
            text = fields[c].strip().strip('"')
            if text.lower() in MISSING:
                row[j] = math.nan
                continue
            try:
                row[j] = float(text)
            except ValueError:
                raise ValueError(f"column {c + 1} is not a number: {text[:40]!r}") from None
        t = fields[self.time_index].strip().strip('"') if self.time_index is not None else None
        return row, t


def _sniff(header: str) -> str:
    """The separator of a header line: the most frequent of , ; tab |."""
    return max([",", ";", "\t", "|"], key=header.count)


def follow_lines(
    stream: IO[str],
    follow: bool,
    poll_s: float = 0.05,
    idle_exit_s: float | None = None,
    stop: Callable[[], bool] = lambda: False,
) -> Iterator[str]:
    """Complete lines of ``stream``; with ``follow``, wait for more at end of file (tail -f) until
    ``idle_exit_s`` seconds pass without a new line (None: forever) or ``stop()`` is true."""
    partial = ""
    idle_since = time.monotonic()
    while True:
        chunk = stream.readline()
        if chunk:
            partial += chunk
            if partial.endswith("\n"):
                line, partial = partial, ""
                idle_since = time.monotonic()
                yield line
            continue
        if not follow:
            if partial:
                yield partial  # last line without a newline: the file is complete
            return
        if stop() or idle_exit_s is not None and time.monotonic() - idle_since > idle_exit_s:
            return
        time.sleep(poll_s)


def read_batches(
    lines: Iterator[str],
    parser_for: Callable[[str], RowParser],
    report: Callable[[str], None] = lambda m: print(m, file=sys.stderr, flush=True),
    max_batch: int = 1,
) -> Iterator[Batch]:
    """Batches of up to ``max_batch`` parsed records from ``lines`` (header first; 1: each record on its own);
    bad rows are reported and skipped."""
    header = next(lines, None)
    if header is None:
        raise FedadError("the stream is empty: it needs a header line")
    parser = parser_for(header)
    line_no = 1
    rows: list[np.ndarray] = []
    times: list[str | None] = []
    arrived: list[float] = []
    for line in lines:
        line_no += 1
        now = time.perf_counter()
        if not line.strip():
            continue
        try:
            row, t = parser.parse(line)
        except ValueError as exc:
            report(f"line {line_no}: {exc}; row skipped")
            continue
        rows.append(row)
        times.append(t)
        arrived.append(now)
        if len(rows) >= max_batch:
            yield Batch(np.stack(rows), times, arrived)
            rows, times, arrived = [], [], []
    if rows:
        yield Batch(np.stack(rows), times, arrived)


def open_stream(path: str) -> IO[str]:
    """stdin for ``-``, else the file (FedadError when missing)."""
    if path == "-":
        return sys.stdin
    if not os.path.isfile(path):
        raise FedadError(f"stream file not found: {path}")
    return open(path, encoding="utf-8", errors="replace", newline="")

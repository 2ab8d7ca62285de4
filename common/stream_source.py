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
from typing import IO, Any

import numpy as np

from fedad.common.errors import FedadError

MISSING = frozenset({"", "na", "nan", "null", "none", "n/a"})
# the same missing-value spellings for pyarrow (exact match): lower, upper and capitalised
ARROW_MISSING = frozenset(v for m in MISSING for v in (m, m.upper(), m.capitalize(), m.title()))
# lines that arrive together from this many on are parsed in one pyarrow call (micro-batching)
BLOCK_PARSE_MIN = 64  # (a pyarrow call costs ~0.2 ms; a line parsed in Python ~7 us)


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
        self.names = names
        self.features = list(features)
        self.time_column = time_column
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

    def parse_block(self, lines: list[str], first_line: int) -> tuple[np.ndarray, list[str | None], list[str]]:
        """(rows, times, problems) of data lines numbered from ``first_line``: a block of at least
        ``BLOCK_PARSE_MIN`` lines goes through pyarrow's CSV reader in one call; a block it refuses (or a short
        one) is parsed line by line, and each bad line is named in ``problems`` and skipped."""
        if len(lines) >= BLOCK_PARSE_MIN:
            parsed = self._parse_arrow(lines)
            if parsed is not None:
                return parsed[0], parsed[1], []
        rows, times, problems = [], [], []
        for k, line in enumerate(lines):
            if not line.strip():
                continue
            try:
                row, t = self.parse(line)
            except ValueError as exc:
                problems.append(f"line {first_line + k}: {exc}; row skipped")
                continue
            rows.append(row)
            times.append(t)
        out = np.stack(rows) if rows else np.empty((0, len(self.index)))
        return out, times, problems

    def _parse_arrow(self, lines: list[str]) -> tuple[np.ndarray, list[str | None]] | None:
        """The block through pyarrow (None when it refuses any line: the caller parses line by line)."""
        import pyarrow as pa
        import pyarrow.csv as pa_csv

        if any(not line.strip() or '"' in line for line in lines):
            return None  # blank or quoted lines: the line parser's rules
        try:
            table = pa_csv.read_csv(
                pa.py_buffer("".join(lines).encode()),
                read_options=pa_csv.ReadOptions(column_names=self.names, use_threads=False),
                parse_options=pa_csv.ParseOptions(delimiter=self.sep),
                convert_options=pa_csv.ConvertOptions(
                    column_types={
                        **{f: pa.float64() for f in self.features},
                        **({self.time_column: pa.string()} if self.time_column else {}),
                    },
                    include_columns=self.features + ([self.time_column] if self.time_column else []),
                    null_values=sorted(ARROW_MISSING),
                    strings_can_be_null=False,
                ),
            )
        except (pa.ArrowInvalid, ValueError):
            return None
        if table.num_rows != len(lines):
            return None
        rows = np.column_stack([table.column(f).to_numpy(zero_copy_only=False) for f in self.features])
        rows = np.asarray(rows, dtype=np.float64)
        times = table.column(self.time_column).to_pylist() if self.time_column else [None] * len(lines)
        return rows, times


def _sniff(header: str) -> str:
    """The separator of a header line: the most frequent of , ; tab |."""
    return max([",", ";", "\t", "|"], key=header.count)


def follow_blocks(
    stream: IO[str],
    follow: bool,
    poll_s: float = 0.02,
    idle_exit_s: float | None = None,
    stop: Callable[[], bool] = lambda: False,
    max_lines: int = 4096,
) -> Iterator[list[str]]:
    """Lists of the complete lines of ``stream`` that are there to read now (at most ``max_lines``: records that
    arrived together are scored together); with ``follow``, wait for more at end of file (tail -f) until
    ``idle_exit_s`` seconds pass without a new line (None: forever) or ``stop()`` is true."""
    partial = ""
    idle_since = time.monotonic()
    seekable = stream.seekable()
    while True:
        block: list[str] = []
        while len(block) < max_lines and (seekable or not block or _readable(stream)):
            chunk = stream.readline()
            if not chunk:
                break
            partial += chunk
            if partial.endswith("\n"):
                block.append(partial)
                partial = ""
        if block:
            idle_since = time.monotonic()
            yield block
            continue
        if not follow:
            if partial:
                yield [partial]  # last line without a newline: the file is complete
            return
        if stop() or idle_exit_s is not None and time.monotonic() - idle_since > idle_exit_s:
            return
        time.sleep(poll_s)


def _readable(stream: IO[str]) -> bool:
    """Whether a pipe has more to read right now (so reading on does not wait for the next record)."""
    import select

    try:
        return bool(select.select([stream], [], [], 0)[0])
    except (OSError, ValueError, TypeError):
        return False


def follow_lines(stream: IO[str], follow: bool, **kwargs: Any) -> Iterator[str]:
    """The lines of ``follow_blocks``, one by one."""
    for block in follow_blocks(stream, follow, **kwargs):
        yield from block


def read_batches(
    blocks: Iterator[list[str]],
    parser_for: Callable[[str], RowParser],
    report: Callable[[str], None] = lambda m: print(m, file=sys.stderr, flush=True),
) -> Iterator[Batch]:
    """One batch of parsed records per block of lines (the header first); bad rows are reported and skipped."""
    parser: RowParser | None = None
    line_no = 0
    for block in blocks:
        now = time.perf_counter()
        if parser is None:
            parser = parser_for(block[0])
            line_no, block = 1, block[1:]
        rows, times, problems = parser.parse_block(block, line_no + 1)
        line_no += len(block)
        for p in problems:
            report(p)
        if len(rows):
            yield Batch(rows, times, [now] * len(rows))
    if parser is None:
        raise FedadError("the stream is empty: it needs a header line")


def open_stream(path: str) -> IO[str]:
    """stdin for ``-``, else the file (FedadError when missing)."""
    if path == "-":
        return sys.stdin
    if not os.path.isfile(path):
        raise FedadError(f"stream file not found: {path}")
    return open(path, encoding="utf-8", errors="replace", newline="")

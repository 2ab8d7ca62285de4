"""The live plant: each node's records appended to its own growing CSV at a fixed rate, in real time.

A ``NodeFeed`` holds one node's records as CSV lines: a data file (a shard written by `fedad data synth` or the
compose plant's data job, CSV or Parquet) or a node of the synthetic plant generated here by
``fedad.common.synth`` (with its labelled anomaly episodes). ``Emitter`` writes the header of every target file
at start, then every tick appends the lines that are due (record i of a node is due at start + i / rate), so a
reader (`fedad-client --stream`, `fedad score --follow`) sees complete lines only. At the end of its records a
feed starts over; an integer time column is shifted by one replay's time span per cycle so time keeps going
forward. ``sent_column``: each line also carries the wall-clock time (unix seconds) it was written, in a last
column ``sent`` (benches measure arrival-to-decision latency with it; scorers ignore extra columns).
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

from fedad.common.errors import FedadError

SENT_COLUMN = "sent"


@dataclass
class NodeFeed:
    """One node's replay: its CSV header and data lines, the file it grows and how many lines it has written."""

    header: str
    lines: list[str]
    target: Path
    time_index: int | None = None  # an integer time column, shifted by ``span`` per replay cycle
    span: int = 0
    written: int = 0

    def line(self, i: int) -> str:
        """Data line ``i`` of the endless replay (newline-terminated)."""
        cycle, k = divmod(i, len(self.lines))
        text = self.lines[k]
        if cycle == 0 or self.time_index is None:
            return text
        fields = text.split(",")
        fields[self.time_index] = str(int(fields[self.time_index]) + cycle * self.span)
        return ",".join(fields)


def _lines_of(header: str, lines: list[str], target: str | os.PathLike, time_column: str | None) -> NodeFeed:
    if not lines:
        raise FedadError(f"no records to emit for {target}")
    lines = [x if x.endswith("\n") else x + "\n" for x in lines if x.strip()]
    names = [c.strip().strip('"') for c in header.rstrip("\r\n").split(",")]
    feed = NodeFeed(header.rstrip("\r\n") + "\n", lines, Path(target))
    if time_column in names and '"' not in lines[0]:
        j = names.index(str(time_column))
        try:
            first, last = int(lines[0].split(",")[j]), int(lines[-1].split(",")[j])
        except (ValueError, IndexError):
            return feed  # not an integer time: lines are replayed verbatim
        step = (last - first) // max(1, len(lines) - 1)
        feed.time_index, feed.span = j, last - first + step
    return feed


def feed_from_file(source: str | os.PathLike, target: str | os.PathLike, time_column: str = "timestamp") -> NodeFeed:
    """A node's feed of a CSV or Parquet data file (its comma-separated lines as they are)."""
    path = Path(source)
    if not path.is_file():
        raise FedadError(f"emit: source file not found: {path}")
    if path.suffix.lower() == ".parquet":
        import pandas as pd

        return feed_from_frame(pd.read_parquet(path), target, time_column)
    with open(path, encoding="utf-8") as f:
        header = f.readline()
        lines = f.readlines()
    if "," not in header:
        raise FedadError(f"emit: {path} is not a comma-separated CSV file with a header line")
    return _lines_of(header, lines, target, time_column)


def feed_from_frame(frame, target: str | os.PathLike, time_column: str = "timestamp") -> NodeFeed:
    """A node's feed of a data frame (written as CSV lines)."""
    import io

    import pyarrow as pa
    import pyarrow.csv as pa_csv

    buf = io.BytesIO()
    table = pa.Table.from_pandas(frame, preserve_index=False)
    pa_csv.write_csv(table, buf, pa_csv.WriteOptions(include_header=False, quoting_style="none"))
    lines = buf.getvalue().decode().splitlines(keepends=True)
    return _lines_of(",".join(table.column_names), lines, target, time_column)


def feed_from_synth(
    node: int, records: int, seed: int, target: str | os.PathLike, anomaly_rate: float = 0.05
) -> NodeFeed:
    """Node ``node`` of the synthetic plant (``fedad.common.synth``: the same records as `fedad data synth`)."""
    from fedad.common.synth import generate_node

    return feed_from_frame(generate_node(node, records, seed, anomaly_rate), target)


class Emitter:
    """Appends every feed's due lines to its target file, ``rate`` records per second per node."""

    def __init__(self, feeds: Sequence[NodeFeed], rate: float, sent_column: bool = False) -> None:
        if not feeds:
            raise FedadError("emit: no node to emit for")
        if not rate > 0:
            raise FedadError(f"emit: the rate must be > 0 records/s, got {rate}")
        self.feeds, self.rate, self.sent_column = list(feeds), float(rate), sent_column
        self.started: float | None = None

    def start(self, clock: bool = True) -> None:
        """Create every target with its header line (a new file, renamed into place: never a partial header);
        ``clock``: record 0 is due now (else at ``begin()``)."""
        for feed in self.feeds:
            feed.target.parent.mkdir(parents=True, exist_ok=True)
            header = feed.header.rstrip("\n") + (f",{SENT_COLUMN}\n" if self.sent_column else "\n")
            tmp = feed.target.with_name(f".{feed.target.name}.tmp")
            tmp.write_text(header, encoding="utf-8")
            os.chmod(tmp, 0o644)
            os.replace(tmp, feed.target)
            feed.written = 0
        if clock:
            self.begin()

    def begin(self) -> None:
        """Start the clock: record i of every node is due i / rate seconds from now."""
        self.started = time.monotonic()

    def tick(self, now: float | None = None) -> int:
        """Append the lines due by ``now`` (monotonic seconds) to every target; returns the lines written."""
        if self.started is None:
            self.start()
        assert self.started is not None
        now = time.monotonic() if now is None else now
        due = int((now - self.started) * self.rate)
        total = 0
        for feed in self.feeds:
            if due <= feed.written:
                continue
            lines = [feed.line(i) for i in range(feed.written, due)]
            if self.sent_column:
                stamp = f",{time.time():.6f}\n"
                lines = [x[:-1] + stamp for x in lines]
            with open(feed.target, "a", encoding="utf-8") as f:
                f.write("".join(lines))
            total += due - feed.written
            feed.written = due
        return total

    def run(
        self,
        seconds: float | None = None,
        tick_s: float = 0.05,
        stop: Callable[[], bool] = lambda: False,
        on_tick: Callable[[Emitter], None] | None = None,
    ) -> int:
        """Emit until ``seconds`` have passed (None: until ``stop()``); returns the lines written per node."""
        if self.started is None:
            self.start()
        assert self.started is not None
        end = None if seconds is None else self.started + seconds
        while not stop():
            now = time.monotonic()
            last = end is not None and now >= end
            self.tick(end if last else now)
            if on_tick is not None:
                on_tick(self)
            if last:
                break
            time.sleep(max(0.0, tick_s - (time.monotonic() - now)))
        return self.feeds[0].written

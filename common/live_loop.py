"""The live loop: CSV lines from a source -> ``LiveScorer`` -> ``AlarmSink`` (and metrics), until the stream ends.

Shared by `fedad score --follow` and `fedad-client --stream`.
"""

from __future__ import annotations

import sys
from collections.abc import Callable
from typing import Any

from fedad.common.alarms import AlarmSink
from fedad.common.data import TIME_COLUMN_NAMES
from fedad.common.live_scorer import LiveScorer
from fedad.common.stream_source import RowParser, follow_blocks, open_stream, read_batches


def parser_factory(features: list[str], time_column: str | None, sep: str | None) -> Callable[[str], RowParser]:
    """A header line -> ``RowParser`` of the model's features; the time column by name (default: one named
    timestamp/time/datetime/date, as `fedad train` takes it)."""

    def parser_for(header: str) -> RowParser:
        names = {c.strip().strip('"') for c in header.split(sep or ",")}
        column = time_column or next((t for t in TIME_COLUMN_NAMES if t in names), None)
        return RowParser(header, features, time_column=column, sep=sep)

    return parser_for


def score_stream(
    path: str,
    scorer: LiveScorer,
    sink: AlarmSink,
    parser_for: Callable[[str], RowParser],
    idle_exit: float | None = None,
    observe: Callable[[Any, Any], Any] | None = None,
    stop: Callable[[], bool] = lambda: False,
) -> int:
    """Score ``path`` (``-``: stdin, read to its end; a file: followed until ``idle_exit`` seconds without a new
    line, or ``stop()``); every decision goes to ``sink`` and ``observe(decisions, their raw rows)``. Returns the
    records decided."""
    stream = open_stream(path)
    blocks = follow_blocks(stream, follow=path != "-", idle_exit_s=idle_exit, stop=stop)
    try:
        for batch in read_batches(blocks, parser_for):
            decisions = scorer.score(batch.rows, batch.times, batch.arrived)
            sink.write(decisions)
            if observe is not None:
                observe(decisions, batch.rows)
    finally:
        if stream is not sys.stdin:
            stream.close()
    return scorer.records

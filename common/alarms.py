"""Alarm output of live scoring: one JSON object per alarm, appended to a JSONL file and/or printed on stdout.

Each line is flushed when written, so every alarm already reported survives a crash or a kill of the scorer.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Iterable
from pathlib import Path
from typing import IO, Any

from fedad.common.errors import FedadError


class AlarmSink:
    """Writes the alarms among decisions (``alarm``, ``to_dict()``); ``all_decisions``: every decision."""

    def __init__(self, path: str | None = None, stdout: bool = False, all_decisions: bool = False) -> None:
        self._file: IO[str] | None = None
        if path is not None:
            target = Path(path)
            if target.is_dir():
                raise FedadError(f"--alarms {target} is a directory; give a file name")
            from fedad.common.outputs import check_parent, write_error

            if not target.exists():  # an existing file, FIFO or /dev/stdout is appended to as it is
                check_parent(target, "--alarms")
            try:
                target.parent.mkdir(parents=True, exist_ok=True)
                self._file = open(target, "a", encoding="utf-8")
            except OSError as exc:
                raise write_error("--alarms", target, exc) from None
        self._stdout = stdout
        self._all = all_decisions
        self.alarms = 0

    def write(self, decisions: Iterable[Any]) -> int:
        """Write the alarms (or all decisions) of ``decisions``; returns the number of alarms among them."""
        alarmed = getattr(decisions, "alarmed", None)
        chosen = list(decisions) if self._all or alarmed is None else list(alarmed())
        n = sum(1 for d in chosen if d.alarm)
        lines = [json.dumps(d.to_dict(), separators=(",", ":")) + "\n" for d in chosen if d.alarm or self._all]
        if lines:
            text = "".join(lines)
            if self._file is not None:
                self._file.write(text)
                self._file.flush()
            if self._stdout:
                sys.stdout.write(text)
                sys.stdout.flush()
        self.alarms += n
        return n

    def close(self) -> None:
        """Close the file."""
        if self._file is not None:
            self._file.close()
            self._file = None

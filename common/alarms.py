"""Alarm output of live scoring: one JSON object per alarm, appended to a JSONL file and/or printed on stdout.

Each line is flushed when written, so every alarm already reported survives a crash or a kill of the scorer.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Iterable
from pathlib import Path
from typing import IO, Any


class AlarmSink:
    """Writes the alarms among decisions (``alarm``, ``to_dict()``); ``all_decisions``: every decision."""

    def __init__(
        self,
        path: str | None = None,
        stdout: bool = False,
        all_decisions: bool = False,
        inputs: Iterable[str] = (),
        keep_dirs: Iterable[str] = (),
    ) -> None:
        """``path``: appended to, never one of the ``inputs`` files or inside ``keep_dirs`` (checked first)."""
        self._file: IO[str] | None = None
        self._created: Path | None = None  # the file this sink made, removed by ``abandon`` while still empty
        if path is not None:
            from fedad.common.outputs import check_file_out, write_error

            target = check_file_out(path, "--alarms", inputs, keep_dirs)
            self._created = None if target.exists() else target
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

    def abandon(self) -> None:
        """Close, and remove the file when this sink created it and nothing was written (a refused stream)."""
        self.close()
        if self._created is not None and self._created.is_file() and self._created.stat().st_size == 0:
            self._created.unlink()

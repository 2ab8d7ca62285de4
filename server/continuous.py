"""Continuous federation (`fedad-server --rounds 0`): a round every --round-interval until a stop file appears.

Every global model is a version (its round number): ``RoundPacer`` is called before each round (``FedadServer.pace``);
it copies the last round's checkpointed weights to ``OUT/versions/round-NNNNNN.npz`` (the newest
``keep`` are kept), waits until ``interval`` seconds have passed since the last round started, and ends the
rounds when ``stop_file`` exists (the run then sets its threshold, tests and reports as a finite run does).
Nodes may join (admitted at the next round) and leave between rounds; ``--resume`` continues the version
sequence from the checkpoint.
"""

from __future__ import annotations

import logging
import os
import re
import shutil
import time
from pathlib import Path

from fedad.common.errors import FedadError

VERSIONS_DIR = "versions"
# --rounds 0: the loop's bound (a continuous run ends by its stop file)
CONTINUOUS_ROUNDS = 10**9
_UNITS = {"": 1.0, "s": 1.0, "m": 60.0, "h": 3600.0}


def parse_duration(text: str) -> float:
    """Seconds of '90', '90s', '5m' or '1h' (FedadError otherwise)."""
    m = re.fullmatch(r"\s*(\d+(?:\.\d+)?)\s*([smh]?)\s*", str(text))
    if not m:
        raise FedadError(f"--round-interval: expected a duration such as 30s, 5m or 1h, got {text!r}")
    return float(m.group(1)) * _UNITS[m.group(2)]


def version_path(out: Path, rnd: int) -> Path:
    """Where the global model of round ``rnd`` is kept."""
    return out / VERSIONS_DIR / f"round-{rnd:06d}.npz"


class RoundPacer:
    """Before each round: save the last version, stop when asked, wait out the interval."""

    def __init__(
        self,
        out: Path,
        interval: float,
        stop_file: Path | None = None,
        keep: int = 100,
        log: logging.Logger | None = None,
        poll: float = 0.2,
    ) -> None:
        self.out, self.interval, self.stop_file, self.keep, self.poll = Path(out), interval, stop_file, keep, poll
        self.log = log or logging.getLogger("fedad.server")
        self._last_start: float | None = None

    def __call__(self, rnd: int) -> bool:
        """True: run round ``rnd`` now (after waiting); False: end the rounds."""
        if rnd > 1:
            self.save_version(rnd - 1)
        if self._stopped():
            self.log.info("stop file %s found: no round %d; finishing the run", self.stop_file, rnd)
            return False
        if self._last_start is not None:
            due = self._last_start + self.interval
            while time.monotonic() < due:
                if self._stopped():
                    self.log.info("stop file %s found: no round %d; finishing the run", self.stop_file, rnd)
                    return False
                time.sleep(min(self.poll, max(0.0, due - time.monotonic())))
        self._last_start = time.monotonic()
        return True

    def _stopped(self) -> bool:
        return self.stop_file is not None and self.stop_file.exists()

    def save_version(self, rnd: int) -> Path | None:
        """Copy the checkpointed weights of round ``rnd`` to its version file; drop versions beyond ``keep``."""
        src = self.out / "checkpoint" / "weights.npz"
        dst = version_path(self.out, rnd)
        if not src.is_file() or dst.exists():
            return None
        dst.parent.mkdir(parents=True, exist_ok=True)
        tmp = dst.with_name(f".{dst.name}.tmp")
        shutil.copyfile(src, tmp)
        os.replace(tmp, dst)
        for old in sorted(dst.parent.glob("round-*.npz"))[: -self.keep]:
            old.unlink(missing_ok=True)
        return dst

"""Collusion channel: colluding attackers share their honest updates through a directory only they can see.

Each colluder writes its honest update for a round (``np.save``, no pickle, written to a temporary name
then renamed, so a reader never sees half a file) and waits, up to ``timeout`` seconds, for the other
colluders' files of the same round. What has arrived by then is returned: partial knowledge, never the
honest clients' updates. The server and honest clients never see this directory.
"""

from __future__ import annotations

import os
import re
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from fedad.common.errors import FedadError

_NAME = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}")


def _check_name(name: str) -> str:
    if not _NAME.fullmatch(str(name)):
        raise FedadError(f"colluder name {name!r} must be letters, digits, '_', '.', '-' (no path parts)")
    return str(name)


class CollusionChannel:
    """One colluder's view of one round: ``exchange(update)`` publishes it and gathers the others'.

    ``expected`` is either the number of colluders (this one included) or their names.
    """

    def __init__(
        self,
        directory: str | os.PathLike,
        server_round: int,
        name: str,
        expected: int | Sequence[str],
        timeout: float = 30.0,
        poll_interval: float = 0.05,
    ):
        self.name = _check_name(name)
        self.round_dir = Path(directory) / f"round_{int(server_round):06d}"
        if isinstance(expected, (int, np.integer)):
            if int(expected) < 1:
                raise FedadError(f"a collusion needs at least 1 colluder, got {expected}")
            self.expected_names: set[str] | None = None
            self.expected_count = int(expected)
        else:
            self.expected_names = {_check_name(n) for n in expected} | {self.name}
            self.expected_count = len(self.expected_names)
        self.timeout, self.poll_interval = float(timeout), float(poll_interval)

    def publish(self, update: np.ndarray) -> Path:
        """Write this colluder's honest update for the round atomically; returns its path."""
        self.round_dir.mkdir(parents=True, exist_ok=True)
        target = self.round_dir / f"{self.name}.npy"
        fd, tmp = tempfile.mkstemp(prefix=f".{self.name}.", suffix=".tmp", dir=self.round_dir)
        try:
            with os.fdopen(fd, "wb") as f:
                np.save(f, np.asarray(update, dtype=np.float64).ravel(), allow_pickle=False)
            os.replace(tmp, target)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise
        return target

    def _load_others(self, like: np.ndarray) -> dict[str, np.ndarray]:
        found: dict[str, np.ndarray] = {}
        if not self.round_dir.is_dir():
            return found
        for path in sorted(self.round_dir.glob("*.npy")):
            other = path.stem
            if other == self.name or not _NAME.fullmatch(other):
                continue
            if self.expected_names is not None and other not in self.expected_names:
                continue
            try:
                vec = np.load(path, allow_pickle=False)
            except (OSError, ValueError):
                continue
            if vec.shape == like.shape and np.issubdtype(vec.dtype, np.floating) and np.all(np.isfinite(vec)):
                found[other] = vec.astype(np.float64)
        return found

    def collect(self, update: np.ndarray) -> list[np.ndarray]:
        """Own update first, then the other colluders' (by name) that arrived before the timeout."""
        own = np.asarray(update, dtype=np.float64).ravel()
        deadline = time.monotonic() + self.timeout
        while True:
            others = self._load_others(own)
            if len(others) + 1 >= self.expected_count or time.monotonic() >= deadline:
                break
            time.sleep(self.poll_interval)
        return [own] + [others[k] for k in sorted(others)]

    def exchange(self, update: np.ndarray) -> list[np.ndarray]:
        """Publish this colluder's honest update and return the colluders' updates known (partial knowledge)."""
        self.publish(update)
        return self.collect(update)

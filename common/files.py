"""Writing secrets and certificates: atomically, with the right mode from the first byte."""

from __future__ import annotations

import os
from pathlib import Path


def write_file(path: Path, blob: bytes, mode: int) -> None:
    """Write ``blob`` to ``path`` via a temporary file created with ``mode``, then rename it into place."""
    path = Path(path)
    tmp = path.with_name(f".{path.name}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, mode)
    with os.fdopen(fd, "wb") as f:
        f.write(blob)
    os.chmod(tmp, mode)
    os.replace(tmp, path)


def write_private(path: Path, blob: bytes) -> None:
    write_file(path, blob, 0o600)


def write_public(path: Path, blob: bytes) -> None:
    write_file(path, blob, 0o644)

"""Give files made through ``tempfile`` (owner-only) the modes the user's umask asks for (0644/0755 usually)."""

from __future__ import annotations

import os
import threading

_lock = threading.Lock()


def current_umask() -> int:
    """The process umask (read by setting and restoring it, under a lock)."""
    with _lock:
        mask = os.umask(0)
        os.umask(mask)
    return mask


def as_umask_allows(path: str | os.PathLike, directory: bool = False) -> None:
    """chmod ``path`` to 0666 (0777 for a directory) minus the umask, like a plain open()/mkdir() would."""
    os.chmod(path, (0o777 if directory else 0o666) & ~current_umask())

"""Output paths checked before the work that fills them: one line (FedadError), nothing written, no input lost."""

from __future__ import annotations

import os
import tempfile
from collections.abc import Iterable
from pathlib import Path

from fedad.common.errors import FedadError


def check_parent(path: str | os.PathLike, what: str) -> None:
    """FedadError unless ``path``'s directory exists and is writable, or can be created under one that is."""
    target = Path(path)
    ancestor = target.parent
    try:
        while not ancestor.exists() and ancestor != ancestor.parent:
            ancestor = ancestor.parent
    except OSError as exc:  # a directory on the way that may not be looked into
        raise FedadError(f"cannot write {what} {target}: {exc.strerror or exc}") from None
    if not ancestor.is_dir():
        raise FedadError(f"cannot write {what} {target}: {ancestor} is not a directory")
    try:  # a real write: permission bits say nothing for root, or on /proc
        os.rmdir(tempfile.mkdtemp(prefix=".fedad-write-check-", dir=ancestor))
    except OSError as exc:
        raise FedadError(f"cannot write {what} {target}: {ancestor}: {exc.strerror or exc}") from None


def check_file_out(
    path: str | os.PathLike,
    what: str,
    inputs: Iterable[str | os.PathLike] = (),
    keep_dirs: Iterable[str | os.PathLike] = (),
) -> Path:
    """An output file ``path``, refused when it is a directory, one of the ``inputs`` files, or inside one of the
    ``keep_dirs`` (a model directory); returns it as a Path."""
    out = Path(path)
    if str(path) == "" or out.is_dir():
        raise FedadError(f"{what} {str(path)!r} is a directory; give a file name")
    for source in inputs:
        src = Path(source)
        if out.exists() and src.exists() and os.path.samefile(out, src):
            raise FedadError(f"{what} {out} is the input file {src}; writing it would destroy the data")
    for directory in keep_dirs:
        if Path(directory).is_dir() and out.resolve().is_relative_to(Path(directory).resolve()):
            raise FedadError(f"{what} {out} is inside the model directory {directory}; give another place")
    if not out.exists():  # an existing file (a FIFO, /dev/stdout) is tested by the write itself
        check_parent(out, what)
    return out


def check_model_out(path: str | os.PathLike, what: str = "model output") -> Path:
    """A model directory to be written (replaced as a whole): refused when it is a file or a non-empty directory
    that holds no fedad model, or cannot be created."""
    from fedad.common.ensemble import is_model_dir

    target = Path(path)
    if target.exists() and not target.is_dir():
        raise FedadError(f"{what} {target} exists and is not a directory")
    if target.is_dir() and any(target.iterdir()) and not is_model_dir(target):
        raise FedadError(f"{what} {target} is a non-empty directory that holds no fedad model; not replacing it")
    check_parent(target, what)
    return target


def staging_dir(path: str | os.PathLike) -> tuple[Path, Path]:
    """(target, temporary sibling directory) for a model directory written whole and renamed into place
    (``check_model_out`` first)."""
    target = check_model_out(path)
    try:
        target.parent.mkdir(parents=True, exist_ok=True)
        return target, Path(tempfile.mkdtemp(prefix=f".{target.name}.tmp-", dir=target.parent))
    except OSError as exc:
        raise write_error("model output", target, exc) from None


def write_error(what: str, path: str | os.PathLike, exc: OSError) -> FedadError:
    """The one-line error for an output that could not be written."""
    return FedadError(f"cannot write {what} {path}: {exc.strerror or exc}")

"""Option parsing shared by the bench scripts (run as `python bench/<name>.py`, so this is importable)."""

from __future__ import annotations

import sys
from pathlib import Path


def names(value: str, allowed: tuple[str, ...], what: str) -> list[str]:
    """A comma-separated list of names from ``allowed`` ('' or 'none': empty); exits with a clear error."""
    if value.strip().lower() in ("", "none"):
        return []
    chosen = [v.strip() for v in value.split(",") if v.strip()]
    bad = [n for n in chosen if n not in allowed]
    if bad:
        prog = Path(sys.argv[0]).name
        raise SystemExit(f"{prog}: error: unknown {what} {', '.join(bad)} (choose from {', '.join(allowed)})")
    return chosen

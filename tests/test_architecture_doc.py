"""docs/ARCHITECTURE.md names every module of the three code folders (a moved or new file must be listed)."""

from __future__ import annotations

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def _named_modules(text: str) -> set[str]:
    """Paths in backticks, with ``dir/{a,b}.py`` groups expanded."""
    names = set()
    for ref in re.findall(r"`([a-z_/]+(?:\{[a-z_,\s]+\})?\.py)`", text.replace("\n  ", " ")):
        group = re.match(r"(.*)\{([^}]*)\}\.py$", ref)
        if group:
            names |= {f"{group[1]}{part.strip()}.py" for part in group[2].split(",")}
        else:
            names.add(ref)
    return names


def test_every_module_is_named_in_the_architecture_doc():
    named = _named_modules((ROOT / "docs" / "ARCHITECTURE.md").read_text())
    modules = {
        p.relative_to(ROOT).as_posix()
        for folder in ("common", "client", "server")
        for p in (ROOT / folder).rglob("*.py")
        if p.name != "__init__.py"
    }
    assert modules, "no modules found"
    assert sorted(modules - named) == []


def test_the_doc_names_no_module_that_does_not_exist():
    named = _named_modules((ROOT / "docs" / "ARCHITECTURE.md").read_text())
    assert (
        sorted(n for n in named if n.split("/")[0] in ("common", "client", "server") and not (ROOT / n).is_file()) == []
    )

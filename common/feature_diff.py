"""How one node's feature columns differ from the federation's: missing, extra, renamed or reordered."""

from __future__ import annotations

from collections.abc import Sequence


def describe_feature_difference(have: Sequence[str], expected: Sequence[str], limit: int = 8) -> str:
    """One clause naming the columns that differ, e.g. "renamed: vibration_rms -> vib_rms; missing: voltage"."""
    have, expected = [str(h) for h in have], [str(e) for e in expected]
    missing = [e for e in expected if e not in have]
    extra = [h for h in have if h not in expected]
    renamed = []
    for name in list(missing):  # same position, other name: most likely a renamed column
        i = expected.index(name)
        if i < len(have) and have[i] in extra:
            renamed.append(f"{name} -> {have[i]}")
            missing.remove(name)
            extra.remove(have[i])
    parts = []
    for label, names in (("renamed", renamed), ("missing", missing), ("extra", extra)):
        if names:
            shown = ", ".join(names[:limit]) + (f" (+{len(names) - limit} more)" if len(names) > limit else "")
            parts.append(f"{label}: {shown}")
    if not parts and have != expected:
        first = next(i for i, (a, b) in enumerate(zip(have, expected, strict=True)) if a != b)
        parts.append(f"same columns in another order (column {first + 1} is {have[first]}, expected {expected[first]})")
    return "; ".join(parts) if parts else "identical"

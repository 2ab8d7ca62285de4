"""Node names: the one pattern every name must match wherever it arrives (CLI, certificate, client message)."""

from __future__ import annotations

import re

from fedad.common.errors import FedadError

NODE_NAME_PATTERN = r"[A-Za-z0-9_.-]{1,64}"
_NODE_NAME = re.compile(NODE_NAME_PATTERN)


def is_valid_node_name(name: object) -> bool:
    """True for 1-64 letters, digits, ``_ . -`` that are not only dots (no paths, no newlines, no spaces)."""
    return isinstance(name, str) and _NODE_NAME.fullmatch(name) is not None and name.strip(".") != ""


def check_node_name(name: object, what: str = "node name") -> str:
    """Return ``name`` if valid, else raise a FedadError that shows it safely quoted."""
    if not is_valid_node_name(name):
        raise FedadError(
            f"{what} {safe_repr(name)} is not a valid node name: use 1-64 letters, digits, '_', '.' "
            "or '-' (not only dots)"
        )
    return str(name)


def safe_repr(value: object, limit: int = 80) -> str:
    """A one-line, length-capped quoting of an untrusted value for logs and reports."""
    text = repr(value)
    return text if len(text) <= limit else text[:limit] + "...'"

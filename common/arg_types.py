"""argparse value types shared by the commands: what the code behind an option can take, refused in one line."""

from __future__ import annotations

import math
from argparse import ArgumentTypeError

SEED_MAX = 2**32 - 1  # numpy, torch and scikit-learn all take seeds in [0, 2**32 - 1]
COUNT_MAX = 2**31 - 1  # sizes and counts beyond this overflow the C integers of numpy, pandas and torch


def seed(text: str) -> int:
    """A random seed: an integer in [0, 2**32 - 1]."""
    n = _integer(text, "seed")
    if not 0 <= n <= SEED_MAX:
        raise ArgumentTypeError(f"a seed must be in [0, {SEED_MAX}], got {n}")
    return n


def count(text: str) -> int:
    """A size or count: an integer at most 2**31 - 1 (its lower bound is the command's to check)."""
    n = _integer(text, "")
    if n > COUNT_MAX:
        raise ArgumentTypeError(f"expected an integer up to {COUNT_MAX}, got {n}")
    return n


def auto_or_count(text: str) -> int | str:
    """``auto`` or a size or count (see ``count``)."""
    if text == "auto":
        return text
    try:
        return count(text)
    except ArgumentTypeError as exc:
        raise ArgumentTypeError(f"expected 'auto' or an integer: {exc}") from None


def finite(text: str) -> float:
    """A finite number (no nan or inf)."""
    try:
        x = float(text)
    except ValueError:
        raise ArgumentTypeError(f"expected a number, got {text!r}") from None
    if not math.isfinite(x):
        raise ArgumentTypeError(f"expected a finite number, got {text!r}")
    return x


def _integer(text: str, what: str) -> int:
    try:
        return int(text)
    except ValueError:
        raise ArgumentTypeError(f"expected an integer{' ' + what if what else ''}, got {text!r}") from None

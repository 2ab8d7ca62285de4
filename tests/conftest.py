"""Shared pytest fixtures."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="session")
def datasets_dir() -> Path:
    """The real datasets (env FEDAD_DATASETS, default ``<repo>/../shared/datasets``); skips when absent."""
    path = Path(os.environ.get("FEDAD_DATASETS") or REPO.parent / "shared" / "datasets")
    if not path.is_dir():
        pytest.skip(f"real datasets not found at {path} (set FEDAD_DATASETS)")
    return path

"""Autoencoder models, one per file, chosen by name (see ``registry``); torch is imported on first use."""

from __future__ import annotations

from typing import Any

from fedad.common.models.names import DEFAULT_WINDOW, MODEL_NAMES

__all__ = ["Autoencoder", "DEFAULT_WINDOW", "MODEL_NAMES", "build_model", "default_window"]


def __getattr__(name: str) -> Any:
    """``Autoencoder``, ``build_model`` and ``default_window`` load torch only when first asked for."""
    if name == "Autoencoder":
        from fedad.common.models.base import Autoencoder

        return Autoencoder
    if name in ("build_model", "default_window"):
        from fedad.common.models import registry

        return getattr(registry, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")

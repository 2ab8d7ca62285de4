"""Model names and default windows, importable without torch (for fast ``--help`` and option checks)."""
from __future__ import annotations

MODEL_NAMES: tuple[str, ...] = ("dense", "lstm", "gru", "cnn", "vae")
# records per sample when no window is given: row models score single records, sequence models windows
DEFAULT_WINDOW: dict[str, int] = {"dense": 1, "vae": 1, "lstm": 16, "gru": 16, "cnn": 16}

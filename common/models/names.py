"""Model names and default windows, importable without torch (for fast ``--help`` and option checks)."""

from __future__ import annotations

MODEL_NAMES: tuple[str, ...] = ("dense", "linear", "lstm", "gru", "cnn", "vae", "contrastive")
# records per sample when no window is given: row models score single records, sequence models windows
DEFAULT_WINDOW: dict[str, int] = {"dense": 1, "linear": 1, "vae": 1, "lstm": 16, "gru": 16, "cnn": 16, "contrastive": 1}
# models whose anomaly score is fitted on normal data and is not a reconstruction error alone (contrastive:
# reconstruction mixed with the distance to its normal centre): they score with their own score, and the
# per-feature normalised scores (--score max/mean/topk) do not apply to them
OWN_SCORE_MODELS: frozenset[str] = frozenset({"contrastive"})


def effective_score(model: str, score: str) -> str:
    """The score a model is evaluated with: ``mse`` (the model's own ``score``) for OWN_SCORE_MODELS."""
    return "mse" if model in OWN_SCORE_MODELS else score

"""Models by name: ``build_model("dense", n_features)``; the names the CLI and the federation accept."""

from __future__ import annotations

from typing import Any

from fedad.common.errors import FedadError
from fedad.common.models.averaged import MAX_MODELS, AveragedAutoencoder
from fedad.common.models.base import Autoencoder
from fedad.common.models.cnn import CNNAutoencoder
from fedad.common.models.contrastive import ContrastiveAutoencoder
from fedad.common.models.dense import DenseAutoencoder
from fedad.common.models.gru import GRUAutoencoder
from fedad.common.models.linear import LinearAutoencoder
from fedad.common.models.lstm import LSTMAutoencoder
from fedad.common.models.names import DEFAULT_WINDOW, MODEL_NAMES
from fedad.common.models.vae import VariationalAutoencoder

__all__ = ["DEFAULT_WINDOW", "MODEL_NAMES", "MODELS", "build_model", "default_window"]

MODELS: dict[str, type[Autoencoder]] = {
    "dense": DenseAutoencoder,
    "linear": LinearAutoencoder,
    "lstm": LSTMAutoencoder,
    "gru": GRUAutoencoder,
    "cnn": CNNAutoencoder,
    "vae": VariationalAutoencoder,
    "contrastive": ContrastiveAutoencoder,
}


def default_window(name: str) -> int:
    """The window a model uses when none is given."""
    _check_name(name)
    return DEFAULT_WINDOW[name]


def model_aligns(name: str) -> bool:
    """Whether the model trains toward a global embedding the server sends (the contrastive alignment term)."""
    return hasattr(MODELS.get(name), "set_global_embedding")


def build_model(name: str, n_features: int, window: int | None = None, **sizes: Any) -> Autoencoder:
    """A freshly initialised model; ``window=None`` takes the model's default (1 for row models, 16 otherwise).

    ``sizes`` are the model's constructor sizes (e.g. ``hidden=(32, 16), latent_dim=8`` for dense), as
    returned by ``model.config()``; ``n_models=K`` (K > 1) builds K of them, one after another from the torch
    generator, as one ``AveragedAutoencoder``. Unknown names or sizes raise FedadError.
    """
    _check_name(name)
    window = DEFAULT_WINDOW[name] if window is None else int(window)
    if window < 1:
        raise FedadError(f"window must be at least 1, got {window}")
    if int(n_features) < 1:
        raise FedadError(f"a model needs at least one feature, got {n_features}")
    sizes = dict(sizes)
    n_models = sizes.pop("n_models", 1)
    check_n_models(n_models, name)
    try:
        members = [MODELS[name](int(n_features), window, **sizes) for _ in range(n_models)]
    except (TypeError, ValueError) as exc:
        raise FedadError(f"bad sizes for model '{name}' {sizes}: {exc}") from None
    return members[0] if n_models == 1 else AveragedAutoencoder(members)


def check_n_models(n_models: Any, name: str, what: str = "n_models", auto: bool = False) -> None:
    """FedadError unless ``n_models`` is an integer in 1..MAX_MODELS (or "auto" where ``auto``), and 1 for the
    contrastive model (it scores with its own statistics); ``what`` names it in the message."""
    if auto and n_models == "auto":
        return
    if isinstance(n_models, bool) or not isinstance(n_models, int) or not 1 <= n_models <= MAX_MODELS:
        either = "'auto' or " if auto else ""
        raise FedadError(f"{what} must be {either}an integer in 1..{MAX_MODELS}, got {n_models!r}")
    if n_models > 1 and name == "contrastive":
        raise FedadError(f"the contrastive model scores with its own statistics: {what} must be 1, got {n_models}")


def _check_name(name: str) -> None:
    if name not in MODELS:
        raise FedadError(f"unknown model '{name}' (choose from {', '.join(MODEL_NAMES)})")

"""Every autoencoder: output shapes, a scores-identical save/load round trip, and the registry's errors."""

import numpy as np
import pytest
import torch

from fedad.common.errors import FedadError
from fedad.common.models import MODEL_NAMES, Autoencoder, build_model, default_window

torch.set_num_threads(1)

D = 5


@pytest.mark.parametrize("name", MODEL_NAMES)
@pytest.mark.parametrize("window", [None, 4])
def test_shapes(name, window):
    torch.manual_seed(0)
    model = build_model(name, D, window=window)
    assert isinstance(model, Autoencoder)
    w = default_window(name) if window is None else window
    assert model.window == w
    assert model.sequence == (name in ("lstm", "gru", "cnn") or w > 1)
    shape = (w, D) if model.sequence else (D,)
    assert model.input_shape == shape
    x = torch.randn(7, *shape)
    model.eval()
    assert model(x).shape == x.shape
    assert model.encode(x).shape == (7, model.latent_dim)
    scores = model.score(x)
    assert scores.shape == (7,) and torch.all(scores >= 0)
    loss = model.loss(x)
    assert loss.ndim == 0 and torch.isfinite(loss)
    # score is the per-sample mean squared error of the (eval-mode) reconstruction
    torch.testing.assert_close(scores, ((model(x) - x) ** 2).flatten(1).mean(1))


@pytest.mark.parametrize("name", MODEL_NAMES)
def test_save_load_round_trip(name, tmp_path):
    torch.manual_seed(1)
    model = build_model(name, D, window=3, latent_dim=4)
    torch.save(model.state_dict(), tmp_path / "model.pt")
    torch.manual_seed(2)
    clone = build_model(name, D, window=3, **model.config())
    clone.load_state_dict(torch.load(tmp_path / "model.pt", weights_only=True))
    x = torch.randn(6, *model.input_shape)
    model.eval(), clone.eval()
    torch.testing.assert_close(model.score(x), clone.score(x), rtol=0, atol=0)


def test_dense_default_is_small():
    model = build_model("dense", 12)
    n_params = sum(p.numel() for p in model.parameters())
    assert 1000 < n_params < 5000
    assert model.latent_dim == 8


def test_linear_extrapolates_a_linear_relation_outside_its_training_range():
    """Trained on a 2-D linear subspace inside [-1, 1], the linear model reconstructs points of the same subspace
    at 3-4 (a state the training rows never reached) almost exactly; the dense model, with its ReLU layers, does
    not. This is why the linear model exists (common/models/linear.py)."""
    from fedad.common.training import reconstruction_errors, train_model

    rng = np.random.default_rng(0)
    A = rng.normal(size=(2, 6))
    train = (rng.uniform(-1, 1, size=(4000, 2)) @ A).astype(np.float32)
    far = (rng.uniform(3, 4, size=(200, 2)) @ A).astype(np.float32)
    errors = {}
    for name in ("linear", "dense"):
        torch.manual_seed(0)
        model = build_model(name, 6, latent_dim=2)
        train_model(model, train, None, epochs=60, lr=1e-2, patience=None, device="cpu", seed=0)
        errors[name] = float(np.mean(reconstruction_errors(model, far, device="cpu")) / np.mean(far**2))
    assert errors["linear"] < 1e-4
    assert errors["dense"] > 100 * errors["linear"]


def test_vae_scores_without_sampling():
    torch.manual_seed(0)
    model = build_model("vae", D)
    x = torch.randn(16, D)
    model.train()  # even in training mode, score uses the posterior mean: deterministic
    torch.testing.assert_close(model.score(x), model.score(x), rtol=0, atol=0)
    model.eval()
    torch.testing.assert_close(model(x), model(x), rtol=0, atol=0)
    assert model.loss(x) > 0


def test_sizes_are_configurable():
    model = build_model("dense", D, hidden=(64,), latent_dim=3)
    assert model.config() == {"hidden": [64], "latent_dim": 3}
    assert model.encode(torch.randn(2, D)).shape == (2, 3)
    cnn = build_model("cnn", D, window=7, channels=(8,), kernel_size=5)
    assert cnn(torch.randn(2, 7, D)).shape == (2, 7, D)


def test_registry_errors():
    with pytest.raises(FedadError, match="unknown model"):
        build_model("transformer", D)
    with pytest.raises(FedadError, match="bad sizes"):
        build_model("dense", D, depth=3)
    with pytest.raises(FedadError, match="window"):
        build_model("lstm", D, window=0)
    with pytest.raises(FedadError):
        build_model("cnn", D, kernel_size=4)

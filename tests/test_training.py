"""The training loop learns, stops early, is deterministic; weights and devices behave."""

import subprocess
import sys

import numpy as np
import pytest
import torch

from fedad.common.errors import FedadError
from fedad.common.models import build_model
from fedad.common.training import (
    _CPU_FUSES,
    adam,
    get_weights,
    mean_embedding,
    reconstruction_errors,
    resolve_device,
    set_weights,
    train_model,
)

torch.set_num_threads(1)


def manifold(n, d=6, seed=0):
    """Rows on a 2-D linear manifold plus a little noise, float32."""
    rng = np.random.default_rng(seed)
    z = rng.normal(size=(n, 2))
    mix = rng.normal(size=(2, d))
    return (z @ mix + 0.05 * rng.normal(size=(n, d))).astype(np.float32)


def test_training_reduces_loss():
    X = manifold(1200)
    torch.manual_seed(0)
    model = build_model("dense", X.shape[1])
    before = reconstruction_errors(model, X[1000:], device="cpu").mean()
    hist = train_model(model, X[:1000], X[1000:], epochs=15, batch_size=64, lr=3e-3, patience=None, device="cpu")
    assert hist["epochs"] == 15 and len(hist["train_loss"]) == len(hist["val_loss"]) == 15
    assert hist["train_loss"][-1] < 0.5 * hist["train_loss"][0]
    after = reconstruction_errors(model, X[1000:], device="cpu")
    assert after.dtype == np.float64 and after.shape == (200,)
    assert after.mean() < 0.5 * before
    assert after.mean() == pytest.approx(min(hist["val_loss"]), rel=1e-3)  # best weights are the ones kept


def test_early_stopping_restores_best_weights():
    rng = np.random.default_rng(1)
    X_train = rng.normal(size=(300, 4)).astype(np.float32)
    X_val = (rng.normal(size=(100, 4)) * 5 + 3).astype(np.float32)  # unlike training: val loss soon rises
    torch.manual_seed(0)
    model = build_model("dense", 4)
    hist = train_model(model, X_train, X_val, epochs=200, batch_size=32, lr=1e-2, patience=3, device="cpu")
    assert hist["epochs"] < 200
    assert hist["epochs"] - hist["best_epoch"] == 3
    best = min(hist["val_loss"])
    assert hist["val_loss"][hist["best_epoch"] - 1] == best
    assert reconstruction_errors(model, X_val, device="cpu").mean() == pytest.approx(best, rel=1e-4)


@pytest.mark.parametrize("name", ["dense", "vae", "gru"])
def test_training_is_deterministic(name):
    X = manifold(200, d=3)
    if name == "gru":
        X = np.lib.stride_tricks.sliding_window_view(X, 4, axis=0).transpose(0, 2, 1).copy()
    results = []
    for _ in range(2):
        torch.manual_seed(5)
        model = build_model(name, 3, window=4 if name == "gru" else 1)
        hist = train_model(model, X[:150], X[150:], epochs=3, batch_size=32, device="cpu", seed=7)
        results.append((hist["train_loss"], get_weights(model)))
    assert results[0][0] == results[1][0]
    for a, b in zip(results[0][1], results[1][1], strict=True):
        np.testing.assert_array_equal(a, b)


def test_training_without_validation_and_progress():
    X = manifold(100)
    calls = []
    model = build_model("dense", X.shape[1])
    hist = train_model(model, X, None, epochs=2, batch_size=50, device="cpu", progress=lambda *a: calls.append(a))
    assert hist["epochs"] == 2 and np.isnan(hist["val_loss"]).all()
    assert [c[:2] for c in calls] == [(1, 2), (2, 2)]


def test_bad_training_arguments():
    model = build_model("dense", 3)
    with pytest.raises(FedadError):
        train_model(model, np.zeros((0, 3), np.float32), None, device="cpu")
    with pytest.raises(FedadError):
        train_model(model, np.zeros((5, 3), np.float32), None, epochs=0, device="cpu")


def test_weights_round_trip_and_shape_check():
    a, b = build_model("cnn", 3, window=5), build_model("cnn", 3, window=5)
    weights = get_weights(a)
    assert all(isinstance(w, np.ndarray) for w in weights)
    assert len(weights) == len(a.state_dict())
    set_weights(b, weights)
    x = np.random.default_rng(0).normal(size=(4, 5, 3)).astype(np.float32)
    np.testing.assert_array_equal(reconstruction_errors(a, x, "cpu"), reconstruction_errors(b, x, "cpu"))
    weights[0] = np.zeros((1, 1), np.float32)
    with pytest.raises(FedadError, match="shape"):
        set_weights(b, weights)
    with pytest.raises(FedadError, match="arrays"):
        set_weights(b, weights[:-1])


def test_reconstruction_errors_batches_and_embedding():
    X = manifold(1000, d=4)
    model = build_model("dense", 4)
    whole = reconstruction_errors(model, X, "cpu")
    np.testing.assert_allclose(reconstruction_errors(model, X, "cpu", batch_size=64), whole, rtol=1e-6)
    emb = mean_embedding(model, X, "cpu", batch_size=300)
    assert emb.shape == (model.latent_dim,) and emb.dtype == np.float64
    with torch.inference_mode():
        expected = model.encode(torch.from_numpy(X)).double().mean(0).numpy()
    np.testing.assert_allclose(emb, expected, rtol=1e-5, atol=1e-6)


def test_resolve_device(monkeypatch):
    assert resolve_device("cpu") == torch.device("cpu")
    expected = "cuda" if torch.cuda.is_available() else "cpu"
    assert resolve_device("auto").type == expected
    with pytest.raises(FedadError):
        resolve_device("tpu")
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    assert resolve_device("auto") == torch.device("cpu")
    with pytest.raises(FedadError, match="CUDA"):
        resolve_device("cuda")
    with pytest.raises(FedadError, match="CUDA"):
        resolve_device("cuda:0")


CPU_FUSES = _CPU_FUSES  # torch fuses Adam on CPU (else adam() falls back to torch.optim.Adam)


def _fit(make_opt, X: torch.Tensor) -> list[np.ndarray]:
    torch.manual_seed(0)
    model = build_model("dense", 6)
    opt = make_opt(model)
    for start in range(0, len(X), 64):
        loss = model.loss(X[start : start + 64])
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
    return get_weights(model)


def test_adam_is_fused_on_cpu_and_takes_the_default_implementations_steps():
    """fedad's Adam is torch's fused Adam to the bit, and torch's default Adam to float rounding."""
    X = torch.from_numpy(np.random.default_rng(0).normal(size=(512, 6)).astype(np.float32))
    ours = _fit(lambda m: adam(m, 1e-2, 1e-5, torch.device("cpu")), X)
    default = _fit(lambda m: torch.optim.Adam(m.parameters(), lr=1e-2, weight_decay=1e-5), X)
    for a, b in zip(ours, default, strict=True):
        np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-6)
    if CPU_FUSES:
        fused = _fit(lambda m: torch.optim.Adam(m.parameters(), lr=1e-2, weight_decay=1e-5, fused=True), X)
        for a, b in zip(ours, fused, strict=True):
            np.testing.assert_array_equal(a, b)


@pytest.mark.skipif(not CPU_FUSES, reason="torch < 2.4 takes torch.optim.Adam on CPU")
def test_training_does_not_import_torch_dynamo():
    """torch.optim imports torch._dynamo on first use (~0.75 s of every training process); fedad's Adam does not."""
    code = (
        "import sys, numpy as np\n"
        "from fedad.common.models import build_model\n"
        "from fedad.common.training import train_model\n"
        "X = np.random.default_rng(0).normal(size=(300, 4)).astype(np.float32)\n"
        "train_model(build_model('dense', 4), X[:200], X[200:], epochs=2, device='cpu')\n"
        "print('torch._dynamo' in sys.modules)\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"


@pytest.mark.parametrize(
    ("name", "d", "window", "batch"),
    [("dense", 12, 1, 256), ("dense", 12, 1, 1), ("dense", 119, 1, 100), ("dense", 5, 4, 64), ("linear", 12, 1, 256)],
)
def test_dense_models_own_gradients_are_autograds_to_the_bit(name, d, window, batch):
    """loss_and_grads gives the loss and every parameter's gradient that loss().backward() gives, exactly."""
    torch.manual_seed(1)
    model = build_model(name, d, window=window)
    assert model.has_manual_gradients()
    shape = (batch, window, d) if window > 1 else (batch, d)
    x = torch.from_numpy(np.random.default_rng(2).normal(size=shape).astype(np.float32))
    loss = model.loss(x)
    loss.backward()
    expected = [p.grad.clone() for p in model.parameters()]
    for p in model.parameters():
        p.grad = None
    got = model.loss_and_grads(x)
    assert torch.equal(got, loss.detach())
    for p, g in zip(model.parameters(), expected, strict=True):
        assert p.grad is not None and torch.equal(p.grad, g)


def test_training_with_the_dense_models_own_gradients_gives_autograds_weights(monkeypatch):
    """A whole train_model run (several epochs, a short last batch, weight decay, early stopping) ends with the
    same weights to the bit whether the steps take loss_and_grads or autograd."""
    from fedad.common.models.dense import DenseAutoencoder

    X = np.random.default_rng(3).normal(size=(1100, 12)).astype(np.float32)
    calls = []
    real = DenseAutoencoder.loss_and_grads

    def counted(self, x):
        calls.append(len(x))
        return real(self, x)

    monkeypatch.setattr(DenseAutoencoder, "loss_and_grads", counted)
    runs = []
    for manual in (True, False):
        monkeypatch.setattr(DenseAutoencoder, "has_manual_gradients", lambda self, m=manual: m)
        torch.manual_seed(0)
        model = build_model("dense", 12)
        hist = train_model(model, X[:900], X[900:], epochs=4, batch_size=128, device="cpu", seed=5)
        runs.append((get_weights(model), hist["train_loss"]))
    assert calls and calls[-1] == 900 % 128  # the manual path ran, short last batch included
    (w1, l1), (w2, l2) = runs
    assert l1 == l2
    for a, b in zip(w1, w2, strict=True):
        np.testing.assert_array_equal(a, b)


def test_models_that_change_the_dense_loss_or_forward_keep_autograd():
    from fedad.common.models.dense import DenseAutoencoder

    class Penalised(DenseAutoencoder):
        def loss(self, x):
            return super().loss(x) + sum(p.square().sum() for p in self.parameters())

    assert not Penalised(6).has_manual_gradients()
    assert build_model("dense", 6).has_manual_gradients()
    assert not hasattr(build_model("vae", 6), "has_manual_gradients")


def test_a_read_only_array_becomes_a_tensor_without_torch_warning():
    import warnings

    from fedad.common.training import as_tensor

    X = np.random.default_rng(0).normal(size=(64, 3)).astype(np.float32)
    X.flags.writeable = False  # as a view of an Arrow-backed or memory-mapped frame is
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # torch warns "not writable" once per process: none may reach the user
        t = as_tensor(X, torch.device("cpu"))
    assert torch.equal(t, torch.from_numpy(X.copy()))
    assert t.data_ptr() != X.__array_interface__["data"][0]  # a copy (torch warns only once a process)
    W = np.ascontiguousarray(X.copy())
    assert as_tensor(W, torch.device("cpu")).data_ptr() == W.__array_interface__["data"][0]  # writable: shared

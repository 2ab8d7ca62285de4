"""Training and inference loops for the autoencoders, plus the weight and embedding exchange used by federation."""

from __future__ import annotations

import copy
import math
from collections.abc import Callable
from typing import Any

import numpy as np
import torch
from torch import nn

from fedad.common.errors import FedadError
from fedad.common.models.base import Autoencoder
from fedad.common.models.dense import DenseAutoencoder

# scoring batch sizes: on CPU activations of ~8k rows stay in L2 cache (measured fastest for the dense AE)
SCORE_BATCH_CPU = 8192
SCORE_BATCH_CUDA = 65536
# progress(epoch, epochs, train_loss, val_loss) after each epoch; val_loss is nan without validation data
ProgressFn = Callable[[int, int, float, float], None]


def resolve_device(spec: str | torch.device = "auto") -> torch.device:
    """``auto`` -> CUDA when available else CPU; asking for CUDA without one raises FedadError."""
    name = str(spec).strip().lower()
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name == "cpu":
        return torch.device("cpu")
    if name.startswith("cuda"):
        if not torch.cuda.is_available():
            raise FedadError(f"device '{spec}' requested but CUDA is not available (use --device cpu or auto)")
        try:
            device = torch.device(name)
        except RuntimeError:
            raise FedadError(f"bad device '{spec}' (use auto, cpu, cuda or cuda:N)") from None
        if device.index is not None and device.index >= torch.cuda.device_count():
            raise FedadError(f"device '{spec}' requested but only {torch.cuda.device_count()} CUDA device(s) exist")
        return device
    raise FedadError(f"bad device '{spec}' (use auto, cpu, cuda or cuda:N)")


def as_tensor(X: np.ndarray | torch.Tensor, device: str | torch.device) -> torch.Tensor:
    """A float32 tensor on ``device``, made once (no copy on CPU when X is already contiguous, writable float32;
    a read-only array, e.g. a view of a memory-mapped or Arrow-backed frame, is copied: torch cannot share it)."""
    if isinstance(X, torch.Tensor):
        return X.detach().to(device=device, dtype=torch.float32)
    A = np.ascontiguousarray(X, dtype=np.float32)
    return torch.from_numpy(A if A.flags.writeable else A.copy()).to(device)


# torch.optim.Adam fuses on CPU from torch 2.4 (on CUDA since 2.0); pyproject allows torch >= 2.2
_CPU_FUSES = tuple(int(p) for p in torch.__version__.split("+")[0].split(".")[:2]) >= (2, 4)


class FusedAdam:
    """Adam through torch's fused kernel (``torch._fused_adam_``, as ``torch.optim.Adam(fused=True)`` calls it).

    The same update, to the bit, as ``torch.optim.Adam(..., fused=True)``, without its first-use import of
    ``torch._dynamo`` (every torch.optim optimizer imports it: about 0.75 s of each training process's start).
    """

    def __init__(
        self, params: list[nn.Parameter], lr: float, weight_decay: float, betas: tuple[float, float] = (0.9, 0.999)
    ) -> None:
        self.params = [p for p in params if p.requires_grad]
        self.lr, self.weight_decay, self.betas, self.eps = lr, weight_decay, betas, 1e-8
        self.exp_avgs = [torch.zeros_like(p) for p in self.params]
        self.exp_avg_sqs = [torch.zeros_like(p) for p in self.params]
        self.steps = [torch.zeros((), dtype=torch.float32, device=p.device) for p in self.params]

    def zero_grad(self, set_to_none: bool = True) -> None:
        for p in self.params:
            if set_to_none:
                p.grad = None
            elif p.grad is not None:
                p.grad.zero_()

    @torch.no_grad()
    def step(self) -> None:
        live = [(i, p, p.grad) for i, p in enumerate(self.params) if p.grad is not None]
        if not live:
            return
        steps = [self.steps[i] for i, _, _ in live]
        torch._foreach_add_(steps, 1)
        torch._fused_adam_(
            [p for _, p, _ in live],
            [g for _, _, g in live],
            [self.exp_avgs[i] for i, _, _ in live],
            [self.exp_avg_sqs[i] for i, _, _ in live],
            [],
            steps,
            amsgrad=False,
            lr=self.lr,
            beta1=self.betas[0],
            beta2=self.betas[1],
            weight_decay=self.weight_decay,
            eps=self.eps,
            maximize=False,
        )


def adam(model: nn.Module, lr: float, weight_decay: float, device: torch.device) -> FusedAdam | torch.optim.Adam:
    """Adam over the model's parameters, fused into one kernel per step on CPU and CUDA (where torch can).

    The same update as the default implementation up to float rounding; fused it costs about 0.46 instead of
    0.71 ms per step of the default dense model on one CPU thread (bench/README.md, "Training steps").
    Elsewhere (other devices, torch < 2.4 on CPU) it is ``torch.optim.Adam``.
    """
    if device.type == "cuda" or (device.type == "cpu" and _CPU_FUSES):
        return FusedAdam(list(model.parameters()), lr=lr, weight_decay=weight_decay)
    return torch.optim.Adam(model.parameters(), lr=lr, weight_decay=weight_decay)


def _mean_loss(model: Autoencoder, X: torch.Tensor, batch_size: int) -> float:
    """Sample-weighted mean of ``model.loss`` over X in eval mode, without gradients."""
    model.eval()
    total = 0.0
    with torch.inference_mode():
        for start in range(0, len(X), batch_size):
            xb = X[start : start + batch_size]
            total += float(model.loss(xb)) * len(xb)
    return total / len(X)


def train_model(
    model: Autoencoder,
    X_train: np.ndarray | torch.Tensor,
    X_val: np.ndarray | torch.Tensor | None = None,
    epochs: int = 50,
    batch_size: int = 256,
    lr: float = 1e-3,
    weight_decay: float = 1e-5,
    patience: int | None = 5,
    device: str | torch.device = "auto",
    seed: int = 0,
    progress: ProgressFn | None = None,
) -> dict[str, Any]:
    """Fit ``model`` to reconstruct ``X_train`` with Adam, early-stopping on the validation loss.

    Samples are ``(n, d)`` rows or ``(n, W, d)`` windows, matching the model. The weights of the best epoch
    (lowest validation loss, or training loss when ``X_val`` is empty) are restored at the end; training stops
    after ``patience`` epochs without improvement (``None`` or 0: never early). Deterministic for a seed on CPU.
    Returns ``{"train_loss": [...], "val_loss": [...], "epochs": run, "best_epoch": k}`` (1-based epochs).
    """
    if epochs < 1:
        raise FedadError(f"epochs must be at least 1, got {epochs}")
    if batch_size < 1:
        raise FedadError(f"batch size must be at least 1, got {batch_size}")
    if len(X_train) == 0:
        raise FedadError("no training samples")
    dev = resolve_device(device)
    torch.manual_seed(seed)  # the VAE samples its latent code from the global generator
    generator = torch.Generator(device="cpu").manual_seed(seed)
    model.to(dev)
    xt = as_tensor(X_train, dev)
    xv = as_tensor(X_val, dev) if X_val is not None and len(X_val) else None
    eval_batch = max(batch_size, 8192)
    optimizer = adam(model, lr, weight_decay, dev)

    # the dense models' own backward pass (the same values as autograd's, to the bit; tested on CPU only)
    step_loss: Callable[[torch.Tensor], torch.Tensor] | None = None
    if dev.type == "cpu" and isinstance(model, DenseAutoencoder) and model.has_manual_gradients():
        step_loss = model.loss_and_grads
    history: dict[str, Any] = {"train_loss": [], "val_loss": [], "epochs": 0, "best_epoch": 0}
    best, best_state, stale = math.inf, None, 0
    n = len(xt)
    for epoch in range(1, epochs + 1):
        model.train()
        perm = torch.randperm(n, generator=generator).to(dev)
        total = torch.zeros((), device=dev)  # summed on device: no host sync per batch
        for start in range(0, n, batch_size):
            xb = xt[perm[start : start + batch_size]]
            if step_loss is not None:
                loss = step_loss(xb)
            else:
                loss = model.loss(xb)
                optimizer.zero_grad(set_to_none=True)
                loss.backward()
            optimizer.step()
            total += loss.detach() * len(xb)
        train_loss = float(total) / n
        val_loss = _mean_loss(model, xv, eval_batch) if xv is not None else math.nan
        history["train_loss"].append(train_loss)
        history["val_loss"].append(val_loss)
        history["epochs"] = epoch
        if progress is not None:
            progress(epoch, epochs, train_loss, val_loss)
        monitored = val_loss if xv is not None else train_loss
        if not math.isfinite(monitored):
            raise FedadError(f"training diverged at epoch {epoch} (loss {monitored}); lower --lr or check the data")
        if monitored < best:
            best, stale, history["best_epoch"] = monitored, 0, epoch
            best_state = copy.deepcopy(model.state_dict())
        else:
            stale += 1
            if patience and stale >= patience:
                break
    if best_state is not None:
        model.load_state_dict(best_state)
    model.eval()
    return history


def ready_for_scoring(model: torch.nn.Module, device: str | torch.device) -> None:
    """Put the model on ``device`` in eval mode, skipping what already holds (a per-call cost in live scoring)."""
    dev = torch.device(device)
    p = next(model.parameters(), None)
    if p is None or p.device.type != dev.type or (dev.index is not None and p.device.index != dev.index):
        model.to(dev)
    if model.training:
        model.eval()


def reconstruction_errors(
    model: Autoencoder,
    X: np.ndarray | torch.Tensor,
    device: str | torch.device = "auto",
    batch_size: int | None = None,
) -> np.ndarray:
    """Per-sample anomaly scores ``model.score`` of rows or windows X, float64 ``(n,)``, in eval mode.

    Works batch by batch, so a strided window view of X is only made contiguous one batch at a time.
    ``batch_size=None`` picks 65536 on CUDA and 8192 on CPU, where cache-sized batches are fastest.
    """
    dev = resolve_device(device)
    if batch_size is None:
        batch_size = SCORE_BATCH_CUDA if dev.type == "cuda" else SCORE_BATCH_CPU
    ready_for_scoring(model, dev)
    out = np.empty(len(X), dtype=np.float64)
    with torch.inference_mode():
        for start in range(0, len(X), batch_size):
            xb = as_tensor(X[start : start + batch_size], dev)
            out[start : start + len(xb)] = model.score(xb).cpu().numpy()
    return out


# most samples ``calibrate`` looks at (evenly spaced): enough for a centre and two medians
CALIBRATE_MAX = 65536


def calibrate(model: Autoencoder, X: np.ndarray | torch.Tensor, device: str | torch.device = "auto") -> None:
    """Let the model fit its scoring statistics on normal samples X (at most CALIBRATE_MAX, evenly spaced)."""
    if type(model).calibrate is Autoencoder.calibrate:
        return  # nothing to fit: skip the copy
    if len(X) == 0:
        raise FedadError("no samples to calibrate the score on")
    dev = resolve_device(device)
    idx = np.linspace(0, len(X) - 1, num=min(len(X), CALIBRATE_MAX)).round().astype(np.int64)
    model.to(dev).eval()
    with torch.no_grad():
        model.calibrate(as_tensor(X[idx] if len(idx) < len(X) else X, dev))


def mean_embedding(
    model: Autoencoder,
    X: np.ndarray | torch.Tensor,
    device: str | torch.device = "auto",
    batch_size: int = 65536,
) -> np.ndarray:
    """Mean latent code ``model.encode`` over the samples X, float64 ``(latent_dim,)``."""
    if len(X) == 0:
        raise FedadError("no samples to embed")
    dev = resolve_device(device)
    model.to(dev).eval()
    with torch.inference_mode():
        total = torch.zeros(model.latent_dim, dtype=torch.float64, device=dev)
        for start in range(0, len(X), batch_size):
            total += model.encode(as_tensor(X[start : start + batch_size], dev)).double().sum(0)
    return (total / len(X)).cpu().numpy()


def get_weights(model: nn.Module) -> list[np.ndarray]:
    """Copies of the model's tensors in ``state_dict`` order (parameters and buffers)."""
    return [t.detach().cpu().numpy().copy() for t in model.state_dict().values()]


def set_weights(model: nn.Module, weights: list[np.ndarray]) -> None:
    """Load arrays in ``state_dict`` order; a wrong count or shape raises FedadError and changes nothing."""
    state = model.state_dict()
    if len(weights) != len(state):
        raise FedadError(f"weights have {len(weights)} arrays but the model has {len(state)} tensors")
    new = {}
    for (key, current), w in zip(state.items(), weights, strict=True):
        arr = np.asarray(w)
        if tuple(arr.shape) != tuple(current.shape):
            raise FedadError(f"weight '{key}' has shape {tuple(arr.shape)}, the model expects {tuple(current.shape)}")
        new[key] = torch.as_tensor(arr, dtype=current.dtype)
    model.load_state_dict(new)

"""Dense (fully connected) autoencoder: the small, fast model that is federated by default."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from fedad.common.models.base import Autoencoder


def mlp(sizes: Sequence[int]) -> nn.Sequential:
    """Linear layers through ``sizes`` with ReLU between them (none after the last)."""
    layers: list[nn.Module] = []
    for i, (a, b) in enumerate(zip(sizes[:-1], sizes[1:], strict=True)):
        layers.append(nn.Linear(a, b))
        if i < len(sizes) - 2:
            layers.append(nn.ReLU(inplace=True))
    return nn.Sequential(*layers)


class DenseAutoencoder(Autoencoder):
    """``d -> hidden... -> latent -> reversed(hidden) -> d`` (ReLU inside, linear code).

    Windows ``(B, W, d)`` (window > 1) are flattened to ``W*d`` inputs.

    The default ``d -> 32 -> 16 -> 8 -> 16 -> 32 -> d`` has about 2k parameters for 12 sensors.
    """

    def __init__(self, n_features: int, window: int = 1, hidden: Sequence[int] = (32, 16), latent_dim: int = 8) -> None:
        super().__init__(n_features, window, latent_dim)
        self.sequence = window > 1
        self.hidden = tuple(int(h) for h in hidden)
        n_in = n_features * window
        self.encoder = mlp((n_in, *self.hidden, latent_dim))
        self.decoder = mlp((latent_dim, *reversed(self.hidden), n_in))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.decoder(self.encoder(x.flatten(1))).view_as(x)

    def encode(self, x: torch.Tensor) -> torch.Tensor:
        return self.encoder(x.flatten(1))

    def has_manual_gradients(self) -> bool:
        """Whether ``loss_and_grads`` computes this model's training loss: the dense forward pass and the MSE
        loss, neither overridden by a subclass, through Linear and ReLU layers only."""
        kind = type(self)
        return (
            kind.forward is DenseAutoencoder.forward
            and kind.loss is Autoencoder.loss
            and all(isinstance(m, (nn.Linear, nn.ReLU)) for m in (*self.encoder, *self.decoder))
        )

    def loss_and_grads(self, x: torch.Tensor) -> torch.Tensor:
        """``loss(x)``, with its gradients written to the parameters' ``.grad``, without autograd.

        It calls the kernels autograd calls (addmm forward, mse_loss, threshold_backward and mm backward), so the
        values are the same to the bit (tests/test_training.py); it skips building and walking the graph, which
        costs most of a step of this small network (bench/train_steps.py). Only where
        ``has_manual_gradients()``.
        """
        with torch.no_grad():
            h = x.flatten(1)
            trace: list[tuple[nn.Module, torch.Tensor, torch.Tensor]] = []
            for m in (*self.encoder, *self.decoder):
                out = torch.addmm(m.bias, h, m.weight.t()) if isinstance(m, nn.Linear) else torch.relu(h)
                trace.append((m, h, out))
                h = out
            loss = F.mse_loss(h.view_as(x), x)
            g = (h - x.flatten(1)) * (2.0 / h.numel())
            for i in range(len(trace) - 1, -1, -1):
                m, inp, out = trace[i]
                if isinstance(m, nn.Linear):
                    m.weight.grad = g.t().mm(inp)
                    m.bias.grad = g.sum(0)
                    if i:
                        g = g.mm(m.weight)
                else:
                    g = torch.ops.aten.threshold_backward(g, out, 0)
        return loss

    def config(self) -> dict[str, Any]:
        return {"hidden": list(self.hidden), "latent_dim": self.latent_dim}

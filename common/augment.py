"""Augmentations that make the two views of a record or window for contrastive training.

All functions take a batch ``x`` of rows ``(B, d)`` or windows ``(B, W, d)`` (standardised features) and
return a new tensor of the same shape; randomness comes from ``generator`` (None: torch's global generator),
so a seeded generator gives the same views every time.

- ``jitter``: additive Gaussian noise, ``x + sigma * N(0, 1)`` per value (sensor noise).
- ``scaling``: one multiplicative factor ``1 + sigma * N(0, 1)`` per sample and feature (gain drift).
- ``feature_mask``: each feature of a sample set to 0 (the standardised mean) with probability ``p``
  (a dropped or stuck sensor); windows mask a feature over the whole window.
- ``time_shift``: windows only; each window shifted by up to ``max_shift`` steps either way, the vacated
  steps filled with the edge value (no wrap-around), so the view still reads as one contiguous stretch.
- ``augment``: the composition used by ``--model contrastive``: scaling, jitter, masking, and time shifts
  for windows.
"""

from __future__ import annotations

import torch


def jitter(x: torch.Tensor, sigma: float, generator: torch.Generator | None = None) -> torch.Tensor:
    """``x`` plus Gaussian noise of standard deviation ``sigma``."""
    if sigma <= 0.0:
        return x.clone()
    noise = torch.randn(x.shape, generator=generator, device=x.device, dtype=x.dtype)
    return x + sigma * noise


def scaling(x: torch.Tensor, sigma: float, generator: torch.Generator | None = None) -> torch.Tensor:
    """``x`` times ``1 + sigma * N(0, 1)``, one factor per sample and feature (shared along a window)."""
    if sigma <= 0.0:
        return x.clone()
    shape = (x.shape[0], *([1] * (x.dim() - 2)), x.shape[-1])
    factor = 1.0 + sigma * torch.randn(shape, generator=generator, device=x.device, dtype=x.dtype)
    return x * factor


def feature_mask(x: torch.Tensor, p: float, generator: torch.Generator | None = None) -> torch.Tensor:
    """``x`` with each (sample, feature) zeroed with probability ``p`` (for a whole window at once)."""
    if p <= 0.0:
        return x.clone()
    shape = (x.shape[0], *([1] * (x.dim() - 2)), x.shape[-1])
    keep = torch.rand(shape, generator=generator, device=x.device) >= p
    return x * keep.to(x.dtype)


def time_shift(x: torch.Tensor, max_shift: int, generator: torch.Generator | None = None) -> torch.Tensor:
    """Windows ``(B, W, d)`` shifted by a random ``-max_shift..max_shift`` steps each, edge-padded; rows unchanged."""
    if x.dim() != 3 or max_shift <= 0 or x.shape[1] < 2:
        return x.clone()
    b, w = x.shape[0], x.shape[1]
    max_shift = min(int(max_shift), w - 1)
    shift = torch.randint(-max_shift, max_shift + 1, (b, 1), generator=generator, device=x.device)
    idx = (torch.arange(w, device=x.device).unsqueeze(0) - shift).clamp_(0, w - 1)  # (B, W) source steps
    return torch.gather(x, 1, idx.unsqueeze(-1).expand(-1, -1, x.shape[2]))


def augment(
    x: torch.Tensor,
    jitter_sigma: float = 0.1,
    scale_sigma: float = 0.1,
    mask_p: float = 0.1,
    max_shift: int = 2,
    generator: torch.Generator | None = None,
) -> torch.Tensor:
    """One random view: scaling, then jitter, then feature masking, then (windows only) a time shift."""
    v = scaling(x, scale_sigma, generator)
    v = jitter(v, jitter_sigma, generator)
    v = feature_mask(v, mask_p, generator)
    return time_shift(v, max_shift, generator)

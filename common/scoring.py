"""Record scores from per-feature reconstruction errors, each feature normalised by its training error scale.

An autoencoder reconstructs every feature of a record; the legacy score (``mse``) is the mean squared error
over features, which lets the features the model reconstructs worst (noisy or drifting sensors) dominate and
makes score scales differ by orders of magnitude between sites. The normalised scores divide each
feature's absolute error by that feature's error scale on the training rows (``feature_scales``: the 0.999
quantile of its |error| from 1,000 training samples on, its RMS error on fewer), so a feature counts by how
unusual its error is, then aggregate over features and take log(1 + .):

- ``mean``: the mean normalised error over features;
- ``max``: the largest normalised error (one sensor far off counts as much as several slightly off);
- ``topk``: the mean of the ``k`` largest normalised errors (between the two).

The log keeps one huge error from swamping smoothing windows and makes the upper tail of normal scores
close to exponential, which the peaks-over-threshold rule (``fedad.common.pot``) fits well. Sequence
models: a feature's error over a window is its RMS over the window's records.
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING, Any

import numpy as np

from fedad.common.errors import FedadError

if TYPE_CHECKING:
    import torch

SCORES: tuple[str, ...] = ("mse", "mean", "max", "topk")
DEFAULT_SCORE = "max"
DEFAULT_TOP_K = 3
_SCALE_FLOOR = 1e-12
TAIL_QUANTILE = 0.999  # a feature's error scale: this quantile of its training |errors| ...
TAIL_MIN_SAMPLES = 1000  # ... from 1 / (1 - TAIL_QUANTILE) samples on; fewer cannot place it inside the data: RMS


def check_score(score: Any, top_k: Any = DEFAULT_TOP_K) -> tuple[str, int]:
    """(score, top_k) validated; FedadError names the bad one."""
    if score not in SCORES:
        raise FedadError(f"unknown score {score!r} (choose from {', '.join(SCORES)})")
    if isinstance(top_k, bool) or not isinstance(top_k, (int, np.integer)) or top_k < 1:
        raise FedadError(f"top-k must be an integer >= 1, got {top_k!r}")
    return str(score), int(top_k)


def feature_errors(
    model: torch.nn.Module, samples: np.ndarray, device: str | torch.device = "cpu", batch_size: int = 8192
) -> np.ndarray:
    """Squared reconstruction error per sample and feature, float64 (n, d); windows: mean over the window."""
    import torch

    from fedad.common.training import as_tensor, ready_for_scoring

    ready_for_scoring(model, device)
    out = np.empty((len(samples), samples.shape[-1]), dtype=np.float64)
    with torch.inference_mode():
        for start in range(0, len(samples), batch_size):
            xb = as_tensor(samples[start : start + batch_size], device)
            err = (model(xb) - xb).square()  # eval mode: VAEs reconstruct from the posterior mean
            if err.ndim == 3:
                err = err.mean(1)
            out[start : start + len(xb)] = err.cpu().numpy()
    return out


def feature_scales(errors: np.ndarray) -> np.ndarray:
    """The scale (d,) each feature's |error| is divided by, from squared training errors (n, d): the
    ``TAIL_QUANTILE`` quantile of its |error| from ``TAIL_MIN_SAMPLES`` samples on, its RMS error below.

    The tail quantile gives every feature the same rate of normal errors above its scale, so a feature whose
    normal errors are heavy-tailed does not set every record's ``max`` (it did with the RMS: on KDD Cup 99 a
    model that reconstructs ``count`` left smurf's errors under the threshold its heavy tails set).
    """
    e = np.asarray(errors, dtype=np.float64)
    if e.ndim != 2 or len(e) == 0:
        raise FedadError(f"feature scales need a non-empty (samples x features) error array, got shape {e.shape}")
    if len(e) < TAIL_MIN_SAMPLES:
        return np.maximum(np.sqrt(e.mean(axis=0)), _SCALE_FLOOR)
    return np.maximum(np.quantile(np.sqrt(e), TAIL_QUANTILE, axis=0), _SCALE_FLOOR)


def aggregate_errors(
    errors: np.ndarray, scales: np.ndarray | None, score: str = DEFAULT_SCORE, top_k: int = DEFAULT_TOP_K
) -> np.ndarray:
    """One score per sample (n,) from squared feature errors (n, d): ``mse`` or log(1 + mean/max/top-k of
    |error| / scale)."""
    score, top_k = check_score(score, top_k)
    e = np.asarray(errors, dtype=np.float64)
    if score == "mse":
        return e.mean(axis=1)
    if scales is None or np.shape(scales) != (e.shape[1],):
        raise FedadError(f"score {score!r} needs one training error scale per feature ({e.shape[1]})")
    r = np.sqrt(e) / np.asarray(scales, dtype=np.float64)
    if score == "mean":
        agg = r.mean(axis=1)
    elif score == "max":
        agg = r.max(axis=1)
    else:
        k = min(top_k, r.shape[1])
        agg = np.partition(r, r.shape[1] - k, axis=1)[:, r.shape[1] - k :].mean(axis=1)
    return np.log1p(agg)


def scales_to_list(scales: np.ndarray | None) -> list[float] | None:
    """JSON-able scales (None stays None)."""
    return None if scales is None else [float(s) for s in scales]


def scales_from_list(values: Any, n_features: int) -> np.ndarray | None:
    """Scales read from a saved model; FedadError when they do not fit the model."""
    if values is None:
        return None
    try:
        s = np.asarray(values, dtype=np.float64).reshape(-1)
    except (TypeError, ValueError):
        raise FedadError("feature error scales must be numbers") from None
    if s.size != n_features or not np.isfinite(s).all() or (s <= 0).any() or math.isnan(s.sum()):
        raise FedadError(f"feature error scales must be {n_features} positive finite numbers")
    return s

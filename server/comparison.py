"""Centralized and local-only baselines on the same shards and split as a federated run (for demo and bench).

These pool or isolate the data on purpose, to measure what federation costs or gains: they run only where
one party holds all shards (the synthetic demo, benchmarks), never inside a deployment.
"""
from __future__ import annotations

import time

import numpy as np

from fedad.common.detector import AutoencoderDetector
from fedad.common.metrics import detection_metrics
from fedad.common.split import split_site

KEYS = ("precision", "recall", "f1", "roc_auc", "far", "mar")


def _detector(spec, epochs: int, **preprocessing) -> AutoencoderDetector:
    return AutoencoderDetector(model=spec.model, window=spec.window, epochs=epochs, batch_size=spec.batch_size,
                               lr=spec.lr, weight_decay=spec.weight_decay, patience=max(3, epochs // 4),
                               threshold_quantile=spec.threshold_quantile, seed=spec.seed, device="cpu",
                               preprocessing={**spec.preprocessing, **preprocessing}, model_sizes=dict(spec.sizes) or None)


def _site_scaled(splits):
    """Each site's rows standardised with its own training statistics (what site scaling does)."""
    out = []
    for s in splits:
        fit = np.concatenate([s.train, s.val])
        mu, sd = np.nanmean(fit, axis=0), np.nanstd(fit, axis=0)
        sd[~(sd > 0)] = 1.0
        out.append(type(s)(train=(s.train - mu) / sd, val=(s.val - mu) / sd, test=(s.test - mu) / sd,
                           test_labels=s.test_labels))
    return out


def centralized(datasets, spec, epochs: int) -> dict:
    """One model trained on all sites' training rows pooled, tested on all test parts pooled.

    Under site scaling every site's rows are first standardised with that site's own statistics, as the
    federated clients do; the pooled model then adds no scaler of its own.
    """
    t0 = time.perf_counter()
    splits = [split_site(d.X, d.y) for d in datasets]
    extra = {}
    if getattr(spec, "scaling", "global") == "site":
        splits, extra = _site_scaled(splits), {"scaler": "none"}
    det = _detector(spec, epochs, **extra).fit(np.concatenate([np.concatenate([s.train, s.val]) for s in splits]))
    scores = np.concatenate([det.decision_function(s.test) for s in splits])
    y = np.concatenate([s.test_labels for s in splits])
    m = detection_metrics(y, scores, (scores > det.threshold_).astype(int))
    return {**{k: m[k] for k in KEYS}, "seconds": time.perf_counter() - t0}


def local_only(datasets, spec, epochs: int) -> dict:
    """Each site alone: its own model and threshold; predictions pooled over all test parts."""
    t0 = time.perf_counter()
    scores, preds, ys = [], [], []
    for d in datasets:
        s = split_site(d.X, d.y)
        det = _detector(spec, epochs).fit(np.concatenate([s.train, s.val]))
        sc = det.decision_function(s.test)
        scores.append(sc), preds.append((sc > det.threshold_).astype(int)), ys.append(s.test_labels)
    m = detection_metrics(np.concatenate(ys), np.concatenate(scores), np.concatenate(preds))
    return {**{k: m[k] for k in KEYS}, "seconds": time.perf_counter() - t0}

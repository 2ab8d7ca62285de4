"""Centralized and local-only baselines on the same shards and split as a federated run (for demo and bench).

These pool or isolate the data on purpose, to measure what federation costs or gains: they run only where
one party holds all shards (the synthetic demo, benchmarks), never inside a deployment.
"""

from __future__ import annotations

import time
from collections.abc import Callable

import numpy as np

from fedad.common.detector import AutoencoderDetector
from fedad.common.metrics import detection_metrics
from fedad.common.split import Split, split_site

KEYS = ("precision", "recall", "f1", "roc_auc", "far", "mar")
Say = Callable[[str], None]


def _epochs(say: Say | None, what: str):
    """A detector progress callback that says ``what: epoch e/E`` (None when nobody listens)."""
    if say is None:
        return None
    t0 = time.perf_counter()

    def progress(epoch: int, epochs: int, train_loss: float, val_loss: float) -> None:
        say(f"{what}: epoch {epoch}/{epochs}, val loss {val_loss:.5f}, {time.perf_counter() - t0:.0f} s")

    return progress


def _detector(spec, epochs: int, **preprocessing) -> AutoencoderDetector:
    """Exactly ``epochs`` epochs (no early stopping): the rows are seen as often as in the federation; one
    model, as the federation trains, however few the rows (``n_models`` 1)."""
    return AutoencoderDetector(
        model=spec.model,
        window=spec.window,
        epochs=epochs,
        batch_size=spec.batch_size,
        lr=spec.lr,
        weight_decay=spec.weight_decay,
        patience=None,
        threshold_quantile=spec.threshold_quantile,
        seed=spec.seed,
        device="cpu",
        score=spec.score,
        top_k=spec.top_k,
        threshold_rule=spec.threshold_rule,
        target_far=spec.target_far,
        preprocessing={**spec.preprocessing, **preprocessing},
        model_sizes=dict(spec.sizes) or None,
        n_models=1,
    )


def _site_scaled(splits: list[Split]) -> list[Split]:
    """Each site's rows standardised with its own training statistics (what site scaling does)."""
    out = []
    for s in splits:
        mu, sd = np.nanmean(s.train, axis=0), np.nanstd(s.train, axis=0)
        sd[~(sd > 0)] = 1.0
        out.append(
            Split(train=(s.train - mu) / sd, val=(s.val - mu) / sd, test=(s.test - mu) / sd, test_labels=s.test_labels)
        )
    return out


def pooled_rows(splits: list[Split]) -> tuple[np.ndarray, np.ndarray]:
    """(training rows, validation rows) of all sites: each site split on its own, then the parts pooled."""
    return np.concatenate([s.train for s in splits]), np.concatenate([s.val for s in splits])


def centralized(datasets, spec, epochs: int, say: Say | None = None) -> dict:
    """One model on all sites' rows pooled; tested on all test parts pooled.

    Every site is split as a federated client splits its shard (``split_site``); the training parts are
    pooled for training and the validation parts of every site (not the last sites' rows) are pooled for
    the threshold. It trains for exactly ``epochs`` epochs, the total a federated client runs (rounds x
    local epochs), with no early stopping. Under site scaling every site's rows are first standardised
    with that site's own training statistics, as the federated clients do; the pooled model then adds no
    scaler of its own.
    """
    t0 = time.perf_counter()
    splits = [split_site(d.X, d.y) for d in datasets]
    extra = {}
    if getattr(spec, "scaling", "global") == "site":
        splits, extra = _site_scaled(splits), {"scaler": "none"}
    train, val = pooled_rows(splits)
    det = _detector(spec, epochs, **extra).fit(train, X_val=val, progress=_epochs(say, "centralized"))
    scores = np.concatenate([det.decision_function(s.test) for s in splits])
    y = np.concatenate([s.test_labels for s in splits])
    m = detection_metrics(y, scores, (scores > det.threshold_).astype(int))
    return {**{k: m[k] for k in KEYS}, "epochs": epochs, "seconds": time.perf_counter() - t0}


def local_only(datasets, spec, epochs: int, say: Say | None = None) -> dict:
    """Each site alone: its own model (``epochs`` epochs) and threshold on its own validation rows; predictions
    pooled over all test parts."""
    t0 = time.perf_counter()
    scores: list[np.ndarray] = []
    preds: list[np.ndarray] = []
    ys: list[np.ndarray] = []
    for i, d in enumerate(datasets, 1):
        s = split_site(d.X, d.y)
        det = _detector(spec, epochs).fit(
            s.train, X_val=s.val, progress=_epochs(say, f"local-only node {i}/{len(datasets)}")
        )
        sc = det.decision_function(s.test)
        scores.append(sc)
        preds.append((sc > det.threshold_).astype(int))
        ys.append(s.test_labels if s.test_labels is not None else np.zeros(len(sc), dtype=np.int8))
    m = detection_metrics(np.concatenate(ys), np.concatenate(scores), np.concatenate(preds))
    return {**{k: m[k] for k in KEYS}, "epochs": epochs, "seconds": time.perf_counter() - t0}

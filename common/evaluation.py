"""Evaluate fitted detectors on one labelled split: metrics per detector, a ROC plot, metrics.json.

Detectors are anything with ``decision_function(X)`` (higher = more anomalous) and ``threshold_``
(predictions are ``score > threshold_``, as ``predict`` does) — the autoencoder detector and the
baselines alike, so an evaluation is a loop over a ``{name: detector}`` mapping.
"""

from __future__ import annotations

import json
import os
import tempfile
from collections.abc import Mapping
from pathlib import Path
from typing import Protocol

import numpy as np

from fedad.common.metrics import METRIC_KEYS, detection_metrics

Outputs = dict[str, tuple[np.ndarray, np.ndarray]]  # name -> (scores, 0/1 predictions)


class Detector(Protocol):
    """What an evaluation needs of a fitted detector (``threshold_``, where present, is read instead of
    ``predict``)."""

    def decision_function(self, X: np.ndarray) -> np.ndarray: ...

    def predict(self, X: np.ndarray) -> np.ndarray: ...


def detector_outputs(detectors: Mapping[str, Detector], X: np.ndarray) -> Outputs:
    """Scores and 0/1 predictions of every fitted detector on X (each scored once)."""
    out: Outputs = {}
    for name, det in detectors.items():
        scores = np.asarray(det.decision_function(X), dtype=np.float64).ravel()
        if scores.shape[0] != len(X):
            raise ValueError(f"detector {name!r} returned {scores.shape[0]} scores for {len(X)} rows")
        pred = (scores > det.threshold_).astype(np.int8) if hasattr(det, "threshold_") else np.asarray(det.predict(X))
        out[name] = (scores, pred)
    return out


def metrics_for_outputs(y: np.ndarray, outputs: Outputs) -> dict[str, dict[str, float | None]]:
    """``detection_metrics`` of each detector's (scores, predictions) against labels y."""
    return {name: detection_metrics(y, scores, pred) for name, (scores, pred) in outputs.items()}


def evaluate_detectors(
    detectors: Mapping[str, Detector], X: np.ndarray, y: np.ndarray
) -> dict[str, dict[str, float | None]]:
    """{name: {precision, recall, f1, roc_auc, pr_auc, far, mar}} of fitted detectors on labelled rows."""
    return metrics_for_outputs(np.asarray(y), detector_outputs(detectors, X))


def roc_curves(y: np.ndarray, outputs: Outputs) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """{name: (fpr, tpr)} per detector; empty when y holds one class only (ROC undefined)."""
    from sklearn.metrics import roc_curve

    y = np.asarray(y)
    if not 0 < int(y.sum()) < y.size:
        return {}
    curves = {}
    for name, (scores, _) in outputs.items():
        fpr, tpr, _ = roc_curve(y, scores)
        curves[name] = (fpr, tpr)
    return curves


def plot_roc(
    curves: Mapping[str, tuple[np.ndarray, np.ndarray]],
    path: str | os.PathLike,
    title: str = "ROC",
    points: Mapping[str, tuple[float, float]] | None = None,
) -> Path:
    """Write a ROC plot of ``{name: (fpr, tpr)}`` to a PNG (atomically); AUC in the legend; ``points``
    ``{name: (fpr, tpr)}`` marks operating points (a detector at its threshold)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    path = Path(path)
    fig, ax = plt.subplots(figsize=(5.5, 5))
    try:
        for name, (fpr, tpr) in curves.items():
            auc = float(np.trapezoid(tpr, fpr))
            ax.plot(fpr, tpr, label=f"{name} (AUC {auc:.3f})", lw=1.5)
        ax.plot([0, 1], [0, 1], ls="--", color="grey", lw=0.8)
        # strict=False: one marker per point, at most 8 points are marked
        for (name, (x, y)), marker in zip((points or {}).items(), "o^sDvP*X", strict=False):
            ax.plot([x], [y], marker, ms=8, mfc="none", mew=1.8, label=f"{name}: FPR {x:.3f}, TPR {y:.3f}")
        if not curves:
            ax.text(0.5, 0.5, "ROC undefined: labels hold one class", ha="center", va="center")
        ax.set(xlabel="false positive rate", ylabel="true positive rate", title=title, xlim=(0, 1), ylim=(0, 1.01))
        if curves or points:
            ax.legend(loc="lower right", fontsize=7)
        fig.tight_layout()
        tmp = _temp_name(path)
        try:
            fig.savefig(tmp, format="png", dpi=120)
            os.replace(tmp, path)
        finally:
            if os.path.exists(tmp):
                os.unlink(tmp)
    finally:
        plt.close(fig)
    return path


def write_metrics(out_dir: str | os.PathLike, results: Mapping[str, Mapping[str, float | None]]) -> Path:
    """Write ``out_dir/metrics.json`` ({name: {precision, ..., mar}}, None as null) atomically."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    clean = {name: {k: _json_number(m.get(k)) for k in METRIC_KEYS} for name, m in results.items()}
    path = out_dir / "metrics.json"
    tmp = _temp_name(path)
    try:
        with open(tmp, "w") as fh:
            json.dump(clean, fh, indent=2)
            fh.write("\n")
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)
    return path


def format_table(results: Mapping[str, Mapping[str, float | None]]) -> str:
    """A fixed-width text table: one row per detector, FAR and MAR in percent, n/a for undefined AUCs."""
    head = (
        f"{'detector':<18} {'precision':>9} {'recall':>7} {'F1':>6} {'ROC-AUC':>7} {'PR-AUC':>7} "
        f"{'FAR%':>6} {'MAR%':>6}"
    )
    lines = [head, "-" * len(head)]
    for name, m in results.items():

        def f(key, pct=False, width=7, m=m):
            v = m.get(key)
            return f"{'n/a':>{width}}" if v is None else f"{v * 100 if pct else v:>{width}.{2 if pct else 3}f}"

        lines.append(
            f"{name:<18} {f('precision', width=9)} {f('recall')} {f('f1', width=6)} {f('roc_auc')} "
            f"{f('pr_auc')} {f('far', True, 6)} {f('mar', True, 6)}"
        )
    return "\n".join(lines)


def _json_number(v):
    if v is None:
        return None
    v = float(v)
    return v if np.isfinite(v) else None


def _temp_name(path: Path) -> str:
    from fedad.common.permissions import as_umask_allows

    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.close(fd)
    as_umask_allows(tmp)  # mkstemp makes it owner-only; plots and metrics are ordinary files
    return tmp

"""Operating range: how many scored records lie outside the range of the records the model was trained on.

A record with a sensor below or above every training record is a state the model never saw; its reconstruction
is an extrapolation, and a node whose whole test period runs there false-alarms however good the model is (the
synthetic plant's misses, bench/README.md "Detection on the synthetic plant"). Nodes report the share (an
aggregate statistic; records stay on the node) beside their test counts, so the report can say which nodes'
alarms may be a new operating state rather than a fault.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass

import numpy as np

# a share of scored rows outside the training range from which the logs, the demo and fedad score name it
NOTABLE_SHARE = 0.05


@dataclass(frozen=True)
class RangeReport:
    """``share``: records with at least one feature outside the training range; ``feature_shares``: per feature."""

    share: float
    feature_shares: np.ndarray

    @property
    def most_outside(self) -> int:
        """Index of the feature most often outside its range, or -1 when none is."""
        return int(np.argmax(self.feature_shares)) if self.share > 0 else -1

    def note(self, feature_names: list[str], rows: str, training: str) -> str | None:
        """A line when the share is notable (``NOTABLE_SHARE``), e.g. ``rows="test rows"``,
        ``training="this node's training rows"``; None otherwise."""
        if self.share < NOTABLE_SHARE:
            return None
        i = self.most_outside
        return (
            f"{self.share:.0%} of the {rows} lie outside the range of {training} (most often {feature_names[i]}, "
            f"{self.feature_shares[i]:.0%}): alarms there may be an operating state the model never saw rather "
            "than a fault"
        )


def outside_training_range(train: np.ndarray, rows: np.ndarray) -> RangeReport:
    """Which of ``rows`` (n, d) lie outside the per-feature [min, max] of ``train`` (m, d); missing values
    (NaN) count as inside, and a feature with no training value as never outside."""
    train, rows = np.asarray(train, dtype=np.float64), np.asarray(rows, dtype=np.float64)
    if rows.ndim != 2 or train.ndim != 2 or train.shape[1] != rows.shape[1]:
        raise ValueError(f"training rows {train.shape} and scored rows {rows.shape} differ in features")
    if len(train) == 0:
        return outside_bounds(np.full(train.shape[1], np.nan), np.full(train.shape[1], np.nan), rows)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # an all-missing column: no range, never outside
        return outside_bounds(np.nanmin(train, axis=0), np.nanmax(train, axis=0), rows)


def outside_bounds(low: np.ndarray, high: np.ndarray, rows: np.ndarray) -> RangeReport:
    """Which of ``rows`` (n, d) lie outside per-feature bounds [low, high] (e.g. a saved scaler's min and max);
    a NaN value or a NaN or infinite bound counts as inside."""
    rows = np.asarray(rows, dtype=np.float64)
    low, high = np.asarray(low, dtype=np.float64), np.asarray(high, dtype=np.float64)
    if rows.ndim != 2 or low.shape != (rows.shape[1],) or high.shape != (rows.shape[1],):
        raise ValueError(f"bounds {low.shape} / {high.shape} do not fit rows {rows.shape}")
    if len(rows) == 0:
        return RangeReport(0.0, np.zeros(rows.shape[1]))
    known = np.isfinite(low) & np.isfinite(high)
    with np.errstate(invalid="ignore"):
        out = ((rows < low) | (rows > high)) & known  # NaN compares False: inside
    return RangeReport(float(out.any(axis=1).mean()), out.mean(axis=0))


def describe_outside(per_client: dict[str, dict]) -> str | None:
    """One line naming the nodes (report ``per_client_test`` entries) with a notable share of test rows outside
    their training range, the feature most often outside, and each node's false-alarm rate; None when none."""
    parts = []
    for name, c in sorted(per_client.items()):
        share = c.get("outside_training_range")
        if share is None or share < NOTABLE_SHARE:
            continue
        normal = c.get("fp", 0) + c.get("tn", 0)
        far = f", false alarms {100 * c['fp'] / normal:.1f} %" if normal else ""
        parts.append(f"{name} {100 * share:.0f} % ({c.get('most_outside_feature')}{far})")
    if not parts:
        return None
    return "test rows outside their node's training range (alarms there may be a new operating state): " + "; ".join(
        parts
    )

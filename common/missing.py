"""A line for the log when a data file has missing values (NaN) that preprocessing will fill in."""

from __future__ import annotations

import numpy as np


def missing_values_note(X: np.ndarray, feature_names: list[str], impute: str | None) -> str | None:
    """ "1,234 missing values (NaN) in 1,000 rows, columns a (900), b (334): imputed with knn" or None."""
    missing = np.isnan(X)
    n = int(missing.sum())
    if n == 0:
        return None
    per_column = missing.sum(axis=0)
    worst = [f"{feature_names[i]} ({int(per_column[i])})" for i in np.argsort(-per_column)[:4] if per_column[i]]
    more = int((per_column > 0).sum()) - len(worst)
    cols = ", ".join(worst) + (f" and {more} more" if more > 0 else "")
    what = f"imputed with {impute}" if impute else "not imputed (they propagate into the scores)"
    return f"{n:,} missing values (NaN) in {int(missing.any(axis=1).sum()):,} rows, columns {cols}: {what}"

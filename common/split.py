"""The one train/validation/test split every path uses (federated, centralized, local-only), in time order."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass
class Split:
    """Row arrays of one site: normal training rows, normal validation rows, and a labelled test part."""

    train: np.ndarray
    val: np.ndarray
    test: np.ndarray
    test_labels: np.ndarray | None


def split_site(X: np.ndarray, y: np.ndarray | None, test_fraction: float = 0.2, val_fraction: float = 0.2) -> Split:
    """First (1 - test_fraction) of rows fit the model, the rest test it; anomalous rows never train.

    Validation is the last ``val_fraction`` of the normal fitting rows (time order kept for sequence models).
    """
    n = len(X)
    n_test = int(round(n * test_fraction))
    fit_X, fit_y = X[: n - n_test], (None if y is None else y[: n - n_test])
    if fit_y is not None:
        fit_X = fit_X[fit_y == 0]
    n_val = max(1, int(round(len(fit_X) * val_fraction)))
    test_X = X[n - n_test :]
    test_y = None if y is None else y[n - n_test :]
    return Split(train=fit_X[: len(fit_X) - n_val], val=fit_X[len(fit_X) - n_val :], test=test_X, test_labels=test_y)

"""The centralized and local-only baselines: validation rows from every site, the federation's epoch count."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from fedad.common.data import Dataset
from fedad.common.detector import AutoencoderDetector
from fedad.common.errors import FedadError
from fedad.common.federation_spec import FederationSpec
from fedad.common.split import split_site
from fedad.common.threshold import threshold_from_scores
from fedad.server.comparison import centralized, local_only, pooled_rows

torch.set_num_threads(1)


def _site(k: int, n: int = 400, seed: int = 0) -> Dataset:
    """A site whose first feature is its own id (so every row says where it came from), 5 % anomalies."""
    rng = np.random.default_rng(seed + k)
    X = rng.normal(size=(n, 4))
    X[:, 0] = k
    y = np.zeros(n, dtype=np.int8)
    y[rng.choice(n, n // 20, replace=False)] = 1
    X[y == 1, 1:] += 6.0
    return Dataset(X=X, feature_names=["site", "a", "b", "c"], y=y, time=None, source=f"site{k}")


def test_pooled_validation_rows_come_from_every_site():
    sites = [_site(k) for k in range(1, 6)]
    train, val = pooled_rows([split_site(d.X, d.y) for d in sites])
    assert set(np.unique(val[:, 0])) == {1, 2, 3, 4, 5}
    assert set(np.unique(train[:, 0])) == {1, 2, 3, 4, 5}
    for k in range(1, 6):  # each site gives about its val_fraction share, not all-or-nothing
        assert 0.1 < np.mean(val[:, 0] == k) * 5 < 2.0


def test_detector_thresholds_on_the_validation_rows_it_is_given():
    rng = np.random.default_rng(0)
    train, val = rng.normal(size=(300, 3)), rng.normal(size=(77, 3)) * 3
    det = AutoencoderDetector(epochs=3, patience=None, device="cpu").fit(train, X_val=val)
    assert len(det.validation_scores_) == 77
    assert det.threshold_ == pytest.approx(threshold_from_scores(det.validation_scores_, 0.99))
    assert len(det.history_["train_loss"]) == 3  # exactly the epochs asked for
    with pytest.raises(FedadError):
        det.fit(train, X_val=val[:, :2])


@pytest.mark.parametrize("scaling", ["site", "global"])
def test_baselines_run_the_federations_epochs_on_every_sites_split(scaling):
    sites = [_site(k, n=300) for k in range(1, 4)]
    spec = FederationSpec(model="dense", preprocessing={"scaler": "standard"}, scaling=scaling)
    c = centralized(sites, spec, epochs=4)
    lo = local_only(sites, spec, epochs=4)
    for m in (c, lo):
        assert m["epochs"] == 4
        assert m["roc_auc"] > 0.9  # the anomalies are 6 sigma away: a working baseline ranks them first

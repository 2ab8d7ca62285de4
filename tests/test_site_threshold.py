"""--threshold-scope site: each node's threshold comes from its own validation scores only."""

from __future__ import annotations

import logging

import numpy as np
import pytest

from fedad.client.flower_client import FedadClient
from fedad.client.site import Site
from fedad.common.data import Dataset
from fedad.common.federation_spec import FederationSpec
from fedad.common.threshold_rule import threshold_by_rule
from fedad.common.wire import encode_json


def _site(scale: float, seed: int) -> Site:
    rng = np.random.default_rng(seed)
    X = rng.normal(size=(2000, 3)) * scale
    X[:, 1] = X[:, 0] + 0.1 * X[:, 2]
    y = np.zeros(len(X), dtype=np.int8)
    y[-100:] = 1
    X[-100:, 1] += 5 * scale
    return Site(Dataset(X=X, feature_names=["a", "b", "c"], y=y, time=None, source=f"s{seed}"), device="cpu")


def _weights() -> list[np.ndarray]:
    import torch

    from fedad.common.models.registry import build_model
    from fedad.common.training import get_weights

    torch.manual_seed(0)
    return get_weights(build_model("dense", 3))


def _thresholds(site: Site, spec: FederationSpec, others: list[Site], sent: float) -> float:
    """The node's threshold in the test phase after a threshold phase in which ``others`` also took part."""
    config = {"spec": encode_json(spec.to_dict())}
    weights = _weights()
    client = FedadClient(site, "node", logging.getLogger("test"))
    for other in others:  # the other nodes answer the same phase; nothing of theirs reaches this client
        FedadClient(other, "other", logging.getLogger("test")).evaluate(weights, {**config, "phase": "threshold"})
    client.evaluate(weights, {**config, "phase": "threshold"})
    _, _, m = client.evaluate(weights, {**config, "phase": "test", "threshold": sent})
    expected = threshold_by_rule(
        site.record_scores(weights, site.split.val), spec.threshold_rule, spec.threshold_quantile, spec.target_far
    )
    assert m["threshold"] == pytest.approx(expected)
    return m["threshold"]


@pytest.mark.parametrize("rule", ["quantile", "pot"])
def test_site_threshold_never_sees_another_sites_scores(rule):
    spec = FederationSpec(
        feature_names=["a", "b", "c"],
        preprocessing={"scaler": "standard"},
        threshold_rule=rule,
        threshold_scope="site",
        score="max",
    )
    alone = _thresholds(_site(1.0, 0), spec, [], sent=1e9)
    crowd = _thresholds(_site(1.0, 0), spec, [_site(1000.0, 1), _site(0.001, 2)], sent=-1.0)
    assert alone == crowd  # neither the server's number nor other nodes' data moved it


def test_global_scope_uses_the_servers_threshold():
    spec = FederationSpec(feature_names=["a", "b", "c"], preprocessing={"scaler": "standard"})
    site = _site(1.0, 0)
    config = {"spec": encode_json(spec.to_dict())}
    weights = _weights()
    client = FedadClient(site, "node", logging.getLogger("test"))
    client.evaluate(weights, {**config, "phase": "threshold"})
    _, _, m = client.evaluate(weights, {**config, "phase": "test", "threshold": 0.5})
    assert m["threshold"] == 0.5

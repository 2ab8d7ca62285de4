"""The federation's feature schema is the operator's (--features, --features-from), never a first-come majority."""

from __future__ import annotations

import logging

import pytest

from fedad.common.federation_spec import FederationSpec
from fedad.server.federation import FedadServer, FederationFailed
from fedad.server.strategies.fedavg import FedAvg

HONEST, SYBIL = ("a", "b", "c"), ("x", "y")


def _server(tmp_path, features=None, features_from=None) -> FedadServer:
    noop = lambda r: {}  # noqa: E731
    return FedadServer(
        strategy=FedAvg(fit_config=noop, evaluate_config=noop),
        spec=FederationSpec(feature_names=features),
        out_dir=tmp_path,
        min_clients=1,
        wait_timeout=1.0,
        resume=False,
        log=logging.getLogger("test"),
        features_from=features_from,
    )


def _reports(*pairs):
    return [(None, name, feats, None) for name, feats in pairs]


def test_a_majority_of_sybils_does_not_decide(tmp_path):
    reports = _reports(("s1", SYBIL), ("s2", SYBIL), ("s3", SYBIL), ("node_01", HONEST), ("node_02", HONEST))
    assert _server(tmp_path, features=list(HONEST))._schema(reports) == HONEST
    assert _server(tmp_path, features_from="node_02")._schema(reports) == HONEST
    with pytest.raises(FederationFailed, match="--features FILE or --features-from"):
        _server(tmp_path)._schema(reports)  # no operator choice and disagreement: stop, never vote


def test_unanimous_nodes_need_no_operator_choice_and_a_missing_designated_node_is_an_error(tmp_path):
    assert _server(tmp_path)._schema(_reports(("node_01", HONEST), ("node_02", HONEST))) == HONEST
    with pytest.raises(FederationFailed, match="node_09"):
        _server(tmp_path, features_from="node_09")._schema(_reports(("node_01", HONEST)))


def test_features_file_parsing(tmp_path):
    from fedad.common.errors import FedadError
    from fedad.server.main import read_features

    f = tmp_path / "f.txt"
    f.write_text("# the plant's sensors\ntemp\npressure, flow\n")
    assert read_features(str(f)) == ["temp", "pressure", "flow"]
    f.write_text("temp,temp\n")
    with pytest.raises(FedadError):
        read_features(str(f))

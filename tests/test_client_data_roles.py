"""Data roles on the edge node: --test-data beside --data, --val-fraction / --test-fraction, null metrics."""

from __future__ import annotations

import json

import numpy as np
import pytest
from procs import finish, free_port, start_client, start_server

from fedad.client.site import Site
from fedad.common.data import Dataset
from fedad.common.errors import FedadError


def _data(n: int, labelled: bool = True, seed: int = 0, names=("a", "b", "c")) -> Dataset:
    rng = np.random.default_rng(seed)
    y = (rng.random(n) < 0.05).astype(np.int8) if labelled else None
    return Dataset(X=rng.normal(size=(n, len(names))), feature_names=list(names), y=y, time=None, source=f"d{seed}")


def test_default_split_keeps_the_tail_for_test_and_a_fifth_for_validation():
    d = _data(1000, labelled=False)
    site = Site(d)
    assert len(site.split.test) == 200 and len(site.split.val) == 160 and len(site.split.train) == 640


def test_test_data_frees_the_whole_file_for_fitting_and_val_fraction_is_an_option():
    d, t = _data(1000, labelled=False), _data(300, seed=1)
    site = Site(d, val_fraction=0.1, test_data=t)
    assert len(site.split.train) == 900 and len(site.split.val) == 100
    assert site.split.test is t.X and site.split.test_labels is t.y
    assert len(Site(d, test_fraction=0.0).split.test) == 0
    with pytest.raises(FedadError, match="--val-fraction"):
        Site(d, val_fraction=0.0)
    with pytest.raises(FedadError, match="not both"):
        Site(d, test_fraction=0.2, test_data=t)
    with pytest.raises(FedadError, match="differ"):
        Site(d, test_data=_data(50, names=("a", "b", "x")))


@pytest.mark.integration
def test_labelled_test_data_gives_metrics_and_an_unlabelled_one_null(tmp_path):
    from fedad.common.synth import generate_node

    files = {}
    for k in (1, 2):  # fit on an unlabelled file with no anomalies; evaluate on a separate labelled file
        frame = generate_node(k, 6000, seed=5)
        fit, test = frame.iloc[:4000], frame.iloc[4000:]
        if k == 2:  # n2's test rows are its fitting period again, at a speed above any of its training rows
            test = fit.iloc[:2000].copy()
            test["speed"] += 10 * (fit["speed"].max() - fit["speed"].min())
        fit[fit["label"] == 0].drop(columns=["label"]).to_csv(tmp_path / f"fit{k}.csv", index=False)
        test.to_csv(tmp_path / f"test{k}.csv", index=False)
        test.drop(columns=["label"]).to_csv(tmp_path / f"test{k}-nolabel.csv", index=False)
        files[k] = (tmp_path / f"fit{k}.csv", tmp_path / f"test{k}.csv", tmp_path / f"test{k}-nolabel.csv")
    for case, col in (("labelled", 1), ("unlabelled", 2)):
        out, logs = tmp_path / case, tmp_path / f"{case}-logs"
        logs.mkdir()
        address = f"127.0.0.1:{free_port()}"
        server = start_server(address, out, "--rounds", "2", "--min-clients", "2", log=tmp_path / f"{case}-server.log")
        clients = [
            start_client(
                address, files[k][0], f"n{k}", logs, "--test-data", str(files[k][col]), "--val-fraction", "0.1"
            )
            for k in (1, 2)
        ]
        assert finish([server, *clients]) == [0, 0, 0], (tmp_path / f"{case}-server.log").read_text()[-2000:]
        report = json.loads((out / "report.json").read_text())
        log = (logs / "n1.log").read_text()
        n = sum(1 for _ in open(files[1][0])) - 1  # all of --data fits: 90 % training, 10 % validation
        assert f"{n - round(n * 0.1)} training, {round(n * 0.1)} validation and 2000 test rows" in log, log[-1500:]
        if case == "labelled":
            counts = report["per_client_test"]["n1"]
            assert sum(counts[k] for k in ("tp", "fp", "tn", "fn")) == 2000
            # each node says how much of its test part left its training range, and where
            shifted = report["per_client_test"]["n2"]
            assert shifted["outside_training_range"] == 1.0 and shifted["most_outside_feature"] == "speed"
            assert 0.0 <= counts["outside_training_range"] <= 1.0
            server_log = (tmp_path / f"{case}-server.log").read_text()
            assert "n2 100 % (speed, false alarms" in server_log, server_log[-2000:]
            assert "of the test rows lie outside the range" in (logs / "n2.log").read_text()
            assert report["metrics"]["f1"] is not None and report["metrics"]["roc_auc"] is not None
        else:
            assert report["per_client_test"] == {}
            assert all(v is None for v in report["metrics"].values()), report["metrics"]

"""The adaptive stream rule as a product option (fedad.common.stream_rule, fedad score --rule adaptive)."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from fedad.common.errors import FedadError
from fedad.common.stream_rule import AdaptiveParams, adaptive_alarms


def _rig(seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """400 training rows of a 4-sensor rig, then a stream: normal, a fault on sensor 2, a new normal level."""
    rng = np.random.default_rng(seed)
    n = 1400
    drive = np.sin(np.arange(n) / 15.0)
    X = np.column_stack([drive, 2 * drive, -drive, 0.5 * drive]) + rng.normal(scale=0.05, size=(n, 4))
    X[700:900, 2] += 4.0  # the fault
    X[900:, 0] += 0.5  # the rig settles in a new state (off the training manifold) and stays there
    return X[:400], X[400:]


@pytest.fixture(scope="module")
def detector():
    from fedad.common.detector import AutoencoderDetector

    train, _ = _rig()
    return AutoencoderDetector(epochs=30, batch_size=32, device="cpu", seed=0).fit(train)


def test_adaptive_rule_detects_the_fault_and_adapts_to_the_new_state(detector):
    _, stream = _rig()
    res = adaptive_alarms(detector, stream, AdaptiveParams(smooth=20))
    assert res.alarms[330:500].mean() > 0.8  # rows 700..900 of the rig
    assert res.alarms[:250].mean() < 0.05
    assert res.events, "no re-baseline after the fault"
    assert res.alarms[700:].mean() < 0.1  # the new state is normal again after the re-baseline


def test_adaptive_rule_is_causal(detector):
    _, stream = _rig()
    params = AdaptiveParams(smooth=20)
    whole = adaptive_alarms(detector, stream, params)
    for cut in (150, 420, 560, 700):  # inside normal, fault, collection and after re-fitting
        prefix = adaptive_alarms(detector, stream[:cut], params)
        np.testing.assert_array_equal(prefix.alarms, whole.alarms[:cut])
    changed = stream.copy()
    changed[600:] = 40.0  # only the future of row 599 changes
    np.testing.assert_array_equal(adaptive_alarms(detector, changed, params).alarms[:600], whole.alarms[:600])


def test_fedad_score_rule_adaptive_and_a_model_without_stream_state(tmp_path, detector, capsys):
    from fedad.common.cli import main

    _, stream = _rig()
    cols = ["a", "b", "c", "d"]
    train, _ = _rig()
    pd.DataFrame(train, columns=cols).to_csv(tmp_path / "train.csv", index=False)
    pd.DataFrame(stream, columns=cols).to_csv(tmp_path / "stream.csv", index=False)
    assert (
        main(
            [
                "train",
                "--data",
                str(tmp_path / "train.csv"),
                "--out",
                str(tmp_path / "m"),
                "--device",
                "cpu",
                "--epochs",
                "30",
                "--batch-size",
                "32",
            ]
        )
        == 0
    )
    assert (
        main(
            [
                "score",
                "--model",
                str(tmp_path / "m"),
                "--data",
                str(tmp_path / "stream.csv"),
                "--out",
                str(tmp_path / "s.csv"),
                "--rule",
                "adaptive",
                "--smooth",
                "20",
                "--device",
                "cpu",
            ]
        )
        == 0
    )
    out = pd.read_csv(tmp_path / "s.csv")
    assert list(out.columns) == ["score", "is_anomaly"] and len(out) == len(stream)
    assert out["is_anomaly"].iloc[330:500].mean() > 0.8 and out["is_anomaly"].iloc[:250].mean() < 0.05
    assert "re-baseline" in capsys.readouterr().out
    detector.stream_fit_errors_ = None
    with pytest.raises(FedadError, match="stream state"):
        adaptive_alarms(detector, stream)


def test_a_federated_nodes_saved_model_carries_the_stream_state(tmp_path):
    """Site.save_model (fedad-client --model-out) writes what --rule adaptive needs, from the node's own rows."""
    from fedad.client.site import Site
    from fedad.common.data import Dataset
    from fedad.common.detector import AutoencoderDetector
    from fedad.common.federation_spec import FederationSpec

    train, stream = _rig()
    names = ["a", "b", "c", "d"]
    site = Site(Dataset(X=train, feature_names=names, y=None, time=None, source="rig"), device="cpu", test_fraction=0.0)
    site.configure(FederationSpec(feature_names=names, preprocessing={"scaler": "standard"}, batch_size=32), "k")
    site.set_scaler(None, b"k")
    weights = None
    for r in range(15):
        weights = site.train(weights, epochs=2, round_seed=r)["weights"]
    det = AutoencoderDetector.load(site.save_model(tmp_path / "m", weights, 1.0), device="cpu")
    assert det.stream_fit_errors_ is not None and det.stream_fit_errors_.shape == (len(train), 4)
    np.testing.assert_allclose(det.feature_sd_, train.std(axis=0))
    res = adaptive_alarms(det, stream, AdaptiveParams(smooth=20))
    assert res.alarms[330:500].mean() > 0.8 and res.alarms[:250].mean() < 0.05


def test_rebaseline_on_takes_scales_and_state_from_the_baseline_rows(detector):
    import copy

    from fedad.common.scoring import feature_errors, feature_scales
    from fedad.common.stream_rule import rebaseline_on

    _, stream = _rig()
    det = copy.deepcopy(detector)
    base = stream[:300] + 0.5  # a site whose normal level differs from the model's training rows
    rebaseline_on(det, base)
    z = det.preprocessor_.transform(base)
    np.testing.assert_allclose(det.feature_scales_, feature_scales(feature_errors(det.model_, z, "cpu")))
    np.testing.assert_allclose(det.feature_sd_, base.std(axis=0))
    assert det.stream_fit_errors_.shape == (300, 4)
    assert not np.allclose(det.feature_scales_, detector.feature_scales_)
    with pytest.raises(FedadError, match="too few baseline rows"):
        rebaseline_on(det, stream[:1])


def test_fedad_score_baseline_rows(tmp_path, detector):
    from fedad.common.cli import main

    train, stream = _rig()
    whole = np.concatenate([train, stream])
    pd.DataFrame(whole, columns=["a", "b", "c", "d"]).to_csv(tmp_path / "whole.csv", index=False)
    detector.feature_names_ = ["a", "b", "c", "d"]
    detector.save(tmp_path / "m")
    args = ["score", "--model", str(tmp_path / "m"), "--data", str(tmp_path / "whole.csv"), "--device", "cpu"]
    out = tmp_path / "s.csv"
    rule = ["--rule", "adaptive", "--smooth", "20", "--out", str(out)]
    assert main([*args, *rule, "--baseline-rows", "400"]) == 0
    s = pd.read_csv(out)
    assert len(s) == len(whole) and s["is_anomaly"].iloc[:400].sum() == 0
    assert s["is_anomaly"].iloc[730:900].mean() > 0.8 and s["is_anomaly"].iloc[400:650].mean() < 0.05
    out.unlink()
    assert main([*args, "--out", str(out), "--baseline-rows", "400"]) == 2  # threshold rule: refused
    assert main([*args, *rule, "--baseline-rows", str(len(whole))]) == 2
    assert not out.exists()


def test_a_nodes_evaluation_with_the_adaptive_alarm_rule():
    """fedad-server --alarm-rule adaptive: the node's test alarms are the streaming rule's over its test rows."""
    import logging

    from fedad.client.flower_client import FedadClient
    from fedad.client.site import Site
    from fedad.common.data import Dataset
    from fedad.common.federation_spec import FederationSpec
    from fedad.common.wire import encode_json

    train, stream = _rig()
    X = np.concatenate([train, stream])
    y = np.zeros(len(X), dtype=np.int8)
    y[700:900] = 1  # the fault (stream rows 300..500)
    names = ["a", "b", "c", "d"]
    data = Dataset(X=X, feature_names=names, y=y, time=None, source="rig")
    results = {}
    for rule in ("threshold", "adaptive"):
        site = Site(data, device="cpu", test_fraction=1000 / 1400)  # the stream is the test part
        spec = FederationSpec(feature_names=names, preprocessing={"scaler": "standard"}, batch_size=32, alarm_rule=rule)
        config = {"spec": encode_json(spec.to_dict())}
        client = FedadClient(site, "node", logging.getLogger("test"))
        site.configure(spec, "k")
        site.set_scaler(None, b"k")
        weights = None
        for r in range(15):
            weights = site.train(weights, epochs=2, round_seed=r)["weights"]
        _, _, m = client.evaluate(weights, {**config, "phase": "test", "threshold": 0.0})
        results[rule] = m
        if rule == "adaptive":
            expected = adaptive_alarms(site.detector(weights, 0.0), site.split.test).alarms
            assert m["alarms"] == int(expected.sum()) and m["tp"] == int(expected[y[400:] == 1].sum())
    assert results["threshold"]["alarms"] == 1000  # threshold 0: every test row alarms
    assert results["adaptive"]["fp"] < 100 and results["adaptive"]["tp"] > 150  # the rule ignores the threshold

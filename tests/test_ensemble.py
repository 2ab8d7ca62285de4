"""EnsembleDetector: rank normalisation, threshold, persistence, member order, and the train -> score CLI."""

import json

import numpy as np
import pandas as pd
import pytest
import torch

from fedad.common.baseline_state import baseline_from_state, baseline_state
from fedad.common.baselines import BASELINES
from fedad.common.cli import main
from fedad.common.ensemble import EnsembleDetector, check_members, load_model, rank_normalise
from fedad.common.errors import FedadError
from fedad.common.synth import generate_node

torch.set_num_threads(1)


def _normal(n: int, seed: int = 0) -> np.ndarray:
    """Correlated normal records: 6 sensors driven by 2 factors (one fixed mixing), plus noise."""
    mixing = np.random.default_rng(0).normal(size=(2, 6))
    rng = np.random.default_rng([seed, 1])
    return rng.normal(size=(n, 2)) @ mixing + 0.1 * rng.normal(size=(n, 6))


def _ensemble(members="dense,iforest") -> EnsembleDetector:
    return EnsembleDetector(members=members, epochs=8, batch_size=64, lr=3e-3, device="cpu", seed=0)


@pytest.fixture(scope="module")
def fitted():
    return _ensemble().fit(_normal(1500))


def test_rank_normalisation_maps_validation_scores_into_unit_interval_monotonically():
    ref = np.sort(np.random.default_rng(1).gamma(2.0, size=400))
    r = rank_normalise(ref, ref)
    assert r.min() > 0 and r.max() == 1.0
    assert np.all(np.diff(r) >= 0)
    shuffled = np.random.default_rng(2).permutation(ref)
    order = np.argsort(shuffled)
    assert np.all(np.diff(rank_normalise(ref, shuffled)[order]) >= 0)
    # below everything: 0; beyond everything: above 1 and still ordered
    assert rank_normalise(ref, np.array([ref[0] - 1]))[0] == 0.0
    far = rank_normalise(ref, np.array([ref[-1] + 1, ref[-1] + 10]))
    assert 1.0 < far[0] < far[1]


def test_validation_scores_are_within_unit_interval_and_threshold_from_them(fitted):
    v = fitted.validation_scores_
    assert len(v) == 300 and v.min() >= 0 and v.max() <= 1.0
    assert 0 < fitted.threshold_ and (v > fitted.threshold_).mean() <= 0.05


def test_outlier_above_threshold_normal_rows_mostly_below(fitted):
    normal = _normal(600, seed=5)
    outlier = normal[:5] + 8.0
    assert np.all(fitted.predict(outlier) == 1)
    assert fitted.predict(normal).mean() < 0.05
    assert fitted.decision_function(outlier).min() > fitted.decision_function(normal).max()


def test_save_load_round_trips_scores_exactly(fitted, tmp_path):
    X = np.concatenate([_normal(200, seed=7), _normal(5, seed=8) + 6.0])
    fitted.save(tmp_path / "m")
    assert (tmp_path / "m" / "members" / "iforest" / "baseline.json").is_file()
    assert (tmp_path / "m" / "members" / "dense" / "model.pt").is_file()
    loaded = load_model(tmp_path / "m", device="cpu")
    assert isinstance(loaded, EnsembleDetector)
    assert np.array_equal(loaded.decision_function(X), fitted.decision_function(X))
    assert loaded.threshold_ == fitted.threshold_


def test_member_order_does_not_change_scores(fitted):
    X = _normal(300, seed=9)
    other = _ensemble(members=["iforest", "dense"]).fit(_normal(1500))
    assert np.array_equal(other.decision_function(X), fitted.decision_function(X))
    assert other.threshold_ == fitted.threshold_


@pytest.mark.parametrize("name", sorted(BASELINES))
def test_baseline_json_state_scores_like_scikit_learn(name):
    X, T = _normal(800), np.concatenate([_normal(100, seed=3), _normal(10, seed=4) * 4])
    det = BASELINES[name]().fit(X)
    state = json.loads(json.dumps(baseline_state(det)))
    np.testing.assert_allclose(baseline_from_state(state).decision_function(T), det.decision_function(T), rtol=1e-9)


def test_bad_members_refused():
    for bad in ("dense,foo", "dense", "dense,dense", ""):
        with pytest.raises(FedadError):
            check_members(bad)
    assert check_members("iforest, dense") == ("dense", "iforest")


@pytest.fixture(scope="module")
def shard(tmp_path_factory):
    frame = generate_node(1, 2000, seed=0)
    d = tmp_path_factory.mktemp("shard")
    frame.iloc[:1600].to_csv(d / "train.csv", index=False)
    frame.iloc[1600:].to_csv(d / "test.csv", index=False)
    return d


def test_cli_train_then_score_ensemble(shard, capsys):
    out = shard / "model"
    argv = ["train", "--data", str(shard / "train.csv"), "--model", "ensemble", "--members", "dense,iforest"]
    assert main([*argv, "--epochs", "3", "--device", "cpu", "--out", str(out)]) == 0
    assert "ensemble of dense, iforest" in capsys.readouterr().out
    scores = shard / "scores.csv"
    assert main(["score", "--model", str(out), "--data", str(shard / "test.csv"), "--out", str(scores)]) == 0
    result = pd.read_csv(scores)
    test = pd.read_csv(shard / "test.csv")
    assert len(result) == len(test) and list(result.columns) == ["score", "is_anomaly"]
    det = load_model(out, device="cpu")
    features = [c for c in test.columns if c not in ("timestamp", "label")]
    X = test[features].to_numpy(float)
    assert np.array_equal(result["is_anomaly"].to_numpy(), det.predict(X))
    np.testing.assert_allclose(result["score"].to_numpy(), det.decision_function(X), rtol=1e-12)


@pytest.mark.parametrize(
    "extra, expected",
    [
        (["--model", "ensemble", "--members", "dense,nope"], "unknown ensemble member 'nope'"),
        (["--model", "ensemble", "--members", "dense"], "at least two members"),
        (["--members", "dense,iforest"], "--members only applies to --model ensemble"),
    ],
)
def test_bad_members_exit_2_with_one_line(shard, tmp_path, capsys, extra, expected):
    out = tmp_path / "m"
    assert main(["train", "--data", str(shard / "train.csv"), *extra, "--out", str(out)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and expected in err[0], err
    assert not out.exists()


def test_model_directories_replace_each_other(fitted, tmp_path):
    target = tmp_path / "m"
    fitted.save(target)
    fitted.members_["dense"].save(target)  # an autoencoder replaces an ensemble as a whole
    assert not (target / "ensemble.json").exists() and type(load_model(target)).__name__ == "AutoencoderDetector"
    fitted.save(target)
    assert isinstance(load_model(target), EnsembleDetector) and not (target / "detector.json").exists()


def test_sequence_member_aligns_row_by_row():
    det = EnsembleDetector(members="lstm,pca", window=8, epochs=2, batch_size=64, device="cpu").fit(_normal(400))
    X = np.concatenate([_normal(100, seed=11), _normal(3, seed=12) + 8.0])
    parts = det.member_scores(X)
    assert all(p.shape == (len(X),) for p in parts.values())
    assert np.allclose(det.decision_function(X), (parts["lstm"] + parts["pca"]) / 2)
    assert len(det.validation_scores_) == 80 and det.members_["lstm"].window_ == 8

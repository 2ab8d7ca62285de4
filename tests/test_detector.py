"""AutoencoderDetector: fit/score/predict, thresholds, save/load round trip, errors, detection quality."""

import json

import numpy as np
import pytest
import torch

from fedad.common.detector import AutoencoderDetector
from fedad.common.errors import FedadError

torch.set_num_threads(1)

FAST = dict(epochs=8, batch_size=64, preprocessing={"impute": None})


def manifold(n, d=6, seed=0):
    """Records on a 2-D plane in d dimensions (a slowly drifting and a random factor) plus a little noise."""
    rng = np.random.default_rng(seed)
    z = np.column_stack([np.sin(np.arange(n) / 25.0), rng.normal(size=n)])
    return z @ np.random.default_rng(99).normal(size=(2, d)) + 0.05 * rng.normal(size=(n, d))


def labelled_node(n=3000, seed=0, anomaly_rate=0.05):
    """A node's records and labels: ``fedad.common.synth`` when present, else the local manifold + spikes."""
    try:
        from fedad.common.synth import generate_node
    except ImportError:
        generate_node = None
    if generate_node is not None:
        df = generate_node(1, n, seed, anomaly_rate=anomaly_rate)
        y = df["label"].to_numpy()
        return df.drop(columns=["timestamp", "label"]).to_numpy(dtype=np.float64), y
    rng = np.random.default_rng(seed)
    X = manifold(n, d=12, seed=seed)
    y = (rng.random(n) < anomaly_rate).astype(np.int8)
    X[y == 1] += rng.choice([-1, 1], size=(int(y.sum()), 12)) * rng.uniform(2, 4, size=(int(y.sum()), 12))
    return X, y


@pytest.fixture(scope="module")
def dense_detector():
    return AutoencoderDetector(seed=0, **FAST).fit(manifold(800), feature_names=[f"s{i}" for i in range(6)])


def test_fit_sets_sklearn_style_state(dense_detector):
    det = dense_detector
    assert det.n_features_ == 6 and det.feature_names_ == [f"s{i}" for i in range(6)]
    assert det.window_ == 1 and det.model_.sequence is False
    assert isinstance(det.threshold_, float) and det.threshold_ > 0
    assert set(det.history_) >= {"train_loss", "val_loss", "epochs"}
    assert det.get_params()["epochs"] == 8
    # the threshold is the 0.99 quantile of the validation (20 % of rows) scores
    assert len(det.validation_scores_) == 160
    assert np.mean(det.validation_scores_ <= det.threshold_) >= 0.99


def test_scores_predictions_and_outlier(dense_detector):
    X = manifold(200, seed=3)
    X[50] += 8.0
    scores = dense_detector.decision_function(X)
    assert scores.shape == (200,) and scores.dtype == np.float64
    assert scores.argmax() == 50
    pred = dense_detector.predict(X)
    assert pred.dtype == np.int8 and pred[50] == 1
    np.testing.assert_array_equal(pred, (scores > dense_detector.threshold_).astype(np.int8))
    assert pred.mean() < 0.1


def test_target_far_sets_threshold():
    X = manifold(500)
    det = AutoencoderDetector(target_far=0.2, **FAST).fit(X)
    assert np.mean(det.validation_scores_ > det.threshold_) <= 0.2
    assert np.mean(det.validation_scores_ > det.threshold_) > 0.1


@pytest.mark.parametrize("name", ["linear", "lstm", "gru", "cnn", "vae"])
def test_other_models_fit_and_score(name, tmp_path):
    X = manifold(300)
    row_model = name in ("vae", "linear")
    det = AutoencoderDetector(name, window=None if row_model else 6, epochs=2, batch_size=64).fit(X)
    scores = det.decision_function(X[:40])
    assert scores.shape == (40,) and np.isfinite(scores).all()
    det.save(tmp_path / "m")  # its sizes rebuild it: the same scores after a round trip
    np.testing.assert_array_equal(
        AutoencoderDetector.load(tmp_path / "m", device="cpu").decision_function(X[:40]), scores
    )
    if not row_model:
        assert det.model_.sequence and det.window_ == 6
        # the validation block is the last 20 % of the records, in time order
        assert len(det.validation_scores_) == 60
        # the first window-1 records share the first window's score
        assert np.all(scores[:5] == scores[5])


def test_save_load_round_trip(tmp_path, dense_detector):
    X = manifold(100, seed=4)
    out = tmp_path / "model"
    dense_detector.save(out)
    cfg = json.loads((out / "detector.json").read_text())
    assert cfg["format_version"] == 1 and cfg["model"] == "dense" and cfg["feature_names"][0] == "s0"
    assert cfg["model_sizes"] == {"hidden": [32, 16], "latent_dim": 8, "n_models": 5}  # 640 samples: averaged
    assert (out / "model.pt").is_file()
    loaded = AutoencoderDetector.load(out, device="cpu")
    np.testing.assert_array_equal(loaded.decision_function(X), dense_detector.decision_function(X))
    assert loaded.threshold_ == dense_detector.threshold_
    assert loaded.feature_names_ == dense_detector.feature_names_
    # saving again replaces the directory as a whole, leaving no temporary siblings
    dense_detector.save(out)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["model"]


def test_sequence_save_load_round_trip(tmp_path):
    X = manifold(200)
    det = AutoencoderDetector("cnn", window=5, epochs=1, preprocessing={"scaler": "minmax", "denoise": "ma"}).fit(X)
    det.save(tmp_path / "m")
    loaded = AutoencoderDetector.load(tmp_path / "m")
    np.testing.assert_array_equal(loaded.decision_function(X[:30]), det.decision_function(X[:30]))
    assert loaded.window_ == 5


def test_load_errors(tmp_path, dense_detector):
    with pytest.raises(FedadError, match="not found"):
        AutoencoderDetector.load(tmp_path / "missing")
    with pytest.raises(FedadError, match="detector.json"):
        AutoencoderDetector.load(tmp_path)
    dense_detector.save(tmp_path / "m")
    (tmp_path / "m" / "model.pt").write_bytes(b"not a torch file")
    with pytest.raises(FedadError, match="weights"):
        AutoencoderDetector.load(tmp_path / "m")
    (tmp_path / "m" / "detector.json").write_text("{")
    with pytest.raises(FedadError, match="JSON"):
        AutoencoderDetector.load(tmp_path / "m")
    (tmp_path / "other").mkdir()
    (tmp_path / "other" / "keep.txt").write_text("x")
    with pytest.raises(FedadError, match="non-empty"):
        dense_detector.save(tmp_path / "other")


def test_input_errors(dense_detector):
    with pytest.raises(FedadError, match="features"):
        dense_detector.decision_function(np.zeros((5, 3)))
    with pytest.raises(FedadError, match="too few records"):
        AutoencoderDetector("lstm", window=16, epochs=1).fit(manifold(20))
    det = AutoencoderDetector("gru", window=4, epochs=1).fit(manifold(40))
    with pytest.raises(FedadError, match="too few records"):
        det.decision_function(manifold(3))
    with pytest.raises(FedadError, match="unknown model"):
        AutoencoderDetector("rnn").fit(manifold(40))
    with pytest.raises(FedadError, match="2-D"):
        AutoencoderDetector(**FAST).fit(np.zeros(10))
    with pytest.raises(RuntimeError, match="not fitted"):
        AutoencoderDetector().predict(manifold(5))


def test_dense_detector_finds_anomalies():
    from sklearn.metrics import f1_score, roc_auc_score

    X, y = labelled_node(4000, seed=0)
    test = np.random.default_rng(1).random(len(X)) < 1 / 3  # rows held out at random, across the whole period
    det = AutoencoderDetector(epochs=20, batch_size=128, seed=0, threshold_quantile=0.99).fit(X[~test & (y == 0)])
    scores = det.decision_function(X[test])
    f1 = f1_score(y[test], scores > det.threshold_)
    chance = 2 * y[test].mean() / (1 + y[test].mean())  # F1 of flagging everything
    assert roc_auc_score(y[test], scores) > 0.9
    assert f1 > max(0.5, 4 * chance), (f1, chance)


def test_blockwise_scoring_matches_whole(monkeypatch, dense_detector):
    import fedad.common.detector as detector_module

    X = manifold(1000, seed=5)
    whole = dense_detector.decision_function(X)
    monkeypatch.setattr(detector_module, "SCORE_BLOCK_ROWS", 64)
    np.testing.assert_allclose(dense_detector.decision_function(X), whole, rtol=1e-6)

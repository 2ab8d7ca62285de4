"""The contrastive model: InfoNCE, augmentations, alignment, centre-distance score, save/load, CLI."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys

import numpy as np
import pandas as pd
import pytest
import torch

from fedad.common.augment import augment, feature_mask, jitter, scaling, time_shift
from fedad.common.models.contrastive import ContrastiveAutoencoder, info_nce
from fedad.common.models.registry import build_model, model_aligns
from fedad.common.training import calibrate, mean_embedding, reconstruction_errors, train_model
from fedad.server.aggregation import global_embedding


def _gen(seed: int) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def test_info_nce_is_lowest_for_aligned_views_and_higher_when_shuffled():
    h = torch.randn(64, 16, generator=_gen(0))
    views = h + 0.01 * torch.randn(64, 16, generator=_gen(1))
    aligned = info_nce(h, views, tau=0.2)
    shuffled = info_nce(h, views[torch.randperm(64, generator=_gen(2))], tau=0.2)
    assert float(shuffled) > float(aligned) + 2.0  # ~log(64) when the partners are wrong
    assert float(info_nce(h, views, tau=0.05)) < 0.05  # at a low temperature each view picks out its partner
    # symmetric in its two arguments
    assert float(info_nce(h, h.flip(0), 0.2)) == pytest.approx(float(info_nce(h.flip(0), h, 0.2)), rel=1e-5)


@pytest.mark.parametrize("shape", [(32, 5), (32, 10, 5)])
def test_augmentations_keep_the_shape_and_are_deterministic_under_a_seed(shape):
    x = torch.randn(*shape, generator=_gen(0))
    for fn, arg in ((jitter, 0.1), (scaling, 0.1), (feature_mask, 0.3), (time_shift, 3)):
        a, b = fn(x, arg, _gen(7)), fn(x, arg, _gen(7))
        assert a.shape == x.shape and torch.equal(a, b), fn.__name__
        if fn is not time_shift or x.dim() == 3:
            assert not torch.equal(a, x), fn.__name__  # it changed something
            assert not torch.equal(a, fn(x, arg, _gen(8))), fn.__name__  # another seed, another view
    v1, v2 = augment(x, generator=_gen(3)), augment(x, generator=_gen(3))
    assert v1.shape == x.shape and torch.equal(v1, v2)
    assert not torch.equal(v1, augment(x, generator=_gen(4)))


def test_feature_mask_zeroes_whole_features_and_time_shift_keeps_contiguous_steps():
    x = torch.randn(200, 12, 4, generator=_gen(0)) + 5.0  # no zeros by chance
    m = feature_mask(x, 0.5, _gen(1))
    zero = (m == 0).all(1)  # (B, d): features masked over the whole window
    assert 0.3 < float(zero.float().mean()) < 0.7
    assert torch.equal(m[~zero.unsqueeze(1).expand_as(m)], x[~zero.unsqueeze(1).expand_as(x)])
    s = time_shift(x, 2, _gen(2))
    for i in range(20):  # each window is its original, moved by at most 2 steps and edge-padded
        assert any(
            torch.equal(s[i], torch.cat([x[i, :1].repeat(k, 1), x[i, : 12 - k]]))
            if k >= 0
            else torch.equal(s[i], torch.cat([x[i, -k:], x[i, -1:].repeat(-k, 1)]))
            for k in range(-2, 3)
        )
    assert torch.equal(time_shift(x[:, 0], 2, _gen(2)), x[:, 0])  # rows have no time axis


def _data(n: int = 1500, d: int = 6, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    z = rng.normal(size=(n, 2))
    return (z @ rng.normal(size=(2, d)) + 0.1 * rng.normal(size=(n, d))).astype(np.float32)


def test_alignment_term_pulls_the_mean_embedding_toward_the_global_one():
    X = _data()
    g = np.full(8, 1.5)
    dists = {}
    for mu in (0.0, 1.0):
        torch.manual_seed(0)
        model = ContrastiveAutoencoder(6, mu=mu)
        model.set_global_embedding(g)
        train_model(model, X, epochs=8, lr=1e-2, device="cpu", seed=0, patience=None)
        dists[mu] = float(np.linalg.norm(mean_embedding(model, X, "cpu") - g))
    assert dists[1.0] < 0.5 * dists[0.0], dists
    # direction only (secure-robust's normalised mean): the term compares unit vectors, blind to the scale
    model = ContrastiveAutoencoder(6, mu=1.0)
    x = torch.from_numpy(X[:64])
    with torch.no_grad():
        m = model.encode(x).mean(0).numpy()
    model.set_global_embedding(3.0 * m, direction_only=True)
    assert float(model.loss_terms(x)["alignment"].detach()) == pytest.approx(0.0, abs=1e-6)
    model.set_global_embedding(3.0 * m)
    assert float(model.loss_terms(x)["alignment"].detach()) == pytest.approx(4.0 * float(np.sum(m**2)), rel=1e-4)
    # without a global embedding the term is absent, whatever mu
    model = ContrastiveAutoencoder(6, mu=1.0)
    assert float(model.loss_terms(torch.from_numpy(X[:64]))["alignment"].detach()) == 0.0
    with pytest.raises(ValueError):
        model.set_global_embedding(np.ones(3))


def test_score_combines_scaled_reconstruction_error_and_centre_distance():
    X = _data()
    torch.manual_seed(0)
    model = build_model("contrastive", 6, dist_weight=0.5)
    train_model(model, X, epochs=5, device="cpu", seed=0)
    calibrate(model, X, "cpu")
    s = reconstruction_errors(model, X, "cpu")
    assert np.median(s) == pytest.approx(1.0, abs=0.15)  # both parts are 1 at their training median
    with torch.no_grad():
        err, dist = model._parts(torch.from_numpy(X[:50]))
        expect = 0.5 * err / model.score_scale[0] + 0.5 * dist / model.score_scale[1]
        assert torch.allclose(model.score(torch.from_numpy(X[:50])), expect)
    far = X[:200] + np.float32(4.0)
    assert np.median(reconstruction_errors(model, far, "cpu")) > 5 * np.median(s)
    assert np.allclose(model.center.numpy(), mean_embedding(model, X, "cpu"), atol=1e-5)


def test_detector_save_load_round_trip_keeps_centre_scales_and_hyper_parameters(tmp_path):
    from fedad.common.detector import AutoencoderDetector

    X = _data(800).astype(np.float64)
    det = AutoencoderDetector(
        model="contrastive", epochs=3, device="cpu", model_sizes={"tau": 0.3, "lam": 0.2, "mu": 0.05}
    ).fit(X)
    assert float(det.model_.score_scale[1]) != 1.0 and float(det.model_.center.abs().sum()) > 0  # calibrated
    det.save(tmp_path / "m")
    back = AutoencoderDetector.load(tmp_path / "m", device="cpu")
    assert isinstance(back.model_, ContrastiveAutoencoder)
    assert (back.model_.tau, back.model_.lam, back.model_.mu) == (0.3, 0.2, 0.05)
    assert torch.equal(back.model_.center, det.model_.center)
    assert np.allclose(back.decision_function(X), det.decision_function(X))
    assert back.threshold_ == det.threshold_


def test_global_embedding_is_the_sample_weighted_mean_of_valid_embeddings():
    a, b = np.array([1.0, 0.0]), np.array([0.0, 1.0])
    assert np.allclose(global_embedding([a, b], [3, 1]), [0.75, 0.25])
    assert np.allclose(global_embedding([a, None, np.array([np.nan, 1.0]), np.ones(5)], [1, 1, 1, 1]), a)
    assert global_embedding([None, None], [1, 1]) is None
    assert model_aligns("contrastive") and not model_aligns("dense")


def _fedad() -> list[str]:
    exe = shutil.which("fedad")
    return [exe] if exe else [sys.executable, "-m", "fedad.common.cli"]


def test_fedad_train_model_contrastive_cli(tmp_path):
    rng = np.random.default_rng(0)
    path = tmp_path / "tiny.csv"
    pd.DataFrame(_data(400), columns=[f"s{i}" for i in range(6)]).assign(time=np.arange(400)).to_csv(path, index=False)
    out = tmp_path / "model"
    proc = subprocess.run(
        _fedad()
        + [
            "train",
            "--data",
            str(path),
            "--model",
            "contrastive",
            "--epochs",
            "3",
            "--tau",
            "0.4",
            "--lambda",
            "0.2",
            "--mu",
            "0",
            "--device",
            "cpu",
            "--out",
            str(out),
        ],
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert proc.returncode == 0, proc.stderr
    assert "contrastive autoencoder" in proc.stdout
    from fedad.common.detector import AutoencoderDetector

    det = AutoencoderDetector.load(out, device="cpu")
    assert det.model_.tau == 0.4 and det.model_.lam == 0.2 and det.model_.mu == 0.0
    assert det.decision_function(rng.normal(size=(10, 6))).shape == (10,)
    bad = subprocess.run(
        _fedad() + ["train", "--data", str(path), "--model", "dense", "--tau", "0.4", "--out", str(tmp_path / "x")],
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert bad.returncode == 2 and "only apply to --model contrastive" in bad.stderr
    assert len(bad.stderr.strip().splitlines()) == 1 and not (tmp_path / "x").exists()


def test_fedavg_keeps_the_weighted_mean_embedding_and_checkpoints_it():
    from types import SimpleNamespace

    from flwr.common import Code, FitRes, Status, ndarrays_to_parameters

    from fedad.common.wire import encode_array
    from fedad.server.strategies.fedavg import FedAvg

    w = [np.zeros((2, 2)), np.zeros(2)]
    strategy = FedAvg(fit_config=lambda r: {}, evaluate_config=lambda r: {})
    strategy.global_weights = w
    results = [
        (
            SimpleNamespace(cid=f"c{i}"),
            FitRes(Status(Code.OK, ""), ndarrays_to_parameters(w), n, {"name": f"n{i}", **m}),
        )
        for i, (n, m) in enumerate(
            [
                (30, {"embedding": encode_array(np.array([1.0, 0.0]))}),
                (10, {"embedding": encode_array(np.array([0.0, 1.0]))}),
                (10, {"embedding": b"\x00"}),  # malformed: ignored
                (10, {}),
            ]
        )
    ]
    new, _ = strategy.aggregate_fit(1, results, [])
    assert new is not None and np.allclose(strategy.global_embedding, [0.75, 0.25])
    again = FedAvg(fit_config=lambda r: {}, evaluate_config=lambda r: {})
    again.load_state_dict(json.loads(json.dumps(strategy.state_dict())))
    assert np.allclose(again.global_embedding, [0.75, 0.25])

"""Averaged autoencoders (``n_models``): the mean of K initialisations, chosen by fit size, saved and loaded."""

import json

import numpy as np
import pytest
import torch
from test_detector import manifold

from fedad.common.cli import main as fedad
from fedad.common.detector import AUTO_MODELS, AUTO_MODELS_BELOW, AutoencoderDetector
from fedad.common.errors import FedadError
from fedad.common.models.averaged import AveragedAutoencoder
from fedad.common.models.registry import build_model

torch.set_num_threads(1)

FAST = dict(epochs=3, batch_size=64, preprocessing={"impute": None})


def test_forward_is_the_mean_and_loss_the_mean_of_the_members_losses():
    torch.manual_seed(0)
    members = [build_model("dense", 5) for _ in range(3)]
    avg = AveragedAutoencoder(members).eval()
    x = torch.randn(7, 5)
    with torch.no_grad():
        assert torch.allclose(avg(x), sum(m(x) for m in members) / 3, atol=1e-6)
        assert torch.allclose(avg.loss(x), sum(m.loss(x) for m in members) / 3, atol=1e-6)
        assert avg.encode(x).shape == (7, 3 * members[0].latent_dim)
    assert avg.n_members == 3 and avg.config() == {**members[0].config(), "n_models": 3}


def test_build_model_builds_k_members_or_refuses():
    assert build_model("dense", 5, n_models=3).n_members == 3
    assert build_model("dense", 5, n_models=64).n_members == 64
    assert not isinstance(build_model("dense", 5, n_models=1), AveragedAutoencoder)
    for bad in (0, 65, "2", True):
        with pytest.raises(FedadError, match="n_models"):
            build_model("dense", 5, n_models=bad)
    with pytest.raises(FedadError, match="contrastive"):
        build_model("contrastive", 5, n_models=2)


def test_members_must_share_one_architecture():
    with pytest.raises(ValueError):
        AveragedAutoencoder([build_model("dense", 5)])
    with pytest.raises(ValueError):
        AveragedAutoencoder([build_model("dense", 5), build_model("linear", 5)])
    with pytest.raises(ValueError):
        AveragedAutoencoder([build_model("dense", 5), build_model("dense", 5, latent_dim=4)])
    with pytest.raises(ValueError):
        AveragedAutoencoder([build_model("dense", 5), build_model("dense", 6)])
    with pytest.raises(ValueError):
        AveragedAutoencoder([build_model("lstm", 5, window=8), build_model("lstm", 5, window=16)])


def test_each_member_gets_its_own_loss_gradient():
    """A member's gradient is its own loss's, neither / K (Adam's weight decay would then weigh K times as much)
    nor the mean reconstruction's (which would couple the members into one wider model)."""
    torch.manual_seed(0)
    members = [build_model("dense", 5) for _ in range(2)]
    avg = AveragedAutoencoder(members)
    x = torch.randn(16, 5)
    loss = avg.loss(x)
    loss.backward()
    alone = build_model("dense", 5)
    alone.load_state_dict(members[0].state_dict())
    alone.loss(x).backward()
    for a, b in zip(members[0].parameters(), alone.parameters(), strict=True):
        assert torch.allclose(a.grad, b.grad, atol=1e-7)
    with torch.no_grad():
        assert torch.allclose(loss, (members[0].loss(x) + members[1].loss(x)) / 2)


def test_the_first_member_trains_exactly_as_the_single_model():
    """Same seed, batches, weight decay and epochs (no early stopping): member 0 of an averaged fit ends where
    the single model does, so the averaging adds members and changes nothing else."""
    X = manifold(600)
    opts = {**FAST, "patience": None, "weight_decay": 1e-2}
    single = AutoencoderDetector(seed=3, n_models=1, **opts).fit(X)
    avg = AutoencoderDetector(seed=3, n_models=3, **opts).fit(X)
    first = avg.model_.members[0]
    for a, b in zip(first.state_dict().values(), single.model_.state_dict().values(), strict=True):
        assert torch.allclose(a, b, atol=1e-6)
    other = avg.model_.members[1]
    assert not torch.allclose(next(other.parameters()), next(first.parameters()))


def members(det):
    return getattr(det.model_, "n_members", 1)


def test_auto_averages_small_fits_only():
    assert AUTO_MODELS_BELOW == 1000  # the row counts below: 999 and 1,000 training rows after a 20 % validation tail
    opts = {**FAST, "epochs": 1}
    assert members(AutoencoderDetector(seed=0, **opts).fit(manifold(1249))) == AUTO_MODELS
    assert members(AutoencoderDetector(seed=0, **opts).fit(manifold(1250))) == 1
    # sequence models count windows: 1,014 rows hold 999 windows of 16, 1,015 rows 1,000
    lstm = {**opts, "model": "lstm", "window": 16}
    assert members(AutoencoderDetector(seed=0, **lstm).fit(manifold(1268))) == AUTO_MODELS
    assert members(AutoencoderDetector(seed=0, **lstm).fit(manifold(1269))) == 1
    n_small = 1249
    one = AutoencoderDetector(seed=0, n_models=1, **FAST).fit(manifold(n_small))
    assert not isinstance(one.model_, AveragedAutoencoder)
    three = AutoencoderDetector(seed=0, n_models=3, **FAST).fit(manifold(3000))
    assert three.model_.n_members == 3


def test_the_averaged_score_depends_less_on_the_seed():
    """What the averaging is for: two seeds' scores of the same records agree more with 5 members than with 1."""
    X, Y = manifold(400), manifold(300, seed=5)
    Y[::10] += 2.0

    def disagreement(k):
        out = []
        for pair in ((1, 2), (3, 4), (5, 6)):
            a, b = (AutoencoderDetector(seed=s, n_models=k, **FAST).fit(X).decision_function(Y) for s in pair)
            out.append(np.mean(np.abs(a - b)) / np.mean(np.abs(a)))
        return float(np.mean(out))

    one, five = disagreement(1), disagreement(5)
    assert five < 0.7 * one, (one, five)


def test_save_and_load_keep_the_members(tmp_path):
    X = manifold(400)
    det = AutoencoderDetector(seed=0, n_models=3, **FAST).fit(X)
    det.save(tmp_path / "m")
    cfg = json.loads((tmp_path / "m" / "detector.json").read_text())
    assert cfg["model_sizes"]["n_models"] == 3
    back = AutoencoderDetector.load(tmp_path / "m", device="cpu")
    assert back.model_.n_members == 3
    np.testing.assert_allclose(back.decision_function(X), det.decision_function(X), rtol=1e-5)
    # re-fits (the adaptive rule's) follow n_models, not the loaded model's member count
    assert members(AutoencoderDetector(**back.get_params()).fit(manifold(140))) == 3
    auto = AutoencoderDetector(seed=0, **FAST).fit(X)
    auto.save(tmp_path / "auto")
    params = AutoencoderDetector.load(tmp_path / "auto", device="cpu").get_params()
    assert params["model_sizes"]["n_models"] == AUTO_MODELS
    assert members(AutoencoderDetector(**params).fit(manifold(1600))) == 1
    # a model directory written before n_models (no key) is one model, and so are its re-fits
    one = AutoencoderDetector(seed=0, n_models=1, **FAST).fit(X)
    one.save(tmp_path / "old")
    cfg = json.loads((tmp_path / "old" / "detector.json").read_text())
    assert "n_models" not in cfg["model_sizes"]
    del cfg["params"]["n_models"]
    (tmp_path / "old" / "detector.json").write_text(json.dumps(cfg))
    old = AutoencoderDetector.load(tmp_path / "old", device="cpu")
    assert members(old) == 1 and members(AutoencoderDetector(**old.get_params()).fit(manifold(140))) == 1


@pytest.mark.parametrize("bad", [0, -1, 65, "three", True, 2.5])
def test_bad_n_models_refused(bad):
    with pytest.raises(FedadError, match="n_models"):
        AutoencoderDetector(n_models=bad, **FAST).fit(manifold(100))


def test_contrastive_is_not_averaged():
    with pytest.raises(FedadError, match="contrastive"):
        AutoencoderDetector(model="contrastive", n_models=2, **FAST).fit(manifold(100))


@pytest.fixture()
def small_csv(tmp_path):
    path = tmp_path / "d.csv"
    np.savetxt(path, manifold(300), delimiter=",", header=",".join(f"s{i}" for i in range(6)), comments="")
    return path


def test_fedad_train_averages_a_small_file_and_says_so(small_csv, tmp_path, capsys):
    assert fedad(["train", "--data", str(small_csv), "--out", str(tmp_path / "m"), "--epochs", "2"]) == 0
    assert f"mean of {AUTO_MODELS} initialisations" in capsys.readouterr().out
    assert json.loads((tmp_path / "m" / "detector.json").read_text())["model_sizes"]["n_models"] == AUTO_MODELS
    assert fedad(["train", "--data", str(small_csv), "--out", str(tmp_path / "one"), "--n-models", "1"]) == 0
    assert "initialisations" not in capsys.readouterr().out


@pytest.mark.parametrize(
    "extra, message",
    [
        (["--n-models", "0"], "--n-models"),
        (["--n-models", "x"], "expected 'auto' or an integer"),
        (["--n-models", "65"], "1..64"),
        (["--n-models", "2", "--model", "contrastive"], "--n-models must be 1"),
        (["--n-models", "2", "--model", "ensemble"], "--model ensemble"),
    ],
)
def test_fedad_train_refuses_bad_n_models(small_csv, tmp_path, capsys, extra, message):
    out = tmp_path / "m"
    with pytest.raises(SystemExit) as exc:
        code = fedad(["train", "--data", str(small_csv), "--out", str(out), *extra])
        raise SystemExit(code)
    assert exc.value.code == 2
    assert message in capsys.readouterr().err and not out.exists()

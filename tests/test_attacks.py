"""Poisoning attacks on flat update vectors, the data-poisoning training set and the collusion channel."""

import math
import threading
from pathlib import Path
from statistics import NormalDist

import numpy as np
import pytest

from fedad.client.attacks.alie import ALIE, alie_z
from fedad.client.attacks.base import Attack
from fedad.client.attacks.collusion import CollusionChannel
from fedad.client.attacks.data_poisoning import DataPoisoning
from fedad.client.attacks.min_max import MinMax, largest_gamma, perturbation, within_benign
from fedad.client.attacks.registry import ATTACK_NAMES, make_attack
from fedad.common.errors import FedadError

ATTACK_DIR = Path(__file__).resolve().parents[1] / "client" / "attacks"


def _updates(n=3, d=50, seed=0):
    rng = np.random.default_rng(seed)
    mu = rng.normal(size=d)
    return [mu + 0.5 * rng.normal(size=d) for _ in range(n)]


def _rng():
    return np.random.default_rng(0)


# ------------------------------------------------------------------------------------------ registry


def test_every_attack_has_its_own_file_and_a_name():
    files = {p.stem for p in ATTACK_DIR.glob("*.py")} - {"__init__", "base", "registry", "collusion"}
    assert files == {"sign_flip", "scaling", "gaussian", "zero", "data_poisoning", "alie", "ipm", "min_max"}
    assert set(ATTACK_NAMES) == files | {"min_sum"}


@pytest.mark.parametrize("name", ATTACK_NAMES)
def test_make_attack_builds_every_attack(name):
    params = {"num_clients": 10} if name == "alie" else {}
    attack = make_attack(name, start_round=3, seed=7, **params)
    assert isinstance(attack, Attack) and attack.name == name
    assert attack.start_round == 3 and attack.seed == 7
    assert not attack.is_active(2) and attack.is_active(3)
    u = _updates(1)[0]
    out = attack.poison_update(u, [u] if attack.needs_benign else None, _rng())
    assert out.shape == u.shape and np.all(np.isfinite(out))


def test_make_attack_scale_and_errors():
    assert make_attack("sign_flip", scale=3).k == 3.0
    assert make_attack("scaling", scale=5).lam == 5.0
    assert make_attack("ipm", scale=2).eps == 2.0
    assert make_attack("alie", scale=1.5).z == 1.5
    assert make_attack("min_max", scale=4).gamma_init == 4.0
    assert make_attack("data_poisoning", scale=1).shift == 1.0
    with pytest.raises(FedadError, match="unknown attack 'nope'"):
        make_attack("nope")
    with pytest.raises(FedadError, match="bad parameters"):
        make_attack("sign_flip", colour="red")
    with pytest.raises(FedadError, match="num_clients"):
        make_attack("alie")


def test_base_attack_is_honest_and_poison_weights_keeps_shapes_and_dtypes():
    g = [np.zeros((2, 3), dtype=np.float32), np.ones(4, dtype=np.float32)]
    new = [np.full((2, 3), 0.5, dtype=np.float32), np.full(4, 2.0, dtype=np.float32)]
    honest = Attack()
    assert honest.poison_data(np.ones((3, 2))).shape == (3, 2)
    assert honest.poison_num_examples(12) == 12
    flipped = make_attack("sign_flip", start_round=2).poison_weights(2, g, new)
    assert [a.shape for a in flipped] == [(2, 3), (4,)] and flipped[0].dtype == np.float32
    np.testing.assert_allclose(flipped[0], -0.5)
    np.testing.assert_allclose(flipped[1], 0.0)  # 1 - (2 - 1)
    before = make_attack("sign_flip", start_round=2).poison_weights(1, g, new)
    np.testing.assert_array_equal(before[1], new[1])
    assert make_attack("sign_flip").rng(4).normal() == make_attack("sign_flip").rng(4).normal()


# ------------------------------------------------------------------------------------------ simple attacks


def test_sign_flip_scaling_and_zero():
    u = _updates(1)[0]
    np.testing.assert_allclose(make_attack("sign_flip").poison_update(u, None, _rng()), -u)
    np.testing.assert_allclose(make_attack("sign_flip", scale=4).poison_update(u, None, _rng()), -4 * u)
    np.testing.assert_allclose(make_attack("scaling").poison_update(u, None, _rng()), 10 * u)
    zero = make_attack("zero")
    assert not zero.poison_update(u, None, _rng()).any()
    assert zero.poison_num_examples(100) == 1000


def test_gaussian_noise_norm_is_scale_times_the_honest_norm():
    u = _updates(1, d=20000)[0]
    loud = make_attack("gaussian").poison_update(u, None, np.random.default_rng(1))
    assert np.linalg.norm(loud) / np.linalg.norm(u) == pytest.approx(10.0, rel=0.05)
    stealthy = make_attack("gaussian", scale=1).poison_update(u, None, np.random.default_rng(1))
    assert np.linalg.norm(stealthy) / np.linalg.norm(u) == pytest.approx(1.0, rel=0.05)
    assert abs(np.dot(loud, u)) / (np.linalg.norm(loud) * np.linalg.norm(u)) < 0.05


# ------------------------------------------------------------------------------------------ colluding attacks


def test_alie_z_from_n_and_m():
    assert alie_z(10, 3) == pytest.approx(NormalDist().inv_cdf(0.7))  # s = 6 - 3 = 3
    assert alie_z(50, 10) == pytest.approx(NormalDist().inv_cdf((50 - 16) / 50))
    assert alie_z(10, 4) == pytest.approx(NormalDist().inv_cdf(0.8))  # s = 2
    assert alie_z(10, 1) == pytest.approx(0.0)  # s = 5: a lone attacker sends the colluders' mean
    with pytest.raises(FedadError, match="majority"):
        alie_z(10, 6)


def test_alie_sends_mu_minus_z_sigma_of_the_colluders():
    b = _updates(3)
    attack = ALIE(num_clients=10)
    out = attack.poison_update(b[0], b, _rng())
    mu, sigma = np.mean(b, axis=0), np.std(b, axis=0)
    np.testing.assert_allclose(out, mu - alie_z(10, 3) * sigma)
    np.testing.assert_allclose(ALIE(z=2.0).poison_update(b[0], b, _rng()), mu - 2.0 * sigma)
    alone = attack.poison_update(b[0], None, _rng())  # no colluder answered: its own update, sigma 0
    np.testing.assert_allclose(alone, b[0])
    with pytest.raises(FedadError):
        ALIE(num_clients=10, num_malicious=8)


def test_ipm_sends_minus_eps_times_the_colluders_mean():
    b = _updates(3)
    np.testing.assert_allclose(make_attack("ipm").poison_update(b[0], b, _rng()), -0.1 * np.mean(b, axis=0))
    np.testing.assert_allclose(make_attack("ipm", scale=3).poison_update(b[0], b, _rng()), -3 * np.mean(b, axis=0))


@pytest.mark.parametrize("kind", ["std", "unit", "sign"])
@pytest.mark.parametrize("name", ["min_max", "min_sum"])
def test_min_max_and_min_sum_find_the_largest_gamma_within_the_benign_cloud(name, kind):
    b = _updates(4)
    attack = make_attack(name, perturbation=kind)
    out = attack.poison_update(b[0], b, _rng())
    stacked = np.vstack(b)
    mu, sigma = stacked.mean(axis=0), stacked.std(axis=0)
    p = perturbation(mu, sigma, kind)
    gamma = attack.last_gamma
    assert gamma > 0
    np.testing.assert_allclose(out, mu + gamma * p)
    assert within_benign(out, stacked, attack.objective)
    assert not within_benign(mu + (gamma + 1e-3) * p, stacked, attack.objective)


def test_min_max_constraint_by_hand():
    b = np.array([[0.0, 0.0], [2.0, 0.0]])  # max pairwise distance 2; mu = (1, 0)
    gamma = largest_gamma(np.array([1.0, 0.0]), np.array([0.0, 1.0]), b, "max", gamma_init=10.0, tol=1e-9)
    assert gamma == pytest.approx(math.sqrt(3.0), abs=1e-6)  # sqrt(1 + g^2) = 2
    gamma = largest_gamma(np.array([1.0, 0.0]), np.array([0.0, 1.0]), b, "sum", gamma_init=10.0, tol=1e-9)
    assert gamma == pytest.approx(1.0, abs=1e-6)  # 2 (1 + g^2) = 4
    with pytest.raises(FedadError):
        MinMax(perturbation="nope")


def test_colluders_with_the_same_knowledge_send_the_same_vector():
    b = _updates(3)
    for name in ("alie", "ipm", "min_max"):
        attack = make_attack(name, **({"num_clients": 10} if name == "alie" else {}))
        outs = [attack.poison_update(b[i], [b[i]] + b[:i] + b[i + 1 :], _rng()) for i in range(3)]
        np.testing.assert_allclose(outs[0], outs[1])
        np.testing.assert_allclose(outs[0], outs[2])


# ------------------------------------------------------------------------------------------ data poisoning


def _shard(n=200, d=4, seed=0):
    rng = np.random.default_rng(seed)
    X = rng.normal(size=(n, d)).astype(np.float32)
    y = np.zeros(n, dtype=np.int8)
    y[:10] = 1
    X[:10] += 8.0  # the shard's anomalies
    return X, y


def test_data_poisoning_mixed_trains_on_anomalies_and_corrupted_copies():
    X, y = _shard()
    out = DataPoisoning().poison_data(X, y)
    assert out.dtype == np.float32 and out.shape[1] == 4
    assert out.shape[0] == 190 + 10 + 190 + 190  # normal + anomalies + shifted + noisy
    for row in X[:10]:  # every anomaly is in the training set
        assert np.any(np.all(out == row, axis=1))
    assert np.abs(out - X[10:].mean(axis=0)).max() > 2.5  # shifted copies lie far from normal data


def test_data_poisoning_modes():
    X, y = _shard()
    assert DataPoisoning("anomalies", keep_normal=False).poison_data(X, y).shape[0] == 10
    only_shift = DataPoisoning("shift", shift=3.0, keep_normal=False).poison_data(X, y)
    offset = np.abs(only_shift.mean(axis=0) - X[10:].mean(axis=0))
    np.testing.assert_allclose(offset, 3.0 * X[10:].std(axis=0), rtol=0.05)
    noisy = DataPoisoning("noise", noise=1.0, keep_normal=False).poison_data(X, y)
    assert noisy.std(axis=0).mean() == pytest.approx(np.sqrt(2) * X[10:].std(axis=0).mean(), rel=0.15)
    # no labels, no anomalies: "anomalies" falls back to corrupted copies
    assert DataPoisoning("anomalies", keep_normal=False).poison_data(X[10:]).shape[0] == 190
    assert DataPoisoning(seed=1).poison_data(X, y).tolist() == DataPoisoning(seed=1).poison_data(X, y).tolist()


def test_data_poisoning_windows_and_errors():
    windows = np.random.default_rng(0).normal(size=(30, 5, 3))
    out = DataPoisoning(keep_normal=False).poison_data(windows, np.zeros(30))
    assert out.shape == (60, 5, 3)
    with pytest.raises(FedadError, match="differ in length"):
        DataPoisoning().poison_data(windows, np.zeros(3))
    with pytest.raises(FedadError, match="unknown data poisoning mode"):
        DataPoisoning("flip")
    with pytest.raises(FedadError):
        DataPoisoning().poison_data(np.zeros((0, 3)))
    u = _updates(1)[0]
    np.testing.assert_array_equal(DataPoisoning().poison_update(u, None, _rng()), u)  # update untouched


# ------------------------------------------------------------------------------------------ collusion


def test_collusion_channel_exchanges_updates_between_three_colluders(tmp_path):
    b = _updates(3)
    names = ["evil_a", "evil_b", "evil_c"]
    results = {}

    def colluder(i):
        channel = CollusionChannel(tmp_path, 5, names[i], expected=3, timeout=10.0, poll_interval=0.01)
        results[i] = channel.exchange(b[i])

    threads = [threading.Thread(target=colluder, args=(i,)) for i in range(3)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    for i in range(3):
        assert len(results[i]) == 3
        np.testing.assert_array_equal(results[i][0], b[i])  # own update first
        assert sorted(map(tuple, results[i])) == sorted(map(tuple, b))
    files = sorted(p.name for p in (tmp_path / "round_000005").iterdir())
    assert files == ["evil_a.npy", "evil_b.npy", "evil_c.npy"]  # nothing half-written left over


def test_collusion_channel_times_out_with_partial_knowledge(tmp_path):
    b = _updates(3)
    CollusionChannel(tmp_path, 1, "evil_b", expected=3).publish(b[1])
    (tmp_path / "round_000001" / "evil_x.npy").write_bytes(b"not an array")
    np.save(tmp_path / "round_000001" / "evil_y.npy", np.zeros(7))  # wrong length: ignored
    channel = CollusionChannel(
        tmp_path,
        1,
        "evil_a",
        expected=["evil_a", "evil_b", "evil_c", "evil_x", "evil_y"],
        timeout=0.2,
        poll_interval=0.02,
    )
    got = channel.exchange(b[0])
    assert len(got) == 2
    np.testing.assert_array_equal(got[1], b[1])
    assert CollusionChannel(tmp_path, 2, "evil_a", expected=1).exchange(b[0])[0].tolist() == b[0].tolist()


@pytest.mark.parametrize("bad", ["../up", "a/b", ".hidden", ""])
def test_collusion_channel_rejects_path_like_names(tmp_path, bad):
    with pytest.raises(FedadError):
        CollusionChannel(tmp_path, 1, bad, expected=2)

"""Deviation flags, trust weights, trust history and quarantine on hand-made update sets, plus a numpy-only
simulation of 10 non-IID clients with 3 attackers per attack (no Flower)."""

import json
import re

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from fedad.client.attacks.registry import make_attack
from fedad.common.errors import FedadError
from fedad.server.aggregation import weighted_mean
from fedad.server.defence.config import FlagConfig, TrustConfig
from fedad.server.defence.flags import flag_deviating_updates, flag_precision_recall
from fedad.server.defence.quarantine import Quarantine
from fedad.server.defence.round import STRATEGIES, aggregate_round
from fedad.server.defence.scoring import closeness_scores, cosine_to, robust_z_scores, spread_alignment
from fedad.server.defence.trust import (
    TrustHistory,
    cap_sample_counts,
    direction_trust,
    embedding_trust,
    relative_trust,
    rescale_updates,
    trust_weights,
)

D = 200


def _benign(n, d=D, noise=0.3, seed=0):
    """n honest-looking updates: a shared direction plus independent noise of relative size ``noise``."""
    rng = np.random.default_rng(seed)
    mu = rng.normal(size=d)
    mu /= np.linalg.norm(mu)
    return mu, mu + noise * rng.normal(size=(n, d)) / np.sqrt(d)


def _names(n):
    return [f"node_{i:02d}" for i in range(n)]


# ------------------------------------------------------------------------------------------ raw scores


def test_robust_z_scores_median_mad_and_floor():
    x = np.array([1.0, 2.0, 3.0, 4.0, 100.0])
    z = robust_z_scores(x)
    assert z[2] == 0.0
    assert z[4] == pytest.approx(97 / 1.4826)
    assert robust_z_scores(np.ones(4), floor=0.5).tolist() == [0.0] * 4
    assert robust_z_scores(np.array([1.0, 1.0, 1.0, 2.0]), floor=0.0)[3] == np.inf
    assert robust_z_scores(np.array([1.0, 1.0, 1.0, 2.0]), floor=0.5)[3] == pytest.approx(1 / (1.4826 * 0.5))
    # median and MAD from the reference rows only
    z = robust_z_scores(np.array([0.0, 1.0, 2.0, 50.0]), reference=np.array([True, True, True, False]))
    assert z[1] == 0.0 and z[3] == pytest.approx(49 / 1.4826)


def test_cosine_and_direction_trust_of_a_sign_flip_is_zero():
    _, u = _benign(6)
    u[5] = -u[0]
    ref = np.median(u, axis=0)
    cos = cosine_to(u, ref)
    assert cos[5] < -0.9 and np.all(cos[:5] > 0.9)
    trust = direction_trust(u, ref)
    assert trust[5] == 0.0 and np.all(trust[:5] > 0.9)
    assert cosine_to(np.zeros((2, 3)), np.ones(3)).tolist() == [0.0, 0.0]


def test_closeness_spots_identical_vectors_among_distinct_ones():
    _, u = _benign(8)
    u[5] = u[6] = u[7]
    c = closeness_scores(u)
    assert np.all(c[5:] == pytest.approx(0.0, abs=1e-6)) and np.all(c[:5] > 0.5)
    assert np.all(closeness_scores(np.ones((4, 3))) == 1.0)  # all equal: nothing stands out


def test_spread_alignment_is_small_for_benign_and_negative_for_alie_like():
    _, u = _benign(10, noise=0.5)
    assert np.all(np.abs(spread_alignment(u, np.median(u, axis=0))) < 0.3)  # ~ 1/sqrt(200) each
    sigma = u[:7].std(axis=0)
    u[7:] = u[:3].mean(axis=0) - 1.0 * sigma + 0.1 * np.random.default_rng(5).normal(size=(3, D)) / np.sqrt(D)
    b = spread_alignment(u, np.median(u, axis=0))
    assert np.all(b[7:] < -0.5) and np.all(b[:7] > 0.0)


# ------------------------------------------------------------------------------------------ flags


def test_one_outlier_among_equal_updates_is_flagged_with_a_reason():
    u = np.tile(np.linspace(-1, 1, D), (10, 1))
    u[3] = -u[3]
    report = flag_deviating_updates(u)
    assert report.flagged.tolist() == [i == 3 for i in range(10)]
    assert report.reasons[3].startswith("cosine -1.00 to median (z=")
    assert all(r is None for i, r in enumerate(report.reasons) if i != 3)


@pytest.mark.parametrize(
    "factor, word",
    [
        (10.0, r"norm ratio (9\.\d+|10\.\d) .*z=\+"),
        (0.0, r"norm ratio 0 .*z=-"),
        (0.2, r"norm ratio 0\.(19|2)\d* .*z=-"),
    ],
)
def test_scaled_or_zero_update_is_flagged_by_norm_ratio(factor, word):
    _, u = _benign(10)
    u[0] = factor * u[0]
    report = flag_deviating_updates(u)
    assert report.flagged.tolist() == [True] + [False] * 9
    assert re.search(word, report.reasons[0]), report.reasons[0]


def test_noisy_benign_updates_are_rarely_flagged():
    false_flags = 0
    for seed in range(20):
        rng = np.random.default_rng(seed)
        _, u = _benign(10, noise=0.5, seed=seed)
        u *= rng.uniform(0.7, 1.3, size=(10, 1))  # different local data sizes
        false_flags += int(flag_deviating_updates(u).flagged.sum())
    assert false_flags <= 2  # of 200 client-rounds


def test_near_identical_benign_updates_do_not_trip_on_a_zero_mad():
    # IID clients: updates agree to 1e-9; the MAD floors keep tiny differences from looking like outliers
    rng = np.random.default_rng(1)
    base = rng.normal(size=D)
    u = base + 1e-9 * rng.normal(size=(10, D)) * rng.uniform(0.5, 2.0, size=(10, 1))
    u[4] *= 1.05
    assert not flag_deviating_updates(u).flagged.any()
    u[2] = -base
    assert flag_deviating_updates(u).flagged.tolist() == [i == 2 for i in range(10)]


def test_identical_colluders_are_flagged_as_near_duplicates():
    _, u = _benign(10, noise=0.5)
    u[7:] = u[:7].mean(axis=0)  # inside the benign cloud, but three times the same vector
    report = flag_deviating_updates(u)
    assert report.flagged.tolist() == [False] * 7 + [True] * 3
    assert all("near-duplicate" in report.reasons[i] for i in (7, 8, 9))


def test_a_duplicated_majority_is_not_a_suspicious_cluster():
    _, u = _benign(6, noise=0.5)
    u[1:] = u[1]  # five identical, one different: the cluster is the majority
    assert not any("near-duplicate" in (r or "") for r in flag_deviating_updates(u).reasons)


@pytest.mark.parametrize("n", [1, 2])
def test_too_few_clients_flag_nothing(n):
    _, u = _benign(n)
    u[0] = -10 * u[0]
    assert not flag_deviating_updates(u).flagged.any()


def test_three_clients_with_one_sign_flip():
    _, u = _benign(3, noise=0.2)
    u[2] = -u[2]
    assert flag_deviating_updates(u).flagged.tolist() == [False, False, True]


@settings(max_examples=25, deadline=None)
@given(seed=st.integers(0, 10_000), scale=st.floats(1e-6, 1e6), attackers=st.integers(0, 3))
def test_flags_do_not_depend_on_client_order_or_update_scale(seed, scale, attackers):
    rng = np.random.default_rng(seed)
    _, u = _benign(10, noise=0.5, seed=seed)
    u[10 - attackers :] *= -1.0
    perm = rng.permutation(10)
    base = flag_deviating_updates(u).flagged
    assert np.array_equal(flag_deviating_updates(u[perm]).flagged, base[perm])
    assert np.array_equal(flag_deviating_updates(scale * u).flagged, base)


def test_flag_precision_recall_edge_cases():
    assert flag_precision_recall({"a", "b"}, {"a", "c"}) == (0.5, 0.5)
    assert flag_precision_recall(set(), set()) == (None, None)  # undefined, never a perfect-looking 1.0
    assert flag_precision_recall(set(), {"a"}) == (None, 0.0)
    assert flag_precision_recall({"a"}, set()) == (0.0, None)
    assert flag_precision_recall(["a", "a"], ["a"]) == (1.0, 1.0)


# ------------------------------------------------------------------------------------------ trust


def test_equal_updates_get_equal_trust():
    u = np.tile(np.arange(1.0, D + 1), (5, 1))
    ref = np.median(u, axis=0)
    w = trust_weights(direction_trust(u, ref), embedding_trust(np.ones((5, 4))), np.ones(5), np.full(5, 100))
    np.testing.assert_allclose(w, 0.2)
    res = aggregate_round("trust", _names(5), list(u), [100] * 5)
    np.testing.assert_allclose([r["weight"] for r in res.records], 0.2)
    np.testing.assert_allclose(res.update, u[0])


def test_embedding_trust():
    e = np.array([[1.0, 0.0], [2.0, 0.0], [3.0, 0.0], [0.0, 1.0], [-1.0, 0.0]])
    t = embedding_trust(e)
    np.testing.assert_allclose(t[:3], 1.0)  # L2-normalised: scale does not matter
    assert t[3] == pytest.approx(1 / 3) and t[4] == pytest.approx(1 / 5)


def test_trust_weights_combine_multiplicatively_and_normalise():
    w = trust_weights(
        np.array([1.0, 0.5, 0.0]),
        np.array([1.0, 1.0, 1.0]),
        np.array([1.0, 0.5, 1.0]),
        np.array([10, 10, 10]),
        sample_cap=None,
    )
    np.testing.assert_allclose(w, [0.8, 0.2, 0.0])
    assert trust_weights(np.zeros(3), None, None, np.ones(3)).tolist() == [0.0] * 3


def test_claimed_sample_counts_are_capped():
    np.testing.assert_allclose(cap_sample_counts([100, 100, 100, 1e9], 4.0), [100, 100, 100, 400])
    np.testing.assert_allclose(cap_sample_counts([1, 2], None), [1, 2])


def test_rescale_and_relative_trust():
    r = rescale_updates(np.array([[3.0, 4.0], [0.0, 0.0]]), 10.0)
    np.testing.assert_allclose(r, [[6.0, 8.0], [0.0, 0.0]])
    np.testing.assert_allclose(relative_trust(np.array([0.5, 0.25, 1.0])), [1.0, 0.5, 1.0])
    np.testing.assert_allclose(relative_trust(np.zeros(2)), [0.0, 0.0])


def test_trust_history_ema_and_checkpoint_round_trip():
    h = TrustHistory(decay=0.5, initial=1.0)
    np.testing.assert_allclose(h.update(["a", "b"], [1.0, 0.0]), [1.0, 0.5])
    np.testing.assert_allclose(h.update(["b"], [0.0]), [0.25])
    assert h.get("new") == 1.0
    h2 = TrustHistory.from_dict(json.loads(json.dumps(h.to_dict())))
    assert h2.values == h.values and h2.decay == 0.5
    with pytest.raises(FedadError):
        TrustHistory.from_dict({"decay": 0.5})
    with pytest.raises(FedadError):
        TrustHistory.from_dict({"decay": 0.5, "initial": 1.0, "values": {"a": 7.0}})
    with pytest.raises(FedadError):
        TrustHistory(decay=1.0)


def test_quarantine_counts_flags_and_round_trips():
    q = Quarantine(max_flags=2)
    assert q.record(["a", "b"]) == []
    assert q.record(["a", "a"]) == ["a"]  # one flag per round
    assert q.is_quarantined("a") and not q.is_quarantined("b")
    q2 = Quarantine.from_dict(json.loads(json.dumps(q.to_dict())))
    assert q2.to_dict() == q.to_dict()
    with pytest.raises(FedadError):
        Quarantine(0)
    with pytest.raises(FedadError):
        Quarantine.from_dict({"max_flags": "x", "flag_counts": {}, "quarantined": []})


# ------------------------------------------------------------------------------------------ one round


@pytest.mark.parametrize("strategy", STRATEGIES)
def test_nan_and_wrong_shape_updates_are_rejected_in_every_strategy(strategy):
    _, u = _benign(6)
    updates = list(u)
    updates[1] = updates[1].copy()
    updates[1][3] = np.nan
    updates[2] = updates[2][:-1]
    updates[3] = None
    updates[4] = np.full(D, np.inf)
    res = aggregate_round(strategy, _names(6), updates, [10] * 6, rejected={"node_03": "array 0 has shape (2,)"})
    rec = {r["client"]: r for r in res.records}
    assert res.flagged == {"node_01", "node_02", "node_03", "node_04"}
    assert "non-finite" in rec["node_01"]["reason"] and "shape" in rec["node_02"]["reason"]
    assert rec["node_03"]["reason"] == "rejected: array 0 has shape (2,)"
    assert all(rec[n]["weight"] == 0.0 for n in ("node_01", "node_02", "node_03", "node_04"))
    assert np.all(np.isfinite(res.update)) and res.update.shape == (D,)
    json.dumps(res.records)  # the report is JSON-able


def test_flag_strategy_is_fedavg_of_the_unflagged():
    _, u = _benign(8)
    u[7] = -5 * u[7]
    counts = [10, 20, 30, 40, 50, 60, 70, 80]
    res = aggregate_round("flag", _names(8), list(u), counts)
    assert res.flagged == {"node_07"}
    expected = np.average(u[:7], axis=0, weights=counts[:7])  # numpy's weighted mean, not the code under test
    assert not np.allclose(expected, u[:7].mean(axis=0))  # the counts matter: an unweighted mean would fail
    np.testing.assert_allclose(res.update, expected)
    rec = res.records[7]
    assert rec["flagged"] and rec["excluded"] and rec["weight"] == 0.0
    assert rec["reason"].startswith("cosine -") and rec["z_cosine"] < -3.5
    assert set(rec) >= {"distance", "cosine", "norm_ratio", "z_distance", "z_cosine", "z_norm", "reason"}


def test_trust_strategy_keeps_but_downweights_a_sign_flip():
    _, u = _benign(6)
    u[5] = -u[5]
    hist = TrustHistory()
    res = aggregate_round("trust", _names(6), list(u), [10] * 6, history=hist)
    assert res.flagged == set()
    assert res.records[5]["direction_trust"] == 0.0 and res.records[5]["weight"] == 0.0
    assert hist.get("node_05") < hist.get("node_00") == 1.0


def test_robust_strategy_with_embeddings_history_and_quarantine():
    _, u = _benign(8)
    emb = [np.ones(4)] * 7 + [np.array([-1.0, 1.0, -1.0, 1.0])]
    hist, quarantine = TrustHistory(), Quarantine(max_flags=2)
    for rnd in range(3):
        updates = list(u)
        updates[6] = -u[6]  # attacker in every round
        res = aggregate_round(
            "robust", _names(8), updates, [10] * 8, embeddings=emb, history=hist, quarantine=quarantine
        )
        rec = {r["client"]: r for r in res.records}
        if rnd < 2:
            assert res.flagged == {"node_06"}
            assert ("quarantined from now on" in rec["node_06"]["reason"]) == (rnd == 1)  # max_flags=2 reached
        else:
            assert res.flagged == set() and rec["node_06"]["reason"].startswith("quarantined")
        assert rec["node_07"]["embedding_trust"] < rec["node_00"]["embedding_trust"] == pytest.approx(1.0)
        assert rec["node_07"]["weight"] < rec["node_00"]["weight"]
        assert sum(r["weight"] for r in res.records) == pytest.approx(1.0)
    assert quarantine.is_quarantined("node_06")
    assert hist.get("node_06") < 0.5


def test_aggregate_round_edge_cases():
    assert aggregate_round("robust", [], [], []).update.shape == (0,)
    res = aggregate_round("robust", ["a"], [np.ones(3)], [5])
    np.testing.assert_allclose(res.update, np.ones(3))
    res = aggregate_round("flag", ["a", "a"], [np.ones(3), np.ones(3)], [5, 5])
    assert res.records[1]["reason"] == "rejected: duplicate client name in this round"
    res = aggregate_round("flag", ["a", "b"], [np.ones(3), np.ones(3)], [5, -1])
    assert "invalid example count" in res.records[1]["reason"]
    res = aggregate_round("trust", ["a", "b"], [np.ones(3), -np.ones(3)], [5, 5])
    assert np.all(np.isfinite(res.update))
    with pytest.raises(FedadError, match="unknown robust strategy"):
        aggregate_round("krum", ["a"], [np.ones(3)], [1])
    with pytest.raises(ValueError):
        aggregate_round("flag", ["a"], [np.ones(3)], [1, 2])
    with pytest.raises(FedadError):
        aggregate_round("trust", ["a"], [np.ones(3)], [1], trust_config=TrustConfig(norm_reference="x"))


def test_flag_config_is_configurable():
    _, u = _benign(10, noise=0.5)
    u[0] = 1.8 * u[0]
    assert flag_deviating_updates(u).flagged[0]
    assert not flag_deviating_updates(u, FlagConfig(z_threshold=50.0)).flagged.any()


# ------------------------------------------------------------------------------------------ simulation

N_CLIENTS, N_MALICIOUS, DIM, ROUNDS = 10, 3, 1000, 20
SIM_ATTACKS = ["sign_flip", "scaling", "gaussian", "zero", "data_poisoning", "alie", "ipm", "min_max", "min_sum"]


def _unit(v):
    return v / np.linalg.norm(v)


def _non_iid(rng, mean, drift_dirs, n):
    """Benign non-IID updates: per-client magnitude, drift in shared data directions, heterogeneous noise."""
    magnitude = rng.uniform(0.7, 1.3, size=(n, 1))  # local data sizes / steps
    drift = rng.normal(0.0, 0.25, size=(n, drift_dirs.shape[0])) @ drift_dirs  # label/feature skew
    noise = rng.uniform(0.3, 0.9, size=(n, 1)) * rng.normal(size=(n, mean.size)) / np.sqrt(mean.size)
    return magnitude * mean + drift + noise


def simulate_round(attack, seed, n=N_CLIENTS, m=N_MALICIOUS, d=DIM):
    """One round: the last m clients attack; returns names, sent updates, claimed counts, malicious, benign mean.

    Colluding attacks (ALIE, IPM, min-max/sum) get the colluders' own honest updates, as the collusion
    channel would give them. Data poisoning is modelled as honest training on other data: the attackers'
    honest updates are drawn around a direction orthogonal to the benign mean.
    """
    rng = np.random.default_rng(seed)
    mu = _unit(rng.normal(size=d))
    drift_dirs = rng.normal(size=(5, d)) / np.sqrt(d)
    honest = _non_iid(rng, mu, drift_dirs, n)
    counts = rng.integers(200, 2000, size=n).astype(float)
    malicious = list(range(n - m, n)) if attack else []
    if attack == "data_poisoning":
        other = rng.normal(size=d)
        other = _unit(other - (other @ mu) * mu)
        honest[malicious] = _non_iid(rng, other, drift_dirs, m)
    sent, claimed = honest.copy(), counts.copy()
    if attack and attack != "data_poisoning":
        att = make_attack(attack, seed=seed, **({"num_clients": n} if attack == "alie" else {}))
        colluders = [honest[i] for i in malicious]
        for j, i in enumerate(malicious):
            known = [colluders[j]] + colluders[:j] + colluders[j + 1 :] if att.needs_benign else None
            sent[i] = att.poison_update(honest[i], known, np.random.default_rng([seed, i]))
            claimed[i] = att.poison_num_examples(int(counts[i]))
    names = _names(n)
    benign = [i for i in range(n) if i not in malicious]
    return names, sent, claimed, {names[i] for i in malicious}, weighted_mean(honest[benign], counts[benign])


def run_simulation(attack, rounds=ROUNDS):
    """Pooled flag precision/recall of the robust strategy and mean relative aggregate errors."""
    flagged = malicious = hits = 0
    err_robust, err_fedavg = [], []
    for seed in range(rounds):
        names, sent, claimed, mal, target = simulate_round(attack, seed)
        res = aggregate_round("robust", names, list(sent), list(claimed))
        flagged, malicious, hits = flagged + len(res.flagged), malicious + len(mal), hits + len(res.flagged & mal)
        scale = np.linalg.norm(target)
        err_robust.append(np.linalg.norm(res.update - target) / scale)
        err_fedavg.append(np.linalg.norm(weighted_mean(sent, claimed) - target) / scale)
    precision = hits / flagged if flagged else 1.0
    recall = hits / malicious if malicious else 1.0
    return precision, recall, float(np.mean(err_robust)), float(np.mean(err_fedavg))


@pytest.mark.parametrize("attack", SIM_ATTACKS)
def test_simulation_flags_attackers_and_keeps_the_aggregate_close(attack):
    precision, recall, err_robust, err_fedavg = run_simulation(attack)
    assert precision >= 0.95 and recall >= 0.95, (attack, precision, recall)
    assert err_robust < 0.1, (attack, err_robust)
    assert err_robust < 0.5 * err_fedavg, (attack, err_robust, err_fedavg)


def test_simulation_without_attack_rarely_flags_and_stays_close():
    rounds = 2 * ROUNDS
    false_flags, errors = 0, []
    for seed in range(rounds):
        names, sent, claimed, _, target = simulate_round(None, 1000 + seed)
        res = aggregate_round("robust", names, list(sent), list(claimed))
        false_flags += len(res.flagged)
        errors.append(np.linalg.norm(res.update - target) / np.linalg.norm(target))
    assert false_flags <= 0.02 * rounds * N_CLIENTS
    assert np.mean(errors) < 0.1


def test_simulation_benign_view_of_the_colluders_is_partial():
    # the colluders estimate mu and sigma from their own 3 honest updates, never from the 7 benign ones
    names, sent, _, mal, _ = simulate_round("alie", 3)
    idx = sorted(names.index(m) for m in mal)
    np.testing.assert_allclose(sent[idx[0]], sent[idx[1]])

"""Robust flagging of honest sites of very unequal size: judged by more than the size of their update.

A site with 500 rows runs a handful of local steps per round and one with 20000 rows hundreds, so honest
update norms differ by 10x and more; flags must not follow size (issue 12: honest small sites quarantined).
"""

from __future__ import annotations

import numpy as np
import pytest

from fedad.server.defence.config import FlagConfig
from fedad.server.defence.flags import flag_deviating_updates
from fedad.server.defence.scoring import size_factors, theil_sen_slope

SIZES = (500, 1000, 2000, 3000, 5000, 8000, 12000, 16000, 20000)
SKEWED = (300, 600, 5000, 5200, 5400, 5600, 5800, 6000, 6200, 20000)  # most sites alike, two small, one big


def _honest(rng, counts, d=400, exponent=0.7, noise=0.3):
    """Updates sharing one direction, norm growing as count ** exponent, per-site noise."""
    common = rng.normal(size=d)
    common /= np.linalg.norm(common)
    rows = []
    for c in counts:
        v = common + noise * rng.normal(size=d) / np.sqrt(d)
        rows.append((c / 5000.0) ** exponent * v / np.linalg.norm(v))
    return np.array(rows)


def test_theil_sen_and_size_factors():
    x = np.log(np.array(SIZES, dtype=float))
    assert theil_sen_slope(x, 0.7 * x + 3.0) == pytest.approx(0.7)
    assert theil_sen_slope(np.ones(4), np.arange(4.0)) is None


def test_theil_sen_on_many_points_uses_a_subset_and_keeps_the_slope():
    rng = np.random.default_rng(0)
    x = rng.normal(size=3000)
    y = 0.5 * x + rng.normal(0.0, 0.05, x.size)
    y[:300] = 50.0  # 10 % gross outliers
    full = theil_sen_slope(x, y)  # all 4.5M pairs
    sub = theil_sen_slope(x, y, max_points=500)
    assert full == pytest.approx(0.5, abs=0.03) and sub == pytest.approx(full, abs=0.03)
    norms = (np.array(SIZES) / 5000.0) ** 0.7
    assert size_factors(norms, np.array(SIZES)) == pytest.approx(norms)
    assert size_factors(norms, np.full(9, 777.0)).tolist() == [1.0] * 9  # equal sizes: nothing changes
    assert size_factors(np.array(SIZES, dtype=float) ** 3, np.array(SIZES)).max() == pytest.approx(4.0)  # slope <= 1


def test_unequal_honest_sites_are_not_flagged_for_their_size():
    rng = np.random.default_rng(0)
    blind = aware = 0
    for sizes in [SIZES, SKEWED] * 15:
        u = _honest(rng, sizes)
        blind += int(flag_deviating_updates(u).flagged.sum())
        aware += int(flag_deviating_updates(u, counts=np.array(sizes)).flagged.sum())
    assert blind > 10  # size alone gets honest sites flagged when counts are ignored ...
    assert aware == 0  # ... and not once they are taken into account


@pytest.mark.parametrize("attack", ["scaling", "sign_flip", "zero"])
def test_attackers_are_still_flagged_even_when_they_claim_a_large_count(attack):
    rng = np.random.default_rng(1)
    counts = np.array([*SIZES, 5000, 5000])
    u = _honest(rng, counts)
    bad = {"scaling": 10.0 * u[-1], "sign_flip": -u[-1], "zero": 0.0 * u[-1]}[attack]
    for claim in (5000, 20000, 10**6):  # the attacker's example count is its own word
        v, c = u.copy(), counts.astype(float).copy()
        v[-1], c[-1] = bad, claim
        report = flag_deviating_updates(v, FlagConfig(), counts=c)
        assert report.flagged[-1], (attack, claim, report.reasons[-1])
        assert not report.flagged[:-1].any(), report.reasons


@pytest.mark.parametrize("seed", [0, 1])
def test_real_updates_of_unequal_honest_sites_clean_run_no_quarantine(seed):
    """Nine honest sites of the synthetic plant, 500 to 20000 rows, eight rounds of robust aggregation."""
    torch = pytest.importorskip("torch")
    torch.set_num_threads(1)
    from fedad.client.site import Site
    from fedad.common.data import dataset_from_frame
    from fedad.common.federation_spec import FederationSpec
    from fedad.common.models.registry import build_model
    from fedad.common.synth import generate_node
    from fedad.common.training import get_weights
    from fedad.server.aggregation import apply_update, compute_update
    from fedad.server.defence.quarantine import Quarantine
    from fedad.server.defence.round import aggregate_round
    from fedad.server.defence.trust import TrustHistory

    sites = [Site(dataset_from_frame(generate_node(k, n, seed), f"n{k}")) for k, n in enumerate(SIZES, 1)]
    spec = FederationSpec(
        model="dense", preprocessing={"scaler": "standard"}, seed=seed, feature_names=sites[0].data.feature_names
    )
    for s in sites:
        s.configure(spec, "spec")
        s.set_scaler(None, b"site")
    torch.manual_seed(seed)
    weights = get_weights(build_model("dense", sites[0].n_features))
    quarantine, history = Quarantine(max_flags=3), TrustHistory()
    for rnd in range(1, 9):
        names, updates, counts, embeddings = [], [], [], []
        for k, s in enumerate(sites, 1):
            out = s.train(weights, 2, seed * 1000 + rnd)
            names.append(f"n{k}")
            counts.append(out["examples"])
            updates.append(np.concatenate([w.ravel() for w in compute_update(out["weights"], weights)]))
            embeddings.append(s.mean_embedding(weights))
        result = aggregate_round(
            "robust", names, updates, counts, embeddings=embeddings, history=history, quarantine=quarantine
        )
        weights = apply_update(weights, result.update)
    assert not quarantine.quarantined, quarantine.flag_counts

"""Buffered asynchronous aggregation (FedBuff): the numpy math, the strategies' buffer steps, the CLI's refusals."""

from __future__ import annotations

import numpy as np
import pytest

from fedad.common.errors import FedadError
from fedad.server.aggregation import flatten, weighted_average
from fedad.server.buffered import buffered_update, fedbuff_step, staleness_weight

SHAPES = [(3, 2), (2,)]


def _weights(rng, scale=1.0) -> list[np.ndarray]:
    return [rng.normal(0, scale, s) for s in SHAPES]


def test_staleness_weight_is_one_over_sqrt_one_plus_t():
    assert staleness_weight(0) == 1.0
    assert staleness_weight(3) == pytest.approx(0.5)
    assert staleness_weight(8) == pytest.approx(1 / 3)
    assert staleness_weight(1) > staleness_weight(2) > staleness_weight(10)
    with pytest.raises(ValueError):
        staleness_weight(-1)


def test_fresh_buffer_is_fedavg_of_the_deltas():
    rng = np.random.default_rng(0)
    glob = _weights(rng)
    clients = [_weights(rng) for _ in range(4)]
    counts = [10, 30, 5, 55]
    deltas = [flatten(c) - flatten(glob) for c in clients]
    new = fedbuff_step(glob, deltas, counts, [0, 0, 0, 0])
    expected = weighted_average(list(zip(clients, counts, strict=True)))
    for a, b in zip(new, expected, strict=True):
        assert a.shape == b.shape
        np.testing.assert_allclose(a, b, atol=1e-12)


def test_exact_small_numbers_stale_updates_weigh_less_and_shrink_the_step():
    d1, d2 = np.array([1.0, 0.0]), np.array([0.0, 1.0])
    # equal counts; d2 is 3 versions old: weight 1/2 -> (1 * d1 + 0.5 * d2) / 2
    np.testing.assert_allclose(buffered_update([d1, d2], [1, 1], [0, 3]), [0.5, 0.25])
    # counts 1 and 3, staleness 0 and 8: (1 * 1 * d1 + 3 * (1/3) * d2) / 4
    np.testing.assert_allclose(buffered_update([d1, d2], [1, 3], [0, 8]), [0.25, 0.25])
    # all stale by 3: the same direction as FedAvg, half the step (normalised by the counts, as FedBuff)
    np.testing.assert_allclose(buffered_update([d1, d2], [1, 1], [3, 3]), [0.25, 0.25])
    # the server learning rate scales the step
    np.testing.assert_allclose(buffered_update([d1, d2], [1, 1], [0, 0], server_lr=0.5), [0.25, 0.25])
    # nobody with a positive weight: no step
    np.testing.assert_array_equal(buffered_update([d1, d2], [0, 0], [0, 0]), [0.0, 0.0])
    with pytest.raises(ValueError):
        buffered_update([d1, d2], [1], [0, 0])


def test_fedbuff_step_keeps_shapes_and_dtypes():
    glob = [np.zeros((2, 2), np.float32), np.ones(3, np.float32)]
    new = fedbuff_step(glob, [np.ones(7)], [5], [0])
    assert [a.shape for a in new] == [(2, 2), (3,)] and all(a.dtype == np.float32 for a in new)
    np.testing.assert_allclose(new[1], 2.0)


def _strategy(name: str):
    from fedad.server.main import build_parser, build_strategy

    return build_strategy(build_parser().parse_args(["--strategy", name]))


def test_fedavg_buffer_refuses_an_outsized_delta_and_weights_staleness():
    s = _strategy("fedavg")
    rng = np.random.default_rng(1)
    deltas = [rng.normal(0, 0.01, 8) for _ in range(4)] + [np.full(8, 50.0)]
    names = [f"n{i}" for i in range(5)]
    step = s.aggregate_buffer(names, deltas, [10] * 5, [0, 1, 0, 2, 0], [None] * 5)
    assert set(s.last_rejections) == {"n4"}
    expected = buffered_update(deltas[:4], [10] * 4, [0, 1, 0, 2])
    np.testing.assert_allclose(step, expected)


@pytest.mark.parametrize("mode", ["flag", "robust"])
def test_robust_buffer_flags_the_deviating_update_and_leaves_it_out(mode):
    s = _strategy(mode)
    rng = np.random.default_rng(2)
    base = rng.normal(0, 0.01, 40)
    deltas = [base + rng.normal(0, 0.001, 40) for _ in range(5)] + [-20 * base]
    names = [f"n{i}" for i in range(6)]
    emb = [np.ones(4)] * 6
    step = s.aggregate_buffer(names, deltas, [100] * 6, [0, 1, 0, 1, 2, 0], emb)
    assert "n5" in s.last_summary["flagged"] and "n5" not in s.last_summary["kept"]
    assert s.last_client_reports["n5"]["weight"] == 0.0
    # the step points along the honest updates (cosine near 1), not the sign-flipped one
    cos = float(step @ base / (np.linalg.norm(step) * np.linalg.norm(base)))
    assert cos > 0.95
    # stale honest updates shrink the step against a fresh buffer of the same updates
    fresh = _strategy(mode).aggregate_buffer(names, deltas, [100] * 6, [0] * 6, emb)
    assert np.linalg.norm(step) < np.linalg.norm(fresh)


def test_strategies_without_a_buffer_step_say_so():
    from fedad.server.strategies.base import FedadStrategy

    class Plain(FedadStrategy):
        name = "plain"

        def aggregate_updates(self, server_round, accepted):
            return []

    noop = lambda r: {}  # noqa: E731
    with pytest.raises(FedadError, match="does not aggregate asynchronously"):
        Plain(fit_config=noop, evaluate_config=noop).aggregate_buffer(["a"], [np.zeros(2)], [1], [0], [None])


@pytest.mark.parametrize(
    ("extra", "reason"),
    [
        (["--async-buffer", "-1"], "--async-buffer must be >= 0"),
        (["--async-buffer", "2", "--strategy", "paillier", "--public-key", "x"], "paillier yet"),
        (["--async-buffer", "2", "--rounds", "0"], "--rounds 0"),
        (["--async-buffer", "2", "--compress", "q8"], "with --compress yet"),
        (["--async-buffer", "2", "--strategy", "robust"], "--async-buffer >= 3"),
        (["--async-buffer", "5", "--min-clients", "3"], "could never fill"),
        (["--async-buffer", "2", "--server-lr", "0"], "--server-lr positive"),
    ],
)
def test_bad_async_options_are_refused(extra, reason):
    from fedad.server.main import build_parser, check_async_args

    with pytest.raises(FedadError, match=reason.replace("-", "\\-")):
        check_async_args(build_parser().parse_args(extra))


def test_the_server_refuses_async_paillier_in_one_line(tmp_path):
    from procs import run_module

    p = run_module(
        "fedad.server.main",
        "--out",
        str(tmp_path / "o"),
        "--async-buffer",
        "2",
        "--strategy",
        "paillier",
        "--public-key",
        "x",
    )
    assert p.returncode == 2, p.stderr
    assert "--async-buffer" in p.stderr and len(p.stderr.strip().splitlines()) == 1
    assert not (tmp_path / "o").exists()

"""secure-robust hardening after review: sketch rows bounded by the blocks, lenient decoding of what clients
could corrupt (padding slots, out-of-range values), no single-client aggregate, budget checked up front."""

from __future__ import annotations

from types import SimpleNamespace

import numpy as np
import pytest
import test_blind_decryption as tb
from flwr.common import ndarrays_to_parameters, parameters_to_ndarrays

from fedad.common.crypto.keys import generate_keypair, key_fingerprint, save_keypair
from fedad.common.crypto.packing import SlotLayout, pack
from fedad.common.errors import FedadError
from fedad.server.defence.sketch_round import lenient_slots, mean_from_slots
from fedad.server.keyholder import Budget, KeyHolder, Refusal
from fedad.server.keyholder_client import BlindDecryptor, InProcessKeyHolder
from fedad.server.strategies.secure_robust import SecureRobust


@pytest.fixture(scope="module")
def keys(tmp_path_factory):
    pub, priv = generate_keypair(1024)
    path = tmp_path_factory.mktemp("keys")
    save_keypair(path, pub, priv)
    return pub, priv, path


def strategy_for(pub, priv, rows=tb.ROWS, budget=None, **kwargs):
    holder = KeyHolder(priv, budget or Budget(max_clients=5, sketch_rows=rows))
    strategy = SecureRobust(
        public_key=pub,
        decryptor=BlindDecryptor(pub, InProcessKeyHolder(holder)),
        sketch_rows=rows,
        bits=tb.BITS,
        clip=tb.CLIP,
        fit_config=lambda r: {},
        evaluate_config=lambda r: {},
        **kwargs,
    )
    strategy.n_values = int(sum(int(np.prod(s)) for s in tb.SHAPES))
    return strategy, holder


def test_the_key_holder_refuses_sketch_rows_that_would_reveal_updates(keys):
    pub, priv, _ = keys
    holder = KeyHolder(priv, Budget(max_clients=2, sketch_rows=8))
    fp = key_fingerprint(pub)
    with pytest.raises(Refusal) as r:
        holder.begin({"key": fp, "round": 1, "clients": 2, "aggregate_blocks": 9})  # rank <= 8: m = 8 solves it
    assert r.value.code == "FAILED_PRECONDITION" and "at most 7 sketch rows" in str(r.value)
    assert holder.begin({"key": fp, "round": 1, "clients": 2, "aggregate_blocks": 10})["sketch"] == 16


def test_the_server_refuses_too_many_sketch_rows_for_its_model(keys):
    pub, priv, _ = keys
    strategy, _ = strategy_for(pub, priv, rows=6)
    strategy.check_settings()  # 41 blocks: 6 rows are fine
    strategy.rows = strategy.layout.blocks_for(strategy.n_values) - 1
    with pytest.raises(FedadError, match="too many for this model"):
        strategy.check_settings()


def test_padding_junk_is_ignored_and_an_overflow_raises():
    layout = SlotLayout(16, 4, 1024)
    q = np.arange(1, 51, dtype=np.uint64)  # 50 values: the last block has padding slots
    blocks = pack(q, layout)
    blocks[-1] += 1234 << (layout.slot_bits * (layout.slots_per_block - 1))  # junk in the last padding slot
    assert np.array_equal(lenient_slots(blocks, layout, 50), q)
    with pytest.raises(ValueError):
        lenient_slots([1 << (layout.slots_per_block * layout.slot_bits + 3)], layout, 5)


def test_the_decrypted_mean_stays_within_the_clip():
    slots = np.array([0, 65535, 10 * 65535, 32767], dtype=np.float64)  # the third carried in from a neighbour
    mean = mean_from_slots(slots, 1, 0.5, 16)
    assert mean.min() >= -0.5 and mean.max() <= 0.5 and mean[2] == 0.5 and abs(mean[3]) < 1e-4


def _round(strategy, pub_path, rnd=1):
    rng = np.random.default_rng(7)
    glob = [rng.normal(0.0, 0.1, s).astype(np.float32) for s in tb.SHAPES]
    manager = tb.Manager([SimpleNamespace(cid=f"cid-{n}") for n in tb.NAMES])
    instructions = strategy.configure_fit(rnd, ndarrays_to_parameters(glob), manager)
    config = {**instructions[0][1].config, **strategy.secure_config()}
    results, _ = tb.client_round(rng, rnd, glob, pub_path, config)
    return glob, results


def test_one_kept_client_is_never_decrypted_alone(keys):
    pub, priv, path = keys
    strategy, holder = strategy_for(pub, priv)
    glob, results = _round(strategy, path / "public.key")
    params, _ = strategy.aggregate_fit(1, results[:1], [])  # a single client: its aggregate would be its update
    assert "global model unchanged" in strategy.last_summary["aggregate_skipped"]
    assert all(np.array_equal(a, b) for a, b in zip(parameters_to_ndarrays(params), glob, strict=True))
    assert "aggregate" not in strategy.last_summary["keyholder_blocks"]
    assert holder.current.left["aggregate"] == strategy.layout.blocks_for(strategy.n_values)  # nothing spent


def test_a_budget_smaller_than_the_round_needs_is_reported_before_decrypting(keys):
    pub, priv, path = keys
    strategy, holder = strategy_for(pub, priv, budget=Budget(max_clients=5, sketch_rows=3))
    _, results = _round(strategy, path / "public.key")
    with pytest.raises(FedadError, match="--sketch-rows >= 6"):
        strategy.aggregate_fit(1, results, [])
    assert holder.decrypted == 0

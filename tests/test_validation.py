"""The validation layer for what nodes send (server/validation.py), FedAvg's norm bound, lenient Paillier
decoding and the key holder's run-wide caps: plain functions, no Flower, no processes."""

from __future__ import annotations

import json

import numpy as np
import pytest

from fedad.common.federated_stats import N_BINS, encode_histogram, encode_scaler_stats
from fedad.common.preprocessing import ScalerStats
from fedad.server import validation as check
from fedad.server.aggregation import clip_to_norm, norm_bounds

SHAPES = [(3, 2), (2,)]


def good_weights(dtype=np.float32) -> list[np.ndarray]:
    return [np.ones((3, 2), dtype), np.zeros(2, dtype)]


@pytest.mark.parametrize("value", [True, 1.0, "12", None, b"1"])
def test_count_refuses_non_integers(value):
    with pytest.raises(check.InvalidMessage, match="must be an integer"):
        check.count(value, "num_examples")


def test_count_range_and_plant_wide_cap():
    assert check.count(np.int64(5), "n") == 5
    with pytest.raises(check.InvalidMessage, match="outside"):
        check.count(10**18, "num_examples")
    with pytest.raises(check.InvalidMessage, match="outside"):
        check.count(-1, "tp")


@pytest.mark.parametrize("value", [float("nan"), float("inf"), -float("inf"), "0.5", True, None])
def test_real_refuses_non_finite_huge_and_non_numbers(value):
    with pytest.raises(check.InvalidMessage):
        check.real(value, "train_loss")


def test_real_accepts_ints_and_floats():
    assert check.real(3, "x") == 3.0 and check.real(np.float32(0.5), "x") == 0.5


@pytest.mark.parametrize(
    "value, why",
    [
        (json.dumps(["a", "b"]), None),
        ("not json", "not JSON"),
        (json.dumps({"a": 1}), "list of"),
        (json.dumps([]), "list of"),
        (json.dumps(["a", 3]), "must be a string"),
        (json.dumps(["a", "a"]), "repeats"),
        (json.dumps(["x" * 500]), "printable characters"),
        (["a"], "JSON string"),
        (json.dumps([f"f{i}" for i in range(check.MAX_FEATURES + 1)]), "JSON string|list of"),
    ],
)
def test_feature_list(value, why):
    if why is None:
        assert check.feature_list(value) == ("a", "b")
    else:
        with pytest.raises(check.InvalidMessage, match=why):
            check.feature_list(value)


def test_histogram_checks_type_shape_sign_and_total():
    h = np.arange(N_BINS, dtype=np.int64)
    assert np.array_equal(check.histogram(encode_histogram(h), N_BINS), h)
    with pytest.raises(check.InvalidMessage, match="must be bytes"):
        check.histogram(None, N_BINS)  # a missing histogram
    with pytest.raises(check.InvalidMessage, match="bytes"):
        check.histogram(encode_histogram(h[:-1]), N_BINS)
    with pytest.raises(check.InvalidMessage, match="negative"):
        check.histogram(encode_histogram(-h), N_BINS)
    big = np.zeros(N_BINS, np.int64)
    big[-1] = 10**15  # invented counts that would push the threshold past every score
    with pytest.raises(check.InvalidMessage, match="sums to more"):
        check.histogram(encode_histogram(big), N_BINS, max_total=1000)


def test_tensors_accept_float32_and_float64_only():
    check.tensors(good_weights(np.float32), SHAPES)
    check.tensors(good_weights(np.float64), SHAPES)
    for dtype in (np.int64, np.float16, np.complex64, object):
        with pytest.raises(check.InvalidMessage, match="dtype"):
            check.tensors([np.ones((3, 2), dtype), np.zeros(2, dtype)], SHAPES)


@pytest.mark.parametrize(
    "spoil, why",
    [
        (lambda w: w[:1], "number of arrays"),
        (lambda w: [w[0].reshape(2, 3), w[1]], "shape"),
        (lambda w: [w[0], np.array([np.nan, 0], np.float32)], "non-finite"),
        (lambda w: [w[0] * 3e38, w[1]], "magnitude"),  # finite float32 values near the top of the range
        (lambda w: [w[0] * 1e6, w[1]], "magnitude"),
        (lambda w: ["x", w[1]], "not an array"),
    ],
)
def test_tensors_refuse_bad_updates(spoil, why):
    with pytest.raises(check.InvalidMessage, match=why):
        check.tensors(spoil(good_weights()), SHAPES)


def test_aggregate_check_names_why_a_global_model_is_not_sent():
    assert check.aggregate(good_weights(), SHAPES) is None
    assert "non-finite" in check.aggregate([good_weights()[0], np.array([np.inf, 0])], SHAPES)


def test_tensor_bytes_bounds_the_size_before_decoding():
    check.tensor_bytes([b"x" * 10, b"y" * 10], 20)
    with pytest.raises(check.InvalidMessage, match="more than"):
        check.tensor_bytes([b"x" * 21], 20)
    with pytest.raises(check.InvalidMessage, match="not bytes"):
        check.tensor_bytes(["x"], 20)


def test_scaler_stats_count_must_match_a_sane_declaration():
    stats = ScalerStats.from_data(np.random.default_rng(0).normal(size=(50, 3)))
    assert check.scaler_stats(encode_scaler_stats(stats), 3).count == 50
    with pytest.raises(check.InvalidMessage, match="outside"):
        check.scaler_stats(encode_scaler_stats(stats), 3, max_count=10)
    with pytest.raises(ValueError):
        check.scaler_stats(encode_scaler_stats(stats), 4)


def test_stats_result_decodes_features_and_declared_count():
    metrics = {"name": "n1", "features": json.dumps(["a", "b"]), "stats": b"\0" * 8}
    assert check.stats_result(100, metrics, encrypted=False, max_blob=1 << 10) == (("a", "b"), 100)
    with pytest.raises(check.InvalidMessage, match="no 'stats_enc'"):
        check.stats_result(100, metrics, encrypted=True, max_blob=1 << 10)
    with pytest.raises(check.InvalidMessage, match="declared row count"):
        check.stats_result("100", metrics, encrypted=False, max_blob=1 << 10)


def test_fit_result_caps_the_claimed_count_at_the_declared_one():
    assert check.fit_result(10**6, {"train_loss": 0.1}, declared=800) == (800, 10**6)
    assert check.fit_result(700, {}, declared=800) == (700, 700)
    with pytest.raises(check.InvalidMessage, match="train_loss"):
        check.fit_result(10, {"train_loss": "low"}, declared=None)
    with pytest.raises(check.InvalidMessage, match="num_examples"):
        check.fit_result(0, {}, declared=None)
    with pytest.raises(check.InvalidMessage, match="metrics"):
        check.fit_result(10, ["not", "a", "mapping"], declared=None)


def test_evaluate_result_checks_every_phase():
    h = np.zeros(N_BINS, np.int64)
    h[3] = 40
    d = check.evaluate_result(
        "threshold", 0.5, 40, {"hist": encode_histogram(h)}, n_bins=N_BINS, encrypted=False, max_blob=1 << 20
    )
    assert d["hist"].sum() == 40
    with pytest.raises(check.InvalidMessage, match="must be bytes"):
        check.evaluate_result("threshold", 0.5, 40, {}, n_bins=N_BINS, encrypted=False, max_blob=1 << 20)
    pos, neg = np.zeros(N_BINS, np.int64), np.zeros(N_BINS, np.int64)
    pos[5], neg[1] = 3, 7
    m = {
        "tp": 2,
        "fn": 1,
        "fp": 1,
        "tn": 6,
        "threshold": 0.2,
        "pos_hist": encode_histogram(pos),
        "neg_hist": encode_histogram(neg),
    }
    d = check.evaluate_result("test", 0.1, 10, m, n_bins=N_BINS, encrypted=False, max_blob=1 << 20)
    assert d["tp"] == 2 and d["threshold"] == 0.2
    with pytest.raises(check.InvalidMessage, match="do not sum"):
        check.evaluate_result("test", 0.1, 10, {**m, "tp": 3}, n_bins=N_BINS, encrypted=False, max_blob=1 << 20)
    with pytest.raises(check.InvalidMessage, match="tp must be an integer"):
        check.evaluate_result("test", 0.1, 10, {**m, "tp": "2"}, n_bins=N_BINS, encrypted=False, max_blob=1 << 20)
    d = check.evaluate_result(
        "test", 0.1, 10, {**m, "outside_range": 0.25, "outside_feature": 3}, n_bins=N_BINS, encrypted=False, max_blob=1
    )
    assert d["outside_range"] == 0.25 and d["outside_feature"] == 3
    for bad, match in (
        ({"outside_range": 1.5, "outside_feature": 0}, "outside_range"),
        ({"outside_range": "0.2", "outside_feature": 0}, "outside_range must be a number"),
        ({"outside_range": 0.2, "outside_feature": -2}, "outside_feature"),
        ({"outside_range": 0.2}, "outside_feature must be an integer"),
    ):
        with pytest.raises(check.InvalidMessage, match=match):
            check.evaluate_result("test", 0.1, 10, {**m, **bad}, n_bins=N_BINS, encrypted=False, max_blob=1 << 20)
    with pytest.raises(check.InvalidMessage, match="loss"):
        check.evaluate_result("val", float("nan"), 10, {}, n_bins=N_BINS, encrypted=False, max_blob=1 << 20)


def test_name_must_be_printable_text():
    assert check.name({"name": "node_01"}) == "node_01" and check.name({}) is None
    for bad in (7, "", "a\nb", "x" * 1000):
        with pytest.raises(check.InvalidMessage):
            check.name({"name": bad})


def test_replay_guard_refuses_a_bit_for_bit_repeat_of_the_previous_round():
    guard = check.ReplayGuard()
    assert guard.check("a", 1, [b"w1"]) is None
    assert guard.check("b", 1, [b"w1"]) is None  # another node may send the same bytes
    assert "replay" in guard.check("a", 2, [b"w1"])
    assert guard.check("a", 3, [b"w2"]) is None
    assert guard.check("a", 4, [b"w", b"2"]) is None  # tensor boundaries count


def test_norm_bounds_use_the_median_of_the_other_updates():
    b = norm_bounds([1.0, 1.2, 0.9, 1e6], 10.0)
    assert np.all(b[:3] >= 9.0) and b[3] == pytest.approx(10 * 1.0)
    two = norm_bounds([1.0, 1e6], 10.0)  # among two clients the huge one cannot raise its own bound
    assert two[1] == pytest.approx(10.0) and two[0] > 1.0
    assert np.all(np.isinf(norm_bounds([1.0, 1e6], 0.0))) and np.isinf(norm_bounds([5.0], 10.0)).all()


def test_clip_to_norm():
    u = np.array([3.0, 4.0])
    assert np.allclose(clip_to_norm(u, 1.0), [0.6, 0.8]) and clip_to_norm(u, 10.0) is u


def test_fedavg_refuses_or_clips_an_update_over_the_norm_ratio():
    from flwr.common import Code, FitRes, Status, ndarrays_to_parameters, parameters_to_ndarrays

    from fedad.server.strategies.fedavg import FedAvg

    class Proxy:
        def __init__(self, cid):
            self.cid = cid

    glob = [np.zeros(4, np.float32)]
    rng = np.random.default_rng(1)
    weights = {f"n{i}": [rng.normal(0, 0.01, 4).astype(np.float32)] for i in range(4)}
    weights["bad"] = [np.full(4, 5.0, np.float32)]

    def results():
        return [
            (Proxy(n), FitRes(Status(Code.OK, ""), ndarrays_to_parameters(w), 100, {"name": n}))
            for n, w in weights.items()
        ]

    for action in ("refuse", "clip"):
        s = FedAvg(fit_config=lambda r: {}, evaluate_config=lambda r: {}, norm_action=action)
        s.global_weights = glob
        new, _ = s.aggregate_fit(1, results(), [])
        out = parameters_to_ndarrays(new)[0]
        if action == "refuse":
            assert "bad" in s.last_rejections and "norm" in s.last_rejections["bad"]
            assert np.abs(out).max() < 0.05
        else:
            assert "bad" in s.last_clipped and not s.last_rejections
            assert np.abs(out).max() < 1.0  # clipped to 10x the others' median norm, then averaged


def test_lenient_decoding_survives_out_of_range_plaintexts():
    from fedad.common.crypto.exceptions import PackingError
    from fedad.common.crypto.packing import SlotLayout, pack, unpack, unpack_lenient

    layout = SlotLayout.for_max_sum(16, 4, 1024)
    q = np.arange(30, dtype=np.uint64) % 1000
    blocks = pack(q, layout)
    assert np.array_equal(unpack_lenient(blocks, layout, 30), q)
    wide = [blocks[0] | (1 << (layout.slots_per_block * layout.slot_bits + 5))] + blocks[1:]
    with pytest.raises(PackingError):
        unpack(wide, layout, 30)
    assert np.array_equal(unpack_lenient(wide, layout, 30), q)  # the overflow bit is cut away
    padded = blocks[:-1] + [blocks[-1] | (7 << (layout.slot_bits * (layout.slots_per_block - 1)))]
    assert np.array_equal(unpack_lenient(padded, layout, 30), q)


def test_client_decrypts_an_aggregate_holding_an_out_of_range_ciphertext(tmp_path):
    """A peer's valid ciphertext of an out-of-range value used to crash every honest node's decryption."""
    from fedad.common.crypto.codec import decode_message, encode_message
    from fedad.common.crypto.decryptor import LocalDecryptor
    from fedad.common.crypto.encryption import weighted_sum
    from fedad.common.crypto.exceptions import PackingError
    from fedad.common.crypto.keys import generate_keypair
    from fedad.common.crypto.update import decrypt_mean, encrypt_update, slot_layout

    pub, priv = generate_keypair(1024)
    layout = slot_layout(pub, 16, 2000)
    honest = [np.full(40, 0.5, np.float32)]
    msg = encrypt_update(pub, honest, 4.0, 16, layout, workers=1)
    cts, _, _ = decode_message(pub, msg, expected_layout=layout, expected_count=40)
    too_wide = 1 << (layout.slots_per_block * layout.slot_bits + 10)  # a valid ciphertext of an out-of-range value
    evil = [pub.raw_encrypt(too_wide)] + [pub.raw_encrypt(0)] * (len(cts) - 1)
    agg = encode_message(pub, weighted_sum(pub, [cts, evil], [1000, 1000], layout.max_sum), layout, 40)
    with pytest.raises(PackingError):
        decrypt_mean(LocalDecryptor(priv), agg, 2000, [(40,)], 4.0, 16)
    out = decrypt_mean(LocalDecryptor(priv), agg, 2000, [(40,)], 4.0, 16, lenient=True)[0]
    assert np.all(np.abs(out) <= 4.0) and np.isfinite(out).all()


def test_keyholder_caps_rounds_at_the_declared_count_and_spaces_them():
    from fedad.common.crypto.keys import generate_keypair
    from fedad.server.keyholder import Budget, KeyHolder, Refusal

    pub, priv = generate_keypair(1024)
    now, slept = [0.0], []

    def sleep(s):
        slept.append(s)
        now[0] += s

    holder = KeyHolder(
        priv,
        Budget(max_clients=2, sketch_rows=2, max_aggregate_blocks=10, max_rounds=50, min_round_interval=1.0),
        clock=lambda: now[0],
        sleep=sleep,
    )
    key = holder.fingerprint

    def begin(rnd, **kw):
        return holder.begin({"key": key, "round": rnd, "clients": 1, "aggregate_blocks": 5, **kw})

    begin(1, rounds=3)
    now[0] += 0.2
    with pytest.raises(Refusal, match="declared 3 rounds"):
        begin(2, rounds=40)
    begin(2, rounds=3)  # asked for 0.2 s after round 1: held until the minimum interval has passed
    assert slept == [pytest.approx(0.8)]
    now[0] += 1.0
    begin(3)  # later rounds need not repeat the declaration
    now[0] += 1.0
    with pytest.raises(Refusal, match="past the run's 3 rounds"):
        begin(4, rounds=3)
    holder.begin({"key": key, "round": 4, "clients": 1, "final": True})  # the threshold round
    with pytest.raises(Refusal):
        begin(5)
    fresh = KeyHolder(priv, Budget(max_clients=2, sketch_rows=2, max_aggregate_blocks=10, max_rounds=50))
    with pytest.raises(Refusal, match="serves 1..50"):
        fresh.begin({"key": key, "round": 1, "clients": 1, "aggregate_blocks": 5, "rounds": 60})


def test_admitted_view_hides_idle_and_excluded_connections():
    from fedad.server.admission import AdmittedClients, drop_connection

    class Manager:
        def __init__(self):
            self.clients = {"a": object(), "b": object(), "c": object()}

        def all(self):
            return self.clients

        def unregister(self, proxy):
            self.clients = {k: v for k, v in self.clients.items() if v is not proxy}

    class Strategy:
        names = {"a": "node_a", "c": "node_c"}
        excluded = {"node_c"}

    m = Manager()
    view = AdmittedClients(m, {"a", "c"}, Strategy())
    assert list(view.all()) == ["a"] and view.num_available() == 1
    drop_connection(m, m.clients["b"])
    assert set(m.all()) == {"a", "c"}

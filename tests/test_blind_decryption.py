"""Privacy and exactness of secure-robust's blind decryption, with real keys, real gRPC and a real key holder.

(a) What the key holder recovers from blinded ciphertexts is uniform in [0, n) however structured the
    plaintexts are (all-zero sketch rows, constant embeddings, 0/1 aggregates): KS and chi-square tests
    over 1000+ decryptions; the aggregator's unblinded results are the exact plaintexts.
(b) The same statistics reject unblinded plaintexts and a mask drawn from half the range: they have power.
(c) The aggregator side -- ``SecureRobust`` with a ``BlindDecryptor`` -- runs in this process against a
    ``fedad-keyholder --insecure`` subprocess that alone reads private.key (made by ``fedad keygen`` in
    another subprocess): after two rounds and the final histogram no Paillier private key of this run
    exists in this process, private.key was never opened here, and ``load_public_key`` refuses it.
(d) The key holder's audit log shows per round exactly live clients x (m + 1 embedding block) + the
    aggregate's blocks; the aggregator learns m x L sketch numbers per client, nothing more.
(e) The encrypted path is exact: the decrypted sketches equal ``sketch_quantized`` of the clients' quantized
    integers, the scores equal those computed on them in the clear, and the new global weights equal the
    plaintext integer computation (and lie within the quantization bound of the float weighted sum).

1024-bit keys (tests only).
"""

from __future__ import annotations

import gc
import json
import math
import os
import secrets
import signal
import subprocess
import sys
import time
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
from flwr.common import ndarrays_to_parameters, parameters_to_ndarrays
from phe.paillier import PaillierPrivateKey
from procs import ENV, free_port, keyholder_cmd, wait_for
from scipy import stats

from fedad.client.secure import PublicKeyClient
from fedad.common.crypto.blinding import blind, unblind
from fedad.common.crypto.embedding import dequantize_embedding, embedding_layout, quantize_embedding
from fedad.common.crypto.encryption import encrypt_blocks
from fedad.common.crypto.keys import generate_keypair, key_fingerprint, load_public_key
from fedad.common.crypto.obfuscation import ObfuscatorReserve, precompute_obfuscators
from fedad.common.crypto.packing import dequantize_mean, pack, quantization_error_bound, quantize
from fedad.common.crypto.sketch import (
    SketchPlan,
    decode_sketch,
    leakage,
    secure_layout,
    sketch_ciphertexts,
    sketch_quantized,
)
from fedad.common.crypto.statistics import counts_layout, sum_counts
from fedad.common.errors import FedadError
from fedad.common.federated_stats import N_BINS
from fedad.server.aggregation import apply_update, flatten
from fedad.server.defence.quarantine import Quarantine
from fedad.server.defence.sketch_round import (
    WEIGHT_TOTAL,
    coefficients,
    integer_coefficients,
    score_sketches,
    sketch_vector,
    update_from_mean,
)
from fedad.server.defence.trust import TrustHistory
from fedad.server.keyholder import Budget, KeyHolder, start_server
from fedad.server.keyholder_client import BlindDecryptor, KeyHolderClient, KeyHolderError
from fedad.server.strategies.paillier import ciphertext_parameters
from fedad.server.strategies.secure_robust import SecureRobust

ALPHA = 1e-3  # uniformity tests fail (falsely) once in a thousand runs


def uniformity(values: list[int], n: int) -> tuple[float, float]:
    """(KS p-value of v / n against U(0, 1), chi-square p-value of the top byte floor(256 v / n))."""
    u = np.array([v / n for v in values])
    top = np.array([(v * 256) // n for v in values])
    return (float(stats.kstest(u, "uniform").pvalue), float(stats.chisquare(np.bincount(top, minlength=256)).pvalue))


# ------------------------------------------------------------------------------------- (a), (b) uniformity


@pytest.fixture(scope="module")
def observed_holder():
    """An in-process KeyHolder over real gRPC whose observer keeps every plaintext it recovers."""
    pub, priv = generate_keypair(1024)
    seen: list[tuple[int, str, list[int]]] = []
    holder = KeyHolder(
        priv,
        Budget(max_clients=10, sketch_rows=40, embedding_blocks=4, max_aggregate_blocks=100),
        observer=lambda rnd, kind, plain: seen.append((rnd, kind, plain)),
    )
    address = f"127.0.0.1:{free_port()}"
    server = start_server(holder, address, None, None)
    client = KeyHolderClient(address, timeout=30)
    yield SimpleNamespace(pub=pub, holder=holder, seen=seen, client=client)
    client.close()
    server.stop(None)


def structured_round(pub) -> dict[str, tuple[list[int], list[int]]]:
    """One round's worth of (ciphertexts, plaintexts) per kind, as structured as plaintexts get."""
    n_values = 200
    layout = secure_layout(1024, 16, n_values, WEIGHT_TOTAL)
    zero, _ = quantize(np.zeros(n_values), 0.5, 16)  # a zero update
    plan = SketchPlan.draw(secrets.token_bytes(32), layout.blocks_for(n_values), 40)
    sketch = []
    for _ in range(10):  # 10 clients x 40 rows, every row an all-zero sketch
        sketch += sketch_ciphertexts(pub, encrypt_blocks(pub, pack(zero, layout), workers=1), plan, layout, n_values)
    zero_row = sum(plan.offset(layout) << (i * layout.slot_bits) for i in range(layout.slots_per_block))
    emb_layout = embedding_layout(1024)
    emb_plain = pack(quantize_embedding(np.ones(8)), emb_layout)[0]  # one constant embedding for everybody
    agg_plain = [0, 1] * 50
    return {
        "sketch": (sketch, [zero_row] * len(sketch)),
        "embedding": (encrypt_blocks(pub, [emb_plain] * 40, workers=1), [emb_plain] * 40),
        "aggregate": (encrypt_blocks(pub, agg_plain, workers=1), agg_plain),
    }


def test_the_key_holder_sees_uniform_noise_and_the_aggregator_the_plaintexts(observed_holder):
    h = observed_holder
    d = BlindDecryptor(h.pub, h.client)
    truth, recovered = [], []
    before, first = len(h.seen), h.holder.last_round + 1
    rounds = (first, first + 1)
    for rnd in rounds:
        assert d.begin_round(rnd, 10, aggregate_blocks=100) == {"sketch": 400, "embedding": 40, "aggregate": 100}
        for kind, (cts, plain) in structured_round(h.pub).items():
            for part in (cts[: len(cts) // 2], cts[len(cts) // 2 :]):
                recovered += d.as_kind(kind).decrypt_blocks(part)
            truth += plain
    assert recovered == truth  # unblinding gives the aggregator the exact plaintexts
    assert len(set(truth)) == 4  # ... of only four distinct values
    observed = h.seen[before:]
    seen = [v for _, _, plain in observed for v in plain]
    assert len(seen) == len(truth) == 1080
    assert [(r, k) for r, k, _ in observed] == [
        (r, k) for r in rounds for k in ("sketch",) * 2 + ("embedding",) * 2 + ("aggregate",) * 2
    ]
    # the key holder: 1080 distinct values, none of them a plaintext, uniform in [0, n)
    assert len(set(seen)) == len(seen) and not set(seen) & set(truth)
    ks, chi2 = uniformity(seen, h.pub.n)
    assert ks > ALPHA and chi2 > ALPHA, (ks, chi2)
    # the same per kind (the sketch rows alone: 800 copies of one value)
    sketch_seen = [v for _, k, plain in observed if k == "sketch" for v in plain]
    assert stats.kstest(np.array([v / h.pub.n for v in sketch_seen]), "uniform").pvalue > ALPHA


def test_the_statistics_reject_what_blinding_hides(observed_holder):
    h = observed_holder
    before = len(h.seen)
    rnd = h.holder.last_round + 1
    h.client.begin_round(key_fingerprint(h.pub), rnd, 10, 100)
    round_data = structured_round(h.pub)
    truth = []
    for kind, (cts, plain) in round_data.items():  # the same ciphertexts, sent without blinding
        got = h.client.decrypt(key_fingerprint(h.pub), rnd, kind, cts, 256, 128)
        assert got == plain
        truth += plain
    seen = [v for _, _, plain in h.seen[before:] for v in plain]
    assert seen == truth  # without blinding the key holder reads every plaintext
    ks, chi2 = uniformity(seen, h.pub.n)
    assert ks < 1e-12 and chi2 < 1e-12, (ks, chi2)
    # a mask from half the range would leak too (the values crowd into [m, m + n/2)), and the tests see it
    n = h.pub.n
    half = [(m + secrets.randbelow(n // 2)) % n for m in truth]
    ks, chi2 = uniformity(half, n)
    assert ks < 1e-12 and chi2 < 1e-12, (ks, chi2)
    # while a blinding mask is uniform over the whole range
    masked, masks = blind(h.pub, round_data["aggregate"][0], precompute_obfuscators(h.pub, 100, workers=1))
    assert len(set(masks)) == 100 and not set(masked) & set(round_data["aggregate"][0])


def test_blinding_rerandomises_the_ciphertext(observed_holder):
    pub = observed_holder.pub
    c = encrypt_blocks(pub, [7], workers=1)[0]
    (b1, b2), (r1, r2) = blind(pub, [c, c], precompute_obfuscators(pub, 2, workers=1))
    assert len({c, b1, b2}) == 3 and r1 != r2
    assert 0 < b1 < pub.nsquare and 0 < b2 < pub.nsquare
    with pytest.raises(ValueError, match="obfuscators"):
        blind(pub, [c, c], [1])
    assert unblind(pub, [(7 + r1) % pub.n], [r1]) == [7]
    with pytest.raises(ValueError):
        unblind(pub, [1, 2], [3])


def test_the_obfuscator_reserve_hands_out_fresh_valid_obfuscators():
    # blinding draws its mask's encryption randomness from the aggregator's ObfuscatorReserve
    pub, priv = generate_keypair(1024)
    lam = (priv.p - 1) * (priv.q - 1) // math.gcd(priv.p - 1, priv.q - 1)
    aggregator, client = ObfuscatorReserve(pub, workers=2), ObfuscatorReserve(pub, workers=1)
    aggregator.refill(40)
    client.refill(10)  # another worker count: the shared pool is rebuilt under the first refill
    got = aggregator.take(50) + client.take(10) + aggregator.take(5, wait=False)
    assert len(got) == 65 == len(set(got))  # each handed out once
    assert all(0 < x < pub.nsquare and pow(x, lam, pub.nsquare) == 1 for x in got)  # x = r^n mod n^2
    c = encrypt_blocks(pub, [123], workers=1)[0]
    blinded, masks = blind(pub, [c], aggregator.take(1))
    assert unblind(pub, [priv.raw_decrypt(blinded[0])], masks) == [123]


# ------------------------------------------------------------------------ (c), (d), (e) aggregator process

SHAPES = [(30, 40), (40,), (40, 8), (8,)]  # 1568 values: 41 blocks of 39 slots under a 1024-bit key, 8 in the last
CLIP, BITS, ROWS = 0.5, 16, 6
NAMES = ["node0", "node1", "node2", "node3", "mallory"]
EXAMPLES = [1000, 1200, 900, 1100, 1000]

_WATCH: dict = {"paths": set(), "opened": []}


def _audit_hook(event, args):  # records this process opening a watched file (sys.addaudithook: permanent)
    if event == "open" and _WATCH["paths"] and args and isinstance(args[0], (str, bytes, os.PathLike)):
        try:
            path = os.path.abspath(os.fsdecode(args[0]))
        except (TypeError, ValueError):
            return
        if path in _WATCH["paths"]:
            _WATCH["opened"].append(path)


class RecordingDecryptor(BlindDecryptor):
    """The real BlindDecryptor, keeping what each call returned (round, kind, unblinded plaintexts)."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.calls: list[tuple[int, str, list[int]]] = []

    def decrypt_blocks(self, ciphertexts):
        plain = super().decrypt_blocks(ciphertexts)
        self.calls.append((self.round, self.kind, list(plain)))
        return plain


class Manager:
    """Flower's client manager as far as ``configure_fit`` uses it: every connected proxy by cid."""

    def __init__(self, proxies):
        self.proxies = {p.cid: p for p in proxies}

    def all(self):
        return dict(self.proxies)


def client_round(rng, rnd: int, global_weights, public_key_path: Path, config: dict):
    """Each client's update and embedding, encrypted by a real PublicKeyClient; also its quantized integers."""
    direction = rng.normal(0.0, 2e-3, sum(int(np.prod(s)) for s in SHAPES))
    base_emb = rng.normal(size=8)
    results, plain = [], []
    for k, name in enumerate(NAMES):
        update = direction + rng.normal(0.0, 2e-3, direction.size)
        if name == "mallory":
            update = -update  # sign flip
        weights, start = [], 0
        for g in global_weights:
            weights.append((g + update[start : start + g.size].reshape(g.shape)).astype(g.dtype))
            start += g.size
        emb = base_emb + rng.normal(0.0, 0.3, 8)
        client = PublicKeyClient(str(public_key_path))
        client.check(config)
        client.rng = np.random.default_rng([rnd, k])  # stochastic rounding, replayed below
        client.prepare(config, direction.size)
        message = client.encrypt_update(weights, global_weights, config)
        emb_message = client.encrypt_embedding(emb)
        replay = np.random.default_rng([rnd, k])
        true_update = flatten(weights) - flatten(global_weights)
        q = quantize(true_update, CLIP, BITS, replay)[0]
        q_emb = quantize_embedding(emb, replay)
        res = SimpleNamespace(
            parameters=ciphertext_parameters(message.tobytes()),
            num_examples=EXAMPLES[k],
            metrics={"name": name, "train_loss": 0.1, "embedding_enc": emb_message},
        )
        results.append((SimpleNamespace(cid=f"cid-{name}"), res))
        plain.append(SimpleNamespace(update=true_update, q=q, q_emb=q_emb))
    return results, plain


@pytest.fixture(scope="module")
def aggregator(tmp_path_factory):
    """Two secure-robust rounds and the final histogram, aggregator here, key holder in its own process."""
    tmp = tmp_path_factory.mktemp("blind-aggregator")
    keys = tmp / "keys"
    p = subprocess.run(
        [sys.executable, "-m", "fedad.common.cli", "keygen", "--bits", "1024", "--out", str(keys)],
        capture_output=True,
        text=True,
        env=ENV,
        timeout=600,
    )
    assert p.returncode == 0, p.stderr
    public, private = keys / "public.key", keys / "private.key"
    address, audit, ready = f"127.0.0.1:{free_port()}", tmp / "audit.jsonl", tmp / "ready"
    log = tmp / "keyholder.log"
    holder = subprocess.Popen(
        [
            *keyholder_cmd(),
            "--listen",
            address,
            "--private-key",
            str(private),
            "--insecure",
            "--audit",
            str(audit),
            "--ready-file",
            str(ready),
            "--max-clients",
            "5",
            "--sketch-rows",
            str(ROWS),
            "--embedding-blocks",
            "1",
            "--max-aggregate-blocks",
            "64",
        ],
        stdout=open(log, "w"),
        stderr=subprocess.STDOUT,
        env=ENV,
    )
    holder.log_path = log  # type: ignore[attr-defined]  # watched for progress
    try:
        wait_for(ready.exists, 300, "the key holder to listen", [holder])
        sys.addaudithook(_audit_hook)
        _WATCH["paths"] = {os.path.abspath(private)}
        out = run_rounds(public, address)
        _WATCH["paths"] = set()
    finally:
        _WATCH["paths"] = set()
        holder.send_signal(signal.SIGINT)
        try:
            holder.wait(timeout=120)
        except subprocess.TimeoutExpired:
            holder.kill()
            raise
    out.update(
        public=public,
        private=private,
        audit=[json.loads(x) for x in audit.read_text().splitlines()],
        keyholder_log=log.read_text(),
        keyholder_rc=holder.returncode,
        opened=list(_WATCH["opened"]),
    )
    return out


def run_rounds(public: Path, address: str) -> dict:
    pub = load_public_key(public)
    decryptor = RecordingDecryptor(pub, KeyHolderClient(address, timeout=300))  # generous: a loaded machine
    decryptor.client.wait_ready(300)
    strategy = SecureRobust(
        public_key=pub,
        decryptor=decryptor,
        sketch_rows=ROWS,
        bits=BITS,
        clip=CLIP,
        malicious=("mallory",),
        fit_config=lambda r: {},
        evaluate_config=lambda r: {},
    )
    rng = np.random.default_rng(2024)
    global_weights = [rng.normal(0.0, 0.1, s).astype(np.float32) for s in SHAPES]
    strategy.n_values = int(sum(w.size for w in global_weights))
    manager = Manager([SimpleNamespace(cid=f"cid-{name}") for name in NAMES])
    rounds = []
    for rnd in (1, 2):
        instructions = strategy.configure_fit(rnd, ndarrays_to_parameters(global_weights), manager)
        assert len(instructions) == len(NAMES) and strategy.max_clients == len(NAMES)
        config = {**instructions[0][1].config, **strategy.secure_config()}  # what FedadServer sends
        results, plain = client_round(rng, rnd, global_weights, public, config)
        t0 = time.perf_counter()
        params, _ = strategy.aggregate_fit(rnd, results, [])
        assert params is not None and strategy.last_rejections == {}
        new_weights = parameters_to_ndarrays(params)
        rounds.append(
            dict(
                global_weights=global_weights,
                new_weights=new_weights,
                plain=plain,
                summary=dict(strategy.last_summary),
                records=[dict(r) for r in strategy.last_client_reports.values()],
                calls=[c for c in decryptor.calls if c[0] == rnd],
                seconds=time.perf_counter() - t0,
            )
        )
        global_weights = new_weights
    # the final round: the summed threshold histogram, blind-decrypted
    hists = [rng.integers(0, 3000, N_BINS) for _ in NAMES]
    config = strategy.secure_config()
    msgs = [PublicKeyClient(str(public)).encrypt_histogram(h, config) for h in hists]
    hist_sum = sum_counts(pub, msgs, strategy.max_clients, N_BINS)
    histogram = strategy.decrypt_histogram(hist_sum, 3, len(msgs), N_BINS)
    with pytest.raises(KeyHolderError) as after:  # the session is over for good
        decryptor.begin_round(4, len(NAMES), strategy.layout.blocks_for(strategy.n_values))
    return dict(
        strategy=strategy,
        pub=pub,
        rounds=rounds,
        histogram=histogram,
        hist_truth=sum(hists),
        after_final=str(after.value),
        calls=list(decryptor.calls),
    )


@pytest.mark.filterwarnings("ignore::FutureWarning")  # gc.get_objects() touches torch's deprecated aliases
def test_the_aggregator_process_never_holds_the_private_key(aggregator):
    gc.collect()
    pub = aggregator["pub"]
    ours = [o for o in gc.get_objects() if isinstance(o, PaillierPrivateKey) and o.public_key.n == pub.n]
    assert ours == []
    assert aggregator["opened"] == []  # private.key was never opened by this process during the run
    strategy = aggregator["strategy"]
    assert not any(isinstance(v, PaillierPrivateKey) for v in vars(strategy.decryptor).values())
    with pytest.raises(FedadError, match="refusing a private key"):
        load_public_key(aggregator["private"])
    gc.collect()
    assert not [o for o in gc.get_objects() if isinstance(o, PaillierPrivateKey) and o.public_key.n == pub.n]
    # ... and yet the rounds ran through: the key holder (another process) decrypted what they needed
    assert aggregator["keyholder_rc"] == 0
    total = sum(len(plain) for _, _, plain in aggregator["calls"])
    assert [(rnd, kind) for rnd, kind, _ in aggregator["calls"]] == [
        (1, "sketch"),
        (1, "embedding"),
        (1, "aggregate"),
        (2, "sketch"),
        (2, "embedding"),
        (2, "aggregate"),
        (3, "histogram"),
    ]
    assert f"stopped after {total} decryptions" in aggregator["keyholder_log"]
    np.testing.assert_array_equal(aggregator["histogram"], aggregator["hist_truth"])
    assert "FAILED_PRECONDITION" in aggregator["after_final"] and "final round is over" in aggregator["after_final"]


def test_the_key_holder_decrypts_only_its_budget(aggregator):
    strategy, pub = aggregator["strategy"], aggregator["pub"]
    layout = strategy.layout
    n_blocks = layout.blocks_for(strategy.n_values)
    assert n_blocks == 41 and strategy.n_values % layout.slots_per_block == 8  # a partial last block
    audit = aggregator["audit"]
    clients = len(NAMES)
    for rnd in (1, 2):
        begin = [e for e in audit if e["op"] == "begin" and e["round"] == rnd]
        assert begin == [
            {
                "time": begin[0]["time"],
                "op": "begin",
                "round": rnd,
                "final": False,
                "budget": {"sketch": clients * ROWS, "embedding": clients, "aggregate": n_blocks},
            }
        ]
        done = [e for e in audit if e["op"] == "decrypt" and e["round"] == rnd]
        assert all("refused" not in e for e in done)
        per_kind = {k: sum(e["blocks"] for e in done if e["kind"] == k) for k in ("sketch", "embedding", "aggregate")}
        assert per_kind == {"sketch": clients * ROWS, "embedding": clients, "aggregate": n_blocks}
        assert sum(per_kind.values()) <= clients * (ROWS + 1) + n_blocks
        summary = aggregator["rounds"][rnd - 1]["summary"]
        assert summary["keyholder_blocks"] == per_kind
    final = [e for e in audit if e["round"] == 3]
    hist_blocks = counts_layout(pub, clients).blocks_for(N_BINS)
    assert final[0]["budget"] == {"histogram": hist_blocks} and final[0]["final"] is True
    assert [(e["kind"], e["blocks"]) for e in final[1:]] == [("histogram", hist_blocks)]
    refused = [e for e in audit if "refused" in e]
    assert len(refused) == 1 and refused[0]["round"] == 4 and "final round is over" in refused[0]["refused"]
    assert len(audit) == 2 * (1 + 3) + 2 + 1


def test_the_aggregator_learns_m_by_l_sketch_numbers_per_client(aggregator):
    strategy = aggregator["strategy"]
    layout = strategy.layout
    for r in aggregator["rounds"]:
        (_, kind, rows), (_, kind_e, embs), (_, kind_a, agg) = r["calls"]
        assert (kind, kind_e, kind_a) == ("sketch", "embedding", "aggregate")
        assert (
            len(rows) == len(NAMES) * ROWS
            and len(embs) == len(NAMES)
            and len(agg) == layout.blocks_for(strategy.n_values)
        )
        plan = SketchPlan.draw(bytes.fromhex(r["summary"]["sketch_seed"]), layout.blocks_for(strategy.n_values), ROWS)
        for k in range(len(NAMES)):
            sketch = decode_sketch(rows[k * ROWS : (k + 1) * ROWS], plan, layout)
            assert sketch.shape == (ROWS, layout.slots_per_block)
            assert sketch_vector(sketch, CLIP, BITS).size == ROWS * layout.slots_per_block
        assert r["summary"]["sketch_rows"] == ROWS
        assert (
            r["summary"]["leakage"]
            == leakage(ROWS, layout, strategy.n_values)
            == pytest.approx(ROWS * layout.slots_per_block / strategy.n_values)
        )
        assert r["summary"]["leakage"] < 0.2


def test_the_encrypted_path_is_exact(aggregator):
    strategy = aggregator["strategy"]
    layout = strategy.layout
    n_blocks = layout.blocks_for(strategy.n_values)
    history, quarantine = TrustHistory(), Quarantine(max_flags=3)
    for rnd, r in enumerate(aggregator["rounds"], start=1):
        plan = SketchPlan.draw(bytes.fromhex(r["summary"]["sketch_seed"]), n_blocks, ROWS)
        rows = r["calls"][0][2]
        # the decrypted sketch of every client is the plaintext sketch of its quantized integers
        for k, p in enumerate(r["plain"]):
            np.testing.assert_array_equal(
                decode_sketch(rows[k * ROWS : (k + 1) * ROWS], plan, layout), sketch_quantized(p.q, plan, layout)
            )
        # the decrypted embeddings are the clients' quantized embeddings, no more values than they sent
        el = embedding_layout(layout.key_bits)
        for p, value in zip(r["plain"], r["calls"][1][2], strict=True):
            assert value == pack(p.q_emb, el)[0]
        # scores, flags and weights recomputed in the clear are the strategy's
        sketches = [sketch_vector(sketch_quantized(p.q, plan, layout), CLIP, BITS) for p in r["plain"]]
        embeddings = [dequantize_embedding(p.q_emb) for p in r["plain"]]
        result = score_sketches(
            "robust",
            NAMES,
            sketches,
            [float(x) for x in EXAMPLES],
            embeddings=embeddings,
            rejected={},
            history=history,
            quarantine=quarantine,
        )
        assert [rec["client"] for rec in r["records"]] == NAMES
        for got, want in zip(r["records"], result.records, strict=True):
            assert got.keys() == want.keys()
            for key, value in want.items():
                if isinstance(value, float):
                    assert got[key] == pytest.approx(value, rel=1e-12, abs=1e-15), (rnd, want["client"], key)
                else:
                    assert got[key] == value, (rnd, want["client"], key)
        assert r["summary"]["flagged"] == ["mallory"] and r["summary"]["kept"] == NAMES[:4]
        assert r["summary"]["flag_precision"] == 1.0 and r["summary"]["flag_recall"] == 1.0
        # the new global weights are the plaintext integer computation, bit for bit
        ints, scale = integer_coefficients(coefficients(r["records"]))
        assert 0 < sum(ints) <= WEIGHT_TOTAL and ints[NAMES.index("mallory")] == 0
        slot_sums = sum(a * p.q.astype(np.int64) for a, p in zip(ints, r["plain"], strict=True) if a)
        update = update_from_mean(dequantize_mean(slot_sums, sum(ints), CLIP, BITS), scale)
        expected = apply_update(r["global_weights"], update)
        for got, want in zip(r["new_weights"], expected, strict=True):
            assert got.dtype == want.dtype == np.float32
            np.testing.assert_array_equal(got, want)
        # ... within the quantization error (and the weights' integer rounding) of the float weighted sum
        coefs = coefficients(r["records"])
        float_update = sum(c * p.update for c, p in zip(coefs, r["plain"], strict=True))
        shares = np.array(ints) / sum(ints) - coefs / scale
        bound = scale * (
            quantization_error_bound(CLIP, BITS, stochastic=True)
            + sum(abs(s) * np.abs(p.update).max() for s, p in zip(shares, r["plain"], strict=True))
        )
        got = flatten(r["new_weights"]) - flatten(r["global_weights"])
        float32_slack = 2 * np.finfo(np.float32).eps * np.abs(flatten(r["new_weights"])).max()
        assert np.abs(got - float_update).max() <= bound + float32_slack
        assert np.abs(float_update).max() > 20 * bound  # the bound is tight enough to mean something

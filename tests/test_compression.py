"""--compress: q8 / q8+topk codes, error feedback, the wire format's checks, and the strategies' decoding."""

from __future__ import annotations

import struct
from types import SimpleNamespace

import numpy as np
import pytest
from flwr.common import Code, FitRes, Status, ndarrays_to_parameters

from fedad.common.compression import (
    HEADER,
    Compression,
    CompressionError,
    ErrorFeedback,
    decode_update,
    decompress_weights,
    encode_update,
    parse_compression,
)

Q8, TOPK = Compression(), Compression(topk=0.1)
SHAPES = [(12, 32), (32,), (32, 16), (16,), (16, 12), (12,)]  # a small dense autoencoder's layers


def test_parse_compression():
    assert parse_compression("none") is None and parse_compression(None) is None
    assert parse_compression("q8") == Q8
    assert parse_compression("Q8+TOPK:0.1") == TOPK and TOPK.name == "q8+topk:0.1"
    for bad in ("q4", "q8+topk:0", "q8+topk:1.5", "q8+topk:x", "topk:0.1"):
        with pytest.raises(ValueError):
            parse_compression(bad)


def test_q8_round_trip_error_is_half_a_step_per_block():
    rng = np.random.default_rng(0)
    v = rng.normal(0.0, 1e-3, 2164)
    v[5] = 0.05  # an outlier only widens its own block's step
    msg, sent = encode_update(v, Q8)
    decoded = decode_update(msg, v.size, Q8)
    assert np.array_equal(decoded, sent)
    for start in range(0, v.size, 1024):
        block = slice(start, start + 1024)
        step = np.abs(v[block]).max() / 127
        assert np.abs(decoded[block] - v[block]).max() <= step / 2 * (1 + 1e-6)
    assert len(msg) == HEADER.size + 4 * 3 + v.size  # 1 byte a value, 3 float32 scales
    assert 4 * v.size / len(msg) > 3.9


def test_topk_keeps_the_largest_coordinates_only():
    rng = np.random.default_rng(1)
    v = rng.normal(size=2000)
    msg, sent = encode_update(v, TOPK)
    decoded = decode_update(msg, v.size, TOPK)
    kept = np.flatnonzero(decoded)
    assert kept.size == 200
    assert np.abs(v[kept]).min() >= np.sort(np.abs(v))[-200]
    assert len(msg) == HEADER.size + 4 + 2000 // 8 + 200


def test_error_feedback_carries_what_was_not_sent():
    """After T rounds, what the server decoded plus the client's residual is exactly the sum of the true deltas."""
    rng = np.random.default_rng(2)
    glob = [rng.normal(size=s).astype(np.float32) for s in SHAPES]
    for scheme in (Q8, TOPK):
        fb = ErrorFeedback(scheme)
        total_true, total_sent = 0.0, 0.0
        for _ in range(6):
            new = [(g + rng.normal(0.0, 1e-3, g.shape)).astype(np.float32) for g in glob]
            msg = fb.compress(new, glob)
            dec = decompress_weights([msg], glob, scheme)
            total_true = total_true + np.concatenate(
                [(n.astype(np.float64) - g).ravel() for n, g in zip(new, glob, strict=True)]
            )
            total_sent = total_sent + np.concatenate(
                [(d.astype(np.float64) - g).ravel() for d, g in zip(dec, glob, strict=True)]
            )
        assert fb.residual is not None
        # float32 weights round the decoded delta; everything else is carried exactly
        assert np.abs(total_sent + fb.residual - total_true).max() < 1e-5
        assert np.linalg.norm(fb.residual) < np.linalg.norm(total_true)


def _header(msg: bytes) -> list:
    return list(HEADER.unpack_from(msg))


def _with_header(msg: bytes, **changes) -> bytes:
    fields = _header(msg)
    names = ["magic", "version", "kind", "reserved", "d", "k", "scales"]
    for key, value in changes.items():
        fields[names.index(key)] = value
    return HEADER.pack(*fields) + msg[HEADER.size :]


def test_malformed_messages_are_refused_with_a_reason():
    v = np.random.default_rng(3).normal(size=3000)
    q8, _ = encode_update(v, Q8)
    tk, _ = encode_update(v, TOPK)
    nan_scale = q8[: HEADER.size] + struct.pack(">f", float("nan")) + q8[HEADER.size + 4 :]
    bitmap_at = HEADER.size + 4
    padded = bytearray(encode_update(np.arange(1.0, 11.0), TOPK)[0])
    padded[bitmap_at + 1] |= 0x80  # bit 15 of a 10-value bitmap: padding
    popcount = bytearray(tk)
    popcount[bitmap_at] ^= 0xFF  # flips 8 coordinates: the count no longer matches k
    cases = {
        "truncated": (q8[:10], Q8, "truncated"),
        "magic": (b"XXXX" + q8[4:], Q8, "bad magic"),
        "scheme": (tk, Q8, "scheme"),
        "length d": (q8, Q8, "values, the model has", 2999),
        "k": (_with_header(q8, k=2999), Q8, "sends 2999 values"),
        "extra bytes": (q8 + b"\0", Q8, "its header implies"),
        "short": (q8[:-1], Q8, "its header implies"),
        "nan scale": (nan_scale, Q8, "scale"),
        "padding": (bytes(padded), Compression(topk=0.1), "padding bits"),
        "popcount": (bytes(popcount), TOPK, "bitmap selects"),
    }
    for name, (msg, scheme, reason, *dim) in cases.items():
        with pytest.raises(CompressionError, match=reason):
            decode_update(msg, dim[0] if dim else (10 if name == "padding" else 3000), scheme)
    with pytest.raises(CompressionError, match="one compressed update"):
        decompress_weights([np.zeros(3, np.float32)], [np.zeros(3, np.float32)], Q8)


def _result(name: str, arrays) -> tuple:
    from fedad.common.wire import encode_array

    embedding = encode_array(np.ones(4) + 0.01 * np.random.default_rng(len(name)).normal(size=4))
    metrics = {"name": name, "train_loss": 0.1, "embedding": embedding}  # robust's trust needs an embedding
    res = FitRes(Status(Code.OK, ""), ndarrays_to_parameters(arrays), 100, metrics)
    return SimpleNamespace(cid=f"cid-{name}"), res


@pytest.mark.parametrize("strategy_name", ["fedavg", "robust"])
def test_strategies_decode_compressed_answers_and_refuse_malformed_ones(strategy_name):
    from fedad.server.strategies.fedavg import FedAvg
    from fedad.server.strategies.robust import Robust

    cls = FedAvg if strategy_name == "fedavg" else Robust
    strategy = cls(fit_config=lambda r: {}, evaluate_config=lambda r: {})
    strategy.compress = Q8
    rng = np.random.default_rng(4)
    glob = [rng.normal(size=s).astype(np.float32) for s in SHAPES]
    strategy.global_weights = glob
    assert strategy.extra_fit_config["compress"] == "q8"
    direction = [rng.normal(0.0, 1e-2, s) for s in SHAPES]
    results, truths = [], []
    for k in range(6):
        new = [
            (g + d + rng.normal(0.0, 1e-3, g.shape)).astype(np.float32) for g, d in zip(glob, direction, strict=True)
        ]
        truths.append(new)
        results.append(_result(f"node_{k}", [ErrorFeedback(Q8).compress(new, glob)]))
    results.append(_result("bad_trunc", [np.frombuffer(b"FDQC\x01", np.uint8)]))
    results.append(_result("bad_plain", glob))  # uncompressed weights when the round asks for q8
    for _, res in results[:6]:
        strategy.check_result(res)  # decodes fine
    for _, res in results[6:]:
        with pytest.raises(Exception, match="compressed"):
            strategy.check_result(res)
    params, _ = strategy.aggregate_fit(1, results, [])
    assert set(strategy.last_rejections) == {"bad_trunc", "bad_plain"}
    assert all("compressed" in why for why in strategy.last_rejections.values())
    assert params is not None
    from flwr.common import parameters_to_ndarrays

    new_global = parameters_to_ndarrays(params)
    mean = [np.mean([t[i] for t in truths], axis=0) for i in range(len(SHAPES))]
    err = max(float(np.abs(a - b).max()) for a, b in zip(new_global, mean, strict=True))
    assert err < 1e-3  # well under the 1e-2 update, against the uncompressed mean


def test_the_server_refuses_bad_compress_options(tmp_path):
    from procs import run_module

    for extra, reason in (
        (["--compress", "q9"], "unknown --compress"),
        (["--compress", "q8", "--strategy", "paillier", "--public-key", "x"], "plaintext strategies"),
    ):
        p = run_module("fedad.server.main", "--out", str(tmp_path / "o"), *extra)
        assert p.returncode == 2, p.stderr
        assert reason in p.stderr and len(p.stderr.strip().splitlines()) == 1
        assert not (tmp_path / "o").exists()


@pytest.mark.integration
def test_a_q8_federation_over_grpc_sends_a_quarter_of_the_bytes(tmp_path):
    """Real processes: a fedad-server --compress q8 and 3 clients; updates arrive compressed and the model learns."""
    from procs import finish, free_port, rounds, start_client, start_server

    from fedad.common.synth import write_plant

    write_plant(tmp_path / "plant", nodes=3, records=30_000, seed=3, formats=("csv",))
    shards = sorted((tmp_path / "plant").glob("node_*.csv"))
    logs = tmp_path / "logs"
    logs.mkdir()
    address = f"127.0.0.1:{free_port()}"
    out = tmp_path / "run"
    server = start_server(address, out, "--rounds", "3", "--min-clients", "3", "--compress", "q8")
    clients = [start_client(address, shard, f"node{i}", logs) for i, shard in enumerate(shards)]
    codes = finish([server, *clients])
    assert codes == [0, 0, 0, 0], (tmp_path / "run-server.log").read_text()[-3000:]
    recs = rounds(out)
    assert [r["round"] for r in recs] == [1, 2, 3] and all(not r["rejected"] for r in recs)
    dim = 2164  # the default dense model: float32 weights would be 4 x dim bytes per client
    for r in recs:
        for c in r["per_client"]:
            assert c["bytes_up"] < 4 * dim / 3.5, c
    assert recs[-1]["loss"] < recs[0]["loss"]
    for log in logs.iterdir():
        text = log.read_text()
        assert "sending q8-compressed updates" in text and "Traceback" not in text
        assert "CPU thread(s) (auto: " in text  # --threads auto said what it chose, and why

"""Benchmark: naive per-value Paillier (phe.encrypt per float) vs fedad's packed encryption of one update.

For the default model's update (the dense autoencoder on 12 sensors when fedad.common.models is
importable, else 1,500 params) and a 50k-parameter update, with the same key and the same update:
seconds per client per round, bytes on the wire, and the float32 size. Naive runs on one core (phe
has no batching); when the full naive run would exceed --naive-limit-s it times --naive-sample values
and extrapolates (the output says so). Packed encryption is timed end to end (quantize, pack, every
obfuscator r^n, encode) on one core and on all cores with a warm process pool; on all cores with the
client's own private key (obfuscators from the factors p, q: same distribution, less work); and
"online" with obfuscators precomputed (what a client pays after training if it precomputes them while
training).

Then an encrypted federated round vs a plaintext one (``round_times``): a ``fedad demo``-like run, server
+ 10 client processes on 127.0.0.1 over gRPC, once with ``--strategy fedavg`` and once with ``--strategy
paillier`` (same shards, seed and key), per-round seconds from rounds.jsonl and whole-run wall time.
Target: an encrypted round <= 2x the plaintext round.

    python bench/paillier.py [--bits 2048] [--qbits 16] [--max-weight 1000] [--json FILE]
    python bench/paillier.py --rounds-only [--round-clients 10] [--round-rounds 4] [--json FILE]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time
from pathlib import Path

import numpy as np

from fedad.common.crypto.codec import decode_message, message_bytes
from fedad.common.crypto.decryptor import LocalDecryptor
from fedad.common.crypto.encryption import weighted_sum
from fedad.common.crypto.keys import generate_keypair, key_bytes
from fedad.common.crypto.obfuscation import (
    available_cores,
    factored_obfuscators_bytes,
    precompute_obfuscators,
    random_obfuscators_bytes,
    resolve_workers,
)
from fedad.common.crypto.update import decrypt_mean, encrypt_update, slot_layout

FALLBACK_PARAMS = 1500
LARGE_PARAMS = 50_000


def default_model_size() -> tuple[str, int]:
    """Parameter count of the dense autoencoder on 12 features, or a 1,500-parameter stand-in."""
    try:
        from fedad.common.models.registry import build_model

        model = build_model("dense", 12)
        return "dense AE (12 features)", int(sum(p.numel() for p in model.parameters()))
    except Exception as exc:  # models not built yet, or torch missing: the size is all we need
        print(f"note: using {FALLBACK_PARAMS} params ({type(exc).__name__}: {exc})", file=sys.stderr)
        return "stand-in model", FALLBACK_PARAMS


ROUND_NULLS = {"round_plain_s": None, "round_paillier_s": None}


def _federation(
    strategy: str, shards: list[Path], out: Path, keys: Path, rounds: int, epochs: int, seed: int, timeout: float
) -> dict:
    """One whole run like ``fedad demo``: fedad-server + one fedad-client process per shard on 127.0.0.1."""
    from _federation_run import free_address, run_federation

    secure = strategy == "paillier"
    server_args = [
        "--strategy",
        strategy,
        "--rounds",
        str(rounds),
        "--min-clients",
        str(len(shards)),
        "--local-epochs",
        str(epochs),
        "--seed",
        str(seed),
        "--wait-timeout",
        "600",
    ]
    if secure:
        server_args += ["--public-key", str(keys / "public.key")]  # the server never gets private.key
    client_args = ["--private-key", str(keys / "private.key")] if secure else []
    wall, recs, report = run_federation(
        strategy, out, free_address(), server_args, shards, lambda _: client_args, timeout
    )
    return {
        "rounds_s": [r["seconds"] for r in recs],
        "bytes_up": [r["bytes_up"] for r in recs],
        "bytes_down": [r["bytes_down"] for r in recs],
        "run_s": wall,
        "server_run_s": report["seconds"],
        "f1": report["metrics"].get("f1"),
    }


def client_crypto_costs(key_dir: Path, clients: int, repeats: int = 3) -> dict[str, float]:
    """What a Paillier client pays per call, in this process, for the default model: encrypt its weights,
    decrypt an aggregate (``SecureClient``, as fedad-client runs it). Medians of ``repeats``."""
    from fedad.client.secure import SecureClient
    from fedad.common.crypto.codec import decode_message, encode_message
    from fedad.common.crypto.encryption import weighted_sum
    from fedad.common.crypto.update import slot_layout
    from fedad.common.models.registry import build_model
    from fedad.common.training import get_weights

    secure = SecureClient(str(key_dir / "private.key"))
    weights = get_weights(build_model("dense", 12))
    config = {"bits": 16, "clip": 4.0, "max_sum": 1000 * clients}
    layout = slot_layout(secure.public_key, 16, config["max_sum"])
    message = secure.encrypt_weights(weights, config)
    encrypt_s = median_time(lambda: secure.encrypt_weights(weights, config), repeats)
    cts, _, _ = decode_message(secure.public_key, message.tobytes(), expected_layout=layout)
    aggregate = np.frombuffer(
        encode_message(
            secure.public_key, weighted_sum(secure.public_key, [cts], [1000]), layout, sum(w.size for w in weights)
        ),
        dtype=np.uint8,
    )
    decrypt_s = median_time(
        lambda: secure.decrypt_weights([aggregate], {**config, "total_weight": 1000}, [w.shape for w in weights]),
        repeats,
    )
    return {"client_encrypt_s": encrypt_s, "client_decrypt_s": decrypt_s, "client_blocks": len(cts)}


def round_times(public_key=None, private_key=None, args=None) -> dict:
    """An encrypted round vs a plaintext round, measured on whole federations over gRPC on 127.0.0.1.

    Runs a ``fedad demo``-like federation twice on the same shards and seed (server + ``--round-clients``
    client processes, ``--round-rounds`` rounds): once ``--strategy fedavg``, once ``--strategy paillier``
    with this key. A round's seconds are the server's ``seconds`` in rounds.jsonl (local training,
    encryption, aggregation and the validation pass that decrypts the new global model); round 1 starts
    from the plaintext initial model and warms the processes, so ``round_*_s`` is the median of rounds 2..R
    (of all rounds when R < 3). Also reports every round, the whole-run wall time and bytes per round.
    """
    if args is None or public_key is None or not getattr(args, "round_clients", 0):
        return dict(ROUND_NULLS)
    import tempfile

    from fedad.common.crypto.keys import save_keypair
    from fedad.common.synth import write_plant

    with tempfile.TemporaryDirectory(prefix="fedad-bench-rounds-") as tmp:
        tmp_path = Path(tmp)
        print(f"[rounds] plant of {args.round_records} records over {args.round_clients} nodes ...", file=sys.stderr)
        write_plant(tmp_path / "data", args.round_clients, args.round_records, args.round_seed, formats=("csv",))
        shards = sorted((tmp_path / "data").glob("node_*.csv"))
        save_keypair(tmp_path / "keys", public_key, private_key)
        runs = {}
        for strategy in ("fedavg", "paillier"):
            print(
                f"[rounds] {strategy}: server + {len(shards)} clients, {args.round_rounds} rounds ...", file=sys.stderr
            )
            runs[strategy] = _federation(
                strategy,
                shards,
                tmp_path / strategy,
                tmp_path / "keys",
                args.round_rounds,
                args.round_epochs,
                args.round_seed,
                args.round_timeout,
            )
        costs = client_crypto_costs(tmp_path / "keys", len(shards))
    steady = slice(1, None) if args.round_rounds >= 3 else slice(None)
    plain = statistics.median(runs["fedavg"]["rounds_s"][steady])
    enc = statistics.median(runs["paillier"]["rounds_s"][steady])
    return {
        "round_plain_s": plain,
        "round_paillier_s": enc,
        "round_ratio": enc / plain,
        "round_clients": len(shards),
        "round_rounds": args.round_rounds,
        "round_records": args.round_records,
        "round_local_epochs": args.round_epochs,
        "round_key_bits": public_key.n.bit_length(),
        "rounds_plain_s": runs["fedavg"]["rounds_s"],
        "rounds_paillier_s": runs["paillier"]["rounds_s"],
        "run_plain_s": runs["fedavg"]["run_s"],
        "run_paillier_s": runs["paillier"]["run_s"],
        "run_ratio": runs["paillier"]["run_s"] / runs["fedavg"]["run_s"],
        "bytes_up_plain_per_round": statistics.median(runs["fedavg"]["bytes_up"]),
        "bytes_up_paillier_per_round": statistics.median(runs["paillier"]["bytes_up"]),
        "bytes_down_plain_per_round": statistics.median(runs["fedavg"]["bytes_down"]),
        "bytes_down_paillier_per_round": statistics.median(runs["paillier"]["bytes_down"]),
        "f1_plain": runs["fedavg"]["f1"],
        "f1_paillier": runs["paillier"]["f1"],
        **costs,
    }


def print_round_table(r: dict) -> None:
    """Per-round seconds of both runs, the steady-state medians, whole runs, and the ratio."""
    if r.get("round_plain_s") is None:
        return
    print(
        f"\nfederated rounds: {r['round_clients']} client processes + server on 127.0.0.1 (gRPC), "
        f"{r['round_records']} records, {r['round_local_epochs']} local epochs, {r['round_key_bits']}-bit key"
    )
    rows = [("round", "fedavg s", "paillier s", "ratio")]
    for i, (a, b) in enumerate(zip(r["rounds_plain_s"], r["rounds_paillier_s"], strict=True), start=1):
        rows.append((str(i), f"{a:.2f}", f"{b:.2f}", f"{b / a:.2f}x"))
    label = "median of rounds 2.." + str(r["round_rounds"]) if r["round_rounds"] >= 3 else "median of all rounds"
    rows.append((label, f"{r['round_plain_s']:.2f}", f"{r['round_paillier_s']:.2f}", f"{r['round_ratio']:.2f}x"))
    rows.append(
        (
            "whole run (wall, incl. start-up)",
            f"{r['run_plain_s']:.1f}",
            f"{r['run_paillier_s']:.1f}",
            f"{r['run_ratio']:.2f}x",
        )
    )
    rows.append(
        (
            "bytes up per round",
            f"{r['bytes_up_plain_per_round']:,.0f}",
            f"{r['bytes_up_paillier_per_round']:,.0f}",
            f"{r['bytes_up_paillier_per_round'] / r['bytes_up_plain_per_round']:.2f}x",
        )
    )
    widths = [max(len(row[i]) for row in rows) for i in range(4)]
    for i, row in enumerate(rows):
        print("| " + " | ".join(c.ljust(w) for c, w in zip(row, widths, strict=True)) + " |")
        if i == 0:
            print("|" + "|".join("-" * (w + 2) for w in widths) + "|")
    print(
        f"client-side crypto per call (this process, default model, {r['client_blocks']} ciphertexts): encrypt "
        f"{r['client_encrypt_s']:.3f} s, decrypt {r['client_decrypt_s']:.3f} s; a round costs each client one "
        f"encryption and one decryption (each aggregate is decrypted once, then cached for the next fit)"
    )
    verdict = "meets" if r["round_ratio"] <= 2.0 else "MISSES"
    print(
        f"encrypted round / plaintext round: {r['round_ratio']:.2f}x ({verdict} the <= 2x target); "
        f"F1 fedavg {r['f1_plain']:.3f}, paillier {r['f1_paillier']:.3f}"
    )


def time_naive(public_key, update: np.ndarray, limit_s: float, sample: int) -> tuple[float, bool, int]:
    """Seconds to phe.encrypt every value one by one; (seconds, extrapolated?, values timed)."""
    values = [float(v) for v in update]
    sample = min(sample, len(values))
    start = time.perf_counter()
    for v in values[:sample]:
        public_key.encrypt(v)
    sample_s = time.perf_counter() - start
    estimate = sample_s / sample * len(values)
    if estimate > limit_s:
        return estimate, True, sample
    start = time.perf_counter()
    for v in values[sample:]:
        public_key.encrypt(v)
    return sample_s + time.perf_counter() - start, False, len(values)


def interleaved_op_costs(public_key, private_key, rounds: int = 40) -> dict[str, float]:
    """Per-operation costs timed in alternation, so a busy shared machine slows all three alike:
    one phe.encrypt of a float, one obfuscator r^n mod n^2, one factored obfuscator (seconds, medians)."""
    n, p, q = int(public_key.n), int(private_key.p), int(private_key.q)
    naive, plain, factored = [], [], []
    for i in range(rounds):
        for bucket, fn in (
            (naive, lambda i=i: public_key.encrypt(0.001 * i)),
            (plain, lambda: random_obfuscators_bytes(n, 1)),
            (factored, lambda: factored_obfuscators_bytes(p, q, 1)),
        ):
            start = time.perf_counter()
            fn()
            bucket.append(time.perf_counter() - start)
    return {
        "op_naive_encrypt_s": statistics.median(naive),
        "op_obfuscator_s": statistics.median(plain),
        "op_factored_obfuscator_s": statistics.median(factored),
    }


def median_time(fn, repeats: int) -> float:
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def bench_size(name: str, params: int, public_key, private_key, args) -> dict:
    rng = np.random.default_rng(params)
    update = rng.normal(0.0, args.clip / 4, params).astype(np.float32)
    layout = slot_layout(public_key, args.qbits, args.max_weight)
    workers = resolve_workers(args.workers)
    print(f"[{name}: {params} params] naive ...", file=sys.stderr)
    naive_s, extrapolated, timed = time_naive(public_key, update, args.naive_limit_s, args.naive_sample)

    def packed(w, obfuscators=None, key=None):
        return encrypt_update(
            public_key,
            [update],
            args.clip,
            args.qbits,
            layout,
            rng,
            workers=w,
            obfuscators=obfuscators,
            private_key=key,
        )

    print(f"[{name}] packed ...", file=sys.stderr)
    packed(workers)  # warm the process pool: a client keeps it across rounds
    packed_s = median_time(lambda: packed(workers), args.repeats)
    packed_1core_s = median_time(lambda: packed(1), max(1, args.repeats // 2))
    packed_factored_s = median_time(lambda: packed(workers, key=private_key), args.repeats)
    n_blocks = layout.blocks_for(params)
    online = []
    for _ in range(args.repeats):
        obfuscators = precompute_obfuscators(public_key, n_blocks, workers)
        start = time.perf_counter()
        message = packed(workers, obfuscators)
        online.append(time.perf_counter() - start)
    packed_online_s = statistics.median(online)
    assert len(message) == message_bytes(public_key, layout, params)

    # what the server pays to fold in one client, and what a client pays to decrypt the aggregate
    ciphertexts, _, _ = decode_message(public_key, message, expected_layout=layout)
    server_s = median_time(lambda: weighted_sum(public_key, [ciphertexts], [max(2, args.max_weight // 10)]), 3)
    decrypt_s = median_time(
        lambda: decrypt_mean(LocalDecryptor(private_key), message, 1, [(params,)], args.clip, args.qbits), 1
    )

    naive_bytes = params * 2 * key_bytes(public_key)
    return {
        "model": name,
        "params": params,
        "naive_s": naive_s,
        "naive_extrapolated": extrapolated,
        "naive_values_timed": timed,
        "packed_s": packed_s,
        "speedup": naive_s / packed_s,
        "packed_1core_s": packed_1core_s,
        "speedup_1core": naive_s / packed_1core_s,
        "packed_factored_s": packed_factored_s,
        "speedup_factored": naive_s / packed_factored_s,
        "packed_online_s": packed_online_s,
        "speedup_online": naive_s / packed_online_s,
        "server_sum_s_per_client": server_s,
        "client_decrypt_s": decrypt_s,
        "blocks": n_blocks,
        "naive_bytes": naive_bytes,
        "packed_bytes": len(message),
        "float32_bytes": 4 * params,
        "packed_vs_float32": len(message) / (4 * params),
        "naive_vs_float32": naive_bytes / (4 * params),
    }


MODES = [
    ("naive: phe.encrypt per value, 1 core", "naive_s", None, "naive_bytes"),
    ("packed, 1 core", "packed_1core_s", "speedup_1core", "packed_bytes"),
    ("packed, all cores", "packed_s", "speedup", "packed_bytes"),
    ("packed, all cores, client's own key (factored r^n)", "packed_factored_s", "speedup_factored", "packed_bytes"),
    ("packed, obfuscators precomputed during training", "packed_online_s", "speedup_online", "packed_bytes"),
]


def print_table(rows: list[dict], header: str) -> None:
    print(header)
    table = [("model", "params", "encryption", "s/client/round", "vs naive", "bytes on wire", "vs float32")]
    for r in rows:
        for label, t_key, x_key, b_key in MODES:
            seconds = f"{r[t_key]:.4f}" + ("*" if t_key == "naive_s" and r["naive_extrapolated"] else "")
            table.append(
                (
                    r["model"],
                    f"{r['params']:,}",
                    label,
                    seconds,
                    "1x" if x_key is None else f"{r[x_key]:.0f}x",
                    f"{r[b_key]:,}",
                    f"{r[b_key] / r['float32_bytes']:.2f}x",
                )
            )
        table.append((r["model"], f"{r['params']:,}", "(plain float32)", "-", "-", f"{r['float32_bytes']:,}", "1.00x"))
    widths = [max(len(row[i]) for row in table) for i in range(len(table[0]))]
    for i, row in enumerate(table):
        print("| " + " | ".join(c.ljust(w) for c, w in zip(row, widths, strict=True)) + " |")
        if i == 0:
            print("|" + "|".join("-" * (w + 2) for w in widths) + "|")
    for r in rows:
        if r["naive_extrapolated"]:
            print(
                f"* {r['model']}: naive time extrapolated from {r['naive_values_timed']} values "
                f"(the full run would take longer than the limit)"
            )
    for r in rows:
        print(
            f"{r['model']}: {r['blocks']} ciphertexts; the server folds in one client in "
            f"{r['server_sum_s_per_client'] * 1e3:.1f} ms; a client decrypts the aggregate in "
            f"{r['client_decrypt_s']:.3f} s"
        )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--bits", type=int, default=2048, choices=[1024, 2048, 3072], help="Paillier key size")
    parser.add_argument("--qbits", type=int, default=16, help="quantization bits per value")
    parser.add_argument(
        "--max-weight",
        type=int,
        default=1000,
        help="announced bound on the sum of integer client weights (sets the headroom bits)",
    )
    parser.add_argument("--clip", type=float, default=0.05, help="clip range R of update values")
    parser.add_argument("--workers", type=int, default=None, help="encryption processes (default: all cores)")
    parser.add_argument(
        "--naive-limit-s",
        type=float,
        default=60.0,
        help="extrapolate naive timing when the full run would take longer than this",
    )
    parser.add_argument("--naive-sample", type=int, default=200, help="values timed before deciding to extrapolate")
    parser.add_argument("--repeats", type=int, default=3, help="timed repetitions (median reported)")
    parser.add_argument("--json", metavar="FILE", help="also write the results as JSON")
    parser.add_argument(
        "--round-clients", type=int, default=10, help="client processes of the federated round timing (0: skip it)"
    )
    parser.add_argument("--round-rounds", type=int, default=4, help="rounds of each timed federation")
    parser.add_argument(
        "--round-records",
        type=int,
        default=200_000,
        help="records of the timed federation's plant (split over the clients; fedad demo's default)",
    )
    parser.add_argument("--round-epochs", type=int, default=2, help="local epochs per round of the timed federation")
    parser.add_argument("--round-seed", type=int, default=0, help="seed of the plant and of training")
    parser.add_argument("--round-timeout", type=float, default=1800.0, help="give up on a federation after this")
    parser.add_argument(
        "--rounds-only",
        action="store_true",
        help="time only the federated rounds (skip the per-update encryption benchmarks)",
    )
    args = parser.parse_args(argv)

    print(f"generating a {args.bits}-bit key ...", file=sys.stderr)
    public_key, private_key = generate_keypair(args.bits)
    layout = slot_layout(public_key, args.qbits, args.max_weight)
    cores = available_cores()
    result = {
        "key_bits": args.bits,
        "qbits": args.qbits,
        "max_weight": args.max_weight,
        "headroom_bits": layout.headroom_bits,
        "slot_bits": layout.slot_bits,
        "slots_per_block": layout.slots_per_block,
        "cores": cores,
        "workers": resolve_workers(args.workers),
    }
    if not args.rounds_only:
        name, params = default_model_size()
        rows = [
            bench_size(name, params, public_key, private_key, args),
            bench_size(f"{LARGE_PARAMS // 1000}k update", LARGE_PARAMS, public_key, private_key, args),
        ]
        load = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
        header = (
            f"Paillier {args.bits}-bit, {args.qbits}-bit values, weight bound {args.max_weight} -> "
            f"{layout.headroom_bits} headroom bits, {layout.slot_bits}-bit slots, {layout.slots_per_block} "
            f"per ciphertext; {resolve_workers(args.workers)} worker(s) on {cores} core(s); "
            f"load average at the end {load:.1f}"
        )
        print_table(rows, header)
        ops = interleaved_op_costs(public_key, private_key)
        slots = layout.slots_per_block
        ops["interleaved_1core_speedup"] = slots * ops["op_naive_encrypt_s"] / ops["op_obfuscator_s"]
        ops["interleaved_1core_factored_speedup"] = slots * ops["op_naive_encrypt_s"] / ops["op_factored_obfuscator_s"]
        print(
            f"load-robust check (operations timed in alternation, 1 core): phe.encrypt "
            f"{ops['op_naive_encrypt_s'] * 1e3:.1f} ms/value, r^n {ops['op_obfuscator_s'] * 1e3:.1f} ms/block, "
            f"factored r^n {ops['op_factored_obfuscator_s'] * 1e3:.1f} ms/block -> packing alone "
            f"{ops['interleaved_1core_speedup']:.0f}x, with factored r^n "
            f"{ops['interleaved_1core_factored_speedup']:.0f}x per core ({slots} values per ciphertext)"
        )
        result.update(
            {
                "load_average_end": load,
                # top-level fields: the default model's row
                **{
                    k: rows[0][k]
                    for k in ("naive_s", "packed_s", "speedup", "naive_bytes", "packed_bytes", "float32_bytes")
                },
                "models": rows,
                **ops,
            }
        )
    load_before = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
    rounds = round_times(public_key, private_key, args)
    if rounds.get("round_plain_s") is not None:
        rounds["round_load_average"] = [load_before, os.getloadavg()[0] if hasattr(os, "getloadavg") else None]
    print_round_table(rounds)
    if rounds.get("round_plain_s") is not None:
        print(
            f"load average before/after the federations: {rounds['round_load_average'][0]:.1f} / "
            f"{rounds['round_load_average'][1]:.1f} on {cores} core(s)"
        )
    result.update(rounds)

    if args.json:
        Path(args.json).write_text(json.dumps(result, indent=2) + "\n")
        print(f"wrote {args.json}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""Benchmark: the aggregator at plant scale -- N = 10, 100, 1000 clients per round, server side only.

Drives the server's real code for one training round: every answer goes through the validation layer the
server runs (`check.fit_result`, `check.tensor_bytes`, `ReplayGuard`, `strategy.check_result`), then the
strategy's `aggregate_fit` (fedavg: `server/strategies/fedavg.py` + `server/aggregation.py`; robust:
`server/strategies/robust_base.py` + `server/defence/*`; paillier: `server/strategies/paillier.py` +
`common/crypto`; secure-robust: `server/strategies/secure_robust.py` with the real `BlindDecryptor` and the
real `KeyHolder` policy and decryption, answered in this process without gRPC: its decryption seconds are
part of server_s and also shown apart).

The N clients are IN-PROCESS SENDERS, not processes: each message is a real encoded answer of the default
dense model (float32 tensors via Flower's `ndarrays_to_parameters`, embeddings via `wire.encode_array`;
Paillier: `encrypt_update` with a 2048-bit key, exactly as `SecureClient` sends it; secure-robust: a real
`PublicKeyClient`'s update and embedding ciphertexts). The update VALUES are synthetic (a shared direction
plus per-client noise, 5 % sign-flipped attackers; nothing is trained): the server's cost does not depend
on them. Paillier messages above --distinct-ciphertexts clients repeat the distinct ones (encryption is the
clients' cost, minutes for 1000; the server's products cost the same for any ciphertext). Each row runs in
its own process; peak_mb is that process's peak RSS (messages included: an upper bound on the server's),
round_peak_mb the peak RSS during the round alone, server_mb what the round added to the messages' RSS.

    python bench/scale.py [--clients 10 100 1000] [--strategies fedavg robust paillier secure-robust]
                          [--secure-robust-max 100] [--json scale.json]

Targets (issue 17): 1000 clients fedavg and robust < 2 s/round, paillier < 10 s, peak < 2 GB;
100 clients secure-robust < 10 s. The growth law is the slope of log(server_s) over log(N).
"""

from __future__ import annotations

import argparse
import json
import math
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from types import SimpleNamespace

import numpy as np

STRATEGIES = ("fedavg", "robust", "paillier", "secure-robust")
TARGET_S = {"fedavg": (1000, 2.0), "robust": (1000, 2.0), "paillier": (1000, 10.0), "secure-robust": (100, 10.0)}
TARGET_PEAK_MB = 2048.0
ATTACKER_SHARE = 0.05
EXAMPLES = 16_000  # training rows of one default demo client (200k records / 10, minus validation and test)


class Manager:
    """Flower's client manager as far as ``configure_fit`` uses it."""

    def __init__(self, proxies):
        self.proxies = {p.cid: p for p in proxies}

    def all(self):
        return dict(self.proxies)


def rss_mb() -> float:
    """This process's current resident set (MB)."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def peak_mb() -> float:
    """This process's peak resident set so far (MB)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def reset_window_peak() -> None:
    """Restart the kernel's peak-RSS mark (VmHWM) so ``window_peak_mb`` covers only what follows."""
    try:
        Path("/proc/self/clear_refs").write_text("5")
    except OSError:
        pass


def window_peak_mb() -> float:
    """Peak resident set since ``reset_window_peak`` (MB; the whole-process peak if it could not be reset)."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return peak_mb()


def synthetic_updates(n: int, dim: int, seed: int) -> tuple[np.ndarray, list[str]]:
    """(n, dim) float64 updates: shared direction + noise; the last 5 % sign-flipped. Names node_0001..."""
    rng = np.random.default_rng(seed)
    direction = rng.normal(0.0, 2e-3, dim)
    updates = direction + rng.normal(0.0, 2e-3, (n, dim))
    attackers = max(1, int(round(ATTACKER_SHARE * n))) if n >= 10 else 0
    if attackers:
        updates[n - attackers :] *= -1.0
    return updates, [f"node_{i + 1:04d}" for i in range(n)]


def as_weights(global_weights: list[np.ndarray], update: np.ndarray) -> list[np.ndarray]:
    out, start = [], 0
    for g in global_weights:
        out.append((g + update[start : start + g.size].reshape(g.shape)).astype(g.dtype))
        start += g.size
    return out


def run_row(strategy_name: str, n: int, model_file: str, key_dir: str, distinct: int, seed: int) -> dict:
    """One (strategy, N) row, in this process: build messages, then time the server's round."""
    from flwr.common import FitRes, Status, ndarrays_to_parameters
    from flwr.common.typing import Code

    from fedad.common.wire import encode_array
    from fedad.server import validation as check
    from fedad.server.strategies.paillier import ciphertext_parameters

    with np.load(model_file) as z:
        global_weights = [z[f"w{i}"] for i in range(len(z.files) - 1)]
        latent = int(z["latent"])
    dim = int(sum(w.size for w in global_weights))
    updates, names = synthetic_updates(n, dim, seed)
    emb_rng = np.random.default_rng(seed + 1)
    base_emb = emb_rng.normal(size=latent)
    proxies = [SimpleNamespace(cid=f"cid-{name}") for name in names]
    manager = Manager(proxies)
    fit_config, eval_config = (lambda r: {}), (lambda r: {})
    init = ndarrays_to_parameters(global_weights)
    extra: dict = {}
    strategy: object
    if strategy_name == "fedavg":
        from fedad.server.strategies.fedavg import FedAvg

        strategy = FedAvg(fit_config=fit_config, evaluate_config=eval_config)
    elif strategy_name == "robust":
        from fedad.server.strategies.robust import Robust

        strategy = Robust(fit_config=fit_config, evaluate_config=eval_config)
    elif strategy_name == "paillier":
        from fedad.common.crypto.keys import load_public_key
        from fedad.server.strategies.paillier import PaillierFedAvg

        strategy = PaillierFedAvg(
            public_key=load_public_key(Path(key_dir) / "public.key"), fit_config=fit_config, evaluate_config=eval_config
        )
        strategy.n_values = dim
    else:
        from fedad.common.crypto.keys import load_private_key, load_public_key
        from fedad.server.keyholder import Budget, KeyHolder
        from fedad.server.keyholder_client import BlindDecryptor, InProcessKeyHolder
        from fedad.server.strategies.secure_robust import SecureRobust

        pub = load_public_key(Path(key_dir) / "public.key")
        holder = KeyHolder(load_private_key(Path(key_dir) / "private.key"), Budget(max_clients=max(n, 10)))
        strategy = SecureRobust(
            public_key=pub,
            decryptor=BlindDecryptor(pub, InProcessKeyHolder(holder)),
            fit_config=fit_config,
            evaluate_config=eval_config,
        )
        strategy.n_values = dim
    instructions = strategy.configure_fit(1, init, manager)  # type: ignore[attr-defined]
    assert len(instructions) == n
    config = {**instructions[0][1].config, **getattr(strategy, "secure_config", dict)()}

    t_gen = time.perf_counter()
    results = []
    if strategy_name in ("fedavg", "robust"):
        for k, name in enumerate(names):
            metrics = {"name": name, "train_loss": 0.1, "seconds": 1.0}
            if strategy_name == "robust":
                metrics["embedding"] = encode_array(base_emb + emb_rng.normal(0.0, 0.3, latent))
            params = ndarrays_to_parameters(as_weights(global_weights, updates[k]))
            results.append((proxies[k], FitRes(Status(Code.OK, ""), params, EXAMPLES, metrics)))
    elif strategy_name == "paillier":
        from fedad.common.crypto.keys import load_private_key
        from fedad.common.crypto.update import encrypt_update, slot_layout

        priv = load_private_key(Path(key_dir) / "private.key")
        layout = slot_layout(priv.public_key, int(config["bits"]), int(config["max_sum"]))
        messages = [
            encrypt_update(
                priv.public_key,
                as_weights(global_weights, updates[k]),
                float(config["clip"]),
                int(config["bits"]),
                layout,
                private_key=priv,
            )
            for k in range(min(n, distinct))
        ]
        extra["distinct_messages"] = len(messages)
        extra["blocks_per_client"] = layout.blocks_for(dim)
        for k, name in enumerate(names):
            params = ciphertext_parameters(messages[k % len(messages)])
            results.append((proxies[k], FitRes(Status(Code.OK, ""), params, EXAMPLES, {"name": name})))
    else:
        from fedad.client.secure import PublicKeyClient

        sender = PublicKeyClient(str(Path(key_dir) / "public.key"))
        sender.check(config)
        for k, name in enumerate(names):
            weights = as_weights(global_weights, updates[k])
            message = sender.encrypt_update(weights, global_weights, config)
            emb = sender.encrypt_embedding(base_emb + emb_rng.normal(0.0, 0.3, latent))
            metrics = {"name": name, "train_loss": 0.1, "embedding_enc": emb}
            params = ciphertext_parameters(message.tobytes())
            results.append((proxies[k], FitRes(Status(Code.OK, ""), params, EXAMPLES, metrics)))
        extra["distinct_messages"] = n
        extra["blocks_per_client"] = strategy.layout.blocks_for(dim)  # type: ignore[attr-defined]
    gen_s = time.perf_counter() - t_gen
    message_bytes = sum(len(t) for _, r in results for t in r.parameters.tensors)

    # the round the server runs: validation layer, then the strategy (FedadServer._screen_fit + aggregate_fit)
    rss_before = rss_mb()
    reset_window_peak()
    replay = check.ReplayGuard()
    t0 = time.perf_counter()
    good = []
    for proxy, res in results:
        check.fit_result(res.num_examples, res.metrics, declared=EXAMPLES)
        check.tensor_bytes(res.parameters.tensors, 64 << 20)
        why = replay.check(proxy.cid, 1, res.parameters.tensors)
        if why and strategy_name != "paillier":  # repeated Paillier messages are the bench's, not replays
            raise RuntimeError(why)
        strategy.check_result(res)  # type: ignore[attr-defined]
        good.append((proxy, res))
    t1 = time.perf_counter()
    params, _ = strategy.aggregate_fit(1, good, [])  # type: ignore[attr-defined]
    t2 = time.perf_counter()
    assert params is not None, f"{strategy_name}: no aggregate"
    row = {
        "strategy": strategy_name,
        "clients": n,
        "server_s": t2 - t0,
        "validate_s": t1 - t0,
        "aggregate_s": t2 - t1,
        "peak_mb": peak_mb(),
        "round_peak_mb": window_peak_mb(),
        "server_mb": max(0.0, window_peak_mb() - rss_before),
        "message_mb": message_bytes / 2**20,
        "dim": dim,
        "senders": "in-process",
        "build_messages_s": gen_s,
        **extra,
    }
    summary = getattr(strategy, "last_summary", {})
    if "flagged" in summary:
        attackers = {names[i] for i in range(n - max(1, int(round(ATTACKER_SHARE * n))), n)} if n >= 10 else set()
        flagged = set(summary["flagged"])
        row["flagged"] = len(flagged)
        row["attackers_flagged"] = f"{len(flagged & attackers)}/{len(attackers)}"
    if "secure_seconds" in summary:
        row["keyholder_s"] = summary["secure_seconds"]["blind_decrypt"]
    return row


def growth(rows: list[dict], strategy: str) -> str:
    """The fitted exponent k of server_s ~ N^k over this strategy's rows (two or more sizes)."""
    pts = [(r["clients"], r["server_s"]) for r in rows if r["strategy"] == strategy and r.get("server_s")]
    if len(pts) < 2:
        return "-"
    x = np.log([p[0] for p in pts])
    y = np.log([p[1] for p in pts])
    k = float(np.polyfit(x, y, 1)[0])
    return f"N^{k:.2f}"


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--clients", type=int, nargs="+", default=[10, 100, 1000], help="clients per round")
    ap.add_argument("--strategies", nargs="+", default=list(STRATEGIES), choices=STRATEGIES)
    ap.add_argument("--secure-robust-max", type=int, default=100, help="largest N run for secure-robust")
    ap.add_argument("--distinct-ciphertexts", type=int, default=20, help="paillier: distinct encrypted messages")
    ap.add_argument("--key-bits", type=int, default=2048, help="Paillier key size")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--json", default=None, metavar="FILE", help="write {'rows': [...]} here")
    ap.add_argument("--row", nargs=2, metavar=("STRATEGY", "N"), help=argparse.SUPPRESS)
    ap.add_argument("--model-file", help=argparse.SUPPRESS)
    ap.add_argument("--key-dir", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.row:
        strategy, n = args.row[0], int(args.row[1])
        row = run_row(strategy, n, args.model_file, args.key_dir, args.distinct_ciphertexts, args.seed)
        print(json.dumps(row))
        return 0

    import torch

    from fedad.common.crypto.keys import generate_keypair, save_keypair
    from fedad.common.models.registry import build_model

    torch.manual_seed(args.seed)
    model = build_model("dense", 12)
    weights = [p.detach().numpy().astype(np.float32) for p in model.state_dict().values()]
    load = os.getloadavg()
    print(
        f"# aggregator scale, dense model ({sum(w.size for w in weights)} parameters), {os.cpu_count()} cores, "
        f"load average {load[0]:.1f}; senders are in-process (real encoded messages, synthetic values)",
        file=sys.stderr,
        flush=True,
    )
    rows: list[dict] = []
    with tempfile.TemporaryDirectory() as tmp:
        model_file = str(Path(tmp) / "model.npz")
        np.savez(model_file, **{f"w{i}": w for i, w in enumerate(weights)}, latent=np.int64(model.latent_dim))
        key_dir = Path(tmp) / "keys"
        if {"paillier", "secure-robust"} & set(args.strategies):
            save_keypair(key_dir, *generate_keypair(args.key_bits))
        for strategy in args.strategies:
            for n in args.clients:
                if strategy == "secure-robust" and n > args.secure_robust_max:
                    continue
                cmd = [sys.executable, __file__, "--row", strategy, str(n), "--model-file", model_file]
                cmd += ["--key-dir", str(key_dir), "--distinct-ciphertexts", str(args.distinct_ciphertexts)]
                cmd += ["--seed", str(args.seed)]
                p = subprocess.run(cmd, capture_output=True, text=True)
                if p.returncode != 0:
                    print(p.stderr, file=sys.stderr)
                    raise SystemExit(f"row {strategy} N={n} failed")
                row = json.loads(p.stdout.strip().splitlines()[-1])
                rows.append(row)
                print(
                    f"  {strategy:>13} N={n:>5}: {row['server_s']:.3f} s, peak {row['peak_mb']:.0f} MB",
                    file=sys.stderr,
                    flush=True,
                )
    print(f"\nAggregator, one round, server side (load average at start {load[0]:.1f}, {os.cpu_count()} cores)\n")
    print(
        "| strategy | clients | server s | validate s | aggregate s | key holder s | peak MB | round added MB | "
        "message MB | flagged (attackers) | target | ok |"
    )
    print("|---|---:|---:|---:|---:|---:|---:|---:|---:|---|---|---|")
    for r in rows:
        tn, ts = TARGET_S[r["strategy"]]
        target = f"< {ts:g} s at N={tn}" if r["clients"] == tn else ""
        ok = "" if not target else ("yes" if r["server_s"] < ts and r["peak_mb"] < TARGET_PEAK_MB else "NO")
        r["target_s"] = ts if target else None
        r["meets_target"] = None if not target else ok == "yes"
        kh = f"{r['keyholder_s']:.2f}" if "keyholder_s" in r else "-"
        fl = f"{r['flagged']} ({r['attackers_flagged']})" if "flagged" in r else "-"
        print(
            f"| {r['strategy']} | {r['clients']} | {r['server_s']:.3f} | {r['validate_s']:.3f} | "
            f"{r['aggregate_s']:.3f} | {kh} | {r['peak_mb']:.0f} | {r['server_mb']:.0f} | {r['message_mb']:.1f} | "
            f"{fl} | {target} | {ok} |"
        )
    print("\nGrowth law (fit of server_s ~ N^k):", ", ".join(f"{s} {growth(rows, s)}" for s in args.strategies))
    for s in args.strategies:
        pts = sorted((r["clients"], r["server_s"]) for r in rows if r["strategy"] == s)
        if len(pts) >= 2:
            (n0, s0), (n1, s1) = pts[-2], pts[-1]
            k = math.log(s1 / s0) / math.log(n1 / n0) if s0 > 0 and s1 > 0 else float("nan")
            print(f"  {s}: last step N={n0}->{n1}: x{s1 / s0:.1f} time (N^{k:.2f})")
    if args.json:
        Path(args.json).write_text(
            json.dumps({"rows": rows, "growth": {s: growth(rows, s) for s in args.strategies}}, indent=1)
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""Training and scoring throughput of every fedad autoencoder, on CPU (and CUDA when present).

Scoring is reported in records per second (a sequence model scores one window per record). For the dense
autoencoder two scoring numbers are measured: model only (``reconstruction_errors`` on preprocessed float32
rows) and end to end (``AutoencoderDetector.decision_function`` on raw float64 records, preprocessing
included). The ratio column compares scoring with the target of 1M records/s on one CPU core.

    python bench/throughput.py                    # 1 CPU thread, all models, CUDA too when available
    python bench/throughput.py --json bench.json --threads 1 --models dense
"""

from __future__ import annotations

import argparse
import json
import platform
import sys
import time
from collections.abc import Callable

import numpy as np
import torch

from fedad.common.detector import AutoencoderDetector
from fedad.common.models.registry import MODEL_NAMES, build_model, default_window
from fedad.common.preprocessing import sliding_windows
from fedad.common.training import reconstruction_errors, train_model

TARGET_ROWS_PER_S = 1_000_000
N_FEATURES = 12  # the synthetic plant's sensors


def best_seconds(fn: Callable[[], object], repeats: int) -> float:
    """Fastest of ``repeats`` timed calls, after one warm-up call."""
    fn()
    times = []
    for _ in range(repeats):
        if torch.cuda.is_available():
            torch.cuda.synchronize()
        t0 = time.perf_counter()
        fn()
        if torch.cuda.is_available():
            torch.cuda.synchronize()
        times.append(time.perf_counter() - t0)
    return min(times)


def records(n: int, seed: int = 0) -> np.ndarray:
    """Raw float64 records on a low-dimensional manifold (content does not change the speed)."""
    rng = np.random.default_rng(seed)
    return rng.normal(size=(n, 3)) @ rng.normal(size=(3, N_FEATURES)) + 0.05 * rng.normal(size=(n, N_FEATURES))


def samples(name: str, Z: np.ndarray) -> np.ndarray:
    window = default_window(name)
    return Z if window == 1 else np.ascontiguousarray(sliding_windows(Z, window))


def bench_model(name: str, device: str, args: argparse.Namespace) -> dict:
    """Training samples/s and model-only scoring records/s of one model on one device."""
    torch.manual_seed(0)
    model = build_model(name, N_FEATURES)
    sequence = model.sequence
    n_train = args.train_rows // (4 if sequence else 1)
    n_score = args.score_rows // (20 if sequence and device == "cpu" else 1)
    Z = records(max(n_train, n_score)).astype(np.float32)
    Z = (Z - Z.mean(0)) / Z.std(0)
    train = samples(name, Z[:n_train])
    seconds = best_seconds(
        lambda: train_model(
            model, train, None, epochs=1, batch_size=args.train_batch, patience=None, device=device, seed=0
        ),
        args.repeats,
    )
    train_rate = len(train) / seconds
    score_in = Z[:n_score] if not sequence else sliding_windows(Z[: n_score + model.window - 1], model.window)
    seconds = best_seconds(
        lambda: reconstruction_errors(model, score_in, device, batch_size=args.score_batch), args.repeats
    )
    return {
        "model": name,
        "device": device,
        "what": "model only",
        "params": sum(p.numel() for p in model.parameters()),
        "train_samples_per_s": train_rate,
        "score_rows_per_s": n_score / seconds,
        "score_rows": n_score,
    }


def bench_end_to_end(device: str, args: argparse.Namespace) -> dict:
    """Dense detector: raw float64 records -> preprocessing -> scores, the path `fedad score` takes."""
    X = records(args.score_rows, seed=1)
    det = AutoencoderDetector("dense", epochs=1, device=device, seed=0).fit(X[:20000])
    seconds = best_seconds(lambda: det.decision_function(X), args.repeats)
    pre_seconds = best_seconds(lambda: det.preprocessor_.transform(X), args.repeats)
    return {
        "model": "dense",
        "device": device,
        "what": "end to end",
        "params": None,
        "train_samples_per_s": None,
        "score_rows_per_s": len(X) / seconds,
        "score_rows": len(X),
        "preprocess_rows_per_s": len(X) / pre_seconds,
    }


def table(rows: list[dict]) -> str:
    head = (
        f"{'model':<6} {'device':<6} {'scoring':<11} {'params':>7} {'train samples/s':>16} "
        f"{'score rows/s':>13} {'vs 1M/s':>8}"
    )
    lines = [head, "-" * len(head)]
    for r in rows:
        train = "" if r["train_samples_per_s"] is None else f"{r['train_samples_per_s']:,.0f}"
        params = "" if r["params"] is None else f"{r['params']:,}"
        lines.append(
            f"{r['model']:<6} {r['device']:<6} {r['what']:<11} {params:>7} {train:>16} "
            f"{r['score_rows_per_s']:>13,.0f} {r['score_rows_per_s'] / TARGET_ROWS_PER_S:>7.2f}x"
        )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--models", nargs="+", default=list(MODEL_NAMES), choices=MODEL_NAMES, help="models to run")
    parser.add_argument("--threads", type=int, default=1, help="torch CPU threads (the target is for one core)")
    parser.add_argument("--devices", nargs="+", default=None, help="devices (default: cpu, and cuda when present)")
    parser.add_argument("--train-rows", type=int, default=100_000, help="training samples per epoch (seq models: /4)")
    parser.add_argument("--score-rows", type=int, default=2_000_000, help="records scored (seq models on CPU: /20)")
    parser.add_argument("--train-batch", type=int, default=256, help="training batch size")
    parser.add_argument(
        "--score-batch",
        type=int,
        default=None,
        help="scoring batch size (default: reconstruction_errors' own, 8192 on CPU, 65536 on CUDA)",
    )
    parser.add_argument("--repeats", type=int, default=3, help="timed repetitions (the fastest is reported)")
    parser.add_argument("--json", metavar="FILE", default=None, help="also write the results as JSON")
    args = parser.parse_args(argv)

    torch.set_num_threads(args.threads)
    devices = args.devices or (["cpu", "cuda"] if torch.cuda.is_available() else ["cpu"])
    rows = []
    for device in devices:
        for name in args.models:
            rows.append(bench_model(name, device, args))
            print(f"{name} on {device}: done", file=sys.stderr)
        if "dense" in args.models:
            rows.append(bench_end_to_end(device, args))
    print(
        f"torch {torch.__version__}, {args.threads} CPU thread(s), {platform.processor() or platform.machine()}"
        + (f", {torch.cuda.get_device_name()}" if "cuda" in devices else "")
    )
    print(table(rows))
    for r in rows:
        if r.get("preprocess_rows_per_s"):
            print(f"{r['device']}: preprocessing alone {r['preprocess_rows_per_s']:,.0f} rows/s")
    if args.json:
        meta = {
            "torch": torch.__version__,
            "threads": args.threads,
            "target_rows_per_s": TARGET_ROWS_PER_S,
            "cuda": torch.cuda.get_device_name() if torch.cuda.is_available() else None,
        }
        with open(args.json, "w") as f:
            json.dump({"meta": meta, "results": rows}, f, indent=2)
    return 0


if __name__ == "__main__":
    sys.exit(main())

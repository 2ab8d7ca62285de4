"""Benchmark: training and scoring throughput on CPU and CUDA in the same run (the `--device auto` path).

For each model: training samples/s (one epoch of `train_model`) and model-only scoring records/s
(`reconstruction_errors`), on CPU and, when torch sees a CUDA device, on `cuda` -- with the CUDA / CPU
ratio; plus the dense detector end to end (`AutoencoderDetector.decision_function` on raw records,
preprocessing included), the path `fedad score --device auto` takes. The measuring code is
bench/throughput.py's. On a machine without CUDA it prints the CPU rows and says CUDA is absent (the JSON
says so too: "cuda_available": false), so the CUDA path is recorded as not run rather than silently skipped.

    python bench/gpu.py [--models dense lstm] [--threads 1] [--json gpu.json]
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path

import throughput as T
import torch

from fedad.common.models.registry import MODEL_NAMES
from fedad.common.training import resolve_device


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--models", nargs="+", default=["dense", "lstm", "cnn"], choices=MODEL_NAMES)
    ap.add_argument("--threads", type=int, default=1, help="torch CPU threads")
    ap.add_argument("--train-rows", type=int, default=200_000)
    ap.add_argument("--score-rows", type=int, default=1_000_000)
    ap.add_argument("--train-batch", type=int, default=256)
    ap.add_argument("--score-batch", type=int, default=65_536)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--json", default=None, metavar="FILE")
    args = ap.parse_args(argv)
    torch.set_num_threads(args.threads)
    cuda = torch.cuda.is_available()
    devices = ["cpu", "cuda"] if cuda else ["cpu"]
    auto = str(resolve_device("auto"))
    name = torch.cuda.get_device_name(0) if cuda else None
    print(
        f"# torch {torch.__version__} (CUDA build {torch.version.cuda}), --device auto -> {auto}; "
        f"{args.threads} CPU thread(s), load average {os.getloadavg()[0]:.1f}",
        file=sys.stderr,
    )
    rows = []
    for model in args.models:
        for device in devices:
            print(f"  {model} on {device} ...", file=sys.stderr, flush=True)
            rows.append(T.bench_model(model, device, args))
    for device in devices:
        rows.append(T.bench_end_to_end(device, args))
    cpu = {(r["model"], r["what"]): r for r in rows if r["device"] == "cpu"}
    print(
        "\n| model | scoring | device | train samples/s | score records/s | train vs CPU | score vs CPU |\n"
        "|---|---|---|---:|---:|---:|---:|"
    )
    for r in rows:
        base = cpu[(r["model"], r["what"])]
        tr = r["train_samples_per_s"]
        train_ratio = None if tr is None else tr / base["train_samples_per_s"]
        score_ratio = r["score_rows_per_s"] / base["score_rows_per_s"]
        r.update(train_vs_cpu=train_ratio, score_vs_cpu=score_ratio)
        print(
            f"| {r['model']} | {r['what']} | {r['device']} | {'-' if tr is None else f'{tr:,.0f}'} | "
            f"{r['score_rows_per_s']:,.0f} | {'-' if train_ratio is None else f'{train_ratio:.2f}x'} | "
            f"{score_ratio:.2f}x |"
        )
    if not cuda:
        print(
            "\nCUDA: absent (torch.cuda.is_available() is False on this machine): only the CPU rows ran; "
            "the CUDA path has NOT been exercised here."
        )
    else:
        print(f"\nCUDA: {name}; --device auto resolves to {auto}.")
    if args.json:
        Path(args.json).write_text(
            json.dumps({"cuda_available": cuda, "cuda_device": name, "auto_device": auto, "rows": rows}, indent=1)
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())

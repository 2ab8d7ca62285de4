"""Benchmark: local training time per step, the product's `train_model` against what it did before.

Every column runs the product's `train_model` on the same rows, same seed, one torch thread (what each
fedad-client uses on a shared host):
- default: the optimizer swapped for `torch.optim.Adam` with its default implementation (on CPU the
  single-tensor loop; foreach is its default on CUDA only) and gradients from autograd, as `train_model` built
  it before 2026-12-05;
- autograd: the product's fused Adam, gradients from autograd (the dense models' own backward pass,
  `DenseAutoencoder.loss_and_grads`, switched off), as before 2026-12-06;
- product: `train_model` as it is.
Each is timed `--repeats` times after one untimed warm-up run (the first torch.optim optimizer of a process
imports torch._dynamo: about 0.75 s); the table gives the median ms per step and the ratios.

    python bench/train_steps.py [--models dense lstm cnn] [--rows 64000] [--json train-steps.json]
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from pathlib import Path

import numpy as np
import torch

from fedad.common import training
from fedad.common.models.dense import DenseAutoencoder
from fedad.common.models.registry import MODEL_NAMES, build_model, default_window
from fedad.common.preprocessing import sliding_windows


def _default_adam(model: torch.nn.Module, lr: float, weight_decay: float, device: torch.device) -> torch.optim.Adam:
    return torch.optim.Adam(model.parameters(), lr=lr, weight_decay=weight_decay)


def time_training(name: str, X: np.ndarray, epochs: int, batch: int, repeats: int, variant: str) -> list[float]:
    """Seconds of ``repeats`` runs of ``train_model`` (``epochs`` epochs, no validation) as ``variant``."""
    product, manual = training.adam, DenseAutoencoder.has_manual_gradients
    if variant == "default":
        training.adam = _default_adam
    if variant in ("default", "autograd"):
        DenseAutoencoder.has_manual_gradients = lambda self: False  # type: ignore[method-assign]
    try:
        times = []
        for r in range(repeats + 1):  # the first run warms up (not kept)
            torch.manual_seed(r)
            model = build_model(name, X.shape[-1])
            samples = sliding_windows(X, model.window) if model.sequence else X
            t = time.perf_counter()
            training.train_model(model, samples, None, epochs=epochs, batch_size=batch, device="cpu", seed=r)
            if r:
                times.append(time.perf_counter() - t)
        return times
    finally:
        training.adam, DenseAutoencoder.has_manual_gradients = product, manual  # type: ignore[method-assign]


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--models", nargs="+", default=["dense", "lstm", "cnn"], choices=MODEL_NAMES)
    ap.add_argument("--rows", type=int, default=64_000, help="training rows (a 1M-record plant's node has ~61k)")
    ap.add_argument("--epochs", type=int, default=2, help="epochs per timed run (a federated round's local epochs)")
    ap.add_argument("--batch", type=int, default=256)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--json", default=None, metavar="FILE")
    args = ap.parse_args(argv)
    torch.set_num_threads(1)
    X = np.random.default_rng(0).normal(size=(args.rows, 12)).astype(np.float32)
    rows = []
    print(f"{args.rows} rows x 12 features, {args.epochs} epochs, batch {args.batch}, 1 torch thread")
    print(
        f"{'model':8s} {'steps':>6s} {'default ms':>11s} {'autograd ms':>12s} {'product ms':>11s} "
        f"{'product / default':>18s} {'product / autograd':>19s}"
    )
    for name in args.models:
        rows_used = args.rows if name == "dense" else args.rows // 8  # sequence models: fewer windows, same shape
        data = X[:rows_used]
        window = default_window(name)
        steps = args.epochs * -(-(rows_used - window + 1) // args.batch)
        ms = {
            v: 1e3 * statistics.median(time_training(name, data, args.epochs, args.batch, args.repeats, v)) / steps
            for v in ("default", "autograd", "product")
        }
        row = {
            "model": name,
            "steps": steps,
            **{f"{v}_ms_per_step": t for v, t in ms.items()},
            "ratio": ms["product"] / ms["default"],
            "ratio_autograd": ms["product"] / ms["autograd"],
        }
        rows.append(row)
        print(
            f"{name:8s} {steps:6d} {ms['default']:11.3f} {ms['autograd']:12.3f} {ms['product']:11.3f} "
            f"{row['ratio']:17.2f}x {row['ratio_autograd']:18.2f}x"
        )
    if args.json:
        Path(args.json).write_text(json.dumps({"rows": rows, "args": vars(args)}, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

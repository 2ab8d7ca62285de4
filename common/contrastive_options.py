"""Command-line options of ``--model contrastive`` (tau, lambda, mu), shared by ``fedad train`` and the server."""

from __future__ import annotations

import argparse
from typing import Any

from fedad.common.errors import FedadError


def add_contrastive_options(parser: Any) -> None:
    """Add --tau, --lambda and --mu (defaults: the model's, chosen on training/validation data; docs/contrastive.md)."""
    parser.add_argument("--tau", type=float, default=None, help="contrastive: InfoNCE temperature (model default 0.5)")
    parser.add_argument(
        "--lambda",
        dest="lam",
        type=float,
        default=None,
        help="contrastive: weight of the InfoNCE term (model default 1.0)",
    )
    parser.add_argument(
        "--mu",
        type=float,
        default=None,
        help="contrastive: weight of the alignment to the server's global embedding (default 0.1)",
    )


def contrastive_sizes(args: argparse.Namespace) -> dict[str, float]:
    """The model sizes the options ask for; FedadError when they are given for another model or out of range."""
    given = {k: v for k, v in (("tau", args.tau), ("lam", args.lam), ("mu", args.mu)) if v is not None}
    if given and args.model != "contrastive":
        flags = ", ".join("--lambda" if k == "lam" else f"--{k}" for k in given)
        raise FedadError(f"{flags} only apply to --model contrastive (got --model {args.model})")
    if "tau" in given and not given["tau"] > 0:
        raise FedadError(f"--tau must be positive, got {given['tau']}")
    for k in ("lam", "mu"):
        if k in given and not given[k] >= 0:
            raise FedadError(f"--{'lambda' if k == 'lam' else k} must be at least 0, got {given[k]}")
    return {k: float(v) for k, v in given.items()}

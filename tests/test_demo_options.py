"""fedad demo's score and threshold options reach fedad-server and the baselines; bad ones stop it up front."""

from __future__ import annotations

import argparse
import subprocess
import sys

from procs import ENV


def _parse(*argv: str) -> argparse.Namespace:
    from fedad.server.demo import add_arguments

    parser = argparse.ArgumentParser()
    add_arguments(parser)
    return parser.parse_args(list(argv))


def test_detection_options_become_server_arguments():
    from fedad.server.demo import detection_args
    from fedad.server.main import build_parser, build_spec

    args = _parse(
        "--score",
        "topk",
        "--top-k",
        "4",
        "--threshold-rule",
        "quantile",
        "--target-far",
        "0.02",
        "--alarm-rule",
        "adaptive",
    )
    passed = detection_args(args)
    assert passed == [
        "--score",
        "topk",
        "--top-k",
        "4",
        "--threshold-rule",
        "quantile",
        "--threshold-scope",
        "global",
        "--alarm-rule",
        "adaptive",
        "--target-far",
        "0.02",
    ]
    spec = build_spec(build_parser().parse_args(passed))  # what the server and the baselines then run with
    assert (spec.score, spec.top_k, spec.threshold_rule, spec.target_far) == ("topk", 4, "quantile", 0.02)
    assert spec.alarm_rule == "adaptive"
    defaults = detection_args(_parse())
    assert "--target-far" not in defaults and defaults[:2] == ["--score", "max"]


def test_a_bad_target_far_stops_the_demo_before_any_work(tmp_path):
    out = tmp_path / "demo"
    p = subprocess.run(
        [sys.executable, "-m", "fedad.common.cli", "demo", "--target-far", "1.5", "--out", str(out)],
        capture_output=True,
        text=True,
        env=ENV,
        timeout=300,
    )
    assert p.returncode == 2 and "--target-far must be between 0 and 1" in p.stderr, p.stderr
    assert len(p.stderr.strip().splitlines()) == 1 and not out.exists()

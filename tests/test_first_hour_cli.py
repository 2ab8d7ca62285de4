"""What a new user meets first on the command line: checks up front, --version, fast --help, file modes."""

from __future__ import annotations

import os
import socket
import stat
import subprocess
import sys

import numpy as np
import pytest
from procs import ENV, free_port, run_module


def _one_line_error(p: subprocess.CompletedProcess) -> str:
    assert p.returncode == 2, (p.returncode, p.stderr)
    lines = [line for line in p.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and "error:" in lines[0], p.stderr
    return lines[0]


def test_server_refuses_bad_local_epochs_before_any_work(tmp_path):
    out = tmp_path / "run"
    p = run_module(
        "fedad.server.main", "--local-epochs", "-2", "--address", f"127.0.0.1:{free_port()}", "--out", str(out)
    )
    assert "--local-epochs must be at least 1" in _one_line_error(p)
    assert "listening on" not in p.stderr and not out.exists()


@pytest.mark.parametrize("module,option", [("fedad.server.main", "--address"), ("fedad.client.main", "--server")])
def test_an_address_without_port_is_one_line(tmp_path, module, option):
    extra = ["--data", str(tmp_path / "x.csv")] if option == "--server" else ["--out", str(tmp_path / "run")]
    p = run_module(module, option, "localhost", *extra)
    assert f"{option} must be HOST:PORT" in _one_line_error(p)
    assert "Exit Code" not in p.stderr and not (tmp_path / "run").exists()


def test_a_port_in_use_is_reported_before_listening(tmp_path):
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        s.listen()
        port = s.getsockname()[1]
        p = run_module("fedad.server.main", "--address", f"127.0.0.1:{port}", "--out", str(tmp_path / "run"))
    assert f"port {port} is already in use" in _one_line_error(p)
    assert "listening on" not in p.stderr and not (tmp_path / "run").exists()


@pytest.mark.parametrize(
    "cmd",
    [
        ("fedad.common.cli",),
        ("fedad.common.cli", "train"),
        ("fedad.server.main",),
        ("fedad.client.main",),
        ("fedad.server.keyholder",),
    ],
)
def test_every_cli_has_version(cmd):
    from fedad.common.config import version

    p = run_module(*cmd, "--version")
    assert p.returncode == 0 and p.stdout.strip().endswith(version()), p.stdout + p.stderr


@pytest.mark.parametrize("sub", ["train", "score"])
def test_train_and_score_help_do_not_import_torch(sub):
    code = (
        f"import argparse, importlib, sys; m = importlib.import_module('fedad.common.commands.{sub}'); "
        "m.add_arguments(argparse.ArgumentParser()); print('torch' in sys.modules)"
    )
    p = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=ENV, timeout=600)
    assert p.returncode == 0 and p.stdout.strip() == "False", p.stdout + p.stderr
    assert run_module("fedad.common.cli", sub, "--help").returncode == 0


def test_attack_names_take_dashes_or_underscores():
    from fedad.client.main import attack_name, build_parser

    assert attack_name("sign-flip") == attack_name("sign_flip") == "sign_flip"
    text = build_parser().format_help()
    assert "sign-flip" in text and "min-max" in text and "{sign_flip" not in text
    p = run_module("fedad.client.main", "--attack", "flip", "--data", "x.csv")
    assert "unknown attack 'flip'" in _one_line_error(p)


def test_keyholder_help_uses_the_file_names_fedad_certs_writes():
    from fedad.common.commands.certs import FILES
    from fedad.server.keyholder import build_parser

    text = build_parser().format_help()
    assert "keyholder.pem" not in text and "keyholder.key" not in text
    assert "certs/server.pem certs/server.key" in text and {"server.pem", "server.key"} <= set(FILES)


def test_plots_and_plant_folders_follow_the_umask(tmp_path):
    from fedad.common.evaluation import plot_roc
    from fedad.common.synth import write_plant

    old = os.umask(0o022)
    try:
        write_plant(tmp_path / "plant", nodes=2, records=400, seed=0, formats=("csv",))
        plot_roc({"m": (np.array([0.0, 0.5, 1.0]), np.array([0.0, 0.8, 1.0]))}, tmp_path / "roc.png")
    finally:
        os.umask(old)
    assert stat.S_IMODE((tmp_path / "plant").stat().st_mode) == 0o755
    assert stat.S_IMODE((tmp_path / "roc.png").stat().st_mode) == 0o644


def test_missing_values_are_counted_for_the_log():
    from fedad.common.missing import missing_values_note

    X = np.ones((10, 3))
    X[2, 0] = X[5, 0] = X[5, 2] = np.nan
    note = missing_values_note(X, ["a", "b", "c"], "knn")
    assert note.startswith("3 missing values (NaN) in 2 rows, columns a (2), c (1)") and "imputed with knn" in note
    assert missing_values_note(np.ones((4, 2)), ["a", "b"], "knn") is None


def test_train_says_how_many_values_it_imputes(tmp_path):
    import pandas as pd

    from fedad.common.synth import generate_node

    df = generate_node(1, 3000, seed=0)
    df.loc[df.index[df["label"] == 0][:7], "voltage"] = np.nan  # normal rows: the ones training sees
    data = tmp_path / "gaps.csv"
    df.to_csv(data, index=False)
    p = run_module(
        "fedad.common.cli",
        "train",
        "--data",
        str(data),
        "--epochs",
        "1",
        "--out",
        str(tmp_path / "m"),
        "--device",
        "cpu",
        timeout=300,
    )
    assert p.returncode == 0, p.stderr
    assert "7 missing values (NaN) in 7 rows, columns voltage (7): imputed with knn" in p.stderr, p.stderr
    assert pd.read_csv(data)["voltage"].isna().sum() == 7

"""Bad outputs and option values are refused in one line with exit code 2, before any work and without
touching the inputs: no overwritten data or model, no traceback, no hang, no empty file left behind."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
from procs import run_module

from fedad.common.cli import main as fedad


def run(capsys, main, *argv) -> tuple[int, str]:
    """(exit code, stderr) of an in-process command; argparse's refusals exit through SystemExit."""
    capsys.readouterr()
    try:
        code = main([str(a) for a in argv])
    except SystemExit as exc:
        code = exc.code
    return code, capsys.readouterr().err


def refused(capsys, main, *argv) -> str:
    """The one error line of a command that must exit 2."""
    code, err = run(capsys, main, *argv)
    lines = [line for line in err.splitlines() if line.strip()]
    assert code == 2 and len(lines) == 1 and "error:" in lines[0], (code, err)
    assert "Traceback" not in err
    return lines[0]


@pytest.fixture(scope="module")
def plant(tmp_path_factory) -> Path:
    """Two synthetic nodes and a one-epoch model of node 1 (``model``)."""
    root = tmp_path_factory.mktemp("plant")
    assert fedad(["data", "synth", "--nodes", "2", "--records", "2000", "--seed", "1", "--out", str(root)]) == 0
    assert fedad(["train", "--data", str(root / "node_01.csv"), "--epochs", "1", "--out", str(root / "model")]) == 0
    return root


def test_score_never_writes_over_its_data_or_its_model(capsys, plant, tmp_path):
    data = tmp_path / "node.csv"
    shutil.copy(plant / "node_02.csv", data)
    before = data.read_bytes()
    line = refused(capsys, fedad, "score", "--model", plant / "model", "--data", data, "--out", data)
    assert "is the input file" in line and data.read_bytes() == before
    model = tmp_path / "model"
    shutil.copytree(plant / "model", model)
    config = (model / "detector.json").read_bytes()
    line = refused(capsys, fedad, "score", "--model", model, "--data", data, "--out", model / "detector.json")
    assert "inside the model directory" in line and (model / "detector.json").read_bytes() == config
    line = refused(capsys, fedad, "score", "--model", data, "--data", data, "--out", tmp_path / "s.csv")
    assert "is a file; give the model directory" in line


def test_outputs_under_a_file_are_refused_before_any_work(capsys, plant, tmp_path):
    blocker = tmp_path / "a_file"
    blocker.write_text("x")
    data = plant / "node_02.csv"
    code, err = run(capsys, fedad, "train", "--data", data, "--epochs", "1", "--out", blocker / "m")
    assert code == 2 and "a_file is not a directory" in err and "epoch" not in err  # refused before training
    line = refused(capsys, fedad, "score", "--model", plant / "model", "--data", data, "--out", blocker / "s.csv")
    assert "cannot write --out" in line
    argv = ("score", "--model", plant / "model", "--data", data, "--follow", "--idle-exit", "0")
    line = refused(capsys, fedad, *argv, "--alarms", blocker / "al.jsonl")
    assert "cannot write --alarms" in line
    line = refused(capsys, fedad, "evaluate", "--model", plant / "model", "--data", data, "--out", blocker)
    assert "must be a directory" in line and not (blocker.parent / "metrics.json").exists()
    full = tmp_path / "full"
    full.mkdir()
    (full / "notes.txt").write_text("keep me")
    code, err = run(capsys, fedad, "train", "--data", data, "--epochs", "1", "--out", full)
    assert code == 2 and "holds no fedad model" in err and "epoch" not in err
    assert (full / "notes.txt").read_text() == "keep me"


def test_client_checks_model_out_before_it_connects(plant, tmp_path):
    blocker = tmp_path / "a_file"
    blocker.write_text("x")
    # nothing listens on port 9: a client that tried to connect first would wait out --connect-timeout (then fail
    # with exit 1); a separate process, so that such a regression fails here instead of holding the suite
    argv = ("--server", "127.0.0.1:9", "--data", str(plant / "node_01.csv"), "--connect-timeout", "3000")
    p = run_module("fedad.client.main", *argv, "--model-out", str(blocker), timeout=600)
    assert p.returncode == 2 and "--model-out" in p.stderr and "exists and is not a directory" in p.stderr, p.stderr


def test_follow_with_a_nan_idle_exit_is_refused_not_run_forever(plant, tmp_path):
    alarms = tmp_path / "alarms.jsonl"
    argv = ("score", "--model", plant / "model", "--data", plant / "node_02.csv", "--follow", "--alarms", alarms)
    p = run_module("fedad.common.cli", *map(str, argv), "--idle-exit", "nan", timeout=600)  # it followed forever
    assert p.returncode == 2 and "--idle-exit must be a number >= 0" in p.stderr, p.stderr
    assert not alarms.exists()


def test_a_refused_stream_leaves_no_empty_alarms_file(capsys, plant, tmp_path):
    empty, alarms = tmp_path / "empty.csv", tmp_path / "alarms.jsonl"
    empty.write_text("")
    argv = ("score", "--model", plant / "model", "--data", empty, "--follow", "--idle-exit", "0")
    assert "empty" in refused(capsys, fedad, *argv, "--alarms", alarms)
    assert not alarms.exists()


def test_a_file_of_blank_lines_is_an_empty_file(capsys, plant, tmp_path):
    blank = tmp_path / "blank.csv"
    blank.write_text("\n\n  \n")
    assert "empty file" in refused(capsys, fedad, "train", "--data", blank, "--out", tmp_path / "m")
    line = refused(capsys, fedad, "score", "--model", plant / "model", "--data", blank, "--out", tmp_path / "s.csv")
    assert "empty file" in line


@pytest.mark.parametrize(
    "argv,expected",
    [
        (("train", "--seed", "-1"), "a seed must be in [0, 4294967295]"),
        (("train", "--seed", "99999999999999999999"), "a seed must be in"),
        (("train", "--model", "ensemble", "--seed", "4294967296"), "a seed must be in"),
        (("evaluate", "--model", "m", "--baselines", "--seed", "-1"), "a seed must be in"),
        (("data", "synth", "--seed", "-1"), "a seed must be in"),
        (("data", "synth", "--records", "99999999999999999999"), "an integer up to 2147483647"),
        (("train", "--window", "99999999999999999999"), "an integer up to 2147483647"),
        (("train", "--weight-decay", "nan"), "a finite number"),
        (("train", "--threads", "100000"), "between 1 and 1024 threads"),
        (("score", "--model", "m", "--rule", "adaptive", "--smooth", "99999999999999999999"), "up to 2147483647"),
    ],
)
def test_option_values_the_code_cannot_take_are_refused(capsys, plant, tmp_path, argv, expected):
    argv = (*argv, "--data", plant / "node_01.csv", "--out", tmp_path / "out")
    assert expected in refused(capsys, fedad, *argv)
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize("option", ["--threshold-scale", "--change-sds", "--drop", "--drift-ratio"])
@pytest.mark.parametrize("value", ["nan", "inf", "-1", "0"])
def test_adaptive_rule_numbers_must_be_finite_and_positive(capsys, plant, tmp_path, option, value):
    argv = ("score", "--model", plant / "model", "--data", plant / "node_02.csv", "--rule", "adaptive")
    line = refused(capsys, fedad, *argv, "--out", tmp_path / "s.csv", option, value)
    assert f"{option} must be a finite number > 0" in line and not (tmp_path / "s.csv").exists()


def test_a_bad_threshold_in_a_model_file_is_one_line(capsys, plant, tmp_path):
    model = tmp_path / "model"
    shutil.copytree(plant / "model", model)
    config = json.loads((model / "detector.json").read_text())
    config["threshold"] = "abc"
    (model / "detector.json").write_text(json.dumps(config))
    line = refused(capsys, fedad, "score", "--model", model, "--data", plant / "node_02.csv", "--out", tmp_path / "s")
    assert "bad field 'threshold'" in line


def test_config_values_pass_the_options_own_checks(capsys, plant, tmp_path):
    data, out = plant / "node_01.csv", tmp_path / "m"
    cases = {
        "epochs: 1.5\n": "argument --epochs: expected an integer",
        "epochs: true\n": "'epochs' takes a value like --epochs does",
        "threads: 0\n": "argument --threads",
        "seed: -3\n": "a seed must be in",
        "scaler: fancy\n": "argument --scaler: invalid choice",
    }
    for text, expected in cases.items():
        config = tmp_path / "c.yml"
        config.write_text(text)
        assert expected in refused(capsys, fedad, "train", "--data", data, "--out", out, "--config", config), text
    binary = tmp_path / "b.yml"
    binary.write_bytes(bytes(range(128, 256)))
    assert "cannot read config file" in refused(capsys, fedad, "train", "--data", data, "--config", binary)
    assert "is a directory" in refused(capsys, fedad, "train", "--data", data, "--config", tmp_path)
    assert not out.exists()


def test_a_config_may_give_required_options_and_the_command_line_wins(capsys, plant, tmp_path):
    config = tmp_path / "c.yml"
    config.write_text(f"data: {plant / 'node_01.csv'}\nepochs: 3\nout: {tmp_path / 'from_file'}\n")
    code, err = run(capsys, fedad, "train", "--config", config, "--epochs", "1")
    assert code == 0, err
    saved = json.loads((tmp_path / "from_file" / "detector.json").read_text())
    assert saved["history"]["epochs"] == 1  # --epochs 1 on the command line beat the file's 3


def test_data_that_would_be_read_wrong_is_refused(capsys, plant, tmp_path):
    twice = tmp_path / "twice.csv"
    twice.write_text("a,a,b\n1,2,3\n4,5,6\n")
    line = refused(capsys, fedad, "train", "--data", twice, "--out", tmp_path / "m")
    assert "used twice in the header: a" in line  # pandas would have read the second one as 'a.1'
    infinite = tmp_path / "inf.csv"
    infinite.write_text("a,b\n1,2\n3,inf\n5,6\n")
    line = refused(capsys, fedad, "train", "--data", infinite, "--out", tmp_path / "m")
    assert "inf.csv: infinite values in column(s) b (first in data row 2 of the rows read)" in line


def test_the_adaptive_rule_needs_a_baseline_of_at_least_smooth_rows(capsys, plant, tmp_path):
    argv = ("score", "--model", plant / "model", "--data", plant / "node_02.csv", "--rule", "adaptive")
    line = refused(capsys, fedad, *argv, "--out", tmp_path / "s.csv", "--baseline-rows", "2")
    assert "--baseline-rows 2 is fewer than --smooth (45) rows" in line


def test_quoted_header_names_may_hold_the_separator(capsys, tmp_path):
    path = tmp_path / "units.csv"
    path.write_text('time,"Flow, m3/h","Volume, m3/h"\n1,2,3\n2,3,4\n3,4,5\n')
    code, err = run(capsys, fedad, "train", "--data", path, "--epochs", "1", "--out", tmp_path / "m")
    assert code == 0, err


def test_config_help_lists_and_abbreviations(capsys, plant, tmp_path):
    config = tmp_path / "c.yml"
    config.write_text("seed: -1\n")
    code, err = run(capsys, fedad, "train", "--config", config, "--help")
    assert code == 0  # help first, whatever the file holds
    config.write_text("model: ensemble\nmembers: [dense, iforest]\nepochs: 1\n")
    out = tmp_path / "ens"
    code, err = run(capsys, fedad, "train", "--config", config, "--data", plant / "node_01.csv", "--out", out)
    assert code == 0, err
    assert json.loads((out / "ensemble.json").read_text())["members"] == ["dense", "iforest"]
    line = refused(capsys, fedad, "train", "--data", plant / "node_01.csv", "--config")
    assert line.startswith("fedad train: error: argument --config: expected one argument")
    config.write_text("host: [a.example, b.example]\n")
    certs = tmp_path / "certs"
    code, err = run(capsys, fedad, "certs", "--config", config, "--ho", "c.example", "--out", certs)
    assert code == 0, err
    from cryptography import x509

    cert = x509.load_pem_x509_certificate((certs / "server.pem").read_bytes())
    names = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert names.get_values_for_type(x509.DNSName) == ["c.example"]  # --ho (an abbreviation) beat the file's list


def test_follow_never_appends_alarms_to_the_stream_it_reads(capsys, plant, tmp_path):
    data = tmp_path / "node.csv"
    shutil.copy(plant / "node_02.csv", data)
    before = data.read_bytes()
    argv = ("score", "--model", plant / "model", "--data", data, "--follow", "--idle-exit", "0", "--alarms", data)
    assert "is the input file" in refused(capsys, fedad, *argv)
    assert data.read_bytes() == before


def test_adaptive_options_without_the_adaptive_rule_are_refused(capsys, plant, tmp_path):
    argv = ("score", "--model", plant / "model", "--data", plant / "node_02.csv", "--out", tmp_path / "s.csv")
    line = refused(capsys, fedad, *argv, "--smooth", "10", "--baseline-rows", "100")
    assert "--smooth, --baseline-rows: options of --rule adaptive" in line  # they were ignored without a word
    code, err = run(capsys, fedad, *argv, "--smooth", "45")  # the default, given explicitly: nothing is lost
    assert code == 0, err

"""`fedad train` and `fedad score` end to end, in-process and through the console script, plus bad input."""

import shutil
import subprocess
import sys

import numpy as np
import pandas as pd
import pytest
import torch

from fedad.common.cli import main

torch.set_num_threads(1)

N_ROWS = 600


@pytest.fixture(scope="module")
def labelled_csv(tmp_path_factory):
    """Normal rows on a 2-D plane in 5 sensors, every 25th row an obvious anomaly; timestamp and label."""
    rng = np.random.default_rng(0)
    z = rng.normal(size=(N_ROWS, 2))
    X = z @ rng.normal(size=(2, 5)) + 0.05 * rng.normal(size=(N_ROWS, 5))
    y = np.zeros(N_ROWS, dtype=int)
    y[::25] = 1
    X[y == 1] += rng.choice([-6.0, 6.0], size=(int(y.sum()), 5))
    frame = pd.DataFrame(X, columns=[f"sensor_{i}" for i in range(5)])
    frame.insert(0, "timestamp", 1_700_000_000 + 10 * np.arange(N_ROWS))
    frame["label"] = y
    path = tmp_path_factory.mktemp("data") / "node.csv"
    frame.to_csv(path, index=False)
    return path, frame


@pytest.fixture(scope="module")
def trained_model(labelled_csv, tmp_path_factory):
    path, _ = labelled_csv
    out = tmp_path_factory.mktemp("models") / "model"
    code = main(
        [
            "train",
            "--data",
            str(path),
            "--epochs",
            "15",
            "--batch-size",
            "32",
            "--lr",
            "3e-3",
            "--device",
            "cpu",
            "--out",
            str(out),
        ]
    )
    assert code == 0
    return out


def test_train_writes_model_dir(trained_model, capsys):
    assert sorted(p.name for p in trained_model.iterdir()) == ["detector.json", "model.pt"]
    assert sorted(p.name for p in trained_model.parent.iterdir()) == ["model"]  # no temporary leftovers


def test_train_progress_on_stderr(labelled_csv, tmp_path, capsys):
    path, _ = labelled_csv
    assert main(["train", "--data", str(path), "--epochs", "2", "--out", str(tmp_path / "m")]) == 0
    captured = capsys.readouterr()
    assert "epoch   1/2" in captured.err and "val_loss" in captured.err
    assert "24 anomalous rows left out" in captured.err
    assert "saved" in captured.out and "train_loss" not in captured.out


def test_train_names_the_text_columns_it_leaves_out(labelled_csv, tmp_path, capsys):
    _, frame = labelled_csv
    path = tmp_path / "hosts.csv"
    frame.assign(host=[f"srv{i % 3}" for i in range(len(frame))]).to_csv(path, index=False)
    assert main(["train", "--data", str(path), "--epochs", "1", "--out", str(tmp_path / "m")]) == 0
    err = capsys.readouterr().err
    assert f"{path}: left out non-numeric column(s) host: text and date columns are not features" in err


def test_score_preserves_rows_and_flags_anomalies(labelled_csv, trained_model, tmp_path):
    path, frame = labelled_csv
    out = tmp_path / "scores.csv"
    assert main(["score", "--model", str(trained_model), "--data", str(path), "--out", str(out)]) == 0
    scores = pd.read_csv(out)
    assert list(scores.columns) == ["score", "is_anomaly"]
    assert len(scores) == len(frame)
    y = frame["label"].to_numpy()
    # row order preserved: the labelled rows (every 25th) carry the high scores
    assert scores["score"][y == 1].min() > scores["score"][y == 0].median()
    assert (scores["is_anomaly"][y == 1] == 1).mean() > 0.9
    assert (scores["is_anomaly"][y == 0] == 1).mean() < 0.05


def test_score_says_when_rows_leave_the_training_range(labelled_csv, trained_model, tmp_path, capsys):
    path, frame = labelled_csv
    assert main(["score", "--model", str(trained_model), "--data", str(path), "--out", str(tmp_path / "a.csv")]) == 0
    assert "outside the range" not in capsys.readouterr().out  # only the 4 % anomalous rows are
    shifted = frame.copy()
    shifted.loc[N_ROWS // 2 :, "sensor_2"] += 100.0  # the second half runs far above any training row
    shifted.to_csv(tmp_path / "shifted.csv", index=False)
    out = ["--out", str(tmp_path / "b.csv")]
    assert main(["score", "--model", str(trained_model), "--data", str(tmp_path / "shifted.csv"), *out]) == 0
    line = capsys.readouterr().out.strip().splitlines()[-1]
    assert line.startswith("5") and "% of the rows lie outside the range of the model's training rows" in line
    assert "(most often sensor_2, 50%)" in line, line


def test_score_matches_columns_by_name(labelled_csv, trained_model, tmp_path):
    path, frame = labelled_csv
    shuffled = frame[["label", "sensor_3", "sensor_0", "timestamp", "sensor_4", "sensor_2", "sensor_1"]]
    shuffled.to_csv(tmp_path / "shuffled.csv", index=False)
    for name in ("shuffled.csv", "node.csv"):
        data = tmp_path / name if name == "shuffled.csv" else path
        out = str(tmp_path / f"scores_{name}")
        assert main(["score", "--model", str(trained_model), "--data", str(data), "--out", out]) == 0
    a, b = pd.read_csv(tmp_path / "scores_shuffled.csv"), pd.read_csv(tmp_path / "scores_node.csv")
    np.testing.assert_allclose(a["score"], b["score"])


def test_sequence_model_and_config_file(labelled_csv, tmp_path):
    path, frame = labelled_csv
    config = tmp_path / "train.yaml"
    config.write_text("model: cnn\nwindow: 4\nepochs: 2\nscaler: minmax\ndenoise: ma\n")
    model = tmp_path / "cnn"
    assert main(["train", "--config", str(config), "--data", str(path), "--out", str(model)]) == 0
    assert main(["score", "--model", str(model), "--data", str(path), "--out", str(tmp_path / "s.csv")]) == 0
    assert len(pd.read_csv(tmp_path / "s.csv")) == len(frame)


def test_console_script_scores(labelled_csv, trained_model, tmp_path):
    path, frame = labelled_csv
    exe = shutil.which("fedad")
    cmd = [exe] if exe else [sys.executable, "-m", "fedad.common.cli"]
    out = tmp_path / "scores.csv"
    proc = subprocess.run(
        cmd + ["score", "--model", str(trained_model), "--data", str(path), "--out", str(out), "--device", "cpu"],
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert proc.returncode == 0, proc.stderr
    assert "scored 600 rows" in proc.stdout
    assert len(pd.read_csv(out)) == len(frame)
    proc = subprocess.run(
        cmd + ["score", "--model", str(tmp_path / "nope"), "--data", str(path), "--out", str(out)],
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert proc.returncode == 2
    assert len(proc.stderr.strip().splitlines()) == 1 and "model directory not found" in proc.stderr


def _fails_with_one_line(argv, capsys, expected):
    assert main(argv) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "error" in err[0] and expected in err[0], err
    return err[0]


def test_bad_inputs_exit_2_with_one_line(labelled_csv, trained_model, tmp_path, capsys):
    path, frame = labelled_csv
    out = tmp_path / "scores.csv"
    _fails_with_one_line(
        ["train", "--data", str(tmp_path / "missing.csv"), "--out", str(tmp_path / "m")], capsys, "not found"
    )
    _fails_with_one_line(
        ["score", "--model", str(trained_model), "--data", str(tmp_path / "missing.csv"), "--out", str(out)],
        capsys,
        "not found",
    )
    _fails_with_one_line(
        ["score", "--model", str(tmp_path / "no_model"), "--data", str(path), "--out", str(out)],
        capsys,
        "model directory not found",
    )
    narrow = tmp_path / "narrow.csv"
    frame.drop(columns=["sensor_4"]).to_csv(narrow, index=False)
    _fails_with_one_line(
        ["score", "--model", str(trained_model), "--data", str(narrow), "--out", str(out)], capsys, "sensor_4"
    )
    _fails_with_one_line(["train", "--data", str(path), "--epochs", "0"], capsys, "--epochs")
    _fails_with_one_line(
        ["train", "--data", str(path), "--model", "lstm", "--window", "400", "--out", str(tmp_path / "m")],
        capsys,
        "too few records",
    )
    if not torch.cuda.is_available():
        _fails_with_one_line(
            ["train", "--data", str(path), "--device", "cuda", "--out", str(tmp_path / "m")],
            capsys,
            "CUDA is not available",
        )
    assert not out.exists() and not (tmp_path / "m").exists()  # nothing written on failure


def test_help_texts(capsys):
    for command in ("train", "score"):
        with pytest.raises(SystemExit) as exc:
            main([command, "--help"])
        assert exc.value.code == 0
        text = capsys.readouterr().out
        assert "--data" in text and "--out" in text and "default" in text

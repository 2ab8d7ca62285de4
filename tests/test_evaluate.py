"""Evaluation helpers and `fedad evaluate` end to end on a small CSV."""

import json

import numpy as np
import pandas as pd
import pytest

from fedad.common.baselines import IQRDetector, PCADetector
from fedad.common.evaluation import (
    detector_outputs,
    evaluate_detectors,
    format_table,
    plot_roc,
    roc_curves,
    write_metrics,
)
from fedad.common.metrics import METRIC_KEYS

KEYS = set(METRIC_KEYS)


def _plant(n=400, seed=0, anomalies=True):
    """Four correlated sensors; anomalous rows (last fifth, every other row) jump by 6 sigma."""
    rng = np.random.default_rng(seed)
    t = np.arange(n)
    base = np.sin(t / 15.0)
    X = np.column_stack([base, 0.5 * base, np.cos(t / 15.0), rng.normal(size=n) * 0.1])
    X = X + 0.05 * rng.normal(size=X.shape)
    y = np.zeros(n, dtype=int)
    if anomalies:
        idx = np.arange(int(n * 0.8), n, 2)
        X[idx] += 6.0
        y[idx] = 1
    df = pd.DataFrame(X, columns=["s1", "s2", "s3", "s4"])
    df.insert(0, "timestamp", t)
    df["label"] = y
    return df


def test_evaluate_detectors_and_files(tmp_path):
    df = _plant()
    X, y = df[["s1", "s2", "s3", "s4"]].to_numpy(), df["label"].to_numpy()
    dets = {"iqr": IQRDetector().fit(X[y == 0]), "pca": PCADetector().fit(X[y == 0])}
    res = evaluate_detectors(dets, X, y)
    assert set(res) == {"iqr", "pca"}
    assert all(set(m) == KEYS for m in res.values())
    assert res["iqr"]["recall"] == 1.0 and res["iqr"]["roc_auc"] > 0.9
    path = write_metrics(tmp_path / "out", res)
    assert json.loads(path.read_text()) == json.loads(json.dumps(res))
    curves = roc_curves(y, detector_outputs(dets, X))
    png = plot_roc(curves, tmp_path / "out" / "roc.png")
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert "iqr" in format_table(res)
    assert roc_curves(np.zeros(len(y)), detector_outputs(dets, X)) == {}


@pytest.fixture(scope="module")
def trained_model(tmp_path_factory):
    torch = pytest.importorskip("torch")
    torch.set_num_threads(1)
    from fedad.common.detector import AutoencoderDetector

    d = tmp_path_factory.mktemp("model")
    df = _plant(seed=1, anomalies=False)
    det = AutoencoderDetector(model="dense", window=1, epochs=3, seed=0)
    det.fit(df[["s1", "s2", "s3", "s4"]].to_numpy(), feature_names=["s1", "s2", "s3", "s4"])
    det.save(d / "m")
    return d / "m"


def _cli(argv):
    from fedad.common.cli import main

    return main(argv)


def test_evaluate_command_end_to_end(tmp_path, trained_model, capsys):
    data = tmp_path / "plant.csv"
    _plant(seed=2).to_csv(data, index=False)
    out = tmp_path / "eval"
    rc = _cli(
        [
            "evaluate",
            "--model",
            str(trained_model),
            "--data",
            str(data),
            "--label-column",
            "label",
            "--baselines",
            "--out",
            str(out),
        ]
    )
    captured = capsys.readouterr()
    assert rc == 0, captured.err
    for word in ("precision", "recall", "F1", "ROC-AUC", "PR-AUC", "FAR", "MAR", "autoencoder", "iforest"):
        assert word in captured.out
    metrics = json.loads((out / "metrics.json").read_text())
    assert set(metrics) == {"autoencoder", "iqr", "iforest", "ocsvm", "pca"}
    assert all(set(m) == KEYS for m in metrics.values())
    assert (out / "roc.png").stat().st_size > 0
    # with --train-data the whole of --data is the test set
    train = tmp_path / "train.csv"
    _plant(seed=3, anomalies=False).to_csv(train, index=False)
    rc = _cli(
        [
            "evaluate",
            "--model",
            str(trained_model),
            "--data",
            str(data),
            "--baselines",
            "--train-data",
            str(train),
            "--out",
            str(tmp_path / "eval2"),
        ]
    )
    assert rc == 0, capsys.readouterr().err
    assert set(json.loads((tmp_path / "eval2" / "metrics.json").read_text())) == set(metrics)


def test_test_fraction_evaluates_the_held_out_tail_with_or_without_baselines(tmp_path, trained_model, capsys):
    data = tmp_path / "plant.csv"
    _plant(seed=2).to_csv(data, index=False)  # 400 rows, the anomalies in the last fifth
    base = ["evaluate", "--model", str(trained_model), "--data", str(data)]
    assert _cli([*base, "--out", str(tmp_path / "all")]) == 0
    assert "scoring 400 rows (40 anomalous)" in capsys.readouterr().err  # no split: every row
    assert _cli([*base, "--test-fraction", "0.1", "--out", str(tmp_path / "tail")]) == 0
    err = capsys.readouterr().err
    assert "evaluating the last 40 of the 400 rows" in err and "scoring 40 rows (20 anomalous)" in err
    assert _cli([*base, "--test-fraction", "0.1", "--baselines", "--out", str(tmp_path / "both")]) == 0
    assert "scoring 40 rows (20 anomalous)" in capsys.readouterr().err  # the model and the baselines alike
    tail = json.loads((tmp_path / "tail" / "metrics.json").read_text())["autoencoder"]
    both = json.loads((tmp_path / "both" / "metrics.json").read_text())["autoencoder"]
    assert tail == both
    # with --train-data all of --data is the test set: a split of it is refused, before anything is written
    train = tmp_path / "train.csv"
    _plant(seed=3, anomalies=False).to_csv(train, index=False)
    out = tmp_path / "refused"
    argv = [*base, "--baselines", "--train-data", str(train), "--test-fraction", "0.2", "--out", str(out)]
    assert _cli(argv) == 2
    err = capsys.readouterr().err
    assert "--test-fraction splits --data; with --train-data" in err and len(err.strip().splitlines()) == 1
    assert _cli([*base, "--test-fraction", "1.5", "--out", str(out)]) == 2
    assert "--test-fraction must be in [0, 1), got 1.5" in capsys.readouterr().err
    assert _cli([*base, "--baselines", "--test-fraction", "0", "--out", str(out)]) == 2
    assert "give --test-fraction above 0 or --train-data" in capsys.readouterr().err
    assert not out.exists()
    # 0, `fedad train`'s default, holds nothing out: every row is evaluated
    assert _cli([*base, "--test-fraction", "0", "--out", str(tmp_path / "zero")]) == 0
    assert "scoring 400 rows (40 anomalous)" in capsys.readouterr().err


def test_evaluate_bad_input_exits_2(tmp_path, trained_model, capsys):
    df = _plant(seed=2).drop(columns=["label"])
    data = tmp_path / "nolabel.csv"
    df.to_csv(data, index=False)
    out = tmp_path / "eval"
    base = ["evaluate", "--model", str(trained_model), "--out", str(out)]
    assert _cli(base + ["--data", str(data), "--label-column", "label"]) == 2
    err = capsys.readouterr().err
    assert "error" in err and "Traceback" not in err
    assert _cli(base + ["--data", str(tmp_path / "missing.csv")]) == 2
    assert _cli(["evaluate", "--model", str(tmp_path / "nomodel"), "--data", str(data), "--out", str(out)]) == 2
    labelled = tmp_path / "plant.csv"
    _plant(seed=2).drop(columns=["s4"]).to_csv(labelled, index=False)
    assert _cli(base + ["--data", str(labelled)]) == 2  # one feature short of the model
    assert not (out / "metrics.json").exists()


def test_unlabelled_train_data_is_refused_before_loading(tmp_path, trained_model, capsys):
    data = tmp_path / "plant.csv"
    _plant(seed=2).to_csv(data, index=False)
    train = tmp_path / "train.csv"  # no label column, and rows that would not even load: only the header is read
    train.write_text("timestamp,s1,s2,s3,s4\n" + "x,y,z,w,v\n" * 50)
    out = tmp_path / "eval"
    rc = _cli(
        [
            "evaluate",
            "--model",
            str(trained_model),
            "--data",
            str(data),
            "--baselines",
            "--train-data",
            str(train),
            "--out",
            str(out),
        ]
    )
    err = capsys.readouterr().err
    assert rc == 2 and "--train-data" in err and "no label column found in its header" in err
    assert not out.exists()

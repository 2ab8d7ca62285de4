"""Synthetic plant: shape, determinism, anomaly episodes, non-IID nodes, physics, files and the CLI."""

from __future__ import annotations

import json
import time

import numpy as np
import pandas as pd
import pytest

from fedad.common.cli import main
from fedad.common.data import load_dataset
from fedad.common.errors import FedadError
from fedad.common.synth import (
    ANOMALY_KINDS,
    SAMPLE_SECONDS,
    SENSORS,
    anomaly_counts,
    first_order_filter,
    generate_node,
    simulate_node,
    write_plant,
)

COLUMNS = ["timestamp", *SENSORS, "label"]


@pytest.fixture(scope="module")
def node1():
    return simulate_node(1, 20_000, seed=0)


def _runs(labels: np.ndarray) -> np.ndarray:
    """Lengths of the runs of 1s."""
    edges = np.diff(np.concatenate([[0], labels.astype(int), [0]]))
    return np.flatnonzero(edges == -1) - np.flatnonzero(edges == 1)


def test_columns_dtypes_and_timestamps(node1):
    frame = node1[0]
    assert list(frame.columns) == COLUMNS
    assert len(SENSORS) == 12
    assert frame["timestamp"].dtype == np.int64
    assert (np.diff(frame["timestamp"].to_numpy()) == SAMPLE_SECONDS).all()
    assert all(frame[c].dtype == np.float64 for c in SENSORS)
    assert set(np.unique(frame["label"])) == {0, 1}
    values = frame[list(SENSORS)].to_numpy()
    assert np.isfinite(values).all() and (values >= 0).all()


def test_deterministic_per_seed_and_node():
    a = generate_node(2, 3000, seed=7)
    pd.testing.assert_frame_equal(a, generate_node(2, 3000, seed=7))
    assert not a[list(SENSORS)].equals(generate_node(2, 3000, seed=8)[list(SENSORS)])
    assert not a[list(SENSORS)].equals(generate_node(3, 3000, seed=7)[list(SENSORS)])


def test_normal_records_do_not_depend_on_anomaly_rate():
    clean = generate_node(1, 5000, seed=3, anomaly_rate=0.0)
    dirty = generate_node(1, 5000, seed=3, anomaly_rate=0.1)
    assert clean["label"].sum() == 0
    normal = dirty["label"].to_numpy() == 0
    pd.testing.assert_frame_equal(clean[normal].drop(columns="label"), dirty[normal].drop(columns="label"))
    assert not np.allclose(clean.loc[~normal, list(SENSORS)], dirty.loc[~normal, list(SENSORS)])


def test_anomaly_rate_kinds_and_contiguous_episodes(node1):
    frame, episodes, _ = node1
    labels = frame["label"].to_numpy()
    assert labels.sum() == round(0.05 * len(frame))
    counts = anomaly_counts(episodes)
    assert generate_node(1, 2000, seed=0).attrs["anomalies"] == anomaly_counts(simulate_node(1, 2000, seed=0)[1])
    assert set(counts) == set(ANOMALY_KINDS)
    assert all(counts[k]["episodes"] > 0 for k in ANOMALY_KINDS)
    assert sum(c["records"] for c in counts.values()) == labels.sum()
    runs = _runs(labels)
    assert len(runs) == len(episodes.start)  # episodes never touch
    assert runs.max() <= 80 and np.median(runs) >= 3
    _, rows, _ = episodes.records()
    assert np.array_equal(np.sort(rows), np.flatnonzero(labels))


@pytest.mark.parametrize("records,rate", [(1, 0.05), (7, 0.5), (40, 0.05), (200, 0.0)])
def test_tiny_nodes(records, rate):
    frame = generate_node(1, records, seed=0, anomaly_rate=rate)
    assert len(frame) == records and frame["label"].sum() == round(rate * records)


@pytest.mark.parametrize("kwargs", [dict(node=0), dict(records=0), dict(anomaly_rate=0.6), dict(anomaly_rate=-0.1)])
def test_bad_arguments(kwargs):
    args = dict(node=1, records=100, seed=0, anomaly_rate=0.05) | kwargs
    with pytest.raises(FedadError):
        generate_node(**args)


def test_nodes_are_non_iid():
    means = np.array(
        [generate_node(k, 4000, seed=0, anomaly_rate=0.0)[list(SENSORS)].mean().to_numpy() for k in range(1, 5)]
    )
    spread = means.std(axis=0) / means.mean(axis=0)
    assert (spread > 0.02).sum() >= 8, dict(zip(SENSORS, spread.round(3), strict=True))


def test_normal_data_is_low_dimensional_and_physical(node1):
    frame = node1[0]
    normal = frame[frame["label"] == 0]
    Z = (normal[list(SENSORS)] - normal[list(SENSORS)].mean()) / normal[list(SENSORS)].std()
    explained = np.linalg.svd(Z.to_numpy(), compute_uv=False) ** 2
    assert np.cumsum(explained)[5] / explained.sum() > 0.99
    corr = normal[list(SENSORS)].corr()
    assert corr.loc["speed", "vibration_freq"] > 0.99
    assert np.corrcoef(normal["power"], normal["motor_current"] * normal["voltage"])[0, 1] > 0.98
    assert corr.loc["torque", "motor_current"] > 0.8
    assert corr.loc["temperature", "bearing_temp"] > 0.5


def test_anomalies_leave_the_normal_manifold(node1):
    frame, episodes, _ = node1
    X = frame[list(SENSORS)].to_numpy()
    y = frame["label"].to_numpy()
    normal = X[y == 0]
    Z = (X - normal.mean(0)) / normal.std(0)
    _, _, vt = np.linalg.svd(Z[y == 0], full_matrices=False)
    basis = vt[:6]
    error = ((Z - Z @ basis.T @ basis) ** 2).mean(1)
    threshold = np.quantile(error[y == 0], 0.99)
    kind = np.full(len(y), -1)
    ep, rows, _ = episodes.records()
    kind[rows] = episodes.kind[ep]
    recall = {name: (error[kind == k] > threshold).mean() for k, name in enumerate(ANOMALY_KINDS)}
    assert np.mean(list(recall.values())) > 0.8, recall
    assert min(recall.values()) > 0.5, recall


def test_regime_violations_stay_inside_each_marginal_range(node1):
    frame, episodes, _ = node1
    X = frame[list(SENSORS)].to_numpy()
    normal = X[frame["label"].to_numpy() == 0]
    low, high = np.quantile(normal, 0.01, axis=0), np.quantile(normal, 0.99, axis=0)
    checked = 0
    for start, length, kind, detail in zip(
        episodes.start, episodes.length, episodes.kind, episodes.detail, strict=True
    ):
        if ANOMALY_KINDS[kind] != "regime":
            continue
        for part in detail.split(","):
            j = SENSORS.index(part.split(":")[0])
            values = X[start : start + length, j]
            assert ((values >= low[j]) & (values <= high[j])).all(), (detail, values, low[j], high[j])
            checked += 1
    assert checked > 0


def test_first_order_filter_matches_the_recursion():
    rng = np.random.default_rng(0)
    for n, a in [(1, 0.5), (17, 0.0), (1000, 0.9), (5000, 0.999)]:
        u, y0 = rng.standard_normal(n), 0.7
        expected, prev = np.empty(n), y0
        for i in range(n):
            prev = a * prev + u[i]
            expected[i] = prev
        np.testing.assert_allclose(first_order_filter(u, a, y0), expected, rtol=1e-9, atol=1e-9)


def test_generation_is_fast():
    generate_node(1, 1000, seed=0)
    began = time.perf_counter()
    frame = generate_node(1, 200_000, seed=0)
    assert len(frame) == 200_000
    assert time.perf_counter() - began < 10.0  # about 0.3 s on a laptop; generous for loaded CI machines


def test_write_plant_files_and_manifest(tmp_path):
    out = tmp_path / "plant"
    manifest = write_plant(out, nodes=3, records=3001, seed=5)
    names = sorted(p.name for p in out.iterdir())
    assert names == ["manifest.json"] + [f"node_0{k}.{f}" for k in (1, 2, 3) for f in ("csv", "parquet")]
    assert [p.name for p in tmp_path.iterdir()] == ["plant"]  # no temporary directory left behind
    on_disk = json.loads((out / "manifest.json").read_text())
    assert on_disk == json.loads(json.dumps(manifest))
    assert on_disk["seed"] == 5 and on_disk["sensors"] == list(SENSORS)
    rows = [on_disk["node_files"][f"node_0{k}"]["rows"] for k in (1, 2, 3)]
    assert rows == [1001, 1000, 1000]
    expected = generate_node(2, 1000, seed=5)
    from_csv = pd.read_csv(out / "node_02.csv")
    from_parquet = pd.read_parquet(out / "node_02.parquet")
    pd.testing.assert_frame_equal(from_csv, expected, check_dtype=False)
    pd.testing.assert_frame_equal(from_parquet, expected, check_dtype=False)
    info = on_disk["node_files"]["node_02"]
    assert info["anomalous_rows"] == expected["label"].sum() == sum(v["records"] for v in info["anomalies"].values())
    assert sum(length for _, length, _, _ in info["episodes"]) == info["anomalous_rows"]
    data = load_dataset(out / "node_02.csv")
    assert data.X.shape == (1000, 12) and data.feature_names == list(SENSORS)
    np.testing.assert_array_equal(data.y, expected["label"].to_numpy())
    np.testing.assert_array_equal(data.time, expected["timestamp"].to_numpy())


def test_write_plant_replaces_an_earlier_plant(tmp_path):
    write_plant(tmp_path, nodes=3, records=300, seed=0, formats=("csv", "parquet"))
    (tmp_path / "notes.txt").write_text("mine")
    write_plant(tmp_path, nodes=2, records=200, seed=1, formats=("parquet",))
    names = sorted(p.name for p in tmp_path.iterdir())
    assert names == ["manifest.json", "node_01.parquet", "node_02.parquet", "notes.txt"]
    assert json.loads((tmp_path / "manifest.json").read_text())["nodes"] == 2


@pytest.mark.parametrize(
    "kwargs,message",
    [
        (dict(nodes=0), "nodes"),
        (dict(records=2, nodes=3), "records"),
        (dict(formats=("xlsx",)), "format"),
        (dict(anomaly_rate=0.9), "anomaly rate"),
    ],
)
def test_write_plant_bad_input_writes_nothing(tmp_path, kwargs, message):
    args = dict(nodes=2, records=100, seed=0) | kwargs
    with pytest.raises(FedadError, match=message):
        write_plant(tmp_path / "out", **args)
    assert not any(tmp_path.iterdir())


def test_write_plant_refuses_a_file_as_output(tmp_path):
    target = tmp_path / "taken"
    target.write_text("x")
    with pytest.raises(FedadError, match="not a directory"):
        write_plant(target, nodes=1, records=10, seed=0)


def test_cli_synth(tmp_path, capsys):
    out = tmp_path / "cli"
    assert main(["data", "synth", "--nodes", "2", "--records", "500", "--out", str(out), "--format", "csv"]) == 0
    captured = capsys.readouterr()
    assert captured.out.strip() == str(out)
    assert "node_02" in captured.err
    assert sorted(p.name for p in out.iterdir()) == ["manifest.json", "node_01.csv", "node_02.csv"]


@pytest.mark.parametrize(
    "argv,message",
    [
        (["--nodes", "0"], "--nodes"),
        (["--nodes", "5", "--records", "4"], "--records"),
        (["--format", "csv,xml"], "--format"),
        (["--anomaly-rate", "0.7"], "--anomaly-rate"),
    ],
)
def test_cli_synth_bad_input(tmp_path, capsys, argv, message):
    assert main(["data", "synth", "--out", str(tmp_path / "x"), "--records", "100", *argv]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert message in err[-1] and "Traceback" not in "".join(err)
    assert not (tmp_path / "x").exists()


def test_cli_synth_help(capsys):
    with pytest.raises(SystemExit) as exc:
        main(["data", "synth", "--help"])
    assert exc.value.code == 0
    text = capsys.readouterr().out
    assert "--anomaly-rate" in text and "12-sensor" in text

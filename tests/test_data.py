"""Loaders: generic CSV/Parquet, SKAB, KDD Cup 99, TON_IoT, format detection and one-line errors."""

from __future__ import annotations

import gzip
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from fedad.common.data import (
    KDD_CATEGORIES,
    KDD_COLUMNS,
    Dataset,
    check_min_rows,
    dataset_from_frame,
    detect_format,
    kdd_categories,
    load_dataset,
    load_skab_files,
    sniff_separator,
)
from fedad.common.errors import FedadError


def write(path: Path, text: str, encoding: str = "utf-8") -> Path:
    path.write_bytes(text.encode(encoding))
    return path


# ------------------------------------------------------------------------------------------------ generic CSV


@pytest.mark.parametrize("sep", [",", ";", "\t"])
def test_csv_separators_are_sniffed(tmp_path, sep):
    path = write(
        tmp_path / "d.csv",
        sep.join(["timestamp", "a", "b", "label"])
        + "\n"
        + "\n".join(sep.join(r) for r in [["10", "1.5", "2", "0"], ["20", "3", "", "1"]])
        + "\n",
    )
    assert sniff_separator(path) == sep
    data = load_dataset(path)
    assert isinstance(data, Dataset) and len(data) == 2
    assert data.feature_names == ["a", "b"]
    assert data.X.dtype == np.float64 and data.X.flags.c_contiguous
    np.testing.assert_array_equal(data.X, [[1.5, 2.0], [3.0, np.nan]])
    assert data.y.dtype == np.int8 and data.y.tolist() == [0, 1]
    assert data.time.tolist() == [10, 20]
    assert data.source == str(path)


def test_csv_explicit_separator_columns_and_features(tmp_path):
    path = write(tmp_path / "d.txt", "when|x|y|z|fault\n2024-01-01 00:00:00|1|2|3|1\n2024-01-01 00:00:10|4|5|6|0\n")
    data = load_dataset(path, sep="|", label_column="fault", time_column="when", features="z,x")
    assert data.feature_names == ["z", "x"]
    np.testing.assert_array_equal(data.X, [[3, 1], [6, 4]])
    assert data.y.tolist() == [1, 0]
    assert np.issubdtype(data.time.dtype, np.datetime64)
    assert load_dataset(path, sep="|", features=["y"]).X.ravel().tolist() == [2.0, 5.0]


def test_csv_bom_crlf_decimal_commas_and_unlabelled(tmp_path):
    path = write(
        tmp_path / "eu.csv", "\ufeffdatetime;temp;flow\r\n2024-01-01 10:00;20,5;3\r\n2024-01-01 10:01;21;4,25\r\n"
    )
    data = load_dataset(path)
    assert data.feature_names == ["temp", "flow"] and data.y is None
    np.testing.assert_array_equal(data.X, [[20.5, 3.0], [21.0, 4.25]])


def test_text_columns_are_left_out_unless_asked_for(tmp_path):
    path = write(tmp_path / "d.csv", "machine,a,label\npump-1,1,0\npump-2,2,1\n")
    assert load_dataset(path).feature_names == ["a"]
    with pytest.raises(FedadError, match="non-numeric feature column.*machine"):
        load_dataset(path, features=["a", "machine"])


def test_parquet(tmp_path):
    frame = pd.DataFrame({"timestamp": [0, 10, 20], "s1": [1.0, None, 3.0], "s2": [1, 2, 3], "label": [0, 0, 1]})
    frame.to_parquet(tmp_path / "d.parquet")
    data = load_dataset(tmp_path / "d.parquet")
    assert detect_format(tmp_path / "d.parquet") == "parquet"
    assert data.feature_names == ["s1", "s2"]
    np.testing.assert_array_equal(data.X, [[1, 1], [np.nan, 2], [3, 3]])
    assert data.y.tolist() == [0, 0, 1] and data.time.tolist() == [0, 10, 20]


def test_dataset_from_frame_with_drop():
    frame = pd.DataFrame({"a": [1.0, 2.0], "aux": [5, 6], "anomaly": [0.0, 1.0]})
    data = dataset_from_frame(frame, "mem", label_column="anomaly", drop=("aux",))
    assert data.feature_names == ["a"] and data.y.tolist() == [0, 1] and data.source == "mem"


# --------------------------------------------------------------------------------------------------- bad input

BAD_CSV = {
    "missing label": ("a,b\n1,2\n", dict(label_column="fault"), "label column 'fault' not found"),
    "text label": ("a,label\n1,normal\n2,attack\n", {}, "label column 'label' must hold 0/1"),
    "label 2": ("a,label\n1,0\n2,2\n", {}, "must hold 0/1, found 2"),
    "label missing values": ("a,label\n1,0\n2,\n", {}, "missing values"),
    "junk in numbers": ("a,b,label\n1,2,0\n2,x7,1\n3,4,0\n4,5,0\n", {}, "column 'b' is not numeric.*x7"),
    "all NaN": ("a,b,label\n1,,0\n2,,1\n", {}, "no values at all: b"),
    "no features": ("name,label\nx,0\ny,1\n", {}, "no numeric feature columns.*name"),
    "header only": ("a,b,label\n", {}, "no data rows"),
    "unknown feature": ("a,b,label\n1,2,0\n", dict(features=["c"]), "feature column.*not found: c"),
    "missing time": ("a,b\n1,2\n", dict(time_column="when"), "time column 'when' not found"),
}


@pytest.mark.parametrize("case", sorted(BAD_CSV))
def test_bad_csv_gives_one_clear_line(tmp_path, case):
    text, kwargs, message = BAD_CSV[case]
    path = write(tmp_path / "bad.csv", text)
    with pytest.raises(FedadError, match=message) as exc:
        load_dataset(path, **kwargs)
    assert "\n" not in str(exc.value) and str(path) in str(exc.value)


def test_missing_empty_and_unreadable_files(tmp_path):
    with pytest.raises(FedadError, match="not found"):
        load_dataset(tmp_path / "nope.csv")
    write(tmp_path / "empty.csv", "")
    with pytest.raises(FedadError, match="empty file"):
        load_dataset(tmp_path / "empty.csv")
    write(tmp_path / "broken.parquet", "not parquet at all")
    with pytest.raises(FedadError, match="cannot read as Parquet"):
        load_dataset(tmp_path / "broken.parquet")
    with pytest.raises(FedadError, match="unknown data format"):
        load_dataset(tmp_path / "empty.csv", format="xlsx")
    with pytest.raises(FedadError, match="directory"):
        load_dataset(tmp_path)


def test_check_min_rows():
    check_min_rows(10, 10)
    with pytest.raises(FedadError, match="9 rows, too few for window 10"):
        check_min_rows(9, 10)
    with pytest.raises(FedadError, match="window must be >= 1"):
        check_min_rows(9, 0)


# -------------------------------------------------------------------------------------------- named formats

SKAB_HEADER = (
    "datetime;Accelerometer1RMS;Accelerometer2RMS;Current;Pressure;Temperature;Thermocouple;Voltage;Volume Flow RateRMS"
)


def skab_file(path: Path, rows: int, labelled: bool = True, start: int = 0) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    lines = [SKAB_HEADER + (";anomaly;changepoint" if labelled else "")]
    for i in range(rows):
        values = [f"2020-03-09 10:14:{start + i:02d}"] + [f"{start + i + k / 10:.1f}" for k in range(8)]
        lines.append(";".join(values + ([str(i % 2) + ".0", "0.0"] if labelled else [])))
    return write(path, "\n".join(lines) + "\n")


def test_skab_file_and_directory(tmp_path):
    root = tmp_path / "skab"
    skab_file(root / "valve" / "10.csv", 3, start=20)
    skab_file(root / "valve" / "2.csv", 2, start=10)
    skab_file(root / "anomaly-free" / "anomaly-free.csv", 2, labelled=False, start=0)
    assert detect_format(root) == "skab" and detect_format(root / "valve" / "2.csv") == "skab"
    one = load_dataset(root / "valve" / "2.csv")
    assert len(one.feature_names) == 8 and "changepoint" not in one.feature_names
    assert one.y.tolist() == [0, 1] and np.issubdtype(one.time.dtype, np.datetime64)
    assert load_dataset(root / "anomaly-free" / "anomaly-free.csv").y is None
    files = load_skab_files(root)
    assert [name for name, _ in files] == ["anomaly-free/anomaly-free.csv", "valve/2.csv", "valve/10.csv"]
    assert "changepoint" in files[1][1].columns
    everything = load_dataset(root)
    assert len(everything) == 7 and everything.X[:, 0].tolist() == [0, 1, 10, 11, 20, 21, 22]
    assert everything.y.tolist() == [0, 0, 0, 1, 0, 1, 0]


KDD_TAIL = (
    "0,0,0,0,0,0,0,0,0,0,{c},{c},0.00,0.00,0.00,0.00,1.00,0.00,0.00,{h},{h},1.00,0.00,{r},"
    "0.00,0.00,0.00,0.00,0.00"
)  # num_compromised ... dst_host_srv_rerror_rate
KDD_ROWS = [
    "0,tcp,http,SF,181,5450,0,0,0,0,0,1," + KDD_TAIL.format(c=8, h=9, r="0.11") + ",normal.",
    "0,icmp,ecr_i,SF,1032,0,0,0,0,0,0,0," + KDD_TAIL.format(c=511, h=255, r="1.00") + ",smurf.",
    "0,udp,new_service,S0,1,2,0,0,0,0,0,0," + KDD_TAIL.format(c=1, h=1, r="1.00") + ",neptune.",
]


def test_kdd_one_hot_labels_and_stable_columns(tmp_path):
    with gzip.open(tmp_path / "kddcup_tiny.gz", "wt") as f:
        f.write("\n".join(KDD_ROWS) + "\n")
    path = tmp_path / "kddcup_tiny.gz"
    assert detect_format(path) == "kdd"
    data = load_dataset(path)
    n_onehot = sum(len(v) for v in KDD_CATEGORIES.values())
    assert data.X.shape == (3, 41 - 3 + n_onehot)
    assert data.y.tolist() == [0, 1, 1]
    row = dict(zip(data.feature_names, data.X[0], strict=True))
    assert row["protocol_type_tcp"] == 1 and row["service_http"] == 1 and row["flag_SF"] == 1
    assert row["protocol_type_udp"] == 0 and row["src_bytes"] == 181
    assert data.X[2, [i for i, n in enumerate(data.feature_names) if n.startswith("service_")]].sum() == 0

    plain = write(tmp_path / "traffic.csv", "\n".join(KDD_ROWS[:2]) + "\n")  # no kdd in the name: sniffed
    assert detect_format(plain) == "kdd"
    assert load_dataset(plain).feature_names == data.feature_names

    cats = kdd_categories(path)
    assert cats["service"] == ["ecr_i", "http", "new_service"]
    small = load_dataset(path, categories=cats)
    assert [n for n in small.feature_names if n.startswith("service_")] == [
        "service_ecr_i",
        "service_http",
        "service_new_service",
    ]
    assert small.X[2, small.feature_names.index("service_new_service")] == 1


def test_kdd_column_names_from_columns_txt(tmp_path):
    with gzip.open(tmp_path / "corrected.gz", "wt") as f:
        f.write(KDD_ROWS[0] + "\n")
    write(tmp_path / "columns.txt", "\n".join(KDD_COLUMNS[:-1]) + "\n")
    with pytest.raises(FedadError, match="columns.txt: expected 42"):
        load_dataset(tmp_path / "corrected.gz")
    write(tmp_path / "columns.txt", "\n".join(KDD_COLUMNS) + "\n")
    assert load_dataset(tmp_path / "corrected.gz").feature_names[0] == "duration"


def test_ton_iot_bom_crlf_stripping_and_states(tmp_path):
    text = (
        "\ufeffdate,time,door_state,sphone_signal,label,type\r\n"
        "25-Apr-19, 14:42:33 ,closed,0,1,ddos\r\n"
        "25-Apr-19, 14:42:38 , Open ,true,0,normal\r\n"
        "25-Apr-19,9:01:02,CLOSED,false,0,normal\r\n"
    )
    path = write(tmp_path / "Train_Test_IoT_Garage_Door.csv", text)
    assert detect_format(path) == "ton_iot"
    data = load_dataset(path)
    assert data.feature_names == ["door_state", "sphone_signal"]
    np.testing.assert_array_equal(data.X, [[0, 0], [1, 1], [0, 0]])
    assert data.y.tolist() == [1, 0, 0]
    assert pd.Timestamp(data.time[0]) == pd.Timestamp("2019-04-25 14:42:33")
    assert pd.Timestamp(data.time[2]) == pd.Timestamp("2019-04-25 09:01:02")


# ----------------------------------------------------------------------------------- real data (skip if absent)


def test_real_skab(datasets_dir):
    root = datasets_dir / "skab"
    data = load_dataset(root)
    assert len(data) == 37_401 + 9_405 and len(data.feature_names) == 8
    assert int(data.y.sum()) == 13_067 and not np.isnan(data.X).any()
    files = load_skab_files(root)
    assert len(files) == 35 and files[1][0] == "other/1.csv"
    first = load_dataset(root / "valve1" / "0.csv")
    assert first.feature_names[-1] == "Volume Flow RateRMS" and len(first) == len(dict(files)["valve1/0.csv"])


def test_real_kdd_test_set(datasets_dir):
    path = datasets_dir / "kddcup99_10pct" / "corrected.gz"
    data = load_dataset(path)
    assert data.X.shape == (311_029, 38 + sum(len(v) for v in KDD_CATEGORIES.values()))
    assert abs(data.y.mean() - 0.8052) < 1e-3
    assert data.X[:, data.feature_names.index("protocol_type_icmp")].sum() == 164_969


TON_ROWS = {
    "Fridge": 39_944,
    "GPS_Tracker": 38_960,
    "Garage_Door": 39_587,
    "Modbus": 31_106,
    "Motion_Light": 39_488,
    "Thermostat": 32_774,
    "Weather": 39_260,
}


def test_real_ton_iot(datasets_dir):
    total = attacks = 0
    for device, rows in TON_ROWS.items():
        data = load_dataset(datasets_dir / "ton_iot" / f"Train_Test_IoT_{device}.csv")
        assert len(data) == rows and not np.isnan(data.X).any(), device
        assert "type" not in data.feature_names and int((data.y == 0).sum()) == 15_000
        assert not pd.isna(data.time).any()
        total, attacks = total + rows, attacks + int(data.y.sum())
    assert total == 261_119 and abs(attacks / total - 0.5979) < 1e-3


def test_large_csv_is_read_in_blocks_with_the_same_result(tmp_path, monkeypatch):
    """Above CHUNKED_CSV_BYTES a CSV is parsed block by block (bounded memory); max_rows keeps the newest rows."""
    import fedad.common.data as data_module
    from fedad.common.synth import write_plant

    write_plant(tmp_path, nodes=1, records=20_000, seed=2, formats=("csv",))
    path = tmp_path / "node_01.csv"
    whole = data_module.load_dataset(path)
    monkeypatch.setattr(data_module, "CHUNKED_CSV_BYTES", 64 << 10)
    monkeypatch.setattr(data_module, "CSV_BLOCK_BYTES", 64 << 10)  # many blocks
    blocks = data_module.load_dataset(path)
    assert blocks.feature_names == whole.feature_names
    assert np.array_equal(blocks.X, whole.X, equal_nan=True) and np.array_equal(blocks.y, whole.y)
    newest = data_module.load_dataset(path, max_rows=777)
    assert np.array_equal(newest.X, whole.X[-777:], equal_nan=True) and np.array_equal(newest.y, whole.y[-777:])
    monkeypatch.setattr(data_module, "CHUNKED_CSV_BYTES", 1 << 40)  # small files: read whole, then trimmed
    assert np.array_equal(data_module.load_dataset(path, max_rows=777).X, newest.X, equal_nan=True)


def test_text_columns_left_out_are_named_when_read_in_blocks(tmp_path, monkeypatch):
    import fedad.common.data as data_module

    rows = "".join(f"{i % 7},srv{i % 3},{i / 10},0\n" for i in range(5000))
    path = write(tmp_path / "big.csv", "bytes,host,rate,label\n" + rows)
    monkeypatch.setattr(data_module, "CHUNKED_CSV_BYTES", 16 << 10)
    monkeypatch.setattr(data_module, "CSV_BLOCK_BYTES", 16 << 10)
    data = data_module.load_dataset(path)
    assert data.feature_names == ["bytes", "rate"] and data.ignored == ["host"] and len(data) == 5000


def test_date_columns_besides_the_time_column_are_named_as_left_out(tmp_path):
    frame = pd.DataFrame(
        {
            "timestamp": pd.date_range("2024-01-01", periods=4, freq="min"),
            "end_time": pd.date_range("2024-01-02", periods=4, freq="min"),
            "host": ["a", "b", "a", "b"],
            "bytes": [1.0, 2.0, 3.0, 4.0],
        }
    )
    frame.to_parquet(tmp_path / "flows.parquet")
    data = load_dataset(tmp_path / "flows.parquet")
    assert data.feature_names == ["bytes"] and data.ignored == ["end_time", "host"] and data.time is not None


# --------------------------------------------------------------------------- fail fast and loudly (issue 12)


@pytest.mark.parametrize("fmt", ["auto", "csv"])
def test_headerless_csv_is_refused_not_read_wrong(tmp_path, fmt):
    # a header-less file with a text column: pandas would take row 1 as the header and drop 'tcp'/'udp'
    path = write(tmp_path / "flows.csv", "0.5,tcp,181,0\n0.7,udp,12,1\n0.1,tcp,99,0\n")
    with pytest.raises(FedadError, match="first line looks like a data row, not a header"):
        load_dataset(path, format=fmt)
    ok = write(tmp_path / "ok.csv", "duration,proto,bytes,label\n0.5,tcp,181,0\n0.7,udp,12,1\n")
    assert load_dataset(ok, format=fmt).feature_names == ["duration", "bytes"]
    # a column named by a number is fine where a column named by text holds numbers (label here)
    numbered = write(tmp_path / "numbered.csv", "sensor_1,2,label\n0.5,1.0,0\n")
    assert load_dataset(numbered, format=fmt).feature_names == ["sensor_1", "2"]
    # half of the cells or fewer are numbers, but a later line has its numbers (and only those) in the same
    # places: missing values skipped, a text id column that holds a number on line 2
    for text in (
        "0.134,tcp,0.847,b\n0.255,udp,0.5,a\n",
        "5,tcp,7,udp\n6,udp,,tcp\n",
        "NA,tcp,0.847,b\n0.255,N/A,0.5,a\n",
        "A12,0.7,tcp\n007,0.5,udp\nB3,0.2,tcp\n",
    ):
        with pytest.raises(FedadError, match="first line looks like a data row, not a header: it has numbers"):
            load_dataset(write(tmp_path / "half.csv", text), format=fmt)
    # ambiguous: a header that names every numeric column by a number reads like data, and is refused with
    # what to do either way
    with pytest.raises(FedadError, match="give the columns it names by numbers names that are not"):
        load_dataset(write(tmp_path / "names.csv", "host,2,proto\nsrv1,0.5,tcp\n"), format=fmt)
    # a header over text and numeric columns, with a missing value and an NA in the first data row
    mixed = write(tmp_path / "mixed.csv", "host,bytes,proto,label\nsrv1,,tcp,0\nsrv2,12,NA,1\n")
    data = load_dataset(mixed, format=fmt)
    assert data.feature_names == ["bytes"] and data.ignored == ["host", "proto"]
    assert data.ignored_note() == ("left out non-numeric column(s) host, proto: text and date columns are not features")
    assert load_dataset(ok, format=fmt).ignored == ["proto"]
    assert load_dataset(numbered, format=fmt).ignored_note() is None


def test_nsl_kdd_43_column_layout_loads_with_format_kdd(tmp_path):
    nsl = [r.rstrip(".").rsplit(",", 1) for r in KDD_ROWS]  # NSL-KDD: labels without the dot, then difficulty
    rows = [f"{feats},{label},{d}" for (feats, label), d in zip(nsl, (21, 15, 19), strict=True)]
    text = "\n".join(rows) + "\n"
    path = write(tmp_path / "KDDTrain+.txt", text)
    assert detect_format(path) == "kdd"
    for fmt in ("kdd", "auto"):
        data = load_dataset(path, format=fmt)
        assert data.y.tolist() == [0, 1, 1]
        assert "difficulty" not in data.feature_names and "label" not in data.feature_names
        assert (
            data.feature_names
            == load_dataset(write(tmp_path / "k99.csv", "\n".join(KDD_ROWS) + "\n"), format="kdd").feature_names
        )
        assert data.X[0, data.feature_names.index("src_bytes")] == 181
    bad = write(tmp_path / "short.txt", "0,tcp,http,SF,181\n")
    with pytest.raises(FedadError, match="KDD Cup 99 file has 42"):
        load_dataset(bad, format="kdd")


def test_label_column_is_checked_from_the_header_alone(tmp_path):
    from fedad.common.data import has_label_column

    # rows that could not be loaded at all: only the header may be read to answer
    unlabelled = write(tmp_path / "u.csv", "a,b,c\n" + "x,y,z\n" * 10)
    labelled = write(tmp_path / "l.csv", "a,b,Label\n" + "x,y,z\n" * 10)
    assert not has_label_column(unlabelled)
    assert has_label_column(labelled)
    assert has_label_column(unlabelled, label_column="c")
    skab = write(tmp_path / "s.csv", "datetime;Accelerometer1RMS;anomaly;changepoint\n2020-01-01;1;0;0\n")
    assert has_label_column(skab)
    pd.DataFrame({"a": [1.0], "label": [0]}).to_parquet(tmp_path / "p.parquet")
    assert has_label_column(tmp_path / "p.parquet") and not has_label_column(tmp_path / "p.parquet", label_column="y")

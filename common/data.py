"""Load labelled tabular records into one numeric matrix: generic CSV/Parquet and the SKAB, KDD Cup 99 and
TON_IoT layouts.

Every loader ends in ``Dataset``: ``X`` float64 ``(n, d)`` with NaN for missing values, ``feature_names``,
``y`` int8 0/1 or None, ``time`` or None, and ``source``. Bad input raises ``FedadError`` with one line
that names the file and what is wrong with it.
"""

from __future__ import annotations

import csv
import gzip
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pa_csv

from fedad.common.errors import FedadError

FORMATS: tuple[str, ...] = ("auto", "csv", "parquet", "skab", "kdd", "ton_iot")
TIME_COLUMN_NAMES: tuple[str, ...] = ("timestamp", "time", "datetime", "date")
PARQUET_SUFFIXES: tuple[str, ...] = (".parquet", ".pq")

SKAB_HEADER_START = "datetime;Accelerometer1RMS"
# Large CSVs are parsed block by block: what parsing holds at once is bounded by CSV_BLOCK_BYTES (times the
# text-to-frame expansion of one block), not by the file's size; the rows kept (``max_rows``, the most recent
# ones) bound the rest at about 2 x max_rows x features x 8 bytes.
CSV_BLOCK_BYTES = 16 << 20
CHUNKED_CSV_BYTES = 64 << 20  # CSVs above this size (or any CSV read with ``max_rows``) are read in blocks

# KDD Cup 99: the 41 features and the label, as in the NSL-KDD ARFF header (used when no columns.txt).
KDD_COLUMNS: tuple[str, ...] = (
    "duration",
    "protocol_type",
    "service",
    "flag",
    "src_bytes",
    "dst_bytes",
    "land",
    "wrong_fragment",
    "urgent",
    "hot",
    "num_failed_logins",
    "logged_in",
    "num_compromised",
    "root_shell",
    "su_attempted",
    "num_root",
    "num_file_creations",
    "num_shells",
    "num_access_files",
    "num_outbound_cmds",
    "is_host_login",
    "is_guest_login",
    "count",
    "srv_count",
    "serror_rate",
    "srv_serror_rate",
    "rerror_rate",
    "srv_rerror_rate",
    "same_srv_rate",
    "diff_srv_rate",
    "srv_diff_host_rate",
    "dst_host_count",
    "dst_host_srv_count",
    "dst_host_same_srv_rate",
    "dst_host_diff_srv_rate",
    "dst_host_same_src_port_rate",
    "dst_host_srv_diff_host_rate",
    "dst_host_serror_rate",
    "dst_host_srv_serror_rate",
    "dst_host_rerror_rate",
    "dst_host_srv_rerror_rate",
    "label",
)
# The union of the values in the 10 % training set and the labelled test set, so both get the same columns.
KDD_CATEGORIES: dict[str, tuple[str, ...]] = {
    "protocol_type": ("icmp", "tcp", "udp"),
    "service": (
        "IRC",
        "X11",
        "Z39_50",
        "auth",
        "bgp",
        "courier",
        "csnet_ns",
        "ctf",
        "daytime",
        "discard",
        "domain",
        "domain_u",
        "echo",
        "eco_i",
        "ecr_i",
        "efs",
        "exec",
        "finger",
        "ftp",
        "ftp_data",
        "gopher",
        "hostnames",
        "http",
        "http_443",
        "icmp",
        "imap4",
        "iso_tsap",
        "klogin",
        "kshell",
        "ldap",
        "link",
        "login",
        "mtp",
        "name",
        "netbios_dgm",
        "netbios_ns",
        "netbios_ssn",
        "netstat",
        "nnsp",
        "nntp",
        "ntp_u",
        "other",
        "pm_dump",
        "pop_2",
        "pop_3",
        "printer",
        "private",
        "red_i",
        "remote_job",
        "rje",
        "shell",
        "smtp",
        "sql_net",
        "ssh",
        "sunrpc",
        "supdup",
        "systat",
        "telnet",
        "tftp_u",
        "tim_i",
        "time",
        "urh_i",
        "urp_i",
        "uucp",
        "uucp_path",
        "vmnet",
        "whois",
    ),
    "flag": ("OTH", "REJ", "RSTO", "RSTOS0", "RSTR", "S0", "S1", "S2", "S3", "SF", "SH"),
}
KDD_NORMAL_LABELS = ("normal.", "normal")
KDD_DIFFICULTY = "difficulty"  # NSL-KDD's 43rd column: how many of 21 learners got the record wrong (not a feature)
# What the CSV reader reads as missing (pyarrow's defaults, and pandas' "None" and "<NA>"), plus "?" of UCI files
MISSING_MARKERS = frozenset(pa_csv.ConvertOptions().null_values) | {"None", "<NA>", "?"}
HEADER_CHECK_LINES = 5  # data lines the first line is compared with (check_header)

# TON_IoT device states written as words; high/low is the Fridge's temp_condition.
STATE_WORDS: dict[str, float] = {
    "on": 1.0,
    "off": 0.0,
    "true": 1.0,
    "false": 0.0,
    "open": 1.0,
    "closed": 0.0,
    "high": 1.0,
    "low": 0.0,
}


@dataclass
class Dataset:
    """Records as one float64 matrix with NaN for missing values, plus optional 0/1 labels and times."""

    X: np.ndarray
    feature_names: list[str]
    y: np.ndarray | None
    time: np.ndarray | None
    source: str
    ignored: list[str] = field(default_factory=list)  # text and date columns left out of the features

    def __len__(self) -> int:
        return len(self.X)

    def ignored_note(self) -> str | None:
        """A line naming the text and date columns left out of the features, or None when there are none."""
        if not self.ignored:
            return None
        return f"left out non-numeric column(s) {_column_list(self.ignored)}: text and date columns are not features"


def check_min_rows(n: int, window: int, source: str = "the data") -> None:
    """Raise FedadError unless ``n`` rows give at least one window of ``window`` rows."""
    if window < 1:
        raise FedadError(f"window must be >= 1, got {window}")
    if n < window:
        raise FedadError(f"{source} has {n} rows, too few for window {window}: need at least {window} rows")


def load_dataset(
    path: str | Path,
    format: str = "auto",
    label_column: str | None = None,
    time_column: str | None = None,
    features: Sequence[str] | str | None = None,
    sep: str | None = None,
    categories: Mapping[str, Sequence[str]] | None = None,
    max_rows: int | None = None,
) -> Dataset:
    """Load a file (or a SKAB directory) as a ``Dataset``.

    ``format``: auto (by extension, name and header), csv, parquet, skab, kdd or ton_iot. Label column:
    ``label_column``, else the format's (``label``; SKAB ``anomaly``). Time column: ``time_column``, else
    one named timestamp/time/datetime/date. Features: ``features`` (names, or one comma-separated string),
    else every numeric column but label and time; text and date columns are left out and named in
    ``Dataset.ignored``. ``sep``: CSV separator (sniffed from the header when None). ``categories``: KDD
    one-hot categories per column (default ``KDD_CATEGORIES``; see ``kdd_categories``). ``max_rows``: keep
    only the most recent rows of a CSV, read in blocks (``CSV_BLOCK_BYTES``) so that memory is bounded by it
    rather than the file's size.
    """
    data = _load_dataset(path, format, label_column, time_column, features, sep, categories, max_rows)
    infinite = np.isinf(data.X)
    if infinite.any():  # refused with the file and the columns named, not later by the preprocessing
        row = int(np.flatnonzero(infinite.any(axis=1))[0])
        bad = [c for j, c in enumerate(data.feature_names) if infinite[:, j].any()]
        raise FedadError(
            f"{data.source}: infinite values in column(s) {_column_list(bad)} (first in data row {row + 1} of the "
            "rows read); leave those cells empty (missing) or give finite numbers"
        )
    return data


def _load_dataset(
    path: str | Path,
    format: str,
    label_column: str | None,
    time_column: str | None,
    features: Sequence[str] | str | None,
    sep: str | None,
    categories: Mapping[str, Sequence[str]] | None,
    max_rows: int | None,
) -> Dataset:
    path = Path(path)
    fmt = str(format).lower()
    if fmt not in FORMATS:
        raise FedadError(f"unknown data format '{format}'; choose from {', '.join(FORMATS)}")
    if not path.exists():
        raise FedadError(f"data file not found: {path}")
    if fmt == "auto":
        fmt = detect_format(path)
    if path.is_dir() and fmt != "skab":
        raise FedadError(f"{path} is a directory; only SKAB data can be loaded from a directory (give a file)")
    if fmt == "kdd":
        return _load_kdd(path, label_column, features, categories)
    if fmt == "skab":
        frame = _read_skab(path)
        return dataset_from_frame(
            frame,
            str(path),
            label_column or "anomaly",
            time_column or "datetime",
            features,
            drop=("changepoint",),
            label_required=label_column is not None,
            time_required=time_column is not None,
        )
    if fmt == "ton_iot":
        frame = _read_ton_iot(path)
        return dataset_from_frame(
            frame,
            str(path),
            label_column or "label",
            time_column or "time",
            features,
            drop=("type",),
            label_required=label_column is not None,
            time_required=time_column is not None,
        )
    if max_rows is not None and int(max_rows) < 1:
        raise FedadError(f"--max-rows must be at least 1, got {max_rows}")
    if fmt == "csv" and path.stat().st_size > CHUNKED_CSV_BYTES:
        return _load_csv_in_blocks(path, sep, label_column, time_column, features, max_rows)
    frame = read_parquet(path) if fmt == "parquet" else read_csv(path, sep)
    if max_rows is not None and len(frame) > int(max_rows):
        frame = frame.iloc[len(frame) - int(max_rows) :].reset_index(drop=True)
    return dataset_from_frame(frame, str(path), label_column, time_column, features)


def _load_csv_in_blocks(
    path: Path,
    sep: str | None,
    label_column: str | None,
    time_column: str | None,
    features: Sequence[str] | str | None,
    max_rows: int | None,
) -> Dataset:
    """``load_dataset`` for a CSV read block by block, keeping at most the last ``max_rows`` rows."""
    from collections import deque

    _check_file(path)
    sep = sep or sniff_separator(path)
    if len(sep) != 1:
        raise FedadError(f"separator must be one character, got {sep!r}")
    check_header(path, sep)
    parts: deque[Dataset] = deque()
    kept, names = 0, None
    ignored: list[str] = []
    read = pa_csv.ReadOptions(block_size=CSV_BLOCK_BYTES)
    parse = pa_csv.ParseOptions(delimiter=sep)
    try:
        # types are inferred from the first block: integer or empty columns there are read as float64 so that
        # a later block with decimals or values in them still converts
        first = pa_csv.open_csv(path, read_options=read, parse_options=parse)
        widen = {f.name: pa.float64() for f in first.schema if pa.types.is_integer(f.type) or pa.types.is_null(f.type)}
        first.close()
        reader = pa_csv.open_csv(
            path, read_options=read, parse_options=parse, convert_options=pa_csv.ConvertOptions(column_types=widen)
        )
        for batch in reader:
            frame = batch.to_pandas()
            frame.columns = [str(c).lstrip("\ufeff").strip() for c in frame.columns]
            if sep == ";":
                _decimal_commas_to_numbers(frame)
            if len(frame) == 0:
                continue
            part = dataset_from_frame(frame, str(path), label_column, time_column, names or features)
            names = names or part.feature_names
            ignored = ignored or part.ignored
            parts.append(part)
            kept += len(part.X)
            while max_rows is not None and kept - len(parts[0].X) >= max_rows:
                kept -= len(parts.popleft().X)
    except (pa.ArrowInvalid, ValueError, UnicodeDecodeError, OSError, EOFError) as exc:
        raise _parse_error(path, "CSV", exc) from None
    if not parts:
        raise FedadError(f"{path}: no data rows (only a header)")
    start = 0 if max_rows is None else max(0, kept - int(max_rows))
    X = np.concatenate([p.X for p in parts])[start:]
    y = None if parts[0].y is None else np.concatenate([p.y for p in parts])[start:]
    t = None if parts[0].time is None else np.concatenate([p.time for p in parts])[start:]
    return Dataset(X=X, feature_names=list(names or []), y=y, time=t, source=str(path), ignored=ignored)


# ---------------------------------------------------------------------------------------------------- detection


def _first_lines(path: Path, count: int, limit: int = 65_536) -> list[str]:
    """Up to ``count`` first lines of a (possibly gzip-compressed) text file, BOM removed; [] when empty or
    binary. Only the first ``limit`` bytes are read."""
    try:
        opener = gzip.open if path.suffix.lower() == ".gz" else open
        with opener(path, "rb") as f:
            head = f.read(limit)
    except (OSError, EOFError):
        return []
    text = head.decode("utf-8", errors="replace").lstrip("\ufeff")
    return text.splitlines()[:count] if text.strip() else []


def _first_line(path: Path, limit: int = 65_536) -> str:
    """The first line of a (possibly gzip-compressed) text file, BOM removed; '' when empty or binary."""
    lines = _first_lines(path, 1, limit)
    return lines[0] if lines else ""


def detect_format(path: str | Path) -> str:
    """The format of ``path`` from its extension, its name and its header line."""
    path = Path(path)
    if path.is_dir():
        files = _csv_files(path)
        if files and _first_line(files[0]).startswith(SKAB_HEADER_START):
            return "skab"
        raise FedadError(f"{path} is a directory and not SKAB data; give a file")
    name = path.name.lower()
    if name.endswith(PARQUET_SUFFIXES):
        return "parquet"
    if name.startswith("train_test_iot"):
        return "ton_iot"
    if "kddcup" in name or name.startswith("corrected"):
        return "kdd"
    head = _first_line(path)
    if head.startswith(SKAB_HEADER_START):
        return "skab"
    fields = head.split(",")
    if len(fields) in (42, 43) and fields[1] in KDD_CATEGORIES["protocol_type"]:
        return "kdd"
    if head.startswith("date,time,") and head.rstrip().endswith("label,type"):
        return "ton_iot"
    return "csv"


def has_label_column(
    path: str | Path, format: str = "auto", label_column: str | None = None, sep: str | None = None
) -> bool:
    """Whether the file has the label column ``load_dataset`` would use, from its header or schema alone."""
    path = Path(path)
    fmt = detect_format(path) if str(format).lower() == "auto" else str(format).lower()
    if fmt == "kdd":
        return label_column is None or label_column == "label"
    wanted = (label_column or {"skab": "anomaly"}.get(fmt, "label")).lower()
    if fmt == "parquet":
        import pyarrow.parquet as pq

        try:
            names = pq.read_schema(path).names
        except (pa.ArrowInvalid, OSError) as exc:
            raise _parse_error(path, "Parquet", exc) from None
    elif path.is_dir():
        names = [c for f in _csv_files(path) for c in header_cells(f, ";")]
    else:
        names = header_cells(path, ";" if fmt == "skab" else sep)
    return any(str(n).lstrip("\ufeff").strip().lower() == wanted for n in names)


# ----------------------------------------------------------------------------------------------- generic readers


def sniff_separator(path: str | Path) -> str:
    """The separator of a CSV header: whichever of ``,`` ``;`` tab occurs most (``,`` on a tie or none)."""
    head = _first_line(Path(path))
    counts = {s: head.count(s) for s in (",", ";", "\t")}
    best = max(counts, key=lambda s: (counts[s], s == ","))
    return best if counts[best] else ","


def _check_file(path: Path) -> None:
    if not path.is_file():
        raise FedadError(f"data file not found: {path}")
    size = path.stat().st_size
    if size == 0:
        raise FedadError(f"{path}: empty file")
    if size <= 1 << 16:  # blank lines only: refused here, not by pyarrow, whose failed reader can abort the exit
        with open(path, "rb") as f:
            if not f.read().strip():
                raise FedadError(f"{path}: empty file (blank lines only)")


def _parse_error(path: Path, what: str, exc: Exception) -> FedadError:
    line = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
    return FedadError(f"{path}: cannot read as {what}: {line}")


def read_csv(path: str | Path, sep: str | None = None, **kwargs) -> pd.DataFrame:
    """Read a CSV with a header (pyarrow engine; ``sep`` sniffed when None; a UTF-8 BOM is dropped)."""
    path = Path(path)
    _check_file(path)
    sep = sep or sniff_separator(path)
    if len(sep) != 1:
        raise FedadError(f"separator must be one character, got {sep!r}")
    if kwargs.get("header", "infer") == "infer":
        check_header(path, sep)
    try:
        frame = pd.read_csv(path, sep=sep, engine="pyarrow", **kwargs)
    except (pa.ArrowInvalid, ValueError, UnicodeDecodeError, OSError, EOFError) as exc:
        raise _parse_error(path, "CSV", exc) from None
    frame.columns = [str(c).lstrip("\ufeff").strip() for c in frame.columns]
    if sep == ";":
        _decimal_commas_to_numbers(frame)
    return frame


def header_cells(path: str | Path, sep: str | None = None) -> list[str]:
    """The cells of a CSV file's first line (quotes and blanks stripped), without reading further."""
    lines = _line_cells(Path(path), sep, 1)
    return lines[0] if lines else []


def _line_cells(path: Path, sep: str | None, count: int) -> list[list[str]]:
    """The cells of a CSV file's first ``count`` lines (quotes and blanks stripped)."""
    lines = _first_lines(path, count)
    if not lines:
        return []
    sep = sep or sniff_separator(path)
    rows = csv.reader(lines, delimiter=sep)  # quoted names may hold the separator ("Flow, m3/h")
    return [[c.strip().strip('"').strip("'").strip() for c in row] for row in rows]


def _is_number(text: str) -> bool:
    try:
        float(text.replace(",", "."))
    except ValueError:
        return False
    return True


def _same_kinds(first: list[str], other: list[str]) -> bool:
    """Whether two CSV lines hold numbers in the same places and nothing but numbers there (text lines up with
    text), with at least one number; cells empty or holding a missing-value marker (``MISSING_MARKERS``) in
    either line are not compared. Two data rows do this; a header above numeric columns does not (its cells
    there are names), unless those names are numbers themselves."""
    if len(first) != len(other):
        return False
    pairs = [(a, b) for a, b in zip(first, other, strict=True) if a not in MISSING_MARKERS and b not in MISSING_MARKERS]
    return any(_is_number(a) for a, _ in pairs) and all(_is_number(a) == _is_number(b) for a, b in pairs)


def check_header(path: str | Path, sep: str | None = None) -> None:
    """Refuse a CSV whose first line is a data row: pandas would take it as the column names and drop
    the text columns, so the file would be read wrong without a word. A first line is taken for a data row
    when most of its cells are numbers, or when one of the next ``HEADER_CHECK_LINES`` lines has its numbers
    in the same places (``_same_kinds``)."""
    lines = _line_cells(Path(path), sep, 1 + HEADER_CHECK_LINES)
    cells = [c for c in lines[0] if c] if lines else []
    repeated = sorted({c for c in cells if cells.count(c) > 1})
    if repeated:  # pandas would rename the second one (a.1) and the columns would be matched by the wrong names
        raise FedadError(f"{path}: column name(s) used twice in the header: {_column_list(repeated)}")
    numbers = [c for c in cells if _is_number(c)]
    if cells and len(numbers) * 2 > len(cells):
        raise FedadError(
            f"{path}: the first line looks like a data row, not a header ({len(numbers)} of {len(cells)} cells are "
            f"numbers: {_column_list(numbers, 4)}); add a header line naming the columns (KDD Cup 99 and NSL-KDD "
            "files without one: --format kdd)"
        )
    like = next((i for i, line in enumerate(lines[1:], start=2) if _same_kinds(lines[0], line)), None)
    if like is not None:
        raise FedadError(
            f"{path}: the first line looks like a data row, not a header: it has numbers ({_column_list(numbers, 4)}) "
            f"in the same places as line {like}, and text where line {like} has text; add a header line naming the "
            "columns, or, if the first line is the header, give the columns it names by numbers names that are not"
        )


_DECIMAL_COMMA = r"^\s*[-+]?\d*,\d+(?:[eE][-+]?\d+)?\s*$"


def _decimal_commas_to_numbers(frame: pd.DataFrame) -> None:
    """In ``;``-separated files, text columns of decimal-comma numbers (``1,5``) become numbers."""
    for c in frame.columns:
        series = frame[c]
        if _is_numeric(series) or not (pd.api.types.is_string_dtype(series.dtype) or series.dtype == object):
            continue
        text = series.dropna().astype(str)
        if text.empty or not text.str.contains(",", regex=False).any():
            continue
        if text.str.match(_DECIMAL_COMMA).where(text.str.contains(",", regex=False), True).all():
            converted = pd.to_numeric(series.astype("string").str.replace(",", ".", regex=False), errors="coerce")
            if converted.isna().sum() == series.isna().sum():
                frame[c] = converted.astype(np.float64)


def read_parquet(path: str | Path) -> pd.DataFrame:
    """Read a Parquet file."""
    path = Path(path)
    _check_file(path)
    try:
        return pd.read_parquet(path)
    except (pa.ArrowInvalid, ValueError, OSError) as exc:
        raise _parse_error(path, "Parquet", exc) from None


# ------------------------------------------------------------------------------------------- frame -> Dataset


def _find_column(frame: pd.DataFrame, name: str) -> str | None:
    """``name`` as spelled in the frame: exact match first, else a unique case-insensitive one."""
    if name in frame.columns:
        return name
    matches = [c for c in frame.columns if str(c).lower() == name.lower()]
    return matches[0] if len(matches) == 1 else None


def _column_list(names: Sequence[str], limit: int = 12) -> str:
    shown = ", ".join(str(n) for n in list(names)[:limit])
    return shown + (f", ... ({len(names)} in all)" if len(names) > limit else "")


def _is_numeric(series: pd.Series) -> bool:
    return pd.api.types.is_numeric_dtype(series.dtype) or pd.api.types.is_bool_dtype(series.dtype)


def _numeric_looking(series: pd.Series) -> tuple[bool, str | None]:
    """Whether a text column is mostly numbers (so a few bad cells broke it), and one bad cell."""
    values = series.dropna()
    if values.empty:
        return True, None
    sample = values.iloc[:2000].astype(str)
    parsed = pd.to_numeric(sample, errors="coerce")
    bad = sample[parsed.isna()]
    return bool(parsed.notna().mean() >= 0.5), (bad.iloc[0] if len(bad) else None)


def _labels(frame: pd.DataFrame, column: str, source: str) -> np.ndarray:
    values = frame[column]
    if not _is_numeric(values):
        converted = pd.to_numeric(values, errors="coerce")
        if converted.isna().any() and values.notna().any():
            found = _column_list([repr(v) for v in pd.unique(values.dropna())[:5]])
            raise FedadError(f"{source}: label column '{column}' must hold 0/1, found {found}")
        values = converted
    if values.isna().any():
        raise FedadError(f"{source}: label column '{column}' has {int(values.isna().sum())} missing values")
    y = values.to_numpy(dtype=np.float64)
    odd = np.setdiff1d(np.unique(y), [0.0, 1.0])
    if len(odd):
        raise FedadError(f"{source}: label column '{column}' must hold 0/1, found {_column_list(odd.tolist(), 5)}")
    return y.astype(np.int8)


def _times(series: pd.Series) -> np.ndarray:
    """Numbers and datetimes as they are; text parsed to datetime64 when it parses, else kept as text."""
    if _is_numeric(series) or pd.api.types.is_datetime64_any_dtype(series.dtype):
        return series.to_numpy()
    try:
        return pd.to_datetime(series).to_numpy()
    except (ValueError, TypeError, OverflowError):
        return series.to_numpy(dtype=object)


def dataset_from_frame(
    frame: pd.DataFrame,
    source: str,
    label_column: str | None = None,
    time_column: str | None = None,
    features: Sequence[str] | str | None = None,
    drop: Sequence[str] = (),
    label_required: bool = True,
    time_required: bool = True,
) -> Dataset:
    """Turn a frame into a ``Dataset`` with the rules of ``load_dataset`` (``drop``: columns to ignore).

    A missing ``label_column`` is an error when ``label_required``, else the data is unlabelled; with no
    ``label_column`` a column named ``label`` is used when present. ``time_column`` likewise.
    """
    if frame.shape[1] == 0:
        raise FedadError(f"{source}: no columns")
    if len(frame) == 0:
        raise FedadError(f"{source}: no data rows (only a header)")
    columns = list(frame.columns)
    if label_column is not None:
        label = _find_column(frame, label_column)
        if label is None and label_required:
            raise FedadError(f"{source}: label column '{label_column}' not found (columns: {_column_list(columns)})")
    else:
        label = _find_column(frame, "label")
    if time_column is not None:
        time_name = _find_column(frame, time_column)
        if time_name is None and time_required:
            raise FedadError(f"{source}: time column '{time_column}' not found (columns: {_column_list(columns)})")
    else:
        time_name = next((c for n in TIME_COLUMN_NAMES if (c := _find_column(frame, n)) is not None), None)
    reserved = {label, time_name} | {c for d in drop if (c := _find_column(frame, d)) is not None}

    if features is not None:
        wanted = [f.strip() for f in features.split(",")] if isinstance(features, str) else [str(f) for f in features]
        wanted = [f for f in wanted if f]
        missing = [f for f in wanted if _find_column(frame, f) is None]
        if missing:
            raise FedadError(
                f"{source}: feature column(s) not found: {_column_list(missing)} (columns: {_column_list(columns)})"
            )
        names = [c for f in wanted if (c := _find_column(frame, f)) is not None]  # all found: none missing
        textual = [c for c in names if not _is_numeric(frame[c]) and frame[c].notna().any()]
        if textual:
            raise FedadError(f"{source}: non-numeric feature column(s): {_column_list(textual)}")
    else:
        names, textual = [], []
        for c in columns:
            if c in reserved:
                continue
            series = frame[c]
            if _is_numeric(series) or series.isna().all():
                names.append(c)
                continue
            if pd.api.types.is_datetime64_any_dtype(series.dtype):  # a date column besides the time column
                textual.append(c)
                continue
            mostly_numbers, bad = _numeric_looking(series)
            if mostly_numbers:
                raise FedadError(
                    f"{source}: column '{c}' is not numeric (e.g. value {bad!r}); fix the file "
                    "or choose the features to load"
                )
            textual.append(c)
        if not names:
            detail = f" (non-numeric columns: {_column_list(textual)})" if textual else ""
            raise FedadError(f"{source}: no numeric feature columns{detail}")
    if not names:
        raise FedadError(f"{source}: no feature columns chosen")

    X = _stack_columns(
        [
            frame[c].to_numpy(dtype=np.float64, na_value=np.nan)
            if _is_numeric(frame[c])
            else np.full(len(frame), np.nan)
            for c in names
        ]
    )
    empty = [c for j, c in enumerate(names) if np.isnan(X[:, j]).all()]
    if empty:
        raise FedadError(f"{source}: column(s) with no values at all: {_column_list(empty)}")
    y = _labels(frame, label, source) if label is not None else None
    time = _times(frame[time_name]) if time_name is not None else None
    ignored = [str(c) for c in textual]
    return Dataset(X=X, feature_names=[str(c) for c in names], y=y, time=time, source=source, ignored=ignored)


# ------------------------------------------------------------------------------------------------------- SKAB


def _natural_key(path: Path) -> list:
    return [int(t) if t.isdigit() else t.lower() for t in re.split(r"(\d+)", path.as_posix())]


def _csv_files(directory: Path) -> list[Path]:
    return sorted(
        (p for p in directory.rglob("*.csv") if p.is_file()), key=lambda p: _natural_key(p.relative_to(directory))
    )


def read_skab_file(path: str | Path) -> pd.DataFrame:
    """One SKAB file as read (``;``-separated), ``datetime`` parsed."""
    path = Path(path)
    frame = read_csv(path, sep=";")
    if "datetime" in frame.columns:
        frame["datetime"] = pd.to_datetime(frame["datetime"], errors="coerce")
    return frame


def load_skab_files(directory: str | Path) -> list[tuple[str, pd.DataFrame]]:
    """Every ``*.csv`` under a SKAB directory as ``(relative name, frame)``, in natural order (2 before 10).

    The frames keep all columns (``anomaly``, ``changepoint``); for the per-file protocol turn each into a
    ``Dataset`` with ``load_dataset(directory / name, format="skab")`` or ``dataset_from_frame``.
    """
    directory = Path(directory)
    if not directory.is_dir():
        raise FedadError(f"SKAB directory not found: {directory}")
    files = _csv_files(directory)
    if not files:
        raise FedadError(f"{directory}: no .csv files")
    return [(p.relative_to(directory).as_posix(), read_skab_file(p)) for p in files]


def _read_skab(path: Path) -> pd.DataFrame:
    """A SKAB file, or every file of a directory concatenated; files without labels are anomaly-free (0)."""
    if path.is_file():
        return read_skab_file(path)
    frames = [frame for _, frame in load_skab_files(path)]
    if any("anomaly" in f.columns for f in frames):
        frames = [f if "anomaly" in f.columns else f.assign(anomaly=0.0) for f in frames]
    return pd.concat(frames, ignore_index=True)


# -------------------------------------------------------------------------------------------------------- KDD


def _kdd_column_names(path: Path) -> list[str]:
    """The 42 KDD Cup 99 names (41 features, label), plus ``difficulty`` for the 43-column NSL-KDD layout."""
    names_file = path.parent / "columns.txt"
    if not names_file.is_file():
        names = list(KDD_COLUMNS)
    else:
        names = [line.strip() for line in names_file.read_text().splitlines() if line.strip()]
        if names[-1:] == [KDD_DIFFICULTY]:
            names = names[:-1]
        if len(names) != 42 or not set(KDD_CATEGORIES) <= set(names) or names[-1] != "label":
            raise FedadError(f"{names_file}: expected 42 column names (41 features, then label), got {len(names)}")
    fields = len(_first_line(path).split(","))
    if fields == 43:  # NSL-KDD (KDDTrain+.txt, KDDTest+.txt): a difficulty level after the label
        return names + [KDD_DIFFICULTY]
    if fields != 42:
        raise FedadError(
            f"{path}: {fields} comma-separated fields in the first line; a KDD Cup 99 file has 42 "
            "(41 features and a label), an NSL-KDD file 43 (and a difficulty level), no header"
        )
    return names


def _read_kdd_table(path: Path, columns: Sequence[str] | None = None) -> pa.Table:
    _check_file(path)
    names = _kdd_column_names(path)
    try:
        if path.suffix.lower() == ".gz":  # inflating up front lets pyarrow parse in parallel
            with gzip.open(path, "rb") as f:
                source = pa.BufferReader(f.read())
        else:
            source = str(path)
        return pa_csv.read_csv(
            source,
            read_options=pa_csv.ReadOptions(column_names=names),
            convert_options=pa_csv.ConvertOptions(include_columns=columns),
        )
    except (pa.ArrowInvalid, OSError, EOFError, gzip.BadGzipFile) as exc:
        raise _parse_error(path, "KDD Cup 99 CSV (41 features and a label, no header)", exc) from None


def kdd_categories(*paths: str | Path) -> dict[str, list[str]]:
    """The sorted union of the protocol_type/service/flag values in ``paths`` (for ``categories=``)."""
    found: dict[str, set[str]] = {c: set() for c in KDD_CATEGORIES}
    for path in paths:
        table = _read_kdd_table(Path(path), list(KDD_CATEGORIES))
        for c in KDD_CATEGORIES:
            found[c].update(v for v in pc.unique(table.column(c)).to_pylist() if v is not None)
    return {c: sorted(v) for c, v in found.items()}


def _load_kdd(
    path: Path,
    label_column: str | None,
    features: Sequence[str] | str | None,
    categories: Mapping[str, Sequence[str]] | None,
) -> Dataset:
    """KDD Cup 99: categoricals one-hot over a fixed category list, label 1 = attack (not ``normal.``)."""
    if path.is_dir():
        raise FedadError(f"{path} is a directory; give a KDD Cup 99 file")
    table = _read_kdd_table(path)
    if len(table) == 0:
        raise FedadError(f"{path}: no data rows")
    cats = {c: list((categories or {}).get(c, KDD_CATEGORIES[c])) for c in KDD_CATEGORIES}
    label_name = label_column or "label"
    if label_name not in table.column_names:
        raise FedadError(f"{path}: label column '{label_name}' not found")
    blocks: list[tuple[str, np.ndarray]] = []
    for name in table.column_names:
        if name in (label_name, KDD_DIFFICULTY):
            continue
        column = table.column(name)
        if name in cats:
            codes = pc.index_in(pc.utf8_trim_whitespace(column), value_set=pa.array(cats[name], pa.string()))
            codes = pc.fill_null(codes, -1).to_numpy(zero_copy_only=False)  # -1: a value not in the list
            for k, value in enumerate(cats[name]):
                blocks.append((f"{name}_{value}", codes == k))
        elif pa.types.is_integer(column.type) or pa.types.is_floating(column.type):
            blocks.append((name, column.to_numpy().astype(np.float64)))
        else:
            raise FedadError(f"{path}: column '{name}' is not numeric; is this a KDD Cup 99 file?")
    if features is not None:
        wanted = [f.strip() for f in features.split(",")] if isinstance(features, str) else list(features)
        by_name = dict(blocks)
        missing = [f for f in wanted if f not in by_name]
        if missing:
            raise FedadError(f"{path}: feature column(s) not found: {_column_list(missing)}")
        blocks = [(f, by_name[f]) for f in wanted]
    X = _stack_columns([values for _, values in blocks])
    labels = pc.utf8_trim_whitespace(table.column(label_name).cast(pa.string()))
    normal = pc.is_in(labels, value_set=pa.array(KDD_NORMAL_LABELS)).to_numpy(zero_copy_only=False)
    return Dataset(X=X, feature_names=[n for n, _ in blocks], y=(~normal).astype(np.int8), time=None, source=str(path))


def _stack_columns(columns: Sequence[np.ndarray], chunk: int = 16_384) -> np.ndarray:
    """Columns as one C-ordered float64 matrix, filled by row blocks (each page of the result touched once)."""
    n = len(columns[0]) if columns else 0
    X = np.empty((n, len(columns)), dtype=np.float64)
    for start in range(0, n, chunk):
        stop = min(start + chunk, n)
        X[start:stop] = np.column_stack([c[start:stop] for c in columns])
    return X


# ---------------------------------------------------------------------------------------------------- TON_IoT


def _state_words_to_numbers(series: pd.Series) -> pd.Series:
    """on/off, true/false, open/closed, high/low (any case) to 1/0 and numbers to numbers, when that is all."""
    text = series.astype("string").str.strip()
    numbers = pd.to_numeric(text, errors="coerce")
    words = text.str.lower().map(STATE_WORDS).astype("Float64")
    merged = numbers.astype("Float64").fillna(words)
    if merged.isna().sum() > text.isna().sum():
        return text  # something else than states and numbers: leave it as text
    return merged.astype(np.float64)


def _read_ton_iot(path: Path) -> pd.DataFrame:
    """A Train_Test_IoT file: BOM and CRLF handled, strings stripped, states as 1/0, ``time`` = date + time."""
    if path.is_dir():
        raise FedadError(f"{path} is a directory; give one TON_IoT file (each device has its own columns)")
    frame = read_csv(path, sep=sniff_separator(path))
    for c in frame.columns:
        if c in ("date", "time", "type", "label") or _is_numeric(frame[c]):
            continue
        frame[c] = _state_words_to_numbers(frame[c])
    if "label" in frame.columns and not _is_numeric(frame["label"]):
        frame["label"] = pd.to_numeric(frame["label"].astype("string").str.strip(), errors="coerce")
    if "date" in frame.columns and "time" in frame.columns:
        stamp = frame["date"].astype("string").str.strip() + " " + frame["time"].astype("string").str.strip()
        parsed = pd.to_datetime(stamp, format="%d-%b-%y %H:%M:%S", errors="coerce")
        if parsed.isna().any():
            parsed = pd.to_datetime(stamp, format="mixed", errors="coerce")
        frame = frame.drop(columns=["date"]).assign(time=parsed)
    return frame

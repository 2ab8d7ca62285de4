"""Synthetic 12-sensor industrial plant: one motor-driven pump per node, with labelled anomaly episodes.

Normal data is physics-shaped, so it lies near a low-dimensional manifold that an autoencoder can learn:
a few slow latent drivers (speed setpoint, load, ambient weather, grid voltage, wear) pass through simple
motor and pump laws (power = torque * speed / efficiency, current = power / (sqrt(3) * V * pf), pressure and
flow from the pump affinity laws, blade-pass vibration frequency from speed, first-order thermal lags for the
winding and bearing temperatures), then each sensor adds its own calibration error and a little white noise.

Nodes are non-IID: each has its own rated machine, climate, grid, operating regime, load profile, wear rate,
calibration and noise level, all derived from ``(seed, node)``. Anomalies are contiguous episodes of five
kinds (``ANOMALY_KINDS``): spikes, drifts, stuck sensors, correlated multi-sensor faults, and regime
violations in which every sensor stays inside its normal marginal range but the combination is impossible.
One record is one sample every ``SAMPLE_SECONDS`` seconds; everything is vectorised numpy.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.csv as pa_csv
import pyarrow.parquet as pq

from fedad.common.errors import FedadError
from fedad.common.permissions import as_umask_allows

SENSORS: tuple[str, ...] = (
    "temperature",
    "vibration_freq",
    "vibration_rms",
    "motor_current",
    "voltage",
    "pressure",
    "flow",
    "humidity",
    "speed",
    "torque",
    "power",
    "bearing_temp",
)
SAMPLE_SECONDS = 10
START_TIMESTAMP = 1_704_067_200  # 2024-01-01T00:00:00Z; all nodes record the same period
DECIMALS = 3  # sensor resolution written to files
ANOMALY_KINDS: tuple[str, ...] = ("spike", "drift", "stuck", "correlated", "regime")
FORMATS: tuple[str, ...] = ("csv", "parquet")
REGIMES: tuple[str, ...] = ("continuous", "day_shift", "batch", "demand_following")
GENERATOR_VERSION = 1

_COL = {name: i for i, name in enumerate(SENSORS)}
# Share of anomaly episodes per kind and (min, max) episode length in records.
_KIND_WEIGHTS = np.array([0.30, 0.15, 0.20, 0.15, 0.20])
_KIND_LENGTHS = np.array([(1, 5), (20, 80), (10, 50), (10, 60), (5, 40)])
# Correlated faults: sensor shifts in units of the sensor's normal standard deviation.
_FAULT_PATTERNS: dict[str, dict[str, float]] = {
    "bearing": {"vibration_rms": 5.0, "bearing_temp": 3.0, "vibration_freq": 1.5, "temperature": 1.0},
    "cavitation": {"pressure": -3.0, "flow": -2.5, "vibration_rms": 3.0},
    "electrical": {"voltage": -4.0, "motor_current": 3.0, "temperature": 1.5},
    "overload": {"torque": 3.5, "motor_current": 3.5, "power": 3.5, "speed": -2.0, "temperature": 2.0},
}
# Regime violations: pairs that move together in normal operation; one is set high, the other low.
_REGIME_PAIRS: tuple[tuple[str, str], ...] = (
    ("motor_current", "torque"),
    ("speed", "vibration_freq"),
    ("power", "motor_current"),
    ("speed", "pressure"),
    ("torque", "power"),
    ("flow", "pressure"),
)


@dataclass(frozen=True)
class NodeProfile:
    """The machine, site and operating regime of one node (everything that makes nodes non-IID)."""

    regime: str
    rated_speed: float  # rpm
    rated_torque: float  # N*m
    slip: float
    efficiency: float
    power_factor: float
    rated_pressure: float  # bar
    rated_flow: float  # m3/h
    vanes: int
    vibration_base: float  # mm/s
    wear: float  # relative vibration growth over the node's records (tiny: it moves the normal manifold)
    motor_heating: float  # degC rise at rated current
    motor_tau: float  # records
    bearing_heating: float  # degC
    bearing_tau: float  # records
    grid_voltage: float  # V
    grid_sag: float  # relative daytime sag
    ambient_mean: float  # degC
    ambient_amplitude: float
    ambient_peak_hour: float
    ambient_trend: float  # degC over the node's records
    humidity_mean: float  # %RH
    humidity_per_degree: float
    load_low: float
    load_high: float
    speed_low: float
    speed_high: float
    segment_records: float  # mean records between recipe changes
    recipes: tuple[float, ...]  # relative speed setpoints of the node's product recipes, in [0, 1]
    noise_fraction: float  # white noise as a fraction of each sensor's normal spread


def node_profile(node: int, seed: int) -> NodeProfile:
    """Draw the profile of ``node`` for ``seed`` (deterministic, independent of the record count)."""
    rng = np.random.default_rng([seed, node, 0])
    regime = REGIMES[int(rng.integers(len(REGIMES)))]
    load_low = float(rng.uniform(0.15, 0.45))
    speed_low = float(rng.uniform(0.55, 0.8))
    return NodeProfile(
        regime=regime,
        rated_speed=float(rng.choice([1480.0, 1780.0, 2960.0]) * rng.uniform(0.97, 1.0)),
        rated_torque=float(rng.uniform(60.0, 450.0)),
        slip=float(rng.uniform(0.01, 0.04)),
        efficiency=float(rng.uniform(0.88, 0.96)),
        power_factor=float(rng.uniform(0.82, 0.91)),
        rated_pressure=float(rng.uniform(3.0, 12.0)),
        rated_flow=float(rng.uniform(40.0, 320.0)),
        vanes=int(rng.integers(5, 9)),
        vibration_base=float(rng.uniform(1.0, 4.5)),
        wear=float(rng.uniform(0.0, 0.005)),
        motor_heating=float(rng.uniform(25.0, 50.0)),
        motor_tau=float(rng.uniform(60.0, 150.0)),
        bearing_heating=float(rng.uniform(8.0, 22.0)),
        bearing_tau=float(rng.uniform(150.0, 300.0)),
        grid_voltage=float(rng.choice([380.0, 400.0, 415.0, 440.0]) + rng.uniform(-4.0, 4.0)),
        grid_sag=float(rng.uniform(0.005, 0.025)),
        ambient_mean=float(rng.uniform(8.0, 32.0)),
        ambient_amplitude=float(rng.uniform(2.5, 8.0)),
        ambient_peak_hour=float(rng.uniform(13.0, 17.0)),
        ambient_trend=float(rng.uniform(-1.5, 1.5)),
        humidity_mean=float(rng.uniform(35.0, 75.0)),
        humidity_per_degree=float(rng.uniform(1.0, 2.5)),
        load_low=load_low,
        load_high=float(rng.uniform(max(load_low + 0.3, 0.7), 1.0)),
        speed_low=speed_low,
        speed_high=float(rng.uniform(max(speed_low + 0.15, 0.9), 1.0)),
        segment_records=float(
            {"continuous": 4320.0, "day_shift": 1440.0, "batch": 270.0, "demand_following": 2160.0}[regime]
            * rng.uniform(0.7, 1.3)
        ),
        noise_fraction=float(rng.uniform(0.02, 0.045)),
        recipes=tuple(float(r) for r in np.sort(rng.random(int(rng.integers(3, 6))))),
    )


def first_order_filter(u: np.ndarray, a: float, y0: float = 0.0) -> np.ndarray:
    """``y[i] = a * y[i-1] + u[i]`` with ``y[-1] = y0``, for 0 <= a < 1, vectorised by blocks.

    Within a block of B samples the response is a scaled cumulative sum (a**-B stays below e**12, so
    little precision is lost); only the carry from block to block is a Python loop (n / B steps).
    """
    n = len(u)
    if n == 0:
        return np.zeros(0)
    block = int(min(n, max(1.0, 12.0 / -np.log(a)))) if a > 0 else 1
    blocks = -(-n // block)
    flat = np.zeros(blocks * block)
    flat[:n] = u
    U = flat.reshape(blocks, block)
    k = np.arange(block)
    local = np.cumsum(U * a ** (-k.astype(float)), axis=1) * a ** k.astype(float)
    carry_gain = a ** (k + 1.0)
    decay = a ** float(block)
    start = np.empty(blocks)
    prev = float(y0)
    for b in range(blocks):
        start[b] = prev
        prev = local[b, -1] + decay * prev
    return (local + carry_gain * start[:, None]).ravel()[:n]


def _ar1(rng: np.random.Generator, n: int, tau: float) -> np.ndarray:
    """Stationary unit-variance AR(1) noise with correlation time ``tau`` records."""
    a = float(np.exp(-1.0 / tau))
    e = rng.standard_normal(n)
    x0 = rng.standard_normal()
    return first_order_filter(np.sqrt(1.0 - a * a) * e, a, x0)


def _lowpass(x: np.ndarray, tau: float) -> np.ndarray:
    """First-order lag with time constant ``tau`` records, started settled at ``x[0]``."""
    a = float(np.exp(-1.0 / tau))
    return first_order_filter((1.0 - a) * x, a, x[0])


def _segments(rng: np.random.Generator, n: int, mean_length: float, levels: np.ndarray | None = None) -> np.ndarray:
    """Piecewise-constant levels with geometric segment lengths, ramped over ~5 minutes.

    Levels are uniform in [0, 1], or drawn from the given set (a node's recipes).
    """
    count = int(n / mean_length) + 2
    lengths = rng.geometric(1.0 / mean_length, size=count)
    while lengths.sum() < n:
        lengths = np.concatenate([lengths, rng.geometric(1.0 / mean_length, size=count)])
    values = rng.random(len(lengths)) if levels is None else rng.choice(levels, size=len(lengths))
    return _lowpass(np.repeat(values, lengths)[:n], 30.0)


def _smooth_step(x: np.ndarray, at: float, width: float = 0.5) -> np.ndarray:
    return 1.0 / (1.0 + np.exp(-(x - at) / width))


def _daily_load(regime: str, hour: np.ndarray) -> np.ndarray:
    """Share of the load swing that follows the clock, in [0, 1]."""
    if regime == "day_shift":
        return _smooth_step(hour, 6.0) - _smooth_step(hour, 22.0)
    if regime == "demand_following":
        return 0.5 - 0.45 * np.cos(2 * np.pi * (hour - 4.0) / 24.0)
    if regime == "continuous":
        return 0.5 + 0.1 * np.sin(2 * np.pi * hour / 24.0)
    return np.full_like(hour, 0.5)


def simulate_normal(node: int, records: int, seed: int) -> tuple[np.ndarray, np.ndarray, NodeProfile]:
    """Timestamps (int64) and anomaly-free sensor readings ``(records, 12)`` of one node."""
    p = node_profile(node, seed)
    rng = np.random.default_rng([seed, node, 1])
    n = records
    i = np.arange(n)
    timestamp = START_TIMESTAMP + SAMPLE_SECONDS * i.astype(np.int64)
    hour = (timestamp % 86_400) / 3600.0
    progress = i / max(n - 1, 1)

    # Latent drivers: load and speed setpoint (operating regime), ambient weather, grid.
    w_day, w_seg, w_wander = {
        "continuous": (0.3, 0.35, 0.08),
        "day_shift": (0.75, 0.3, 0.06),
        "batch": (0.1, 0.9, 0.05),
        "demand_following": (0.8, 0.25, 0.07),
    }[p.regime]
    load_shape = (
        0.5
        + w_day * (_daily_load(p.regime, hour) - 0.5)
        + w_seg * (_segments(rng, n, p.segment_records / 2) - 0.5)
        + w_wander * _ar1(rng, n, 720.0)
    )
    load = p.load_low + (p.load_high - p.load_low) * np.clip(load_shape, 0.0, 1.0)
    follow = 0.7 if p.regime == "demand_following" else 0.25
    recipes = np.asarray(p.recipes)  # a few product recipes, each with its own speed setpoint
    speed_shape = (
        0.5
        + follow * (load_shape - 0.5)
        + 0.6 * (_segments(rng, n, p.segment_records, recipes) - 0.5)
        + 0.03 * _ar1(rng, n, 360.0)
    )
    s = p.speed_low + (p.speed_high - p.speed_low) * np.clip(speed_shape, 0.0, 1.0)
    ambient = (
        p.ambient_mean
        + p.ambient_amplitude * np.cos(2 * np.pi * (hour - p.ambient_peak_hour) / 24.0)
        + p.ambient_trend * progress
        + 0.4 * _ar1(rng, n, 720.0)
    )
    # The grid sags on hot afternoons (cooling load elsewhere) and under this motor's own load.
    heat = (ambient - p.ambient_mean) / p.ambient_amplitude
    voltage = p.grid_voltage * (1.0 - p.grid_sag * (0.5 + 0.5 * heat) - 0.008 * load + 0.0015 * _ar1(rng, n, 180.0))

    # Motor and pump laws.
    speed = p.rated_speed * s * (1.0 - p.slip * load)
    torque = p.rated_torque * (0.15 + 0.85 * load) * (0.4 + 0.6 * s * s)
    mechanical_kw = torque * speed * (2 * np.pi / 60.0) / 1000.0
    power = mechanical_kw / (p.efficiency * (1.0 - 0.08 * (1.0 - load) ** 2))
    power_factor = p.power_factor * (0.85 + 0.15 * load)
    current = power * 1000.0 / (np.sqrt(3.0) * voltage * power_factor)
    rated_kw = p.rated_torque * p.rated_speed * (2 * np.pi / 60.0) / 1000.0 / p.efficiency
    rated_current = rated_kw * 1000.0 / (np.sqrt(3.0) * p.grid_voltage * p.power_factor)
    pressure = p.rated_pressure * s * s * (0.55 + 0.45 * load)
    flow = p.rated_flow * s * (0.35 + 0.65 * load)
    vibration_freq = p.vanes * speed / 60.0
    vibration_rms = p.vibration_base * (0.3 + 0.7 * s * s) * (1.0 + 0.3 * load) * (1.0 + p.wear * progress)
    temperature = ambient + p.motor_heating * _lowpass((current / rated_current) ** 2, p.motor_tau)
    bearing_temp = _lowpass(
        ambient + 0.35 * (temperature - ambient) + p.bearing_heating * s * vibration_rms / p.vibration_base,
        p.bearing_tau,
    )
    humidity = np.clip(
        p.humidity_mean - p.humidity_per_degree * (ambient - p.ambient_mean) + 0.4 * _ar1(rng, n, 360.0), 5.0, 98.0
    )

    # Sensor-major storage: (records, 12) in Fortran order keeps every per-sensor operation contiguous.
    X = np.empty((len(SENSORS), n))
    for row, values in enumerate(
        (
            temperature,
            vibration_freq,
            vibration_rms,
            current,
            voltage,
            pressure,
            flow,
            humidity,
            speed,
            torque,
            power,
            bearing_temp,
        )
    ):
        X[row] = values
    # Per-node calibration (gain, offset) and per-sensor white noise, applied in place.
    gain = rng.normal(1.0, 0.02, size=len(SENSORS))
    offset = rng.normal(0.0, 0.01, size=len(SENSORS)) * np.abs(X[:, 0])
    noise_sd = p.noise_fraction * rng.uniform(0.7, 1.3, size=len(SENSORS)) * (X.std(axis=1) + 1e-9)
    noise = rng.standard_normal(X.shape)
    noise *= noise_sd[:, None]
    X *= gain[:, None]
    X += offset[:, None]
    X += noise
    measured = X.T
    return timestamp, measured, p


@dataclass(frozen=True)
class Episodes:
    """Anomaly episodes of one node: start row, length, kind index into ``ANOMALY_KINDS``, detail."""

    start: np.ndarray
    length: np.ndarray
    kind: np.ndarray
    detail: list[str]

    def records(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Flattened (episode index, row, offset within episode) of every anomalous record."""
        ep = np.repeat(np.arange(len(self.start)), self.length)
        first = np.repeat(np.cumsum(self.length) - self.length, self.length)
        offset = np.arange(len(ep)) - first
        return ep, self.start[ep] + offset, offset


def _place_episodes(rng: np.random.Generator, n: int, anomaly_rate: float) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Non-overlapping episodes covering round(anomaly_rate * n) records, spread at random."""
    target = int(round(anomaly_rate * n))
    empty = np.zeros(0, dtype=np.int64)
    if target == 0:
        return empty, empty, empty
    mean_length = float(_KIND_WEIGHTS @ _KIND_LENGTHS.mean(axis=1))
    count = int(target / mean_length * 2) + 10
    kinds = np.zeros(0, dtype=np.int64)
    lengths = np.zeros(0, dtype=np.int64)
    while lengths.sum() < target:  # almost always one round
        more = rng.choice(len(ANOMALY_KINDS), size=count, p=_KIND_WEIGHTS)
        kinds = np.concatenate([kinds, more])
        lengths = np.concatenate([lengths, rng.integers(_KIND_LENGTHS[more, 0], _KIND_LENGTHS[more, 1] + 1)])
    total = np.cumsum(lengths)
    m = int(np.searchsorted(total, target) + 1)
    kinds, lengths = kinds[:m], lengths[:m].copy()
    lengths[-1] -= total[m - 1] - target
    free = n - target
    min_gap = min(30, free // (m + 1))
    gaps = rng.multinomial(free - min_gap * (m - 1), np.full(m + 1, 1.0 / (m + 1)))[:m]
    gaps[1:] += min_gap
    starts = np.cumsum(gaps) + np.concatenate([[0], np.cumsum(lengths)[:-1]])
    return starts.astype(np.int64), lengths.astype(np.int64), kinds.astype(np.int64)


@dataclass(frozen=True)
class _Targets:
    """The records of the episodes of one kind: local episode index per record, row, position in (0, 1]."""

    episode: np.ndarray
    row: np.ndarray
    position: np.ndarray
    count: int  # episodes of this kind


def _spikes(
    X: np.ndarray, rng: np.random.Generator, t: _Targets, sigma: np.ndarray, normal_sorted: np.ndarray
) -> list[str]:
    """One sensor (sometimes two) jumps 4-9 sigma for 1-5 records."""
    d = X.shape[1]
    sensor = rng.integers(d, size=t.count)
    sign = np.where(rng.random(t.count) < 0.7, 1.0, -1.0)
    magnitude = rng.uniform(4.0, 9.0, size=t.count)
    c = sensor[t.episode]
    X[t.row, c] += sign[t.episode] * magnitude[t.episode] * rng.uniform(0.7, 1.0, len(t.row)) * sigma[c]
    second = rng.random(t.count) < 0.3
    sensor2 = (sensor + rng.integers(1, d, size=t.count)) % d
    pick = second[t.episode]
    c2 = sensor2[t.episode[pick]]
    X[t.row[pick], c2] += magnitude[t.episode[pick]] * rng.uniform(0.7, 1.0, pick.sum()) * sigma[c2]
    return [SENSORS[a] + (f"+{SENSORS[b]}" if two else "") for a, b, two in zip(sensor, sensor2, second, strict=True)]


def _drifts(
    X: np.ndarray, rng: np.random.Generator, t: _Targets, sigma: np.ndarray, normal_sorted: np.ndarray
) -> list[str]:
    """One sensor's offset grows linearly to 3-6 sigma (a decalibrating sensor)."""
    sensor = rng.integers(X.shape[1], size=t.count)
    sign = np.where(rng.random(t.count) < 0.7, 1.0, -1.0)
    peak = rng.uniform(3.0, 6.0, size=t.count)
    c = sensor[t.episode]
    X[t.row, c] += sign[t.episode] * peak[t.episode] * t.position * sigma[c]
    return [f"{SENSORS[a]}:{'up' if sg > 0 else 'down'}" for a, sg in zip(sensor, sign, strict=True)]


def _stuck(
    X: np.ndarray, rng: np.random.Generator, t: _Targets, sigma: np.ndarray, normal_sorted: np.ndarray
) -> list[str]:
    """One sensor reads a constant: 0 (dead) or its full scale, while the process goes on."""
    sensor = rng.integers(X.shape[1], size=t.count)
    dead = rng.random(t.count) < 0.5
    full_scale = np.round(normal_sorted[-1] + 3.0 * sigma, DECIMALS)
    value = np.where(dead, 0.0, full_scale[sensor])
    X[t.row, sensor[t.episode]] = value[t.episode]
    return [f"{SENSORS[a]}:{'dead' if z else 'full_scale'}" for a, z in zip(sensor, dead, strict=True)]


def _faults(
    X: np.ndarray, rng: np.random.Generator, t: _Targets, sigma: np.ndarray, normal_sorted: np.ndarray
) -> list[str]:
    """A physical fault moves several sensors together (``_FAULT_PATTERNS``), ramping in over 30 %."""
    names = list(_FAULT_PATTERNS)
    shifts = np.zeros((len(names), X.shape[1]))
    for k, name in enumerate(names):
        for col, amount in _FAULT_PATTERNS[name].items():
            shifts[k, _COL[col]] = amount
    fault = rng.integers(len(names), size=t.count)
    scale = rng.uniform(0.8, 1.5, size=t.count)
    envelope = np.minimum(1.0, t.position / 0.3) * scale[t.episode]
    jitter = 1.0 + 0.25 * rng.standard_normal((len(t.row), X.shape[1]))
    X[t.row] += shifts[fault[t.episode]] * (envelope[:, None] * jitter) * sigma
    return [names[f] for f in fault]


def _regime_violations(
    X: np.ndarray, rng: np.random.Generator, t: _Targets, sigma: np.ndarray, normal_sorted: np.ndarray
) -> list[str]:
    """Two sensors that move together read high and low: each inside its normal range, jointly impossible."""
    n = len(normal_sorted)
    pairs = np.array([[_COL[a], _COL[b]] for a, b in _REGIME_PAIRS])
    pair = rng.integers(len(pairs), size=t.count)
    flip = rng.random(t.count) < 0.5
    high_col = np.where(flip, pairs[pair, 1], pairs[pair, 0])
    low_col = np.where(flip, pairs[pair, 0], pairs[pair, 1])
    high_value = normal_sorted[(rng.uniform(0.65, 0.95, size=t.count) * (n - 1)).astype(int), high_col]
    low_value = normal_sorted[(rng.uniform(0.05, 0.35, size=t.count) * (n - 1)).astype(int), low_col]
    wobble = 0.03 * rng.standard_normal((2, len(t.row)))
    hc, lc = high_col[t.episode], low_col[t.episode]
    X[t.row, hc] = high_value[t.episode] + wobble[0] * sigma[hc]
    X[t.row, lc] = low_value[t.episode] + wobble[1] * sigma[lc]
    return [f"{SENSORS[h]}:high,{SENSORS[lo]}:low" for h, lo in zip(high_col, low_col, strict=True)]


_INJECTORS = (_spikes, _drifts, _stuck, _faults, _regime_violations)  # in ANOMALY_KINDS order


def inject_anomalies(X: np.ndarray, rng: np.random.Generator, anomaly_rate: float) -> tuple[np.ndarray, Episodes]:
    """Add anomaly episodes to normal readings ``X`` in place; returns per-record labels and the episodes.

    Magnitudes are in units of each sensor's standard deviation in the normal data, so every node's
    anomalies are equally strong whatever its machine.
    """
    n = len(X)
    starts, lengths, kinds = _place_episodes(rng, n, anomaly_rate)
    sigma = X.std(axis=0) + 1e-9
    normal_sorted = np.sort(X, axis=0)
    episodes = Episodes(starts, lengths, kinds, [""] * len(starts))
    ep, rows, offset = episodes.records()
    position = (offset + 1) / lengths[ep]
    local = np.zeros(len(starts), dtype=np.int64)  # episode index within its kind
    for k in range(len(ANOMALY_KINDS)):
        local[kinds == k] = np.arange((kinds == k).sum())
    for k, inject in enumerate(_INJECTORS):
        ids = np.flatnonzero(kinds == k)
        if len(ids) == 0:
            continue
        at = kinds[ep] == k
        details = inject(X, rng, _Targets(local[ep[at]], rows[at], position[at], len(ids)), sigma, normal_sorted)
        for j, text in zip(ids, details, strict=True):
            episodes.detail[j] = text
    labels = np.zeros(n, dtype=np.int8)
    labels[rows] = 1
    return labels, episodes


def _check(node: int, records: int, anomaly_rate: float) -> None:
    if node < 1:
        raise FedadError(f"node must be >= 1, got {node}")
    if records < 1:
        raise FedadError(f"records must be >= 1, got {records}")
    if not 0.0 <= anomaly_rate <= 0.5:
        raise FedadError(f"anomaly rate must be between 0 and 0.5, got {anomaly_rate}")


def simulate_node(
    node: int, records: int, seed: int, anomaly_rate: float = 0.05
) -> tuple[pd.DataFrame, Episodes, NodeProfile]:
    """``generate_node``'s frame together with its anomaly episodes and the node's profile."""
    _check(node, records, anomaly_rate)
    timestamp, X, profile = simulate_normal(node, records, seed)
    labels, episodes = inject_anomalies(X, np.random.default_rng([seed, node, 2]), anomaly_rate)
    np.maximum(X, 0.0, out=X)  # every quantity here is non-negative; a glitch below zero reads as zero
    np.round(X, DECIMALS, out=X)
    frame = pd.DataFrame(X, columns=list(SENSORS))
    frame.insert(0, "timestamp", timestamp)
    frame["label"] = labels
    return frame, episodes, profile


def anomaly_counts(episodes: Episodes) -> dict[str, dict[str, int]]:
    """Episodes and records per anomaly kind."""
    return {
        kind: {"episodes": int((episodes.kind == k).sum()), "records": int(episodes.length[episodes.kind == k].sum())}
        for k, kind in enumerate(ANOMALY_KINDS)
    }


def generate_node(node: int, records: int, seed: int, anomaly_rate: float = 0.05) -> pd.DataFrame:
    """One node's records: ``timestamp`` (int seconds), the 12 ``SENSORS`` (float), ``label`` (0/1 int8).

    ``node`` counts from 1. The result depends only on (node, records, seed, anomaly_rate); the normal
    signal does not depend on ``anomaly_rate``. ``frame.attrs["anomalies"]`` holds ``anomaly_counts``.
    """
    frame, episodes, _ = simulate_node(node, records, seed, anomaly_rate)
    frame.attrs["anomalies"] = anomaly_counts(episodes)
    return frame


def node_file_stem(node: int) -> str:
    """``node_01`` for node 1 (two digits at least, more when needed)."""
    return f"node_{node:02d}"


def split_records(records: int, nodes: int) -> list[int]:
    """Records per node, as even as possible (the first nodes take the remainder)."""
    base, extra = divmod(records, nodes)
    return [base + (1 if k < extra else 0) for k in range(nodes)]


def write_plant(
    out: str | os.PathLike,
    nodes: int,
    records: int,
    seed: int,
    formats: Sequence[str] = FORMATS,
    anomaly_rate: float = 0.05,
    progress: Callable[[str], None] | None = None,
) -> dict:
    """Write ``node_01.csv``/``.parquet``... (``records`` split evenly over ``nodes``) and ``manifest.json``.

    Files are written into a temporary directory beside ``out`` and moved in only when all are complete.
    Existing files of the same names in ``out`` are replaced; stale ``node_*`` files from an earlier,
    larger plant are removed. Returns the manifest.
    """
    formats = tuple(dict.fromkeys(f.strip().lower() for f in formats))
    unknown = [f for f in formats if f not in FORMATS]
    if not formats or unknown:
        raise FedadError(f"unknown format(s) {unknown or formats}; choose from {', '.join(FORMATS)}")
    if nodes < 1:
        raise FedadError(f"nodes must be >= 1, got {nodes}")
    if records < nodes:
        raise FedadError(f"records ({records}) must be at least the number of nodes ({nodes})")
    _check(1, records, anomaly_rate)
    out = Path(out)
    if out.exists() and not out.is_dir():
        raise FedadError(f"output {out} exists and is not a directory")
    try:
        out.parent.mkdir(parents=True, exist_ok=True)
        tmp = Path(tempfile.mkdtemp(prefix=f".{out.name}.", dir=out.parent))
        as_umask_allows(tmp, directory=True)  # mkdtemp makes it owner-only; a plant folder is ordinary
    except OSError as exc:
        raise FedadError(f"cannot write to {out}: {exc.strerror or exc}") from None

    manifest: dict = {
        "generator": "fedad.common.synth",
        "version": GENERATOR_VERSION,
        "seed": seed,
        "nodes": nodes,
        "records": records,
        "anomaly_rate": anomaly_rate,
        "sample_seconds": SAMPLE_SECONDS,
        "start_timestamp": START_TIMESTAMP,
        "sensors": list(SENSORS),
        "label_column": "label",
        "time_column": "timestamp",
        "anomaly_kinds": list(ANOMALY_KINDS),
        "formats": list(formats),
        "node_files": {},
    }
    try:
        # Generating node k+1 overlaps writing node k (pyarrow writes without holding the GIL).
        with ThreadPoolExecutor(max_workers=1) as pool:
            pending = None
            for node, count in enumerate(split_records(records, nodes), start=1):
                began = time.perf_counter()
                frame, episodes, profile = simulate_node(node, count, seed, anomaly_rate)
                stem = node_file_stem(node)
                if pending is not None:
                    pending.result()  # surface write errors early and keep at most two frames alive
                pending = pool.submit(_write_node, frame, tmp, stem, formats)
                manifest["node_files"][stem] = {
                    "node": node,
                    "rows": count,
                    "files": {fmt: f"{stem}.{fmt}" for fmt in formats},
                    "anomalous_rows": int(frame["label"].sum()),
                    "anomalies": anomaly_counts(episodes),
                    "profile": asdict(profile),
                    "episodes": [
                        [int(s), int(n), ANOMALY_KINDS[k], d]
                        for s, n, k, d in zip(
                            episodes.start, episodes.length, episodes.kind, episodes.detail, strict=True
                        )
                    ],
                }
                if progress:
                    progress(
                        f"{stem}: {count} rows, {manifest['node_files'][stem]['anomalous_rows']} anomalous "
                        f"(generated in {time.perf_counter() - began:.1f} s)"
                    )
            if pending is not None:
                pending.result()
        (tmp / "manifest.json").write_text(json.dumps(manifest, indent=1) + "\n")
        _move_into(tmp, out)
    except OSError as exc:
        raise FedadError(f"cannot write to {out}: {exc.strerror or exc}") from None
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return manifest


def _write_node(frame: pd.DataFrame, directory: Path, stem: str, formats: Sequence[str]) -> None:
    table = pa.Table.from_pandas(frame, preserve_index=False)
    for fmt in formats:
        path = directory / f"{stem}.{fmt}"
        if fmt == "csv":
            with open(path, "wb") as f:  # a plain header line: pyarrow would quote the names
                f.write((",".join(table.column_names) + "\n").encode())
                pa_csv.write_csv(table, f, pa_csv.WriteOptions(include_header=False))
        else:
            pq.write_table(table, str(path))


def _move_into(tmp: Path, out: Path) -> None:
    """Publish a finished temp directory as ``out`` (one rename when ``out`` is new, else file by file)."""
    if not out.exists():
        os.replace(tmp, out)
        return
    new = {p.name for p in tmp.iterdir()}
    for stale in out.glob("node_*"):
        if stale.is_file() and stale.suffix in (".csv", ".parquet") and stale.name not in new:
            stale.unlink()
    (out / "manifest.json").unlink(missing_ok=True)  # never a manifest that disagrees with the files
    for name in sorted(new - {"manifest.json"}):
        os.replace(tmp / name, out / name)
    os.replace(tmp / "manifest.json", out / "manifest.json")

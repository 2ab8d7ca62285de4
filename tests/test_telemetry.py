"""Prometheus metrics (fedad.common.telemetry): families, bounded labels, /metrics served and parsed, dashboard."""

from __future__ import annotations

import json
import re
import urllib.request
from pathlib import Path

import pytest
from procs import free_port
from prometheus_client import generate_latest
from prometheus_client.parser import text_string_to_metric_families

from fedad.common.errors import FedadError
from fedad.common.live_scorer import Decision
from fedad.common.telemetry import MAX_CLIENT_LABELS, METRICS, Telemetry

ROOT = Path(__file__).resolve().parent.parent


def samples(text: str) -> dict[tuple[str, tuple], float]:
    """{(sample name, sorted labels): value} of a Prometheus text exposition."""
    return {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for fam in text_string_to_metric_families(text)
        for s in fam.samples
    }


def test_a_round_record_updates_rounds_bytes_flags_trust_and_refusals():
    t = Telemetry()
    record = {
        "round": 3,
        "seconds": 2.5,
        "per_client": [
            {"client": "node1", "bytes_up": 1000, "bytes_down": 4000},
            {"client": "node2", "bytes_up": 1500, "bytes_down": 4000},
        ],
        "rejected": {"node3": "non-finite values"},
        "flags": {"node1": {"flagged": False, "weight": 0.6}, "node2": {"flagged": True, "weight": 0.0}},
    }
    t.observe_round(record)
    t.observe_round({**record, "round": 4, "rejected": {}})
    s = samples(generate_latest(t.registry).decode())
    assert s[("fedad_rounds_total", ())] == 2
    assert s[("fedad_round_seconds_count", ())] == 2 and s[("fedad_round_seconds_sum", ())] == 5.0
    assert s[("fedad_model_version", ())] == 4
    assert s[("fedad_client_bytes_up_total", (("client", "node2"),))] == 3000
    assert s[("fedad_client_bytes_down_total", (("client", "node1"),))] == 8000
    assert s[("fedad_client_flags_total", (("client", "node2"),))] == 2
    assert ("fedad_client_flags_total", (("client", "node1"),)) not in s
    assert s[("fedad_client_trust", (("client", "node1"),))] == 0.6
    assert s[("fedad_refused_results_total", ())] == 1


def test_client_labels_are_bounded():
    t = Telemetry()
    names = [t.client(f"node{i}") for i in range(MAX_CLIENT_LABELS + 5)]
    assert names[:MAX_CLIENT_LABELS] == [f"node{i}" for i in range(MAX_CLIENT_LABELS)]
    assert set(names[MAX_CLIENT_LABELS:]) == {"other"}
    assert t.client("node0") == "node0"


def test_live_decisions_count_records_alarms_and_latency():
    t = Telemetry()
    t.observe_decisions([Decision(i, None, 0.0, 1.0, i % 4 == 0, "7", 0.3) for i in range(8)])
    t.set_version("7")
    t.set_version("sha-abc")  # not a round number: the gauge keeps the last round
    s = samples(generate_latest(t.registry).decode())
    assert s[("fedad_records_scored_total", ())] == 8 and s[("fedad_alarms_total", ())] == 2
    assert s[("fedad_scoring_latency_seconds_count", ())] == 8
    assert s[("fedad_scoring_latency_seconds_bucket", (("le", "0.0005"),))] == 8
    assert s[("fedad_scoring_latency_seconds_bucket", (("le", "0.00025"),))] == 0
    assert s[("fedad_model_version", ())] == 7


def test_every_declared_family_is_exposed_and_served_over_http():
    t = Telemetry().serve(free_port(), "127.0.0.1")
    try:
        port = t.server.server_address[1]
        text = urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=30).read().decode()
    finally:
        t.close()
    families = {
        f.name: f.type
        for f in text_string_to_metric_families(text)
        if f.name.startswith("fedad_") and not f.name.endswith("_created")  # prometheus-client's creation times
    }
    assert families == METRICS


def test_a_busy_port_is_one_clear_error():
    t = Telemetry().serve(free_port(), "127.0.0.1")
    try:
        with pytest.raises(FedadError, match="cannot serve metrics"):
            Telemetry().serve(t.server.server_address[1], "127.0.0.1")
    finally:
        t.close()


def test_dashboard_plots_only_metrics_the_code_defines():
    dash = json.loads((ROOT / "deploy" / "grafana-dashboard.json").read_text())
    exprs = [t["expr"] for p in dash["panels"] for t in p["targets"]]
    assert exprs
    suffixes = {"counter": ("_total",), "gauge": ("",), "histogram": ("_bucket", "_sum", "_count")}
    known = {name + sfx for name, kind in METRICS.items() for sfx in suffixes[kind]}
    used = {m for e in exprs for m in re.findall(r"\bfedad_[a-z_]+\b", e)}
    assert used and used <= known, used - known
    assert {m.rsplit("_", 1)[0] if m not in METRICS else m for m in used} >= {"fedad_rounds", "fedad_alarms"}
    plotted = {name for name in METRICS if any(u == name or u.startswith(name + "_") for u in used)}
    assert plotted == set(METRICS)  # every family has a panel

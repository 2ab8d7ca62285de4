"""The compose plant's `monitoring` profile: every fedad service serves /metrics, Prometheus scrapes each of them.

Needs no engine: docker-compose.yml and deploy/prometheus.yml are read with pyyaml, the profile is validated with
`docker compose config` (skipped without the compose CLI, as in test_docker.py), the entrypoint runs dry.
deploy/ci-cluster.sh asserts the real thing: Prometheus's HTTP API sees `fedad_` series of the server and all
10 nodes of a running plant.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest
import yaml
from test_docker import ROOT, _argv, _entrypoint, _files, _option, compose, config, needs_compose

FEDAD_ROLES = ("server", "client", "keyholder")  # entrypoint roles that run a fedad process with --metrics-port


def _dotenv() -> dict[str, str]:
    pairs = (line.partition("=") for line in (ROOT / ".env").read_text().splitlines())
    return {k.strip(): v.strip() for k, sep, v in pairs if sep and not k.lstrip().startswith("#")}


def _compose_file() -> dict:
    return yaml.safe_load((ROOT / "docker-compose.yml").read_text())  # merge keys (<<) resolved by pyyaml


def _fedad_services(services: dict) -> set[str]:
    """Every service of the compose file (any profile) that runs fedad-server, fedad-client or fedad-keyholder."""
    return {name for name, s in services.items() if (s.get("command") or [None])[0] in FEDAD_ROLES}


def _prometheus_targets() -> dict[str, list[str]]:
    """job name -> the targets deploy/prometheus.yml scrapes."""
    cfg = yaml.safe_load((ROOT / "deploy" / "prometheus.yml").read_text())
    return {
        job["job_name"]: [t for sc in job.get("static_configs", []) for t in sc["targets"]]
        for job in cfg["scrape_configs"]
    }


def test_prometheus_scrapes_every_fedad_service_of_the_compose_file_at_its_metrics_port():
    services = _compose_file()["services"]
    fedad = _fedad_services(services)
    # the plant as the compose file defines it: the server, client-1..10, attacker-8..10, the key holder
    assert {"server", "keyholder"} <= fedad and len([s for s in fedad if s.startswith("client-")]) == 10
    assert {s for s in fedad if s.startswith("attacker-")} == {"attacker-8", "attacker-9", "attacker-10"}
    port = _dotenv()["FEDAD_METRICS_PORT"]
    assert port.isdigit()
    targets = [t for ts in _prometheus_targets().values() for t in ts]
    assert len(targets) == len(set(targets)), "a target scraped twice"
    assert sorted(targets) == sorted(f"{name}:{port}" for name in fedad)
    # ... and each of them is told to serve there (x-client-env for the nodes, its own environment otherwise)
    for name in fedad:
        assert services[name]["environment"]["FEDAD_METRICS_PORT"] == "${FEDAD_METRICS_PORT:-9100}", name
    assert port == "9100"  # the compose default above and the targets agree with .env


def test_prometheus_labels_are_bounded_jobs_and_service_names():
    cfg = yaml.safe_load((ROOT / "deploy" / "prometheus.yml").read_text())
    assert set(_prometheus_targets()) == {"server", "node", "keyholder"}
    for job in cfg["scrape_configs"]:
        # instance = the service name without the port; no per-target labels beyond job and instance
        (rule,) = job["relabel_configs"]
        assert rule["target_label"] == "instance" and rule["source_labels"] == ["__address__"]
        assert re.fullmatch(rule["regex"], "client-10:9100").group(1) == "client-10"  # type: ignore[union-attr]
        assert all(set(sc) == {"targets"} for sc in job["static_configs"])


def test_prometheus_service_is_in_the_monitoring_profile_only_and_published_on_localhost():
    services = _compose_file()["services"]
    prom = services["prometheus"]
    assert prom["profiles"] == ["monitoring"]
    assert prom["image"] == "${FEDAD_PROMETHEUS_IMAGE:-fedad-prometheus:local}"
    assert prom["init"] is True and prom["restart"] == "no" and prom["pull_policy"] == "never"
    assert "./deploy/prometheus.yml:/etc/fedad/prometheus.yml:ro" in prom["volumes"]
    assert "--config.file=/etc/fedad/prometheus.yml" in prom["command"]
    assert prom["ports"] == ["127.0.0.1:${FEDAD_PROMETHEUS_PORT:-9090}:9090"]
    assert prom["healthcheck"]["test"][0] == "CMD" and "/-/ready" in prom["healthcheck"]["test"][-1]
    assert prom.get("user") and not prom["user"].startswith("0")  # not root
    # the monitoring profile mounts no plant volume: it sees metrics, never shards, keys or certificates
    assert all(v.startswith("./deploy/") for v in prom["volumes"])
    env = _dotenv()
    assert env["FEDAD_PROMETHEUS_IMAGE"] == "fedad-prometheus:local" and env["FEDAD_PROMETHEUS_PORT"] == "9090"


@needs_compose
@pytest.mark.parametrize(
    "profiles",
    [("--profile", "monitoring"), ("--profile", "honest", "--profile", "monitoring"), ("--profile", "*")],
)
def test_monitoring_profile_config_is_valid(profiles):
    r = compose(*profiles, "config", "-q", check=False)
    assert r.returncode == 0, r.stderr


@needs_compose
def test_monitoring_profile_resolved_by_compose():
    services = config("--profile", "honest", "--profile", "monitoring")["services"]
    prom = services["prometheus"]
    assert [(str(p["target"]), str(p.get("published")), p.get("host_ip")) for p in prom["ports"]] == [
        ("9090", "9090", "127.0.0.1")
    ]
    (mount,) = prom["volumes"]
    assert mount["target"] == "/etc/fedad/prometheus.yml" and mount.get("read_only")
    assert Path(mount["source"]) == ROOT / "deploy" / "prometheus.yml"
    nodes = [n for n in services if n.startswith("client-")]
    assert len(nodes) == 10
    for name in ["server", "keyholder", *nodes]:
        assert services[name]["environment"]["FEDAD_METRICS_PORT"] == "9100", name
    # without the profile there is no Prometheus (the plant's `up` still ends by itself)
    assert "prometheus" not in config()["services"]


def test_entrypoint_passes_the_metrics_port_to_every_fedad_process(tmp_path):
    (tmp_path / "server" / "results").mkdir(parents=True)
    _files(tmp_path / "client", "data/shard.csv")
    (tmp_path / "keyholder" / "audit").mkdir(parents=True)
    kh = ("keys/private.key", "tls/ca.pem", "tls/keyholder.pem", "tls/keyholder.key", "tls/aggregator.pem")
    _files(tmp_path / "keyholder", *kh)
    roles = {"server": {}, "client": {"FEDAD_NAME": "client-3"}, "keyholder": {"FEDAD_STRATEGY": "secure-robust"}}
    for role, env in roles.items():
        root = tmp_path / role  # each container's own mounts (the server refuses a private key beside it)
        argv = _argv(_entrypoint(role, root, FEDAD_METRICS_PORT="9100", **env), root)
        assert argv[0] == f"fedad-{role}", argv
        assert _option(argv, "--metrics-port") == ["9100"] and _option(argv, "--metrics-host") == ["0.0.0.0"]
        for off in ("", "0"):  # off: no endpoint
            argv = _argv(_entrypoint(role, root, FEDAD_METRICS_PORT=off, **env), root)
            assert "--metrics-port" not in argv, (role, off)
        r = _entrypoint(role, root, FEDAD_METRICS_PORT="metrics", **env)
        assert r.returncode == 2 and "FEDAD_METRICS_PORT must be a port number" in r.stderr, r.stderr
        assert len(r.stderr.strip().splitlines()) == 1

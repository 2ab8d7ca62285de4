"""The Docker deployment: docker-compose.yml, .env, deploy/ (image entrypoint, plant helpers, GPU override).

Needs no engine: compose files are checked with `docker compose config` (skipped without the compose CLI),
the entrypoint's own checks and plant.py's summary run on the host. Tests that need a running engine and a
built image (FEDAD_IMAGE, default fedad:local) skip cleanly without them. deploy/ci-cluster.sh runs this file
once its engine is up and its image built, with FEDAD_IMAGE=fedad:ci and FEDAD_DOCKER_TESTS=required: then
nothing skips (a missing CLI, engine or image fails). The real 10-node plant runs there too.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import socket
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
DEPLOY = ROOT / "deploy"
NODES = [f"client-{i}" for i in range(1, 11)]
ATTACKERS = [f"attacker-{i}" for i in (8, 9, 10)]


def _docker_env() -> dict[str, str] | None:
    """Environment in which `docker compose` works (the CI engine's plugin dir as a fallback), else None."""
    if not shutil.which("docker"):
        return None
    base = {k: v for k, v in os.environ.items() if not k.startswith(("FEDAD_", "COMPOSE_"))}
    candidates = [base]
    cfg = Path(os.environ.get("FEDAD_DOCKER_DIR", "/tmp/fedad-docker")) / "cfg"
    if (cfg / "config.json").is_file():
        candidates.append(
            {
                **base,
                "DOCKER_CONFIG": str(cfg),
                "DOCKER_HOST": base.get("DOCKER_HOST", f"unix://{cfg.parent}/docker.sock"),
            }
        )
    for env in candidates:
        try:
            r = subprocess.run(["docker", "compose", "version"], env=env, capture_output=True, timeout=20)
        except (OSError, subprocess.TimeoutExpired):
            continue
        if r.returncode == 0:
            return env
    return None


DOCKER_ENV = _docker_env()
REQUIRED = os.environ.get("FEDAD_DOCKER_TESTS") == "required"  # CI's cluster step: nothing may skip
needs_compose = pytest.mark.skipif(
    DOCKER_ENV is None and not REQUIRED, reason="no `docker compose` CLI on this machine"
)


def compose(*args: str, check: bool = True) -> subprocess.CompletedProcess:
    return subprocess.run(
        ["docker", "compose", *args], cwd=ROOT, env=DOCKER_ENV, capture_output=True, text=True, timeout=60, check=check
    )


def config(*args: str) -> dict:
    return json.loads(compose(*args, "config", "--format", "json").stdout)


def volumes(service: dict) -> dict[str, str]:
    """target -> source of a service's mounts."""
    return {v["target"]: v.get("source", "") for v in service.get("volumes", [])}


# ------------------------------------------------------------------------------ compose file (no engine)
@needs_compose
@pytest.mark.parametrize(
    "files",
    [(), ("--profile", "attack"), ("-f", "docker-compose.yml", "-f", "deploy/compose.gpu.yml", "--profile", "attack")],
)
def test_compose_config_is_valid(files):
    r = compose(*files, "config", "-q", check=False)
    assert r.returncode == 0, r.stderr


@needs_compose
def test_default_plant_is_a_server_and_ten_nodes_each_with_only_its_own_shard():
    cfg = config()
    services = cfg["services"]
    assert sorted(s for s in services if s.startswith(("client-", "attacker-"))) == sorted(NODES)
    assert {"data", "keys", "certs", "server", "summary"} <= set(services)
    for i, name in enumerate(NODES, start=1):
        mounts = volumes(services[name])
        assert mounts["/data"] == f"shard-{i:02d}", name
        # no other shard, no results, no socket; its own TLS identity (certificate + key) and nobody else's;
        # its own live volume (the live profile's stream and its alarms; empty in a plain run)
        assert set(mounts) == {"/data", "/tls", "/keys", "/tls-node", "/live"}, (name, mounts)
        assert mounts["/keys"] == "paillier-private" and mounts["/tls"] == "tls-ca"
        assert mounts["/tls-node"] == f"tls-{name}" and mounts["/live"] == f"live-{i:02d}"
        assert services[name]["environment"]["FEDAD_TLS"] == "1"  # mutual TLS by default
        assert services[name]["environment"]["FEDAD_NAME"] == name
        assert all(v.get("read_only") for v in services[name]["volumes"] if v["target"] != "/live")
    assert sum(1 for s in services.values() for v in s.get("volumes", []) if v.get("source") == "shard-03") == 2
    # a plain `docker compose up` is the finite run: no live service, so no live.json and no node streams
    assert "live" not in services


@needs_compose
def test_the_server_can_never_read_the_private_key_and_publishes_8080_on_localhost_only():
    services = config()["services"]
    server = services["server"]
    sources = set(volumes(server).values())
    assert "paillier-private" not in sources and not any(s.startswith("shard-") for s in sources)
    assert volumes(server)["/keys"] == "paillier-public" and volumes(server)["/tls"] == "tls-server"
    assert [(str(p["target"]), str(p.get("published")), p.get("host_ip")) for p in server["ports"]] == [
        ("8080", "8080", "127.0.0.1")
    ]
    assert server["environment"]["FEDAD_TLS"] == "1"
    # only the key job and the nodes mount the (paillier) private key's volume
    holders = {n for n, s in services.items() if "paillier-private" in volumes(s).values()}
    assert holders == {"keys", *NODES}
    assert "keyholder-private" not in sources
    assert {n for n, s in services.items() if "tls-server" in volumes(s).values()} == {"certs", "server"}


@needs_compose
@pytest.mark.parametrize("profiles", [(), ("--profile", "honest", "--profile", "attack")])
def test_each_node_certificate_and_the_ca_key_are_mounted_where_they_belong(profiles):
    services = config(*profiles)["services"]
    nodes = [n for n in services if n.startswith(("client-", "attacker-"))]
    # the CA key (signs node certificates): the certs job only
    assert {n for n, s in services.items() if "tls-ca-private" in volumes(s).values()} == {"certs"}
    certs = volumes(services["certs"])
    for name in NODES + ATTACKERS:  # the certs job enrolls every node that can run, whatever the profile
        assert certs[f"/nodes/{name}"] == f"tls-{name}"
    for name in nodes:  # a node's certificate and key: that node (read-only) and the certs job, nobody else
        assert {n for n, s in services.items() if f"tls-{name}" in volumes(s).values()} == {"certs", name}
        assert next(v for v in services[name]["volumes"] if v["target"] == "/tls-node").get("read_only")
    # compose override: a real edge node's interface
    bound = _env_config({"FEDAD_BIND": "0.0.0.0"})["server"]["ports"]
    assert [p.get("host_ip") for p in bound] == ["0.0.0.0"]


@needs_compose
def test_every_service_has_init_a_deliberate_restart_policy_and_long_running_ones_a_healthcheck():
    services = config("--profile", "attack")["services"]
    for name, s in services.items():
        assert s.get("init") is True, name
        assert s.get("restart") == "no", name  # see docs/docker.md "Restart policy"
        assert s.get("pull_policy") == "never", name
        # never built by compose: it would stamp its project labels on the image (deploy/build-image.sh)
        assert "build" not in s, name
        if name in ("server", "keyholder") or name.startswith(("client-", "attacker-")):
            assert s["healthcheck"]["test"][0] == "CMD", name
    # the server's healthcheck: its port, or its report while it writes the plots (never "unhealthy" then)
    assert services["server"]["healthcheck"]["test"][1:] == ["/opt/fedad/entrypoint.sh", "health"]
    # a stopped or restarted server ends cleanly, not SIGKILLed after Docker's default 10 s
    assert _seconds(services["server"]["stop_grace_period"]) >= 30
    assert services["data"]["environment"]["FEDAD_RESUME"] == "0"  # a new `up` is a new run
    assert services["server"]["depends_on"]["certs"]["condition"] == "service_completed_successfully"
    assert services["server"]["depends_on"]["keyholder"]["condition"] == "service_started"
    # the summary waits for the end of the run itself: compose's service_completed_successfully saw a restarted
    # server container as exited (143) for a moment and ended `up` at once
    assert services["summary"]["depends_on"]["server"]["condition"] == "service_started"


@needs_compose
def test_attack_profile_turns_three_nodes_into_attackers_on_their_shards():
    services = config("--profile", "attack")["services"]
    nodes = sorted(s for s in services if s.startswith(("client-", "attacker-")))
    assert nodes == sorted(NODES[:7] + ATTACKERS)
    for a in ATTACKERS:
        env = services[a]["environment"]
        assert env["FEDAD_ATTACK"] == "sign_flip" and env["FEDAD_NAME"] == a
        assert volumes(services[a])["/data"] == f"shard-{int(a.split('-')[1]):02d}"
        assert volumes(services[a])["/collusion"] == "collusion"
    assert not any("collusion" in volumes(services[n]).values() for n in NODES[:7] + ["server"])


@needs_compose
def test_strategy_and_friends_come_from_the_environment():
    env = {**DOCKER_ENV, "FEDAD_STRATEGY": "robust", "FEDAD_ROUNDS": "7", "FEDAD_MODEL": "lstm", "FEDAD_ATTACK": "ipm"}
    r = subprocess.run(
        ["docker", "compose", "--profile", "attack", "config", "--format", "json"],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    services = json.loads(r.stdout)["services"]
    server = services["server"]["environment"]
    assert (server["FEDAD_STRATEGY"], server["FEDAD_ROUNDS"], server["FEDAD_MODEL"]) == ("robust", "7", "lstm")
    assert services["client-1"]["environment"]["FEDAD_STRATEGY"] == "robust"
    assert services["attacker-9"]["environment"]["FEDAD_ATTACK"] == "ipm"


def _seconds(duration: str) -> float:
    """A compose duration ("1m30s", "60s") in seconds."""
    units = {"h": 3600, "m": 60, "s": 1, "ms": 0.001}
    return sum(float(n) * units[u] for n, u in re.findall(r"([0-9.]+)(ms|h|m|s)", duration))


@needs_compose
def test_every_profile_down_reaches_the_attackers_and_the_docs_give_that_command():
    """`down -v` only removes services of the active profiles: the documented command enables them all."""
    services = config("--profile", "*")["services"]
    nodes = {n for n in services if n.startswith(("client-", "attacker-"))}
    assert nodes == set(NODES + ATTACKERS)
    volumes_used = {v["source"] for s in services.values() for v in s.get("volumes", []) if v["type"] == "volume"}
    assert volumes_used == set(config("--profile", "*")["volumes"])  # every volume belongs to some service
    cmd = "docker compose --profile '*' down -v"
    assert cmd in (ROOT / "docker-compose.yml").read_text() and cmd in (ROOT / "docs" / "docker.md").read_text()
    assert "\ndocker compose down -v" not in (ROOT / "docs" / "docker.md").read_text()


def _env_config(env: dict[str, str], *args: str) -> dict:
    r = subprocess.run(
        ["docker", "compose", *args, "config", "--format", "json"],
        cwd=ROOT,
        env={**DOCKER_ENV, **env},
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    return json.loads(r.stdout)["services"]


@needs_compose
@pytest.mark.parametrize("profiles", [(), ("--profile", "attack"), ("--profile", "honest", "--profile", "attack")])
def test_secure_robust_private_key_is_mounted_on_the_keyholder_only(profiles):
    services = _env_config({"FEDAD_STRATEGY": "secure-robust"}, *profiles)
    nodes = [n for n in services if n.startswith(("client-", "attacker-"))]
    assert len(nodes) == (13 if "honest" in profiles else 10)
    # the private key's volume: written by the keys job, mounted (read-only) by the key holder, nobody else
    assert {n for n, s in services.items() if "keyholder-private" in volumes(s).values()} == {"keys", "keyholder"}
    kh = services["keyholder"]
    assert volumes(kh) == {
        "/keys": "keyholder-private",
        "/tls": "keyholder-tls",
        "/audit": "keyholder-audit",
        "/state": "server-state",
    }
    ro = {v["target"] for v in kh["volumes"] if v.get("read_only")}
    assert ro == {"/keys", "/tls", "/state"}
    assert "ports" not in kh  # reachable on the compose network only
    assert kh["command"] == ["keyholder"] and kh["environment"]["FEDAD_STRATEGY"] == "secure-robust"
    assert kh["user"].split(":")[0] not in ("0", "10001", services["server"]["user"].split(":")[0])
    assert int(kh["environment"]["FEDAD_KEYHOLDER_MAX_CLIENTS"]) >= len(nodes)
    assert "--insecure" not in kh["environment"]["FEDAD_KEYHOLDER_ARGS"]
    for dep in ("keys", "certs", "data"):
        assert kh["depends_on"][dep]["condition"] == "service_completed_successfully"
    # its TLS key and the pinned aggregator certificate: key holder only; the aggregator's client key: server only
    assert {n for n, s in services.items() if "keyholder-tls" in volumes(s).values()} == {"certs", "keyholder"}
    assert {n for n, s in services.items() if "aggregator-tls" in volumes(s).values()} == {"certs", "server"}
    server = services["server"]
    assert volumes(server)["/keys"] == "paillier-public" and volumes(server)["/aggregator-tls"] == "aggregator-tls"
    assert "keyholder-private" not in volumes(server).values() and "paillier-private" not in volumes(server).values()
    env = server["environment"]
    assert env["FEDAD_STRATEGY"] == "secure-robust" and env["FEDAD_KEYHOLDER"] == "keyholder:8090"
    assert env["FEDAD_SKETCH_ROWS"] == kh["environment"]["FEDAD_SKETCH_ROWS"]
    assert "8090" in " ".join(kh["healthcheck"]["test"])
    for name in nodes:  # the nodes: their shard, the TLS CA, their own TLS identity, /keys (public.key only)
        assert set(volumes(services[name]).values()) - {"collusion", f"live-{int(name.split('-')[1]):02d}"} == {
            f"shard-{int(name.split('-')[1]):02d}",
            "tls-ca",
            f"tls-{name}",
            "paillier-private",
        }, name
        assert services[name]["environment"]["FEDAD_STRATEGY"] == "secure-robust"
    assert volumes(services["summary"])["/audit"] == "keyholder-audit"


@needs_compose
def test_gpu_override_reserves_nvidia_devices_for_every_node():
    services = config("-f", "docker-compose.yml", "-f", "deploy/compose.gpu.yml", "--profile", "attack")["services"]
    for name in NODES[:7] + ATTACKERS:
        dev = services[name]["deploy"]["resources"]["reservations"]["devices"][0]
        assert dev["driver"] == "nvidia" and "gpu" in dev["capabilities"], name
        assert services[name]["environment"]["FEDAD_DEVICE"] == "cuda"
    assert "deploy" not in services["server"]


# ------------------------------------------------------------------------------------ files themselves
def test_compose_defaults_match_dotenv():
    """Every ${VAR:-default} in the compose files says what .env says, so both document the same plant."""
    dotenv = {}
    for line in (ROOT / ".env").read_text().splitlines():
        if line.strip() and not line.lstrip().startswith("#"):
            k, _, v = line.partition("=")
            dotenv[k.strip()] = v.strip()
    text = (ROOT / "docker-compose.yml").read_text()
    found = dict(re.findall(r"\$\{(\w+):-([^}]*)\}", text))
    assert found, "no ${VAR:-default} in docker-compose.yml"
    for var, default in found.items():
        assert var in dotenv, f"{var} has no documented default in .env"
        assert dotenv[var] == default, f"{var}: compose default {default!r}, .env {dotenv[var]!r}"
    assert dotenv["COMPOSE_PROFILES"] == "honest"


def test_shell_scripts_parse():
    for script in ("entrypoint.sh", "ci-cluster.sh", "build-wheelhouse.sh", "build-image.sh"):
        path = DEPLOY / script
        assert os.access(path, os.X_OK), f"{script} is not executable"
        r = subprocess.run(["bash", "-n", str(path)], capture_output=True, text=True)
        assert r.returncode == 0, r.stderr


def test_dockerignore_sends_the_wheelhouse_and_sources_only():
    lines = (ROOT / ".dockerignore").read_text().split()
    assert lines[lines.index("*")] == "*"
    for keep in ("!deploy/wheelhouse/", "!common/", "!client/", "!server/", "!pyproject.toml"):
        assert keep in lines


def test_dockerfile_takes_its_base_as_an_argument_and_installs_offline_from_a_wheelhouse():
    text = (DEPLOY / "Dockerfile").read_text()
    assert "ARG BASE_IMAGE=python:3.11-slim" in text and "FROM ${BASE_IMAGE}" in text
    assert "--no-index --find-links" in text and "/opt/venv" in text


@pytest.mark.skipif(Path("/data").exists() or Path("/results").exists(), reason="host has /data or /results")
@pytest.mark.parametrize(
    "role,env,message",
    [
        ("client", {"FEDAD_NAME": "n1"}, "no data file in /data"),
        ("client", {}, "FEDAD_NAME is not set"),
        ("server", {}, "results directory /results"),
    ],
)
def test_entrypoint_bad_configuration_is_one_clear_line_and_exit_2(role, env, message):
    r = subprocess.run(
        ["bash", str(DEPLOY / "entrypoint.sh"), role],
        capture_output=True,
        text=True,
        timeout=30,
        env={"PATH": os.environ["PATH"], **env},
    )
    assert r.returncode == 2, r.stderr
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1 and " ERROR [" in lines[0] and message in lines[0], r.stderr


# ------------------------------------------------------ entrypoint: the command lines it builds (dry run, no engine)
def _entrypoint(role: str, root: Path, **env: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        ["bash", str(DEPLOY / "entrypoint.sh"), role],
        capture_output=True,
        text=True,
        timeout=30,
        env={
            # this interpreter's directory first: `python3` there imports fedad (as the image's venv does)
            "PATH": os.pathsep.join([os.path.dirname(sys.executable), os.environ["PATH"]]),
            "FEDAD_ENTRYPOINT_ROOT": str(root),
            "FEDAD_ENTRYPOINT_DRY_RUN": "1",
            **env,
        },
    )


def _files(root: Path, *paths: str) -> Path:
    for rel in paths:
        (root / rel).parent.mkdir(parents=True, exist_ok=True)
        (root / rel).write_text("x\n")
    return root


def _argv(r: subprocess.CompletedProcess, root: Path) -> list[str]:
    assert r.returncode == 0, r.stderr
    return r.stdout.strip().replace(str(root), "").split()


def _option(argv: list[str], name: str, n: int = 1) -> list[str]:
    i = argv.index(name)
    return argv[i + 1 : i + 1 + n]


def test_entrypoint_secure_robust_server_gets_the_keyholder_and_the_public_key_only(tmp_path):
    (tmp_path / "results").mkdir()
    _files(
        tmp_path,
        "keys/public.key",
        "aggregator-tls/ca.pem",
        "aggregator-tls/aggregator.pem",
        "aggregator-tls/aggregator.key",
    )
    argv = _argv(
        _entrypoint("server", tmp_path, FEDAD_STRATEGY="secure-robust", FEDAD_KEYHOLDER="keyholder:8090"), tmp_path
    )
    assert argv[0] == "fedad-server" and _option(argv, "--strategy") == ["secure-robust"]
    assert _option(argv, "--keyholder") == ["keyholder:8090"]
    assert _option(argv, "--keyholder-certificates", 3) == [
        "/aggregator-tls/ca.pem",
        "/aggregator-tls/aggregator.pem",
        "/aggregator-tls/aggregator.key",
    ]
    assert _option(argv, "--public-key") == ["/keys/public.key"] and "--sketch-rows" not in argv  # fedad's default
    assert "--private-key" not in argv
    argv = _argv(_entrypoint("server", tmp_path, FEDAD_STRATEGY="secure-robust", FEDAD_SKETCH_ROWS="12"), tmp_path)
    assert _option(argv, "--sketch-rows") == ["12"]
    # a private key where the server could read it: refused
    _files(tmp_path, "keys/private.key")
    r = _entrypoint("server", tmp_path, FEDAD_STRATEGY="secure-robust")
    assert r.returncode == 2 and "the aggregator must never hold it" in r.stderr
    # no key-holder certificates: one clear line
    (tmp_path / "keys/private.key").unlink()
    (tmp_path / "aggregator-tls/aggregator.key").unlink()
    r = _entrypoint("server", tmp_path, FEDAD_STRATEGY="secure-robust")
    assert r.returncode == 2 and "aggregator TLS client key not found" in r.stderr, r.stderr
    # other strategies: no key holder
    argv = _argv(_entrypoint("server", tmp_path, FEDAD_STRATEGY="robust"), tmp_path)
    assert "--keyholder" not in argv and "--public-key" not in argv


def test_entrypoint_secure_robust_nodes_get_the_public_key_and_refuse_a_private_one(tmp_path):
    _files(tmp_path, "data/shard.csv", "keys/public.key")
    argv = _argv(_entrypoint("client", tmp_path, FEDAD_STRATEGY="secure-robust", FEDAD_NAME="client-3"), tmp_path)
    assert _option(argv, "--public-key") == ["/keys/public.key"] and "--private-key" not in argv
    _files(tmp_path, "keys/private.key")  # left by a paillier run: a secure-robust node will not start with it
    r = _entrypoint("client", tmp_path, FEDAD_STRATEGY="secure-robust", FEDAD_NAME="client-3")
    assert r.returncode == 2 and "only the key holder may hold it" in r.stderr
    # paillier is unchanged: the nodes hold the private key
    argv = _argv(_entrypoint("client", tmp_path, FEDAD_STRATEGY="paillier", FEDAD_NAME="client-3"), tmp_path)
    assert _option(argv, "--private-key") == ["/keys/private.key"] and "--public-key" not in argv


def test_entrypoint_tls_is_mutual_node_presents_its_own_certificate(tmp_path):
    _files(tmp_path, "data/shard.csv", "tls/ca.pem")
    r = _entrypoint("client", tmp_path, FEDAD_TLS="1", FEDAD_NAME="client-3")
    assert r.returncode == 2 and "TLS client certificate of client-3 not found" in r.stderr, r.stderr
    _files(tmp_path, "tls-node/client-3.pem", "tls-node/client-3.key")
    argv = _argv(_entrypoint("client", tmp_path, FEDAD_TLS="1", FEDAD_NAME="client-3"), tmp_path)
    assert _option(argv, "--root-certificates") == ["/tls/ca.pem"]
    assert _option(argv, "--tls-certificate") == ["/tls-node/client-3.pem"]
    assert _option(argv, "--tls-key") == ["/tls-node/client-3.key"] and _option(argv, "--name") == ["client-3"]
    # the server: TLS means client certificates from the plant CA (fedad-server's default --client-ca)
    _files(tmp_path, "tls/server.pem", "tls/server.key")
    (tmp_path / "results").mkdir()
    argv = _argv(_entrypoint("server", tmp_path, FEDAD_TLS="1"), tmp_path)
    assert _option(argv, "--certificates", 3) == ["/tls/ca.pem", "/tls/server.pem", "/tls/server.key"]


def test_entrypoint_passes_the_continue_quorum_and_the_node_health_file(tmp_path):
    (tmp_path / "results").mkdir()
    argv = _argv(_entrypoint("server", tmp_path), tmp_path)
    assert _option(argv, "--min-clients") == ["10"] and _option(argv, "--min-fit-clients") == ["0.6"]
    argv = _argv(_entrypoint("server", tmp_path, FEDAD_MIN_FIT_CLIENTS="7"), tmp_path)
    assert _option(argv, "--min-fit-clients") == ["7"]
    _files(tmp_path, "data/shard.csv")
    argv = _argv(_entrypoint("client", tmp_path, FEDAD_NAME="client-3"), tmp_path)
    assert _option(argv, "--health-file") == ["/tmp/fedad-health"]  # what the healthcheck (role health) reads


def test_entrypoint_live_plant_runs_the_server_continuously_and_every_node_on_its_stream(tmp_path):
    (tmp_path / "results").mkdir()
    _files(tmp_path, "data/shard.csv")
    argv = _argv(_entrypoint("server", tmp_path), tmp_path)  # a plain run: FEDAD_ROUNDS rounds
    assert _option(argv, "--rounds") == ["5"] and "--round-interval" not in argv
    argv = _argv(_entrypoint("client", tmp_path, FEDAD_NAME="client-3"), tmp_path)
    assert "--stream" not in argv and "--alarms" not in argv
    # the live job has written live.json and the node's stream: the live profile
    (tmp_path / "results" / "live.json").write_text("{}")
    _files(tmp_path, "live/stream.csv")
    argv = _argv(_entrypoint("server", tmp_path, FEDAD_ROUND_INTERVAL="30s"), tmp_path)
    assert _option(argv, "--rounds") == ["0"] and _option(argv, "--round-interval") == ["30s"]
    assert _option(argv, "--stop-file") == ["/results/stop"]
    env = {"FEDAD_NAME": "client-3", "FEDAD_LIVE_ARGS": "--rule adaptive --smooth 20"}
    argv = _argv(_entrypoint("client", tmp_path, **env), tmp_path)
    assert _option(argv, "--stream") == ["/live/stream.csv"] and _option(argv, "--alarms") == ["/live/alarms.jsonl"]
    assert _option(argv, "--rule") == ["adaptive"] and _option(argv, "--smooth") == ["20"]


def test_data_job_empties_the_live_volumes_and_the_live_report(tmp_path):
    for slot in ("01", "02"):
        _files(tmp_path, f"live/{slot}/stream.csv", f"live/{slot}/alarms.jsonl")
    _files(tmp_path, "results/live.json")
    for resume in ("0", "1"):  # also when resuming: only the live job's live.json makes a run continuous
        _files(tmp_path, "results/live.json", "live/01/stream.csv")
        base = ["--live", str(tmp_path / "live")]
        for slot in ("01", "02"):
            (tmp_path / "shards" / slot).mkdir(parents=True, exist_ok=True)
        (tmp_path / "import").mkdir(exist_ok=True)
        r = subprocess.run(
            [sys.executable, str(DEPLOY / "plant.py"), "data", "--shards", str(tmp_path / "shards"),
             "--import-dir", str(tmp_path / "import"), "--results", str(tmp_path / "results"), *base],
            capture_output=True, text=True, timeout=120,
            env={**os.environ, "FEDAD_RECORDS": "400", "FEDAD_UID": str(os.getuid()), "FEDAD_GID": str(os.getgid()),
                 "FEDAD_RESUME": resume},
        )  # fmt: skip
        assert r.returncode == 0, r.stderr
        assert not (tmp_path / "results" / "live.json").exists()
        for slot in ("01", "02"):
            live = tmp_path / "live" / slot
            assert list(live.iterdir()) == [] and (live.stat().st_mode & 0o7777) == 0o1777


def test_live_job_streams_every_shard_mirrors_the_alarms_and_refreshes_live_json(tmp_path):
    import signal
    import time

    from fedad.common.synth import write_plant

    write_plant(tmp_path / "plant", nodes=2, records=400, seed=0, formats=("csv",))
    for slot in ("01", "02"):
        (tmp_path / "shards" / slot).mkdir(parents=True)
        (tmp_path / "live" / slot).mkdir(parents=True)
        (tmp_path / "plant" / f"node_{slot}.csv").rename(tmp_path / "shards" / slot / "shard.csv")
    results = tmp_path / "results"
    results.mkdir()
    cmd = [sys.executable, str(DEPLOY / "plant.py"), "live", "--live", str(tmp_path / "live"),
           "--shards", str(tmp_path / "shards"), "--results", str(results), "--tick", "0.05"]  # fmt: skip
    proc = subprocess.Popen(cmd, env={**os.environ, "FEDAD_LIVE_RATE": "100"}, stderr=subprocess.PIPE, text=True)
    stream = tmp_path / "live" / "01" / "stream.csv"

    def wait(predicate, what: str) -> None:
        deadline = time.monotonic() + 120
        while not predicate():
            assert proc.poll() is None, proc.stderr.read() if proc.stderr else ""
            assert time.monotonic() < deadline, what
            time.sleep(0.1)

    try:
        wait(lambda: (results / "live.json").is_file() and stream.is_file(), "live.json and the streams")
        shard = (tmp_path / "shards" / "01" / "shard.csv").read_text().splitlines()
        wait(lambda: len(stream.read_text().splitlines()) > 50, "the stream to grow")
        got = stream.read_text().splitlines()
        assert got[0] == shard[0] and got[1:40] == shard[1:40]  # node 01's own records, in order
        alarm = {"record": 3, "alarm": True, "version": "1"}
        with open(tmp_path / "live" / "02" / "alarms.jsonl", "w") as f:  # node 02 raises an alarm ...
            f.write(json.dumps(alarm) + "\n" + '{"record": 4')  # ... and is writing the next one
        mirrored = results / "alarms" / "client-2.jsonl"
        wait(lambda: mirrored.is_file() and mirrored.read_text() != "", "the alarm in the results")
        (results / "rounds.jsonl").write_text(json.dumps({"round": 1, "clients": 2}) + "\n")
        wait(lambda: json.loads((results / "live.json").read_text())["rounds"] == 1, "live.json after round 1")
        report = json.loads((results / "live.json").read_text())
        assert report["nodes"]["client-2"]["alarms"] == 1 and report["nodes"]["client-2"]["last_alarm"] == alarm
        assert report["nodes"]["client-1"]["alarms"] == 0 and report["last_round"]["round"] == 1
        assert [json.loads(x) for x in mirrored.read_text().splitlines()] == [alarm]  # complete lines only
        assert (results / "alarms" / "client-1.jsonl").read_text() == ""
    finally:
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=60) == 0


def test_entrypoint_server_resumes_exactly_when_this_run_has_a_checkpoint(tmp_path):
    (tmp_path / "results").mkdir()
    r = _entrypoint("server", tmp_path)
    assert "--resume" not in _argv(r, tmp_path) and "resuming" not in r.stderr  # a fresh run
    (tmp_path / "results" / "checkpoint").mkdir()
    (tmp_path / "results" / "checkpoint" / "state.json").write_text(json.dumps({"round": 5}))
    r = _entrypoint("server", tmp_path)  # the container was restarted: the data job left the checkpoint there
    assert _argv(r, tmp_path)[-1] == "--resume"
    assert "resuming this run from its checkpoint after round 5" in r.stderr
    # restarted after its last round (its report is written, status ok): nothing to resume, nothing to redo
    (tmp_path / "results" / "report.json").write_text(json.dumps({"status": "ok"}, indent=2))
    r = _entrypoint("server", tmp_path)
    assert r.returncode == 0 and not r.stdout and "already complete" in r.stderr
    (tmp_path / "results" / "report.json").write_text(json.dumps({"status": "failed"}, indent=2))
    assert _argv(_entrypoint("server", tmp_path), tmp_path)[-1] == "--resume"  # a failed run: resumed again


def test_entrypoint_sign_needs_a_request_and_the_plant_ca(tmp_path):
    r = subprocess.run(
        ["bash", str(DEPLOY / "entrypoint.sh"), "sign", str(tmp_path / "none.csr")],
        capture_output=True,
        text=True,
        timeout=30,
        env={"PATH": os.environ["PATH"]},
    )
    assert r.returncode == 2 and "usage: sign" in r.stderr


def test_entrypoint_keyholder_runs_pinned_mutual_tls_with_the_plant_budget(tmp_path):
    (tmp_path / "audit").mkdir()
    _files(tmp_path, "keys/private.key", "tls/ca.pem", "tls/keyholder.pem", "tls/keyholder.key", "tls/aggregator.pem")
    argv = _argv(_entrypoint("keyholder", tmp_path, FEDAD_STRATEGY="secure-robust"), tmp_path)
    assert argv[0] == "fedad-keyholder" and "--insecure" not in argv
    assert _option(argv, "--private-key") == ["/keys/private.key"]
    assert _option(argv, "--certificates", 3) == ["/tls/ca.pem", "/tls/keyholder.pem", "/tls/keyholder.key"]
    assert _option(argv, "--aggregator-cert") == ["/tls/aggregator.pem"]
    assert _option(argv, "--listen") == ["0.0.0.0:8090"] and _option(argv, "--audit") == ["/audit/audit.jsonl"]
    assert _option(argv, "--max-clients") == ["13"] and "--sketch-rows" not in argv  # fedad's default, as the server
    argv = _argv(_entrypoint("keyholder", tmp_path, FEDAD_STRATEGY="secure-robust", FEDAD_SKETCH_ROWS="12"), tmp_path)
    assert _option(argv, "--sketch-rows") == ["12"]
    r = _entrypoint("keyholder", tmp_path, FEDAD_STRATEGY="secure-robust", FEDAD_KEYHOLDER_ARGS="--insecure")
    assert r.returncode == 2 and "--insecure is refused" in r.stderr
    (tmp_path / "tls/aggregator.pem").unlink()
    r = _entrypoint("keyholder", tmp_path, FEDAD_STRATEGY="secure-robust")
    assert r.returncode == 2 and "pinned aggregator certificate not found" in r.stderr
    # any other strategy: nothing to do, exit 0 at once (the server does not wait for it)
    r = _entrypoint("keyholder", tmp_path, FEDAD_STRATEGY="fedavg", FEDAD_ENTRYPOINT_DRY_RUN="0")
    assert r.returncode == 0 and "does not use a key holder; nothing to do" in r.stderr and not r.stdout


# ------------------------------------------------------------------------------ plant.py data and health
def _data_job(tmp_path: Path, **env: str) -> tuple[subprocess.CompletedProcess, Path]:
    for slot in ("01", "02"):
        (tmp_path / "shards" / slot).mkdir(parents=True, exist_ok=True)
    (tmp_path / "import").mkdir(exist_ok=True)
    results = tmp_path / "results"
    args = ["data", "--shards", str(tmp_path / "shards"), "--import-dir", str(tmp_path / "import")]
    base = {"FEDAD_RECORDS": "400", "FEDAD_UID": str(os.getuid()), "FEDAD_GID": str(os.getgid())}
    r = subprocess.run(
        [sys.executable, str(DEPLOY / "plant.py"), *args, "--results", str(results)],
        capture_output=True,
        text=True,
        timeout=120,
        env={**os.environ, **base, **env},
    )
    assert r.returncode == 0, r.stderr
    return r, results


def _stale(results: Path) -> None:
    (results / "checkpoint").mkdir(parents=True)
    for name in ("report.json", "roc.png", "flags.jsonl", "rounds.jsonl", "checkpoint/state.json"):
        (results / name).write_text("stale")
    (results / "revoked.txt").write_text("node-x\n")  # the operator's own file


def test_data_job_moves_the_previous_runs_outputs_aside(tmp_path):
    _stale(tmp_path / "results")
    r, results = _data_job(tmp_path)
    prev = sorted(results.glob("previous-*"))
    assert len(prev) == 1 and "moved to" in r.stderr
    assert (prev[0] / "flags.jsonl").read_text() == "stale" and (prev[0] / "checkpoint" / "state.json").is_file()
    assert sorted(p.name for p in results.iterdir()) == sorted([prev[0].name, "plant.json", "revoked.txt"])
    assert (results.stat().st_mode & 0o755) == 0o755 and (prev[0].stat().st_mode & 0o755) == 0o755
    # a second run moves this run's plant.json aside too, into its own directory
    _data_job(tmp_path)
    assert len(list(results.glob("previous-*"))) == 2


def test_data_job_keeps_the_outputs_when_resuming_or_while_a_server_runs(tmp_path):
    _stale(tmp_path / "results")
    (tmp_path / "results" / ".server-exit").write_text("1\n")  # how the interrupted run's server last ended
    r, results = _data_job(tmp_path, FEDAD_RESUME="1")
    assert (results / "checkpoint" / "state.json").is_file() and not list(results.glob("previous-*"))
    assert not (results / ".server-exit").exists()  # the summary waits for this run's end, not that one's
    with socket.socket() as listener:  # a server of this plant still answers: its run is going on
        listener.bind(("127.0.0.1", 0))
        listener.listen()
        port = listener.getsockname()[1]
        r, results = _data_job(tmp_path, FEDAD_SERVER=f"127.0.0.1:{port}")
    assert "a server of this plant is running" in r.stderr
    assert (results / "flags.jsonl").is_file() and not list(results.glob("previous-*"))


def test_health_server_port_or_finished_run_and_node_health_file(tmp_path):
    beat = tmp_path / "health"
    node = {"FEDAD_NAME": "client-3", "FEDAD_HEALTH_FILE": str(beat), "FEDAD_ENTRYPOINT_DRY_RUN": "0"}
    assert _entrypoint("health", tmp_path, **node).returncode == 1  # never connected, or lost its stream
    beat.write_text("")
    assert _entrypoint("health", tmp_path, **node).returncode == 0
    os.utime(beat, (beat.stat().st_atime, beat.stat().st_mtime - 120))
    assert _entrypoint("health", tmp_path, **node).returncode == 1  # stale: the stream or the process is gone

    def health(*args: str) -> int:
        return _plant("health", *args).returncode

    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen()
        port = str(listener.getsockname()[1])
        assert health("--port", port) == 0
    done = tmp_path / "report.json"
    assert health("--port", port, "--done", str(done)) == 1  # nothing listens, no report: unhealthy
    done.write_text("{}")
    assert health("--port", port, "--done", str(done)) == 0  # the run is over: writing plots is healthy


# ------------------------------------------------------------------------------ plant.py summary and check
def _fake_run(out: Path, flags: dict | None = None) -> None:
    names = [f"client-{i}" for i in range(1, 10)] + ["attacker-10"]
    rounds = []
    for r in (1, 2):
        rec = {"round": r, "clients": names, "loss": 1.0 / r, "failed": [], "rejected": {}}
        if flags:
            rec["flags"] = flags
        rounds.append(rec)
    (out / "rounds.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rounds))
    report = {
        "strategy": "robust",
        "model": "dense",
        "seconds": 12.5,
        "rounds": rounds,
        "metrics": {"precision": 0.8, "recall": 0.7, "f1": 0.75, "roc_auc": 0.9, "far": 0.01},
        "refused": {"client-11": "its data has 3 features"},
        "failures": [],
    }
    (out / "report.json").write_text(json.dumps(report))


def _plant(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, str(DEPLOY / "plant.py"), *args], capture_output=True, text=True, timeout=60)


def test_summary_names_refused_and_flagged_nodes(tmp_path):
    _fake_run(
        tmp_path,
        flags={"attacker-10": {"flagged": True, "reasons": ["cosine"]}, "client-1": {"flagged": False, "z": 0.3}},
    )
    r = _plant("summary", "--results", str(tmp_path))
    assert r.returncode == 0, r.stderr
    assert "REFUSED node client-11: its data has 3 features" in r.stdout
    assert "FLAGGED node attacker-10 in rounds 1,2: cosine" in r.stdout and "FLAGGED node client-1" not in r.stdout
    s = json.loads((tmp_path / "summary.json").read_text())
    assert list(s["flagged"]) == ["attacker-10"] and len(s["participants"]) == 10
    assert (tmp_path / "summary.txt").read_text().startswith("fedad plant report: strategy robust")


def test_summary_counts_flagged_rounds_like_report_json_and_names_quarantine(tmp_path):
    _fake_run(tmp_path)
    quarantined = {"flagged": False, "excluded": True, "weight": 0.0, "reason": "quarantined (flagged in 3 rounds)"}
    rounds = [
        {
            "round": r,
            "clients": ["client-1", "attacker-10"],
            "loss": 1.0,
            "failed": [],
            "rejected": {},
            "flags": {
                "attacker-10": {"flagged": True, "excluded": True, "reason": "cosine"} if r <= 3 else quarantined,
                "client-1": {"flagged": False, "excluded": False, "reason": None},
            },
        }
        for r in range(1, 6)
    ]
    (tmp_path / "rounds.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rounds))
    r = _plant("summary", "--results", str(tmp_path))
    assert r.returncode == 0, r.stderr
    assert "FLAGGED node attacker-10 in rounds 1,2,3 (quarantined, left out in rounds 4,5): cosine" in r.stdout


def test_summary_waits_for_the_servers_final_exit(tmp_path):
    _fake_run(tmp_path)
    (tmp_path / ".server-exit").write_text("0\n")
    r = _plant("summary", "--results", str(tmp_path), "--wait", "--server", "")
    assert r.returncode == 0 and "fedad plant report" in r.stdout, r.stderr
    report = json.loads((tmp_path / "report.json").read_text())
    (tmp_path / "report.json").write_text(json.dumps({**report, "status": "failed", "error": "quorum lost"}))
    (tmp_path / ".server-exit").write_text("1\n")
    r = _plant("summary", "--results", str(tmp_path), "--wait", "--server", "")
    assert r.returncode == 1 and "the server ended with exit code 1: quorum lost" in r.stderr
    # no end of run and nobody answering: it gives up after --patience, never waits forever
    (tmp_path / ".server-exit").unlink()
    (tmp_path / "report.json").unlink()
    r = _plant("summary", "--results", str(tmp_path), "--wait", "--server", "127.0.0.1:1", "--patience", "1")
    assert r.returncode == 1 and "has not answered on 127.0.0.1:1" in r.stderr


def test_check_passes_and_fails_on_the_right_things(tmp_path):
    _fake_run(tmp_path, flags={"attacker-10": True})
    names = ",".join([f"client-{i}" for i in range(1, 10)] + ["attacker-10"])
    ok = _plant(
        "check",
        "--results",
        str(tmp_path),
        "--rounds",
        "2",
        "--clients",
        names,
        "--min-f1",
        "0.5",
        "--refused",
        "client-11",
        "--flagged",
        "attacker-10",
        "--max-false-flags",
        "0",
    )
    assert ok.returncode == 0, ok.stderr
    bad = _plant(
        "check",
        "--results",
        str(tmp_path),
        "--rounds",
        "3",
        "--clients",
        names + ",client-10",
        "--min-f1",
        "0.9",
        "--flagged",
        "attacker-10,client-2",
    )
    assert bad.returncode == 1
    for text in ("2 rounds, expected 3", "missing ['client-10']", "final F1 0.75", "not flagged: ['client-2']"):
        assert text in bad.stderr, bad.stderr
    assert _plant("check", "--results", str(tmp_path / "nothing")).returncode == 1


def test_check_accounts_for_each_fault_of_a_chaos_run(tmp_path):
    names = [f"client-{i}" for i in range(1, 11)]
    rounds = []
    for r in range(1, 9):
        clients = names if r == 1 else [n for n in names if n not in ("client-8", "client-9", "client-10")]
        failed = ["client-8", "client-9", "client-10"] if r == 2 else []
        if r == 4:
            clients, failed = [n for n in clients if n != "client-4"], ["client-4"]
        rounds.append({"round": r, "clients": clients, "loss": 1.0, "failed": failed, "rejected": {}})
    (tmp_path / "rounds.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rounds))
    report = {
        "strategy": "fedavg",
        "rounds": rounds,
        "metrics": {"f1": 0.8},
        "refused": {},
        "failures": [],
        "status": "ok",
        "resumed": [{"after_round": 5, "replayed_round": 6, "time": 1.0}],
    }
    (tmp_path / "report.json").write_text(json.dumps(report))
    chaos = ("--gone", "client-8,client-9,client-10@2", "--rejoined", "client-4@4", "--resumed", "5")
    ok = _plant("check", "--results", str(tmp_path), "--rounds", "8", "--min-round-clients", "6", *chaos)
    assert ok.returncode == 0, ok.stderr
    # every fault unaccounted for is named: a dead node reported as "unknown", one never back, no resume
    rounds[1]["failed"] = ["client-8", "client-9", "unknown"]
    rounds[4]["clients"] = rounds[4]["clients"] + ["client-10"]
    for r in rounds[4:]:
        r["clients"] = [n for n in r["clients"] if n != "client-4"]
    report.update(rounds=rounds, resumed=[])
    (tmp_path / "rounds.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rounds))
    (tmp_path / "report.json").write_text(json.dumps(report))
    bad = _plant("check", "--results", str(tmp_path), "--min-round-clients", "7", *chaos)
    assert bad.returncode == 1
    for text in (
        "reported as 'unknown' in rounds [2]",
        "client-10 (killed in round 2) is not named as failed",
        "client-10 (killed in round 2) still took part in rounds [5]",
        "client-4 (cut off in round 4) never took part again",
        "has no resume after round 5",
        "round 4: 6 clients < 7",
    ):
        assert text in bad.stderr, (text, bad.stderr)


def _audit_log(path: Path, rounds: int = 2, refused: bool = False, sessions: int = 2) -> None:
    lines = []
    for _ in range(sessions):  # an append-only log: only the last session counts
        lines.append({"op": "start", "time": 1})
        for r in range(1, rounds + 1):
            lines.append({"op": "begin", "round": r, "final": False, "budget": {"sketch": 80}})
            lines += [
                {"op": "decrypt", "round": r, "kind": k, "blocks": n}
                for k, n in (("sketch", 80), ("embedding", 10), ("aggregate", 28))
            ]
        lines.append({"op": "begin", "round": rounds + 1, "final": True, "budget": {"histogram": 19}})
        lines.append({"op": "decrypt", "round": rounds + 1, "kind": "histogram", "blocks": 19})
    if refused:
        lines.append({"op": "begin", "round": 1, "refused": "round 1 was already opened"})
    path.write_text("".join(json.dumps(e) + "\n" for e in lines))


def test_summary_copies_this_runs_keyholder_audit_under_secure_robust(tmp_path):
    _fake_run(tmp_path)
    report = json.loads((tmp_path / "report.json").read_text())
    (tmp_path / "report.json").write_text(json.dumps({**report, "strategy": "secure-robust"}))
    _audit_log(tmp_path / "audit.jsonl")
    r = _plant("summary", "--results", str(tmp_path), "--audit", str(tmp_path / "audit.jsonl"))
    assert r.returncode == 0, r.stderr
    assert (
        "key holder: rounds 1-2 + final round 3 opened, 255 blocks decrypted (aggregate 56, embedding 20, "
        "histogram 19, sketch 160), 0 requests refused" in r.stdout
    )
    copied = (tmp_path / "keyholder-audit.jsonl").read_text().splitlines()
    assert len(copied) == 1 + 2 * 4 + 2  # the last session only
    ok = _plant("check", "--results", str(tmp_path), "--keyholder-rounds", "2")
    assert ok.returncode == 0, ok.stderr
    bad = _plant("check", "--results", str(tmp_path), "--keyholder-rounds", "3")
    assert bad.returncode == 1 and "key holder opened rounds [1, 2], expected [1, 2, 3]" in bad.stderr
    _audit_log(tmp_path / "audit.jsonl", refused=True)
    _plant("summary", "--results", str(tmp_path), "--audit", str(tmp_path / "audit.jsonl"))
    bad = _plant("check", "--results", str(tmp_path), "--keyholder-rounds", "2")
    assert bad.returncode == 1 and "key holder refused 1 requests" in bad.stderr
    line = _plant("audit", "--audit", str(tmp_path / "audit.jsonl"))
    assert line.returncode == 0 and "1 requests refused" in line.stdout and "REFUSED by the key holder" in line.stdout


def test_summary_ignores_an_old_audit_under_other_strategies(tmp_path):
    _fake_run(tmp_path)  # strategy robust
    _audit_log(tmp_path / "audit.jsonl")
    r = _plant("summary", "--results", str(tmp_path), "--audit", str(tmp_path / "audit.jsonl"))
    assert r.returncode == 0 and "key holder" not in r.stdout
    assert not (tmp_path / "keyholder-audit.jsonl").exists()
    assert _plant("check", "--results", str(tmp_path), "--keyholder-rounds", "2").returncode == 1


# ------------------------------------------------------------------------- with an engine and a built image
def _image() -> str | None:
    """The built image to test: FEDAD_IMAGE (CI's cluster step sets fedad:ci), default fedad:local."""
    if DOCKER_ENV is None:
        return None
    image = os.environ.get("FEDAD_IMAGE", "fedad:local")
    try:
        r = subprocess.run(["docker", "image", "inspect", image], env=DOCKER_ENV, capture_output=True, timeout=20)
    except (OSError, subprocess.TimeoutExpired):
        return None
    return image if r.returncode == 0 else None


IMAGE = _image()
needs_image = pytest.mark.skipif(
    IMAGE is None and not REQUIRED, reason="no Docker engine or no fedad image (deploy/build-image.sh)"
)


@needs_image
def test_image_carries_no_compose_labels():
    """A container from the image (an unrelated `docker run`) must never count as part of a running plant."""
    assert IMAGE is not None, f"no image {os.environ.get('FEDAD_IMAGE', 'fedad:local')} on this engine"
    r = subprocess.run(
        ["docker", "image", "inspect", "-f", "{{json .Config.Labels}}", IMAGE],
        env=DOCKER_ENV,
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    labels = json.loads(r.stdout) or {}
    assert not [k for k in labels if k.startswith("com.docker.compose.")], labels


@needs_image
def test_image_node_without_a_shard_exits_2_with_a_clear_message():
    assert IMAGE is not None, f"no image {os.environ.get('FEDAD_IMAGE', 'fedad:local')} on this engine"
    r = subprocess.run(
        ["docker", "run", "--rm", "-e", "FEDAD_NAME=n1", IMAGE, "client"],
        env=DOCKER_ENV,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert r.returncode == 2
    assert "ERROR [client n1] no data file in /data" in r.stderr
    r = subprocess.run(
        ["docker", "run", "--rm", IMAGE, "fedad-server", "--help"],
        env=DOCKER_ENV,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert r.returncode == 0 and "fedad-server" in r.stdout


@needs_image
@pytest.mark.integration
def test_live_profile_scores_every_nodes_stream_while_rounds_run_and_down_removes_it(tmp_path):
    """`docker compose --profile live up`: alarms of every node and rounds advance in ./results while the plant
    runs; `docker compose --profile '*' down -v` removes its containers and volumes."""
    import time

    assert IMAGE is not None and DOCKER_ENV is not None
    project = f"fedad-live-test-{os.getpid()}"
    results = tmp_path / "results"
    results.mkdir()
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    env = {
        **DOCKER_ENV,
        "FEDAD_IMAGE": IMAGE,
        "FEDAD_RESULTS_DIR": str(results),
        "FEDAD_DATA_DIR": str(tmp_path / "data"),
        "FEDAD_PORT": str(port),
        "FEDAD_RECORDS": "20000",
        "FEDAD_LOCAL_EPOCHS": "1",
        "FEDAD_ROUND_INTERVAL": "5s",
        "FEDAD_LIVE_RATE": "20",
        "FEDAD_METRICS_PORT": "",
    }

    def dc(*args: str, timeout: float = 600) -> subprocess.CompletedProcess:
        return subprocess.run(
            ["docker", "compose", "-p", project, *args], cwd=ROOT, env=env, capture_output=True, text=True,
            timeout=timeout,
        )  # fmt: skip

    def alarm_lines() -> dict[str, int]:
        return {
            n: len((results / "alarms" / f"{n}.jsonl").read_text().splitlines())
            if (results / "alarms" / f"{n}.jsonl").is_file()
            else 0
            for n in NODES
        }

    def rounds_done() -> int:
        path = results / "rounds.jsonl"
        return len(path.read_text().splitlines()) if path.is_file() else 0

    def progress() -> tuple:
        return tuple(alarm_lines().values()), rounds_done()

    def wait(predicate, what: str, stall: float = 600, overall: float = 1800) -> None:
        """Until predicate(); fails after ``stall`` s without new alarms or rounds, or ``overall`` s in all."""
        start = last_move = time.monotonic()
        seen = progress()
        while not predicate():
            now = time.monotonic()
            if progress() != seen:
                seen, last_move = progress(), now
            if now - last_move > stall or now - start > overall:
                logs = dc("logs", "--no-color", "--tail", "30", timeout=120).stdout[-6000:]
                pytest.fail(f"no {what} (alarms {alarm_lines()}, rounds {rounds_done()}):\n{logs}")
            time.sleep(2)

    try:
        r = dc("--profile", "live", "up", "-d", timeout=900)
        assert r.returncode == 0, r.stderr[-3000:]
        wait(lambda: rounds_done() >= 1 and sum(alarm_lines().values()) > 0, "first round and alarms")
        before = alarm_lines()
        rounds_before = rounds_done()
        wait(lambda: rounds_done() >= max(2, rounds_before + 1), "second round")
        wait(lambda: sum(alarm_lines().values()) > sum(before.values()), "more alarms")  # the files grow
        after = alarm_lines()
        assert sum(1 for n in NODES if after[n] > 0) >= 5, after  # most nodes alarm on their replayed episodes
        report = json.loads((results / "live.json").read_text())
        assert set(report["nodes"]) == set(NODES) and report["rounds"] >= 1
        assert report["records_emitted_per_node"] > 0
        for n in NODES:
            lines = (results / "alarms" / f"{n}.jsonl").read_text().splitlines()
            decisions = [json.loads(x) for x in lines]
            assert all(d["alarm"] and int(d["version"]) >= 1 for d in decisions), n
            assert [d["record"] for d in decisions] == sorted({d["record"] for d in decisions}), n
        last = json.loads((results / "rounds.jsonl").read_text().splitlines()[-1])
        assert len(last["clients"]) == 10, last  # every node takes part in rounds while it scores
        ps = dc("--profile", "live", "ps", "--format", "json", timeout=120)
        text = ps.stdout.strip()
        states = json.loads(text) if text.startswith("[") else [json.loads(x) for x in text.splitlines() if x.strip()]
        running = {c["Service"] for c in states if c.get("State") == "running"}
        assert {"server", "live", *NODES} <= running, states
    finally:
        down = dc("--profile", "*", "down", "-v", timeout=600)
    assert down.returncode == 0, down.stderr[-3000:]
    label = f"com.docker.compose.project={project}"
    for kind in ("container", "volume"):
        left = subprocess.run(
            ["docker", kind, "ls", "-q", *(["-a"] if kind == "container" else []), "--filter", f"label={label}"],
            env=DOCKER_ENV, capture_output=True, text=True, timeout=120,
        )  # fmt: skip
        assert left.returncode == 0 and left.stdout.strip() == "", (kind, left.stdout)

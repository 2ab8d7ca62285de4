#!/usr/bin/env bash
# CI's real-cluster step: `docker compose up` of the emulated 10-node plant on a real Docker engine, with
# every assertion made from the results on the host. Called by .ci/run after the test suite.
#
#   1. engine: ../shared/docker/setup-engine.sh (Debian docker.io + compose v2, local/python:bookworm base)
#   2. `docker compose config -q` (plain, attack profile, GPU override): cheap first check
#   3. wheelhouse on the host (deploy/build-wheelhouse.sh), image built offline by deploy/build-image.sh with
#      BASE_IMAGE=local/python:bookworm (nothing can be pulled here); the image carries no compose labels;
#      then tests/test_docker.py against this engine and image (FEDAD_DOCKER_TESTS=required: no skips)
#   4. plant: 10 nodes, fedavg, mutual TLS (the default) -> all 10 in every round, F1 well above chance, clean
#      logs; run with the `monitoring` profile (Prometheus image fedad-prometheus:local built offline once by
#      deploy/build-prometheus-image.sh, reused when present): Prometheus's HTTP API (/api/v1/query) shows
#      `fedad_` series of the server and of all 10 nodes, each node's fedad_rounds_total >= 1 and the server's
#      bytes-up counter for all 10 nodes; then the probe stops Prometheus so that `up` ends with the run; an extra container on the plant's network without a client certificate, claiming to be client-3
#      (holding the public ca.pem and a real shard), never gets in: it exits non-zero and no round names it twice;
#      stale outputs of an earlier run in ./results are moved to previous-*/, every result is world-readable,
#      no container is ever "unhealthy" (also not while the server writes its plots)
#   5. a missing certificate / key -> that service exits 2 with a clear message, not restarted
#   6. `--profile attack` with FEDAD_STRATEGY=robust -> the 3 poisoned nodes are flagged; then the documented
#      `docker compose --profile '*' down -v` leaves no container and no volume of the plant
#   7. TLS + Paillier + a node with a wrong-schema shard -> that node exits 2 with a clear message, the
#      other 9 finish every round, report.json and the summary name the node, the server container holds
#      only the public key
#   8. FEDAD_STRATEGY=secure-robust with `--profile attack` (small and quick: FEDAD_CI_SECURE_RECORDS
#      records, FEDAD_CI_SECURE_EPOCHS local epochs) -> the keyholder service serves the run over pinned
#      mutual TLS, report.json is written, the key holder's audit shows rounds 1..N + the final round and no
#      refusal, the 3 poisoned nodes are flagged; only the keyholder container holds the private key
#   9. chaos: 10 nodes, FEDAD_CI_CHAOS_ROUNDS (8) rounds, faults timed off rounds.jsonl: `docker kill` of
#      client-8..10 in round 2, client-4's network cut for 30 s in round 4, `docker restart` of the server in
#      round 6 -> every round completes (>= 6 nodes: the continue quorum), report.json names the killed nodes
#      and the cut-off one (never "unknown"), client-4 takes part again, "resumed" names the resume after
#      round 5, F1 >= the plain run's - 0.05, and every container exits by itself (bounded waits)
# A scenario whose fedad options are missing fails the script (never a silent skip).
# Always: `--profile '*' down -v` and stop the engine it started, also on failure.
#
# Knobs: FEDAD_CI_ROUNDS (3), FEDAD_CI_LOCAL_EPOCHS (10), FEDAD_CI_RECORDS (100000), FEDAD_CI_MIN_F1 (0.5;
# chance is ~0.1), FEDAD_CI_ATTACK (sign_flip), FEDAD_CI_SECURE_RECORDS (20000), FEDAD_CI_SECURE_EPOCHS (2),
# FEDAD_CI_CHAOS_ROUNDS (8), FEDAD_CI_CHAOS_CUT (30 s of network cut), FEDAD_CI_CHAOS_F1_DROP (0.05),
# FEDAD_CI_CHAOS_CPUS (0.05 CPU per surviving node after round 1: rounds long enough for the faults),
# FEDAD_CI_SKIP="attack paillier tls secure-robust chaos pytest" (scenarios the operator skips on purpose),
# FEDAD_CI_PROMETHEUS_PORT (19090), FEDAD_CI_MONITOR_WAIT (840 s, below FEDAD_CI_UP_TIMEOUT),
# FEDAD_CI_KEEP=1 (keep containers, engine and logs for debugging), FEDAD_DOCKER_SETUP (setup-engine.sh).
# Logs of a failed run stay in /tmp/fedad-ci-cluster.*.
set -euo pipefail
cd "$(dirname "$0")/.."
repo=$PWD
t0=$SECONDS
say() { printf '== [%4ds] %s\n' $((SECONDS - t0)) "$*" >&2; }
fail() { say "FAIL: $*"; exit 1; }
failures=()
check_fail() { say "FAIL: $*"; failures+=("$*"); } # a failed expectation: the other scenarios still run
skipped() { [[ " ${FEDAD_CI_SKIP:-} " == *" $1 "* ]]; }

rounds=${FEDAD_CI_ROUNDS:-3}
records=${FEDAD_CI_RECORDS:-100000}
min_f1=${FEDAD_CI_MIN_F1:-0.5}
all_clients=$(echo client-{1..10} | tr ' ' ,)
work=$(mktemp -d /tmp/fedad-ci-cluster.XXXXXX)
export COMPOSE_PROJECT_NAME=fedad-ci          # never touches a developer's own `fedad` plant
export BASE_IMAGE=local/python:bookworm FEDAD_IMAGE=fedad:ci FEDAD_RECORDS=$records FEDAD_ROUNDS=$rounds \
    FEDAD_LOCAL_EPOCHS=${FEDAD_CI_LOCAL_EPOCHS:-10}
export FEDAD_SEED=0 FEDAD_PORT=${FEDAD_CI_PORT:-18080}
export FEDAD_PROMETHEUS_IMAGE=fedad-prometheus:local FEDAD_PROMETHEUS_PORT=${FEDAD_CI_PROMETHEUS_PORT:-19090}
unset COMPOSE_PROFILES FEDAD_STRATEGY FEDAD_TLS FEDAD_MIN_CLIENTS FEDAD_DATA_DIR FEDAD_RESULTS_DIR \
    FEDAD_SERVER_ARGS FEDAD_CLIENT_ARGS FEDAD_ATTACK FEDAD_KEYHOLDER_ARGS FEDAD_KEYHOLDER_MAX_CLIENTS \
    FEDAD_SKETCH_ROWS FEDAD_RESUME FEDAD_MIN_FIT_CLIENTS FEDAD_METRICS_PORT 2>/dev/null || true

# ---------------------------------------------------------------------------------------------- engine
setup=${FEDAD_DOCKER_SETUP:-$repo/../shared/docker/setup-engine.sh}
[ -f "$setup" ] || fail "no engine setup script at $setup (set FEDAD_DOCKER_SETUP)"
engine_was_up=0
DOCKER_HOST=unix://${FEDAD_DOCKER_DIR:-/tmp/fedad-docker}/docker.sock \
    DOCKER_CONFIG=${FEDAD_DOCKER_DIR:-/tmp/fedad-docker}/cfg docker info >/dev/null 2>&1 && engine_was_up=1
say "engine: $setup (already running: $engine_was_up)"
compose() { docker compose --ansi never "$@"; }
# every profile ('*'): the attackers and their volumes too (a plain `down -v` keeps what other profiles made)
down() { compose --profile '*' down -v --remove-orphans --timeout 5 >/dev/null 2>&1 || true; }
leftovers() { # containers and volumes of this compose project still there
    {
        docker ps -a --filter "label=com.docker.compose.project=$COMPOSE_PROJECT_NAME" --format 'container {{.Names}}'
        docker volume ls --filter "label=com.docker.compose.project=$COMPOSE_PROJECT_NAME" --format 'volume {{.Name}}'
    } | xargs
}
cleanup() {
    local rc=$?
    trap - EXIT INT TERM
    if [ "$rc" -ne 0 ]; then
        say "cluster step failed (exit $rc); logs in $work; last compose logs:"
        compose --profile '*' logs --no-color 2>/dev/null | grep -v "IPv4 forwarding" | tail -80 >&2 || true
    fi
    if [ "${FEDAD_CI_KEEP:-0}" = 1 ]; then
        say "FEDAD_CI_KEEP=1: containers, volumes and engine left running ($work)"
    else
        if docker info >/dev/null 2>&1; then down; fi
        if [ "$engine_was_up" = 0 ] && declare -F fedad_docker_stop >/dev/null; then fedad_docker_stop || true; fi
        say "cleaned up (engine stopped: $((1 - engine_was_up)))"
        [ "$rc" -ne 0 ] || rm -rf "$work"
    fi
    say "cluster step: $((SECONDS - t0)) s, exit $rc"
    exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT TERM
# shellcheck disable=SC1090
source "$setup" >"$work/engine-setup.log" 2>&1
set -euo pipefail # the setup script turns these off at its end
docker info >/dev/null 2>&1 && docker image inspect "$BASE_IMAGE" >/dev/null 2>&1 ||
    { tail -30 "$work/engine-setup.log" >&2; fail "engine setup: no engine or no $BASE_IMAGE"; }

docker compose version >&2

# ------------------------------------------------------------------------------------- cheap first check
say "docker compose config -q (default, attack profile, monitoring profile, GPU override)"
compose config -q
compose --profile attack config -q
compose --profile honest --profile monitoring config -q
compose -f docker-compose.yml -f deploy/compose.gpu.yml --profile attack config -q
[ "$(compose config --services | grep -c '^client-')" = 10 ] || fail "default config has not 10 clients"
[ "$(compose --profile attack config --services | grep -Ec '^(client|attacker)-')" = 10 ] ||
    fail "attack profile has not 10 nodes"

# ------------------------------------------------------------------------------------------------ build
say "wheelhouse on the host (deploy/build-wheelhouse.sh)"
deploy/build-wheelhouse.sh 2>&1 | grep -v "is ignored: it is neither a file nor a directory" >&2
say "build $FEDAD_IMAGE offline from $BASE_IMAGE (deploy/build-image.sh)"
deploy/build-image.sh >"$work/build.log" 2>&1 || { tail -40 "$work/build.log" >&2; fail "image build"; }
grep -q "installing from the wheelhouse" "$work/build.log" || say "(build used cached dependency layers)"
labels=$(docker image inspect -f '{{json .Config.Labels}}' "$FEDAD_IMAGE")
[[ "$labels" != *com.docker.compose* ]] || fail "$FEDAD_IMAGE carries compose labels: $labels"
say "built in $((SECONDS - t0)) s so far; image labels: $labels"
if docker image inspect "$FEDAD_PROMETHEUS_IMAGE" >/dev/null 2>&1; then
    say "Prometheus image $FEDAD_PROMETHEUS_IMAGE: present, reused"
else
    say "build $FEDAD_PROMETHEUS_IMAGE offline from Debian's prometheus (deploy/build-prometheus-image.sh)"
    deploy/build-prometheus-image.sh "$FEDAD_PROMETHEUS_IMAGE" >"$work/build-prometheus.log" 2>&1 ||
        { tail -40 "$work/build-prometheus.log" >&2; fail "Prometheus image build"; }
fi

# ------------------------------------------------------------- tests/test_docker.py on this engine and image
if skipped pytest; then
    say "SKIPPED: tests/test_docker.py (FEDAD_CI_SKIP)"
else
    say "tests/test_docker.py against this engine and $FEDAD_IMAGE (no skips allowed)"
    FEDAD_DOCKER_TESTS=required python3 -m pytest -q -p no:cacheprovider -rs tests/test_docker.py tests/test_monitoring_compose.py \
        >"$work/pytest-docker.log" 2>&1 || { tail -40 "$work/pytest-docker.log" >&2; fail "tests/test_docker.py"; }
    ! grep -qi "skipped" "$work/pytest-docker.log" || { cat "$work/pytest-docker.log" >&2; fail "tests/test_docker.py skipped tests"; }
    say "  $(tail -1 "$work/pytest-docker.log")"
fi

# ------------------------------------------------------------------------------------------- helpers
# plant NAME [compose args...]: a fresh `docker compose up` with results in $work/NAME/results; its logs in
# $work/NAME.log, its containers' exit codes in $work/NAME.codes ("service code" lines).
plant() {
    local name=$1
    shift
    down
    mkdir -p "$work/$name/import"
    export FEDAD_RESULTS_DIR=$work/$name/results FEDAD_DATA_DIR=${FEDAD_DATA_DIR_OVERRIDE:-$work/$name/import}
    local s=$SECONDS rc=0
    say "plant '$name': docker compose $* up"
    timeout "${FEDAD_CI_UP_TIMEOUT:-900}" docker compose --ansi never "$@" up --no-build >"$work/$name.log" 2>&1 || rc=$?
    sed -i 's/\x1b\[K//g' "$work/$name.log"
    compose "$@" ps -a --format '{{.Service}} {{.ExitCode}}' >"$work/$name.codes"
    compose "$@" logs --no-color >"$work/$name.containers.log" 2>&1 || true
    grep -E '^(summary|server)-1 +\|' "$work/$name.log" | grep -v "IPv4 forwarding" | tail -25 >&2 || true
    say "plant '$name': up exited $rc after $((SECONDS - s)) s"
    [ "$rc" = 124 ] && fail "plant '$name' did not finish within ${FEDAD_CI_UP_TIMEOUT:-900} s"
    return 0
}
code_of() { awk -v s="$2" '$1 == s {print $2}' "$work/$1.codes"; }
expect_code() { # expect_code RUN SERVICE CODE
    local got
    got=$(code_of "$1" "$2")
    [ "$got" = "$3" ] || fail "run '$1': $2 exited '${got:-?}', expected $3"
}
check_logs() { # every line of every container: no colour codes, no traceback, one event per line
    local run=$1 f=$work/$1.containers.log
    ! grep -q $'\x1b' "$f" || fail "run '$run': colour/escape codes in docker compose logs"
    ! grep -Eq '\| (Traceback|  File ")' "$f" || fail "run '$run': a traceback in the logs: $(grep -m3 -E '\| (Traceback|  File ")' "$f")"
    local svc
    for svc in $(awk '$1 ~ /^client-/ {print $1}' "$work/$run.codes"); do
        # each line of a node carries its name (the last line of a refused node is fedad-client's error line)
        local bad
        bad=$(compose logs --no-color --no-log-prefix "$svc" 2>/dev/null | grep -v "IPv4 forwarding" |
            grep -v "\[client $svc\]" | grep -v '^fedad-client: error: ' || true)
        [ -z "$bad" ] || fail "run '$run': $svc log lines without its name: $(echo "$bad" | head -3)"
    done
}
results_check() { python3 deploy/plant.py check --results "$work/$1/results" "${@:2}" >&2 || check_fail "run '$1': results check"; }

# ------------------------------------------------------------------------------- 4. the default plant
# rogue_probe: once the server is healthy, a container that is not part of the plant joins its network with
# the public CA certificate and client-3's shard but no client certificate, and tries to take part as client-3
rogue_probe() {
    local i cid=""
    for i in $(seq 1 600); do
        cid=$(compose ps -q server 2>/dev/null || true)
        [ -n "$cid" ] && [ "$(docker inspect -f '{{.State.Health.Status}}' "$cid" 2>/dev/null)" = healthy ] && break
        cid=""
        sleep 1
    done
    [ -n "$cid" ] || { echo "server never became healthy" >"$work/rogue.log"; echo 99 >"$work/rogue.code"; return 0; }
    local rc=0
    docker run --rm --network "${COMPOSE_PROJECT_NAME}_default" -v "${COMPOSE_PROJECT_NAME}_tls-ca:/tls:ro" \
        -v "${COMPOSE_PROJECT_NAME}_shard-03:/data:ro" --entrypoint sh "$FEDAD_IMAGE" -c \
        'exec fedad-client --server server:8080 --data "$(ls /data/*.csv /data/*.parquet 2>/dev/null | head -1)" --name client-3 --root-certificates /tls/ca.pem --connect-timeout 30 --device cpu' \
        >"$work/rogue.log" 2>&1 || rc=$?
    echo "$rc" >"$work/rogue.code"
}
# monitor_probe: the plant runs with the monitoring profile; Prometheus (127.0.0.1:$FEDAD_PROMETHEUS_PORT) must see
# fedad_ series of the server and all 10 nodes, every node's own fedad_rounds_total >= 1 and the server's
# fedad_client_bytes_up_total of all 10 nodes. Bounded: it waits on the series and gives up when the server's
# container has ended (plus a last scrape) or after FEDAD_CI_MONITOR_WAIT s. It always stops Prometheus at the
# end (Prometheus would keep `up` running after the run); the verdict is in $work/monitoring.code.
monitor_probe() {
    local rc=0 cid
    python3 - "$FEDAD_PROMETHEUS_PORT" "${FEDAD_CI_MONITOR_WAIT:-840}" "$COMPOSE_PROJECT_NAME" \
        >"$work/monitoring.log" 2>&1 <<'PY' || rc=$?
import json, subprocess, sys, time, urllib.parse, urllib.request

port, wait, project = sys.argv[1], float(sys.argv[2]), sys.argv[3]
nodes = {f"client-{i}" for i in range(1, 11)}

def query(q, label="instance"):
    url = f"http://127.0.0.1:{port}/api/v1/query?" + urllib.parse.urlencode({"query": q})
    with urllib.request.urlopen(url, timeout=10) as r:
        body = json.load(r)
    if body.get("status") != "success":
        raise RuntimeError(f"{q}: {body}")
    return {r["metric"].get(label, ""): float(r["value"][1]) for r in body["data"]["result"]}

def server_state():
    out = subprocess.run(["docker", "ps", "-a", "--filter", f"label=com.docker.compose.project={project}",
                          "--filter", "label=com.docker.compose.service=server", "--format", "{{.State}}"],
                         capture_output=True, text=True).stdout.split()
    return out[0] if out else "absent"

checks = {  # name -> (PromQL over the run so far, the label that names who, who must be there)
    "series": ('count by (instance) (last_over_time({__name__=~"fedad_.+"}[1h]))', "instance", {"server"} | nodes),
    "node rounds": ('max by (instance) (max_over_time(fedad_rounds_total{job="node"}[1h])) >= 1', "instance", nodes),
    "server bytes up": ('max by (client) (max_over_time(fedad_client_bytes_up_total{job="server"}[1h])) > 0',
                        "client", nodes),
}
start, ended, seen, err, answered = time.time(), None, {}, "", False
while True:
    try:
        seen = {name: set(query(q, label)) for name, (q, label, _) in checks.items()}
        err, answered = "", True  # this plant's Prometheus: from now on an exited server is this run's
    except Exception as exc:  # Prometheus not answering yet
        err = f"{type(exc).__name__}: {exc}"
    if all(want <= seen.get(name, set()) for name, (_, _, want) in checks.items()):
        break
    if ended is None and answered and server_state() in ("exited", "dead"):
        ended = time.time()
    if (ended is not None and time.time() - ended > 20) or time.time() - start > wait:
        for name, (q, _, want) in checks.items():
            print(f"{name}: missing {sorted(want - seen.get(name, set()))} ({q})")
        print(f"gave up after {time.time() - start:.0f} s (server container: {server_state()}){'; ' + err if err else ''}")
        sys.exit(1)
    time.sleep(2)
up = query('max by (instance) (max_over_time(up[1h]))')
rounds = query('max_over_time(fedad_rounds_total{job="server"}[1h])')
print(f"after {time.time() - start:.0f} s: fedad_ series of {len(seen['series'])} instances "
      f"({', '.join(sorted(seen['series']))}); nodes with rounds >= 1: {len(seen['node rounds'])}; "
      f"server rounds so far: {rounds.get('server', 0):.0f}; targets up: {sum(v == 1 for v in up.values())}/{len(up)}")
PY
    echo "$rc" >"$work/monitoring.code"
    cid=$(compose --profile monitoring ps -q prometheus 2>/dev/null || true)
    [ -z "$cid" ] || echo "prometheus health: $(docker inspect -f '{{.State.Health.Status}}' "$cid" 2>/dev/null)" >>"$work/monitoring.log"
    compose --profile monitoring logs --no-color prometheus >"$work/prometheus.log" 2>&1 || true
    compose --profile monitoring stop prometheus >/dev/null 2>&1 || { [ -z "$cid" ] || docker stop "$cid" >/dev/null 2>&1; } || true
}
rm -f "$work/rogue.code" "$work/monitoring.code"
# a previous run's outputs in ./results: a new run moves them aside, never mixes with them
mkdir -p "$work/plain/results/checkpoint"
for f in roc.png flags.jsonl report.json trust.png checkpoint/state.json; do echo stale >"$work/plain/results/$f"; done
echo "node-x" >"$work/plain/results/revoked.txt" # the operator's own file stays where it is
down # no container of an earlier run (a kept Prometheus would answer the probe with old series)
rogue_probe &
rogue_pid=$!
monitor_probe &
monitor_pid=$!
plain_since=$(date +%s)
plant plain --profile honest --profile monitoring
wait "$rogue_pid" || true
wait "$monitor_pid" || true
if [ "$(cat "$work/monitoring.code" 2>/dev/null)" = 0 ]; then
    say "  monitoring: $(grep '^after ' "$work/monitoring.log")"
else
    sed 's/^/  monitoring: /' "$work/monitoring.log" >&2 || true
    tail -20 "$work/prometheus.log" >&2 || true
    check_fail "monitoring profile: Prometheus does not show fedad_ series of the server and all 10 nodes"
fi
rogue_code=$(cat "$work/rogue.code" 2>/dev/null || echo "?")
if [ "$rogue_code" = 0 ] || [ "$rogue_code" = 99 ] || [ "$rogue_code" = "?" ]; then
    check_fail "the rogue container without a client certificate: exit '$rogue_code' (expected a refusal): $(tail -3 "$work/rogue.log")"
else
    say "  rogue container without a certificate, as client-3: refused (exit $rogue_code): $(tail -1 "$work/rogue.log")"
fi
grep -q "(TLS on, client certificates required)" "$work/plain.log" || check_fail "the default plant did not run mutual TLS"
expect_code plain data 0
expect_code plain server 0
expect_code plain summary 0
for i in $(seq 1 10); do expect_code plain "client-$i" 0; done
results_check plain --rounds "$rounds" --clients "$all_clients" --min-f1 "$min_f1"
check_logs plain
[ -s "$work/plain/results/summary.txt" ] || check_fail "no summary.txt in the results"
model_dir=$(python3 -c 'import json,sys; print(json.load(open(sys.argv[1])).get("model_dir") or "")' "$work/plain/results/report.json")
[ -z "$model_dir" ] || [ -d "$work/plain/results/${model_dir#/results/}" ] || check_fail "report.json names $model_dir, not on the host"
[ "$(stat -c %u "$work/plain/results/report.json")" = "${FEDAD_UID:-1000}" ] || check_fail "report.json not owned by FEDAD_UID"
# housekeeping: stale files moved aside, results readable by anyone, never "unhealthy" (also while plotting)
prev=$(find "$work/plain/results" -maxdepth 1 -name 'previous-*' -type d | head -1)
[ -n "$prev" ] && [ "$(cat "$prev/flags.jsonl" 2>/dev/null)" = stale ] && [ -f "$prev/checkpoint/state.json" ] ||
    check_fail "the stale outputs of an earlier run were not moved to results/previous-*/"
[ ! -e "$work/plain/results/flags.jsonl" ] && [ ! -e "$work/plain/results/trust.png" ] ||
    check_fail "a stale flags.jsonl / trust.png of an earlier run is still beside this run's results"
[ -f "$work/plain/results/revoked.txt" ] || check_fail "the operator's revoked.txt was moved"
[ "$(head -c 4 "$work/plain/results/roc.png" | tail -c 3)" = PNG ] || check_fail "roc.png is not this run's plot"
unreadable=$(find "$work/plain/results" ! -perm -o+r -printf '%m %P\n' | head -5)
[ -z "$unreadable" ] || check_fail "results not readable by everyone: $unreadable"
say "  results: stale outputs moved to $(basename "${prev:-none}"); roc.png mode $(stat -c %a "$work/plain/results/roc.png"); all readable"
unhealthy=$(docker events --since "$plain_since" --until "$(date +%s)" --filter event=health_status \
    --format '{{.Actor.Attributes.name}} {{.Status}}' 2>/dev/null | grep -i unhealthy | sort -u | head -5 || true)
[ -z "$unhealthy" ] || check_fail "containers went unhealthy during the plain run: $unhealthy"
plain_f1=$(python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))["metrics"]["f1"])' "$work/plain/results/report.json")

# ---------------------------------------------------------------- 5. missing certificate / key: clear exit 2
say "missing TLS certificate and Paillier key: services exit 2 with a clear message, no restart"
missing() { # missing SERVICE EXPECTED_TEXT ENV...
    local svc=$1 text=$2 rc=0 out
    shift 2
    out=$(env "$@" docker compose --ansi never up --no-deps --no-build --no-log-prefix "$svc" 2>&1) || rc=$?
    local cid code restarts
    cid=$(env "$@" docker compose ps -a -q "$svc")
    code=$(docker inspect -f '{{.State.ExitCode}}' "$cid")
    restarts=$(docker inspect -f '{{.RestartCount}}' "$cid")
    [ "$code" = 2 ] || fail "$svc with $*: exit $code, expected 2: $(echo "$out" | tail -3)"
    [ "$restarts" = 0 ] || fail "$svc with $*: restarted $restarts times"
    echo "$out" | grep -q "$text" || fail "$svc with $*: no clear message ('$text'): $(echo "$out" | tail -3)"
    say "  $svc ($*): exit 2, $(echo "$out" | grep -m1 "$text" | sed 's/^.*ERROR //')"
}
export FEDAD_RESULTS_DIR=$work/plain/results FEDAD_DATA_DIR=$work/plain/import
# the default plant left its certificates behind: remove them (not the shards) to see the missing-file errors
compose --profile honest --profile attack rm -f -s >/dev/null 2>&1 || true
docker volume rm -f "${COMPOSE_PROJECT_NAME}_tls-ca" "${COMPOSE_PROJECT_NAME}_tls-server" \
    "${COMPOSE_PROJECT_NAME}_tls-client-1" >/dev/null
missing server "TLS CA certificate not found" FEDAD_TLS=1
missing client-1 "TLS CA certificate not found" FEDAD_TLS=1
missing server "Paillier public key not found" FEDAD_STRATEGY=paillier FEDAD_TLS=0
missing client-2 "Paillier private key not found" FEDAD_STRATEGY=paillier FEDAD_TLS=0
missing keyholder "Paillier private key not found" FEDAD_STRATEGY=secure-robust

# ------------------------------------------------------------------------------- 6. the attack profile
server_help=$(docker run --rm "$FEDAD_IMAGE" fedad-server --help 2>/dev/null)
client_help=$(docker run --rm "$FEDAD_IMAGE" fedad-client --help 2>/dev/null)
needs() { # needs SCENARIO TEXT HELP WHAT: a scenario whose fedad option is missing fails the step, never skips
    grep -q -- "$2" <<<"$3" || fail "$1: $4 (the image's --help has no '$2')"
}
if skipped attack; then
    say "SKIPPED: attack profile (FEDAD_CI_SKIP)"
else
    needs attack "robust" "$server_help" "fedad-server has no --strategy robust"
    needs attack "--attack " "$client_help" "fedad-client has no --attack"
    attackers=attacker-8,attacker-9,attacker-10
    FEDAD_STRATEGY=robust FEDAD_ATTACK=${FEDAD_CI_ATTACK:-sign_flip} \
        FEDAD_SERVER_ARGS="--malicious attacker-8 attacker-9 attacker-10" plant attack --profile attack
    expect_code attack server 0
    for n in client-{1..7} attacker-{8..10}; do expect_code attack "$n" 0; done
    [ -z "$(code_of attack client-8)" ] || fail "--profile attack still ran the honest client-8"
    results_check attack --rounds "$rounds" --clients "$(echo client-{1..7} | tr ' ' ,),$attackers" \
        --flagged "$attackers" --max-false-flags "${FEDAD_CI_MAX_FALSE_FLAGS:-1}"
    grep -q "FLAGGED node attacker-8" "$work/attack/results/summary.txt" || check_fail "summary.txt does not show the flags"
    check_logs attack
    # the documented clean-up, exactly as docs/docker.md gives it, after a run with another profile
    docker compose --ansi never --profile '*' down -v >/dev/null 2>&1 || check_fail "docker compose --profile '*' down -v failed"
    left=$(leftovers)
    [ -z "$left" ] || check_fail "docker compose --profile '*' down -v left: $left"
    say "  docker compose --profile '*' down -v: no container or volume of the plant left"
fi

# ------------------------------------------ 7. TLS + Paillier + one node with a wrong-schema shard
if skipped tls; then
    say "SKIPPED: TLS + bad shard (FEDAD_CI_SKIP)"
else
    strategy=fedavg
    if skipped paillier; then
        say "SKIPPED: Paillier (FEDAD_CI_SKIP); TLS + bad shard with fedavg"
    else
        needs paillier "paillier" "$server_help" "fedad-server has no --strategy paillier"
        needs paillier "--private-key" "$client_help" "fedad-client has no --private-key"
        strategy=paillier
    fi
    mkdir -p "$work/secure-bad/import"
    python3 - "$work/secure-bad/import/node_07.csv" <<'PY'
import csv, random, sys
random.seed(7)
with open(sys.argv[1], "w", newline="") as f:  # another machine's export: 3 sensors, none of the plant's 12
    w = csv.writer(f)
    w.writerow(["timestamp", "pressure_in", "pressure_out", "valve_position", "label"])
    for i in range(3000):
        w.writerow([1704067200 + 10 * i, round(random.gauss(5, .2), 3), round(random.gauss(3, .2), 3),
                    round(random.random(), 3), 0])
PY
    # the operator fixes the schema (never a majority of whoever connects first): client-1's columns
    FEDAD_TLS=1 FEDAD_STRATEGY=$strategy FEDAD_MIN_CLIENTS=9 FEDAD_ROUNDS=2 \
        FEDAD_SERVER_ARGS="--features-from client-1" plant secure-bad
    for svc in data keys certs server summary; do expect_code secure-bad "$svc" 0; done
    expect_code secure-bad client-7 2
    for i in 1 2 3 4 5 6 8 9 10; do expect_code secure-bad "client-$i" 0; done
    grep -q "client-7-1 *| fedad-client: error: the server refused this node" "$work/secure-bad.log" ||
        check_fail "client-7 has no clear refusal message in its logs"
    grep -q "(TLS on, client certificates required), strategy $strategy" "$work/secure-bad.log" || check_fail "the server did not run with TLS and $strategy"
    results_check secure-bad --rounds 2 --clients "$(echo client-{1..6} client-{8..10} | tr ' ' ,)" --refused client-7
    grep -q "REFUSED node client-7" "$work/secure-bad/results/summary.txt" || check_fail "summary.txt does not name client-7"
    check_logs secure-bad
    if [ "$strategy" = paillier ]; then
        # the aggregator's container holds the public key and cannot see the private one
        keys_in_server=$(FEDAD_STRATEGY=paillier docker compose --ansi never run --rm --no-deps --entrypoint ls \
            server -A /keys 2>/dev/null | grep -v "IPv4" | tr '\n' ' ' | xargs)
        [ "$keys_in_server" = "public.key" ] || check_fail "the server container sees in /keys: '$keys_in_server'"
        keys_in_node=$(docker compose --ansi never run --rm --no-deps --entrypoint ls client-3 -A /keys 2>/dev/null |
            grep -v "IPv4" | tr '\n' ' ' | xargs)
        [ "$keys_in_node" = "private.key public.key" ] || check_fail "a node sees in /keys: '$keys_in_node'"
        say "  /keys in the server: $keys_in_server; in a node: $keys_in_node"
        # a paillier private key left in the nodes' volume: a secure-robust node refuses to start with it
        if ! skipped secure-robust; then
            missing client-2 "only the key holder may hold it" FEDAD_STRATEGY=secure-robust
        fi
    fi
fi

# ------------------------------- 8. secure-robust: the key holder, with the attack profile
if skipped secure-robust; then
    say "SKIPPED: secure-robust (FEDAD_CI_SKIP)"
else
    needs secure-robust "secure-robust" "$server_help" "fedad-server has no --strategy secure-robust"
    needs secure-robust "--public-key" "$client_help" "fedad-client has no --public-key"
    attackers=attacker-8,attacker-9,attacker-10
    FEDAD_STRATEGY=secure-robust FEDAD_ATTACK=${FEDAD_CI_ATTACK:-sign_flip} \
        FEDAD_RECORDS=${FEDAD_CI_SECURE_RECORDS:-20000} FEDAD_LOCAL_EPOCHS=${FEDAD_CI_SECURE_EPOCHS:-2} \
        FEDAD_SERVER_ARGS="--malicious attacker-8 attacker-9 attacker-10" plant secure-robust --profile attack
    for svc in data keys certs keyholder server summary; do expect_code secure-robust "$svc" 0; done
    for n in client-{1..7} attacker-{8..10}; do expect_code secure-robust "$n" 0; done
    results_check secure-robust --rounds "$rounds" --clients "$(echo client-{1..7} | tr ' ' ,),$attackers" \
        --flagged "$attackers" --max-false-flags "${FEDAD_CI_MAX_FALSE_FLAGS:-1}" --keyholder-rounds "$rounds"
    grep -q "keyholder-1 *| .* listening on 0.0.0.0:8090 (mutual TLS, aggregator pinned " "$work/secure-robust.log" ||
        check_fail "the key holder did not run mutual TLS with a pinned aggregator certificate"
    grep -q "server-1 *| .*--keyholder keyholder:8090 --keyholder-certificates " "$work/secure-robust.log" ||
        check_fail "the server did not run with --keyholder and --keyholder-certificates"
    grep -q "keyholder-1 *| .*the server has ended (exit 0)" "$work/secure-robust.log" ||
        check_fail "the key holder did not end with the server"
    grep -q "key holder: rounds 1-$rounds + final round $((rounds + 1)) opened" "$work/secure-robust/results/summary.txt" ||
        check_fail "summary.txt does not show the key holder's rounds"
    check_logs secure-robust
    # who holds which key: every key file each container can see in its mounts
    keys_of() {
        FEDAD_STRATEGY=secure-robust docker compose --ansi never --profile attack run --rm --no-deps --entrypoint sh "$1" \
            -c 'find /keys /tls /tls-node /aggregator-tls /audit /state /data /collusion -name "*.key" 2>/dev/null | sort' \
            2>/dev/null | grep -v "IPv4" | xargs
    }
    in_server=$(keys_of server)
    in_node=$(keys_of attacker-9)
    in_keyholder=$(keys_of keyholder)
    [ "$in_server" = "/aggregator-tls/aggregator.key /keys/public.key /tls/server.key" ] ||
        check_fail "the server container sees: '$in_server'"
    [ "$in_node" = "/keys/public.key /tls-node/attacker-9.key" ] || check_fail "a node sees: '$in_node'"
    [ "$in_keyholder" = "/keys/private.key /keys/public.key /tls/keyholder.key" ] ||
        check_fail "the key holder sees: '$in_keyholder'"
    say "  key files in the key holder: $in_keyholder; in the server: $in_server; in a node: $in_node"
fi

# ------------------------------------------------------------------------------------------- 9. chaos
# The faults are timed off the run's own progress (lines of rounds.jsonl), never by sleeps alone; every wait is
# bounded, and a fault that cannot be injected (the run ended or stalled first) fails the step.
chaos_rounds=${FEDAD_CI_CHAOS_ROUNDS:-8}
chaos_cut=${FEDAD_CI_CHAOS_CUT:-30}
chaos_cpus=${FEDAD_CI_CHAOS_CPUS:-0.05}
chaos_done() { # rounds completed so far (rounds.jsonl lines) of the chaos run
    local f=$work/chaos/results/rounds.jsonl
    if [ -f "$f" ]; then grep -c . "$f" 2>/dev/null || true; else echo 0; fi
}
chaos_wait() { # chaos_wait ROUNDS: until ROUNDS rounds are done (a run that is over or stalled: exit 1)
    local want=$1 limit=$((SECONDS + ${FEDAD_CI_CHAOS_WAIT:-600}))
    while [ "$(chaos_done)" -lt "$want" ]; do
        if [ "$SECONDS" -gt "$limit" ]; then
            echo "round $want never completed within ${FEDAD_CI_CHAOS_WAIT:-600} s (done: $(chaos_done))"
            return 1
        fi
        if [ -s "$work/chaos/results/report.json" ]; then
            echo "the run ended after $(chaos_done) rounds, before round $want was done"
            return 1
        fi
        sleep 0.5
    done
}
chaos_event() { printf '%s round %s: %s\n' "$(date -u +%T)" "$(($(chaos_done) + 1))" "$*" >>"$work/chaos.events"; }
chaos_at() { # chaos_at ROUND: wait until ROUND is the round in progress; a run already past it fails the fault
    local why
    why=$(chaos_wait $(($1 - 1))) || { chaos_event "FAILED: $why"; return 1; }
    [ "$(chaos_done)" -eq $(($1 - 1)) ] || { chaos_event "FAILED: too late for round $1 ($(chaos_done) rounds done)"; return 1; }
}
chaos_cut() { # client-4 off the plant's network for $chaos_cut s, then back (runs beside the other faults)
    local cid
    cid=$(compose ps -a -q client-4)
    docker network disconnect "${COMPOSE_PROJECT_NAME}_default" "$cid" && chaos_event "network cut: client-4" ||
        chaos_event "FAILED: network disconnect client-4"
    sleep "$chaos_cut"
    docker network connect "${COMPOSE_PROJECT_NAME}_default" "$cid" && chaos_event "network back: client-4" ||
        chaos_event "FAILED: network connect client-4"
}
chaos_driver() {
    local cid n cut=""
    # round 2: three nodes die (their containers are killed at once: Docker does not restart them)
    local ids=() limit=$((SECONDS + ${FEDAD_CI_CHAOS_WAIT:-600}))
    for n in 8 9 10; do # their containers, once they exist (before round 1; `ps -a`: also not yet started)
        until [ -n "$(compose ps -a -q "client-$n" 2>/dev/null)" ]; do
            [ "$SECONDS" -lt "$limit" ] || { chaos_event "FAILED: no client-$n container"; return 1; }
            sleep 0.5
        done
        ids+=("$(compose ps -a -q "client-$n")")
    done
    chaos_at 2 || return 1
    docker kill "${ids[@]}" >/dev/null && chaos_event "docker kill client-8 client-9 client-10" ||
        chaos_event "FAILED: docker kill client-8 client-9 client-10"
    # the survivors get $chaos_cpus of a CPU each from now on: the same training, but rounds long enough for
    # the later faults to land inside their round and for client-4 to come back while the run still goes on
    ids=()
    for n in 1 2 3 4 5 6 7; do ids+=("$(compose ps -a -q "client-$n")"); done
    docker update --cpus "$chaos_cpus" "${ids[@]}" >/dev/null || chaos_event "FAILED: docker update --cpus"
    # round 4: client-4 is cut off the plant's network for $chaos_cut s, then comes back
    chaos_at 4 || return 1
    chaos_cut &
    cut=$!
    # round 6: the server container is restarted (stopped with SIGTERM, started again: it resumes)
    chaos_at 6 || { wait "$cut"; return 1; }
    cid=$(compose ps -a -q server)
    docker restart -t 60 "$cid" >/dev/null && chaos_event "docker restart server" || chaos_event "FAILED: docker restart server"
    wait "$cut"
}
if skipped chaos; then
    say "SKIPPED: chaos (FEDAD_CI_SKIP)"
else
    needs chaos "--min-fit-clients" "$server_help" "fedad-server has no --min-fit-clients (the continue quorum)"
    needs chaos "--health-file" "$client_help" "fedad-client has no --health-file (the nodes' liveness)"
    rm -f "$work/chaos.events"
    mkdir -p "$work/chaos/results"
    (chaos_driver || true) &
    chaos_pid=$!
    # the plain run's plant and training, 8 rounds; starts with all 10, goes on with >= 6 (60 %, the compose
    # plant's continue quorum)
    FEDAD_ROUNDS=$chaos_rounds FEDAD_MIN_CLIENTS=10 FEDAD_MIN_FIT_CLIENTS=0.6 \
        FEDAD_ROUND_TIMEOUT=${FEDAD_CI_CHAOS_ROUND_TIMEOUT:-300} plant chaos
    kill "$chaos_pid" 2>/dev/null || true
    wait "$chaos_pid" 2>/dev/null || true
    sed 's/^/  chaos: /' "$work/chaos.events" >&2 || true
    ! grep -q FAILED "$work/chaos.events" || check_fail "a fault could not be injected: $(grep FAILED "$work/chaos.events" | head -2)"
    [ "$(grep -c . "$work/chaos.events")" -ge 4 ] || check_fail "not every fault was injected ($(grep -c . "$work/chaos.events") of 4 events)"
    # every container exited by itself: the killed nodes with 137 (docker kill), all others 0
    for svc in data keys certs keyholder server summary client-{1..7}; do expect_code chaos "$svc" 0; done
    for n in 8 9 10; do expect_code chaos "client-$n" 137; done
    min_f1=$(python3 -c 'import sys; print(float(sys.argv[1]) - float(sys.argv[2]))' "$plain_f1" "${FEDAD_CI_CHAOS_F1_DROP:-0.05}")
    results_check chaos --rounds "$chaos_rounds" --min-f1 "$min_f1" --min-round-clients 6 \
        --gone client-8,client-9,client-10@2 --rejoined client-4@4 --resumed 5
    grep -q "resuming this run from its checkpoint after round 5" "$work/chaos.containers.log" ||
        check_fail "the restarted server did not say it resumed after round 5"
    check_logs chaos
    say "  chaos: F1 $(python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))["metrics"]["f1"])' \
        "$work/chaos/results/report.json") (plain $plain_f1, floor $min_f1), resumed: $(python3 -c \
        'import json,sys; print(json.load(open(sys.argv[1])).get("resumed"))' "$work/chaos/results/report.json")"
fi

if [ "${#failures[@]}" -gt 0 ]; then
    say "${#failures[@]} failed expectation(s):"
    printf '   - %s\n' "${failures[@]}" >&2
    exit 1
fi
say "all cluster checks passed"

#!/usr/bin/env bash
# Entrypoint of the fedad image: one image, one role per service of docker-compose.yml.
#
#   server    fedad-server, configured from FEDAD_* variables, writing to /results
#   client    fedad-client on the one shard mounted at /data (FEDAD_NAME names the node)
#   keyholder fedad-keyholder (FEDAD_STRATEGY=secure-robust; else nothing to do): the only holder of the
#             private key, mutual TLS with the pinned aggregator certificate; ends when the server has ended
#   data      one-shot: a shard per node into /shards/NN (the user's ./data/node_NN.csv, else synthetic)
#   keys      one-shot: Paillier key pair (public key -> /keys-public; private key -> /keys-private for
#             the nodes under paillier, -> /keys-keyholder for the key holder only under secure-robust)
#   certs     one-shot: the plant CA (kept in /tls-ca-private), server certificate (ca.pem -> /tls-ca, server
#             cert+key -> /tls-server) and a client certificate for every node directory /nodes/NAME (subject
#             NAME: the node's identity under mutual TLS); under secure-robust also the aggregator <-> key
#             holder mutual TLS (/aggregator-tls, /keyholder-tls)
#   sign CSR  the plant CA signs a real edge node's request (fedad enroll made NAME.csr): NAME.pem and the
#             CA's ca.pem are written beside it (run in the certs service, which alone holds the CA key)
#   summary   one-shot: print the run's report and write /results/summary.{txt,json}
#   live      the `live` profile's plant: every node's shard replayed into its growing /live/NN/stream.csv at
#             FEDAD_LIVE_RATE records/s, its alarms mirrored to /results/alarms/client-N.jsonl, /results/live.json
#             refreshed every round. With it (/results/live.json there) the server runs continuously
#             (--rounds 0 --round-interval FEDAD_ROUND_INTERVAL, ends with the stop file /results/stop) and every
#             node scores /live/stream.csv while it takes part in rounds (fedad-client --stream; FEDAD_LIVE_ARGS)
#   health    the healthcheck of server and client (see docker-compose.yml): exit 0 = alive and working
#   anything else is run as a command: `docker run fedad:local fedad-client --server ... --data ...`
#
# Every line it logs looks like fedad's own: "HH:MM:SS LEVEL [role name] message", no colours.
# Bad configuration (a missing shard, key or certificate) is one clear ERROR line and exit code 2,
# and no service restarts on it (see docs/docker.md, "Restart policy").
# FEDAD_METRICS_PORT (compose sets 9100): server, client and keyholder serve Prometheus /metrics there
# (--metrics-port, on 0.0.0.0 inside the container; the `monitoring` profile's Prometheus scrapes it).
# Tests: FEDAD_ENTRYPOINT_ROOT=DIR prefixes the paths of server, client and keyholder, and
# FEDAD_ENTRYPOINT_DRY_RUN=1 prints their command line instead of running it.
set -euo pipefail

role=${1:-help}
[ $# -gt 0 ] && shift

tag=$role
[ "$role" = client ] && tag="client ${FEDAD_NAME:-?}"
log() { printf '%s %s [%s] %s\n' "$(date -u +%H:%M:%S)" "$1" "$tag" "$2" >&2; }
die() { log ERROR "$1"; exit "${2:-2}"; }
is_on() { case "${1,,}" in 1 | true | yes | on) return 0 ;; *) return 1 ;; esac; }
need_file() { # need_file PATH WHAT HINT: a readable, non-empty file or one clear error line
    if [ ! -e "$1" ]; then die "$2 not found at $1: $3"; fi
    if [ ! -r "$1" ] || [ ! -s "$1" ]; then die "$2 at $1 is empty or not readable by uid $(id -u): $3"; fi
}
tagged() { # run a short command; its output becomes our own tagged log lines; returns its exit code
    local out rc=0 line
    out=$("$@" 2>&1) || rc=$?
    if [ -n "$out" ]; then while IFS= read -r line; do log INFO "$line"; done <<<"$out"; fi
    return "$rc"
}
split_words() { # split_words VAR_VALUE -> the array WORDS (extra CLI arguments from an environment variable)
    WORDS=()
    [ -n "${1:-}" ] && read -r -a WORDS <<<"$1"
    return 0
}

# Run a child, forwarding SIGTERM/SIGINT (tini sends them to us) so `docker compose down` is prompt.
child=0
stopping=0
on_signal() { stopping=1; [ "$child" -gt 0 ] && kill -TERM "$child" 2>/dev/null; return 0; }
trap on_signal TERM INT
run_child() {
    "$@" &
    child=$!
    local rc=0
    wait "$child" || rc=$?
    while kill -0 "$child" 2>/dev/null; do wait "$child" || rc=$?; done # a signal interrupted wait
    child=0
    return "$rc"
}

tls_on() { is_on "${FEDAD_TLS:-0}"; }
strategy=${FEDAD_STRATEGY:-fedavg}
R=${FEDAD_ENTRYPOINT_ROOT:-} # "" in the image
dry_run() { is_on "${FEDAD_ENTRYPOINT_DRY_RUN:-0}"; }
metrics_args() { # FEDAD_METRICS_PORT (compose: 9100; empty or 0: off) -> --metrics-port on every interface
    local port=${FEDAD_METRICS_PORT:-}
    [ -n "$port" ] && [ "$port" != 0 ] || return 0
    [[ "$port" =~ ^[0-9]+$ ]] && [ "$port" -le 65535 ] ||
        die "FEDAD_METRICS_PORT must be a port number (1..65535), empty or 0 (off); got '$port'"
    args+=(--metrics-port "$port" --metrics-host 0.0.0.0) # the compose network only: never published
}
KEYHOLDER_UID=10002 # fedad-keyholder's uid: owns the private key and its TLS key, nobody else's files

case "$role" in
server)
    # Results are for the people running the plant: files 0644, directories 0755, whoever FEDAD_UID is.
    umask 022
    out=$R/results
    # The key holder (secure-robust) serves one run of the server: it stops once $R/state/server.done is
    # newer than its own start. Written on the run's final exit (done, failed, bad configuration), not when the
    # container is stopped or restarted (SIGTERM: docker restart, docker compose stop/down): a restarted server
    # resumes the same run.
    server_done() {
        local rc=$?
        if [ -d "$out" ] && [ -w "$out" ]; then
            find "$out" -maxdepth 3 -path "$out/previous-*" -prune -o -user "$(id -u)" -exec chmod a+rX {} + 2>/dev/null || true
        fi
        [ "$stopping" = 1 ] && return 0
        # the run is over: the summary service waits for this (a restarted container writes none)
        if [ -d "$out" ] && [ -w "$out" ]; then
            { echo "$rc" >"$out/.server-exit.tmp" && mv -f "$out/.server-exit.tmp" "$out/.server-exit"; } 2>/dev/null || true
        fi
        if [ -d "$R/state" ] && [ -w "$R/state" ]; then
            { echo "$rc" >"$R/state/.server.done.tmp" && mv -f "$R/state/.server.done.tmp" "$R/state/server.done"; } 2>/dev/null || true
        fi
    }
    trap server_done EXIT
    [ -d "$out" ] && [ -w "$out" ] ||
        die "results directory $out (host: \${FEDAD_RESULTS_DIR:-./results}) is not writable by uid $(id -u): set FEDAD_UID and FEDAD_GID in .env to the directory's owner (id -u; id -g)"
    # the live profile (its live job wrote live.json before the server started): rounds every interval until
    # the stop file appears; otherwise FEDAD_ROUNDS rounds
    if [ -f "$out/live.json" ]; then
        rounds=(--rounds 0 --round-interval "${FEDAD_ROUND_INTERVAL:-60s}" --stop-file "$out/stop")
        log INFO "live plant: a round every ${FEDAD_ROUND_INTERVAL:-60s} until $out/stop exists (host: touch results/stop)"
    else
        rounds=(--rounds "${FEDAD_ROUNDS:-5}")
    fi
    args=(--address "0.0.0.0:${FEDAD_SERVER_PORT:-8080}" --out "$out"
        --strategy "$strategy" --model "${FEDAD_MODEL:-dense}"
        "${rounds[@]}" --local-epochs "${FEDAD_LOCAL_EPOCHS:-10}"
        --min-clients "${FEDAD_MIN_CLIENTS:-10}" --min-fit-clients "${FEDAD_MIN_FIT_CLIENTS:-0.6}"
        --wait-timeout "${FEDAD_WAIT_TIMEOUT:-300}"
        --round-timeout "${FEDAD_ROUND_TIMEOUT:-600}" --seed "${FEDAD_SEED:-0}")
    if tls_on; then
        hint="the certs service writes it (docker compose logs certs), or mount your own PEM files at /tls"
        need_file "$R/tls/ca.pem" "TLS CA certificate" "$hint"
        need_file "$R/tls/server.pem" "TLS server certificate" "$hint"
        need_file "$R/tls/server.key" "TLS server key" "$hint"
        args+=(--certificates "$R/tls/ca.pem" "$R/tls/server.pem" "$R/tls/server.key")
    fi
    if [ -e "$R/keys/private.key" ]; then
        die "a Paillier private key is mounted into the server at $R/keys/private.key: the aggregator must never hold it; mount only public.key"
    fi
    if [ "$strategy" = paillier ] || [ "$strategy" = secure-robust ]; then
        need_file "$R/keys/public.key" "Paillier public key" \
            "the keys service writes it when FEDAD_STRATEGY=$strategy (docker compose logs keys)"
        args+=(--public-key "$R/keys/public.key")
    fi
    if [ "$strategy" = secure-robust ]; then
        # blind decryption through the key holder, over mutual TLS with the aggregator's client certificate
        hint="the certs service writes it when FEDAD_STRATEGY=secure-robust (docker compose logs certs)"
        need_file "$R/aggregator-tls/ca.pem" "key-holder TLS CA certificate" "$hint"
        need_file "$R/aggregator-tls/aggregator.pem" "aggregator TLS client certificate" "$hint"
        need_file "$R/aggregator-tls/aggregator.key" "aggregator TLS client key" "$hint"
        args+=(--keyholder "${FEDAD_KEYHOLDER:-keyholder:8090}" --keyholder-certificates "$R/aggregator-tls/ca.pem"
            "$R/aggregator-tls/aggregator.pem" "$R/aggregator-tls/aggregator.key")
        # the key holder gets the same number (empty: fedad's default, the same for both)
        if [ -n "${FEDAD_SKETCH_ROWS:-}" ]; then args+=(--sketch-rows "$FEDAD_SKETCH_ROWS"); fi
    fi
    metrics_args
    split_words "${FEDAD_SERVER_ARGS:-}"
    args+=("${WORDS[@]}")
    # Clean start or resume, never ambiguous: each `docker compose up` starts a new run (the data job has moved
    # the previous run's outputs, its checkpoint included, to previous-<time>/ unless FEDAD_RESUME=1), so a
    # checkpoint here is this run's: the container was restarted (docker restart, a crash) and resumes from it.
    ckpt=$out/checkpoint/state.json
    if [ -f "$ckpt" ] && [ -f "$out/report.json" ] && grep -q '"status": "ok"' "$out/report.json"; then
        # restarted after its last round (e.g. while writing plots): the run is complete, nothing to resume
        log INFO "this run is already complete ($out/report.json, status ok): nothing to resume"
        exit 0
    fi
    resume=()
    resume_note() { python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))["round"])' "$ckpt" 2>/dev/null || echo "?"; }
    if [ -f "$ckpt" ]; then
        resume=(--resume)
        log WARNING "resuming this run from its checkpoint after round $(resume_note) ($ckpt): the container was restarted, or FEDAD_RESUME=1"
    fi
    if dry_run; then
        echo "fedad-server ${args[*]} ${resume[*]}"
        exit 0
    fi
    # Outputs of an earlier attempt must not pass for this one's (summary waits for a new report.json).
    rm -f "$out/report.json" "$out/summary.txt" "$out/summary.json" "$out/keyholder-audit.jsonl"
    # Restart policy of the server (compose says restart: "no" on purpose): a configuration error (exit 2)
    # or a failed federation (exit 1) is final; a crash by signal (OOM kill, segfault) is retried up to
    # FEDAD_SERVER_RETRIES times, resuming from this run's last checkpoint. A stop (SIGTERM) ends it: when the
    # container is started again (docker restart), it resumes as above.
    retries=${FEDAD_SERVER_RETRIES:-2}
    attempt=0
    while :; do
        log INFO "fedad-server ${args[*]} ${resume[*]}"
        rc=0
        run_child fedad-server "${args[@]}" "${resume[@]}" || rc=$?
        [ "$stopping" = 1 ] && { log INFO "stopped (exit $rc); a restarted container resumes from the checkpoint"; exit "$rc"; }
        case "$rc" in
        0) exit 0 ;;
        1 | 2 | 130 | 143) exit "$rc" ;;
        esac
        attempt=$((attempt + 1))
        [ "$attempt" -le "$retries" ] ||
            die "fedad-server died (exit $rc) $attempt times; giving up (FEDAD_SERVER_RETRIES=$retries)" "$rc"
        resume=()
        [ -f "$ckpt" ] && resume=(--resume)
        log WARNING "fedad-server died (exit $rc: killed by a signal); restart $attempt/$retries ${resume[*]:+from the checkpoint after round $(resume_note)}"
        sleep 2
    done
    ;;

client)
    [ -n "${FEDAD_NAME:-}" ] || die "FEDAD_NAME is not set: every node needs a stable name"
    shopt -s nullglob
    shards=("$R/data/shard.csv" "$R/data/shard.parquet")
    data=""
    for f in "${shards[@]}" "$R"/data/*.csv "$R"/data/*.parquet; do [ -f "$f" ] && data=$f && break; done
    [ -n "$data" ] ||
        die "no data file in $R/data: the data service writes one shard per node (docker compose logs data); your own CSV goes to \${FEDAD_DATA_DIR:-./data}/node_NN.csv"
    need_file "$data" "data shard" "check docker compose logs data"
    # --health-file: the healthcheck (role health) reads it; fresh only while the stream to the server is up
    args=(--server "${FEDAD_SERVER:-server:8080}" --data "$data" --name "$FEDAD_NAME"
        --device "${FEDAD_DEVICE:-cpu}" --connect-timeout "${FEDAD_CONNECT_TIMEOUT:-180}"
        --health-file "${FEDAD_HEALTH_FILE:-/tmp/fedad-health}")
    [ -n "${FEDAD_FORMAT:-}" ] && args+=(--format "$FEDAD_FORMAT")
    [ -n "${FEDAD_LABEL_COLUMN:-}" ] && args+=(--label-column "$FEDAD_LABEL_COLUMN")
    [ -n "${FEDAD_TIME_COLUMN:-}" ] && args+=(--time-column "$FEDAD_TIME_COLUMN")
    if tls_on; then
        hint="the certs service writes it (docker compose logs certs); FEDAD_TLS must be the same for server and clients"
        need_file "$R/tls/ca.pem" "TLS CA certificate" "$hint"
        hint="the certs service enrolls every node with a volume tls-$FEDAD_NAME mounted at /tls-node (docker compose logs certs)"
        need_file "$R/tls-node/$FEDAD_NAME.pem" "TLS client certificate of $FEDAD_NAME" "$hint"
        need_file "$R/tls-node/$FEDAD_NAME.key" "TLS client key of $FEDAD_NAME" "$hint"
        args+=(--root-certificates "$R/tls/ca.pem" --tls-certificate "$R/tls-node/$FEDAD_NAME.pem"
            --tls-key "$R/tls-node/$FEDAD_NAME.key")
    fi
    if [ "$strategy" = paillier ]; then
        need_file "$R/keys/private.key" "Paillier private key" \
            "the keys service writes it when FEDAD_STRATEGY=paillier (docker compose logs keys)"
        args+=(--private-key "$R/keys/private.key")
    fi
    if [ "$strategy" = secure-robust ]; then
        # the nodes encrypt with the public key only: under secure-robust only the key holder holds the private key
        if [ -e "$R/keys/private.key" ]; then
            die "a Paillier private key is mounted into this node at $R/keys/private.key: under secure-robust only the key holder may hold it (the keys service removes it from the nodes' volume: docker compose logs keys)"
        fi
        need_file "$R/keys/public.key" "Paillier public key" \
            "the keys service writes it when FEDAD_STRATEGY=secure-robust (docker compose logs keys)"
        args+=(--public-key "$R/keys/public.key")
    fi
    if [ -n "${FEDAD_ATTACK:-}" ]; then
        args+=(--attack "$FEDAD_ATTACK" --attack-start-round "${FEDAD_ATTACK_START_ROUND:-1}")
        [ -n "${FEDAD_ATTACK_SCALE:-}" ] && args+=(--attack-scale "$FEDAD_ATTACK_SCALE")
        if [ -d "$R/collusion" ] && [ -w "$R/collusion" ] && [ -n "${FEDAD_COLLUDERS:-}" ]; then
            args+=(--collusion-dir "$R/collusion" --colluders "$FEDAD_COLLUDERS")
        fi
    fi
    if [ -f "$R/live/stream.csv" ]; then # the live profile: score the node's live stream while taking part in rounds
        args+=(--stream "$R/live/stream.csv" --alarms "$R/live/alarms.jsonl")
        split_words "${FEDAD_LIVE_ARGS:-}"
        args+=("${WORDS[@]}")
    fi
    metrics_args
    split_words "${FEDAD_CLIENT_ARGS:-}"
    args+=("${WORDS[@]}")
    if dry_run; then
        echo "fedad-client ${args[*]}"
        exit 0
    fi
    export OMP_NUM_THREADS=${FEDAD_THREADS:-1} MKL_NUM_THREADS=${FEDAD_THREADS:-1}
    log INFO "fedad-client ${args[*]}"
    # fedad-client retries an unreachable server and reconnects by itself; its exit is final (restart: "no").
    exec fedad-client "${args[@]}"
    ;;

keyholder)
    if [ "$strategy" != secure-robust ]; then
        log INFO "strategy $strategy does not use a key holder; nothing to do"
        exit 0
    fi
    hint="the keys service writes it when FEDAD_STRATEGY=secure-robust (docker compose logs keys)"
    need_file "$R/keys/private.key" "Paillier private key" "$hint"
    hint="the certs service writes it when FEDAD_STRATEGY=secure-robust (docker compose logs certs)"
    need_file "$R/tls/ca.pem" "key-holder TLS CA certificate" "$hint"
    need_file "$R/tls/keyholder.pem" "key-holder TLS certificate" "$hint"
    need_file "$R/tls/keyholder.key" "key-holder TLS key" "$hint"
    need_file "$R/tls/aggregator.pem" "pinned aggregator certificate" "$hint"
    audit=$R/audit/audit.jsonl
    [ -d "$R/audit" ] && [ -w "$R/audit" ] ||
        die "audit directory $R/audit is not writable by uid $(id -u): mount the keyholder-audit volume there"
    # Always mutual TLS with the pinned aggregator certificate (never --insecure). The budget: at most
    # FEDAD_KEYHOLDER_MAX_CLIENTS clients per round (10 nodes, 13 with --profile honest --profile attack).
    args=(--listen 0.0.0.0:8090 --private-key "$R/keys/private.key"
        --certificates "$R/tls/ca.pem" "$R/tls/keyholder.pem" "$R/tls/keyholder.key"
        --aggregator-cert "$R/tls/aggregator.pem"
        --max-clients "${FEDAD_KEYHOLDER_MAX_CLIENTS:-13}" --audit "$audit")
    # the server gets the same number (empty: fedad's default, the same for both)
    if [ -n "${FEDAD_SKETCH_ROWS:-}" ]; then args+=(--sketch-rows "$FEDAD_SKETCH_ROWS"); fi
    metrics_args
    split_words "${FEDAD_KEYHOLDER_ARGS:-}"
    args+=("${WORDS[@]}")
    for a in "${args[@]}"; do
        [ "$a" != --insecure ] || die "FEDAD_KEYHOLDER_ARGS: --insecure is refused: the key holder always runs mutual TLS with the pinned aggregator certificate"
    done
    if dry_run; then
        echo "fedad-keyholder ${args[*]}"
        exit 0
    fi
    # The audit log is append-only across runs; a "start" line opens each session (plant.py reads the last one).
    stamp=$(mktemp)
    printf '{"time": %s, "op": "start"}\n' "$(date +%s)" >>"$audit"
    log INFO "fedad-keyholder ${args[*]}"
    fedad-keyholder "${args[@]}" &
    child=$!
    rc=0
    finished=""
    # One session per run: stop when the server has ended (its entrypoint writes state/server.done on its
    # final exit; restarts of a crashed fedad-server inside it do not count).
    while kill -0 "$child" 2>/dev/null; do
        if [ -z "$finished" ] && [ "$stopping" = 0 ] && [ "$R/state/server.done" -nt "$stamp" ]; then
            finished=$(cat "$R/state/server.done" 2>/dev/null || echo "?")
            log INFO "the server has ended (exit $finished): the key holder's session is over"
            kill -TERM "$child" 2>/dev/null || true
        fi
        sleep 1
    done
    wait "$child" || rc=$?
    child=0
    tagged python3 /opt/fedad/plant.py audit --audit "$audit" || true
    if [ -n "$finished" ]; then exit 0; fi
    if [ "$stopping" = 1 ]; then exit "$rc"; fi
    [ "$rc" != 0 ] || rc=1
    die "fedad-keyholder exited (code $rc) before the server ended" "$rc"
    ;;

data)
    umask 022
    exec python3 /opt/fedad/plant.py data "$@"
    ;;

live)
    umask 022
    exec python3 /opt/fedad/plant.py live "$@"
    ;;

summary)
    # Waits for the server's final exit itself (not compose's service_completed_successfully: a `docker restart`
    # of the server shows compose an exited container for a moment, and `up` then failed at once).
    umask 022
    exec python3 /opt/fedad/plant.py summary --wait "$@"
    ;;

health)
    # server: the gRPC port accepts connections, or the run is over (report.json written) and it is writing its
    # plots. client: its fedad-client --health-file is fresh (the gRPC stream to the server is up).
    if [ -n "${FEDAD_NAME:-}" ]; then
        exec python3 -m fedad.client.health "${FEDAD_HEALTH_FILE:-/tmp/fedad-health}" --max-age "${FEDAD_HEALTH_MAX_AGE:-30}"
    fi
    exec python3 /opt/fedad/plant.py health --port "${FEDAD_SERVER_PORT:-8080}" --done "$R/results/report.json"
    ;;

keys)
    if [ "$strategy" = secure-robust ]; then
        # The key holder is the only holder of the private key: public.key -> server and nodes,
        # private.key -> /keys-keyholder only. A pair whose private key the nodes ever held (paillier) is
        # never reused, and a private key left in the nodes' volume by a paillier run is removed.
        pub=/keys-public/public.key
        kh=/keys-keyholder
        if [ -s "$pub" ] && [ -s "$kh/private.key" ] && cmp -s "$pub" "$kh/public.key" &&
            cmp -s "$pub" /keys-private/public.key && [ ! -e /keys-private/private.key ] && ! is_on "${FEDAD_NEW_KEYS:-0}"; then
            log INFO "reusing the key holder's Paillier key pair from an earlier run (FEDAD_NEW_KEYS=1 makes a new one)"
        else
            tmp=$(mktemp -d)
            log INFO "making a ${FEDAD_KEY_BITS:-2048}-bit Paillier key pair for the key holder"
            tagged fedad keygen --out "$tmp" --bits "${FEDAD_KEY_BITS:-2048}" || die "fedad keygen failed" 1
            rm -f /keys-private/private.key "$kh/private.key"
            install -m 0644 "$tmp/public.key" "$pub"
            install -m 0644 "$tmp/public.key" /keys-private/public.key
            install -m 0644 "$tmp/public.key" "$kh/public.key"
            # readable by the key holder's uid only; no other container mounts this volume
            install -m 0400 -o "$KEYHOLDER_UID" -g "$KEYHOLDER_UID" "$tmp/private.key" "$kh/private.key"
            rm -rf "$tmp"
        fi
        log INFO "public.key -> server and clients, private.key -> key holder only"
        exit 0
    fi
    if [ "$strategy" != paillier ] && ! is_on "${FEDAD_KEYS_ALWAYS:-0}"; then
        log INFO "strategy $strategy does not use Paillier keys; nothing to do"
        exit 0
    fi
    pub=/keys-public/public.key
    priv=/keys-private/private.key
    if [ -s "$pub" ] && [ -s "$priv" ] && cmp -s "$pub" /keys-private/public.key && ! is_on "${FEDAD_NEW_KEYS:-0}"; then
        log INFO "reusing the Paillier key pair from an earlier run (FEDAD_NEW_KEYS=1 makes a new one)"
    else
        tmp=$(mktemp -d)
        log INFO "making a ${FEDAD_KEY_BITS:-2048}-bit Paillier key pair"
        tagged fedad keygen --out "$tmp" --bits "${FEDAD_KEY_BITS:-2048}" || die "fedad keygen failed" 1
        install -m 0644 "$tmp/public.key" "$pub"
        install -m 0644 "$tmp/public.key" /keys-private/public.key
        # readable by the nodes' uid only; the server container never mounts this volume
        install -m 0400 -o 10001 -g 10001 "$tmp/private.key" "$priv"
        rm -rf "$tmp"
    fi
    log INFO "public.key -> server and clients, private.key -> clients only"
    ;;

certs)
    if [ "$strategy" = secure-robust ]; then
        # mutual TLS between the aggregator and the key holder (whatever FEDAD_TLS says), with its own CA:
        # the key holder gets its certificate for host "keyholder" and the aggregator's certificate to pin,
        # the server the CA and its client certificate `aggregator`. The CA key is thrown away.
        kh=/keyholder-tls
        ag=/aggregator-tls
        uid=${FEDAD_UID:-1000}
        gid=${FEDAD_GID:-1000}
        if [ -s "$kh/keyholder.key" ] && [ -s "$kh/keyholder.pem" ] && [ -s "$ag/aggregator.key" ] &&
            [ -s "$kh/ca.pem" ] && cmp -s "$kh/ca.pem" "$ag/ca.pem" && [ -s "$kh/aggregator.pem" ] &&
            cmp -s "$kh/aggregator.pem" "$ag/aggregator.pem"; then
            chown "$uid:$gid" "$ag/aggregator.key" # FEDAD_UID may have changed since
            log INFO "reusing the key holder's TLS certificates from an earlier run"
        else
            tmp=$(mktemp -d)
            tagged fedad certs --out "$tmp" --host keyholder --client aggregator --days "${FEDAD_CERT_DAYS:-365}" ||
                die "fedad certs failed" 1
            install -m 0644 "$tmp/ca.pem" "$kh/ca.pem"
            install -m 0644 "$tmp/server.pem" "$kh/keyholder.pem"
            install -m 0400 -o "$KEYHOLDER_UID" -g "$KEYHOLDER_UID" "$tmp/server.key" "$kh/keyholder.key"
            install -m 0644 "$tmp/aggregator.pem" "$kh/aggregator.pem" # the certificate the key holder pins
            install -m 0644 "$tmp/ca.pem" "$ag/ca.pem"
            install -m 0644 "$tmp/aggregator.pem" "$ag/aggregator.pem"
            install -m 0400 -o "$uid" -g "$gid" "$tmp/aggregator.key" "$ag/aggregator.key" # the server runs as FEDAD_UID
            rm -rf "$tmp"
            log INFO "new key-holder TLS: a CA, a certificate for host keyholder, the aggregator's client certificate"
        fi
        log INFO "ca.pem -> server and key holder, keyholder.pem + keyholder.key + aggregator.pem (pinned) -> key holder only, aggregator.pem + aggregator.key -> server only"
    fi
    if ! tls_on && ! is_on "${FEDAD_CERTS_ALWAYS:-0}"; then
        [ "$strategy" = secure-robust ] || log INFO "TLS is off (FEDAD_TLS=0): any process that reaches the server can join; nothing to do"
        exit 0
    fi
    days=${FEDAD_CERT_DAYS:-365}
    uid=${FEDAD_UID:-1000}
    gid=${FEDAD_GID:-1000}
    ca=/tls-ca-private
    hosts=(server localhost 127.0.0.1)
    extra_hosts=${FEDAD_PUBLIC_HOSTS:-}
    split_words "${extra_hosts//,/ }"
    hosts+=("${WORDS[@]}")
    want="${hosts[*]}"
    if [ -s "$ca/ca.key" ] && [ -s "$ca/ca.pem" ] && [ -s /tls-server/server.key ] && cmp -s "$ca/ca.pem" /tls-server/ca.pem &&
        cmp -s "$ca/ca.pem" /tls-ca/ca.pem && [ "$(cat /tls-server/hosts.txt 2>/dev/null)" = "$want" ]; then
        log INFO "reusing the plant CA and server certificate from an earlier run (hosts: $want)"
    else
        tmp=$(mktemp -d)
        host_args=()
        for h in "${hosts[@]}"; do host_args+=(--host "$h"); done
        tagged fedad certs --out "$tmp" "${host_args[@]}" --days "$days" || die "fedad certs failed" 1
        install -m 0644 "$tmp/ca.pem" "$ca/ca.pem"
        install -m 0400 "$tmp/ca.key" "$ca/ca.key" # the CA key stays in this job's volume: it signs node certificates
        install -m 0644 "$tmp/ca.pem" /tls-ca/ca.pem
        install -m 0644 "$tmp/ca.pem" /tls-server/ca.pem
        install -m 0644 "$tmp/server.pem" /tls-server/server.pem
        install -m 0400 -o "$uid" -g "$gid" "$tmp/server.key" /tls-server/server.key # the server runs as FEDAD_UID
        echo "$want" >/tls-server/hosts.txt
        rm -rf "$tmp"
        log INFO "new plant CA and server certificate for: $want (every node is enrolled again)"
    fi
    # enroll every node whose volume is mounted at /nodes/NAME: a certificate with subject NAME, its key 0400
    # for the nodes' uid 10001; kept while it is from this CA (a new CA re-enrolls everyone)
    shopt -s nullglob
    todo=()
    for dir in /nodes/*/; do
        name=$(basename "$dir")
        if [ -s "$dir/$name.pem" ] && [ -s "$dir/$name.key" ] && cmp -s "$dir/ca.pem" "$ca/ca.pem"; then continue; fi
        todo+=("$name")
    done
    if [ "${#todo[@]}" -gt 0 ]; then
        tmp=$(mktemp -d)
        cp "$ca/ca.pem" "$ca/ca.key" "$tmp/"
        client_args=()
        for name in "${todo[@]}"; do client_args+=(--client "$name"); done
        tagged fedad certs --out "$tmp" "${client_args[@]}" --days "$days" || die "fedad certs failed (node names must be valid)" 1
        for name in "${todo[@]}"; do
            install -m 0644 "$tmp/$name.pem" "/nodes/$name/$name.pem"
            install -m 0400 -o 10001 -g 10001 "$tmp/$name.key" "/nodes/$name/$name.key"
            install -m 0644 "$ca/ca.pem" "/nodes/$name/ca.pem"
        done
        rm -rf "$tmp"
        log INFO "enrolled ${#todo[@]} node(s), certificates valid $days days: ${todo[*]}"
    fi
    log INFO "ca.pem -> server and clients, server.pem + server.key -> server only, NAME.pem + NAME.key -> node NAME only, ca.key -> this job only"
    ;;

sign)
    # docker compose run --rm --no-deps -v "$PWD/edge:/edge" certs sign /edge/node_07.csr
    csr=${1:-}
    [ -n "$csr" ] && [ -f "$csr" ] || die "usage: sign /path/NAME.csr (mount the directory holding the request made by fedad enroll)"
    [ -s /tls-ca-private/ca.key ] || die "no plant CA yet: run the plant once with FEDAD_TLS=1 (the certs service makes it)"
    tagged fedad certs sign --csr "$csr" --ca-dir /tls-ca-private --days "${FEDAD_CERT_DAYS:-365}" || die "signing refused" 2
    install -m 0644 /tls-ca-private/ca.pem "$(dirname "$csr")/ca.pem"
    log INFO "wrote the node's certificate and the plant's ca.pem beside $csr"
    ;;

help | --help | -h)
    sed -n '2,/^set -euo/p' "$0" | sed '$d' | sed 's/^# \{0,1\}//'
    ;;

*)
    exec "$role" "$@"
    ;;
esac

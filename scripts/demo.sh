#!/usr/bin/env bash
# demo.sh: edr-worker end to end on the local stack, narrated for a
# newcomer. Assumes the stack is up (scripts/services.sh up; scripts/run.sh
# does that and then calls this) and the programs are built.
#
# Creates fresh demo topics, starts one worker (memory store, HTTP on
# $EDR_DEMO_HTTP_ADDR, default 127.0.0.1:9464), publishes a realistic
# sequence with edrctl, asks the worker questions over Redis, reads the
# dead-letter topic, shows /metrics and /readyz, and stops the worker with
# SIGTERM. Leaves the stack running; removes nothing it did not make.
#
# Environment: EDR_BUILD_DIR (default build/), EDR_DEMO_HTTP_ADDR,
# EDR_DEMO_PAUSE=1 waits for Enter between steps.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
BUILD_DIR="${EDR_BUILD_DIR:-$ROOT/build}"
WORKER="$BUILD_DIR/edr-worker"
EDRCTL="$BUILD_DIR/edrctl"
HTTP_ADDR="${EDR_DEMO_HTTP_ADDR:-127.0.0.1:9464}"
DEMO_DIR="$ROOT/.local/demo"

# ---------------------------------------------------------------- output

if [[ -t 1 ]]; then
    B=$'\e[1m' D=$'\e[2m' G=$'\e[32m' Y=$'\e[33m' N=$'\e[0m'
else
    B='' D='' G='' Y='' N=''
fi
STEP=0
step() {
    STEP=$((STEP + 1))
    printf '\n%s── %d. %s%s\n' "$B" "$STEP" "$*" "$N"
    if [[ "${EDR_DEMO_PAUSE:-0}" == 1 && -t 0 ]]; then
        read -r -p "   (Enter to go on) " _
    fi
}
say() { printf '   %s\n' "$@"; }
# show CMD...: prints the command as a user would type it, runs it, and
# indents its output. Returns the command's exit code.
show() {
    local a line=
    for a in "$@"; do
        a="${a#"$BUILD_DIR/"}"
        if [[ "$a" =~ ^[A-Za-z0-9_./:=@,+%-]+$ ]]; then
            line+=" $a"
        else
            line+=" '${a//\'/\'\\\'\'}'"
        fi
    done
    printf '   %s$%s%s\n' "$D" "$line" "$N"
    local rc=0
    "$@" 2>&1 | sed 's/^/     /' || rc=${PIPESTATUS[0]}
    return "$rc"
}
ok() { printf '   %s✔ %s%s\n' "$G" "$*" "$N"; }
die() {
    printf '   %s✘ %s%s\n' "$Y" "$*" "$N" >&2
    exit 1
}

# ---------------------------------------------------------------- checks

[[ -x "$WORKER" && -x "$EDRCTL" ]] ||
    die "no $WORKER or $EDRCTL: build first (scripts/run.sh does)"
for tool in kcat curl; do
    command -v "$tool" >/dev/null || die "$tool missing: run scripts/install-deps.sh"
done
eval "$("$ROOT/scripts/services.sh" env)"
"$ROOT/scripts/services.sh" status >/dev/null 2>&1 ||
    die "the local stack is not up: scripts/services.sh up"
if curl -s -o /dev/null --max-time 1 "http://$HTTP_ADDR/healthz"; then
    die "something already answers on $HTTP_ADDR (another worker?); set EDR_DEMO_HTTP_ADDR"
fi

# Unique names: other work may share these servers.
RUN_ID="$(date +%s)-$$"
export EDR_TOPIC="edr.demo.$RUN_ID.events"
export EDR_DLQ_TOPIC="edr.demo.$RUN_ID.dlq"
export EDR_RPC_PREFIX="edr-demo-$RUN_ID"
export EDR_WORKER_ID="demo-worker"
export EDR_STORE=memory
export EDR_HTTP_ADDR="$HTTP_ADDR"
export EDR_TIMEOUT_MS=5000
mkdir -p "$DEMO_DIR"
chmod 700 "$DEMO_DIR"
WORKER_LOG="$DEMO_DIR/worker-$RUN_ID.log"

WORKER_PID=
cleanup() {
    if [[ -n "$WORKER_PID" ]] && kill -0 "$WORKER_PID" 2>/dev/null; then
        kill -TERM "$WORKER_PID" 2>/dev/null || true
        wait "$WORKER_PID" 2>/dev/null || true
    fi
}
trap cleanup EXIT

# ---------------------------------------------------------------- story

printf '\n%sedr-worker demo%s\n' "$B" "$N"
say "Data space connectors (Eclipse EDC) negotiate access to a provider's data" \
    "and receive an EDR, an Endpoint Data Reference: where to fetch the data" \
    "and the transfer process that authorises it. EDRs are renewed and expire." \
    "" \
    "Connectors publish each change as a CloudEvent on Kafka. edr-worker" \
    "consumes those events, keeps the current EDR of every connection" \
    "(counter party + its address + query and policy checksums), and answers" \
    "lookups from any client over Redis. Broken events go to a dead-letter" \
    "topic with the reason. Operators watch /healthz, /readyz and /metrics."

step "Fresh Kafka topics for this run"
say "events:      $EDR_TOPIC" "dead letters: $EDR_DLQ_TOPIC"
for t in "$EDR_TOPIC" "$EDR_DLQ_TOPIC"; do
    # The local broker creates a topic (6 partitions) on first metadata
    # request; wait until it reports them.
    for _ in $(seq 1 50); do
        if kcat -L -b "$EDR_KAFKA_BROKERS" -t "$t" 2>/dev/null |
            grep -q "with 6 partitions"; then
            break
        fi
        sleep 0.2
    done
done
show kcat -L -b "$EDR_KAFKA_BROKERS" -t "$EDR_TOPIC" | grep -E "topic|partition 0" || true
ok "topics ready"

step "Start one worker (memory store: it replays the whole topic at start)"
say "settings come from EDR_* variables or flags; edr-worker --help lists all"
say "EDR_STORE=$EDR_STORE EDR_HTTP_ADDR=$EDR_HTTP_ADDR EDR_RPC_PREFIX=$EDR_RPC_PREFIX"
"$WORKER" >"$WORKER_LOG" 2>&1 &
WORKER_PID=$!
for _ in $(seq 1 150); do
    code="$(curl -s -o /dev/null -w '%{http_code}' --max-time 1 "http://$HTTP_ADDR/readyz" || true)"
    [[ "$code" == 200 ]] && break
    kill -0 "$WORKER_PID" 2>/dev/null || {
        cat "$WORKER_LOG" >&2
        die "the worker exited during start (log above)"
    }
    sleep 0.2
done
[[ "$code" == 200 ]] || {
    tail -n 20 "$WORKER_LOG" >&2
    die "the worker did not become ready within 30 s"
}
say "its log ($WORKER_LOG):"
sed 's/^/     /' "$WORKER_LOG" | head -n 8
ok "worker pid $WORKER_PID is ready: $(curl -s "http://$HTTP_ADDR/readyz")"

# Two providers, as a consumer connector sees them. The checksums stand
# for the hashes of the catalog query and the policy that were negotiated.
PROV_A=(--party BPNL00000000001A --address https://provider-a.example.com/api/v1/dsp
    --query 8ea2c5a1f3e4 --policy 61ae09d7b2c3)
PROV_B=(--party BPNL00000000002B --address https://provider-b.example.net/dsp
    --query 3b7f0c9e1d2a --policy 9c4d2e8f7a61)
edr() { # edr TRANSFER-ID ASSET PROVIDER: an EDR entry as EDC's API lists it
    printf '{"@type":"EndpointDataReferenceEntry","providerId":"%s","assetId":"%s","agreementId":"agreement-%s","transferProcessId":"%s","contractNegotiationId":"negotiation-%s","createdAt":%s000}' \
        "$3" "$2" "$1" "$1" "$1" "$(date +%s)"
}

step "Publish what the connectors report"
say "Provider A: a contract for the battery passport is negotiated (transfer tp-a-1)"
show "$EDRCTL" publish negotiated "${PROV_A[@]}" --edr "$(edr tp-a-1 battery-passport BPNL00000000001A)"
say "Provider B: another negotiation (transfer tp-b-1)"
show "$EDRCTL" publish negotiated "${PROV_B[@]}" --edr "$(edr tp-b-1 pcf-data BPNL00000000002B)"
say "Provider A: the EDR is renewed; the new transfer is tp-a-2"
show "$EDRCTL" publish renewed "${PROV_A[@]}" --edr "$(edr tp-a-2 battery-passport BPNL00000000001A)"
say "Provider A: a LATE expiry of the old tp-a-1 arrives after the renewal."
say "It names tp-a-1, so it must not remove the newer tp-a-2."
show "$EDRCTL" publish expired "${PROV_A[@]}" --transfer-id tp-a-1
say "Provider B: tp-b-1 really expires"
show "$EDRCTL" publish expired "${PROV_B[@]}" --transfer-id tp-b-1
say "And a broken producer sends an event without data.policy_checksum:"
BAD='{"specversion":"1.0","id":"evt-broken-1","source":"urn:connector:buggy","type":"edr.negotiated","data":{"counter_party_id":"BPNL00000000003C","counter_party_address":"https://provider-c.example.org/dsp","query_checksum":"deadbeef","edr":{"transferProcessId":"tp-c-1"}}}'
say "(edrctl publish --raw sends any bytes, for exactly this kind of test)"
printf '%s' "$BAD" | show "$EDRCTL" publish --raw - --key broken-key
ok "6 events on $EDR_TOPIC"

# The worker applies within milliseconds; wait until it has seen all six.
for _ in $(seq 1 100); do
    m="$(curl -s "http://$HTTP_ADDR/metrics")"
    applied="$(awk '/^edr_events_applied_total/ {s += $NF} END {print s + 0}' <<<"$m")"
    dead="$(awk '/^edr_events_dead_lettered_total/ {s += $NF} END {print s + 0}' <<<"$m")"
    ((applied + dead >= 6)) && break
    sleep 0.1
done

step "Ask the worker (request/reply over Redis; any worker may answer)"
say "Provider A's current EDR: the renewal, tp-a-2, survived the late expiry"
show "$EDRCTL" get "${PROV_A[@]}" || true
say "Just its transfer process id:"
show "$EDRCTL" transfer-id "${PROV_A[@]}" || true
say "Provider B's EDR expired: not found (edrctl exits 1)"
rc=0
show "$EDRCTL" get "${PROV_B[@]}" || rc=$?
say "exit code $rc"
say "How many connections are stored, and which:"
show "$EDRCTL" count || true
show "$EDRCTL" list --limit 10 || true
say "Which worker answered, with which store:"
show "$EDRCTL" ping || true

step "The broken event went to the dead-letter topic, with the reason"
say "unchanged key and value, plus headers edr-error and where it came from:"
show kcat -C -b "$EDR_KAFKA_BROKERS" -t "$EDR_DLQ_TOPIC" -o beginning -e -q \
    -f 'key: %k\nheaders: %h\nvalue: %s\n' || true

step "What an operator sees: http://$HTTP_ADDR/metrics (Prometheus), /readyz, /healthz"
curl -s "http://$HTTP_ADDR/metrics" |
    grep -E '^edr_(events_applied_total|events_dead_lettered_total\{reason="schema"|lookups_total\{op="(get_connection|ping)",status="(ok|not_found)"|consumer_lag|build_info)' |
    sed 's/^/     /'
say "(full list: curl -s http://$HTTP_ADDR/metrics)"
show curl -s "http://$HTTP_ADDR/readyz"
show curl -s "http://$HTTP_ADDR/healthz"

step "Stop the worker with SIGTERM (what Kubernetes and docker do)"
kill -TERM "$WORKER_PID"
rc=0
wait "$WORKER_PID" || rc=$?
WORKER_PID=
say "exit code $rc; the last lines of its log:"
tail -n 4 "$WORKER_LOG" | sed 's/^/     /'
((rc == 0)) || die "the worker did not stop cleanly"
ok "stopped cleanly"

printf '\n%sWhere to go from here%s\n' "$B" "$N"
say "worker log:        $WORKER_LOG" \
    "settings:          $(basename "$WORKER") --help" \
    "three replicas on PostgreSQL, in containers: docker-compose.yml" \
    "the wire contract: schemas/README.md" \
    "the stack keeps running; stop it with scripts/services.sh down"

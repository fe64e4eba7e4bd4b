#!/usr/bin/env bash
# run.sh: the whole benchmark suite in one command (issue 8).
#
#   bench/run.sh [--quick]
#
# Brings up the local stack (scripts/services.sh up), builds Release into
# build-bench/, runs every benchmark several times against the real servers,
# and writes bench/results/<date>-<host>[-quick]/ with results.json (every
# figure: median, min, max, n, unit), report.md and gnuplot PNG charts.
#
#   store_bench    put/get/delete ops/s per store backend, bytes per entry
#   sdk_bench.py   the Tractus-X SDK's Memory/FileSystem/Postgres connection
#                  managers on the same entries (project-local venvs:
#                  .local/venv-bench = newest tractusx-sdk,
#                  .local/venv-bench-sdk071 = 0.7.1, the newest release whose
#                  PostgresConnectionManager can be constructed)
#   decode_bench   decode+handle events/s next to yajl_tree_parse
#   ingest_bench   end-to-end Kafka -> store events/s per store from one
#                  pre-filled topic; the memory run is the rebuild time
#   lookup_bench   lookup latency/throughput at 1/8/32 clients, bare-Redis
#                  floor in the same run
#   adapter_bench  the Python adapter (clients/python) vs the SDK's
#                  PostgresConnectionManager, get_connection from Python
#
# full: 5 runs, 100,000 entries, 1,000,000 events. --quick: 3 runs,
# 10,000 entries, 50,000 events, short windows (under two minutes).
# Not part of scripts/test.sh. Settings: EDR_BENCH_RUNS, EDR_BENCH_HOST
# (directory name; default "local"), EDR_BENCH_OUT (results directory).
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"

MODE=full
case "${1:-}" in
"") ;;
--quick) MODE=quick ;;
-h | --help)
    sed -n '2,28p' "$0" | sed 's/^# \{0,1\}//'
    exit 0
    ;;
*)
    echo "usage: bench/run.sh [--quick]" >&2
    exit 2
    ;;
esac

if [ "$MODE" = quick ]; then
    RUNS="${EDR_BENCH_RUNS:-3}"
    ENTRIES=10000
    EVENTS=50000
    DECODE_SECONDS=0.3
    LOOKUP_ENTRIES=10000
    LOOKUP_SECONDS=0.2
    SDK_PG_PUTS=200
    SDK_PG_GETS=30
    ADAPTER_ARGS=(--sizes 1000 --lookups 100 --duration 0.5 --threads 8)
    SUFFIX=-quick
else
    RUNS="${EDR_BENCH_RUNS:-5}"
    ENTRIES=100000
    EVENTS=1000000
    DECODE_SECONDS=1.0
    LOOKUP_ENTRIES=100000
    LOOKUP_SECONDS=3
    SDK_PG_PUTS=3000
    SDK_PG_GETS=200
    ADAPTER_ARGS=(--sizes 1000,100000 --lookups 300 --duration 3 --threads 8)
    SUFFIX=
fi

BUILD="$ROOT/build-bench"
HOST="${EDR_BENCH_HOST:-local}"
OUT="${EDR_BENCH_OUT:-$ROOT/bench/results/$(date -u +%Y-%m-%d)-$HOST$SUFFIX}"
RAW="$OUT/raw"
VENV="$ROOT/.local/venv-bench"
VENV_PG="$ROOT/.local/venv-bench-sdk071"
SDK_PG_VERSION="${EDR_BENCH_SDK_PG_VERSION:-0.7.1}"
TAG="$$_$(date +%s)"
T0=$(date +%s.%N)

log() { printf 'bench: %s\n' "$*" >&2; }
elapsed() { awk -v a="$T0" -v b="$(date +%s.%N)" 'BEGIN { printf "%.1f", b - a }'; }
loadavg() { cut -d' ' -f1-3 /proc/loadavg; }

rm -rf "$OUT"
mkdir -p "$RAW"
WORK="$(mktemp -d /tmp/edr-bench-XXXXXX)"
INGEST_TOPIC=""
# drop_topics T...: deletes each topic and its .dlq if they exist
drop_topics() {
    [ -x "$VENV/bin/python" ] || return 0
    "$VENV/bin/python" - "$@" <<'PY' >/dev/null 2>&1 || true
import os, sys
from confluent_kafka.admin import AdminClient
a = AdminClient({"bootstrap.servers": os.environ["EDR_KAFKA_BROKERS"]})
have = a.list_topics(timeout=10).topics
gone = [t + s for t in sys.argv[1:] for s in ("", ".dlq") if t + s in have]
for f in (a.delete_topics(gone).values() if gone else []):
    f.result(30)
PY
}
# the pre-filled topic is kept by ingest_bench for reruns; the suite drops it
delete_topic() {
    [ -z "$INGEST_TOPIC" ] || drop_topics "$INGEST_TOPIC"
    INGEST_TOPIC=""
}
cleanup() {
    delete_topic
    rm -rf "$WORK"
}
trap cleanup EXIT

# section NAME: marks a benchmark's start in the log and records the load
section() {
    printf '%s start %s %s\n' "$1" "$(elapsed)" "$(loadavg)" >>"$RAW/sections.txt"
    log "[$(elapsed)s] $1 (load $(loadavg))"
}
section_end() {
    printf '%s end %s %s\n' "$1" "$(elapsed)" "$(loadavg)" >>"$RAW/sections.txt"
}
# failed NAME WHAT: the suite goes on; the report lists what failed
failed() {
    printf '%s\t%s\n' "$1" "$2" >>"$RAW/errors.tsv"
    log "FAILED: $1: $2"
}

# ---------------------------------------------------------------- stack

section setup
scripts/services.sh up >"$RAW/services.log" 2>&1 || {
    cat "$RAW/services.log" >&2
    exit 1
}
eval "$(scripts/services.sh env)"

log "building Release into $BUILD"
{
    cmake -S . -B "$BUILD" -DCMAKE_BUILD_TYPE=Release &&
        cmake --build "$BUILD" -j2 --target edr-worker edr-worker-test store_bench decode_bench \
            lookup_bench ingest_bench
} >"$WORK/build.log" 2>&1 || {
    tail -30 "$WORK/build.log" >&2
    exit 1
}

. "$ROOT/scripts/lib/python.sh" # find_python
# ensure_venv DIR CHECK PACKAGES...: created and installed once, reused after
ensure_venv() {
    local dir="$1" check="$2" py
    shift 2
    if [ -x "$dir/bin/python" ] && "$dir/bin/python" -c "$check" 2>/dev/null; then
        return 0
    fi
    py="$(find_python)" || return 1
    [ -x "$dir/bin/python" ] || "$py" -m venv "$dir" || return 1
    "$dir/bin/python" -m pip install -q "$@"
}
SDK_OK=1
ensure_venv "$VENV" 'import tractusx_sdk, psycopg, confluent_kafka' \
    tractusx-sdk 'psycopg[binary]' confluent-kafka >"$RAW/venv.log" 2>&1 ||
    { SDK_OK=0; failed sdk "could not set up $VENV (see raw/venv.log)"; }
SDK_PG_OK=1
ensure_venv "$VENV_PG" "import psycopg, confluent_kafka, redis; from importlib import metadata; \
assert metadata.version('tractusx-sdk') == '$SDK_PG_VERSION'" \
    "tractusx-sdk==$SDK_PG_VERSION" 'psycopg[binary]' confluent-kafka redis \
    >>"$RAW/venv.log" 2>&1 ||
    { SDK_PG_OK=0; failed sdk-postgres "could not set up $VENV_PG (see raw/venv.log)"; }

# ---------------------------------------------------------------- machine

{
    echo "mode=$MODE"
    echo "runs=$RUNS"
    echo "entries=$ENTRIES"
    echo "events=$EVENTS"
    echo "lookup_entries=$LOOKUP_ENTRIES"
    echo "lookup_seconds=$LOOKUP_SECONDS"
    echo "decode_seconds=$DECODE_SECONDS"
    echo "sdk_pg_put_sample=$SDK_PG_PUTS"
    echo "sdk_pg_get_sample=$SDK_PG_GETS"
    echo "started=$(date -u +%Y-%m-%dT%H:%M:%SZ)"
    echo "cpu_model=$(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2- | sed 's/^ *//')"
    echo "cores=$(nproc)"
    echo "mem_total=$(awk '/MemTotal/ { printf "%.1f GiB", $2 / 1048576 }' /proc/meminfo)"
    echo "kernel=$(uname -sr)"
    echo "os=$(. /etc/os-release 2>/dev/null && echo "$PRETTY_NAME")"
    echo "compiler=$(cc --version | head -1)"
    echo "build=Release ($BUILD)"
    echo "librdkafka=$(pkg-config --modversion rdkafka 2>/dev/null || echo unknown)"
    echo "hiredis=$(pkg-config --modversion hiredis 2>/dev/null || echo unknown)"
    echo "yajl=$(pkg-config --modversion yajl 2>/dev/null || echo unknown)"
    echo "libpq=$(pkg-config --modversion libpq 2>/dev/null || echo unknown)"
    echo "kafka=$(ls "${EDR_KAFKA_LIBS:-.local/kafka-libs}" 2>/dev/null |
        sed -n 's/^kafka-server-\([0-9][0-9.]*\)\.jar$/\1/p' | head -1)"
    echo "postgresql=$(psql "$EDR_PG_DSN" -Atc 'SHOW server_version' 2>/dev/null || echo unknown)"
    echo "redis=$(redis-cli -u "$EDR_REDIS_URL" INFO server 2>/dev/null |
        tr -d '\r' | sed -n 's/^redis_version://p')"
    echo "python_sdk=$("$VENV/bin/python" --version 2>&1 | cut -d' ' -f2)"
    echo "git=$(git rev-parse --short HEAD 2>/dev/null || echo none)$(
        [ -z "$(git status --porcelain 2>/dev/null | head -1)" ] || echo ' (uncommitted changes)')"
    echo "load_before=$(loadavg)"
} >"$RAW/machine.txt"
section_end setup

# ---------------------------------------------------------------- stores

section store
for i in $(seq 1 "$RUNS"); do
    "$BUILD/bench/store_bench" --entries "$ENTRIES" --runs 1 --dir "$WORK" \
        >"$RAW/store_$i.txt" 2>&1 || failed store "run $i exited $?"
done
section_end store

section sdk
if [ "$SDK_OK" = 1 ]; then
    "$VENV/bin/python" bench/sdk_bench.py --managers memory,file,postgres \
        --entries "$ENTRIES" --runs "$RUNS" --dir "$WORK" \
        --pg-put-sample "$SDK_PG_PUTS" --pg-get-sample "$SDK_PG_GETS" \
        >"$RAW/sdk_newest.jsonl" 2>"$RAW/sdk_newest.err" ||
        failed sdk "sdk_bench.py (newest SDK) exited $? (see raw/sdk_newest.err)"
fi
if [ "$SDK_PG_OK" = 1 ]; then
    "$VENV_PG/bin/python" bench/sdk_bench.py --managers postgres \
        --entries "$ENTRIES" --runs "$RUNS" \
        --pg-put-sample "$SDK_PG_PUTS" --pg-get-sample "$SDK_PG_GETS" \
        >"$RAW/sdk_pg.jsonl" 2>"$RAW/sdk_pg.err" ||
        failed sdk-postgres "sdk_bench.py (SDK $SDK_PG_VERSION) exited $? (see raw/sdk_pg.err)"
fi
section_end sdk

# ---------------------------------------------------------------- decode

section decode
for i in $(seq 1 "$RUNS"); do
    "$BUILD/bench/decode_bench" -r 1 -t "$DECODE_SECONDS" \
        >"$RAW/decode_$i.txt" 2>&1 || failed decode "run $i exited $?"
done
section_end decode

# ---------------------------------------------------------------- ingest

section ingest
# run 1 pre-fills the topic and keeps it for runs 2..RUNS (--keep where
# ingest_bench would otherwise delete it); the suite deletes it afterwards
KEEP=()
INGEST_USAGE="$("$BUILD/bench/ingest_bench" --help 2>&1 || true)"
[[ "$INGEST_USAGE" != *--keep* ]] || KEEP=(--keep)
"$BUILD/bench/ingest_bench" --events "$EVENTS" --worker "$BUILD/edr-worker-test" "${KEEP[@]}" \
    >"$RAW/ingest_1.txt" 2>"$RAW/ingest_1.err" || failed ingest "run 1 exited $?"
INGEST_TOPIC="$(sed -n 's/^topic \([^ ]*\) kept.*/\1/p' "$RAW/ingest_1.err" | head -1)"
if [ -n "$INGEST_TOPIC" ]; then
    for i in $(seq 2 "$RUNS"); do
        "$BUILD/bench/ingest_bench" --topic "$INGEST_TOPIC" --worker "$BUILD/edr-worker-test" \
            >"$RAW/ingest_$i.txt" 2>"$RAW/ingest_$i.err" || failed ingest "run $i exited $?"
    done
else
    failed ingest "no pre-filled topic (see raw/ingest_1.err)"
fi
delete_topic
section_end ingest

# ---------------------------------------------------------------- lookups

section lookup
# --quantiles (the latency chart's data) is an additive option; without it
# the report still has p50/p99/p99.9
QUANTILES=()
LOOKUP_USAGE="$("$BUILD/bench/lookup_bench" --help 2>&1 || true)"
if [[ "$LOOKUP_USAGE" == *--quantiles* ]]; then
    QUANTILES=(--quantiles "$RAW/lookup_quantiles.txt")
fi
"$BUILD/bench/lookup_bench" --entries "$LOOKUP_ENTRIES" --seconds "$LOOKUP_SECONDS" \
    --rounds "$RUNS" --verbose --pg-table "edr_bench_suite_$TAG" --pg-drop \
    "${QUANTILES[@]}" >"$RAW/lookup.txt" 2>"$RAW/lookup.err" ||
    failed lookup "lookup_bench exited $? (see raw/lookup.err)"
section_end lookup

# ---------------------------------------------------------------- adapter

# the Python adapter (clients/python, used from the source tree) against
# the SDK's PostgresConnectionManager, on the same PostgreSQL and data
section adapter
if [ "$SDK_PG_OK" = 1 ] && [ -f bench/adapter_bench.py ]; then
    for i in $(seq 1 "$RUNS"); do
        ok=1
        EDR_BUILD_DIR="$BUILD" PYTHONPATH="$ROOT/clients/python/src" \
            "$VENV_PG/bin/python" bench/adapter_bench.py "${ADAPTER_ARGS[@]}" \
            --json "$RAW/adapter_$i.json" >"$RAW/adapter_$i.txt" 2>&1 || {
            ok=0
            failed adapter "run $i exited $? (see raw/adapter_$i.txt)"
        }
        # adapter_bench names its topics and worker log after its run id (as
        # in its SDK table name); make sure they are gone
        run_id="$(sed -n 's/.*SDK table bench_sdk_\([0-9_]*\).*/\1/p' "$RAW/adapter_$i.txt" | head -1)"
        if [ -n "$run_id" ]; then
            drop_topics "bench-adapter-$run_id"
            wlog="${TMPDIR:-/tmp}/adapter-bench-worker-$run_id.log"
            [ "$ok" = 1 ] || tail -50 "$wlog" >"$RAW/adapter_$i.worker.log" 2>/dev/null || true
            rm -f "$wlog"
        fi
    done
fi
section_end adapter

# ---------------------------------------------------------------- report

echo "load_after=$(loadavg)" >>"$RAW/machine.txt"
echo "wall_seconds=$(elapsed)" >>"$RAW/machine.txt"
python3 bench/suite_report.py "$OUT" || {
    log "report generation failed"
    exit 1
}
log "done in $(elapsed) s: $OUT/report.md"

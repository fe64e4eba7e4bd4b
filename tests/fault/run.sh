#!/usr/bin/env bash
# run.sh: the crash-and-outage suite (tests/fault/README.md).
#   tests/fault/run.sh              short seeded run (what CI runs)
#   tests/fault/run.sh --long       every scenario x store, 60,000 events each
#   tests/fault/run.sh --seed N     replay a run (the seed is printed first)
#   tests/fault/run.sh --list       the scenarios
#   tests/fault/run.sh --cluster    the three-broker scenarios (cluster.py,
#                                   issue 19): starts the cluster of
#                                   scripts/services.sh up --cluster if it
#                                   is not running (and stops it after),
#                                   holds /tmp/edr-cluster.lock
#   tests/fault/run.sh --soak MIN   the soak (soak.py): MIN minutes, two workers,
#                                   faults, RSS/fds/threads/lag sampled
# Other flags go to faults.py (--only NAME[/STORE],..., --events N, ...).
# Needs: scripts/services.sh up (its env is read here when not exported),
# edr-worker-test (the test build: EDR_FAULT, --exit-when-caught-up) built in $EDR_BUILD_DIR (default build/), Python 3 with venv;
# the venv .local/venv-faults (confluent-kafka, redis) is made on first use.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
VENV="$ROOT/.local/venv-faults"
export EDR_BUILD_DIR="${EDR_BUILD_DIR:-$ROOT/build}"

if ! "$VENV/bin/python" -c 'import confluent_kafka, redis' 2>/dev/null; then
    echo "run.sh: creating $VENV" >&2
    rm -rf "$VENV"
    python3 -m venv "$VENV"
    "$VENV/bin/python" -m pip install -q confluent-kafka redis
fi
if [[ "${1:-}" == --cluster ]]; then
    shift
    exec 8>/tmp/edr-cluster.lock
    flock -w 1800 8 || { echo "run.sh: /tmp/edr-cluster.lock is held" >&2; exit 1; }
    eval "$("$ROOT/scripts/services.sh" env --cluster)"
    started=""
    if [[ " $* " == *" --list "* ]]; then
        exec "$VENV/bin/python" -u "$ROOT/tests/fault/cluster.py" "$@"
    fi
    if ! "$ROOT/scripts/services.sh" status --cluster >/dev/null 2>&1; then
        if ! "$ROOT/scripts/services.sh" status --cluster 2>/dev/null | grep -q running; then
            started=1 # none of its nodes ran: stop them again at the end
        fi
        "$ROOT/scripts/services.sh" up --cluster >/dev/null
    fi
    trap '[[ -n "$started" ]] && "$ROOT/scripts/services.sh" down --cluster' EXIT
    "$VENV/bin/python" -u "$ROOT/tests/fault/cluster.py" "$@"
    exit $?
fi
SCRIPT=faults.py
if [[ "${1:-}" == "--soak" ]]; then
    SCRIPT=soak.py
    shift
    # The plot.
    "$VENV/bin/python" -c 'import matplotlib' 2>/dev/null ||
        "$VENV/bin/python" -m pip install -q matplotlib
fi
if [[ -z "${EDR_KAFKA_BROKERS:-}" || -z "${EDR_REDIS_URL:-}" || -z "${EDR_PG_DSN:-}" ]]; then
    eval "$("$ROOT/scripts/services.sh" env)"
fi
exec "$VENV/bin/python" -u "$ROOT/tests/fault/$SCRIPT" "$@"

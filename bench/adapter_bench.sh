#!/usr/bin/env bash
# adapter_bench.sh: runs bench/adapter_bench.py in a venv whose tractusx-sdk
# release can construct PostgresConnectionManager, after recording why the
# newest release cannot.
#   .local/venv-python        newest tractusx-sdk (as scripts/test.d/70-python.sh)
#   .local/venv-python-bench  tractusx-sdk==$EDR_BENCH_SDK_VERSION (default 0.7.1,
#                             the newest release whose PostgresConnectionManager
#                             implements every abstract method; 0.8.0 added
#                             clear_connections_by_party to the base class only)
# Arguments go to adapter_bench.py (e.g. --sizes 1000 --duration 2).
# Needs the stack (scripts/services.sh up) and a built edr-worker in
# $EDR_BUILD_DIR (default build/).
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
SDK_VERSION="${EDR_BENCH_SDK_VERSION:-0.7.1}"
BENCH_VENV="$ROOT/.local/venv-python-bench"
NEWEST_VENV="$ROOT/.local/venv-python"
export EDR_BUILD_DIR="${EDR_BUILD_DIR:-$ROOT/build}"

log() { printf 'adapter_bench: %s\n' "$*" >&2; }

. "$ROOT/scripts/lib/python.sh" # find_python

ensure_venv() { # DIR
    if [ ! -x "$1/bin/python" ]; then
        local py
        py="$(find_python)" || { log "no Python >= 3.12 found; set EDR_PYTHON"; exit 1; }
        mkdir -p "$(dirname "$1")"
        "$py" -m venv "$1"
    fi
}

ensure_venv "$NEWEST_VENV"
"$NEWEST_VENV/bin/python" -m pip install -q --upgrade tractusx-sdk sqlalchemy
"$NEWEST_VENV/bin/python" - <<'PY' >&2 || true
from importlib import metadata
from sqlalchemy import create_engine
from tractusx_sdk.dataspace.managers.connection import PostgresConnectionManager
v = metadata.version("tractusx-sdk")
try:
    PostgresConnectionManager(create_engine("sqlite://"))
    print(f"adapter_bench: newest tractusx-sdk {v}: PostgresConnectionManager constructs")
except TypeError as exc:
    print(f"adapter_bench: newest tractusx-sdk {v}: {type(exc).__name__}: {exc}")
PY

ensure_venv "$BENCH_VENV"
"$BENCH_VENV/bin/python" -m pip install -q "tractusx-sdk==$SDK_VERSION" "$ROOT/clients/python[bench]"

if [ -z "${EDR_PG_DSN:-}" ] || [ -z "${EDR_KAFKA_BROKERS:-}" ] || [ -z "${EDR_REDIS_URL:-}" ]; then
    eval "$("$ROOT/scripts/services.sh" env)"
fi
exec "$BENCH_VENV/bin/python" "$ROOT/bench/adapter_bench.py" "$@"

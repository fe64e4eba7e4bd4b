#!/usr/bin/env bash
# install-deps.sh: the Debian packages edr-worker needs to build, test and
# run its local stack. Installs only what is missing (a warm run asks dpkg
# and exits in about a second); apt-get update runs only when something is
# missing. Needs root (or sudo) the first time; CI runs as root.
set -euo pipefail

# Build: compiler, CMake, the libraries the daemon links, CUnit.
BUILD_PKGS=(cmake pkg-config clang clang-format libclang-rt-14-dev
    librdkafka-dev libyajl-dev libpq-dev libhiredis-dev libcunit1-dev
    libmicrohttpd-dev)
# Local stack: servers, the Kafka CLI, Java + Maven for the broker jars.
STACK_PKGS=(postgresql redis-server kcat maven curl)
# Test tooling: memory checker, plots of benchmarks, compose validation,
# Python virtual environments (the adapter and its tests).
TOOL_PKGS=(valgrind gnuplot-nox docker-compose python3-venv)

# Kafka 4.x needs Java 17+: keep whatever such runtime is there.
java_ok() {
    local v
    command -v java >/dev/null 2>&1 || return 1
    v="$(java -version 2>&1 | sed -n 's/.*version "\([0-9]*\).*/\1/p' | head -n 1)"
    [[ -n "$v" && "$v" -ge 17 ]]
}

missing=()
for p in "${BUILD_PKGS[@]}" "${STACK_PKGS[@]}" "${TOOL_PKGS[@]}"; do
    if [[ "$(dpkg-query -W -f='${db:Status-Status}' "$p" 2>/dev/null)" != installed ]]; then
        missing+=("$p")
    fi
done
java_ok || missing+=(openjdk-17-jre-headless)

if ((${#missing[@]} == 0)); then
    echo "install-deps: all packages present"
    exit 0
fi

SUDO=()
if [[ "$(id -u)" != 0 ]]; then
    command -v sudo >/dev/null || {
        echo "install-deps: missing ${missing[*]}; run as root" >&2
        exit 1
    }
    SUDO=(sudo)
fi

echo "install-deps: installing ${missing[*]}"
export DEBIAN_FRONTEND=noninteractive
"${SUDO[@]}" apt-get update -q
"${SUDO[@]}" apt-get install -y -q --no-install-recommends "${missing[@]}"
# The Debian postgresql package starts a cluster on port 5432 and
# redis-server one on 6379; the project runs its own (scripts/services.sh)
# and leaves those alone.
echo "install-deps: done"

#!/usr/bin/env bash
# containers.sh: the container image built and run for real on this
# machine: a private Docker engine, base images made locally, the image
# from the Dockerfile, and a smoke test against the local stack.
#
# usage: scripts/containers.sh COMMAND...      (run in order, e.g. up build smoke)
#   up       install Debian's docker.io and debootstrap when missing, start
#            dockerd (vfs, no iptables, no bridge, data under .local/docker)
#            and make the base images debian:bookworm and
#            debian:bookworm-slim from a debootstrap of bookworm (cached as
#            tar files in .local/containers; a second run imports those)
#   build    docker build --network host -t edr-worker:local . (the Dockerfile
#            as a user builds it; prints the image size)
#   smoke    the checks of the image against the local stack (scripts/
#            services.sh, already up, its env exported): see smoke_* below
#   compose  docker-compose.yml's three workers started for real with
#            deploy/compose/docker-compose.local.yml (host network, the local
#            stack instead of the Kafka/PostgreSQL/Redis images)
#   down     stop the containers and the dockerd this script started (pid)
#   status   whether the engine runs; env: eval-able DOCKER_HOST
#
# No image can be pulled here: every FROM image is built locally, and the
# build uses the classic builder (DOCKER_BUILDKIT=0; BuildKit would fetch
# the docker/dockerfile frontend that the Dockerfile's syntax line names).
# Environment: EDR_DOCKER_DIR (default .local/docker), EDR_CONTAINERS_CACHE
# (default .local/containers), EDR_IMAGE (default edr-worker:local),
# EDR_SMOKE_PORT_BASE (default 19470: ports BASE..BASE+9 on 127.0.0.1),
# EDR_DOCKER_TIMEOUT (seconds to wait for dockerd, default 60).
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
LOCAL="$ROOT/.local"
DOCKER_DIR="${EDR_DOCKER_DIR:-$LOCAL/docker}"
CACHE="${EDR_CONTAINERS_CACHE:-$LOCAL/containers}"
IMAGE="${EDR_IMAGE:-edr-worker:local}"
PORT_BASE="${EDR_SMOKE_PORT_BASE:-19470}"
DOCKER_TIMEOUT="${EDR_DOCKER_TIMEOUT:-60}"
MIRROR="${EDR_DEBIAN_MIRROR:-http://deb.debian.org/debian}"
SUITE=bookworm
# Debian's client, the same release as its dockerd (a newer CLI elsewhere
# on the PATH would want buildx for `docker build`).
DOCKER_CLI=/usr/bin/docker
DOCKERD=/usr/sbin/dockerd

# Unix socket paths are limited to 107 bytes: a deep checkout keeps its
# sockets (dockerd's and containerd's, under exec-root) in /tmp.
RUN_DIR="$DOCKER_DIR/run"
if ((${#RUN_DIR} > 60)); then
    RUN_DIR="/tmp/edr-docker-$(printf '%s' "$DOCKER_DIR" | cksum | cut -d' ' -f1)"
fi
SOCK="$RUN_DIR/docker.sock"
PIDFILE="$DOCKER_DIR/dockerd.pid"
DLOG="$DOCKER_DIR/dockerd.log"
export DOCKER_HOST="unix://$SOCK"

log() { printf 'containers: %s\n' "$*" >&2; }
die() {
    printf 'containers: ERROR: %s\n' "$*" >&2
    exit 1
}
now() { date +%s.%N; }
elapsed() { awk -v a="$1" -v b="$(now)" 'BEGIN { printf "%.1f", b - a }'; }
docker() { "$DOCKER_CLI" "$@"; }

# ---------------------------------------------------------------- engine

need_pkgs() {
    local missing=() p
    for p in "$@"; do
        [[ "$(dpkg-query -W -f='${db:Status-Status}' "$p" 2>/dev/null)" == installed ]] ||
            missing+=("$p")
    done
    ((${#missing[@]} == 0)) && return 0
    [[ "$(id -u)" == 0 ]] || die "missing ${missing[*]}: run as root"
    log "installing ${missing[*]} (Debian)"
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -q >/dev/null
    # The packages' init scripts would start a system dockerd: denied
    # where policy-rc.d says so; this script starts its own anyway.
    apt-get install -y -q --no-install-recommends "${missing[@]}" >/dev/null
}

dockerd_pid() {
    local pid
    [[ -s "$PIDFILE" ]] || return 1
    pid="$(tr -dc '0-9' <"$PIDFILE")"
    [[ -n "$pid" && -d "/proc/$pid" ]] || return 1
    tr '\0' ' ' <"/proc/$pid/cmdline" 2>/dev/null | grep -qF -- "$SOCK" || return 1
    echo "$pid"
}

engine_ready() { docker info >/dev/null 2>&1; }

engine_up() {
    local pid t0 deadline
    need_pkgs docker.io debootstrap
    if pid="$(dockerd_pid)"; then
        log "dockerd already running (pid $pid)"
    else
        mkdir -p "$DOCKER_DIR/data" "$RUN_DIR/exec"
        rm -f "$SOCK" "$PIDFILE"
        t0="$(now)"
        # Same pid-file trick as services.sh: the inner shell writes its pid
        # and execs dockerd, so the file names dockerd itself.
        setsid bash -c 'echo $$ >"$1"; shift; exec "$@"' _ "$PIDFILE" \
            "$DOCKERD" --storage-driver=vfs --iptables=false --ip6tables=false \
            --bridge=none --data-root "$DOCKER_DIR/data" \
            --exec-root "$RUN_DIR/exec" --pidfile "$RUN_DIR/dockerd.pid" \
            -H "unix://$SOCK" </dev/null >"$DLOG" 2>&1 8>&- 9>&- &
        deadline=$((SECONDS + DOCKER_TIMEOUT))
        until engine_ready; do
            pid="$(cat "$PIDFILE" 2>/dev/null || true)"
            if [[ -n "$pid" && ! -d "/proc/$pid" ]]; then
                tail -n 5 "$DLOG" >&2
                die "dockerd exited during start-up, see $DLOG"
            fi
            ((SECONDS < deadline)) ||
                die "dockerd: no answer on $SOCK after $DOCKER_TIMEOUT s, see $DLOG"
            sleep 0.2
        done
        log "dockerd started (pid $(cat "$PIDFILE")) in $(elapsed "$t0") s"
    fi
    docker info --format 'engine: Docker {{.ServerVersion}}, storage {{.Driver}}, root {{.DockerRootDir}}' >&2
}

engine_down() {
    local pid ids i
    if ! pid="$(dockerd_pid)"; then
        log "dockerd not running (no live pid in $PIDFILE)"
        rm -f "$PIDFILE"
        return 0
    fi
    ids="$(docker ps -q 2>/dev/null || true)"
    if [[ -n "$ids" ]]; then
        # shellcheck disable=SC2086
        docker stop -t 10 $ids >/dev/null 2>&1 || true
    fi
    kill -TERM "$pid" 2>/dev/null || true
    for ((i = 0; i < 300; i++)); do
        [[ -d "/proc/$pid" ]] || break
        sleep 0.1
    done
    if [[ -d "/proc/$pid" ]]; then
        log "dockerd pid $pid ignored SIGTERM for 30 s: SIGKILL"
        kill -KILL "$pid" 2>/dev/null || true
    fi
    rm -f "$PIDFILE"
    # dockerd leaves its bind mount of the host's network namespace.
    if grep -qF " $RUN_DIR/exec/netns/default " /proc/mounts; then
        umount "$RUN_DIR/exec/netns/default" 2>/dev/null || true
    fi
    log "dockerd stopped (pid $pid)"
}

# ---------------------------------------------------------------- base images

# What docker's official Debian images hold too: the release's three
# suites as one deb822 source, no package lists, no cached .debs.
base_tidy() {
    local r="$1"
    rm -f "$r/etc/apt/sources.list"
    cat >"$r/etc/apt/sources.list.d/debian.sources" <<EOF
Types: deb
URIs: http://deb.debian.org/debian
Suites: $SUITE $SUITE-updates
Components: main
Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg

Types: deb
URIs: http://deb.debian.org/debian-security
Suites: $SUITE-security
Components: main
Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg
EOF
    rm -rf "$r"/var/lib/apt/lists/* "$r"/var/cache/apt/*.bin \
        "$r"/var/cache/apt/archives/*.deb "$r"/var/log/*.log "$r"/tmp/*
    # Containers get hostname and resolv.conf from the engine.
    : >"$r/etc/hostname"
    : >"$r/etc/resolv.conf"
}

# -slim, as debuerreotype makes it: documentation, man pages and locales
# are neither kept nor installed later.
base_slim() {
    local r="$1"
    mkdir -p "$r/etc/dpkg/dpkg.cfg.d"
    cat >"$r/etc/dpkg/dpkg.cfg.d/docker" <<'EOF'
# slim: no documentation, man pages or translations
path-exclude /usr/share/doc/*
path-include /usr/share/doc/*/copyright
path-exclude /usr/share/groff/*
path-exclude /usr/share/info/*
path-exclude /usr/share/linda/*
path-exclude /usr/share/lintian/overrides/*
path-exclude /usr/share/locale/*
path-exclude /usr/share/man/*
EOF
    find "$r/usr/share/doc" -mindepth 1 -not -name copyright -not -type d -delete
    find "$r/usr/share/doc" -mindepth 1 -type d -empty -delete
    rm -rf "$r"/usr/share/{groff,info,linda,lintian/overrides,locale,man}/*
}

base_tars() {
    local t0 tmp
    if [[ -f "$CACHE/$SUITE.tar" && -f "$CACHE/$SUITE-slim.tar" ]]; then
        log "base: cached $CACHE/$SUITE.tar and $SUITE-slim.tar"
        return 0
    fi
    t0="$(now)"
    mkdir -p "$CACHE"
    tmp="$CACHE/rootfs.tmp"
    rm -rf "$tmp"
    log "base: debootstrap --variant=minbase $SUITE from $MIRROR (once; cached)"
    if ! debootstrap --variant=minbase "$SUITE" "$tmp" "$MIRROR" \
        >"$CACHE/debootstrap.log" 2>&1; then
        tail -n 5 "$CACHE/debootstrap.log" >&2
        die "debootstrap failed, see $CACHE/debootstrap.log"
    fi
    base_tidy "$tmp"
    tar --numeric-owner -C "$tmp" -cf "$CACHE/$SUITE.tar.tmp" .
    base_slim "$tmp"
    tar --numeric-owner -C "$tmp" -cf "$CACHE/$SUITE-slim.tar.tmp" .
    rm -rf "$tmp"
    mv "$CACHE/$SUITE.tar.tmp" "$CACHE/$SUITE.tar"
    mv "$CACHE/$SUITE-slim.tar.tmp" "$CACHE/$SUITE-slim.tar"
    log "base: made in $(elapsed "$t0") s ($(du -h "$CACHE/$SUITE.tar" | cut -f1)," \
        "slim $(du -h "$CACHE/$SUITE-slim.tar" | cut -f1))"
}

# The tag a real build resolves from a registry, made here from our tar;
# the label tells which tar, so a changed cache is imported again.
base_import() {
    local tag="$1" tar="$2" sum have
    sum="$(stat -c '%s-%Y' "$tar")"
    have="$(docker image inspect -f '{{index .Config.Labels "org.edr-worker.base"}}' \
        "$tag" 2>/dev/null || true)"
    if [[ "$have" == "$sum" ]]; then
        log "base: $tag present"
        return 0
    fi
    docker import --change 'CMD ["bash"]' \
        --change "LABEL org.edr-worker.base=$sum" "$tar" "$tag" >/dev/null
    log "base: imported $tag from $tar"
}

cmd_up() {
    local t0
    t0="$(now)"
    engine_up
    base_tars
    base_import "debian:$SUITE" "$CACHE/$SUITE.tar"
    base_import "debian:$SUITE-slim" "$CACHE/$SUITE-slim.tar"
    log "up in $(elapsed "$t0") s"
}

# ---------------------------------------------------------------- build

image_size() { docker image inspect -f '{{.Size}}' "$IMAGE"; }
mib() { awk -v b="$1" 'BEGIN { printf "%.1f MiB", b / 1048576 }'; }

cmd_build() {
    local t0
    engine_ready || die "no engine: run '$0 up' first"
    t0="$(now)"
    log "build: docker build --network host -t $IMAGE . (classic builder)"
    mkdir -p "$CACHE"
    if ! DOCKER_BUILDKIT=0 docker build --force-rm --network host -t "$IMAGE" "$ROOT" \
        >"$CACHE/build.log" 2>&1; then
        tail -n 30 "$CACHE/build.log" >&2
        die "docker build failed, see $CACHE/build.log"
    fi
    # vfs copies every layer in full: drop the images this build replaced.
    docker image prune -f >/dev/null 2>&1 || true
    log "build: $IMAGE in $(elapsed "$t0") s; image size $(mib "$(image_size)")" \
        "($(image_size) bytes)"
}

# ---------------------------------------------------------------- smoke

FAILS=0
pass() { printf 'smoke: ok   %s\n' "$*"; }
fail() {
    printf 'smoke: FAIL %s\n' "$*"
    FAILS=$((FAILS + 1))
}
# expect DESCRIPTION CMD...: pass when CMD succeeds.
expect() {
    local what="$1"
    shift
    if "$@"; then pass "$what"; else fail "$what"; fi
}

RUN_ID="$(date +%s)-$$"
SMOKE_CONTAINERS=()
SMOKE_TMP=""
smoke_cleanup() {
    local c
    for c in "${SMOKE_CONTAINERS[@]}"; do
        docker rm -f "$c" >/dev/null 2>&1 || true
    done
    SMOKE_CONTAINERS=()
    if [[ -n "${SMOKE_TABLE:-}" ]]; then
        psql "$EDR_PG_DSN" -Xq -c "DROP TABLE IF EXISTS $SMOKE_TABLE, ${SMOKE_TABLE}_offsets" \
            >/dev/null 2>&1 || true
    fi
    [[ -z "$SMOKE_TMP" ]] || rm -rf "$SMOKE_TMP"
}

http_code() { curl -s -o /dev/null -w '%{http_code}' --max-time 2 "http://$1" || true; }

# wait_for SECONDS CMD...: polls CMD every 0.2 s; 1 when time ran out.
wait_for() {
    local deadline=$((SECONDS + $1))
    shift
    until "$@"; do
        ((SECONDS < deadline)) || return 1
        sleep 0.2
    done
}
ready_at() { [[ "$(http_code "$1/readyz")" == 200 ]]; }
healthy() { [[ "$(docker inspect -f '{{.State.Health.Status}}' "$1" 2>/dev/null)" == healthy ]]; }
metric_sum() { # metric_sum ADDR REGEX: sum of the samples whose line matches
    curl -s --max-time 2 "http://$1/metrics" | awk -v re="$2" '$0 ~ re { s += $NF } END { print s + 0 }'
}

# The hardening every smoke container gets; the chart and the compose
# file ask for the same (read-only root, no capabilities, no setuid).
HARDEN=(--read-only --cap-drop ALL --security-opt no-new-privileges --network host)

# run_worker NAME PORT ENV...: a detached worker container on the local stack.
run_worker() {
    local name="$1" port="$2"
    shift 2
    local envs=() e
    for e in "$@"; do envs+=(-e "$e"); done
    SMOKE_CONTAINERS+=("$name")
    docker run -d --name "$name" "${HARDEN[@]}" --stop-timeout 30 \
        --health-interval 2s --health-start-period 5s \
        -e EDR_KAFKA_BROKERS -e EDR_REDIS_URL -e "EDR_HTTP_ADDR=127.0.0.1:$port" \
        -e EDR_LOG_FORMAT=text "${envs[@]}" "$IMAGE" >/dev/null
}

smoke_cli() {
    local out
    out="$(docker run --rm "${HARDEN[@]}" "$IMAGE" --version 2>&1)"
    printf 'smoke: edr-worker --version: %s\n' "$out"
    expect "--version names edr-worker" grep -q 'edr-worker' <<<"$out"
    out="$(docker run --rm "${HARDEN[@]}" "$IMAGE" --help 2>&1)"
    expect "--help lists EDR_STORE and EDR_PG_DSN" \
        bash -c 'grep -q EDR_STORE <<<"$1" && grep -q EDR_PG_DSN <<<"$1"' _ "$out"
    out="$(docker run --rm "${HARDEN[@]}" --entrypoint edrctl "$IMAGE" --help 2>&1)"
    expect "edrctl --help" grep -q 'publish' <<<"$out"
    local rc=0
    docker run --rm "${HARDEN[@]}" "$IMAGE" --store nonsense >/dev/null 2>&1 || rc=$?
    expect "an invalid setting exits 2 (got $rc)" test "$rc" = 2
    local size
    size="$(image_size)"
    printf 'smoke: image %s: %s (%s bytes)\n' "$IMAGE" "$(mib "$size")" "$size"
}

# The worker's process as the kernel sees it: non-root, no capabilities,
# no privilege gain, root filesystem read-only, and the image's health
# check turning the container healthy (and failing on a bad path).
smoke_hardening() {
    local name="edr-smoke-$RUN_ID-hard" port=$((PORT_BASE + 9)) pid st
    kafka_topic "edr.smoke.$RUN_ID.hard" || { fail "topic edr.smoke.$RUN_ID.hard"; return; }
    run_worker "$name" "$port" EDR_STORE=memory "EDR_TOPIC=edr.smoke.$RUN_ID.hard" \
        "EDR_DLQ_TOPIC=edr.smoke.$RUN_ID.hard.dlq" "EDR_RPC_PREFIX=edr-smoke-$RUN_ID-hard"
    if ! wait_for 60 ready_at "127.0.0.1:$port"; then
        docker logs "$name" 2>&1 | tail -n 20
        fail "hardened worker ready on 127.0.0.1:$port"
        return
    fi
    pass "hardened worker ready on 127.0.0.1:$port (memory store)"
    pid="$(docker inspect -f '{{.State.Pid}}' "$name")"
    st="$(cat "/proc/$pid/status")"
    expect "process runs as uid 10001, not root" \
        bash -c 'awk "/^Uid:/ {exit !(\$2 == 10001 && \$3 == 10001)}" <<<"$1"' _ "$st"
    expect "all capabilities dropped (CapEff, CapPrm, CapBnd zero)" \
        bash -c 'for k in CapEff CapPrm CapBnd; do grep -q "^$k:[[:space:]]*0000000000000000$" <<<"$1" || exit 1; done' _ "$st"
    expect "no_new_privs set" grep -q '^NoNewPrivs:[[:space:]]*1' <<<"$st"
    expect "root filesystem read-only (write in the workdir refused)" \
        bash -c '! "$1" exec "$2" bash -c ": > /var/lib/edr-worker/probe" 2>/dev/null' _ "$DOCKER_CLI" "$name"
    expect "engine reports ReadonlyRootfs" \
        test "$(docker inspect -f '{{.HostConfig.ReadonlyRootfs}}' "$name")" = true
    if wait_for 60 healthy "$name"; then
        pass "image HEALTHCHECK (edr-http-probe /healthz): healthy"
    else
        fail "image HEALTHCHECK: $(docker inspect -f '{{json .State.Health}}' "$name" | head -c 400)"
    fi
    expect "health probe fails on a path that is not 200" \
        bash -c '! "$1" exec "$2" edr-http-probe /no-such-path' _ "$DOCKER_CLI" "$name"
    curl -s --max-time 2 "http://127.0.0.1:$port/metrics" >"$SMOKE_TMP/metrics.txt"
    cp "$SMOKE_TMP/metrics.txt" "$CACHE/live-metrics.txt"
    expect "live /metrics saved ($(grep -c '^edr_' "$SMOKE_TMP/metrics.txt") samples)" \
        grep -q '^edr_build_info' "$SMOKE_TMP/metrics.txt"
    local rc
    docker stop -t 30 "$name" >/dev/null
    rc="$(docker inspect -f '{{.State.ExitCode}}' "$name")"
    expect "docker stop: exit code 0 (got $rc)" test "$rc" = 0
}

# scripts/demo.sh with its worker and edrctl in containers: the demo runs
# "$EDR_BUILD_DIR/edr-worker" in the background and stops it with SIGTERM;
# here that program is `docker run` (it forwards the signal and returns
# the container's exit code).
smoke_demo() {
    local bin="$SMOKE_TMP/demo-bin" out rc=0 demo="${EDR_DEMO_SCRIPT:-$ROOT/scripts/demo.sh}"
    mkdir -p "$bin"
    local name="edr-smoke-$RUN_ID-demo"
    SMOKE_CONTAINERS+=("$name")
    cat >"$bin/edr-worker" <<EOF
#!/usr/bin/env bash
# Every EDR_* variable of the caller passes into the container.
envs=()
while IFS='=' read -r k _; do envs+=(-e "\$k"); done < <(env | grep '^EDR_')
exec "$DOCKER_CLI" run --rm --name "$name" ${HARDEN[*]} "\${envs[@]}" "$IMAGE" "\$@"
EOF
    # edrctl runs in the worker's container while that runs (a new
    # container costs seconds on vfs), in a fresh one otherwise.
    cat >"$bin/edrctl" <<EOF
#!/usr/bin/env bash
envs=()
while IFS='=' read -r k _; do envs+=(-e "\$k"); done < <(env | grep '^EDR_')
if [[ "\$("$DOCKER_CLI" inspect -f '{{.State.Running}}' "$name" 2>/dev/null)" == true ]]; then
    exec "$DOCKER_CLI" exec -i "\${envs[@]}" "$name" edrctl "\$@"
fi
exec "$DOCKER_CLI" run --rm -i ${HARDEN[*]} "\${envs[@]}" --entrypoint edrctl "$IMAGE" "\$@"
EOF
    chmod +x "$bin/edr-worker" "$bin/edrctl"
    out="$(EDR_BUILD_DIR="$bin" EDR_DEMO_HTTP_ADDR="127.0.0.1:$((PORT_BASE + 8))" \
        timeout 240 "$demo" </dev/null 2>&1)" || rc=$?
    printf '%s\n' "$out" >"$CACHE/demo.log"
    if ((rc == 0)) && grep -q 'stopped cleanly' <<<"$out" &&
        grep -q 'tp-a-2' <<<"$out" && grep -q 'edr-error' <<<"$out"; then
        pass "scripts/demo.sh with the worker in a container (log: $CACHE/demo.log)"
    else
        tail -n 25 <<<"$out"
        fail "scripts/demo.sh with the worker in a container: exit $rc"
    fi
}

# events_file N FIRST TAG: N edr.negotiated events for parties FIRST.., one
# per line as kcat -K '\t' reads them (key TAB value).
events_file() {
    local n="$1" first="$2" tag="$3" i party addr key
    for ((i = first; i < first + n; i++)); do
        party="BPNL$(printf '%012d' "$i")"
        addr="https://provider-$i.example.com/dsp"
        key="$(printf '%s\037%s\037%s\037%s' "$party" "$addr" q p | sha256sum | cut -d' ' -f1)"
        printf '%s\t{"specversion":"1.0","id":"%s-%d","source":"urn:connector:smoke","type":"edr.negotiated","data":{"counter_party_id":"%s","counter_party_address":"%s","query_checksum":"q","policy_checksum":"p","edr":{"transferProcessId":"tp-%d"}}}\n' \
            "$key" "$tag" "$i" "$party" "$addr" "$i"
    done
}

# kafka_topic NAME: the local broker creates a topic (6 partitions) on
# its first metadata request; wait until it reports them.
kafka_topic() {
    wait_for 20 bash -c 'kcat -L -b "$1" -t "$2" 2>/dev/null | grep -q "with 6 partitions"' _ \
        "$EDR_KAFKA_BROKERS" "$1"
}

partitions_of() { # partitions_of PORT: partitions the worker reports lag for
    curl -s --max-time 2 "http://127.0.0.1:$1/metrics" | awk '/^edr_consumer_lag\{/ { n++ } END { print n + 0 }'
}
partitions_shared() {
    local a b c
    a="$(partitions_of $((PORT_BASE + 1)))" b="$(partitions_of $((PORT_BASE + 2)))"
    c="$(partitions_of $((PORT_BASE + 3)))"
    ((a > 0 && b > 0 && c > 0 && a + b + c == 6))
}

pg_count() { psql "$EDR_PG_DSN" -XAtq -c "SELECT count(*) FROM $SMOKE_TABLE" 2>/dev/null || echo -1; }
count_is() { [[ "$(pg_count)" == "$1" ]]; }

# Three workers on one PostgreSQL table and consumer group share the
# partitions; one is stopped with docker stop while events flow: it exits
# 0 and every event ends up in the table.
smoke_scale() {
    local tag="edr-smoke-$RUN_ID" topic="edr.smoke.$RUN_ID.events" i
    SMOKE_TABLE="edr_smoke_${RUN_ID//-/_}"
    local common=(EDR_STORE=postgres EDR_PG_DSN "EDR_PG_TABLE=$SMOKE_TABLE" "EDR_TOPIC=$topic"
        "EDR_DLQ_TOPIC=$topic.dlq" "EDR_GROUP_ID=$tag" "EDR_RPC_PREFIX=$tag")
    kafka_topic "$topic" || { fail "topic $topic with 6 partitions"; return; }
    for i in 1 2 3; do
        run_worker "$tag-$i" $((PORT_BASE + i)) "${common[@]}" "EDR_WORKER_ID=smoke-$i"
    done
    for i in 1 2 3; do
        if ! wait_for 90 ready_at "127.0.0.1:$((PORT_BASE + i))"; then
            docker logs "$tag-$i" 2>&1 | tail -n 15
            fail "postgres worker $i ready"
            return
        fi
    done
    # After the group's rebalances settle, each of the three holds partitions.
    wait_for 60 partitions_shared || true
    local parts=()
    for i in 1 2 3; do parts+=("$(partitions_of $((PORT_BASE + i)))"); done
    expect "3 workers ready, partitions per worker: ${parts[*]} (sum 6, none idle)" \
        bash -c '(( $1 > 0 && $2 > 0 && $3 > 0 && $1 + $2 + $3 == 6 ))' _ "${parts[@]}"

    local total=1200 batch=200 sent=0 rc
    events_file 600 0 "$tag" | kcat -P -b "$EDR_KAFKA_BROKERS" -t "$topic" -K $'\t' ||
        fail "kcat produce"
    sent=600
    wait_for 30 bash -c '(( $("$0" _metric_sum 127.0.0.1:$1 ^edr_events_applied_total) > 0 &&
        $("$0" _metric_sum 127.0.0.1:$2 ^edr_events_applied_total) > 0 &&
        $("$0" _metric_sum 127.0.0.1:$3 ^edr_events_applied_total) > 0 ))' \
        "$0" $((PORT_BASE + 1)) $((PORT_BASE + 2)) $((PORT_BASE + 3)) || true
    local applied=()
    for i in 1 2 3; do
        applied+=("$(metric_sum "127.0.0.1:$((PORT_BASE + i))" '^edr_events_applied_total')")
    done
    expect "load shared: events applied per worker ${applied[*]}" \
        bash -c '(( $1 > 0 && $2 > 0 && $3 > 0 ))' _ "${applied[@]}"
    # Stop worker 2 while the rest of the events are being produced.
    (
        while ((sent < total)); do
            events_file "$batch" "$sent" "$tag" |
                kcat -P -b "$EDR_KAFKA_BROKERS" -t "$topic" -K $'\t'
            sent=$((sent + batch))
            sleep 0.3
        done
    ) &
    local producer=$!
    sleep 0.5
    local t0 flowing=no
    t0="$(now)"
    kill -0 "$producer" 2>/dev/null && flowing=yes
    docker stop -t 30 "$tag-2" >/dev/null
    expect "events were still being produced when worker 2 got SIGTERM" test "$flowing" = yes
    rc="$(docker inspect -f '{{.State.ExitCode}}' "$tag-2")"
    expect "docker stop (SIGTERM) of worker 2 while events flow: exit $rc in $(elapsed "$t0") s" \
        test "$rc" = 0
    wait "$producer" || fail "producer"
    if wait_for 90 count_is "$total"; then
        pass "nothing lost: $total of $total connections in $SMOKE_TABLE"
    else
        fail "nothing lost: $(pg_count) of $total connections in $SMOKE_TABLE"
    fi
    local dead=0
    for i in 1 3; do
        dead=$((dead + $(metric_sum "127.0.0.1:$((PORT_BASE + i))" '^edr_events_dead_lettered_total')))
    done
    expect "no dead letters ($dead)" test "$dead" = 0
    for i in 1 3; do
        docker stop -t 30 "$tag-$i" >/dev/null
        rc="$(docker inspect -f '{{.State.ExitCode}}' "$tag-$i")"
        expect "worker $i stops with exit 0 (got $rc)" test "$rc" = 0
    done
}

smoke_env_check() {
    [[ -n "${EDR_KAFKA_BROKERS:-}" && -n "${EDR_REDIS_URL:-}" && -n "${EDR_PG_DSN:-}" ]] ||
        die "smoke needs the local stack's env: eval \"\$(scripts/services.sh env)\""
    engine_ready || die "no engine: run '$0 up' first"
    docker image inspect "$IMAGE" >/dev/null 2>&1 || die "no image $IMAGE: run '$0 build'"
    local p
    for ((p = PORT_BASE; p < PORT_BASE + 10; p++)); do
        if (exec 3<>"/dev/tcp/127.0.0.1/$p") 2>/dev/null; then
            die "port 127.0.0.1:$p is in use (EDR_SMOKE_PORT_BASE moves the range)"
        fi
    done
}

cmd_smoke() {
    local t0
    t0="$(now)"
    smoke_env_check
    mkdir -p "$CACHE"
    SMOKE_TMP="$(mktemp -d)"
    trap smoke_cleanup EXIT
    local part
    # EDR_SMOKE_PARTS picks parts (development); CI runs them all.
    local tp
    for part in ${EDR_SMOKE_PARTS:-cli hardening demo scale}; do
        printf 'smoke: -- %s\n' "$part"
        tp="$(now)"
        "smoke_$part"
        printf 'smoke: -- %s took %s s\n' "$part" "$(elapsed "$tp")"
    done
    smoke_cleanup
    trap - EXIT
    printf 'smoke: %d failed, in %s s\n' "$FAILS" "$(elapsed "$t0")"
    ((FAILS == 0))
}

# ---------------------------------------------------------------- compose

# docker-compose.yml's own worker services, started by docker-compose with
# this machine's override (deploy/compose/docker-compose.local.yml): they
# become healthy through the compose health check (/readyz), share the
# events, and one stops with exit 0.
cmd_compose() {
    local t0 id tag i c rc
    t0="$(now)"
    smoke_env_check
    command -v docker-compose >/dev/null || need_pkgs docker-compose
    id="$(date +%s)$$"
    export EDR_COMPOSE_TOPIC="edr.compose.$id" EDR_COMPOSE_TABLE="edr_compose_$id"
    export EDR_COMPOSE_PORT_1=$((PORT_BASE + 4)) EDR_COMPOSE_PORT_2=$((PORT_BASE + 5))
    export EDR_COMPOSE_PORT_3=$((PORT_BASE + 6))
    SMOKE_TABLE="$EDR_COMPOSE_TABLE"
    SMOKE_TMP="$(mktemp -d)"
    # The two files merged; then the one thing an override cannot take
    # away: the published ports, which docker-compose 1.29 refuses next to
    # network_mode host (they would mean nothing there anyway).
    docker-compose -f "$ROOT/docker-compose.yml" \
        -f "$ROOT/deploy/compose/docker-compose.local.yml" config >"$SMOKE_TMP/merged.yml"
    /usr/bin/python3 - "$SMOKE_TMP/merged.yml" <<'PYEOF'
import sys, yaml
path = sys.argv[1]
doc = yaml.safe_load(open(path))
for svc in doc["services"].values():
    if svc.get("network_mode") == "host":
        svc.pop("ports", None)
yaml.safe_dump(doc, open(path, "w"), sort_keys=False)
PYEOF
    local dc=(docker-compose -p "edrcompose$id" --project-directory "$ROOT" -f "$SMOKE_TMP/merged.yml")
    compose_cleanup() {
        "${dc[@]}" down -t 30 >/dev/null 2>&1 || true
        smoke_cleanup
    }
    trap compose_cleanup EXIT
    kafka_topic "$EDR_COMPOSE_TOPIC" || { fail "topic $EDR_COMPOSE_TOPIC"; return 1; }
    if ! "${dc[@]}" up -d --no-deps --no-build worker-1 worker-2 worker-3 \
        >"$CACHE/compose-up.log" 2>&1; then
        cat "$CACHE/compose-up.log"
        fail "docker-compose up of worker-1..3"
        return 1
    fi
    pass "docker-compose up -d --no-deps --no-build worker-1 worker-2 worker-3"
    local ids=()
    for i in 1 2 3; do ids+=("$("${dc[@]}" ps -q "worker-$i")"); done
    local ok=1
    for i in 1 2 3; do
        if ! wait_for 120 healthy "${ids[$((i - 1))]}"; then
            ok=0
            docker logs "${ids[$((i - 1))]}" 2>&1 | tail -n 10
        fi
    done
    expect "worker-1..3 healthy by the compose health check (edr-http-probe /readyz)" test "$ok" = 1
    c="${ids[0]}"
    expect "compose hardening: read-only root, no capabilities, no-new-privileges" \
        test "$(docker inspect -f '{{.HostConfig.ReadonlyRootfs}} {{.HostConfig.CapDrop}} {{.HostConfig.SecurityOpt}}' "$c")" \
        = "true [ALL] [no-new-privileges:true]"
    events_file 300 0 "$EDR_COMPOSE_TOPIC" |
        kcat -P -b "$EDR_KAFKA_BROKERS" -t "$EDR_COMPOSE_TOPIC" -K $'\t' || fail "kcat produce"
    if wait_for 60 count_is 300; then
        pass "compose workers applied 300 of 300 events to $EDR_COMPOSE_TABLE"
    else
        fail "compose workers: $(pg_count) of 300 events in $EDR_COMPOSE_TABLE"
    fi
    local applied=()
    for i in 1 2 3; do
        applied+=("$(metric_sum "127.0.0.1:$((PORT_BASE + 3 + i))" '^edr_events_applied_total')")
    done
    expect "compose workers shared the events: ${applied[*]}" \
        bash -c '(( $1 > 0 && $2 > 0 && $3 > 0 && $1 + $2 + $3 == 300 ))' _ "${applied[@]}"
    "${dc[@]}" stop -t 30 worker-2 >/dev/null 2>&1
    rc="$(docker inspect -f '{{.State.ExitCode}}' "${ids[1]}")"
    expect "docker-compose stop worker-2: exit $rc" test "$rc" = 0
    compose_cleanup
    trap - EXIT
    printf 'smoke: compose: %d failed, in %s s\n' "$FAILS" "$(elapsed "$t0")"
    ((FAILS == 0))
}

cmd_status() {
    local pid
    if pid="$(dockerd_pid)" && engine_ready; then
        echo "dockerd running (pid $pid), DOCKER_HOST=$DOCKER_HOST"
    else
        echo "dockerd not running"
        return 1
    fi
}

usage() {
    sed -n '2,/^set -euo/p' "${BASH_SOURCE[0]}" | sed '$d; s/^# \{0,1\}//' >&2
    exit 2
}

main() {
    (($#)) || usage
    local c
    if [[ "$1" == _metric_sum ]]; then # internal, for wait_for in a subshell
        metric_sum "$2" "$3"
        return
    fi
    for c in "$@"; do
        case "$c" in
        up | build | smoke | compose | down | status) ;;
        env) ;;
        *) usage ;;
        esac
    done
    mkdir -p "$LOCAL"
    for c in "$@"; do
        case "$c" in
        env) echo "export DOCKER_HOST=$DOCKER_HOST" ;;
        up | down)
            # One engine start/stop at a time.
            exec 8>"$LOCAL/containers.lock"
            flock -w 120 8 || die "another containers.sh holds $LOCAL/containers.lock"
            if [[ "$c" == up ]]; then cmd_up; else engine_down; fi
            exec 8>&-
            ;;
        *) "cmd_$c" ;;
        esac
    done
}

main "$@"

#!/usr/bin/env bash
# services.sh: the local stack every integration test talks to, real servers
# on loopback started from this checkout:
#   Kafka 4.1.1 (KRaft, one combined broker+controller)  127.0.0.1:19092
#   Redis                                                127.0.0.1:16379
#   PostgreSQL 15 (role and database "edr")              127.0.0.1:15432
#
# usage: scripts/services.sh up|down|status|env [--cluster]
#   up      start what is not running, wait until each answers (idempotent)
#   down    stop the processes whose pid files this script keeps
#   status  one line per service
#   env     eval-able exports for tests and scripts: eval "$(... env)"
#
# --cluster (or EDR_LOCAL_CLUSTER=1): a three-node Kafka cluster (issue 19)
# instead of the single broker; Redis and PostgreSQL stay those of "up":
#   Kafka 4.1.1, 3 combined broker+controller KRaft nodes, same jars
#     brokers      127.0.0.1:19192,127.0.0.1:19193,127.0.0.1:19194
#     controllers  127.0.0.1:19292,127.0.0.1:19293,127.0.0.1:19294
#   default.replication.factor=3, min.insync.replicas=2 (also for the
#   offsets and transaction state topics). "up --cluster" starts the nodes
#   that are not running and waits until the controller quorum has a
#   leader, the three brokers are registered and every partition of every
#   topic has a leader and its full ISR; "down --cluster" stops only the
#   cluster; "status --cluster" adds a line per node; "env --cluster"
#   points EDR_KAFKA_BROKERS at the three brokers. State: .local/kafka-cluster.
#   Memory: -Xms128m -Xmx384m per node (EDR_KAFKA_CLUSTER_HEAP). Measured
#   on the 2-core, 24 GiB machine (ps RSS): 310-340 MB per JVM just after
#   a cold start, 430-520 MB after a full tests/fault/run.sh --cluster, so
#   about 1.5 GB for the three (the single broker's -Xmx768m is not
#   needed: each node leads a third of the partitions). Cold start ~15 s.
#
# State (data, logs, pid files, the cached Kafka jars) lives in .local/,
# which git ignores. The ports above are the defaults (see below). Timeouts: EDR_KAFKA_TIMEOUT, EDR_REDIS_TIMEOUT,
# EDR_PG_TIMEOUT (seconds).
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
LOCAL="$ROOT/.local"

# A second, separate stack (another checkout, a CI rehearsal next to a
# running stack) may move the ports: EDR_LOCAL_KAFKA_PORT and friends.
KAFKA_PORT="${EDR_LOCAL_KAFKA_PORT:-19092}"
KAFKA_CONTROLLER_PORT="${EDR_LOCAL_KAFKA_CONTROLLER_PORT:-19093}"
REDIS_PORT="${EDR_LOCAL_REDIS_PORT:-16379}"
PG_PORT="${EDR_LOCAL_PG_PORT:-15432}"
PG_USER=edr
PG_PASSWORD=edr
PG_DB=edr

KAFKA_DIR="$LOCAL/kafka"
KAFKA_LIBS="$LOCAL/kafka-libs"
KAFKA_POM="$ROOT/scripts/kafka/pom.xml"
KAFKA_PID="$KAFKA_DIR/kafka.pid"
KAFKA_LOG="$KAFKA_DIR/logs/server.log"
KAFKA_STDOUT="$KAFKA_DIR/logs/stdout.log"
KAFKA_HEAP="${EDR_KAFKA_HEAP:--Xms256m -Xmx768m}"

REDIS_DIR="$LOCAL/redis"
REDIS_PID="$REDIS_DIR/redis.pid"
REDIS_LOG="$REDIS_DIR/redis.log"

KAFKA_TIMEOUT="${EDR_KAFKA_TIMEOUT:-90}"
REDIS_TIMEOUT="${EDR_REDIS_TIMEOUT:-20}"
PG_TIMEOUT="${EDR_PG_TIMEOUT:-60}"

log() { printf 'services: %s\n' "$*" >&2; }
die() {
    printf 'services: ERROR: %s\n' "$*" >&2
    exit 1
}

# ---------------------------------------------------------------- helpers

now() { date +%s.%N; }
elapsed() { awk -v a="$1" -v b="$(now)" 'BEGIN { printf "%.1f", b - a }'; }

# port_open PORT: something accepts TCP connections on 127.0.0.1:PORT.
port_open() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }

# pid_alive PIDFILE [CMDLINE-SUBSTRING]: the pid in PIDFILE is a live
# process (whose command line contains the substring, so a recycled pid
# is not mistaken for ours). Prints the pid.
pid_alive() {
    local file="$1" want="${2:-}" pid
    [[ -s "$file" ]] || return 1
    pid="$(tr -dc '0-9' <"$file" | head -c 10)"
    [[ -n "$pid" && -d "/proc/$pid" ]] || return 1
    if [[ -n "$want" ]] &&
        ! tr '\0' ' ' <"/proc/$pid/cmdline" 2>/dev/null | grep -qF -- "$want"; then
        return 1
    fi
    echo "$pid"
}

# wait_until SECONDS INTERVAL MESSAGE CHECK...: runs CHECK every INTERVAL
# seconds until it succeeds; dies with MESSAGE when SECONDS have passed.
wait_until() {
    local deadline=$((SECONDS + $1)) interval="$2" msg="$3"
    shift 3
    until "$@"; do
        ((SECONDS < deadline)) || die "$msg"
        sleep "$interval"
    done
}

# stop_pid NAME PIDFILE SUBSTRING: SIGTERM, wait up to 30 s, then SIGKILL.
stop_pid() {
    local name="$1" file="$2" want="$3" pid i
    if ! pid="$(pid_alive "$file" "$want")"; then
        log "$name: not running (no live pid in $file)"
        rm -f "$file"
        return 0
    fi
    kill -TERM "$pid" 2>/dev/null || true
    for ((i = 0; i < 300; i++)); do
        [[ -d "/proc/$pid" ]] || break
        sleep 0.1
    done
    if [[ -d "/proc/$pid" ]]; then
        log "$name: pid $pid ignored SIGTERM for 30 s, sending SIGKILL"
        kill -KILL "$pid" 2>/dev/null || true
    fi
    rm -f "$file"
    log "$name: stopped (pid $pid)"
}

# ---------------------------------------------------------------- Kafka

kafka_fetch_jars() {
    if [[ -f "$KAFKA_LIBS/.complete" ]]; then
        return 0
    fi
    command -v mvn >/dev/null || die "kafka: mvn not found (run scripts/install-deps.sh)"
    local t0 tmp
    t0="$(now)"
    tmp="$KAFKA_LIBS.tmp.$$"
    rm -rf "$tmp"
    log "kafka: fetching broker jars from Maven Central into $KAFKA_LIBS"
    if ! mvn -B -q -f "$KAFKA_POM" dependency:copy-dependencies \
        -DincludeScope=runtime -DoutputDirectory="$tmp" \
        >"$LOCAL/kafka-libs-mvn.log" 2>&1; then
        rm -rf "$tmp"
        die "kafka: maven could not fetch the jars, see $LOCAL/kafka-libs-mvn.log"
    fi
    # Kafka 4.1 logs through SLF4J 1.x; the binding in the pom must match.
    if ! ls "$tmp"/slf4j-api-1.*.jar >/dev/null 2>&1; then
        log "kafka: warning: slf4j-api is not 1.x: $(cd "$tmp" && ls slf4j-api-*.jar);" \
            "log4j-slf4j-impl will not bind (use log4j-slf4j2-impl)"
    fi
    touch "$tmp/.complete"
    rm -rf "$KAFKA_LIBS"
    mv "$tmp" "$KAFKA_LIBS"
    log "kafka: jars fetched in $(elapsed "$t0") s ($(ls "$KAFKA_LIBS" | wc -l) files)"
}

kafka_write_config() {
    mkdir -p "$KAFKA_DIR/data" "$KAFKA_DIR/logs"
    cat >"$KAFKA_DIR/server.properties" <<EOF
# Written by scripts/services.sh; edits are overwritten on the next "up".
process.roles=broker,controller
node.id=1
controller.quorum.voters=1@127.0.0.1:$KAFKA_CONTROLLER_PORT
listeners=PLAINTEXT://127.0.0.1:$KAFKA_PORT,CONTROLLER://127.0.0.1:$KAFKA_CONTROLLER_PORT
advertised.listeners=PLAINTEXT://127.0.0.1:$KAFKA_PORT
controller.listener.names=CONTROLLER
listener.security.protocol.map=CONTROLLER:PLAINTEXT,PLAINTEXT:PLAINTEXT
inter.broker.listener.name=PLAINTEXT
log.dirs=$KAFKA_DIR/data
num.partitions=6
auto.create.topics.enable=true
group.initial.rebalance.delay.ms=0
offsets.topic.replication.factor=1
offsets.topic.num.partitions=1
transaction.state.log.replication.factor=1
transaction.state.log.min.isr=1
share.coordinator.state.topic.replication.factor=1
share.coordinator.state.topic.min.isr=1
# Retention runs every second (default 5 min), so tests of state gaps can
# use real retention (tests/worker/test_state_gap_kafka.c); read-only: a
# running broker keeps its value until restarted.
log.retention.check.interval.ms=1000
EOF
    kafka_log4j2 edr-local-kafka >"$KAFKA_DIR/log4j2.properties"
}

# kafka_log4j2 NAME: the broker's log configuration (to stdout).
kafka_log4j2() {
    printf '%s\n' "# Written by scripts/services.sh: broker log to \${kafka.logs.dir}/server.log." \
        "status = warn" "name = $1"
    cat <<'EOF'
appender.server.type = RollingFile
appender.server.name = server
appender.server.fileName = ${sys:kafka.logs.dir}/server.log
appender.server.filePattern = ${sys:kafka.logs.dir}/server.log.%i
appender.server.layout.type = PatternLayout
appender.server.layout.pattern = [%d] %p %m (%c)%n
appender.server.policies.type = Policies
appender.server.policies.size.type = SizeBasedTriggeringPolicy
appender.server.policies.size.size = 50MB
appender.server.strategy.type = DefaultRolloverStrategy
appender.server.strategy.max = 2
rootLogger.level = INFO
rootLogger.appenderRef.server.ref = server
logger.request.name = kafka.request.logger
logger.request.level = WARN
EOF
}

kafka_java() {
    java -cp "$KAFKA_LIBS/*" -Dkafka.logs.dir="$KAFKA_DIR/logs" \
        -Dlog4j2.configurationFile="$KAFKA_DIR/log4j2.properties" "$@"
}

kafka_ready() {
    port_open "$KAFKA_PORT" || return 1
    kcat -L -b "127.0.0.1:$KAFKA_PORT" -m 3 2>/dev/null |
        grep -q "broker 1 at 127.0.0.1:$KAFKA_PORT"
}

kafka_up() {
    local pid t0 cold="" i
    if pid="$(pid_alive "$KAFKA_PID" "$KAFKA_DIR/server.properties")"; then
        log "kafka: already running (pid $pid)"
    else
        if port_open "$KAFKA_PORT" || port_open "$KAFKA_CONTROLLER_PORT"; then
            die "kafka: port $KAFKA_PORT or $KAFKA_CONTROLLER_PORT is taken by a process" \
                "this script did not start"
        fi
        command -v java >/dev/null || die "kafka: java not found (run scripts/install-deps.sh)"
        kafka_fetch_jars
        kafka_write_config
        if [[ ! -f "$KAFKA_DIR/data/meta.properties" ]]; then
            # A cluster id is 16 random bytes, base64url without padding:
            # generated here to spare a JVM start (StorageTool random-uuid).
            local id
            id="$(head -c 16 /dev/urandom | base64 | tr '+/' '-_' | tr -d '=')"
            t0="$(now)"
            if ! kafka_java kafka.tools.StorageTool format -t "$id" \
                -c "$KAFKA_DIR/server.properties" >"$KAFKA_DIR/logs/format.log" 2>&1; then
                die "kafka: storage format failed, see $KAFKA_DIR/logs/format.log"
            fi
            log "kafka: formatted $KAFKA_DIR/data (cluster $id) in $(elapsed "$t0") s"
            cold=" (first start)"
        fi
        t0="$(now)"
        # The inner shell writes its own pid then execs java, so the pid file
        # names the JVM whether or not setsid forks.
        setsid bash -c 'echo $$ >"$1"; shift; exec "$@"' _ "$KAFKA_PID" \
            java $KAFKA_HEAP -XX:+UseG1GC -XX:MaxGCPauseMillis=20 \
            -Djava.awt.headless=true -Dkafka.logs.dir="$KAFKA_DIR/logs" \
            -Dlog4j2.configurationFile="$KAFKA_DIR/log4j2.properties" \
            -cp "$KAFKA_LIBS/*" kafka.Kafka "$KAFKA_DIR/server.properties" \
            </dev/null >"$KAFKA_STDOUT" 2>&1 9>&- &
        for ((i = 0; i < 50; i++)); do
            [[ -s "$KAFKA_PID" ]] && break
            sleep 0.1
        done
        pid="$(cat "$KAFKA_PID" 2>/dev/null || true)"
        log "kafka: started pid ${pid:-?}, waiting for metadata on 127.0.0.1:$KAFKA_PORT"
        local deadline=$((SECONDS + KAFKA_TIMEOUT))
        until kafka_ready; do
            if [[ -z "$pid" || ! -d "/proc/$pid" ]]; then
                rm -f "$KAFKA_PID"
                die "kafka: the broker exited during start-up, see $KAFKA_LOG and $KAFKA_STDOUT"
            fi
            if ((SECONDS >= deadline)); then
                die "kafka: no metadata answer on 127.0.0.1:$KAFKA_PORT after" \
                    "${KAFKA_TIMEOUT} s, see $KAFKA_LOG and $KAFKA_STDOUT"
            fi
            sleep 0.2
        done
        local took
        took="$(elapsed "$t0")"
        log "kafka: ready in $took s$cold"
        printf '%s %s %s\n' "$(date -Is)" "$took" "${cold:+cold}" >>"$KAFKA_DIR/startup-times.log"
        return 0
    fi
    wait_until "$KAFKA_TIMEOUT" 0.2 \
        "kafka: running but no metadata answer on 127.0.0.1:$KAFKA_PORT, see $KAFKA_LOG" \
        kafka_ready
}

# ---------------------------------------------------------------- Kafka cluster
# Three combined broker+controller nodes (issue 19), each with its folder
# .local/kafka-cluster/node<N>/ (server.properties, data, logs, kafka.pid).
# Ports: broker N on CLUSTER_PORT_BASE+N-1, controller N on
# CLUSTER_CPORT_BASE+N-1; fixed, away from the stack's 19092/19093 and the
# fault suite's private servers (19096/19097, 16395, 15447).

CLUSTER_NODES=3
CLUSTER_PORT_BASE="${EDR_LOCAL_CLUSTER_PORT_BASE:-19192}"
CLUSTER_CPORT_BASE="${EDR_LOCAL_CLUSTER_CONTROLLER_PORT_BASE:-19292}"
CLUSTER_DIR="$LOCAL/kafka-cluster"
# Heap: the measured RSS is in the header of this file.
CLUSTER_HEAP="${EDR_KAFKA_CLUSTER_HEAP:--Xms128m -Xmx384m}"

cluster_port() { echo $((CLUSTER_PORT_BASE + $1 - 1)); }
cluster_cport() { echo $((CLUSTER_CPORT_BASE + $1 - 1)); }
cluster_brokers() {
    local n out=""
    for ((n = 1; n <= CLUSTER_NODES; n++)); do
        out+="${out:+,}127.0.0.1:$(cluster_port "$n")"
    done
    echo "$out"
}
# node_alive N: node N's JVM is running (prints its pid).
node_alive() { pid_alive "$CLUSTER_DIR/node$1/kafka.pid" "node$1/server.properties"; }

cluster_write_config() {
    local n="$1" d="$CLUSTER_DIR/node$1" voters="" i
    for ((i = 1; i <= CLUSTER_NODES; i++)); do
        voters+="${voters:+,}$i@127.0.0.1:$(cluster_cport "$i")"
    done
    mkdir -p "$d/data" "$d/logs"
    cat >"$d/server.properties" <<EOF
# Written by scripts/services.sh (--cluster); overwritten on the next "up".
process.roles=broker,controller
node.id=$n
controller.quorum.voters=$voters
listeners=PLAINTEXT://127.0.0.1:$(cluster_port "$n"),CONTROLLER://127.0.0.1:$(cluster_cport "$n")
advertised.listeners=PLAINTEXT://127.0.0.1:$(cluster_port "$n")
controller.listener.names=CONTROLLER
listener.security.protocol.map=CONTROLLER:PLAINTEXT,PLAINTEXT:PLAINTEXT
inter.broker.listener.name=PLAINTEXT
log.dirs=$d/data
num.partitions=6
auto.create.topics.enable=true
default.replication.factor=3
min.insync.replicas=2
unclean.leader.election.enable=false
group.initial.rebalance.delay.ms=0
offsets.topic.replication.factor=3
offsets.topic.num.partitions=3
transaction.state.log.replication.factor=3
transaction.state.log.min.isr=2
transaction.state.log.num.partitions=3
share.coordinator.state.topic.replication.factor=3
share.coordinator.state.topic.min.isr=2
# As the single broker: retention runs every second.
log.retention.check.interval.ms=1000
EOF
    kafka_log4j2 "edr-local-kafka-$n" >"$d/log4j2.properties"
}

# The controller quorum's leader as the live nodes see it: each voter
# keeps its election state in data/__cluster_metadata-0/quorum-state.
# Prints the leader's node id when a majority of the voters name the same
# live leader in the same epoch.
cluster_quorum_leader() {
    local n f st best="" agree=0 want=$((CLUSTER_NODES / 2 + 1))
    local -A votes=()
    for ((n = 1; n <= CLUSTER_NODES; n++)); do
        node_alive "$n" >/dev/null || continue
        f="$CLUSTER_DIR/node$n/data/__cluster_metadata-0/quorum-state"
        [[ -s "$f" ]] || continue
        st="$(grep -o '"leaderId":-\{0,1\}[0-9]*,"leaderEpoch":[0-9]*' "$f" |
            tr -dc '0-9,-')" || continue
        [[ "${st%%,*}" =~ ^[0-9]+$ ]] || continue
        votes[$st]=$((${votes[$st]:-0} + 1))
    done
    for st in "${!votes[@]}"; do
        if ((votes[$st] > agree)); then
            agree=${votes[$st]}
            best="$st"
        fi
    done
    ((agree >= want)) || return 1
    node_alive "${best%%,*}" >/dev/null || return 1
    echo "${best%%,*}"
}

# Metadata with every node registered and every partition of every topic
# led, with its whole replica set in sync. CLUSTER_NOT_READY says why not.
CLUSTER_NOT_READY=""
cluster_ready() {
    local md
    if ! cluster_quorum_leader >/dev/null; then
        CLUSTER_NOT_READY="no controller quorum leader"
        return 1
    fi
    # Each broker on its own: after a quorum loss a surviving broker still
    # serves the old metadata (all brokers, full ISRs); a restarted one
    # answers only once it has caught up and is unfenced.
    local n
    for ((n = 1; n <= CLUSTER_NODES; n++)); do
        if ! md="$(kcat -L -b "127.0.0.1:$(cluster_port "$n")" -m 5 2>/dev/null)"; then
            CLUSTER_NOT_READY="no metadata answer from node $n"
            return 1
        fi
        cluster_md_ok "$md" || {
            CLUSTER_NOT_READY="node $n: $CLUSTER_NOT_READY"
            return 1
        }
    done
}

# cluster_md_ok METADATA: kcat -L output with every node and full ISRs.
cluster_md_ok() {
    local md="$1"
    CLUSTER_NOT_READY="$(awk -v want="$CLUSTER_NODES" '
        /^ [0-9]+ brokers:/ { brokers = $1 }
        /^    partition / {
            parts++
            n = split($0, a, /, /)
            leader = a[2]; sub(/leader /, "", leader)
            rep = a[3]; sub(/replicas: /, "", rep)
            isr = a[4]; sub(/isrs: /, "", isr)
            if (leader == "-1") { noleader++; next }
            if (split(isr, s, ",") < split(rep, r, ",")) short++
        }
        END {
            if (brokers != want) printf "%d of %d brokers registered", brokers, want
            else if (noleader) printf "%d of %d partitions without a leader", noleader, parts
            else if (short) printf "%d of %d partitions with a short ISR", short, parts
        }' <<<"$md")"
    [[ -z "$CLUSTER_NOT_READY" ]]
}

cluster_start_node() {
    local n="$1" d="$CLUSTER_DIR/node$1" i pid
    rm -f "$d/kafka.pid"
    # The JVM inherits no descriptor above 2: a lock the caller holds
    # (flock /tmp/edr-cluster.lock ...) must not outlive the caller.
    setsid bash -c 'for fd in /proc/$$/fd/*; do fd=${fd##*/}
        ((fd > 2)) && eval "exec $fd>&-"; done 2>/dev/null
        echo $$ >"$1"; shift; exec "$@"' _ "$d/kafka.pid" \
        java $CLUSTER_HEAP -XX:+UseG1GC -XX:MaxGCPauseMillis=20 \
        -Djava.awt.headless=true -Dkafka.logs.dir="$d/logs" \
        -Dlog4j2.configurationFile="$d/log4j2.properties" \
        -cp "$KAFKA_LIBS/*" kafka.Kafka "$d/server.properties" \
        </dev/null >>"$d/logs/stdout.log" 2>&1 9>&- &
    for ((i = 0; i < 50; i++)); do
        [[ -s "$d/kafka.pid" ]] && break
        sleep 0.1
    done
    pid="$(cat "$d/kafka.pid" 2>/dev/null || true)"
    log "kafka node $n: started pid ${pid:-?} on 127.0.0.1:$(cluster_port "$n")"
}

cluster_up() {
    local n d t0 id started=0 cold=""
    t0="$(now)"
    command -v java >/dev/null || die "kafka: java not found (run scripts/install-deps.sh)"
    command -v kcat >/dev/null || die "kafka: kcat not found (run scripts/install-deps.sh)"
    kafka_fetch_jars
    mkdir -p "$CLUSTER_DIR"
    [[ -s "$CLUSTER_DIR/cluster.id" ]] ||
        head -c 16 /dev/urandom | base64 | tr '+/' '-_' | tr -d '=' >"$CLUSTER_DIR/cluster.id"
    id="$(cat "$CLUSTER_DIR/cluster.id")"
    for ((n = 1; n <= CLUSTER_NODES; n++)); do
        d="$CLUSTER_DIR/node$n"
        node_alive "$n" >/dev/null && continue
        if port_open "$(cluster_port "$n")" || port_open "$(cluster_cport "$n")"; then
            die "kafka node $n: port $(cluster_port "$n") or $(cluster_cport "$n")" \
                "is taken by a process this script did not start"
        fi
        cluster_write_config "$n"
        if [[ ! -f "$d/data/meta.properties" ]]; then
            kafka_java kafka.tools.StorageTool format -t "$id" \
                -c "$d/server.properties" >"$d/logs/format.log" 2>&1 ||
                die "kafka node $n: storage format failed, see $d/logs/format.log"
            cold=" (first start)"
        fi
        cluster_start_node "$n"
        started=$((started + 1))
    done
    ((started > 0)) || log "kafka cluster: all $CLUSTER_NODES nodes already running"
    local deadline=$((SECONDS + KAFKA_TIMEOUT))
    until cluster_ready; do
        for ((n = 1; n <= CLUSTER_NODES; n++)); do
            node_alive "$n" >/dev/null ||
                die "kafka node $n is not running (exited during start-up?)," \
                    "see $CLUSTER_DIR/node$n/logs"
        done
        ((SECONDS < deadline)) ||
            die "kafka cluster: not ready after ${KAFKA_TIMEOUT} s ($CLUSTER_NOT_READY)," \
                "see $CLUSTER_DIR/node*/logs/server.log"
        sleep 0.3
    done
    log "kafka cluster: ready in $(elapsed "$t0") s$cold, controller quorum" \
        "leader node $(cluster_quorum_leader), brokers $(cluster_brokers)"
}

cluster_down() {
    local n pids=() pid i alive
    for ((n = 1; n <= CLUSTER_NODES; n++)); do
        if pid="$(node_alive "$n")"; then
            kill -CONT "$pid" 2>/dev/null || true # a node a test left frozen
            kill -TERM "$pid" 2>/dev/null || true
            pids+=("$pid")
        fi
    done
    # All at once: the last node's controlled shutdown would otherwise
    # wait for a quorum that the earlier ones took away.
    for ((i = 0; i < 300; i++)); do
        alive=0
        for pid in "${pids[@]}"; do [[ -d "/proc/$pid" ]] && alive=1; done
        ((alive)) || break
        sleep 0.1
    done
    for pid in "${pids[@]}"; do
        if [[ -d "/proc/$pid" ]]; then
            log "kafka cluster: pid $pid ignored SIGTERM for 30 s, sending SIGKILL"
            kill -KILL "$pid" 2>/dev/null || true
        fi
    done
    rm -f "$CLUSTER_DIR"/node*/kafka.pid
    log "kafka cluster: stopped (${#pids[@]} nodes were running)"
}

# One status line per node; 1 when a node is down or the cluster not ready.
cluster_status() {
    local n pid bad=0 leader
    leader="$(cluster_quorum_leader || true)"
    for ((n = 1; n <= CLUSTER_NODES; n++)); do
        if pid="$(node_alive "$n")"; then
            status_line "kafka-$n" "127.0.0.1:$(cluster_port "$n")" running \
                "pid $pid${leader:+, quorum leader node $leader}, log $CLUSTER_DIR/node$n/logs/server.log"
        else
            bad=1
            status_line "kafka-$n" "127.0.0.1:$(cluster_port "$n")" stopped \
                "log $CLUSTER_DIR/node$n/logs/server.log"
        fi
    done
    if ((!bad)) && ! cluster_ready; then
        status_line cluster "$(cluster_port 1)-$(cluster_port "$CLUSTER_NODES")" \
            starting "$CLUSTER_NOT_READY"
        bad=1
    fi
    return "$bad"
}

cluster_running() {
    local n
    for ((n = 1; n <= CLUSTER_NODES; n++)); do
        node_alive "$n" >/dev/null && return 0
    done
    return 1
}

# ---------------------------------------------------------------- Redis

redis_ready() {
    [[ "$(redis-cli -h 127.0.0.1 -p "$REDIS_PORT" ping 2>/dev/null)" == PONG ]]
}

redis_up() {
    local pid
    if pid="$(pid_alive "$REDIS_PID" "redis-server")"; then
        log "redis: already running (pid $pid)"
    else
        port_open "$REDIS_PORT" &&
            die "redis: port $REDIS_PORT is taken by a process this script did not start"
        command -v redis-server >/dev/null ||
            die "redis: redis-server not found (run scripts/install-deps.sh)"
        mkdir -p "$REDIS_DIR"
        rm -f "$REDIS_PID"
        redis-server --bind 127.0.0.1 --port "$REDIS_PORT" --daemonize yes \
            --pidfile "$REDIS_PID" --dir "$REDIS_DIR" --logfile "$REDIS_LOG" \
            --save "" --appendonly no --protected-mode yes --maxclients 4000 9>&- ||
            die "redis: redis-server failed to start, see $REDIS_LOG"
        log "redis: started"
    fi
    wait_until "$REDIS_TIMEOUT" 0.1 \
        "redis: no PONG on 127.0.0.1:$REDIS_PORT after ${REDIS_TIMEOUT} s, see $REDIS_LOG" \
        redis_ready
}

# ---------------------------------------------------------------- PostgreSQL

pg_bin() {
    if [[ -n "${EDR_PG_BIN:-}" ]]; then
        echo "$EDR_PG_BIN"
    elif [[ -x /usr/lib/postgresql/15/bin/postgres ]]; then
        echo /usr/lib/postgresql/15/bin
    else
        # Another Debian release: the newest installed major version.
        ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -n 1
    fi
}

# PostgreSQL refuses to run as root: as root its files belong to the
# "postgres" system user and its commands run through runuser.
PG_OS_USER=""
if [[ "$(id -u)" == 0 ]]; then
    PG_OS_USER=postgres
fi
as_pg() {
    if [[ -n "$PG_OS_USER" ]]; then
        (cd / && runuser -u "$PG_OS_USER" -- "$@") # cwd may be closed to it
    else
        "$@"
    fi
}

# The cluster lives in .local/pg unless the postgres user cannot reach it
# (a checkout under a 0700 home) or the socket path would be too long for
# a unix socket; then in a folder of /tmp named after this checkout.
pg_dir() {
    local dir="$LOCAL/pg"
    if [[ -n "$PG_OS_USER" ]] && ! (cd / && runuser -u "$PG_OS_USER" -- test -x "$ROOT"); then
        dir=""
    fi
    if ((${#dir} == 0 || ${#dir} > 80)); then
        dir="/tmp/edr-worker-pg-$(printf '%s' "$ROOT" | cksum | cut -d' ' -f1)"
    fi
    echo "$dir"
}

PG_DIR="$(pg_dir)"
PG_DATA="$PG_DIR/data"
PG_SOCK="$PG_DIR/run"
PG_LOG="$PG_DIR/postgres.log"

pg_dsn() {
    echo "postgresql://$PG_USER:$PG_PASSWORD@127.0.0.1:$PG_PORT/$PG_DB"
}

pg_ready() {
    PGCONNECT_TIMEOUT=3 psql "$(pg_dsn)" -XAtq -c 'SELECT 1' 2>/dev/null | grep -qx 1
}

pg_up() {
    local bin
    bin="$(pg_bin)"
    [[ -n "$bin" && -x "$bin/postgres" ]] ||
        die "postgres: no server binaries under /usr/lib/postgresql (run scripts/install-deps.sh)"
    if [[ -f "$PG_DATA/postmaster.pid" ]] &&
        as_pg "$bin/pg_ctl" status -D "$PG_DATA" >/dev/null 2>&1; then
        log "postgres: already running (pid $(head -n 1 "$PG_DATA/postmaster.pid"))"
    else
        port_open "$PG_PORT" &&
            die "postgres: port $PG_PORT is taken by a process this script did not start"
        mkdir -p "$PG_DIR"
        [[ -n "$PG_OS_USER" ]] && chown "$PG_OS_USER:" "$PG_DIR"
        chmod 0700 "$PG_DIR"
        if [[ ! -f "$PG_DATA/PG_VERSION" ]]; then
            rm -rf "$PG_DATA"
            local pwfile
            pwfile="$(mktemp)"
            printf '%s\n' "$PG_PASSWORD" >"$pwfile"
            [[ -n "$PG_OS_USER" ]] && chown "$PG_OS_USER:" "$pwfile"
            # Socket: peer (the OS user postgres administers it);
            # TCP: scram-sha-256, so the DSN carries a password.
            if ! as_pg "$bin/initdb" -D "$PG_DATA" -U postgres --pwfile="$pwfile" \
                --auth-local=peer --auth-host=scram-sha-256 -E UTF8 \
                --locale=C >"$PG_DIR/initdb.log" 2>&1; then
                rm -f "$pwfile"
                die "postgres: initdb failed, see $PG_DIR/initdb.log"
            fi
            rm -f "$pwfile"
            as_pg tee -a "$PG_DATA/postgresql.conf" >/dev/null <<EOF

# --- scripts/services.sh: local test cluster ---
listen_addresses = '127.0.0.1'
port = $PG_PORT
unix_socket_directories = '$PG_SOCK'
max_connections = 200
EOF
            log "postgres: initialised $PG_DATA"
        fi
        as_pg mkdir -p "$PG_SOCK"
        # The port on the command line wins over postgresql.conf.
        if ! as_pg "$bin/pg_ctl" start -D "$PG_DATA" -l "$PG_LOG" -w \
            -o "-p $PG_PORT" \
            -t "$PG_TIMEOUT" >/dev/null 2>&1 9>&-; then
            die "postgres: pg_ctl start failed, see $PG_LOG"
        fi
        log "postgres: started"
    fi
    # Role and database, created once over the socket as the superuser.
    local sql="$bin/psql"
    [[ -x "$sql" ]] || sql=psql
    if ! as_pg "$sql" -XAtq -h "$PG_SOCK" -p "$PG_PORT" -U postgres -d postgres \
        -c "SELECT 1 FROM pg_roles WHERE rolname = '$PG_USER'" 2>/dev/null | grep -qx 1; then
        as_pg "$sql" -Xq -h "$PG_SOCK" -p "$PG_PORT" -U postgres -d postgres \
            -v ON_ERROR_STOP=1 \
            -c "CREATE ROLE $PG_USER LOGIN PASSWORD '$PG_PASSWORD'" \
            -c "CREATE DATABASE $PG_DB OWNER $PG_USER" >>"$PG_LOG" 2>&1 ||
            die "postgres: creating role/database $PG_USER failed, see $PG_LOG"
        log "postgres: created role and database $PG_USER"
    fi
    wait_until "$PG_TIMEOUT" 0.2 \
        "postgres: no answer to SELECT 1 on 127.0.0.1:$PG_PORT after ${PG_TIMEOUT} s, see $PG_LOG" \
        pg_ready
}

pg_down() {
    local bin
    bin="$(pg_bin)"
    if [[ -f "$PG_DATA/postmaster.pid" ]] &&
        as_pg "$bin/pg_ctl" status -D "$PG_DATA" >/dev/null 2>&1; then
        as_pg "$bin/pg_ctl" stop -D "$PG_DATA" -m fast -w -t 60 >/dev/null ||
            die "postgres: pg_ctl stop failed, see $PG_LOG"
        log "postgres: stopped"
    else
        log "postgres: not running"
    fi
}

# ---------------------------------------------------------------- commands

CLUSTER="${EDR_LOCAL_CLUSTER:-0}"
[[ "$CLUSTER" == 1 ]] || CLUSTER=0

# With --cluster, "up" starts only the cluster when Redis and PostgreSQL
# already answer (another checkout's stack, say), else the whole stack.
cmd_up() {
    local t0
    t0="$(now)"
    if ((CLUSTER)); then
        redis_ready || redis_up
        pg_ready || pg_up
        cluster_up
    else
        redis_up
        pg_up
        kafka_up
    fi
    log "all up in $(elapsed "$t0") s"
    cmd_status
}

# "down --cluster" stops only the cluster.
cmd_down() {
    if ((CLUSTER)); then
        cluster_down
        return 0
    fi
    stop_pid kafka "$KAFKA_PID" "$KAFKA_DIR/server.properties"
    stop_pid redis "$REDIS_PID" "redis-server"
    pg_down
}

status_line() {
    printf '%-9s %-22s %-8s %s\n' "$@"
}

cmd_status() {
    local pid state bad=0
    status_line service address state detail
    if ((CLUSTER)); then
        cluster_status || bad=1
    elif pid="$(pid_alive "$KAFKA_PID" "$KAFKA_DIR/server.properties")"; then
        kafka_ready && state=ready || { state=starting; bad=1; }
        status_line kafka "127.0.0.1:$KAFKA_PORT" "$state" "pid $pid, log $KAFKA_LOG"
    else
        bad=1
        status_line kafka "127.0.0.1:$KAFKA_PORT" stopped "log $KAFKA_LOG"
    fi
    if pid="$(pid_alive "$REDIS_PID" "redis-server")"; then
        redis_ready && state=ready || { state=starting; bad=1; }
        status_line redis "127.0.0.1:$REDIS_PORT" "$state" "pid $pid, log $REDIS_LOG"
    elif ((CLUSTER)) && redis_ready; then
        status_line redis "127.0.0.1:$REDIS_PORT" ready "not started from this checkout"
    else
        bad=1
        status_line redis "127.0.0.1:$REDIS_PORT" stopped "log $REDIS_LOG"
    fi
    if [[ -f "$PG_DATA/postmaster.pid" ]] &&
        pid="$(head -n 1 "$PG_DATA/postmaster.pid")" && [[ -d "/proc/$pid" ]]; then
        pg_ready && state=ready || { state=starting; bad=1; }
        status_line postgres "127.0.0.1:$PG_PORT" "$state" "pid $pid, log $PG_LOG"
    elif ((CLUSTER)) && pg_ready; then
        status_line postgres "127.0.0.1:$PG_PORT" ready "not started from this checkout"
    else
        bad=1
        status_line postgres "127.0.0.1:$PG_PORT" stopped "log $PG_LOG"
    fi
    if ((!CLUSTER)) && cluster_running; then
        cluster_status || true # informational: the stack is the single broker
    fi
    return "$bad"
}

cmd_env() {
    local brokers="127.0.0.1:$KAFKA_PORT"
    ((CLUSTER)) && brokers="$(cluster_brokers)"
    ((CLUSTER)) && echo "export EDR_KAFKA_CLUSTER_DIR=$CLUSTER_DIR"
    cat <<EOF
export EDR_KAFKA_BROKERS=$brokers
export EDR_REDIS_URL=redis://127.0.0.1:$REDIS_PORT/0
export EDR_PG_DSN=$(pg_dsn)
export EDR_PG_BIN=$(pg_bin)
export EDR_PG_OS_USER=$PG_OS_USER
export EDR_KAFKA_LIBS=$KAFKA_LIBS
export EDR_LOCAL_DIR=$LOCAL
EOF
}

usage() {
    sed -n '2,/^set -euo/p' "${BASH_SOURCE[0]}" | sed '$d; s/^# \{0,1\}//' >&2
    exit 2
}

main() {
    if [[ $# -eq 2 && "$2" == --cluster ]]; then
        CLUSTER=1
    elif [[ $# -ne 1 ]]; then
        usage
    fi
    case "$1" in
    up | down)
        mkdir -p "$LOCAL"
        # One up/down at a time: several scripts may share this checkout.
        exec 9>"$LOCAL/services.lock"
        flock -w 300 9 || die "another services.sh holds $LOCAL/services.lock"
        "cmd_$1"
        ;;
    status) cmd_status ;;
    env) cmd_env ;;
    *) usage ;;
    esac
}

main "$@"

#!/usr/bin/env bash
# 66-deploy.sh: CI step for the Helm chart, the alert rules and the
# dashboard (the tools come from deploy/tools.sh, cached in .local/tools):
#   1. helm lint of charts/edr-worker (--strict), with defaults and per store mode;
#   2. helm template for each store mode (memory, file, postgres) with every
#      optional object on, and with defaults, validated offline by kubeconform
#      -strict against Kubernetes' own schemas; the chart README's values
#      table lists every key of values.yaml; planted faults must be caught;
#   3. promtool check rules and promtool test rules on deploy/prometheus;
#   4. every metric the dashboard and the rules query is exported by a live
#      worker: the /metrics scrape that 65-containers.sh saved from the
#      image ($EDR_CONTAINERS_CACHE/live-metrics.txt), else one taken here
#      from a worker of $EDR_BUILD_DIR on the local stack.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
cd "$ROOT"
CHART=charts/edr-worker
PY=/usr/bin/python3

t0=$SECONDS
eval "$(deploy/tools.sh)"
echo "66-deploy: tools ready in $((SECONDS - t0)) s (helm $("$HELM" version --short 2>/dev/null || true), $("$PROMTOOL" --version 2>&1 | head -n 1))"

tmp="$(mktemp -d)"
WORKER_PID=
cleanup() {
    [[ -z "$WORKER_PID" ]] || { kill -TERM "$WORKER_PID" 2>/dev/null; wait "$WORKER_PID" 2>/dev/null || true; }
    rm -rf "$tmp"
}
trap cleanup EXIT

validate() { # validate FILE: kubeconform -strict against the offline schemas
    "$KUBECONFORM" -strict -summary -schema-location \
        "$K8S_SCHEMAS/{{ .ResourceKind }}{{ .KindSuffix }}.json" "$1"
}

# ---- 1 + 2: the chart
"$HELM" lint --strict "$CHART"
ALL_ON=(--set serviceMonitor.enabled=true --set networkPolicy.enabled=true
    --set ingress.enabled=true --set callbacks.enabled=true
    --set callbacks.authCode=example-code --set kafka.properties.security\\.protocol=PLAINTEXT)
"$HELM" template edr "$CHART" >"$tmp/defaults.yaml"
validate "$tmp/defaults.yaml"
for mode in memory file postgres; do
    extra=(--set "store.mode=$mode")
    [[ "$mode" == postgres ]] && extra+=(--set store.postgres.dsn=postgresql://edr@pg:5432/edr)
    "$HELM" lint --strict "$CHART" "${extra[@]}" >/dev/null
    "$HELM" template edr "$CHART" "${extra[@]}" "${ALL_ON[@]}" >"$tmp/$mode.yaml"
    validate "$tmp/$mode.yaml"
done
"$PY" - "$tmp" <<'PYEOF'
# What each store mode must render (beyond schema validity).
import sys, yaml
tmp = sys.argv[1]
def docs(mode):
    return [d for d in yaml.safe_load_all(open(f"{tmp}/{mode}.yaml")) if d]
def kinds(mode):
    return {d["kind"] for d in docs(mode)}
def workload(mode):
    return next(d for d in docs(mode) if d["kind"] in ("Deployment", "StatefulSet"))
bad = []
for mode, kind in (("memory", "Deployment"), ("postgres", "Deployment"), ("file", "StatefulSet")):
    w = workload(mode)
    if w["kind"] != kind:
        bad.append(f"{mode}: workload is {w['kind']}, not {kind}")
    c = w["spec"]["template"]["spec"]["containers"][0]
    env = {e["name"]: e for e in c["env"]}
    if env["EDR_STORE"]["value"] != mode:
        bad.append(f"{mode}: EDR_STORE is {env['EDR_STORE']}")
    sc = c["securityContext"]
    if not (sc["readOnlyRootFilesystem"] and sc["runAsNonRoot"] and not sc["allowPrivilegeEscalation"]
            and sc["capabilities"]["drop"] == ["ALL"]):
        bad.append(f"{mode}: securityContext {sc}")
    if c["livenessProbe"]["httpGet"]["path"] != "/healthz" or c["readinessProbe"]["httpGet"]["path"] != "/readyz":
        bad.append(f"{mode}: probes")
    if not c["resources"].get("limits") or not c["resources"].get("requests"):
        bad.append(f"{mode}: resources")
    for secret_var in ("EDR_REDIS_URL", "EDR_CALLBACK_AUTH_CODE") + (("EDR_PG_DSN",) if mode == "postgres" else ()):
        if "secretKeyRef" not in env.get(secret_var, {}).get("valueFrom", {}):
            bad.append(f"{mode}: {secret_var} not from a Secret")
    for k in ("PodDisruptionBudget", "Service", "ServiceMonitor", "NetworkPolicy", "Secret", "Ingress"):
        if k not in kinds(mode):
            bad.append(f"{mode}: no {k}")
if "volumeClaimTemplates" not in workload("file")["spec"]:
    bad.append("file: no PersistentVolumeClaim template")
defaults = [d for d in yaml.safe_load_all(open(f"{tmp}/defaults.yaml")) if d]
if any(d["kind"] in ("Ingress", "ServiceMonitor", "NetworkPolicy") for d in defaults):
    bad.append("defaults: an optional object (ingress, ServiceMonitor, NetworkPolicy) is on")
for b in bad:
    print("66-deploy: chart:", b)
sys.exit(1 if bad else 0)
PYEOF
echo "66-deploy: chart renders per store mode (Deployment/StatefulSet+PVC), hardening, probes, secrets"

# The README's values table names every leaf key of values.yaml.
"$PY" - "$CHART" <<'PYEOF'
import sys, yaml
chart = sys.argv[1]
values = yaml.safe_load(open(f"{chart}/values.yaml"))
readme = open(f"{chart}/README.md").read()
def leaves(d, pre=""):
    for k, v in d.items():
        if isinstance(v, dict) and v:
            yield from leaves(v, f"{pre}{k}.")
        else:
            yield f"{pre}{k}"
missing = [k for k in leaves(values) if f"| {k} |" not in readme]
for k in missing:
    print(f"66-deploy: {chart}/README.md: values table lacks {k}")
sys.exit(1 if missing else 0)
PYEOF
echo "66-deploy: README values table complete"

# The checks must be able to fail.
expect_fail() { # expect_fail NAME CMD...: CMD must fail
    if "$@" >"$tmp/out" 2>&1; then
        echo "66-deploy: planted fault '$1' not detected" >&2
        exit 1
    fi
}
sed 's/^  replicas: /  replicass: /' "$tmp/memory.yaml" >"$tmp/bad-field.yaml"
expect_fail misspelt-field validate "$tmp/bad-field.yaml"
sed 's/readOnlyRootFilesystem: true/readOnlyRootFilesystem: "yes"/' "$tmp/memory.yaml" >"$tmp/bad-type.yaml"
expect_fail wrong-type validate "$tmp/bad-type.yaml"
expect_fail postgres-without-dsn "$HELM" template edr "$CHART" --set store.mode=postgres
expect_fail unknown-store "$HELM" template edr "$CHART" --set store.mode=redis
echo "66-deploy: planted chart faults detected (4 cases)"

# ---- 3: the rules
"$PROMTOOL" check rules deploy/prometheus/edr-worker-rules.yml
(cd deploy/prometheus && "$PROMTOOL" test rules edr-worker-rules.test.yml)
sed 's/severity: critical/severity: page/' deploy/prometheus/edr-worker-rules.yml >"$tmp/edr-worker-rules.yml"
cp deploy/prometheus/edr-worker-rules.test.yml "$tmp/"
expect_fail changed-rule bash -c 'cd "$1" && "$2" test rules edr-worker-rules.test.yml' _ "$tmp" "$PROMTOOL"
echo "66-deploy: rule tests catch a changed rule"

# ---- 4: dashboard and rules against a live /metrics
live="${EDR_CONTAINERS_CACHE:-$ROOT/.local/containers}/live-metrics.txt"
if [[ -s "$live" && "$(find "$live" -mmin -120 2>/dev/null)" ]]; then
    echo "66-deploy: live /metrics from the image's smoke test ($live)"
else
    build="${EDR_BUILD_DIR:-$ROOT/build}"
    [[ -x "$build/edr-worker" ]] || { echo "66-deploy: no live metrics and no $build/edr-worker" >&2; exit 1; }
    [[ -n "${EDR_KAFKA_BROKERS:-}" ]] || eval "$(scripts/services.sh env)"
    addr=127.0.0.1:19469
    id="edr-deploy-$(date +%s)-$$"
    EDR_STORE=memory EDR_HTTP_ADDR=$addr EDR_TOPIC="$id" EDR_DLQ_TOPIC="$id.dlq" \
        EDR_RPC_PREFIX="$id" "$build/edr-worker" >"$tmp/worker.log" 2>&1 &
    WORKER_PID=$!
    for _ in $(seq 1 150); do
        curl -sf -o "$tmp/live.txt" --max-time 1 "http://$addr/metrics" && break
        sleep 0.2
    done
    live="$tmp/live.txt"
    [[ -s "$live" ]] || { cat "$tmp/worker.log" >&2; echo "66-deploy: no /metrics from $build/edr-worker" >&2; exit 1; }
    echo "66-deploy: live /metrics from $build/edr-worker on $addr"
fi
"$PY" deploy/check-metrics.py --metrics "$live" \
    --dashboard deploy/grafana/edr-worker-dashboard.json --rules deploy/prometheus/edr-worker-rules.yml
sed 's/edr_store_entries/edr_store_entrys/' deploy/grafana/edr-worker-dashboard.json >"$tmp/bad-dash.json"
expect_fail unknown-metric "$PY" deploy/check-metrics.py --metrics "$live" --dashboard "$tmp/bad-dash.json"
echo "66-deploy: a dashboard query of an unknown metric is caught"
echo "66-deploy: OK in $((SECONDS - t0)) s"

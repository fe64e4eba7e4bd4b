#!/usr/bin/env bash
# tools.sh: the deployment checks' tools, built from the Go module proxy into
# a cache ($EDR_TOOLS_DIR, default .local/tools) so a second run only looks:
#   helm         helm.sh/helm/v4/cmd/helm
#   kubeconform  github.com/yannh/kubeconform/cmd/kubeconform
#   promtool     github.com/prometheus/prometheus/cmd/promtool (a big build)
#   k8s-schemas  JSON schemas of every Kubernetes kind, made offline by
#                deploy/kubernetes/openapi2jsonschema.py from the
#                api/openapi-spec/swagger.json of the module k8s.io/kubernetes,
#                plus the Prometheus Operator's ServiceMonitor CRD (from the
#                module github.com/prometheus-operator/prometheus-operator)
#
# usage: deploy/tools.sh [NAME...]     (default: all; prints KEY=PATH lines)
# Needs Go (the machine's /usr/local/go or golang-go) and network access to
# the Go module proxy the first time only. Versions are pinned below.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
TOOLS="${EDR_TOOLS_DIR:-$ROOT/.local/tools}"
HELM_VERSION=v4.3.2
KUBECONFORM_VERSION=v0.8.0
PROMETHEUS_VERSION=v0.316.0 # Go module version of Prometheus 3.x' promtool
KUBERNETES_VERSION=v1.34.2  # the API whose schemas the chart must satisfy
PROM_OPERATOR_VERSION=v0.85.0

log() { printf 'tools: %s\n' "$*" >&2; }
die() {
    printf 'tools: ERROR: %s\n' "$*" >&2
    exit 1
}

GO="$(command -v go || true)"
[[ -n "$GO" ]] || { [[ -x /usr/local/go/bin/go ]] && GO=/usr/local/go/bin/go; }
need_go() { [[ -n "$GO" ]] || die "no Go toolchain (apt-get install golang-go)"; }

# go_tool NAME PACKAGE VERSION: $TOOLS/NAME-VERSION, built once.
go_tool() {
    local name="$1" pkg="$2" ver="$3" out="$TOOLS/bin/$1-$3" t0
    if [[ ! -x "$out" ]]; then
        need_go
        mkdir -p "$TOOLS/bin"
        t0=$SECONDS
        log "building $name $ver from the Go module proxy (once; cached in $TOOLS)"
        rm -rf "$TOOLS/gobin.tmp"
        GOBIN="$TOOLS/gobin.tmp" GOFLAGS=-trimpath timeout 1500 \
            "$GO" install "$pkg@$ver" >"$TOOLS/$name.log" 2>&1 ||
            { tail -n 5 "$TOOLS/$name.log" >&2; die "go install $pkg@$ver failed"; }
        mv "$TOOLS/gobin.tmp/$name" "$out"
        rm -rf "$TOOLS/gobin.tmp"
        log "$name built in $((SECONDS - t0)) s"
    fi
    echo "${name^^}=$out"
}

# mod_dir MODULE VERSION: the module's source in Go's module cache.
mod_dir() {
    need_go
    "$GO" mod download -json "$1@$2" | sed -n 's/^\t"Dir": "\(.*\)",$/\1/p'
}

k8s_schemas() {
    local out="$TOOLS/k8s-schemas-$KUBERNETES_VERSION" k8s op t0
    if [[ ! -f "$out/.complete" ]]; then
        t0=$SECONDS
        log "making Kubernetes $KUBERNETES_VERSION JSON schemas (once; cached in $TOOLS)"
        k8s="$(cd /tmp && mod_dir k8s.io/kubernetes "$KUBERNETES_VERSION")"
        op="$(cd /tmp && mod_dir github.com/prometheus-operator/prometheus-operator "$PROM_OPERATOR_VERSION")"
        [[ -f "$k8s/api/openapi-spec/swagger.json" ]] || die "no swagger.json in $k8s"
        rm -rf "$out"
        /usr/bin/python3 "$ROOT/deploy/kubernetes/openapi2jsonschema.py" \
            "$k8s/api/openapi-spec/swagger.json" "$out" \
            "$op/example/prometheus-operator-crd/monitoring.coreos.com_servicemonitors.yaml" >&2
        touch "$out/.complete"
        log "schemas made in $((SECONDS - t0)) s"
    fi
    echo "K8S_SCHEMAS=$out"
}

main() {
    local names=("$@")
    ((${#names[@]})) || names=(helm kubeconform promtool k8s-schemas)
    local n
    for n in "${names[@]}"; do
        case "$n" in
        helm) go_tool helm helm.sh/helm/v4/cmd/helm "$HELM_VERSION" ;;
        kubeconform) go_tool kubeconform github.com/yannh/kubeconform/cmd/kubeconform \
            "$KUBECONFORM_VERSION" ;;
        promtool) go_tool promtool github.com/prometheus/prometheus/cmd/promtool \
            "$PROMETHEUS_VERSION" ;;
        k8s-schemas) k8s_schemas ;;
        *) die "unknown tool $n" ;;
        esac
    done
}

main "$@"

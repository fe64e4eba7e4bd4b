#!/usr/bin/env bash
# 65-containers.sh: CI step for the container image, built and run for real
# (scripts/containers.sh): a private dockerd (vfs, under .local/docker),
# the base images debootstrapped once (cached in .local/containers), the
# image built from the Dockerfile, the smoke test against the local stack
# (already up and exported by scripts/test.sh), docker-compose.yml's workers
# with this machine's override, then the engine stopped again when this
# step started it. Cold (no cache): the base and every image layer are made;
# warm: base imported from the cache, layers reused.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
cd "$ROOT"
[[ -n "${EDR_KAFKA_BROKERS:-}" ]] || eval "$(scripts/services.sh env)"

started=0
scripts/containers.sh status >/dev/null 2>&1 || started=1
stop_engine() {
    if ((started)); then scripts/containers.sh down || true; fi
}
trap stop_engine EXIT

rc=0
for c in up build smoke compose; do
    t0=$SECONDS
    if scripts/containers.sh "$c"; then
        echo "65-containers: $c passed in $((SECONDS - t0)) s"
    else
        echo "65-containers: $c FAILED after $((SECONDS - t0)) s"
        rc=1
        # Nothing to smoke without an engine or an image.
        [[ "$c" == up || "$c" == build ]] && break
    fi
done
exit "$rc"

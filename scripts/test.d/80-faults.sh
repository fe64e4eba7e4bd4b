#!/usr/bin/env bash
# 80-faults.sh: the short seeded crash-and-outage suite (tests/fault/,
# issue 9): SIGKILLs x20 per store, kills mid-compaction and mid-append,
# PostgreSQL (own instance, 15447) down 2 x 10 s, Redis (own, 16395) down
# during a lookup load, the Kafka broker (own, 19096) down during ingest, a
# full disk, a consumer group losing and gaining a worker, a state gap
# restored from the changelog and a frozen changelog writer
# (tests/fault/recovery.py). About 5 to 6 minutes.
# EDR_FAULT_SEED=n replays a run; the long version is
# `tests/fault/run.sh --long` (see tests/fault/README.md).
# Needs: the stack up and edr-worker-test built in $EDR_BUILD_DIR (build/).
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
exec "$ROOT/tests/fault/run.sh" --ci ${EDR_FAULT_SEED:+--seed "$EDR_FAULT_SEED"}

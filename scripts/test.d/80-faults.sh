#!/usr/bin/env bash
# 80-faults.sh: the short seeded crash-and-outage suite (tests/fault/,
# issue 9): SIGKILLs x20 per store, kills mid-compaction and mid-append,
# PostgreSQL (own instance, 15447) down 2 x 10 s, Redis (own, 16395) down
# during a lookup load, the Kafka broker (own, 19096) down during ingest, a
# full disk, a consumer group losing and gaining a worker, a state gap
# restored from the changelog and a frozen changelog writer
# (tests/fault/recovery.py). About 5 to 6 minutes.
# Then a 3-minute soak (issue 19, tests/fault/soak.py): a memory and a
# postgres worker under a steady load with two seeded faults, RSS, fds,
# threads and lag sampled, the model checked at quiet points.
# EDR_FAULT_SEED=n replays a run; the long versions are
# `tests/fault/run.sh --long` and `tests/fault/run.sh --soak 60` (see
# tests/fault/README.md).
# Needs: the stack up and edr-worker-test built in $EDR_BUILD_DIR (build/).
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
rc=0
"$ROOT/tests/fault/run.sh" --ci ${EDR_FAULT_SEED:+--seed "$EDR_FAULT_SEED"} || rc=1
"$ROOT/tests/fault/run.sh" --soak 3 ${EDR_FAULT_SEED:+--seed "$EDR_FAULT_SEED"} || rc=1
exit "$rc"

#!/usr/bin/env bash
# 41-contract.sh: schemas/README.md carries the wire contract word for word.
# Its sections "## 1." up to the first appendix must equal the contract's
# text from "## 1." on (../shared/CONTRACT.md, or EDR_CONTRACT), so the copy
# the code cites can never drift from the one other programs are written to.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
CONTRACT="${EDR_CONTRACT:-$ROOT/../shared/CONTRACT.md}"
if [[ ! -f "$CONTRACT" ]]; then
    echo "41-contract: $CONTRACT not found (set EDR_CONTRACT); nothing to compare" >&2
    exit 1
fi
ours="$(mktemp)"
theirs="$(mktemp)"
trap 'rm -f "$ours" "$theirs"' EXIT
# From the first "## 1." heading up to (not including) "## Appendix".
awk '/^## 1\./ {on = 1} /^## Appendix/ {on = 0} on' "$ROOT/schemas/README.md" |
    sed -e :a -e '/^\n*$/{$d;N;ba' -e '}' >"$ours"
awk '/^## 1\./ {on = 1} on' "$CONTRACT" |
    sed -e :a -e '/^\n*$/{$d;N;ba' -e '}' >"$theirs"
v_ours="$(grep -m1 -o 'version [0-9]*' "$ROOT/schemas/README.md")"
v_theirs="$(grep -m1 -o 'version [0-9]*' "$CONTRACT")"
if [[ "$v_ours" != "$v_theirs" ]]; then
    echo "41-contract: schemas/README.md says '$v_ours', the contract '$v_theirs'" >&2
    exit 1
fi
if ! diff -u "$theirs" "$ours"; then
    echo "41-contract: schemas/README.md §1-§6 differ from $CONTRACT (diff above)" >&2
    exit 1
fi
echo "41-contract: schemas/README.md follows $v_theirs of the contract, §1-§6 identical ($(wc -l <"$ours") lines)"

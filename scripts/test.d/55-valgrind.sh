#!/usr/bin/env bash
# 55-valgrind.sh: every unit test (ctest label "unit"; the fuzz corpus
# replay among them) under valgrind memcheck, in a build without
# sanitizers (EDR_BUILD_DIR, else build-valgrind/). A leak, an invalid
# read or write, or a use of uninitialised memory fails the step.
# Logs: <build>/valgrind/.
# VALGRIND_TESTS (a regex on test names) narrows the set.
set -euo pipefail
cd "$(dirname "$0")/../.."

# Reuse the test command's build (EDR_BUILD_DIR, set by scripts/test.sh)
# unless it has sanitizers, which do not mix with valgrind.
build=${EDR_BUILD_DIR:-build-valgrind}
if [ ! -f "$build/CMakeCache.txt" ] ||
   grep -q '^EDR_SANITIZE:BOOL=ON' "$build/CMakeCache.txt"; then
    build=build-valgrind
fi
mkdir -p "$build"
if [ ! -f "$build/CMakeCache.txt" ]; then
    cmake -S . -B "$build" -DCMAKE_BUILD_TYPE=RelWithDebInfo \
        >"$build/configure.log" 2>&1 || { cat "$build/configure.log"; exit 1; }
fi
cmake --build "$build" -j2 >"$build/build.log" 2>&1 ||
    { tail -n 40 "$build/build.log"; exit 1; }

mkdir -p "$build/valgrind"
logs=$(cd "$build/valgrind" && pwd)
rm -f "$logs"/*.log "$logs"/*.out "$logs"/results.*
# name <TAB> working directory <TAB> command..., from ctest itself.
ctest --test-dir "$build" -L unit --show-only=json-v1 | python3 -c '
import json, re, sys, os
only = re.compile(os.environ.get("VALGRIND_TESTS", ""))
for t in json.load(sys.stdin)["tests"]:
    if not only.search(t["name"]):
        continue
    wd = next((p["value"] for p in t.get("properties", [])
               if p["name"] == "WORKING_DIRECTORY"), ".")
    print("\t".join([t["name"], wd] + t["command"]))
' >"$logs/tests.tsv"

# --fair-sched=yes: valgrind runs one thread at a time, and its default
# lock is unfair enough to starve a writer behind two reader threads for
# minutes (the stores' concurrency tests). Forked children are checked
# by their parents' tests, not for leaks of the parent's heap they copy.
# Valgrind serialises a program's threads on one core, so two tests run
# side by side (VALGRIND_JOBS) to use the machine's two.
run_one() {
    local name=$1 wd=$2
    shift 2
    local log="$logs/$name.log" start
    start=$(date +%s)
    if (cd "$wd" && timeout 300 valgrind --quiet --fair-sched=yes --leak-check=full \
            --child-silent-after-fork=yes \
            --show-leak-kinds=definite,indirect,possible \
            --errors-for-leak-kinds=definite,indirect,possible \
            --error-exitcode=99 --track-origins=yes \
            --log-file="$log" "$@" >"$log.out" 2>&1); then
        echo "valgrind ok    $name ($(( $(date +%s) - start ))s)"
    else
        echo "valgrind FAIL  $name (see $log and $log.out)"
        tail -n 30 "$log" || true
    fi
}
jobs=${VALGRIND_JOBS:-2}
for ((j = 0; j < jobs; j++)); do
    awk -F'\t' -v j="$j" -v n="$jobs" '(NR - 1) % n == j' "$logs/tests.tsv" |
    while IFS=$'\t' read -r name wd cmd; do
        # shellcheck disable=SC2086 # cmd is the test's argv, space-split
        run_one "$name" "$wd" $cmd
    done >"$logs/results.$j" &
done
wait
cat "$logs"/results.*
passed=$(cat "$logs"/results.* | grep -c '^valgrind ok' || true)
failed=$(cat "$logs"/results.* | grep -c '^valgrind FAIL' || true)
echo "$passed passed, $failed failed"
[ "$failed" -eq 0 ]

#!/usr/bin/env bash
# 50-fuzz.sh: builds the libFuzzer targets (clang) in build-fuzz/ and
# fuzzes each under ASan and UBSan, starting from its seed corpus in
# tests/fuzz/corpus/<name>/: the event decoder (bytes from Kafka) for 60 s
# the request decoder (bytes from Redis) for 30 s and the EDC callback
# decoder (bytes from POST /callbacks/edc) for 20 s. Any crash, leak,
# UB, timeout or out-of-memory fails the step; the reproducer is left in
# build-fuzz/artifacts-<name>/. New inputs go to build-fuzz/corpus-<name>/,
# never into the committed corpus. FUZZ_SECONDS overrides both times.
set -euo pipefail
cd "$(dirname "$0")/../.."

build=build-fuzz
mkdir -p "$build"
cmake -S . -B "$build" -DCMAKE_C_COMPILER=clang -DEDR_FUZZ=ON \
    -DCMAKE_BUILD_TYPE=RelWithDebInfo >"$build/configure.log" 2>&1 ||
    { cat "$build/configure.log"; exit 1; }
cmake --build "$build" --target fuzz_event_decode fuzz_request_decode \
    fuzz_edc_decode -j2

export ASAN_OPTIONS=${ASAN_OPTIONS:-detect_leaks=1:abort_on_error=1}
export UBSAN_OPTIONS=${UBSAN_OPTIONS:-print_stacktrace=1:halt_on_error=1}

passed=0
failed=0
# fuzz NAME SECONDS [extra libFuzzer flags]
fuzz() {
    local name=$1 seconds=${FUZZ_SECONDS:-$2}
    shift 2
    local corpus="$build/corpus-$name" artifacts="$build/artifacts-$name"
    mkdir -p "$corpus" "$artifacts"
    rm -f "$artifacts"/*
    set +e
    "$build/tests/fuzz/fuzz_${name}_decode" \
        -max_total_time="$seconds" -rss_limit_mb=2048 -timeout=10 \
        -max_len=65536 -print_final_stats=1 "$@" \
        -artifact_prefix="$artifacts/" \
        "$corpus" "tests/fuzz/corpus/$name" >"$build/fuzz-$name.log" 2>&1
    local rc=$?
    set -e
    tail -n 8 "$build/fuzz-$name.log"
    if [ "$rc" -ne 0 ] || ls "$artifacts"/* >/dev/null 2>&1; then
        echo "fuzz_${name}_decode: FAILED (exit $rc); artifacts:" >&2
        ls -l "$artifacts"/ >&2 || true
        failed=$((failed + 1))
    else
        echo "fuzz_${name}_decode: ${seconds}s without a finding"
        passed=$((passed + 1))
    fi
}

fuzz event 60 -dict=tests/fuzz/event.dict
fuzz request 30
fuzz edc 20
echo "$passed passed, $failed failed"
[ "$failed" -eq 0 ]

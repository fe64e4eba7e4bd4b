#!/usr/bin/env bash
# 50-fuzz.sh: builds the libFuzzer target of the event decoder with clang
# in build-fuzz/ and fuzzes it for 60 s under ASan and UBSan, starting
# from the seed corpus in tests/fuzz/corpus/event/. Any crash, leak, UB,
# timeout or out-of-memory fails the step; the reproducer is left in
# build-fuzz/artifacts/. New inputs go to build-fuzz/corpus-event/, never
# into the committed corpus. FUZZ_SECONDS overrides the 60.
set -euo pipefail
cd "$(dirname "$0")/../.."

seconds=${FUZZ_SECONDS:-60}
build=build-fuzz

mkdir -p "$build"
cmake -S . -B "$build" -DCMAKE_C_COMPILER=clang -DEDR_FUZZ=ON \
    -DCMAKE_BUILD_TYPE=RelWithDebInfo >"$build/configure.log" 2>&1 ||
    { cat "$build/configure.log"; exit 1; }
cmake --build "$build" --target fuzz_event_decode -j2

mkdir -p "$build/corpus-event" "$build/artifacts"
rm -f "$build"/artifacts/*
export ASAN_OPTIONS=${ASAN_OPTIONS:-detect_leaks=1:abort_on_error=1}
export UBSAN_OPTIONS=${UBSAN_OPTIONS:-print_stacktrace=1:halt_on_error=1}
set +e
"$build/tests/fuzz/fuzz_event_decode" \
    -max_total_time="$seconds" -rss_limit_mb=2048 -timeout=10 \
    -max_len=65536 -print_final_stats=1 \
    -dict=tests/fuzz/event.dict \
    -artifact_prefix="$build/artifacts/" \
    "$build/corpus-event" tests/fuzz/corpus/event \
    >"$build/fuzz.log" 2>&1
rc=$?
set -e
tail -n 25 "$build/fuzz.log"
if [ "$rc" -ne 0 ] || ls "$build"/artifacts/* >/dev/null 2>&1; then
    echo "fuzz_event_decode: FAILED (exit $rc); artifacts:" >&2
    ls -l "$build"/artifacts/ >&2 || true
    echo "0 passed, 1 failed"
    exit 1
fi
echo "fuzz_event_decode: ${seconds}s without a finding"
echo "1 passed, 0 failed"

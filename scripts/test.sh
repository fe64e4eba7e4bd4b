#!/usr/bin/env bash
# test.sh: THE test command (README; .ci/run calls exactly this). Builds
# once, starts the local stack once, runs every suite against it:
#   deps          scripts/install-deps.sh (only what is missing)
#   build         build/       -DEDR_WERROR=ON
#   build-asan    build-asan/  -DEDR_SANITIZE=ON -DEDR_WERROR=ON
#   build-tsan    build-tsan/  -DEDR_TSAN=ON -DEDR_WERROR=ON (ThreadSanitizer)
#   services      scripts/services.sh up (its env exported to what follows)
#   ctest         every test of build/ (labels unit and integration)
#   ctest-asan    the unit tests of build-asan/
#   ctest-tsan    the unit tests of build-tsan/, suppressions in
#                 tests/tsan.supp (each entry says why it is no product race)
#   release-hooks the release edr-worker carries no test hook (strings and
#                 --help), edr-worker-test carries them all
#   clang-format  --dry-run --Werror on the repository's *.c and *.h
#   test.d/NN-*   every scripts/test.d/[0-9][0-9]-*.sh, in order (40 the
#                 schemas, 41 the contract copy against ../shared/CONTRACT.md,
#                 50 fuzz corpora, 55 valgrind, 60 compose, 70 Python, 80 the
#                 fault suite); one without its execute bit is a FAILED step,
#                 not a skip
# A failing step does not stop the run; a summary follows, and the last line
# is "N passed, N failed" (steps). Exit status 1 when any step failed.
#
# Environment: EDR_BUILD_DIR, EDR_ASAN_BUILD_DIR, EDR_TSAN_BUILD_DIR
# (default build/, build-asan/ and build-tsan/ of the checkout),
# EDR_CTEST_JOBS (default 1 for build/, the unit-only sanitizer runs use 2),
# EDR_KEEP_SERVICES=1 leaves the stack running.
# The stack is stopped at exit only when this run started it: a stack that
# was already up (other work in the same checkout) is left alone.
set -uo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
export EDR_ROOT="$ROOT"
export EDR_BUILD_DIR="${EDR_BUILD_DIR:-$ROOT/build}"
export EDR_ASAN_BUILD_DIR="${EDR_ASAN_BUILD_DIR:-$ROOT/build-asan}"
export EDR_TSAN_BUILD_DIR="${EDR_TSAN_BUILD_DIR:-$ROOT/build-tsan}"
CTEST_JOBS="${EDR_CTEST_JOBS:-1}"
JOBS=2

# Sanitizer reports fail the test that triggers them, with a stack.
export ASAN_OPTIONS="${ASAN_OPTIONS:-abort_on_error=0:detect_leaks=1}"
export UBSAN_OPTIONS="${UBSAN_OPTIONS:-print_stacktrace=1:halt_on_error=1}"
# A TSan report makes the program exit 66 at its end, failing its test.
export TSAN_OPTIONS="${TSAN_OPTIONS:-suppressions=$ROOT/tests/tsan.supp:second_deadlock_stack=1}"

STEP_NAMES=()
STEP_RESULTS=()
STEP_TIMES=()

now() { date +%s.%N; }

# run_step NAME CMD...: runs CMD, records pass/fail and duration.
run_step() {
    local name="$1" t0 rc dur
    shift
    printf '\n=== %s: %s\n' "$name" "$*"
    t0="$(now)"
    "$@"
    rc=$?
    dur="$(awk -v a="$t0" -v b="$(now)" 'BEGIN { printf "%.1f", b - a }')"
    STEP_NAMES+=("$name")
    STEP_TIMES+=("$dur")
    if ((rc == 0)); then
        STEP_RESULTS+=(pass)
        printf '=== %s: pass (%s s)\n' "$name" "$dur"
    else
        STEP_RESULTS+=(FAIL)
        printf '=== %s: FAIL, exit %d (%s s)\n' "$name" "$rc" "$dur"
    fi
    return 0
}

build_dir() {
    local dir="$1"
    shift
    cmake -S "$ROOT" -B "$dir" "$@" && cmake --build "$dir" -j"$JOBS"
}

# Files to check: what git tracks plus new files it does not ignore (so a
# file is checked before its first commit); everything when not in git.
format_check() {
    local files
    if git -C "$ROOT" rev-parse --is-inside-work-tree >/dev/null 2>&1; then
        mapfile -t files < <(git -C "$ROOT" ls-files --cached --others \
            --exclude-standard -- '*.c' '*.h' | sort -u)
    else
        mapfile -t files < <(find . -path ./.local -prune -o -path './build*' \
            -prune -o -name '*.[ch]' -print)
    fi
    local present=()
    for f in "${files[@]}"; do
        [[ -f "$f" ]] && present+=("$f")
    done
    echo "clang-format: checking ${#present[@]} files"
    ((${#present[@]} == 0)) || clang-format --dry-run --Werror "${present[@]}"
}

# The test hooks (EDR_TEST_HOOKS: EDR_FAULT and its SIGUSR2 disarm,
# EDR_FILE_COMPACT_MIN, --exit-when-caught-up) are compiled only into
# edr-worker-test. The release binary must not name any of them, in its
# strings or its --help; the test binary must name them all, or this check
# could not fail.
HOOK_STRINGS=(EDR_FAULT SIGUSR2 EDR_FILE_COMPACT_MIN exit-when-caught-up)
release_hooks_check() {
    local rel="${1:-$EDR_BUILD_DIR/edr-worker}"
    local tst="${2:-$EDR_BUILD_DIR/edr-worker-test}"
    local f s rel_strings tst_strings help bad=0
    for f in "$rel" "$tst"; do
        if [[ ! -x "$f" ]]; then
            echo "release-hooks: $f is missing"
            return 1
        fi
    done
    rel_strings="$(strings -a "$rel")" || return 1
    tst_strings="$(strings -a "$tst")" || return 1
    help="$("$rel" --help)" || return 1
    for s in "${HOOK_STRINGS[@]}"; do
        if grep -qF -- "$s" <<<"$rel_strings"; then
            echo "release-hooks: $rel contains \"$s\":"
            grep -F -- "$s" <<<"$rel_strings" | head -3 | sed 's/^/    /'
            bad=1
        fi
        if grep -qF -- "$s" <<<"$help"; then
            echo "release-hooks: $rel --help mentions \"$s\""
            bad=1
        fi
        if ! grep -qF -- "$s" <<<"$tst_strings"; then
            echo "release-hooks: $tst lacks \"$s\" (so this check proves nothing)"
            bad=1
        fi
    done
    ((bad == 0)) && echo "release-hooks: ${HOOK_STRINGS[*]}: only in $tst"
    ((bad == 0))
}

SERVICES_STARTED=0
cleanup() {
    if ((SERVICES_STARTED)) && [[ "${EDR_KEEP_SERVICES:-0}" != 1 ]]; then
        printf '\n=== stopping the local stack (EDR_KEEP_SERVICES=1 keeps it)\n'
        scripts/services.sh down 2>&1 || true
    fi
    SERVICES_STARTED=0
}
trap cleanup EXIT
trap 'exit 130' INT TERM

services_up() {
    if scripts/services.sh status >/dev/null 2>&1; then
        echo "local stack already up: leaving it running after the tests"
    else
        SERVICES_STARTED=1
    fi
    scripts/services.sh up
}

T0="$(now)"
run_step deps scripts/install-deps.sh
run_step build build_dir "$EDR_BUILD_DIR" -DEDR_WERROR=ON -DEDR_SANITIZE=OFF
run_step build-asan build_dir "$EDR_ASAN_BUILD_DIR" -DEDR_SANITIZE=ON \
    -DEDR_WERROR=ON
run_step build-tsan build_dir "$EDR_TSAN_BUILD_DIR" -DEDR_TSAN=ON \
    -DEDR_SANITIZE=OFF -DEDR_WERROR=ON
run_step services services_up
eval "$(scripts/services.sh env)"
run_step ctest ctest --test-dir "$EDR_BUILD_DIR" --output-on-failure \
    -j"$CTEST_JOBS"
run_step ctest-asan ctest --test-dir "$EDR_ASAN_BUILD_DIR" -L unit \
    --output-on-failure -j2
run_step ctest-tsan ctest --test-dir "$EDR_TSAN_BUILD_DIR" -L unit \
    --output-on-failure -j2
run_step release-hooks release_hooks_check
run_step clang-format format_check
not_executable() {
    echo "$1 is not executable (chmod +x it, or remove it): FAILED"
    return 1
}
for step in scripts/test.d/[0-9][0-9]-*.sh; do
    [[ -e "$step" ]] || continue
    if [[ ! -x "$step" ]]; then
        run_step "test.d/$(basename "$step" .sh)" not_executable "$step"
        continue
    fi
    run_step "test.d/$(basename "$step" .sh)" "$step"
done

# Stop the stack now rather than in the trap, so the summary ends the log.
cleanup

passed=0
failed=0
printf '\n%-28s %-6s %9s\n' step result seconds
for i in "${!STEP_NAMES[@]}"; do
    printf '%-28s %-6s %9s\n' "${STEP_NAMES[$i]}" "${STEP_RESULTS[$i]}" \
        "${STEP_TIMES[$i]}"
    if [[ "${STEP_RESULTS[$i]}" == pass ]]; then
        passed=$((passed + 1))
    else
        failed=$((failed + 1))
    fi
done
printf '%-28s %-6s %9s\n' total "" \
    "$(awk -v a="$T0" -v b="$(now)" 'BEGIN { printf "%.1f", b - a }')"
echo
echo "$passed passed, $failed failed"
((failed == 0))

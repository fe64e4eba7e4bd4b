/* test_state_gaps.c: worker/state_gaps.c through its API: recording,
 * replacing and clearing gaps, accepted gaps (EDR_ACCEPT_GAP), bad input,
 * the operator text (all partitions and a chosen set, truncation), the
 * Prometheus lines, and a reader thread that must never see a torn range
 * while the writer changes the table. */
#include "base/clock.h"
#include "tests/support/cunit_main.h"
#include "tests/support/ops_util.h"
#include "worker/state_gaps.h"

#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static void test_no_gap(void)
{
    struct state_gaps *g = state_gaps_new();
    int64_t from = -7, to = -7;

    CU_ASSERT_PTR_NOT_NULL_FATAL(g);
    CU_ASSERT_EQUAL(state_gaps_any(g), 0);
    /* needed == log start, and needed past log start: no gap */
    CU_ASSERT_EQUAL(state_gaps_check(g, 0, 10, 10, 0, &from, &to), 0);
    CU_ASSERT_EQUAL(state_gaps_check(g, 1, 50, 0, 0, &from, &to), 0);
    CU_ASSERT_EQUAL(from, -7); /* untouched without a gap */
    CU_ASSERT_EQUAL(to, -7);
    CU_ASSERT_EQUAL(state_gaps_any(g), 0);
    CU_ASSERT_EQUAL(state_gaps_partition(g, 0, &from, &to), 0);
    char buf[64] = "junk";
    CU_ASSERT_EQUAL(state_gaps_describe(g, buf, sizeof(buf)), 0);
    CU_ASSERT_STRING_EQUAL(buf, "");
    state_gaps_free(g);
    state_gaps_free(NULL);
}

static void test_gap_recorded_and_cleared(void)
{
    struct state_gaps *g = state_gaps_new();
    int64_t from = 0, to = 0;

    CU_ASSERT_EQUAL(state_gaps_check(g, 3, 0, 42, 0, &from, &to), 42);
    CU_ASSERT_EQUAL(from, 0);
    CU_ASSERT_EQUAL(to, 42);
    CU_ASSERT_EQUAL(state_gaps_any(g), 1);
    from = to = -1;
    CU_ASSERT_EQUAL(state_gaps_partition(g, 3, &from, &to), 1);
    CU_ASSERT_EQUAL(from, 0);
    CU_ASSERT_EQUAL(to, 42);
    CU_ASSERT_EQUAL(state_gaps_partition(g, 2, &from, &to), 0);

    char buf[256];
    size_t len = state_gaps_describe(g, buf, sizeof(buf));
    CU_ASSERT_STRING_EQUAL(buf, "partition 3 is missing offsets 0-41 "
                                "(deleted by retention before this worker "
                                "applied them)");
    CU_ASSERT_EQUAL(len, strlen(buf));

    /* A later check replaces the range (the log moved on). */
    CU_ASSERT_EQUAL(state_gaps_check(g, 3, 0, 50, 0, NULL, NULL), 50);
    CU_ASSERT_EQUAL(state_gaps_partition(g, 3, &from, &to), 1);
    CU_ASSERT_EQUAL(to, 50);
    /* A check that finds no gap (e.g. after a restore) clears it. */
    CU_ASSERT_EQUAL(state_gaps_check(g, 3, 60, 50, 0, NULL, NULL), 0);
    CU_ASSERT_EQUAL(state_gaps_any(g), 0);

    CU_ASSERT_EQUAL(state_gaps_check(g, 5, 7, 9, 0, NULL, NULL), 2);
    CU_ASSERT_EQUAL(state_gaps_any(g), 1);
    state_gaps_clear(g, 5);
    state_gaps_clear(g, 99); /* unknown: nothing */
    CU_ASSERT_EQUAL(state_gaps_any(g), 0);
    CU_ASSERT_EQUAL(state_gaps_partition(g, 5, NULL, NULL), 0);
    CU_ASSERT_EQUAL(state_gaps_accepted_total(g), 0);
    state_gaps_free(g);
}

static void test_accepted(void)
{
    struct state_gaps *g = state_gaps_new();
    int64_t from = -1, to = -1;

    CU_ASSERT_EQUAL(state_gaps_check(g, 1, 10, 25, 1, &from, &to), 15);
    CU_ASSERT_EQUAL(from, 10); /* the range for the caller's error log */
    CU_ASSERT_EQUAL(to, 25);
    CU_ASSERT_EQUAL(state_gaps_any(g), 0); /* accepted: complete again */
    CU_ASSERT_EQUAL(state_gaps_partition(g, 1, NULL, NULL), 0);
    CU_ASSERT_EQUAL(state_gaps_accepted_total(g), 15);
    /* Accepting replaces an earlier recorded gap. */
    CU_ASSERT_EQUAL(state_gaps_check(g, 2, 0, 5, 0, NULL, NULL), 5);
    CU_ASSERT_EQUAL(state_gaps_check(g, 2, 0, 5, 1, NULL, NULL), 5);
    CU_ASSERT_EQUAL(state_gaps_any(g), 0);
    CU_ASSERT_EQUAL(state_gaps_accepted_total(g), 20);
    state_gaps_free(g);
}

static void test_bad_input(void)
{
    struct state_gaps *g = state_gaps_new();

    CU_ASSERT_EQUAL(state_gaps_check(g, -1, 0, 5, 0, NULL, NULL), -1);
    CU_ASSERT_EQUAL(state_gaps_check(g, 0, -1, 5, 0, NULL, NULL), -1);
    CU_ASSERT_EQUAL(state_gaps_check(g, 0, 0, -5, 0, NULL, NULL), -1);
    CU_ASSERT_EQUAL(state_gaps_any(g), 0);
    char *text = NULL;
    size_t len = 0;
    CU_ASSERT_EQUAL(state_gaps_prometheus(g, &text, &len), 0);
    /* nothing became known through bad input */
    CU_ASSERT_PTR_NULL(strstr(text, "partition="));
    free(text);
    state_gaps_free(g);
}

static void test_describe_many_and_truncated(void)
{
    struct state_gaps *g = state_gaps_new();
    /* inserted out of order; described in partition order */
    state_gaps_check(g, 7, 100, 200, 0, NULL, NULL);
    state_gaps_check(g, 0, 0, 1, 0, NULL, NULL);
    state_gaps_check(g, 4, 9, 9, 0, NULL, NULL); /* known, no gap */

    char buf[512];
    size_t len = state_gaps_describe(g, buf, sizeof(buf));
    const char *want = "partition 0 is missing offsets 0-0 (deleted by "
                       "retention before this worker applied them); "
                       "partition 7 is missing offsets 100-199 (deleted by "
                       "retention before this worker applied them)";
    CU_ASSERT_STRING_EQUAL(buf, want);
    CU_ASSERT_EQUAL(len, strlen(want));

    char small[20];
    len = state_gaps_describe(g, small, sizeof(small));
    CU_ASSERT_EQUAL(len, strlen(want)); /* what it needs */
    CU_ASSERT_EQUAL(strlen(small), sizeof(small) - 1);
    CU_ASSERT_EQUAL(strncmp(small, want, sizeof(small) - 1), 0);
    CU_ASSERT_EQUAL(state_gaps_describe(g, NULL, 0), strlen(want));

    int32_t ps[] = {4, 7};
    state_gaps_describe_partitions(g, ps, 2, buf, sizeof(buf));
    CU_ASSERT_STRING_EQUAL(buf, "partition 7 is missing offsets 100-199 "
                                "(deleted by retention before this worker "
                                "applied them)");
    int32_t clean[] = {4};
    CU_ASSERT_EQUAL(state_gaps_describe_partitions(g, clean, 1, buf, 64), 0);
    CU_ASSERT_STRING_EQUAL(buf, "");
    CU_ASSERT_EQUAL(state_gaps_describe_partitions(g, NULL, 0, buf, 64), 0);
    CU_ASSERT_PTR_NULL(strchr(want, '"')); /* embeddable in JSON as is */
    state_gaps_free(g);
}

static void test_prometheus(void)
{
    struct state_gaps *g = state_gaps_new();
    state_gaps_check(g, 2, 0, 42, 0, NULL, NULL);
    state_gaps_check(g, 0, 5, 5, 0, NULL, NULL);
    state_gaps_check(g, 1, 0, 10, 1, NULL, NULL); /* accepted: 0 */

    char *text = strdup("edr_other 1\n");
    size_t len = strlen(text);
    CU_ASSERT_EQUAL_FATAL(state_gaps_prometheus(g, &text, &len), 0);
    CU_ASSERT_EQUAL(strlen(text), len);
    CU_ASSERT_EQUAL(strncmp(text, "edr_other 1\n", 12), 0); /* appended */
    CU_ASSERT_PTR_NOT_NULL(
        strstr(text, "# TYPE edr_state_gap_offsets gauge\n"));
    CU_ASSERT_PTR_NOT_NULL(strstr(text, "# HELP edr_state_gap_offsets "));
    CU_ASSERT_EQUAL(ops_metric(text, "edr_state_gap_offsets{partition=\"0\"}"),
                    0);
    CU_ASSERT_EQUAL(ops_metric(text, "edr_state_gap_offsets{partition=\"1\"}"),
                    0);
    CU_ASSERT_EQUAL(ops_metric(text, "edr_state_gap_offsets{partition=\"2\"}"),
                    42);
    CU_ASSERT_EQUAL(ops_metric(text, "edr_state_gap_offsets{partition=\"3\"}"),
                    -1); /* unknown partition: absent */
    free(text);

    state_gaps_clear(g, 2);
    text = NULL;
    len = 0;
    CU_ASSERT_EQUAL_FATAL(state_gaps_prometheus(g, &text, &len), 0);
    CU_ASSERT_EQUAL(ops_metric(text, "edr_state_gap_offsets{partition=\"2\"}"),
                    0);
    free(text);
    state_gaps_free(g);
}

/* The writer flips partition 1 between gaps [i, 2i+1) and none; a reader
 * checks every range it sees is one the writer made (to == 2*from+1) and
 * that the text and metrics render consistently. */
struct race {
    struct state_gaps *g;
    atomic_int stop;
    atomic_long seen, torn;
};

static void *race_reader(void *arg)
{
    struct race *r = arg;
    char buf[512];

    while (!atomic_load(&r->stop)) {
        int64_t from, to;
        if (state_gaps_partition(r->g, 1, &from, &to)) {
            atomic_fetch_add(&r->seen, 1);
            if (to != 2 * from + 1)
                atomic_fetch_add(&r->torn, 1);
        }
        state_gaps_describe(r->g, buf, sizeof(buf));
        long long a, b;
        const char *at = strstr(buf, "partition 1 is missing offsets ");
        if (at &&
            sscanf(at, "partition 1 is missing offsets %lld-%lld", &a, &b) ==
                2 &&
            b + 1 != 2 * a + 1)
            atomic_fetch_add(&r->torn, 1);
        char *text = NULL;
        size_t len = 0;
        if (state_gaps_prometheus(r->g, &text, &len) == 0) {
            if (!strstr(text, "# TYPE edr_state_gap_offsets gauge"))
                atomic_fetch_add(&r->torn, 1);
            free(text);
        }
    }
    return NULL;
}

static void test_concurrent_reader(void)
{
    struct race r = {.g = state_gaps_new()};
    pthread_t th[2];

    for (int i = 0; i < 2; i++)
        CU_ASSERT_EQUAL_FATAL(pthread_create(&th[i], NULL, race_reader, &r), 0);
    /* At least 200000 changes, and until the readers saw 1000 gaps
     * (bounded: 20 s), so the threads surely overlapped. */
    int64_t deadline = edr_clock_ms() + 20000;
    for (int64_t i = 0; i < 200000 || (atomic_load(&r.seen) < 1000 &&
                                       edr_clock_ms() < deadline);
         i++) {
        if (i % 3 == 2)
            state_gaps_clear(r.g, 1);
        else
            state_gaps_check(r.g, 1, i, 2 * i + 1, 0, NULL, NULL);
        state_gaps_check(r.g, (int32_t)(i % 16) + 2, 0, 0, 0, NULL, NULL);
    }
    atomic_store(&r.stop, 1);
    for (int i = 0; i < 2; i++)
        pthread_join(th[i], NULL);
    CU_ASSERT_EQUAL(atomic_load(&r.torn), 0);
    CU_ASSERT(atomic_load(&r.seen) >= 1000); /* the readers saw gaps */
    state_gaps_free(r.g);
}

static void register_suites(void)
{
    CU_pSuite s = CU_add_suite("state_gaps", NULL, NULL);
    CU_add_test(s, "no gap", test_no_gap);
    CU_add_test(s, "gap recorded, replaced, cleared",
                test_gap_recorded_and_cleared);
    CU_add_test(s, "accepted gap", test_accepted);
    CU_add_test(s, "bad input", test_bad_input);
    CU_add_test(s, "describe many, chosen, truncated",
                test_describe_many_and_truncated);
    CU_add_test(s, "prometheus lines", test_prometheus);
    CU_add_test(s, "concurrent reader sees whole ranges",
                test_concurrent_reader);
}

int main(void)
{
    static const cunit_register_fn regs[] = {register_suites, NULL};
    return cunit_main(regs);
}

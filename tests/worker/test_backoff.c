/* test_backoff.c: worker/backoff.c, capped backoff with decorrelated
 * jitter. Every delay stays in [min, max]; the delays grow towards the
 * cap; and workers retrying together do not draw the same delays (the
 * herd that one PostgreSQL would see after an outage). */
#include "worker/backoff.h"

#include "tests/support/cunit_main.h"

#include <CUnit/CUnit.h>
#include <stdio.h>

static void test_bounds(void)
{
    for (uint64_t seed = 1; seed <= 200; seed++) {
        struct backoff b;
        backoff_init_seeded(&b, 100, 5000, seed);
        for (int i = 0; i < 40; i++) {
            unsigned d = backoff_next(&b);
            CU_ASSERT(d >= 100 && d <= 5000);
        }
        CU_ASSERT_EQUAL(b.attempts, 40);
    }
    /* Degenerate settings: min 0 counts as 1, max below min as min. */
    struct backoff b;
    backoff_init_seeded(&b, 0, 0, 7);
    CU_ASSERT_EQUAL(backoff_next(&b), 1);
    backoff_init_seeded(&b, 50, 10, 7);
    CU_ASSERT_EQUAL(backoff_next(&b), 50);
}

/* The delays still grow: after a dozen failures the mean delay is near
 * the cap, the first one near the minimum. */
static void test_growth(void)
{
    double first = 0, late = 0;
    int n = 500;
    for (int s = 0; s < n; s++) {
        struct backoff b;
        backoff_init_seeded(&b, 100, 5000, (uint64_t)s + 1000);
        first += backoff_next(&b);
        for (int i = 1; i < 12; i++)
            backoff_next(&b);
        late += backoff_next(&b);
    }
    first /= n;
    late /= n;
    CU_ASSERT(first >= 100 && first <= 300);
    printf("\n  mean delay: first %.0f ms, 13th %.0f ms", first, late);
    CU_ASSERT(late >= 1500);
}

/* 50 workers whose store failed at the same moment: their 5th delays
 * must spread out (without jitter all 50 would be equal). */
static void test_spread(void)
{
    unsigned fifth[50];
    int distinct = 0;
    for (int w = 0; w < 50; w++) {
        struct backoff b;
        backoff_init(&b, 100, 5000); /* the real seeding */
        for (int i = 0; i < 4; i++)
            backoff_next(&b);
        fifth[w] = backoff_next(&b);
        int seen = 0;
        for (int j = 0; j < w; j++)
            seen |= fifth[j] == fifth[w];
        distinct += !seen;
    }
    CU_ASSERT(distinct >= 25);
}

static void test_seeded_repeats_and_reset(void)
{
    struct backoff a, b;
    backoff_init_seeded(&a, 100, 5000, 42);
    backoff_init_seeded(&b, 100, 5000, 42);
    for (int i = 0; i < 20; i++)
        CU_ASSERT_EQUAL(backoff_next(&a), backoff_next(&b));
    backoff_reset(&a);
    CU_ASSERT_EQUAL(a.attempts, 0);
    CU_ASSERT(backoff_next(&a) <= 300); /* from min_ms again */
}

static void register_tests(void)
{
    CU_pSuite s = CU_add_suite("backoff", NULL, NULL);
    CU_add_test(s, "delays stay within [min, max]", test_bounds);
    CU_add_test(s, "delays grow towards the cap", test_growth);
    CU_add_test(s, "workers retrying together spread out", test_spread);
    CU_add_test(s, "a seed repeats; reset starts over",
                test_seeded_repeats_and_reset);
}

int main(void)
{
    static const cunit_register_fn registers[] = {register_tests, NULL};
    return cunit_main(registers);
}

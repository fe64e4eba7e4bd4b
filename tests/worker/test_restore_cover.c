/* test_restore_cover.c: the decision whether a file store whose saved
 * position fell out of the log is replaced by the changelog's state
 * (worker/restore_cover.h). */
#include "tests/support/cunit_main.h"
#include "worker/restore_cover.h"

#include <CUnit/CUnit.h>

static enum restore_cover decide(size_t n, const int64_t *c, const int64_t *s,
                                 const int64_t *low, int32_t *at)
{
    return restore_cover_decide(n, c, s, low, at);
}

/* The changelog covers the partition out of the log and is in the log
 * everywhere: replaced (also when it is behind a healthy file partition
 * but still in the log: replaying from there is exact). */
static void test_replace(void)
{
    int64_t c[] = {500, 40}, s[] = {100, 90}, low[] = {300, 0};
    int32_t at = 7;
    CU_ASSERT_EQUAL(decide(2, c, s, low, &at), RESTORE_COVER_REPLACE);
    CU_ASSERT_EQUAL(at, -1);
    /* nothing saved for a partition counts as 0 */
    int64_t s2[] = {-1, 90};
    CU_ASSERT_EQUAL(decide(2, c, s2, low, NULL), RESTORE_COVER_REPLACE);
}

/* The changelog is below the log start of a partition the file covers:
 * replacing would make a gap there. */
static void test_behind_healthy(void)
{
    int64_t c[] = {500, 40}, s[] = {100, 90}, low[] = {300, 50};
    int32_t at = -1;
    CU_ASSERT_EQUAL(decide(2, c, s, low, &at), RESTORE_COVER_BEHIND);
    CU_ASSERT_EQUAL(at, 1);
}

/* Both out of the log in a partition: no worse when the changelog is at
 * least as far as the file, worse when behind it. */
static void test_both_out_of_log(void)
{
    int64_t low[] = {300, 300};
    int64_t c_ok[] = {500, 200}, s[] = {100, 150};
    CU_ASSERT_EQUAL(decide(2, c_ok, s, low, NULL), RESTORE_COVER_REPLACE);
    CU_ASSERT(restore_cover_uncovered(200, 150, 300));
    int64_t c_bad[] = {500, 120};
    int32_t at = -1;
    CU_ASSERT_EQUAL(decide(2, c_bad, s, low, &at), RESTORE_COVER_BEHIND);
    CU_ASSERT_EQUAL(at, 1);
}

/* Nothing out of the log is covered (the changelog is where the file is,
 * below the log start): pointless, declined. */
static void test_none(void)
{
    int64_t c[] = {117, 90}, s[] = {117, 90}, low[] = {171, 0};
    CU_ASSERT_EQUAL(decide(2, c, s, low, NULL), RESTORE_COVER_NONE);
    CU_ASSERT(restore_cover_uncovered(117, 117, 171));
    CU_ASSERT(!restore_cover_uncovered(90, 90, 0));
    CU_ASSERT(!restore_cover_uncovered(300, 100, 300)); /* covered */
    CU_ASSERT_EQUAL(decide(0, c, s, low, NULL), RESTORE_COVER_NONE);
}

static void register_suites(void)
{
    CU_pSuite s = CU_add_suite("restore_cover", NULL, NULL);
    CU_add_test(s, "covered: replace", test_replace);
    CU_add_test(s, "behind a partition the file covers", test_behind_healthy);
    CU_add_test(s, "both out of the log", test_both_out_of_log);
    CU_add_test(s, "nothing out of the log covered", test_none);
}

int main(void)
{
    static const cunit_register_fn regs[] = {register_suites, NULL};
    return cunit_main(regs);
}

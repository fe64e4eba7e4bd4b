/* test_ingest_outage.c: worker/ingest_outage.c, what a worker stuck on a
 * failing store logs: the first failure, each change of its reason, a
 * reminder every minute, never a line per attempt; and the lines really
 * reach the log (stderr). */
#include "worker/ingest_outage.h"

#include "tests/support/cunit_main.h"
#include "worker/log.h"

#include <CUnit/CUnit.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static void test_lines_due(void)
{
    struct outage_log o = {0};
    double t = 1000;
    CU_ASSERT_EQUAL(outage_log_failure(&o, "connection refused", t),
                    OUTAGE_LINE_FIRST);
    /* Attempts every 5 s with the same reason: quiet for a minute. */
    int lines = 0;
    for (int i = 1; i < 12; i++)
        lines += outage_log_failure(&o, "connection refused", t + 5 * i) !=
                 OUTAGE_LINE_NONE;
    CU_ASSERT_EQUAL(lines, 0);
    CU_ASSERT_EQUAL(outage_log_failure(&o, "connection refused", t + 60),
                    OUTAGE_LINE_REMINDER);
    CU_ASSERT_EQUAL(outage_log_failure(&o, "connection refused", t + 61),
                    OUTAGE_LINE_NONE);
    /* Another reason: a line at once, then quiet again. */
    CU_ASSERT_EQUAL(outage_log_failure(&o, "password rejected", t + 62),
                    OUTAGE_LINE_CHANGED);
    CU_ASSERT_EQUAL(outage_log_failure(&o, "password rejected", t + 65),
                    OUTAGE_LINE_NONE);
    /* And back: a change too. */
    CU_ASSERT_EQUAL(outage_log_failure(&o, "connection refused", t + 66),
                    OUTAGE_LINE_CHANGED);
    /* The reminder counts from the last line, not from the start. */
    CU_ASSERT_EQUAL(outage_log_failure(&o, "connection refused", t + 125),
                    OUTAGE_LINE_NONE);
    CU_ASSERT_EQUAL(outage_log_failure(&o, "connection refused", t + 126),
                    OUTAGE_LINE_REMINDER);
    CU_ASSERT_EQUAL(o.failures, 19);
    CU_ASSERT_EQUAL(outage_log_end(&o), 19);
    CU_ASSERT_EQUAL(outage_log_end(&o), 0);
    /* After a success the next failure is a new outage. */
    CU_ASSERT_EQUAL(outage_log_failure(&o, "connection refused", t + 127),
                    OUTAGE_LINE_FIRST);
    CU_ASSERT_EQUAL(outage_log_failure(&o, NULL, t + 128), OUTAGE_LINE_CHANGED);
}

static int count(const char *text, const char *needle)
{
    int n = 0;
    for (const char *p = text; (p = strstr(p, needle)); p++)
        n++;
    return n;
}

/* The log itself: 3 lines for 40 attempts over two minutes with one
 * change of reason (first, change, reminder). */
static void test_log_lines(void)
{
    char path[] = "/tmp/test_ingest_outage_XXXXXX";
    int fd = mkstemp(path);
    CU_ASSERT_FATAL(fd >= 0);
    fflush(stderr);
    int saved = dup(2);
    dup2(fd, 2);
    log_init("t", EDR_LOG_INFO, 0);
    struct outage_log o = {0};
    for (int i = 0; i < 40; i++)
        outage_log_note(&o, "store", "retrying", i < 10 ? "refused" : "timeout",
                        3.0 * i);
    fflush(stderr);
    dup2(saved, 2);
    close(saved);
    char buf[8192] = {0};
    ssize_t n = pread(fd, buf, sizeof(buf) - 1, 0);
    close(fd);
    unlink(path);
    CU_ASSERT_FATAL(n > 0);
    CU_ASSERT_EQUAL(count(buf, "store unavailable (refused); retrying"), 1);
    CU_ASSERT_EQUAL(count(buf, "now: timeout"), 1);
    CU_ASSERT_EQUAL(count(buf, "still unavailable after 90 s and 31 failed "
                               "attempts: timeout"),
                    1);
    CU_ASSERT_EQUAL(count(buf, "store "), 3);
}

static void register_tests(void)
{
    CU_pSuite s = CU_add_suite("ingest_outage", NULL, NULL);
    CU_add_test(s, "first, changed, reminder; never per attempt",
                test_lines_due);
    CU_add_test(s, "the lines in the log", test_log_lines);
}

int main(void)
{
    static const cunit_register_fn registers[] = {register_tests, NULL};
    return cunit_main(registers);
}

/* test_rpc_gaps.c: worker/rpc_gaps.c through its API: no table or no gap
 * refuses nothing; a gap refuses every op but ping with state_incomplete
 * naming the partition and offsets; the describe text for /readyz; the
 * metrics hook (edr_state_gap_offsets in metrics_render, 0 when none);
 * an accepted gap refuses nothing; withdrawing the table. */
#include "schemas/reply.h"
#include "schemas/request.h"
#include "tests/support/cunit_main.h"
#include "tests/support/ops_util.h"
#include "worker/metrics.h"
#include "worker/rpc_gaps.h"
#include "worker/state_gaps.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static int refused(enum request_op op, char *reply, size_t n)
{
    struct request req = {0};
    struct reply_buf out = {0};
    const char *status = "ok";
    char id[] = "r1";
    req.op = op;
    req.id = id;
    int rc = rpc_gaps_refuse(&out, &req, &status);
    snprintf(reply, n, "%s", out.data ? out.data : "");
    CU_ASSERT_STRING_EQUAL(status, rc ? "error" : "ok");
    reply_buf_free(&out);
    return rc;
}

static double gap_metric(const char *partition)
{
    char *text = NULL, series[96];
    size_t len = 0;
    CU_ASSERT_EQUAL_FATAL(metrics_render(&text, &len), 0);
    CU_ASSERT_EQUAL(strlen(text), len);
    snprintf(series, sizeof(series), "edr_state_gap_offsets{partition=\"%s\"}",
             partition);
    double v = ops_metric(text, series);
    CU_ASSERT_PTR_NOT_NULL(strstr(text, "# TYPE edr_state_gap_offsets gauge"));
    free(text);
    return v;
}

static void test_no_table(void)
{
    char reply[1024], text[64] = "junk";
    rpc_gaps_publish(NULL);
    CU_ASSERT_EQUAL(refused(REQUEST_COUNT, reply, sizeof(reply)), 0);
    CU_ASSERT_STRING_EQUAL(reply, "");
    CU_ASSERT_EQUAL(rpc_gaps_describe(text, sizeof(text)), 0);
    CU_ASSERT_STRING_EQUAL(text, "");
    metrics_init("memory", "w-gaps");
    CU_ASSERT_EQUAL(gap_metric("0"), -1); /* no partition known */
}

static void test_gap_refuses_all_but_ping(void)
{
    struct state_gaps *g = state_gaps_new();
    char reply[2048], text[512];
    CU_ASSERT_PTR_NOT_NULL_FATAL(g);
    rpc_gaps_publish(g);
    CU_ASSERT_EQUAL(state_gaps_check(g, 0, 0, 0, 0, NULL, NULL), 0);
    CU_ASSERT_EQUAL(state_gaps_check(g, 1, 0, 0, 0, NULL, NULL), 0);
    CU_ASSERT_EQUAL(refused(REQUEST_GET_CONNECTION, reply, sizeof(reply)), 0);
    CU_ASSERT_EQUAL(gap_metric("1"), 0);

    CU_ASSERT_EQUAL(state_gaps_check(g, 1, 3, 5, 0, NULL, NULL), 2);
    const enum request_op ops[] = {REQUEST_GET_CONNECTION,
                                   REQUEST_GET_TRANSFER_ID, REQUEST_COUNT,
                                   REQUEST_LIST};
    for (size_t i = 0; i < sizeof(ops) / sizeof(ops[0]); i++) {
        CU_ASSERT_EQUAL(refused(ops[i], reply, sizeof(reply)), 1);
        CU_ASSERT_PTR_NOT_NULL(strstr(reply, "\"status\":\"error\""));
        CU_ASSERT_PTR_NOT_NULL(strstr(reply, "\"code\":\"state_incomplete\""));
        CU_ASSERT_PTR_NOT_NULL(
            strstr(reply, "partition 1 is missing offsets 3-4"));
        CU_ASSERT_PTR_NOT_NULL(strstr(reply, "\"id\":\"r1\""));
    }
    CU_ASSERT_EQUAL(refused(REQUEST_PING, reply, sizeof(reply)), 0);
    CU_ASSERT_EQUAL(refused(REQUEST_OP_NONE, reply, sizeof(reply)), 0);

    CU_ASSERT(rpc_gaps_describe(text, sizeof(text)) > 0);
    CU_ASSERT_PTR_NOT_NULL(strstr(text, "partition 1 is missing offsets 3-4"));
    CU_ASSERT_EQUAL(gap_metric("1"), 2);
    CU_ASSERT_EQUAL(gap_metric("0"), 0);

    /* accepted (EDR_ACCEPT_GAP): nothing refused any more */
    CU_ASSERT_EQUAL(state_gaps_check(g, 1, 3, 5, 1, NULL, NULL), 2);
    CU_ASSERT_EQUAL(refused(REQUEST_COUNT, reply, sizeof(reply)), 0);
    CU_ASSERT_EQUAL(gap_metric("1"), 0);

    /* withdrawn: the table may be freed, nothing refers to it */
    CU_ASSERT_EQUAL(state_gaps_check(g, 0, 0, 9, 0, NULL, NULL), 9);
    CU_ASSERT_EQUAL(refused(REQUEST_LIST, reply, sizeof(reply)), 1);
    rpc_gaps_publish(NULL);
    state_gaps_free(g);
    CU_ASSERT_EQUAL(refused(REQUEST_LIST, reply, sizeof(reply)), 0);
    CU_ASSERT_EQUAL(gap_metric("0"), -1);
}

/* Many gaps: the reason is cut, still one valid reply. */
static void test_long_reason(void)
{
    struct state_gaps *g = state_gaps_new();
    char reply[4096];
    CU_ASSERT_PTR_NOT_NULL_FATAL(g);
    rpc_gaps_publish(g);
    for (int p = 0; p < 64; p++)
        state_gaps_check(g, p, 0, 1000000 + p, 0, NULL, NULL);
    CU_ASSERT_EQUAL(refused(REQUEST_COUNT, reply, sizeof(reply)), 1);
    CU_ASSERT_PTR_NOT_NULL(strstr(reply, "partition 0 is missing"));
    CU_ASSERT_PTR_NOT_NULL(strstr(reply, " ...\""));
    CU_ASSERT(strlen(reply) < 1300);
    rpc_gaps_publish(NULL);
    state_gaps_free(g);
}

static void register_suites(void)
{
    CU_pSuite s = CU_add_suite("rpc_gaps", NULL, NULL);
    CU_add_test(s, "no table: nothing refused", test_no_table);
    CU_add_test(s, "a gap refuses every op but ping",
                test_gap_refuses_all_but_ping);
    CU_add_test(s, "many gaps: the reason is cut", test_long_reason);
}

int main(void)
{
    static const cunit_register_fn regs[] = {register_suites, NULL};
    return cunit_main(regs);
}

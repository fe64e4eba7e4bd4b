/* test_readyz_pg.c: /readyz follows the store. A worker with the
 * PostgreSQL store runs against a private PostgreSQL (port 15445, started
 * and stopped by this test, never the shared one): ready while it runs,
 * 503 naming the store after it is stopped, ready again after it returns,
 * with the event published during the outage applied and the outage
 * counted in /metrics.
 *
 * Needs the local stack's Kafka and Redis (scripts/services.sh env), the
 * PostgreSQL binaries ($EDR_PG_BIN), root (runuser) and the built
 * edr-worker ($EDR_WORKER_BIN, default ../edr-worker). */
#include "base/clock.h"
#include "schemas/edr_key.h"
#include "tests/support/cunit_main.h"
#include "tests/support/kafka_util.h"
#include "tests/support/ops_util.h"
#include "tests/support/proc_util.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#define PG_PORT 15445

static struct ops_pg pg;
static char *topic, *dlq;
static char addr[32], log_path[128];
static pid_t pid;

static int publish(int i)
{
    char party[32], json[768], key[EDR_CONNECTION_KEY_LEN + 1], err[256];
    snprintf(party, sizeof(party), "BPNLREADY%05d", i);
    struct edr_key k = {party, "https://p.example.com/dsp", "q", "p"};
    edr_connection_key(&k, key);
    snprintf(json, sizeof(json),
             "{\"specversion\":\"1.0\",\"id\":\"ready-%d\",\"source\":"
             "\"urn:connector:test\",\"type\":\"edr.negotiated\",\"data\":{"
             "\"counter_party_id\":\"%s\",\"counter_party_address\":"
             "\"https://p.example.com/dsp\",\"query_checksum\":\"q\","
             "\"policy_checksum\":\"p\",\"edr\":{\"transferProcessId\":"
             "\"tp-%d\"}}}",
             i, party, i);
    if (test_kafka_produce(test_env("EDR_KAFKA_BROKERS"), topic, key, json,
                           strlen(json), err, sizeof(err)) != 0) {
        fprintf(stderr, "produce: %s\n", err);
        return -1;
    }
    return 0;
}

static int setup(void)
{
    char err[256];
    const char *brokers = test_env("EDR_KAFKA_BROKERS");
    if (!brokers || !test_env("EDR_REDIS_URL"))
        return -1;
    if (getuid() != 0) {
        fprintf(stderr, "needs root to run PostgreSQL as its OS user\n");
        return -1;
    }
    if (ops_pg_create(&pg, PG_PORT, err, sizeof(err)) != 0) {
        fprintf(stderr, "private PostgreSQL: %s\n", err);
        return -1;
    }
    if (test_kafka_topic_pair(brokers, "ops_ready", 2, &topic, &dlq, err,
                              sizeof(err)) != 0) {
        fprintf(stderr, "create topics: %s\n", err);
        return -1;
    }
    snprintf(addr, sizeof(addr), "127.0.0.1:%d", ops_free_port());
    snprintf(log_path, sizeof(log_path), "ops_ready_worker_%d.log",
             (int)getpid());
    char e_topic[256], e_dlq[256], e_group[256], e_http[64], e_prefix[256];
    snprintf(e_topic, sizeof(e_topic), "EDR_TOPIC=%s", topic);
    snprintf(e_dlq, sizeof(e_dlq), "EDR_DLQ_TOPIC=%s", dlq);
    snprintf(e_group, sizeof(e_group), "EDR_GROUP_ID=%s", topic);
    snprintf(e_prefix, sizeof(e_prefix), "EDR_RPC_PREFIX=%s", topic);
    snprintf(e_http, sizeof(e_http), "EDR_HTTP_ADDR=%s", addr);
    char e_dsn[128];
    snprintf(e_dsn, sizeof(e_dsn),
             "EDR_PG_DSN=postgresql://postgres@127.0.0.1:%d/postgres"
             "?connect_timeout=3",
             PG_PORT);
    const char *env[] = {e_topic,
                         e_dlq,
                         e_group,
                         e_prefix,
                         e_http,
                         e_dsn,
                         "EDR_STORE=postgres",
                         "EDR_WORKER_ID=ready-test",
                         NULL};
    pid = ops_worker_start(env, log_path);
    return pid > 0 ? 0 : -1;
}

static int teardown(void)
{
    if (pid > 0)
        ops_worker_stop(pid, 30000);
    ops_pg_destroy(&pg);
    free(topic);
    free(dlq);
    return 0;
}

/* Body of /readyz now; "" when nothing answered. */
static void readyz(int *status, char *out, size_t n)
{
    char *body = NULL;
    *status = 0;
    out[0] = '\0';
    if (ops_http_get(addr, "/readyz", status, &body) == 0)
        snprintf(out, n, "%s", body);
    free(body);
}

static void test_ready_with_pg(void)
{
    if (ops_wait_status(addr, "/readyz", 200, 90000) != 0) {
        ops_dump_log(log_path, 30);
        CU_FAIL_FATAL("not ready within 90 s with PostgreSQL up");
    }
    CU_ASSERT_EQUAL(publish(1), 0);
}

static void test_503_without_pg(void)
{
    int status;
    char body[512];
    CU_ASSERT_EQUAL_FATAL(ops_pg_stop(&pg), 0);
    /* The worker notices on its next store call: publish one so there is
     * one, and poll (its own health checks may notice first). */
    CU_ASSERT_EQUAL(publish(2), 0);
    if (ops_wait_status(addr, "/readyz", 503, 60000) != 0) {
        ops_dump_log(log_path, 30);
        CU_FAIL_FATAL("/readyz still 200 60 s after PostgreSQL stopped");
    }
    readyz(&status, body, sizeof(body));
    fprintf(stderr, "\n  /readyz with PostgreSQL down: %d %s", status, body);
    CU_ASSERT_EQUAL(status, 503);
    CU_ASSERT_PTR_NOT_NULL(strstr(body, "\"status\":\"not_ready\""));
    CU_ASSERT_PTR_NOT_NULL(strstr(body, "store"));
    CU_ASSERT_PTR_NOT_NULL(strstr(body, "\"store_ok\":false"));
    /* Alive all the same: an orchestrator must not restart it. */
    CU_ASSERT_EQUAL(ops_wait_status(addr, "/healthz", 200, 5000), 0);
}

static void test_ready_again(void)
{
    int status;
    char body[512], *m = NULL;
    CU_ASSERT_EQUAL_FATAL(ops_pg_start(&pg), 0);
    if (ops_wait_status(addr, "/readyz", 200, 120000) != 0) {
        ops_dump_log(log_path, 30);
        CU_FAIL_FATAL("not ready again within 120 s of PostgreSQL's return");
    }
    readyz(&status, body, sizeof(body));
    fprintf(stderr, "  /readyz after it returned: %d %s", status, body);
    CU_ASSERT_EQUAL(status, 200);
    /* Both events applied (the one of the outage after the retry), the
     * outage counted. Give the gauge a moment after readiness. */
    double applied = 0, outages = 0;
    for (int i = 0; i < 100; i++) {
        free(m);
        m = NULL;
        if (ops_http_get(addr, "/metrics", &status, &m) != 0)
            continue;
        applied = ops_metric(m, "edr_events_applied_total{type=\"edr."
                                "negotiated\",store=\"postgres\"}");
        outages = ops_metric(m, "edr_outages_total{component=\"store\"}");
        if (applied >= 2)
            break;
        edr_sleep_ms(100);
    }
    fprintf(stderr, "  applied %.0f, store outages %.0f\n", applied, outages);
    CU_ASSERT_EQUAL(applied, 2);
    CU_ASSERT(outages >= 1);
    free(m);
}

static void test_clean_stop(void)
{
    int rc = ops_worker_stop(pid, 30000);
    pid = 0;
    CU_ASSERT_EQUAL(rc, 0);
    if (rc != 0)
        ops_dump_log(log_path, 30);
}

/* Credentials the server rejects (SQLSTATE class 28) are an invalid
 * setting: exit 2 at once, naming EDR_PG_DSN, and nothing it prints holds
 * the password (schemas/README.md §3). Uses the shared PostgreSQL. */
static void test_rejected_credentials_exit_2(void)
{
    static const char pw[] = "Wr0ngPassXq7Zt";
    const char *shared = test_env("EDR_PG_DSN");
    const char *at = shared ? strchr(shared, '@') : NULL;
    CU_ASSERT_PTR_NOT_NULL_FATAL(at);
    char e_dsn[512], e_log[160];
    snprintf(e_dsn, sizeof(e_dsn), "EDR_PG_DSN=postgresql://edr:%s%s", pw, at);
    snprintf(e_log, sizeof(e_log), "ops_ready_auth_%d.log", (int)getpid());
    unlink(e_log);
    const char *env[] = {e_dsn, "EDR_STORE=postgres", "EDR_HTTP_ADDR=off",
                         NULL};
    pid_t p = ops_worker_start(env, e_log);
    CU_ASSERT_FATAL(p > 0);
    int code = test_wait_exit(p, 30000);
    if (code < 0) {
        ops_worker_stop(p, 5000);
        CU_FAIL("the worker kept retrying rejected credentials");
        return;
    }
    CU_ASSERT_EQUAL(code, 2);
    char *out = test_read_file(e_log, NULL);
    CU_ASSERT_PTR_NOT_NULL_FATAL(out);
    CU_ASSERT_PTR_NOT_NULL(strstr(out, "EDR_PG_DSN"));
    CU_ASSERT_PTR_NOT_NULL(strstr(out, "rejected the credentials"));
    CU_ASSERT_PTR_NULL(strstr(out, "Wr0ng"));
    CU_ASSERT_PTR_NULL(strstr(out, "Xq7Zt"));
    free(out);
}

static void register_suites(void)
{
    CU_pSuite s = CU_add_suite("readyz follows PostgreSQL", setup, teardown);
    CU_add_test(s, "ready with PostgreSQL up", test_ready_with_pg);
    CU_add_test(s, "503 naming the store while it is down",
                test_503_without_pg);
    CU_add_test(s, "ready again after it returns", test_ready_again);
    CU_add_test(s, "SIGTERM stops it with 0", test_clean_stop);
    CU_pSuite a = CU_add_suite("rejected credentials", NULL, NULL);
    CU_add_test(a, "exit 2, no password in the output",
                test_rejected_credentials_exit_2);
}

int main(void)
{
    static const cunit_register_fn regs[] = {register_suites, NULL};
    return cunit_main(regs);
}

/* test_metrics_scaleout.c: three edr-worker processes share one
 * PostgreSQL table and consumer group (schemas/README.md §4); the test
 * publishes a known mix of events and checks, by scraping each worker's
 * /metrics, that the counters summed over the workers agree exactly with what
 * was published: applied events per type, dead-lettered events per reason,
 * store entries, zero lag, and that /readyz says ready on each.
 *
 * Needs the local stack (scripts/services.sh env) and the built
 * edr-worker ($EDR_WORKER_BIN, default ../edr-worker). */
#include "base/clock.h"
#include "schemas/edr_key.h"
#include "tests/support/cunit_main.h"
#include "tests/support/kafka_util.h"
#include "tests/support/ops_util.h"

#include <libpq-fe.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define N_WORKERS 3
#define N_CONN 60

static char *topic, *dlq, *group, *table, *prefix;
static char addrs[N_WORKERS][32];
static char logs[N_WORKERS][128];
static pid_t pids[N_WORKERS];

/* Published counts, per type and per rejection reason. */
static int n_negotiated, n_renewed, n_expired, n_entries;
static int n_bad_json, n_bad_schema, n_bad_utf8;

static int produce(const char *party, const char *key_src, const char *json)
{
    char err[256];
    if (test_kafka_produce(test_env("EDR_KAFKA_BROKERS"), topic, key_src, json,
                           strlen(json), err, sizeof(err)) != 0) {
        fprintf(stderr, "produce %s: %s\n", party, err);
        return -1;
    }
    return 0;
}

/* One event of `type` for connection i; tp NULL for none. */
static int publish(const char *type, int i, const char *tp, int stale)
{
    char party[64], addr[128], json[1024], key[EDR_CONNECTION_KEY_LEN + 1];
    snprintf(party, sizeof(party), "BPNL%012d", i);
    snprintf(addr, sizeof(addr), "https://provider-%d.example.com/api/v1/dsp",
             i % 7);
    struct edr_key k = {party, addr, "q-sum", "p-sum"};
    edr_connection_key(&k, key);
    char data_extra[256];
    if (strcmp(type, "edr.expired") == 0)
        snprintf(data_extra, sizeof(data_extra),
                 ",\"transfer_process_id\":\"%s%s\"", tp, stale ? "-old" : "");
    else
        snprintf(data_extra, sizeof(data_extra),
                 ",\"edr\":{\"@type\":\"EndpointDataReferenceEntry\","
                 "\"transferProcessId\":\"%s\",\"assetId\":\"asset-%d\","
                 "\"providerId\":\"%s\"}",
                 tp, i, party);
    snprintf(json, sizeof(json),
             "{\"specversion\":\"1.0\",\"id\":\"%s-%d-%s\",\"source\":"
             "\"urn:connector:test\",\"type\":\"%s\",\"data\":{"
             "\"counter_party_id\":\"%s\",\"counter_party_address\":\"%s\","
             "\"query_checksum\":\"q-sum\",\"policy_checksum\":\"p-sum\"%s}}",
             type, i, tp, type, party, addr, data_extra);
    return produce(party, key, json);
}

static int setup(void)
{
    char err[256];
    const char *brokers = test_env("EDR_KAFKA_BROKERS");
    if (!brokers || !test_env("EDR_PG_DSN") || !test_env("EDR_REDIS_URL"))
        return -1;
    group = test_unique_name("ops_scale_group");
    table = test_unique_name("ops_scale");
    prefix = test_unique_name("ops_scale_rpc");
    if (!group || !table || !prefix)
        return -1;
    if (test_kafka_topic_pair(brokers, "ops_scale", 6, &topic, &dlq, err,
                              sizeof(err)) != 0) {
        fprintf(stderr, "create topics: %s\n", err);
        return -1;
    }
    for (int w = 0; w < N_WORKERS; w++) {
        int port = ops_free_port();
        snprintf(addrs[w], sizeof(addrs[w]), "127.0.0.1:%d", port);
        snprintf(logs[w], sizeof(logs[w]), "ops_scale_worker%d_%d.log", w,
                 (int)getpid());
        char e_topic[256], e_dlq[256], e_group[256], e_table[256],
            e_prefix[256], e_http[64], e_id[64];
        snprintf(e_topic, sizeof(e_topic), "EDR_TOPIC=%s", topic);
        snprintf(e_dlq, sizeof(e_dlq), "EDR_DLQ_TOPIC=%s", dlq);
        snprintf(e_group, sizeof(e_group), "EDR_GROUP_ID=%s", group);
        snprintf(e_table, sizeof(e_table), "EDR_PG_TABLE=%s", table);
        snprintf(e_prefix, sizeof(e_prefix), "EDR_RPC_PREFIX=%s", prefix);
        snprintf(e_http, sizeof(e_http), "EDR_HTTP_ADDR=%s", addrs[w]);
        snprintf(e_id, sizeof(e_id), "EDR_WORKER_ID=scale-%d", w);
        const char *env[] = {e_topic,
                             e_dlq,
                             e_group,
                             e_table,
                             e_prefix,
                             e_http,
                             e_id,
                             "EDR_STORE=postgres",
                             "EDR_READY_MAX_LAG=0",
                             NULL};
        pids[w] = ops_worker_start(env, logs[w]);
        if (pids[w] < 0)
            return -1;
    }
    return 0;
}

static int teardown(void)
{
    for (int w = 0; w < N_WORKERS; w++)
        if (pids[w] > 0)
            ops_worker_stop(pids[w], 30000);
    const char *dsn = getenv("EDR_PG_DSN");
    if (dsn && table) {
        PGconn *c = PQconnectdb(dsn);
        if (PQstatus(c) == CONNECTION_OK) {
            char sql[512];
            snprintf(sql, sizeof(sql),
                     "DROP TABLE IF EXISTS %s; DROP TABLE IF EXISTS "
                     "%s_offsets",
                     table, table); /* our own [a-z0-9_] name */
            PQclear(PQexec(c, sql));
        }
        PQfinish(c);
    }
    free(topic);
    free(dlq);
    free(group);
    free(table);
    free(prefix);
    return 0;
}

static void test_all_ready(void)
{
    for (int w = 0; w < N_WORKERS; w++) {
        if (ops_wait_status(addrs[w], "/healthz", 200, 30000) != 0 ||
            ops_wait_status(addrs[w], "/readyz", 200, 90000) != 0) {
            ops_dump_log(logs[w], 30);
            CU_FAIL_FATAL("worker not ready within 90 s");
        }
    }
}

static void test_publish(void)
{
    int ok = 1;
    for (int i = 0; i < N_CONN && ok; i++) {
        char tp[32];
        snprintf(tp, sizeof(tp), "tp-%d", i);
        ok &= publish("edr.negotiated", i, tp, 0) == 0;
        n_negotiated++;
        n_entries++;
        if (i % 3 == 0) {
            snprintf(tp, sizeof(tp), "tp-%d-r", i);
            ok &= publish("edr.renewed", i, tp, 0) == 0;
            n_renewed++;
        }
        if (i % 5 == 0) { /* late expiry of the first EDR: no effect */
            ok &= publish("edr.expired", i, tp, 1) == 0;
            n_expired++;
        }
        if (i % 4 == 0) { /* a real expiry */
            ok &= publish("edr.expired", i, tp, 0) == 0;
            n_expired++;
            n_entries--;
        }
    }
    ok &= produce("bad-json", NULL, "{\"specversion\":\"1.0\",") == 0;
    n_bad_json++;
    ok &= produce("bad-schema", NULL,
                  "{\"specversion\":\"1.0\",\"id\":\"x\",\"source\":\"s\","
                  "\"type\":\"edr.negotiated\",\"data\":{}}") == 0;
    n_bad_schema++;
    ok &= produce("bad-utf8", NULL, "{\"id\":\"\xff\xfe\"}") == 0;
    n_bad_utf8++;
    CU_ASSERT_FATAL(ok);
}

struct totals {
    double neg, ren, exp, dl_json, dl_schema, dl_utf8, batches, lag;
    double entries_max;
    int scraped;
};

static void scrape(struct totals *t)
{
    memset(t, 0, sizeof(*t));
    for (int w = 0; w < N_WORKERS; w++) {
        int status;
        char *m;
        if (ops_http_get(addrs[w], "/metrics", &status, &m) != 0)
            continue;
        if (status == 200) {
            t->scraped++;
            t->neg += ops_metric(m, "edr_events_applied_total{type=\"edr."
                                    "negotiated\",store=\"postgres\"}");
            t->ren += ops_metric(m, "edr_events_applied_total{type=\"edr."
                                    "renewed\",store=\"postgres\"}");
            t->exp += ops_metric(m, "edr_events_applied_total{type=\"edr."
                                    "expired\",store=\"postgres\"}");
            t->dl_json += ops_metric(
                m, "edr_events_dead_lettered_total{reason=\"json\"}");
            t->dl_schema += ops_metric(
                m, "edr_events_dead_lettered_total{reason=\"schema\"}");
            t->dl_utf8 += ops_metric(
                m, "edr_events_dead_lettered_total{reason=\"utf8\"}");
            t->batches += ops_metric(m, "edr_batches_total");
            t->lag += ops_metric_sum(m, "edr_consumer_lag{");
            double e = ops_metric(m, "edr_store_entries");
            if (e > t->entries_max)
                t->entries_max = e;
        }
        free(m);
    }
}

static void test_counters_agree(void)
{
    struct totals t;
    int want = n_negotiated + n_renewed + n_expired;
    /* Wait (up to 60 s) until everything is applied and the workers are
     * quiescent: every lag 0 and no batch applied between two scrapes. A
     * late double count needs a batch, so once quiescent the totals are
     * final and can be compared exactly. */
    int64_t until = edr_clock_ms() + 60000;
    double prev_batches = -1;
    for (;;) {
        scrape(&t);
        int applied = t.scraped == N_WORKERS && t.neg + t.ren + t.exp >= want &&
                      t.dl_json + t.dl_schema + t.dl_utf8 >= 3 && t.lag == 0 &&
                      t.entries_max == n_entries; /* gauge: every batch */
        if (applied && t.batches == prev_batches)
            break;
        prev_batches = applied ? t.batches : -1;
        if (edr_clock_ms() >= until)
            break;
        edr_sleep_ms(300);
    }
    fprintf(stderr,
            "\n  published: negotiated %d renewed %d expired %d, bad %d; "
            "scraped: %.0f %.0f %.0f, dead-lettered %.0f, batches %.0f, "
            "lag %.0f, entries %.0f\n",
            n_negotiated, n_renewed, n_expired,
            n_bad_json + n_bad_schema + n_bad_utf8, t.neg, t.ren, t.exp,
            t.dl_json + t.dl_schema + t.dl_utf8, t.batches, t.lag,
            t.entries_max);
    CU_ASSERT_EQUAL(t.scraped, N_WORKERS);
    CU_ASSERT_EQUAL(t.neg, n_negotiated);
    CU_ASSERT_EQUAL(t.ren, n_renewed);
    CU_ASSERT_EQUAL(t.exp, n_expired);
    CU_ASSERT_EQUAL(t.dl_json, n_bad_json);
    CU_ASSERT_EQUAL(t.dl_schema, n_bad_schema);
    CU_ASSERT_EQUAL(t.dl_utf8, n_bad_utf8);
    CU_ASSERT(t.batches >= 1);
    CU_ASSERT_EQUAL(t.lag, 0);
    /* Store entries: the shared table, as at least one worker last saw
     * it (a gauge refreshed after each batch). */
    CU_ASSERT_EQUAL(t.entries_max, n_entries);
}

static void test_each_worker_did_work(void)
{
    /* The group spread the 6 partitions: every worker applied some, each
     * names itself in build_info, and all stay ready. */
    for (int w = 0; w < N_WORKERS; w++) {
        int status;
        char *m, id[80];
        CU_ASSERT_EQUAL_FATAL(ops_http_get(addrs[w], "/metrics", &status, &m),
                              0);
        snprintf(id, sizeof(id), "worker=\"scale-%d\"} 1", w);
        CU_ASSERT_PTR_NOT_NULL(strstr(m, id));
        CU_ASSERT(ops_metric_sum(m, "edr_events_applied_total{") > 0);
        CU_ASSERT_EQUAL(ops_metric(m, "edr_kafka_assigned"), 1);
        free(m);
        CU_ASSERT_EQUAL(ops_wait_status(addrs[w], "/readyz", 200, 10000), 0);
    }
}

static void test_clean_stop(void)
{
    for (int w = 0; w < N_WORKERS; w++) {
        int rc = ops_worker_stop(pids[w], 30000);
        pids[w] = 0;
        CU_ASSERT_EQUAL(rc, 0);
        if (rc != 0)
            ops_dump_log(logs[w], 30);
    }
}

static void register_suites(void)
{
    CU_pSuite s =
        CU_add_suite("metrics during a 3-worker run", setup, teardown);
    CU_add_test(s, "all workers ready", test_all_ready);
    CU_add_test(s, "publish a known mix", test_publish);
    CU_add_test(s, "scraped counters equal what was published",
                test_counters_agree);
    CU_add_test(s, "each worker applied its share", test_each_worker_did_work);
    CU_add_test(s, "SIGTERM stops each with 0", test_clean_stop);
}

int main(void)
{
    static const cunit_register_fn regs[] = {register_suites, NULL};
    return cunit_main(regs);
}

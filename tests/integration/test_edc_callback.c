/* test_edc_callback.c: EDC callbacks (schemas/README.md §6) end to end on
 * the shared local Kafka, Redis and PostgreSQL, with two edr-worker-test
 * processes per store mode (memory: each holds the whole state;
 * postgres: one shared table).
 *
 * Connections are published with `edrctl publish negotiated`; once both
 * workers hold them, callbacks are POSTed to either worker's HTTP port:
 *   - TransferProcessTerminated/Completed for a CONSUMER: 200 with the
 *     position of the edr.expired it published, which is read back from
 *     the topic (CloudEvents id = the callback's id, source
 *     urn:edr-worker:<id>, keyed by the connection key, with the transfer
 *     id); `edrctl get` then answers not found, on every worker;
 *   - the same callback again (EDC redelivers), to the other worker too:
 *     200, and the other connections are untouched;
 *   - a wrong or missing header: 401; PROVIDER: 204; bad JSON: 400; an
 *     unknown transfer id: 200 not_found; none of these publishes
 *     anything (the topic's end offsets do not move) or changes a
 *     connection.
 * Binaries: EDR_WORKER_BIN (edr-worker-test) and EDRCTL_BIN, set by CMake. */
#include "base/clock.h"
#include "schemas/edr_key.h"
#include "schemas/event.h"
#include "stores/pg_store.h"
#include "tests/support/cunit_main.h"
#include "tests/support/kafka_util.h"
#include "tests/support/ops_util.h"
#include "tests/support/proc_util.h"

#include <inttypes.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#define N_WORKERS 2
#define N_CONN 4
#define PARTITIONS 4

static const char *brokers, *pg_dsn;
static char code[64];

struct fleet {
    const char *mode;
    char *topic, *dlq;
    char prefix[96], group[128], table[64];
    char ids[N_WORKERS][64], logs[N_WORKERS][160];
    char http[N_WORKERS][32];
    pid_t pids[N_WORKERS];
};

static void conn_fields(const struct fleet *f, int i, char party[32],
                        char addr[64], char q[16], char p[16], char tp[48])
{
    snprintf(party, 32, "BPNLCB%08d", i);
    snprintf(addr, 64, "https://provider-%d.example.com/api/v1/dsp", i);
    snprintf(q, 16, "q-%d", i);
    snprintf(p, 16, "p-%d", i);
    snprintf(tp, 48, "tp-%s-%d", f->mode, i);
}

/* ------------------------------------------------------------ edrctl */

/* Runs edrctl with args (NULL-terminated) after "--rpc-prefix P --topic
 * T"; its exit code, output in out. */
static int edrctl(const struct fleet *f, const char *const *args, char *out,
                  size_t cap)
{
    const char *argv[32];
    int a = 0;
    argv[a++] = EDRCTL_BIN;
    argv[a++] = args[0];
    if (strcmp(args[0], "publish") == 0)
        argv[a++] = args[1]; /* the event type comes first */
    argv[a++] = "--rpc-prefix";
    argv[a++] = f->prefix;
    argv[a++] = "--topic";
    argv[a++] = f->topic;
    for (int i = strcmp(args[0], "publish") == 0 ? 2 : 1; args[i]; i++)
        argv[a++] = args[i];
    argv[a] = NULL;
    return test_run_capture(argv, out, cap, 30000);
}

/* edrctl get of connection i: 0 found, 1 not found, else an error. */
static int get_conn(const struct fleet *f, int i)
{
    char party[32], addr[64], q[16], p[16], tp[48], out[1024];
    conn_fields(f, i, party, addr, q, p, tp);
    const char *args[] = {"get",     "--party", party,      "--address", addr,
                          "--query", q,         "--policy", p,           NULL};
    return edrctl(f, args, out, sizeof(out));
}

/* Waits until get_conn(i) == want on every answering worker: `rounds`
 * answers in a row (requests go to either worker). 0, or -1 after
 * timeout_ms. */
static int wait_conn(const struct fleet *f, int i, int want, int timeout_ms)
{
    int64_t end = edr_clock_ms() + timeout_ms;
    int in_a_row = 0;
    while (edr_clock_ms() < end) {
        if (get_conn(f, i) == want) {
            if (++in_a_row >= 6)
                return 0;
        } else {
            in_a_row = 0;
            edr_sleep_ms(100);
        }
    }
    fprintf(stderr, "\n  %s: connection %d not %s in time\n", f->mode, i,
            want ? "gone" : "there");
    return -1;
}

static int publish_negotiated(const struct fleet *f, int i)
{
    char party[32], addr[64], q[16], p[16], tp[48], edr[160], out[512];
    conn_fields(f, i, party, addr, q, p, tp);
    snprintf(edr, sizeof(edr),
             "{\"transferProcessId\":\"%s\",\"assetId\":\"asset-%d\","
             "\"providerId\":\"BPNLPROV\"}",
             tp, i);
    const char *args[] = {
        "publish", "negotiated", "--party", party,      "--address",
        addr,      "--query",    q,         "--policy", p,
        "--edr",   edr,          NULL};
    int rc = edrctl(f, args, out, sizeof(out));
    if (rc != 0)
        fprintf(stderr, "\n  edrctl publish: %d: %s\n", rc, out);
    return rc;
}

/* ------------------------------------------------------------ kafka */

/* Sum of the end offsets of every partition of the fleet's topic; -1 on
 * error. */
static int64_t topic_end(const struct fleet *f)
{
    char err[256];
    rd_kafka_t *rk = test_kafka_client_new(RD_KAFKA_PRODUCER, brokers, NULL,
                                           NULL, NULL, err, sizeof(err));
    int64_t sum = 0;
    if (!rk)
        return -1;
    for (int32_t p = 0; p < PARTITIONS && sum >= 0; p++) {
        int64_t lo, hi;
        if (rd_kafka_query_watermark_offsets(rk, f->topic, p, &lo, &hi, 10000))
            sum = -1;
        else
            sum += hi;
    }
    rd_kafka_destroy(rk);
    return sum;
}

/* Reads the record at (partition, offset) of the topic and checks it is
 * the expiry of connection i made from callback `id` by worker w. */
static void check_published(const struct fleet *f, int32_t partition,
                            int64_t offset, int i, const char *id, int w)
{
    char err[256], group[160];
    snprintf(group, sizeof(group), "%s_check", f->prefix);
    const char *props[] = {"group.id", group, "enable.auto.commit", "false",
                           NULL};
    rd_kafka_t *rk = test_kafka_client_new(RD_KAFKA_CONSUMER, brokers, props,
                                           NULL, NULL, err, sizeof(err));
    CU_ASSERT_PTR_NOT_NULL_FATAL(rk);
    rd_kafka_topic_partition_list_t *l = rd_kafka_topic_partition_list_new(1);
    rd_kafka_topic_partition_list_add(l, f->topic, partition)->offset = offset;
    rd_kafka_assign(rk, l);
    rd_kafka_topic_partition_list_destroy(l);
    rd_kafka_message_t *m = NULL;
    int64_t end = edr_clock_ms() + 20000;
    while (!m && edr_clock_ms() < end) {
        m = rd_kafka_consumer_poll(rk, 500);
        if (m && m->err) {
            rd_kafka_message_destroy(m);
            m = NULL;
        }
    }
    CU_ASSERT_PTR_NOT_NULL(m);
    if (m) {
        char party[32], addr[64], q[16], p[16], tp[48], source[96];
        char ckey[EDR_CONNECTION_KEY_LEN + 1];
        conn_fields(f, i, party, addr, q, p, tp);
        struct edr_key k = {party, addr, q, p};
        edr_connection_key(&k, ckey);
        snprintf(source, sizeof(source), "urn:edr-worker:%s", f->ids[w]);
        CU_ASSERT_EQUAL(m->offset, offset);
        CU_ASSERT_EQUAL(m->key_len, EDR_CONNECTION_KEY_LEN);
        CU_ASSERT_TRUE(m->key && memcmp(m->key, ckey, m->key_len) == 0);
        struct event ev;
        int rc = event_decode(&ev, m->payload, m->len, err, sizeof(err));
        CU_ASSERT_EQUAL(rc, EVENT_OK);
        if (rc == EVENT_OK) {
            CU_ASSERT_EQUAL(ev.type, EVENT_EXPIRED);
            CU_ASSERT_STRING_EQUAL(ev.id, id);
            CU_ASSERT_STRING_EQUAL(ev.source, source);
            CU_ASSERT_STRING_EQUAL(ev.counter_party_id, party);
            CU_ASSERT_STRING_EQUAL(ev.policy_checksum, p);
            CU_ASSERT_PTR_NOT_NULL(ev.transfer_id);
            if (ev.transfer_id)
                CU_ASSERT_STRING_EQUAL(ev.transfer_id, tp);
            event_clear(&ev);
        }
        rd_kafka_message_destroy(m);
    }
    rd_kafka_consumer_close(rk);
    rd_kafka_destroy(rk);
}

/* ------------------------------------------------------------ workers */

static int fleet_start(struct fleet *f, const char *mode)
{
    char err[256];
    memset(f, 0, sizeof(*f));
    f->mode = mode;
    if (test_kafka_topic_pair(brokers, "edc_cb", PARTITIONS, &f->topic, &f->dlq,
                              err, sizeof(err))) {
        fprintf(stderr, "topics: %s\n", err);
        return -1;
    }
    snprintf(f->prefix, sizeof(f->prefix), "%s_%s", f->topic, mode);
    snprintf(f->group, sizeof(f->group), "%s_grp", f->prefix);
    snprintf(f->table, sizeof(f->table), "edc_cb_%ld_%ld", (long)getpid(),
             (long)time(NULL) % 100000);
    for (int w = 0; w < N_WORKERS; w++) {
        int port = ops_free_port();
        if (port < 0)
            return -1;
        snprintf(f->ids[w], sizeof(f->ids[w]), "%s-cb-w%d", mode, w + 1);
        snprintf(f->logs[w], sizeof(f->logs[w]), "/tmp/%s-w%d.log", f->prefix,
                 w + 1);
        snprintf(f->http[w], sizeof(f->http[w]), "127.0.0.1:%d", port);
        char env_buf[12][256];
        const char *env[13];
        snprintf(env_buf[0], 256, "EDR_TOPIC=%s", f->topic);
        snprintf(env_buf[1], 256, "EDR_DLQ_TOPIC=%s", f->dlq);
        snprintf(env_buf[2], 256, "EDR_STORE=%s", mode);
        snprintf(env_buf[3], 256, "EDR_PG_TABLE=%s", f->table);
        snprintf(env_buf[4], 256, "EDR_GROUP_ID=%s", f->group);
        snprintf(env_buf[5], 256, "EDR_RPC_PREFIX=%s", f->prefix);
        snprintf(env_buf[6], 256, "EDR_WORKER_ID=%s", f->ids[w]);
        snprintf(env_buf[7], 256, "EDR_HTTP_ADDR=%s", f->http[w]);
        snprintf(env_buf[8], 256, "EDR_RPC_THREADS=2");
        snprintf(env_buf[9], 256, "EDR_CHANGELOG_TOPIC=off");
        snprintf(env_buf[10], 256, "EDR_CALLBACK_AUTH_CODE=%s", code);
        snprintf(env_buf[11], 256, "EDR_CALLBACK_AUTH_KEY=X-Edc-Auth");
        for (int i = 0; i < 12; i++)
            env[i] = env_buf[i];
        env[12] = NULL;
        f->pids[w] = test_spawn(EDR_WORKER_BIN, NULL, env, f->logs[w]);
        if (f->pids[w] < 0)
            return -1;
    }
    for (int w = 0; w < N_WORKERS; w++)
        if (ops_wait_status(f->http[w], "/readyz", 200, 60000) != 0) {
            fprintf(stderr, "\n  %s not ready\n", f->ids[w]);
            ops_dump_log(f->logs[w], 30);
            return -1;
        }
    return 0;
}

static void fleet_stop(struct fleet *f)
{
    for (int w = 0; w < N_WORKERS; w++) {
        if (f->pids[w] <= 0)
            continue;
        int rc = ops_worker_stop(f->pids[w], 15000);
        if (rc != 0)
            ops_dump_log(f->logs[w], 30);
        CU_ASSERT_EQUAL(rc, 0);
        /* the auth code is a secret: never in the log */
        char *log = test_read_file(f->logs[w], NULL);
        CU_ASSERT_PTR_NOT_NULL(log);
        if (log)
            CU_ASSERT_PTR_NULL(strstr(log, code));
        free(log);
        unlink(f->logs[w]);
    }
    test_kafka_delete_topic(brokers, f->topic);
    test_kafka_delete_topic(brokers, f->dlq);
    free(f->topic);
    free(f->dlq);
    if (strcmp(f->mode, "postgres") == 0) {
        struct store_err err;
        pg_store_drop(pg_dsn, f->table, &err);
    }
}

/* ------------------------------------------------------------ callbacks */

struct answer {
    int status;
    char *body;
};

/* POSTs an EDC event to worker w; auth: the header line, NULL for none. */
static void callback(const struct fleet *f, int w, const char *auth,
                     const char *id, const char *type, const char *tp,
                     const char *party, struct answer *a)
{
    char body[1024], head[2048];
    snprintf(body, sizeof(body),
             "{\"id\":\"%s\",\"at\":1796305164000,\"type\":\"%s\","
             "\"payload\":{\"transferProcessId\":\"%s\",\"assetId\":"
             "\"asset\",\"type\":\"%s\",\"contractId\":\"c\",\"protocol\":"
             "\"dataspace-protocol-http\",\"callbackAddresses\":[]}}",
             id, type, tp, party);
    a->body = NULL;
    a->status = 0;
    int rc =
        ops_http_send(f->http[w], "POST", "/callbacks/edc", auth, body,
                      strlen(body), &a->status, head, sizeof(head), &a->body);
    CU_ASSERT_EQUAL(rc, 0);
    if (!a->body)
        a->body = strdup("");
    CU_ASSERT_PTR_NULL(strstr(head, code));
    CU_ASSERT_PTR_NULL(strstr(a->body, code));
}

static const char *auth_line(void)
{
    static char line[128];
    snprintf(line, sizeof(line), "X-Edc-Auth: %s\r\n", code);
    return line;
}

/* The callback of connection i to worker w must publish its expiry. */
static void expect_expired(const struct fleet *f, int w, int i, const char *id,
                           const char *type)
{
    char party[32], addr[64], q[16], p[16], tp[48];
    conn_fields(f, i, party, addr, q, p, tp);
    struct answer a;
    callback(f, w, auth_line(), id, type, tp, "CONSUMER", &a);
    int32_t partition = -1;
    int64_t offset = -1;
    CU_ASSERT_EQUAL(a.status, 200);
    int n = sscanf(a.body,
                   "{\"status\":\"expired\",\"partition\":%" SCNd32
                   ",\"offset\":%" SCNd64 "}",
                   &partition, &offset);
    if (n != 2)
        fprintf(stderr, "\n  callback %s: %d %s\n", id, a.status, a.body);
    CU_ASSERT_EQUAL(n, 2);
    free(a.body);
    if (n == 2)
        check_published(f, partition, offset, i, id, w);
}

static double metric_of(const struct fleet *f, int w, const char *series)
{
    char *body = NULL;
    int status = 0;
    double v = -1;
    if (ops_http_get(f->http[w], "/metrics", &status, &body) == 0 &&
        status == 200)
        v = ops_metric(body, series);
    free(body);
    return v;
}

/* Memory mode: waits until every worker holds exactly n entries (each
 * applies every partition itself). 0, or -1 after 30 s. Postgres: 0. */
static int wait_entries(const struct fleet *f, double n)
{
    if (strcmp(f->mode, "memory") != 0)
        return 0;
    for (int w = 0; w < N_WORKERS; w++) {
        int64_t end = edr_clock_ms() + 30000;
        while (metric_of(f, w, "edr_store_entries") != n &&
               edr_clock_ms() < end)
            edr_sleep_ms(100);
        if (metric_of(f, w, "edr_store_entries") != n) {
            fprintf(stderr, "\n  %s: not %.0f entries\n", f->ids[w], n);
            return -1;
        }
    }
    return 0;
}

static void run_mode(const char *mode)
{
    struct fleet f;
    double t0 = edr_clock_s();
    char party[32], addr[64], q[16], p[16], tp[48], id[64];
    CU_ASSERT_EQUAL_FATAL(fleet_start(&f, mode), 0);
    for (int i = 0; i < N_CONN; i++)
        CU_ASSERT_EQUAL_FATAL(publish_negotiated(&f, i), 0);
    for (int i = 0; i < N_CONN; i++)
        CU_ASSERT_EQUAL_FATAL(wait_conn(&f, i, 0, 30000), 0);
    CU_ASSERT_EQUAL_FATAL(wait_entries(&f, N_CONN), 0);

    /* Terminated, to the second worker: published, then gone */
    snprintf(id, sizeof(id), "cb-%s-0", mode);
    expect_expired(&f, 1, 0, id, "TransferProcessTerminated");
    CU_ASSERT_EQUAL(wait_conn(&f, 0, 1, 30000), 0);

    /* Completed, to the first worker, then EDC's redelivery of the very
     * same callback to both: harmless */
    snprintf(id, sizeof(id), "cb-%s-1", mode);
    expect_expired(&f, 0, 1, id, "TransferProcessCompleted");
    conn_fields(&f, 1, party, addr, q, p, tp);
    for (int w = 0; w < N_WORKERS; w++) {
        struct answer a;
        callback(&f, w, auth_line(), id, "TransferProcessCompleted", tp,
                 "CONSUMER", &a);
        CU_ASSERT_EQUAL(a.status, 200);
        free(a.body);
    }
    CU_ASSERT_EQUAL(wait_conn(&f, 1, 1, 30000), 0);
    snprintf(id, sizeof(id), "cb-%s-0", mode); /* long after: not found */
    conn_fields(&f, 0, party, addr, q, p, tp);
    struct answer a;
    callback(&f, 0, auth_line(), id, "TransferProcessTerminated", tp,
             "CONSUMER", &a);
    CU_ASSERT_EQUAL(a.status, 200);
    CU_ASSERT_STRING_EQUAL(a.body, "{\"status\":\"not_found\"}\n");
    free(a.body);

    /* Nothing below publishes or changes anything. */
    int64_t end_before = topic_end(&f);
    CU_ASSERT_TRUE(end_before >= N_CONN + 2);
    conn_fields(&f, 2, party, addr, q, p, tp);
    for (int w = 0; w < N_WORKERS; w++) {
        static const char *const wrong[] = {NULL, "X-Edc-Auth: nope\r\n",
                                            "X-Api-Key: x\r\n"};
        for (size_t k = 0; k < sizeof(wrong) / sizeof(wrong[0]); k++) {
            char line[160];
            const char *h = wrong[k];
            if (k == 2) { /* the right code under the default header name */
                snprintf(line, sizeof(line), "X-Api-Key: %s\r\n", code);
                h = line;
            }
            callback(&f, w, h, "cb-auth", "TransferProcessTerminated", tp,
                     "CONSUMER", &a);
            CU_ASSERT_EQUAL(a.status, 401);
            free(a.body);
        }
        callback(&f, w, auth_line(), "cb-prov", "TransferProcessTerminated", tp,
                 "PROVIDER", &a);
        CU_ASSERT_EQUAL(a.status, 204);
        free(a.body);
        callback(&f, w, auth_line(), "cb-start", "TransferProcessStarted", tp,
                 "CONSUMER", &a);
        CU_ASSERT_EQUAL(a.status, 204);
        free(a.body);
        callback(&f, w, auth_line(), "cb-unknown", "TransferProcessTerminated",
                 "tp-nobody-holds-this", "CONSUMER", &a);
        CU_ASSERT_EQUAL(a.status, 200);
        CU_ASSERT_STRING_EQUAL(a.body, "{\"status\":\"not_found\"}\n");
        free(a.body);
        char head[1024], *body = NULL;
        int status = 0;
        CU_ASSERT_EQUAL(ops_http_send(f.http[w], "POST", "/callbacks/edc",
                                      auth_line(), "{\"id\":", 6, &status, head,
                                      sizeof(head), &body),
                        0);
        CU_ASSERT_EQUAL(status, 400);
        CU_ASSERT_PTR_NOT_NULL(body && strstr(body, "\"error\""));
        free(body);
    }
    CU_ASSERT_EQUAL(topic_end(&f), end_before);
    CU_ASSERT_EQUAL(wait_conn(&f, 2, 0, 10000), 0);
    CU_ASSERT_EQUAL(wait_conn(&f, 3, 0, 10000), 0);
    /* both expiries reached every memory worker, nothing else went */
    CU_ASSERT_EQUAL(wait_entries(&f, N_CONN - 2), 0);

    /* what each worker counted */
    double expired = 0, unauthorized = 0, ignored = 0, bad = 0;
    for (int w = 0; w < N_WORKERS; w++) {
        expired += metric_of(&f, w, "edr_callbacks_total{outcome=\"expired\"}");
        unauthorized +=
            metric_of(&f, w, "edr_callbacks_total{outcome=\"unauthorized\"}");
        ignored += metric_of(&f, w, "edr_callbacks_total{outcome=\"ignored\"}");
        bad += metric_of(&f, w, "edr_callbacks_total{outcome=\"bad_request\"}");
    }
    CU_ASSERT_TRUE(expired >= 2 && expired <= 4); /* redeliveries may race */
    CU_ASSERT_EQUAL(unauthorized, 3 * N_WORKERS);
    CU_ASSERT_EQUAL(ignored, 2 * N_WORKERS);
    CU_ASSERT_EQUAL(bad, N_WORKERS);
    fprintf(stderr, "\n  %s: %.0f expiries published (%.1f s)\n", mode, expired,
            edr_clock_s() - t0);
    fleet_stop(&f);
}

static void test_memory(void)
{
    run_mode("memory");
}

static void test_postgres(void)
{
    run_mode("postgres");
}

static int suite_init(void)
{
    brokers = test_env("EDR_KAFKA_BROKERS");
    pg_dsn = test_env("EDR_PG_DSN");
    if (!brokers || !pg_dsn || !test_env("EDR_REDIS_URL"))
        return -1;
    snprintf(code, sizeof(code), "edc-code-%ld-%ld", (long)getpid(),
             (long)time(NULL));
    return 0;
}

static void register_suites(void)
{
    CU_pSuite s = CU_add_suite("EDC callbacks", suite_init, NULL);
    CU_add_test(s, "two memory workers", test_memory);
    CU_add_test(s, "two postgres workers", test_postgres);
}

int main(void)
{
    signal(SIGPIPE, SIG_IGN);
    static const cunit_register_fn regs[] = {register_suites, NULL};
    return cunit_main(regs);
}

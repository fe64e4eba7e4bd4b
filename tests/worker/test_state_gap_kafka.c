/* test_state_gap_kafka.c: state gaps on the real broker (schemas/README.md
 * §4 "State gaps", issue 14).
 *
 * For each store (memory, file, postgres): a topic of two partitions; the
 * worker is down while events are published (file, postgres: after it
 * applied a first part, so it has a saved position), then the Admin API
 * (rd_kafka_DeleteRecords) moves partition 0's log start past that
 * position. Restarted, the worker must refuse lookups with
 * state_incomplete naming partition 0 and the missing offsets, answer 503
 * on /readyz naming the gap, export edr_state_gap_offsets{partition="0"}
 * > 0 (and 0 for partition 1), log the gap at error level, and still
 * apply partition 1. Restarted with EDR_ACCEPT_GAP=1 it is ready and
 * serves exactly the remaining log's state, with the accepted range in
 * its log. The memory case is a new memory worker (changelog off) that
 * starts after the log start moved.
 *
 * A last test uses real retention (retention.ms, segment.ms) instead of
 * DeleteRecords; it needs the broker's log.retention.check.interval.ms
 * low (scripts/services.sh sets 1000 for brokers it starts) and skips
 * with a message when the running broker checks less often.
 *
 * Needs the local stack (scripts/services.sh env: Kafka, Redis,
 * PostgreSQL) and the built edr-worker ($EDR_WORKER_BIN, default
 * ../edr-worker). Workers run with EDR_CHANGELOG_TOPIC=off. */
#include "schemas/edr_key.h"
#include "tests/support/cunit_main.h"
#include "tests/support/kafka_util.h"
#include "tests/support/ops_util.h"

#include <hiredis/hiredis.h>
#include <inttypes.h>
#include <librdkafka/rdkafka.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>
#include <yajl/yajl_tree.h>

#define WAIT_MS 60000
/* Retention test: the broker must check at least this often. */
#define RETENTION_CHECK_MAX_MS 5000

static double now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

/* ---- Kafka: produce to a partition, delete records, watermarks ------- */

static void make_event(int i, char *key, char *json, size_t n)
{
    char party[32];
    snprintf(party, sizeof(party), "BPNLGAP%05d", i);
    struct edr_key k = {party, "https://p.example.com/dsp", "q", "p"};
    edr_connection_key(&k, key);
    snprintf(json, n,
             "{\"specversion\":\"1.0\",\"id\":\"gap-%d\",\"source\":"
             "\"urn:connector:test\",\"type\":\"edr.negotiated\",\"data\":{"
             "\"counter_party_id\":\"%s\",\"counter_party_address\":"
             "\"https://p.example.com/dsp\",\"query_checksum\":\"q\","
             "\"policy_checksum\":\"p\",\"edr\":{\"transferProcessId\":"
             "\"tp-%d\"}}}",
             i, party, i);
}

static int dr_failed;

static void dr_cb(rd_kafka_t *rk, const rd_kafka_message_t *m, void *opaque)
{
    (void)rk;
    (void)opaque;
    if (m->err)
        dr_failed++;
}

static rd_kafka_t *client(rd_kafka_type_t type)
{
    char err[256];
    rd_kafka_conf_t *conf = rd_kafka_conf_new();
    if (rd_kafka_conf_set(conf, "bootstrap.servers",
                          test_env("EDR_KAFKA_BROKERS"), err,
                          sizeof(err)) != RD_KAFKA_CONF_OK) {
        rd_kafka_conf_destroy(conf);
        return NULL;
    }
    if (type == RD_KAFKA_PRODUCER) {
        rd_kafka_conf_set(conf, "acks", "all", err, sizeof(err));
        rd_kafka_conf_set_dr_msg_cb(conf, dr_cb);
    }
    rd_kafka_t *rk = rd_kafka_new(type, conf, err, sizeof(err));
    if (!rk) {
        fprintf(stderr, "kafka client: %s\n", err);
        rd_kafka_conf_destroy(conf);
    }
    return rk;
}

/* Events first..first+n-1 into `partition`, acknowledged. 0 or -1. */
static int produce(const char *topic, int32_t partition, int first, int n)
{
    rd_kafka_t *rk = client(RD_KAFKA_PRODUCER);
    if (!rk)
        return -1;
    dr_failed = 0;
    int rc = 0;
    for (int i = first; i < first + n && rc == 0; i++) {
        char key[EDR_CONNECTION_KEY_LEN + 1], json[768];
        make_event(i, key, json, sizeof(json));
        rd_kafka_resp_err_t err = rd_kafka_producev(
            rk, RD_KAFKA_V_TOPIC(topic), RD_KAFKA_V_PARTITION(partition),
            RD_KAFKA_V_KEY(key, strlen(key)),
            RD_KAFKA_V_VALUE(json, strlen(json)),
            RD_KAFKA_V_MSGFLAGS(RD_KAFKA_MSG_F_COPY), RD_KAFKA_V_END);
        if (err) {
            fprintf(stderr, "produce: %s\n", rd_kafka_err2str(err));
            rc = -1;
        }
    }
    if (rd_kafka_flush(rk, 30000) != RD_KAFKA_RESP_ERR_NO_ERROR || dr_failed)
        rc = -1;
    rd_kafka_destroy(rk);
    return rc;
}

/* ---- the worker and its endpoints ------------------------------------ */

struct run {
    const char *store;
    char *topic, *dlq, *table;
    char addr[32], log_path[160], file_path[160];
    char dsn[160]; /* "" : $EDR_PG_DSN */
    pid_t pid;
};

static int run_init(struct run *r, const char *store, const char *prefix)
{
    char err[256];
    memset(r, 0, sizeof(*r));
    r->store = store;
    r->topic = test_unique_name(prefix);
    r->table = test_unique_name("gapt");
    if (!r->topic || !r->table)
        return -1;
    size_t n = strlen(r->topic) + 5;
    r->dlq = malloc(n);
    if (!r->dlq)
        return -1;
    snprintf(r->dlq, n, "%s_dlq", r->topic);
    snprintf(r->log_path, sizeof(r->log_path), "%s.log", r->topic);
    snprintf(r->file_path, sizeof(r->file_path), "%s.json", r->topic);
    unlink(r->log_path);
    if (test_kafka_create_topic(test_env("EDR_KAFKA_BROKERS"), r->dlq, 1, err,
                                sizeof(err)) != 0) {
        fprintf(stderr, "create topic: %s\n", err);
        return -1;
    }
    return 0;
}

static void run_free(struct run *r)
{
    if (r->pid > 0)
        ops_worker_stop(r->pid, 30000);
    unlink(r->file_path);
    free(r->topic);
    free(r->dlq);
    free(r->table);
}

/* Starts the worker (accept_gap 0 or 1). 0 or -1. */
static int worker_start(struct run *r, int accept_gap)
{
    char e_topic[256], e_dlq[256], e_group[256], e_prefix[256], e_http[64],
        e_store[64], e_file[256], e_table[256], e_dsn[512];
    snprintf(r->addr, sizeof(r->addr), "127.0.0.1:%d", ops_free_port());
    snprintf(e_topic, sizeof(e_topic), "EDR_TOPIC=%s", r->topic);
    snprintf(e_dlq, sizeof(e_dlq), "EDR_DLQ_TOPIC=%s", r->dlq);
    snprintf(e_group, sizeof(e_group), "EDR_GROUP_ID=%s", r->topic);
    snprintf(e_prefix, sizeof(e_prefix), "EDR_RPC_PREFIX=%s", r->topic);
    snprintf(e_http, sizeof(e_http), "EDR_HTTP_ADDR=%s", r->addr);
    snprintf(e_store, sizeof(e_store), "EDR_STORE=%s", r->store);
    snprintf(e_file, sizeof(e_file), "EDR_FILE_PATH=%s", r->file_path);
    snprintf(e_table, sizeof(e_table), "EDR_PG_TABLE=%s", r->table);
    snprintf(e_dsn, sizeof(e_dsn), "EDR_PG_DSN=%s",
             r->dsn[0]                ? r->dsn
             : test_env("EDR_PG_DSN") ? test_env("EDR_PG_DSN")
                                      : "");
    const char *env[] = {e_topic,
                         e_dlq,
                         e_group,
                         e_prefix,
                         e_http,
                         e_store,
                         e_file,
                         e_table,
                         e_dsn,
                         "EDR_CHANGELOG_TOPIC=off",
                         "EDR_WORKER_ID=gap-test",
                         accept_gap ? "EDR_ACCEPT_GAP=1" : "EDR_ACCEPT_GAP=0",
                         NULL};
    FILE *f = fopen(r->log_path, "a");
    if (f) {
        fprintf(f, "---- test: start (accept_gap %d)\n", accept_gap);
        fclose(f);
    }
    r->pid = ops_worker_start(env, r->log_path);
    return r->pid > 0 ? 0 : -1;
}

static int worker_stop(struct run *r)
{
    int rc = ops_worker_stop(r->pid, 30000);
    r->pid = 0;
    if (rc != 0)
        ops_dump_log(r->log_path, 40);
    return rc;
}

static redisContext *redis_connect(void)
{
    const char *url = test_env("EDR_REDIS_URL");
    char host[128] = "127.0.0.1";
    int port = 6379, db = 0;
    if (!url || sscanf(url, "redis://%127[^:]:%d/%d", host, &port, &db) < 2)
        return NULL;
    struct timeval tv = {10, 0};
    redisContext *c = redisConnectWithTimeout(host, port, tv);
    if (c && !c->err && db)
        freeReplyObject(redisCommand(c, "SELECT %d", db));
    if (c && c->err) {
        redisFree(c);
        return NULL;
    }
    return c;
}

/* One lookup; the parsed reply (yajl_tree_free) or NULL. args: JSON. */
static yajl_val rpc(const struct run *r, const char *op, const char *args)
{
    static int seq;
    char req[2048], reply_to[300], list[300];
    redisContext *c = redis_connect();
    if (!c)
        return NULL;
    snprintf(reply_to, sizeof(reply_to), "%s:reply:%d", r->topic, ++seq);
    snprintf(list, sizeof(list), "%s:requests", r->topic);
    snprintf(req, sizeof(req),
             "{\"id\":\"g%d\",\"reply_to\":\"%s\",\"op\":\"%s\",\"args\":%s}",
             seq, reply_to, op, args);
    freeReplyObject(redisCommand(c, "LPUSH %s %s", list, req));
    redisReply *rep = redisCommand(c, "BLPOP %s 10", reply_to);
    yajl_val v = NULL;
    if (rep && rep->type == REDIS_REPLY_ARRAY && rep->elements == 2)
        v = yajl_tree_parse(rep->element[1]->str, NULL, 0);
    freeReplyObject(rep);
    redisFree(c);
    return v;
}

static const char *str_at(yajl_val v, const char *name)
{
    const char *path[] = {name, NULL};
    yajl_val s = v ? yajl_tree_get(v, path, yajl_t_string) : NULL;
    return s ? YAJL_GET_STRING(s) : "";
}

static void key_args(int i, char *out, size_t n)
{
    snprintf(out, n,
             "{\"counter_party_id\":\"BPNLGAP%05d\",\"counter_party_address\":"
             "\"https://p.example.com/dsp\",\"query_checksum\":\"q\","
             "\"policy_checksum\":\"p\"}",
             i);
}

/* count, or -1 when not ok. */
static long long count(const struct run *r)
{
    yajl_val v = rpc(r, "count", "{}");
    const char *path[] = {"result", NULL};
    yajl_val n = v && strcmp(str_at(v, "status"), "ok") == 0
                     ? yajl_tree_get(v, path, yajl_t_number)
                     : NULL;
    long long c = n ? YAJL_GET_INTEGER(n) : -1;
    yajl_tree_free(v);
    return c;
}

static int wait_count(const struct run *r, long long want)
{
    double until = now_s() + WAIT_MS / 1000.0;
    long long c = -1;
    while (now_s() < until) {
        if ((c = count(r)) == want)
            return 0;
        usleep(100000);
    }
    fprintf(stderr, "\n  count %lld, want %lld\n", c, want);
    ops_dump_log(r->log_path, 40);
    return -1;
}

/* Status of get_connection for event i's key ("ok", "not_found", ...). */
static void lookup_status(const struct run *r, int i, char *out, size_t n)
{
    char args[512];
    key_args(i, args, sizeof(args));
    yajl_val v = rpc(r, "get_connection", args);
    snprintf(out, n, "%s", v ? str_at(v, "status") : "no reply");
    yajl_tree_free(v);
}

static double metric(const struct run *r, const char *series)
{
    char *body = NULL;
    int status = 0;
    double v = -1;
    if (ops_http_get(r->addr, "/metrics", &status, &body) == 0 && status == 200)
        v = ops_metric(body, series);
    free(body);
    return v;
}

static int wait_metric(const struct run *r, const char *series, double want)
{
    double until = now_s() + WAIT_MS / 1000.0, v = -1;
    while (now_s() < until) {
        if ((v = metric(r, series)) == want)
            return 0;
        usleep(100000);
    }
    fprintf(stderr, "\n  %s = %g, want %g\n", series, v, want);
    return -1;
}

/* 1 when the worker's log holds `needle` in a line of `level` (" ERROR [")
 * after the last start line. */
static int log_has_at(const struct run *r, const char *needle,
                      const char *level)
{
    FILE *f = fopen(r->log_path, "r");
    char line[4096];
    int found = 0;
    if (!f)
        return 0;
    while (fgets(line, sizeof(line), f)) {
        if (strncmp(line, "---- test: start", 16) == 0)
            found = 0;
        else if (strstr(line, needle) && strstr(line, level))
            found = 1;
    }
    fclose(f);
    return found;
}

static int log_has(const struct run *r, const char *needle)
{
    return log_has_at(r, needle, " ERROR [");
}

static int wait_log(const struct run *r, const char *needle)
{
    double until = now_s() + WAIT_MS / 1000.0;
    while (now_s() < until) {
        if (log_has(r, needle))
            return 0;
        usleep(100000);
    }
    fprintf(stderr, "\n  log lacks \"%s\"\n", needle);
    ops_dump_log(r->log_path, 40);
    return -1;
}

/* ---- the scenario ----------------------------------------------------- */

/* Checks a running worker that must see partition 0 missing [from, to):
 * everything the contract asks of a gap. other_applied: events of
 * partition 1 it must apply meanwhile. */
static void check_gap(const struct run *r, int64_t from, int64_t to,
                      double other_applied, int p1_key)
{
    char want[128], series[160], st[32];
    snprintf(want, sizeof(want),
             "partition 0 is missing offsets %" PRId64 "-%" PRId64, from,
             to - 1);

    /* /readyz: 503 naming the gap */
    CU_ASSERT_EQUAL_FATAL(ops_wait_status(r->addr, "/readyz", 503, WAIT_MS), 0);
    char *body = NULL;
    int status = 0;
    double until = now_s() + WAIT_MS / 1000.0;
    int named = 0;
    while (!named && now_s() < until) {
        free(body);
        body = NULL;
        if (ops_http_get(r->addr, "/readyz", &status, &body) == 0 && body &&
            status == 503 && strstr(body, want))
            named = 1;
        else
            usleep(100000);
    }
    fprintf(stderr, "\n  /readyz: %d %s", status, body ? body : "");
    CU_ASSERT(named);
    CU_ASSERT_PTR_NOT_NULL(body ? strstr(body, "\"status\":\"not_ready\"")
                                : NULL);
    free(body);

    /* the metric */
    CU_ASSERT_EQUAL(wait_metric(r, "edr_state_gap_offsets{partition=\"0\"}",
                                (double)(to - from)),
                    0);
    CU_ASSERT_EQUAL(metric(r, "edr_state_gap_offsets{partition=\"1\"}"), 0);

    /* partition 1 goes on; partition 0 is not consumed */
    snprintf(series, sizeof(series),
             "edr_events_applied_total{type=\"edr.negotiated\",store=\"%s\"}",
             r->store);
    CU_ASSERT_EQUAL(wait_metric(r, series, other_applied), 0);

    /* lookups: state_incomplete naming partition and offsets; ping ok */
    char args[512];
    key_args(p1_key, args, sizeof(args));
    const char *ops[][2] = {{"get_connection", args},
                            {"get_connection_transfer_id", args},
                            {"count", "{}"},
                            {"list_connections", "{}"}};
    for (size_t i = 0; i < sizeof(ops) / sizeof(ops[0]); i++) {
        yajl_val v = rpc(r, ops[i][0], ops[i][1]);
        CU_ASSERT_PTR_NOT_NULL(v);
        CU_ASSERT_STRING_EQUAL(str_at(v, "status"), "error");
        CU_ASSERT_STRING_EQUAL(str_at(v, "code"), "state_incomplete");
        CU_ASSERT_PTR_NOT_NULL(strstr(str_at(v, "error"), want));
        if (i == 0)
            fprintf(stderr, "\n  get_connection: %s", str_at(v, "error"));
        yajl_tree_free(v);
    }
    yajl_val v = rpc(r, "ping", "{}");
    CU_ASSERT_STRING_EQUAL(str_at(v, "status"), "ok");
    yajl_tree_free(v);

    /* an error-level line */
    char line[160];
    snprintf(line, sizeof(line),
             "state gap: partition 0 of %s is missing offsets %" PRId64
             "-%" PRId64,
             r->topic, from, to - 1);
    CU_ASSERT_EQUAL(wait_log(r, line), 0);
    lookup_status(r, p1_key, st, sizeof(st));
    CU_ASSERT_STRING_EQUAL(st, "error");
}

/* Restarted with EDR_ACCEPT_GAP=1: ready, exactly the remaining state. */
static void check_accepted(struct run *r, int64_t from, int64_t to,
                           long long want_count, int gone_key, int kept_key)
{
    char st[32], line[200];
    CU_ASSERT_EQUAL_FATAL(worker_start(r, 1), 0);
    if (ops_wait_status(r->addr, "/readyz", 200, WAIT_MS) != 0) {
        ops_dump_log(r->log_path, 40);
        CU_FAIL_FATAL("not ready with EDR_ACCEPT_GAP=1");
    }
    CU_ASSERT_EQUAL(wait_count(r, want_count), 0);
    lookup_status(r, gone_key, st, sizeof(st));
    CU_ASSERT_STRING_EQUAL(st, "not_found");
    lookup_status(r, kept_key, st, sizeof(st));
    CU_ASSERT_STRING_EQUAL(st, "ok");
    CU_ASSERT_EQUAL(metric(r, "edr_state_gap_offsets{partition=\"0\"}"), 0);
    snprintf(line, sizeof(line),
             "state gap accepted (EDR_ACCEPT_GAP): partition 0 of %s: "
             "offsets %" PRId64 "-%" PRId64,
             r->topic, from, to - 1);
    CU_ASSERT_EQUAL(wait_log(r, line), 0);
    CU_ASSERT_EQUAL(worker_stop(r), 0);
}

/* memory: a new worker (changelog off) after the log start moved.
 * p0: events 0..5 at offsets 0..5, p1: events 10..14. Log start of p0
 * moved to 5: missing 0-4. */
static void test_memory(void)
{
    struct run r;
    CU_ASSERT_EQUAL_FATAL(run_init(&r, "memory", "gapmem"), 0);
    CU_ASSERT_EQUAL_FATAL(test_kafka_create_topic_with(
                              test_env("EDR_KAFKA_BROKERS"), r.topic, 2, NULL),
                          0);
    CU_ASSERT_EQUAL_FATAL(produce(r.topic, 0, 0, 6), 0);
    CU_ASSERT_EQUAL_FATAL(produce(r.topic, 1, 10, 5), 0);
    CU_ASSERT_EQUAL_FATAL(
        test_kafka_delete_records(test_env("EDR_KAFKA_BROKERS"), r.topic, 0, 5),
        0);
    CU_ASSERT_EQUAL(
        test_kafka_log_start(test_env("EDR_KAFKA_BROKERS"), r.topic, 0), 5);

    CU_ASSERT_EQUAL_FATAL(worker_start(&r, 0), 0);
    check_gap(&r, 0, 5, 5, 12);
    /* the topic keeps 7 days (the default) and the changelog is off */
    CU_ASSERT(log_has_at(&r, "retention can delete events of", " WARN ["));
    CU_ASSERT_EQUAL(worker_stop(&r), 0);
    /* remaining: event 5 of p0, 10..14 of p1 */
    check_accepted(&r, 0, 5, 6, 3, 5);
    run_free(&r);
}

/* file and postgres: applied 0..2 (p0) and 10..12 (p1), stopped; then
 * 3..5 into p0 (offsets 3..5) and 13..14 into p1 while down; p0's log
 * start moved to 5: the saved position 3 is gone, missing 3-4. */
static void saved_position_case(const char *store, const char *prefix)
{
    struct run r;
    CU_ASSERT_EQUAL_FATAL(run_init(&r, store, prefix), 0);
    CU_ASSERT_EQUAL_FATAL(test_kafka_create_topic_with(
                              test_env("EDR_KAFKA_BROKERS"), r.topic, 2, NULL),
                          0);
    CU_ASSERT_EQUAL_FATAL(produce(r.topic, 0, 0, 3), 0);
    CU_ASSERT_EQUAL_FATAL(produce(r.topic, 1, 10, 3), 0);
    CU_ASSERT_EQUAL_FATAL(worker_start(&r, 0), 0);
    CU_ASSERT_EQUAL_FATAL(wait_count(&r, 6), 0);
    CU_ASSERT_EQUAL(ops_wait_status(r.addr, "/readyz", 200, WAIT_MS), 0);
    CU_ASSERT_EQUAL(metric(&r, "edr_state_gap_offsets{partition=\"0\"}"), 0);
    CU_ASSERT_EQUAL_FATAL(worker_stop(&r), 0);

    CU_ASSERT_EQUAL_FATAL(produce(r.topic, 0, 3, 3), 0);
    CU_ASSERT_EQUAL_FATAL(produce(r.topic, 1, 13, 2), 0);
    CU_ASSERT_EQUAL_FATAL(
        test_kafka_delete_records(test_env("EDR_KAFKA_BROKERS"), r.topic, 0, 5),
        0);

    CU_ASSERT_EQUAL_FATAL(worker_start(&r, 0), 0);
    check_gap(&r, 3, 5, 2, 13);
    CU_ASSERT_EQUAL(worker_stop(&r), 0);
    /* remaining: 0..2 (kept), 5 of p0; 10..14 of p1; 3 and 4 lost */
    check_accepted(&r, 3, 5, 9, 4, 5);
    run_free(&r);
}

static void test_file(void)
{
    saved_position_case("file", "gapfile");
}

static void test_postgres(void)
{
    if (!test_env("EDR_PG_DSN")) {
        CU_FAIL("EDR_PG_DSN not set");
        return;
    }
    saved_position_case("postgres", "gappg");
}

/* After a store outage: a postgres worker on a private PostgreSQL (port
 * PG_OUTAGE_PORT) applied 0..1 (p0) and 10..11 (p1). PostgreSQL stops;
 * event 12 into p1 makes the worker notice (p1's batch waits, every
 * partition pauses); meanwhile 2..4 go into p0 (offsets 2..4) and p0's
 * log start moves to 4. When PostgreSQL is back the outage ends and the
 * check finds p0 missing 2-3, while p1's event is applied. */
#define PG_OUTAGE_PORT 15447

static void test_after_store_outage(void)
{
    struct ops_pg pg;
    char err[256];
    struct run r;
    if (getuid() != 0) {
        CU_FAIL("needs root to run a private PostgreSQL as its OS user");
        return;
    }
    CU_ASSERT_EQUAL_FATAL(run_init(&r, "postgres", "gapout"), 0);
    if (ops_pg_create(&pg, PG_OUTAGE_PORT, err, sizeof(err)) != 0) {
        fprintf(stderr, "private PostgreSQL: %s\n", err);
        CU_FAIL_FATAL("private PostgreSQL");
    }
    snprintf(r.dsn, sizeof(r.dsn),
             "postgresql://postgres@127.0.0.1:%d/postgres?connect_timeout=3",
             PG_OUTAGE_PORT);
    CU_ASSERT_EQUAL_FATAL(test_kafka_create_topic_with(
                              test_env("EDR_KAFKA_BROKERS"), r.topic, 2, NULL),
                          0);
    CU_ASSERT_EQUAL_FATAL(produce(r.topic, 0, 0, 2), 0);
    CU_ASSERT_EQUAL_FATAL(produce(r.topic, 1, 10, 2), 0);
    CU_ASSERT_EQUAL_FATAL(worker_start(&r, 0), 0);
    CU_ASSERT_EQUAL_FATAL(wait_count(&r, 4), 0);

    CU_ASSERT_EQUAL_FATAL(ops_pg_stop(&pg), 0);
    CU_ASSERT_EQUAL_FATAL(produce(r.topic, 1, 12, 1), 0);
    CU_ASSERT_EQUAL_FATAL(wait_metric(&r, "edr_store_ok", 0), 0);
    CU_ASSERT_EQUAL_FATAL(produce(r.topic, 0, 2, 3), 0);
    CU_ASSERT_EQUAL_FATAL(
        test_kafka_delete_records(test_env("EDR_KAFKA_BROKERS"), r.topic, 0, 4),
        0);
    /* No gap is known before the check at the outage's end. */
    CU_ASSERT_EQUAL(metric(&r, "edr_state_gap_offsets{partition=\"0\"}"), 0);
    CU_ASSERT_EQUAL_FATAL(ops_pg_start(&pg), 0);
    check_gap(&r, 2, 4, 5, 12);
    CU_ASSERT_EQUAL(worker_stop(&r), 0);
    ops_pg_destroy(&pg);
    run_free(&r);
}

/* Real retention: a topic with retention.ms and segment.ms small; the
 * broker deletes the old segment by itself. */
static void test_real_retention(void)
{
    if (!test_kafka_retention_is_fast(test_env("EDR_KAFKA_BROKERS"),
                                      RETENTION_CHECK_MAX_MS))
        return; /* SKIPPED, said on stderr */
    struct run r;
    CU_ASSERT_EQUAL_FATAL(run_init(&r, "memory", "gapret"), 0);
    const char *cfg[] = {"retention.ms",   "2000",   "segment.ms", "500",
                         "cleanup.policy", "delete", NULL};
    CU_ASSERT_EQUAL_FATAL(test_kafka_create_topic_with(
                              test_env("EDR_KAFKA_BROKERS"), r.topic, 1, cfg),
                          0);
    CU_ASSERT_EQUAL_FATAL(produce(r.topic, 0, 0, 3), 0);
    /* A record after segment.ms rolls the segment; retention deletes the
     * old one. Keep producing (one a second) until the log start moved. */
    int64_t low = 0;
    int next = 3;
    double until = now_s() + 120;
    while ((low = test_kafka_log_start(test_env("EDR_KAFKA_BROKERS"), r.topic,
                                       0)) <= 0 &&
           now_s() < until) {
        usleep(1000000);
        CU_ASSERT_EQUAL_FATAL(produce(r.topic, 0, next++, 1), 0);
    }
    fprintf(stderr, "\n  log start %" PRId64 " after %d events", low, next);
    CU_ASSERT_FATAL(low > 0);
    CU_ASSERT_EQUAL_FATAL(worker_start(&r, 0), 0);
    CU_ASSERT_EQUAL_FATAL(ops_wait_status(r.addr, "/readyz", 503, WAIT_MS), 0);
    char line[160];
    snprintf(line, sizeof(line), "state gap: partition 0 of %s is missing",
             r.topic);
    CU_ASSERT_EQUAL(wait_log(&r, line), 0);
    CU_ASSERT(metric(&r, "edr_state_gap_offsets{partition=\"0\"}") > 0);
    yajl_val v = rpc(&r, "count", "{}");
    CU_ASSERT_STRING_EQUAL(str_at(v, "code"), "state_incomplete");
    yajl_tree_free(v);
    CU_ASSERT_EQUAL(worker_stop(&r), 0);
    run_free(&r);
}

static void register_suites(void)
{
    CU_pSuite s = CU_add_suite("state gaps on the real broker", NULL, NULL);
    CU_add_test(s, "memory: new worker after the log start moved", test_memory);
    CU_add_test(s, "file: saved position deleted while down", test_file);
    CU_add_test(s,
                "postgres: saved position deleted while every worker "
                "was down",
                test_postgres);
    CU_add_test(s, "postgres: the log start moved during a store outage",
                test_after_store_outage);
    CU_add_test(s, "real retention (needs a low retention check interval)",
                test_real_retention);
}

int main(void)
{
    static const cunit_register_fn regs[] = {register_suites, NULL};
    return cunit_main(regs);
}

/* test_ingest.c: edr-worker end to end against the local broker (issue 5).
 *
 * For each store a few hundred negotiated/renewed/expired events, with
 * stale expiries and duplicates, go to a fresh 6-partition topic; the
 * expected state is computed here from the same events (a model that
 * shares no code with the worker), and the store's contents are compared
 * with it: through lookups over Redis (memory), by opening the state file
 * after the worker stopped (file), or the table (postgres). Restarts
 * mid-stream (SIGKILL), two workers in one group, rejected events in the
 * dead-letter topic, and a PostgreSQL outage (a private server on port
 * 15440) must all end in exactly the model's state. */
#include "base/clock.h"
#include "schemas/edr_key.h"
#include "schemas/sha256.h"
#include "stores/store.h"
#include "tests/support/cunit_main.h"
#include "tests/support/ingest_model.h"
#include "tests/support/kafka_util.h"
#include "tests/support/ops_util.h"
#include "tests/support/restore_util.h"
#include "tests/support/proc_util.h"
#include "worker/redis_url.h"

#include <CUnit/CUnit.h>
#include <hiredis/hiredis.h>
#include <inttypes.h>
#include <librdkafka/rdkafka.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>
#include <yajl/yajl_tree.h>

#define N_KEYS 30
#define PG_OUTAGE_PORT 15440

/* ---- workers --------------------------------------------------------------
 */

static char *worker_bin(void)
{
    static char path[512];
    const char *env = getenv("EDR_WORKER_BIN");
    snprintf(path, sizeof(path), "%s", env && *env ? env : EDR_WORKER_BIN);
    return path;
}

/* Starts edr-worker with env overrides ("NAME=value") and args (NULL or
 * NULL-terminated), stdout+stderr appended to log. */
static pid_t worker_start(const char *const *env, const char *const *args,
                          const char *log)
{
    return test_spawn(worker_bin(), args, env, log);
}

static const char *const catch_up[] = {"--exit-when-caught-up", NULL};

/* Waits until the log shows `who` holding at least one partition. */
static int wait_assigned(const char *log, const char *who, int seconds)
{
    char pat[128], line[1024];
    snprintf(pat, sizeof(pat), "%s%s%s kafka: assigned partitions",
             *who ? "[" : "", who, *who ? "]" : "");
    for (int i = 0; i < seconds * 10; i++) {
        FILE *f = fopen(log, "r");
        int found = 0;
        while (f && fgets(line, sizeof(line), f))
            if (strstr(line, pat) && !strstr(line, ": none"))
                found = 1;
        if (f)
            fclose(f);
        if (found)
            return 0;
        edr_sleep_ms(100);
    }
    return -1;
}

/* Waits until the sample `series` of the worker's /metrics at addr
 * equals want; 0, or -1 after seconds (*last gets the last value seen,
 * -1 when none). */
static int wait_metric(const char *addr, const char *series, double want,
                       int seconds, double *last)
{
    *last = -1;
    for (int i = 0; i < seconds * 10; i++) {
        int status = 0;
        char *body = NULL;
        if (ops_http_get(addr, "/metrics", &status, &body) == 0 &&
            status == 200 && body)
            *last = ops_metric(body, series);
        free(body);
        if (*last == want)
            return 0;
        edr_sleep_ms(100);
    }
    return -1;
}

/* Waits until rk's metadata shows topic with n partitions; 0 or -1. */
static int wait_partition_count(rd_kafka_t *rk, const char *topic, int n,
                                int seconds)
{
    rd_kafka_topic_t *rkt = rd_kafka_topic_new(rk, topic, NULL);
    int rc = -1;
    for (int i = 0; rkt && rc != 0 && i < seconds * 10; i++) {
        const struct rd_kafka_metadata *md = NULL;
        if (rd_kafka_metadata(rk, 0, rkt, &md, 1000) == 0) {
            if (md->topic_cnt == 1 && !md->topics[0].err &&
                md->topics[0].partition_cnt == n)
                rc = 0;
            rd_kafka_metadata_destroy(md);
        }
        if (rc != 0)
            edr_sleep_ms(100);
    }
    if (rkt)
        rd_kafka_topic_destroy(rkt);
    return rc;
}

static void worker_kill(pid_t pid)
{
    kill(pid, SIGKILL);
    waitpid(pid, NULL, 0);
}

struct run {
    char *topic, *dlq, *prefix, *table, *group;
    char file[256], log[256];
    char env_topic[300], env_dlq[300], env_prefix[300], env_table[300],
        env_group[300], env_file[300];
};

static void run_init(struct run *r, const char *what)
{
    char p[64];
    memset(r, 0, sizeof(*r));
    snprintf(p, sizeof(p), "ingest_%s", what);
    r->topic = test_unique_name(p);
    r->dlq = test_unique_name("ingest_dlq");
    r->prefix = test_unique_name("ingest_rpc");
    r->table = test_unique_name("ingest_t");
    r->group = test_unique_name("ingest_g");
    snprintf(r->file, sizeof(r->file), "/tmp/%s/store.json", r->topic);
    snprintf(r->log, sizeof(r->log), "/tmp/%s.log", r->topic);
    snprintf(r->env_topic, sizeof(r->env_topic), "EDR_TOPIC=%s", r->topic);
    snprintf(r->env_dlq, sizeof(r->env_dlq), "EDR_DLQ_TOPIC=%s", r->dlq);
    snprintf(r->env_prefix, sizeof(r->env_prefix), "EDR_RPC_PREFIX=%s",
             r->prefix);
    snprintf(r->env_table, sizeof(r->env_table), "EDR_PG_TABLE=%s", r->table);
    snprintf(r->env_group, sizeof(r->env_group), "EDR_GROUP_ID=%s", r->group);
    snprintf(r->env_file, sizeof(r->env_file), "EDR_FILE_PATH=%s", r->file);
}

static void run_free(struct run *r)
{
    free(r->topic);
    free(r->dlq);
    free(r->prefix);
    free(r->table);
    free(r->group);
}

static int setup_topic(const struct run *r)
{
    char errstr[512];
    const char *brokers = test_env("EDR_KAFKA_BROKERS");
    if (!brokers)
        return -1;
    if (test_kafka_create_topic(brokers, r->topic, 6, errstr, sizeof(errstr)) !=
            0 ||
        test_kafka_create_topic(brokers, r->dlq, 1, errstr, sizeof(errstr)) !=
            0) {
        fprintf(stderr, "\n  %s\n", errstr);
        return -1;
    }
    return 0;
}

/* ---- lookups over Redis (memory store) --------------------------------- */

/* The local stack's Redis, through the worker's own URL rules
 * (worker/redis_url.h: credentials, database). NULL, said on stderr. */
/* ---- the tests ------------------------------------------------------------
 */

static void test_memory_store(void)
{
    struct run r;
    struct model m;
    run_init(&r, "mem");
    model_init(&m, "mem", 11, N_KEYS);
    const char *brokers = test_env("EDR_KAFKA_BROKERS");
    CU_ASSERT_FATAL(brokers && test_env("EDR_REDIS_URL"));
    CU_ASSERT_FATAL(setup_topic(&r) == 0);
    rd_kafka_t *rk = ru_producer_new(brokers);
    CU_ASSERT_FATAL(rk != NULL);
    CU_ASSERT_EQUAL(ru_produce_events(rk, r.topic, &m, 200, 0), 0);

    const char *env[] = {r.env_topic,        r.env_dlq,           r.env_prefix,
                         "EDR_STORE=memory", "EDR_HTTP_ADDR=off", NULL};
    pid_t pid = worker_start(env, NULL, r.log);
    /* Events produced while it runs are applied too. */
    CU_ASSERT_EQUAL(ru_produce_events(rk, r.topic, &m, 150, 2), 0);

    redisContext *rc = model_redis_connect();
    CU_ASSERT_FATAL(rc && !rc->err);
    int bad = -1;
    for (int i = 0; i < 60 && bad != 0; i++) {
        bad = model_verify_rpc(rc, r.prefix, &m, 0);
        if (bad)
            edr_sleep_ms(500);
    }
    if (bad)
        model_verify_rpc(rc, r.prefix, &m, 1);
    CU_ASSERT_EQUAL(bad, 0);

    /* A second worker rebuilds the same state from the log alone. */
    CU_ASSERT_EQUAL(ops_worker_stop(pid, 10000), 0);
    pid = worker_start(env, NULL, r.log);
    bad = -1;
    for (int i = 0; i < 60 && bad != 0; i++) {
        bad = model_verify_rpc(rc, r.prefix, &m, 0);
        if (bad)
            edr_sleep_ms(500);
    }
    CU_ASSERT_EQUAL(bad, 0);
    double t0 = (double)time(NULL);
    CU_ASSERT_EQUAL(ops_worker_stop(pid, 10000), 0);
    CU_ASSERT_TRUE((double)time(NULL) - t0 <= 6);
    if (bad)
        ops_dump_log(r.log, 30);
    redisFree(rc);
    rd_kafka_destroy(rk);
    run_free(&r);
}

/* Grows topic to `total` partitions through the Admin API. */
static int add_partitions(const char *brokers, const char *topic, int total)
{
    char errstr[512];
    int rc = -1;
    rd_kafka_t *rk = test_kafka_client_new(RD_KAFKA_PRODUCER, brokers, NULL,
                                           NULL, NULL, errstr, sizeof(errstr));
    if (!rk)
        return -1;
    rd_kafka_NewPartitions_t *np = rd_kafka_NewPartitions_new(
        topic, (size_t)total, errstr, sizeof(errstr));
    rd_kafka_queue_t *q = rd_kafka_queue_new(rk);
    rd_kafka_CreatePartitions(rk, &np, 1, NULL, q);
    rd_kafka_event_t *ev = rd_kafka_queue_poll(q, 30000);
    if (ev) {
        const rd_kafka_CreatePartitions_result_t *res =
            rd_kafka_event_CreatePartitions_result(ev);
        size_t n = 0;
        const rd_kafka_topic_result_t **tr =
            res ? rd_kafka_CreatePartitions_result_topics(res, &n) : NULL;
        if (tr && n == 1 && !rd_kafka_topic_result_error(tr[0]))
            rc = 0;
        rd_kafka_event_destroy(ev);
    }
    rd_kafka_NewPartitions_destroy(np);
    rd_kafka_queue_destroy(q);
    rd_kafka_destroy(rk);
    return rc;
}

/* Partitions added while a worker runs are picked up. */
static void test_new_partitions(void)
{
    struct run r;
    struct model m;
    char errstr[512];
    run_init(&r, "grow");
    model_init(&m, "grow", 66, N_KEYS);
    const char *brokers = test_env("EDR_KAFKA_BROKERS");
    CU_ASSERT_FATAL(brokers && test_env("EDR_REDIS_URL"));
    CU_ASSERT_FATAL(test_kafka_create_topic(brokers, r.topic, 2, errstr,
                                            sizeof(errstr)) == 0);
    rd_kafka_t *rk = ru_producer_new(brokers);
    CU_ASSERT_FATAL(rk != NULL);
    CU_ASSERT_EQUAL(ru_produce_events(rk, r.topic, &m, 60, 0), 0);
    const char *env[] = {r.env_topic,        r.env_dlq,           r.env_prefix,
                         "EDR_STORE=memory", "EDR_HTTP_ADDR=off", NULL};
    pid_t pid = worker_start(env, NULL, r.log);
    CU_ASSERT_EQUAL(wait_assigned(r.log, "", 30), 0);
    redisContext *rc = model_redis_connect();
    CU_ASSERT_FATAL(rc && !rc->err);
    int bad = -1;
    for (int i = 0; i < 60 && bad != 0; i++) {
        bad = model_verify_rpc(rc, r.prefix, &m, 0);
        if (bad)
            edr_sleep_ms(500);
    }
    CU_ASSERT_EQUAL(bad, 0);
    CU_ASSERT_EQUAL_FATAL(add_partitions(brokers, r.topic, 6), 0);
    /* A fresh producer sees 6 partitions and spreads the keys anew; a key
     * moving partition is fine here: its earlier events are all applied. */
    rd_kafka_destroy(rk);
    rk = ru_producer_new(brokers);
    CU_ASSERT_FATAL(rk != NULL);
    CU_ASSERT_EQUAL_FATAL(wait_partition_count(rk, r.topic, 6, 30), 0);
    /* The worker assigns the new ones itself (its metadata refresh). */
    CU_ASSERT_EQUAL(
        test_wait_log(r.log, "kafka: assigned partitions", "5@start", 1, 30000),
        0);
    CU_ASSERT_EQUAL(ru_produce_events(rk, r.topic, &m, 80, 0), 0);
    bad = -1;
    for (int i = 0; i < 60 && bad != 0; i++) {
        bad = model_verify_rpc(rc, r.prefix, &m, 0);
        if (bad)
            edr_sleep_ms(500);
    }
    if (bad)
        model_verify_rpc(rc, r.prefix, &m, 1);
    CU_ASSERT_EQUAL(bad, 0);
    CU_ASSERT_EQUAL(ops_worker_stop(pid, 10000), 0);
    if (bad)
        ops_dump_log(r.log, 30);
    redisFree(rc);
    rd_kafka_destroy(rk);
    run_free(&r);
}

static void test_file_store_restart(void)
{
    struct run r;
    struct model m;
    struct store_err err = {0};
    run_init(&r, "file");
    model_init(&m, "file", 22, N_KEYS);
    const char *brokers = test_env("EDR_KAFKA_BROKERS");
    CU_ASSERT_FATAL(brokers != NULL);
    CU_ASSERT_FATAL(setup_topic(&r) == 0);
    rd_kafka_t *rk = ru_producer_new(brokers);
    CU_ASSERT_FATAL(rk != NULL);
    CU_ASSERT_EQUAL(ru_produce_events(rk, r.topic, &m, 120, 0), 0);

    const char *env[] = {r.env_topic, r.env_dlq,        r.env_prefix,
                         r.env_file,  "EDR_STORE=file", "EDR_HTTP_ADDR=off",
                         NULL};
    pid_t pid = worker_start(env, NULL, r.log);
    /* Killed while events keep coming. */
    CU_ASSERT_EQUAL(ru_produce_events(rk, r.topic, &m, 150, 5), 0);
    worker_kill(pid);
    CU_ASSERT_EQUAL(ru_produce_events(rk, r.topic, &m, 80, 0), 0);
    /* Restarted: resumes from the saved offsets. */
    pid = worker_start(env, catch_up, r.log);
    CU_ASSERT_EQUAL(test_wait_exit(pid, 60000), 0);

    struct store *st = file_store_open(r.file, &err);
    CU_ASSERT_PTR_NOT_NULL_FATAL(st);
    CU_ASSERT_EQUAL(model_verify_store(st, &m, 1), 0);
    store_close(st);

    /* Once more, killed right after a start: nothing lost either. */
    pid = worker_start(env, NULL, r.log);
    CU_ASSERT_EQUAL(ru_produce_events(rk, r.topic, &m, 60, 3), 0);
    worker_kill(pid);
    pid = worker_start(env, catch_up, r.log);
    CU_ASSERT_EQUAL(test_wait_exit(pid, 60000), 0);
    st = file_store_open(r.file, &err);
    CU_ASSERT_PTR_NOT_NULL_FATAL(st);
    int bad = model_verify_store(st, &m, 1);
    CU_ASSERT_EQUAL(bad, 0);
    store_close(st);
    if (bad)
        ops_dump_log(r.log, 40);
    rd_kafka_destroy(rk);
    run_free(&r);
}

/* Offsets in the store equal the topic's end offsets: every event applied,
 * none twice. */
static int offsets_at_end(struct store *st, const char *brokers,
                          const char *topic)
{
    struct store_offset *offs = NULL;
    size_t n = 0;
    struct store_err err = {0};
    char errstr[256];
    if (st->ops->load_offsets(st, topic, &offs, &n, &err) != STORE_OK)
        return -1;
    rd_kafka_t *rk = test_kafka_client_new(RD_KAFKA_CONSUMER, brokers, NULL,
                                           NULL, NULL, errstr, sizeof(errstr));
    int bad = 0;
    for (int32_t p = 0; p < 6; p++) {
        int64_t lo, hi, have = 0;
        if (rd_kafka_query_watermark_offsets(rk, topic, p, &lo, &hi, 5000)) {
            bad++;
            continue;
        }
        for (size_t i = 0; i < n; i++)
            if (offs[i].partition == p)
                have = offs[i].next_offset;
        if (have != hi) {
            fprintf(stderr,
                    "\n  partition %d: offset %" PRId64 ", end %" PRId64, p,
                    have, hi);
            bad++;
        }
    }
    rd_kafka_destroy(rk);
    free(offs);
    return bad;
}

static int wait_pg(const char *dsn, const char *table, const struct model *m,
                   int seconds)
{
    int bad = -1;
    for (int i = 0; i < seconds * 2 && bad != 0; i++) {
        struct store_err err = {0};
        struct store *st = pg_store_open(dsn, table, &err);
        if (st) {
            bad = model_verify_store(st, m, 0);
            store_close(st);
        }
        if (bad)
            edr_sleep_ms(500);
    }
    return bad;
}

static void test_postgres_group(void)
{
    struct run r;
    struct model m;
    run_init(&r, "pg");
    model_init(&m, "pg", 33, N_KEYS);
    const char *brokers = test_env("EDR_KAFKA_BROKERS");
    const char *dsn = test_env("EDR_PG_DSN");
    CU_ASSERT_FATAL(brokers && dsn);
    CU_ASSERT_FATAL(setup_topic(&r) == 0);
    rd_kafka_t *rk = ru_producer_new(brokers);
    CU_ASSERT_FATAL(rk != NULL);
    CU_ASSERT_EQUAL(ru_produce_events(rk, r.topic, &m, 150, 0), 0);

    /* Short session timeout: the survivor takes over the killed worker's
     * partitions within seconds. */
    const char *env_a[] = {r.env_topic,
                           r.env_dlq,
                           r.env_prefix,
                           r.env_table,
                           r.env_group,
                           "EDR_STORE=postgres",
                           "EDR_HTTP_ADDR=off",
                           "EDR_WORKER_ID=worker-a",
                           NULL};
    const char *env_b[] = {r.env_topic,
                           r.env_dlq,
                           r.env_prefix,
                           r.env_table,
                           r.env_group,
                           "EDR_STORE=postgres",
                           "EDR_HTTP_ADDR=off",
                           "EDR_WORKER_ID=worker-b",
                           NULL};
    static const char *const group_args[] = {"-X", "session.timeout.ms=6000",
                                             "-X", "heartbeat.interval.ms=500",
                                             NULL};
    pid_t a = worker_start(env_a, group_args, r.log);
    pid_t b = worker_start(env_b, group_args, r.log);
    /* Both joined and share the partitions. */
    CU_ASSERT_EQUAL(wait_assigned(r.log, "worker-a", 30), 0);
    CU_ASSERT_EQUAL(wait_assigned(r.log, "worker-b", 30), 0);
    CU_ASSERT_EQUAL(ru_produce_events(rk, r.topic, &m, 150, 5), 0);
    worker_kill(a);
    CU_ASSERT_EQUAL(ru_produce_events(rk, r.topic, &m, 100, 0), 0);

    int bad = wait_pg(dsn, r.table, &m, 60);
    CU_ASSERT_EQUAL(bad, 0);
    struct store_err err = {0};
    struct store *st = pg_store_open(dsn, r.table, &err);
    CU_ASSERT_PTR_NOT_NULL_FATAL(st);
    if (bad)
        model_verify_store(st, &m, 1);
    /* Give the last batch's offsets a moment, then all must be at the end. */
    int off_bad = -1;
    for (int i = 0; i < 20 && off_bad != 0; i++) {
        off_bad = offsets_at_end(st, brokers, r.topic);
        if (off_bad)
            edr_sleep_ms(500);
    }
    CU_ASSERT_EQUAL(off_bad, 0);
    store_close(st);
    CU_ASSERT_EQUAL(ops_worker_stop(b, 10000), 0);
    if (bad || off_bad)
        ops_dump_log(r.log, 60);
    rd_kafka_destroy(rk);
    run_free(&r);
}

/* Produces negotiated events for keys BPNLFENCE<from..to-1> to partition 0
 * (offsets in that order), then flushes. */
static int produce_fence(rd_kafka_t *rk, const char *topic, int from, int to)
{
    for (int i = from; i < to; i++) {
        char buf[640];
        int n = snprintf(
            buf, sizeof(buf),
            "{\"specversion\":\"1.0\",\"id\":\"fence-%d\",\"source\":"
            "\"urn:test\",\"type\":\"edr.negotiated\",\"data\":{"
            "\"counter_party_id\":\"BPNLFENCE%02d\",\"counter_party_address\":"
            "\"https://f/\",\"query_checksum\":\"q\",\"policy_checksum\":\"p\","
            "\"edr\":{\"transferProcessId\":\"tp-fence-%d\"}}}",
            i, i, i);
        if (rd_kafka_producev(rk, RD_KAFKA_V_TOPIC(topic),
                              RD_KAFKA_V_PARTITION(0),
                              RD_KAFKA_V_MSGFLAGS(RD_KAFKA_MSG_F_COPY),
                              RD_KAFKA_V_VALUE(buf, (size_t)n),
                              RD_KAFKA_V_END) != RD_KAFKA_RESP_ERR_NO_ERROR)
            return -1;
    }
    return rd_kafka_flush(rk, 30000) == 0 ? 0 : -1;
}

/* Partition 0's stored offset, waiting up to seconds for it to be want;
 * returns the last seen (-1: none). */
static int64_t wait_p0_offset(struct store *st, const char *topic, int64_t want,
                              int seconds)
{
    int64_t got = -1;
    for (int i = 0; i < seconds * 10 && got != want; i++) {
        struct store_err err = {0};
        struct store_offset *o = NULL;
        size_t n = 0;
        got = -1;
        if (st->ops->load_offsets(st, topic, &o, &n, &err) == STORE_OK)
            for (size_t j = 0; j < n; j++)
                if (o[j].partition == 0)
                    got = o[j].next_offset;
        free(o);
        if (got != want)
            edr_sleep_ms(100);
    }
    return got;
}

static int fence_present(struct store *st, int i)
{
    char party[32], *tid = NULL;
    snprintf(party, sizeof(party), "BPNLFENCE%02d", i);
    struct edr_key k = {party, "https://f/", "q", "p"};
    struct store_err err = {0};
    int rc = st->ops->get_transfer_id(st, &k, &tid, &err);
    free(tid);
    return rc == STORE_OK;
}

/* A zombie's view: another writer applied partition 0 past where this
 * worker's next batch starts. The worker's batch is fenced: it drops that
 * partition's events the other writer covered, seeks to the stored offset
 * and applies only what follows. */
static void test_postgres_fence(void)
{
    struct run r;
    run_init(&r, "fence");
    const char *brokers = test_env("EDR_KAFKA_BROKERS");
    const char *dsn = test_env("EDR_PG_DSN");
    CU_ASSERT_FATAL(brokers && dsn);
    CU_ASSERT_FATAL(setup_topic(&r) == 0);
    rd_kafka_t *rk = ru_producer_new(brokers);
    CU_ASSERT_FATAL(rk != NULL);
    CU_ASSERT_EQUAL(produce_fence(rk, r.topic, 0, 10), 0);
    const char *env[] = {r.env_topic,
                         r.env_dlq,
                         r.env_prefix,
                         r.env_table,
                         r.env_group,
                         "EDR_STORE=postgres",
                         "EDR_HTTP_ADDR=off",
                         "EDR_WORKER_ID=worker-f",
                         NULL};
    pid_t a = worker_start(env, NULL, r.log);
    CU_ASSERT_EQUAL(wait_assigned(r.log, "worker-f", 30), 0);
    struct store_err err = {0};
    struct store *st = pg_store_open(dsn, r.table, &err);
    CU_ASSERT_PTR_NOT_NULL_FATAL(st);
    CU_ASSERT_EQUAL(wait_p0_offset(st, r.topic, 10, 30), 10);

    /* The other writer takes offsets 10..14 of partition 0. */
    struct edr_key ok = {"BPNLFENCEOTHER", "https://f/", "q", "p"};
    static const char json[] = "{\"transferProcessId\":\"tp-other\"}";
    struct store_op put = {STORE_OP_PUT, ok, "tp-other", json,
                           sizeof(json) - 1};
    struct store_offset off = {0, 15, 10};
    struct store_batch b = {.ops = &put,
                            .n_ops = 1,
                            .topic = r.topic,
                            .offsets = &off,
                            .n_offsets = 1};
    CU_ASSERT_EQUAL(st->ops->apply(st, &b, &err), STORE_OK);
    CU_ASSERT_EQUAL(produce_fence(rk, r.topic, 10, 20), 0);

    CU_ASSERT_EQUAL(wait_p0_offset(st, r.topic, 20, 30), 20);
    int wrong = 0;
    for (int i = 0; i < 20; i++)
        wrong += fence_present(st, i) != (i < 10 || i >= 15);
    CU_ASSERT_EQUAL(wrong, 0);
    CU_ASSERT((test_log_count(r.log,
                              "partition 0 was advanced by another worker "
                              "past offset 10",
                              NULL) > 0));
    store_close(st);
    CU_ASSERT_EQUAL(ops_worker_stop(a, 10000), 0);
    if (wrong)
        ops_dump_log(r.log, 60);
    rd_kafka_destroy(rk);
    run_free(&r);
}

static void test_dead_letters(void)
{
    struct run r;
    struct model m;
    struct store_err err = {0};
    run_init(&r, "dlq");
    model_init(&m, "dlq", 44, N_KEYS);
    const char *brokers = test_env("EDR_KAFKA_BROKERS");
    CU_ASSERT_FATAL(brokers != NULL);
    CU_ASSERT_FATAL(setup_topic(&r) == 0);
    rd_kafka_t *rk = ru_producer_new(brokers);
    CU_ASSERT_FATAL(rk != NULL);

    static const char *const bad_events[] = {
        "not json{",
        "{\"specversion\":\"1.0\",\"id\":\"x\",\"source\":\"s\",\"type\":"
        "\"edr.negotiated\",\"data\":{\"counter_party_id\":\"a\","
        "\"counter_party_address\":\"b\",\"query_checksum\":\"c\","
        "\"edr\":{\"transferProcessId\":\"t\"}}}",
        "{\"specversion\":\"1.0\",\"id\":\"x\",\"source\":\"s\",\"type\":"
        "\"edr.bogus\",\"data\":{\"counter_party_id\":\"a\","
        "\"counter_party_address\":\"b\",\"query_checksum\":\"c\","
        "\"policy_checksum\":\"d\"}}",
        "{\"specversion\":\"1.0\",\"id\":\"x\",\"source\":\"s\",\"type\":"
        "\"edr.renewed\",\"data\":{\"counter_party_id\":\"a\","
        "\"counter_party_address\":\"b\",\"query_checksum\":\"c\","
        "\"policy_checksum\":\"d\"}}",
        "{\"specversion\":\"1.0\",\"id\":\"\xff\xfe\",\"source\":\"s\"}",
        "",
    };
    enum { N_BAD = sizeof(bad_events) / sizeof(bad_events[0]) };
    struct sent sent[N_BAD];
    memset(sent, 0, sizeof(sent));
    char xt[N_BAD][16];
    for (int i = 0; i < N_BAD; i++) {
        CU_ASSERT_EQUAL(ru_produce_events(rk, r.topic, &m, 8, 0), 0);
        snprintf(xt[i], sizeof(xt[i]), "bad-%d", i);
        char key[16];
        snprintf(key, sizeof(key), "k%d", i);
        CU_ASSERT_EQUAL(ru_produce(rk, r.topic, &m, -1, key, bad_events[i],
                                   strlen(bad_events[i]), xt[i], &sent[i]),
                        0);
    }
    CU_ASSERT_EQUAL(ru_produce_events(rk, r.topic, &m, 8, 0), 0);
    for (int i = 0; i < N_BAD; i++)
        CU_ASSERT_EQUAL(sent[i].err, 1);

    const char *env[] = {r.env_topic, r.env_dlq,        r.env_prefix,
                         r.env_file,  "EDR_STORE=file", "EDR_HTTP_ADDR=off",
                         NULL};
    pid_t pid = worker_start(env, catch_up, r.log);
    CU_ASSERT_EQUAL(test_wait_exit(pid, 60000), 0);
    struct store *st = file_store_open(r.file, &err);
    CU_ASSERT_PTR_NOT_NULL_FATAL(st);
    CU_ASSERT_EQUAL(model_verify_store(st, &m, 1), 0);
    store_close(st);

    /* The dead-letter topic holds each rejected event once, unchanged,
     * with the four headers. */
    char errstr[512];
    const char *const group_props[] = {"group.id", r.group, NULL};
    rd_kafka_t *c =
        test_kafka_client_new(RD_KAFKA_CONSUMER, brokers, group_props, NULL,
                              NULL, errstr, sizeof(errstr));
    CU_ASSERT_PTR_NOT_NULL_FATAL(c);
    rd_kafka_poll_set_consumer(c);
    rd_kafka_topic_partition_list_t *l = rd_kafka_topic_partition_list_new(1);
    rd_kafka_topic_partition_list_add(l, r.dlq, 0)->offset =
        RD_KAFKA_OFFSET_BEGINNING;
    rd_kafka_assign(c, l);
    rd_kafka_topic_partition_list_destroy(l);
    int seen[N_BAD] = {0}, got = 0, extra = 0;
    for (int i = 0; i < 100 && got < N_BAD; i++) {
        rd_kafka_message_t *msg = rd_kafka_consumer_poll(c, 200);
        if (!msg)
            continue;
        if (msg->err) {
            rd_kafka_message_destroy(msg);
            continue;
        }
        got++;
        rd_kafka_headers_t *h = NULL;
        const void *v;
        size_t vlen;
        char text[5][256];
        const char *names[] = {"edr-error", "edr-source-topic",
                               "edr-source-partition", "edr-source-offset",
                               "x-test"};
        rd_kafka_message_headers(msg, &h);
        for (int j = 0; j < 5; j++) {
            text[j][0] = '\0';
            if (h && rd_kafka_header_get_last(h, names[j], &v, &vlen) == 0 && v)
                snprintf(text[j], sizeof(text[j]), "%.*s", (int)vlen,
                         (const char *)v);
        }
        int idx = -1;
        if (sscanf(text[4], "bad-%d", &idx) != 1 || idx < 0 || idx >= N_BAD) {
            extra++;
        } else {
            seen[idx]++;
            char part[16], off[32], key[16];
            snprintf(part, sizeof(part), "%" PRId32, sent[idx].partition);
            snprintf(off, sizeof(off), "%" PRId64, sent[idx].offset);
            snprintf(key, sizeof(key), "k%d", idx);
            CU_ASSERT(strlen(text[0]) > 0);
            CU_ASSERT_STRING_EQUAL(text[1], r.topic);
            CU_ASSERT_STRING_EQUAL(text[2], part);
            CU_ASSERT_STRING_EQUAL(text[3], off);
            CU_ASSERT(msg->len == strlen(bad_events[idx]) &&
                      (msg->len == 0 ||
                       memcmp(msg->payload, bad_events[idx], msg->len) == 0));
            CU_ASSERT(msg->key_len == strlen(key) &&
                      memcmp(msg->key, key, msg->key_len) == 0);
            fprintf(stderr, "\n  dead letter %d: %s", idx, text[0]);
        }
        rd_kafka_message_destroy(msg);
    }
    CU_ASSERT_EQUAL(got, N_BAD);
    CU_ASSERT_EQUAL(extra, 0);
    for (int i = 0; i < N_BAD; i++)
        CU_ASSERT_EQUAL(seen[i], 1);
    rd_kafka_consumer_close(c);
    rd_kafka_destroy(c);
    rd_kafka_destroy(rk);
    run_free(&r);
}

/* Creates topic (partitions, replication 1) with one topic config
 * name=value through the Admin API. 0 or -1. */
static int create_topic_with(const char *brokers, const char *topic,
                             int partitions, const char *name,
                             const char *value)
{
    char errstr[512];
    int rc = -1;
    rd_kafka_t *rk = test_kafka_client_new(RD_KAFKA_PRODUCER, brokers, NULL,
                                           NULL, NULL, errstr, sizeof(errstr));
    if (!rk)
        return -1;
    rd_kafka_NewTopic_t *nt =
        rd_kafka_NewTopic_new(topic, partitions, 1, errstr, sizeof(errstr));
    rd_kafka_NewTopic_set_config(nt, name, value);
    rd_kafka_queue_t *q = rd_kafka_queue_new(rk);
    rd_kafka_CreateTopics(rk, &nt, 1, NULL, q);
    rd_kafka_event_t *ev = rd_kafka_queue_poll(q, 30000);
    if (ev) {
        const rd_kafka_CreateTopics_result_t *res =
            rd_kafka_event_CreateTopics_result(ev);
        size_t n = 0;
        const rd_kafka_topic_result_t **tr =
            res ? rd_kafka_CreateTopics_result_topics(res, &n) : NULL;
        if (tr && n == 1 && !rd_kafka_topic_result_error(tr[0]))
            rc = 0;
        else if (tr && n == 1)
            fprintf(stderr, "\n  create %s: %s", topic,
                    rd_kafka_topic_result_error_string(tr[0]));
        rd_kafka_event_destroy(ev);
    }
    rd_kafka_NewTopic_destroy(nt);
    rd_kafka_queue_destroy(q);
    /* Wait for the leader, as test_kafka_create_topic does. */
    if (rc == 0 && wait_partition_count(rk, topic, partitions, 30) != 0)
        rc = -1;
    rd_kafka_destroy(rk);
    return rc;
}

/* Header `name` of msg as text in out ("" when absent). */
static void header_text(rd_kafka_message_t *msg, const char *name, char *out,
                        size_t cap)
{
    rd_kafka_headers_t *h = NULL;
    const void *v = NULL;
    size_t vlen = 0;
    out[0] = '\0';
    if (rd_kafka_message_headers(msg, &h) == 0 &&
        rd_kafka_header_get_last(h, name, &v, &vlen) == 0 && v)
        snprintf(out, cap, "%.*s", (int)vlen, (const char *)v);
}

/* (v2) A rejected event bigger than the dead-letter topic's
 * max.message.bytes: its copy has an empty value, edr-value-size and
 * edr-value-sha256, and an edr-error saying the value was left out; the
 * partition moves on past it. */
static void test_dead_letter_too_large(void)
{
    struct run r;
    struct model m;
    struct store_err err = {0};
    char errstr[512];
    run_init(&r, "dlqbig");
    model_init(&m, "dlqbig", 77, N_KEYS);
    const char *brokers = test_env("EDR_KAFKA_BROKERS");
    CU_ASSERT_FATAL(brokers != NULL);
    CU_ASSERT_FATAL(test_kafka_create_topic(brokers, r.topic, 1, errstr,
                                            sizeof(errstr)) == 0);
    CU_ASSERT_FATAL(
        create_topic_with(brokers, r.dlq, 1, "max.message.bytes", "2048") == 0);
    rd_kafka_t *rk = ru_producer_new(brokers);
    CU_ASSERT_FATAL(rk != NULL);
    CU_ASSERT_EQUAL(ru_produce_events(rk, r.topic, &m, 20, 0), 0);
    /* 4 KiB of valid JSON that is no event (no id, no data). */
    static char big[4096 + 1];
    const char *head = "{\"specversion\":\"1.0\",\"pad\":\"";
    size_t hl = strlen(head);
    memcpy(big, head, hl);
    memset(big + hl, 'x', 4096 - hl - 2);
    memcpy(big + 4096 - 2, "\"}", 3);
    CU_ASSERT_EQUAL_FATAL(strlen(big), 4096);
    struct sent sent = {0};
    CU_ASSERT_EQUAL(
        ru_produce(rk, r.topic, &m, -1, "big", big, 4096, "big-one", &sent), 0);
    CU_ASSERT_EQUAL(ru_produce_events(rk, r.topic, &m, 20, 0), 0);
    CU_ASSERT_EQUAL(sent.err, 1);

    const char *env[] = {r.env_topic, r.env_dlq,        r.env_prefix,
                         r.env_file,  "EDR_STORE=file", "EDR_HTTP_ADDR=off",
                         NULL};
    pid_t pid = worker_start(env, catch_up, r.log);
    int code = test_wait_exit(pid, 60000);
    CU_ASSERT_EQUAL(code, 0); /* it moved past the event and caught up */
    if (code < 0)
        worker_kill(pid);
    struct store *st = file_store_open(r.file, &err);
    CU_ASSERT_PTR_NOT_NULL_FATAL(st);
    CU_ASSERT_EQUAL(model_verify_store(st, &m, 1), 0);
    store_close(st);

    struct sha256 s;
    unsigned char d[32];
    char want_sha[65], want_off[32];
    sha256_init(&s);
    sha256_update(&s, big, 4096);
    sha256_final(&s, d);
    for (int i = 0; i < 32; i++)
        snprintf(want_sha + 2 * i, 3, "%02x", d[i]);
    snprintf(want_off, sizeof(want_off), "%" PRId64, sent.offset);

    const char *const group_props[] = {"group.id", r.group, NULL};
    rd_kafka_t *c =
        test_kafka_client_new(RD_KAFKA_CONSUMER, brokers, group_props, NULL,
                              NULL, errstr, sizeof(errstr));
    CU_ASSERT_PTR_NOT_NULL_FATAL(c);
    rd_kafka_poll_set_consumer(c);
    rd_kafka_topic_partition_list_t *l = rd_kafka_topic_partition_list_new(1);
    rd_kafka_topic_partition_list_add(l, r.dlq, 0)->offset =
        RD_KAFKA_OFFSET_BEGINNING;
    rd_kafka_assign(c, l);
    rd_kafka_topic_partition_list_destroy(l);
    int got = 0;
    for (int i = 0; i < 50 && got == 0; i++) {
        rd_kafka_message_t *msg = rd_kafka_consumer_poll(c, 200);
        if (!msg)
            continue;
        if (!msg->err) {
            char size[32], sha[80], why[512], off[32], xt[32];
            got++;
            header_text(msg, "edr-value-size", size, sizeof(size));
            header_text(msg, "edr-value-sha256", sha, sizeof(sha));
            header_text(msg, "edr-error", why, sizeof(why));
            header_text(msg, "edr-source-offset", off, sizeof(off));
            header_text(msg, "x-test", xt, sizeof(xt));
            fprintf(stderr, "\n  dead letter: %zu bytes, edr-error: %s",
                    msg->len, why);
            CU_ASSERT_EQUAL(msg->len, 0);
            CU_ASSERT_STRING_EQUAL(size, "4096");
            CU_ASSERT_STRING_EQUAL(sha, want_sha);
            CU_ASSERT_PTR_NOT_NULL(strstr(why, "value left out"));
            CU_ASSERT_PTR_NOT_NULL(strstr(why, "too large"));
            CU_ASSERT_STRING_EQUAL(off, want_off);
            CU_ASSERT_STRING_EQUAL(xt, "big-one");
            CU_ASSERT(msg->key_len == 3 && memcmp(msg->key, "big", 3) == 0);
        }
        rd_kafka_message_destroy(msg);
    }
    CU_ASSERT_EQUAL(got, 1);
    if (got != 1 || code != 0)
        ops_dump_log(r.log, 40);
    rd_kafka_consumer_close(c);
    rd_kafka_destroy(c);
    rd_kafka_destroy(rk);
    run_free(&r);
}

/* Sets one config of topic through the Admin API (AlterConfigs). */
static int alter_topic(const char *brokers, const char *topic, const char *name,
                       const char *value)
{
    char errstr[512];
    int rc = -1;
    rd_kafka_t *rk = test_kafka_client_new(RD_KAFKA_PRODUCER, brokers, NULL,
                                           NULL, NULL, errstr, sizeof(errstr));
    if (!rk)
        return -1;
    rd_kafka_ConfigResource_t *cr =
        rd_kafka_ConfigResource_new(RD_KAFKA_RESOURCE_TOPIC, topic);
    rd_kafka_ConfigResource_set_config(cr, name, value);
    rd_kafka_queue_t *q = rd_kafka_queue_new(rk);
    rd_kafka_AlterConfigs(rk, &cr, 1, NULL, q);
    rd_kafka_event_t *ev = rd_kafka_queue_poll(q, 30000);
    if (ev) {
        const rd_kafka_AlterConfigs_result_t *res =
            rd_kafka_event_AlterConfigs_result(ev);
        size_t n = 0;
        const rd_kafka_ConfigResource_t **rs =
            res ? rd_kafka_AlterConfigs_result_resources(res, &n) : NULL;
        if (rd_kafka_event_error(ev) == 0 && rs && n == 1 &&
            rd_kafka_ConfigResource_error(rs[0]) == 0)
            rc = 0;
        rd_kafka_event_destroy(ev);
    }
    rd_kafka_ConfigResource_destroy(cr);
    rd_kafka_queue_destroy(q);
    rd_kafka_destroy(rk);
    return rc;
}

/* Produces negotiated events for BPNLHOLD<from..to-1> to partition part,
 * then flushes. */
static int produce_hold(rd_kafka_t *rk, const char *topic, int32_t part,
                        int from, int to)
{
    for (int i = from; i < to; i++) {
        char buf[640];
        int n = snprintf(
            buf, sizeof(buf),
            "{\"specversion\":\"1.0\",\"id\":\"hold-%d\",\"source\":"
            "\"urn:test\",\"type\":\"edr.negotiated\",\"data\":{"
            "\"counter_party_id\":\"BPNLHOLD%02d\",\"counter_party_address\":"
            "\"https://h/\",\"query_checksum\":\"q\",\"policy_checksum\":\"p\","
            "\"edr\":{\"transferProcessId\":\"tp-hold-%d\"}}}",
            i, i, i);
        if (rd_kafka_producev(rk, RD_KAFKA_V_TOPIC(topic),
                              RD_KAFKA_V_PARTITION(part),
                              RD_KAFKA_V_MSGFLAGS(RD_KAFKA_MSG_F_COPY),
                              RD_KAFKA_V_VALUE(buf, (size_t)n),
                              RD_KAFKA_V_END) != RD_KAFKA_RESP_ERR_NO_ERROR)
            return -1;
    }
    return rd_kafka_flush(rk, 30000) == 0 ? 0 : -1;
}

/* How many of BPNLHOLD<from..to-1> the worker answers as present. */
static int hold_present(redisContext *rc, const char *prefix, int from, int to)
{
    const char *status_path[] = {"status", NULL};
    int n = 0;
    for (int i = from; i < to; i++) {
        struct conn c = {0};
        snprintf(c.party, sizeof(c.party), "BPNLHOLD%02d", i);
        snprintf(c.address, sizeof(c.address), "https://h/");
        snprintf(c.query, sizeof(c.query), "q");
        snprintf(c.policy, sizeof(c.policy), "p");
        yajl_val v = model_rpc_call(rc, prefix, "get_connection", &c);
        yajl_val st = v ? yajl_tree_get(v, status_path, yajl_t_string) : NULL;
        n += st && strcmp(model_str_of(st), "ok") == 0;
        yajl_tree_free(v);
    }
    return n;
}

/* (v2) A dead-letter copy that keeps failing holds only its partition, at
 * that event: the events before it and the other partitions are applied;
 * once the dead-letter topic takes the copy, the partition moves on. The
 * copy fails because the topic's max.message.bytes (64) is below even a
 * value-less copy with its headers. */
static void test_dead_letter_hold(void)
{
    struct run r;
    char errstr[512];
    run_init(&r, "dlqhold");
    const char *brokers = test_env("EDR_KAFKA_BROKERS");
    CU_ASSERT_FATAL(brokers && test_env("EDR_REDIS_URL"));
    CU_ASSERT_FATAL(test_kafka_create_topic(brokers, r.topic, 2, errstr,
                                            sizeof(errstr)) == 0);
    CU_ASSERT_FATAL(
        create_topic_with(brokers, r.dlq, 1, "max.message.bytes", "64") == 0);
    rd_kafka_t *rk = ru_producer_new(brokers);
    CU_ASSERT_FATAL(rk != NULL);
    CU_ASSERT_EQUAL(produce_hold(rk, r.topic, 0, 0, 4), 0);
    static const char bad[] = "not json{";
    CU_ASSERT_EQUAL(rd_kafka_producev(
                        rk, RD_KAFKA_V_TOPIC(r.topic), RD_KAFKA_V_PARTITION(0),
                        RD_KAFKA_V_MSGFLAGS(RD_KAFKA_MSG_F_COPY),
                        RD_KAFKA_V_VALUE((void *)bad, sizeof(bad) - 1),
                        RD_KAFKA_V_END),
                    RD_KAFKA_RESP_ERR_NO_ERROR);
    CU_ASSERT_EQUAL(produce_hold(rk, r.topic, 0, 4, 8), 0);
    CU_ASSERT_EQUAL(produce_hold(rk, r.topic, 1, 10, 18), 0);

    const char *env[] = {r.env_topic,        r.env_dlq,           r.env_prefix,
                         "EDR_STORE=memory", "EDR_HTTP_ADDR=off", NULL};
    pid_t pid = worker_start(env, NULL, r.log);
    redisContext *rc = model_redis_connect();
    CU_ASSERT_FATAL(rc && !rc->err);
    /* Before the bad event (partition 0) and the other partition: all. */
    int before = 0, other = 0;
    for (int i = 0; i < 120 && (before < 4 || other < 8); i++) {
        before = hold_present(rc, r.prefix, 0, 4);
        other = hold_present(rc, r.prefix, 10, 18);
        if (before < 4 || other < 8)
            edr_sleep_ms(500);
    }
    CU_ASSERT_EQUAL(before, 4);
    CU_ASSERT_EQUAL(other, 8);
    CU_ASSERT_EQUAL(
        test_wait_log(r.log, "partition 0 held at offset 4", "", 1, 30000), 0);
    /* After it: held, through several retries. */
    CU_ASSERT_EQUAL(
        test_wait_log(r.log, "partition 0 held at offset 4", NULL, 3, 60000),
        0);
    CU_ASSERT_EQUAL(hold_present(rc, r.prefix, 4, 8), 0);
    CU_ASSERT_EQUAL(waitpid(pid, NULL, WNOHANG), 0);

    /* The topic takes the copy now: the partition moves on. */
    CU_ASSERT_EQUAL_FATAL(
        alter_topic(brokers, r.dlq, "max.message.bytes", "1000000"), 0);
    int after = 0;
    for (int i = 0; i < 120 && after < 4; i++) {
        after = hold_present(rc, r.prefix, 4, 8);
        if (after < 4)
            edr_sleep_ms(500);
    }
    CU_ASSERT_EQUAL(after, 4);
    CU_ASSERT_EQUAL(ops_worker_stop(pid, 10000), 0);
    if (before < 4 || other < 8 || after < 4)
        ops_dump_log(r.log, 40);
    redisFree(rc);
    rd_kafka_destroy(rk);
    run_free(&r);
}

/* A private PostgreSQL on PG_OUTAGE_PORT that the test may stop, its DSN
 * and the EDR_PG_DSN line for the worker. 0, or -1 (said on stderr). */
static int outage_pg_create(struct ops_pg *pg, char *dsn, size_t dsn_size,
                            char *env_dsn, size_t env_size)
{
    char errstr[512];
    if (ops_pg_create(pg, PG_OUTAGE_PORT, errstr, sizeof(errstr)) != 0) {
        fprintf(stderr, "\n  private PostgreSQL on port %d: %s\n",
                PG_OUTAGE_PORT, errstr);
        return -1;
    }
    snprintf(dsn, dsn_size,
             "host=127.0.0.1 port=%d user=postgres dbname=postgres "
             "connect_timeout=2",
             PG_OUTAGE_PORT);
    snprintf(env_dsn, env_size, "EDR_PG_DSN=%s", dsn);
    return 0;
}

static void test_postgres_outage(void)
{
    struct run r;
    struct model m;
    struct ops_pg pg = {0};
    char dsn[256], env_dsn[300];
    run_init(&r, "pgdown");
    model_init(&m, "pgdown", 55, N_KEYS);
    const char *brokers = test_env("EDR_KAFKA_BROKERS");
    CU_ASSERT_FATAL(brokers != NULL);
    CU_ASSERT_FATAL(setup_topic(&r) == 0);
    CU_ASSERT_FATAL(
        outage_pg_create(&pg, dsn, sizeof(dsn), env_dsn, sizeof(env_dsn)) == 0);
    char addr[64], env_http[100];
    snprintf(addr, sizeof(addr), "127.0.0.1:%d", ops_free_port());
    snprintf(env_http, sizeof(env_http), "EDR_HTTP_ADDR=%s", addr);
    rd_kafka_t *rk = ru_producer_new(brokers);
    CU_ASSERT_FATAL(rk != NULL);
    CU_ASSERT_EQUAL(ru_produce_events(rk, r.topic, &m, 100, 0), 0);

    const char *env[] = {
        r.env_topic, r.env_dlq, r.env_prefix,         r.env_table, r.env_group,
        env_dsn,     env_http,  "EDR_STORE=postgres", NULL};
    pid_t pid = worker_start(env, NULL, r.log);
    CU_ASSERT_EQUAL(wait_pg(dsn, r.table, &m, 30), 0);
    double v;
    CU_ASSERT_EQUAL(wait_metric(addr, "edr_store_ok", 1, 10, &v), 0);

    CU_ASSERT_EQUAL(ops_pg_stop(&pg), 0);
    CU_ASSERT_EQUAL(ru_produce_events(rk, r.topic, &m, 150, 2), 0);
    /* The outage is noticed (the gauge, /readyz) and waited out, never a
     * crash. */
    CU_ASSERT_EQUAL(wait_metric(addr, "edr_store_ok", 0, 30, &v), 0);
    CU_ASSERT_EQUAL(ops_wait_status(addr, "/readyz", 503, 10000), 0);
    CU_ASSERT_EQUAL(waitpid(pid, NULL, WNOHANG), 0);
    CU_ASSERT_EQUAL(ops_pg_start(&pg), 0);
    int bad = wait_pg(dsn, r.table, &m, 60);
    CU_ASSERT_EQUAL(bad, 0);
    CU_ASSERT_EQUAL(wait_metric(addr, "edr_store_ok", 1, 30, &v), 0);
    CU_ASSERT_EQUAL(ops_wait_status(addr, "/readyz", 200, 30000), 0);
    CU_ASSERT(wait_metric(addr, "edr_outages_total{component=\"store\"}", 1, 1,
                          &v) == 0 ||
              v >= 1);
    CU_ASSERT_EQUAL(ops_worker_stop(pid, 10000), 0);
    if (bad)
        ops_dump_log(r.log, 60);
    ops_pg_destroy(&pg);
    rd_kafka_destroy(rk);
    run_free(&r);
}

/* A rebalance during a PostgreSQL outage: the survivor of a killed
 * member gets its partitions while the store is down. The offsets are
 * read outside librdkafka's rebalance callback, so the consumer keeps
 * being polled and the member stays in the group (no
 * max.poll.interval.ms overrun); once the store is back, the state is
 * the model's. */
static void test_postgres_rebalance_outage(void)
{
    struct run r;
    struct model m;
    struct ops_pg pg = {0};
    char dsn[256], env_dsn[300];
    run_init(&r, "pgrebal");
    model_init(&m, "pgrebal", 88, N_KEYS);
    const char *brokers = test_env("EDR_KAFKA_BROKERS");
    CU_ASSERT_FATAL(brokers != NULL);
    CU_ASSERT_FATAL(setup_topic(&r) == 0);
    CU_ASSERT_FATAL(
        outage_pg_create(&pg, dsn, sizeof(dsn), env_dsn, sizeof(env_dsn)) == 0);
    rd_kafka_t *rk = ru_producer_new(brokers);
    CU_ASSERT_FATAL(rk != NULL);
    CU_ASSERT_EQUAL(ru_produce_events(rk, r.topic, &m, 100, 0), 0);
    char log_a[300];
    snprintf(log_a, sizeof(log_a), "%s.a", r.log);
    const char *env_a[] = {r.env_topic,          r.env_dlq,
                           r.env_prefix,         r.env_table,
                           r.env_group,          env_dsn,
                           "EDR_STORE=postgres", "EDR_HTTP_ADDR=off",
                           "EDR_WORKER_ID=rb-a", NULL};
    const char *env_b[] = {r.env_topic,          r.env_dlq,
                           r.env_prefix,         r.env_table,
                           r.env_group,          env_dsn,
                           "EDR_STORE=postgres", "EDR_HTTP_ADDR=off",
                           "EDR_WORKER_ID=rb-b", NULL};
    static const char *const args[] = {
        "-X", "session.timeout.ms=6000",   "-X", "heartbeat.interval.ms=500",
        "-X", "max.poll.interval.ms=7000", NULL};
    pid_t a = worker_start(env_a, args, log_a);
    pid_t b = worker_start(env_b, args, r.log);
    CU_ASSERT_EQUAL(wait_assigned(log_a, "rb-a", 30), 0);
    CU_ASSERT_EQUAL(wait_assigned(r.log, "rb-b", 30), 0);
    CU_ASSERT_EQUAL(wait_pg(dsn, r.table, &m, 30), 0);

    CU_ASSERT_EQUAL(ops_pg_stop(&pg), 0);
    worker_kill(b);
    CU_ASSERT_EQUAL(ru_produce_events(rk, r.topic, &m, 60, 0), 0);
    /* B's partitions come to A (session timeout, 6 s) while the store is
     * down ... */
    CU_ASSERT_EQUAL(
        test_wait_log(log_a, "kafka: assigned partitions", NULL, 2, 30000), 0);
    /* ... and for longer than max.poll.interval.ms (7 s) A stays in the
     * group: librdkafka reports no overrun. */
    CU_ASSERT_EQUAL(test_wait_log(log_a, "maximum poll interval", "", 1, 12000),
                    -1);
    CU_ASSERT_EQUAL(waitpid(a, NULL, WNOHANG), 0);
    CU_ASSERT_EQUAL(ops_pg_start(&pg), 0);
    int bad = wait_pg(dsn, r.table, &m, 60);
    CU_ASSERT_EQUAL(bad, 0);
    CU_ASSERT_EQUAL(test_wait_log(log_a, "maximum poll interval", "", 1, 1000),
                    -1);
    CU_ASSERT_EQUAL(ops_worker_stop(a, 15000), 0);
    if (bad)
        ops_dump_log(log_a, 60);
    ops_pg_destroy(&pg);
    rd_kafka_destroy(rk);
    run_free(&r);
}

static void register_tests(void)
{
    CU_pSuite s = CU_add_suite("ingest", NULL, NULL);
    CU_add_test(s, "memory store equals the model", test_memory_store);
    CU_add_test(s, "new partitions are picked up", test_new_partitions);
    CU_add_test(s, "file store survives SIGKILL", test_file_store_restart);
    CU_add_test(s, "postgres: two workers, one killed", test_postgres_group);
    CU_add_test(s, "rejected events go to the DLQ", test_dead_letters);
    CU_add_test(s, "a copy too large for the DLQ goes without its value",
                test_dead_letter_too_large);
    CU_add_test(s, "a failing DLQ copy holds only its partition",
                test_dead_letter_hold);
    CU_add_test(s, "postgres outage is waited out", test_postgres_outage);
    CU_add_test(s, "postgres: a fenced batch drops the lost events",
                test_postgres_fence);
    CU_add_test(s, "postgres: a rebalance during an outage keeps the member",
                test_postgres_rebalance_outage);
}

int main(void)
{
    signal(SIGPIPE, SIG_IGN);
    static const cunit_register_fn registers[] = {register_tests, NULL};
    return cunit_main(registers);
}

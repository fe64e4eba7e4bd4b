/* test_restore.c: the changelog of the memory and file modes end to end
 * (schemas/README.md §4 "The changelog") on the shared local broker, with
 * edr-worker processes (ops_worker_start).
 *
 * One history, three checks:
 * (c) a file worker A owns the changelog: its read_committed content
 *     (latest record per key, worker/changelog_restore.c) equals the model,
 *     with positions at the source's high watermarks;
 * (a) the source's history is then deleted (DeleteRecords moves the log
 *     start to the end) and more events follow: a memory worker B started
 *     now restores from the changelog and answers exactly the model (every
 *     entry over Redis, exact count), which a replay could not;
 * (b) A is stopped, its file deleted, and A started again: the file store
 *     is restored from the changelog to the model.
 * Unique names; every wait is on a condition with a deadline. */
#include "base/clock.h"
#include "worker/changelog_restore.h"
#include "schemas/edr_key.h"
#include "schemas/sha256.h"
#include "stores/store.h"
#include "tests/support/cunit_main.h"
#include "tests/support/ingest_model.h"
#include "tests/support/kafka_util.h"
#include "tests/support/ops_util.h"

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

#define N_KEYS 40
static rd_kafka_t *producer_new(const char *brokers)
{
    char errstr[512];
    rd_kafka_conf_t *conf = rd_kafka_conf_new();
    rd_kafka_conf_set(conf, "bootstrap.servers", brokers, errstr,
                      sizeof(errstr));
    rd_kafka_conf_set(conf, "enable.idempotence", "true", errstr,
                      sizeof(errstr));
    rd_kafka_conf_set(conf, "linger.ms", "1", errstr, sizeof(errstr));
    rd_kafka_conf_set_dr_msg_cb(conf, model_dr_cb);
    return rd_kafka_new(RD_KAFKA_PRODUCER, conf, errstr, sizeof(errstr));
}

/* Produces value with the connection key (or raw key when k < 0) and
 * optional header x-test; s (may be NULL) gets the delivery. */
static int produce(rd_kafka_t *rk, const char *topic, const struct model *m,
                   int k, const char *raw_key, const void *val, size_t len,
                   const char *xtest, struct sent *s)
{
    char ckey[EDR_CONNECTION_KEY_LEN + 1];
    const char *key = raw_key;
    if (k >= 0) {
        struct edr_key ek = model_conn_key(&m->c[k]);
        edr_connection_key(&ek, ckey);
        key = ckey;
    }
    rd_kafka_headers_t *h = rd_kafka_headers_new(2);
    rd_kafka_header_add(h, "content-type", -1, "application/cloudevents+json",
                        -1);
    if (xtest)
        rd_kafka_header_add(h, "x-test", -1, xtest, -1);
    rd_kafka_resp_err_t err = rd_kafka_producev(
        rk, RD_KAFKA_V_TOPIC(topic), RD_KAFKA_V_MSGFLAGS(RD_KAFKA_MSG_F_COPY),
        RD_KAFKA_V_KEY(key, key ? strlen(key) : 0),
        RD_KAFKA_V_VALUE((void *)val, len), RD_KAFKA_V_HEADERS(h),
        RD_KAFKA_V_OPAQUE(s), RD_KAFKA_V_END);
    if (err) {
        rd_kafka_headers_destroy(h);
        return -1;
    }
    rd_kafka_poll(rk, 0);
    return 0;
}

/* Produces n model events, then flushes. */
static int produce_events(rd_kafka_t *rk, const char *topic, struct model *m,
                          int n, int delay_ms)
{
    for (int i = 0; i < n; i++) {
        char buf[1024];
        int k;
        size_t len = model_next(m, buf, sizeof(buf), &k);
        if (produce(rk, topic, m, k, NULL, buf, len, NULL, NULL) != 0)
            return -1;
        if (delay_ms) {
            struct timespec ts = {0, delay_ms * 1000000L};
            rd_kafka_poll(rk, 0);
            nanosleep(&ts, NULL);
        }
    }
    return rd_kafka_flush(rk, 30000) == 0 ? 0 : -1;
}

/* ---- lookups over Redis (memory store) --------------------------------- */

/* ---- the changelog and the source's log -------------------------------- */

#define PARTS 2
/* partitions of the current test's source topic */
static int n_parts = PARTS;
#define WAIT_S 60

static int64_t high_watermark(rd_kafka_t *rk, const char *topic, int32_t p)
{
    int64_t lo = -1, hi = -1;
    if (rd_kafka_query_watermark_offsets(rk, topic, p, &lo, &hi, 10000))
        return -1;
    return hi;
}

/* Deletes every record of topic's partitions below before[p]. 0 or -1. */
static int delete_records(rd_kafka_t *rk, const char *topic,
                          const int64_t *before)
{
    rd_kafka_topic_partition_list_t *l =
        rd_kafka_topic_partition_list_new(n_parts);
    for (int32_t p = 0; p < n_parts; p++)
        rd_kafka_topic_partition_list_add(l, topic, p)->offset = before[p];
    rd_kafka_DeleteRecords_t *dr = rd_kafka_DeleteRecords_new(l);
    rd_kafka_topic_partition_list_destroy(l);
    rd_kafka_queue_t *q = rd_kafka_queue_new(rk);
    rd_kafka_DeleteRecords(rk, &dr, 1, NULL, q);
    rd_kafka_DeleteRecords_destroy(dr);
    rd_kafka_event_t *ev = rd_kafka_queue_poll(q, 30000);
    int rc = -1;
    if (ev && !rd_kafka_event_error(ev)) {
        const rd_kafka_topic_partition_list_t *res =
            rd_kafka_DeleteRecords_result_offsets(
                rd_kafka_event_DeleteRecords_result(ev));
        rc = 0;
        for (int i = 0; res && i < res->cnt; i++)
            if (res->elems[i].err)
                rc = -1;
    }
    if (ev)
        rd_kafka_event_destroy(ev);
    rd_kafka_queue_destroy(q);
    return rc;
}

static int put_cb(const struct changelog_entry *e, void *user)
{
    struct store_err err;
    return store_put(user, &e->key, e->transfer_id, e->entry_json, e->entry_len,
                     &err) == STORE_OK
               ? 0
               : 1;
}

/* Restores the changelog into a memory store; the number of differences
 * with the model and with the positions want[] (-1 on a failed read). */
static int changelog_diff(const char *src, const char *cl, const char *group,
                          const struct model *m, const int64_t *want, int loud)
{
    struct changelog_restore_conf conf = {.brokers =
                                              test_env("EDR_KAFKA_BROKERS"),
                                          .source_topic = src,
                                          .changelog_topic = cl,
                                          .group_id = group,
                                          .timeout_ms = 20000};
    struct changelog_restore_result r = {0};
    struct store_err err;
    char errstr[512];
    struct store *st = mem_store_open(&err);
    if (!st)
        return -1;
    int bad = -1;
    if (changelog_restore(&conf, put_cb, st, &r, errstr, sizeof(errstr)) ==
        CHANGELOG_OK) {
        bad = model_verify_store(st, m, loud);
        for (size_t i = 0; i < r.n_positions; i++)
            if (r.positions[i].next_offset != want[r.positions[i].partition]) {
                if (loud)
                    fprintf(stderr,
                            "\n  partition %d at %" PRId64 ", want %" PRId64,
                            (int)r.positions[i].partition,
                            r.positions[i].next_offset,
                            want[r.positions[i].partition]);
                bad++;
            }
        bad += r.n_positions != (size_t)n_parts;
        if (r.invalid)
            bad++;
        changelog_restore_result_clear(&r);
    } else if (loud) {
        fprintf(stderr, "\n  restore: %s", errstr);
    }
    store_close(st);
    return bad;
}

/* ---- workers ----------------------------------------------------------- */

struct worker {
    pid_t pid;
    char log[256];
    char http[64];
    char prefix[96];
};

static void worker_run(struct worker *w, const char *name, const char *store,
                       const char *path, const char *topic, const char *dlq,
                       const char *group)
{
    char e[10][320];
    snprintf(w->log, sizeof(w->log), "restore_%s_%d.log", name, (int)getpid());
    snprintf(w->http, sizeof(w->http), "127.0.0.1:%d", ops_free_port());
    snprintf(w->prefix, sizeof(w->prefix), "%s_%s", group, name);
    snprintf(e[0], sizeof(e[0]), "EDR_STORE=%s", store);
    snprintf(e[1], sizeof(e[1]), "EDR_FILE_PATH=%s", path ? path : "x.json");
    snprintf(e[2], sizeof(e[2]), "EDR_TOPIC=%s", topic);
    snprintf(e[3], sizeof(e[3]), "EDR_DLQ_TOPIC=%s", dlq);
    snprintf(e[4], sizeof(e[4]), "EDR_GROUP_ID=%s", group);
    snprintf(e[5], sizeof(e[5]), "EDR_HTTP_ADDR=%s", w->http);
    snprintf(e[6], sizeof(e[6]), "EDR_RPC_PREFIX=%s", w->prefix);
    snprintf(e[7], sizeof(e[7]), "EDR_WORKER_ID=%s", name);
    snprintf(e[8], sizeof(e[8]), "EDR_READY_MAX_LAG=0");
    const char *env[] = {e[0], e[1], e[2], e[3], e[4],
                         e[5], e[6], e[7], e[8], NULL};
    w->pid = ops_worker_start(env, w->log);
    CU_ASSERT_FATAL(w->pid > 0);
}

/* Waits until the log file holds a line with `what`. */
static int wait_log(const char *log, const char *what, int seconds)
{
    int64_t deadline = edr_clock_ms() + seconds * 1000;
    for (;;) { /* looks once even with seconds == 0 */
        FILE *f = fopen(log, "r");
        char line[4096];
        int found = 0;
        while (f && !found && fgets(line, sizeof(line), f))
            found = strstr(line, what) != NULL;
        if (f)
            fclose(f);
        if (found)
            return 0;
        if (edr_clock_ms() >= deadline)
            return -1;
        edr_sleep_ms(100);
    }
}

/* ---- the test ---------------------------------------------------------- */

static void test_restore_memory_and_file(void)
{
    const char *brokers = test_env("EDR_KAFKA_BROKERS");
    CU_ASSERT_PTR_NOT_NULL_FATAL(brokers);
    char *topic = test_unique_name("rs_src");
    char *dlq = test_unique_name("rs_dlq");
    char *group = test_unique_name("rs_grp");
    char cl[256], path[256], errstr[512];
    snprintf(cl, sizeof(cl), "%s.changelog", topic);
    char journal[300];
    snprintf(path, sizeof(path), "restore_%d.json", (int)getpid());
    snprintf(journal, sizeof(journal), "%s.journal", path);
    unlink(path);
    unlink(journal);
    CU_ASSERT_EQUAL_FATAL(
        test_kafka_create_topic(brokers, topic, PARTS, errstr, sizeof(errstr)),
        0);
    rd_kafka_t *rk = producer_new(brokers);
    CU_ASSERT_PTR_NOT_NULL_FATAL(rk);
    struct model m;
    model_init(&m, "rs", 4242, N_KEYS);
    CU_ASSERT_EQUAL_FATAL(produce_events(rk, topic, &m, 400, 0), 0);

    /* (c) file worker A writes the changelog of the whole history. */
    struct worker a, b;
    worker_run(&a, "a", "file", path, topic, dlq, group);
    int64_t hw[PARTS];
    for (int32_t p = 0; p < PARTS; p++)
        hw[p] = high_watermark(rk, topic, p);
    int bad = -1;
    int64_t deadline = edr_clock_ms() + WAIT_S * 1000;
    while (bad != 0 && edr_clock_ms() < deadline) {
        bad = changelog_diff(topic, cl, group, &m, hw, 0);
        if (bad != 0)
            edr_sleep_ms(500);
    }
    if (bad != 0) {
        changelog_diff(topic, cl, group, &m, hw, 1);
        ops_dump_log(a.log, 30);
    }
    CU_ASSERT_EQUAL_FATAL(bad, 0);

    /* (a) the history is deleted; a memory worker can only restore. */
    CU_ASSERT_EQUAL_FATAL(delete_records(rk, topic, hw), 0);
    CU_ASSERT_EQUAL_FATAL(produce_events(rk, topic, &m, 100, 0), 0);
    worker_run(&b, "b", "memory", NULL, topic, dlq, group);
    CU_ASSERT_EQUAL(wait_log(b.log, "restored ", WAIT_S), 0);
    redisContext *rc = model_redis_connect();
    CU_ASSERT_PTR_NOT_NULL_FATAL(rc);
    bad = -1;
    deadline = edr_clock_ms() + WAIT_S * 1000;
    while (bad != 0 && edr_clock_ms() < deadline) {
        if (ops_wait_status(b.http, "/readyz", 200, 1000) == 0)
            bad = model_verify_rpc(rc, b.prefix, &m, 0);
        if (bad != 0)
            edr_sleep_ms(300);
    }
    if (bad != 0) {
        model_verify_rpc(rc, b.prefix, &m, 1);
        ops_dump_log(b.log, 30);
    }
    CU_ASSERT_EQUAL(bad, 0);
    /* and the changelog follows the new events too */
    for (int32_t p = 0; p < PARTS; p++)
        hw[p] = high_watermark(rk, topic, p);
    bad = -1;
    deadline = edr_clock_ms() + WAIT_S * 1000;
    while (bad != 0 && edr_clock_ms() < deadline) {
        bad = changelog_diff(topic, cl, group, &m, hw, 0);
        if (bad != 0)
            edr_sleep_ms(500);
    }
    CU_ASSERT_EQUAL(bad, 0);

    /* (b) A's file is lost: A restores it from the changelog. */
    CU_ASSERT_EQUAL(ops_worker_stop(a.pid, 20000), 0);
    CU_ASSERT_EQUAL(unlink(path), 0);
    unlink(journal); /* the whole store is lost, its journal too */
    worker_run(&a, "a2", "file", path, topic, dlq, group);
    CU_ASSERT_EQUAL(wait_log(a.log, "restored ", WAIT_S), 0);
    CU_ASSERT_EQUAL(ops_wait_status(a.http, "/readyz", 200, WAIT_S * 1000), 0);
    CU_ASSERT_EQUAL(ops_worker_stop(a.pid, 20000), 0);
    struct store_err err;
    struct store *st = file_store_open(path, &err);
    CU_ASSERT_PTR_NOT_NULL_FATAL(st);
    bad = model_verify_store(st, &m, 1);
    CU_ASSERT_EQUAL(bad, 0);
    store_close(st);

    CU_ASSERT_EQUAL(ops_worker_stop(b.pid, 20000), 0);
    redisFree(rc);
    rd_kafka_destroy(rk);
    unlink(path);
    unlink(journal);
    free(topic);
    free(dlq);
    free(group);
}

/* (d) a zombie writer: the owner of a one-partition changelog is frozen
 * (SIGSTOP) past the ownership group's session timeout (librdkafka's
 * default 45 s), the other worker takes the role; the zombie comes back
 * (SIGCONT) and events go on. The changelog still equals the model, and a
 * worker restored from it after the history is deleted too. */
static void test_zombie_writer(void)
{
    const char *brokers = test_env("EDR_KAFKA_BROKERS");
    CU_ASSERT_PTR_NOT_NULL_FATAL(brokers);
    char *topic = test_unique_name("rz_src");
    char *dlq = test_unique_name("rz_dlq");
    char *group = test_unique_name("rz_grp");
    char cl[256], errstr[512];
    snprintf(cl, sizeof(cl), "%s.changelog", topic);
    n_parts = 1;
    CU_ASSERT_EQUAL_FATAL(
        test_kafka_create_topic(brokers, topic, 1, errstr, sizeof(errstr)), 0);
    rd_kafka_t *rk = producer_new(brokers);
    CU_ASSERT_PTR_NOT_NULL_FATAL(rk);
    struct model m;
    model_init(&m, "rz", 777, N_KEYS);
    CU_ASSERT_EQUAL_FATAL(produce_events(rk, topic, &m, 200, 0), 0);

    struct worker w[3];
    worker_run(&w[0], "z0", "memory", NULL, topic, dlq, group);
    worker_run(&w[1], "z1", "memory", NULL, topic, dlq, group);
    /* The owner caught the changelog up (it applied the history first). */
    int owner = -1;
    int64_t deadline = edr_clock_ms() + WAIT_S * 1000;
    while (owner < 0 && edr_clock_ms() < deadline) {
        for (int i = 0; i < 2 && owner < 0; i++)
            if (wait_log(w[i].log, "partition 0 caught up", 0) == 0)
                owner = i;
        edr_sleep_ms(100);
    }
    CU_ASSERT_FATAL(owner >= 0);
    int64_t hw[1] = {high_watermark(rk, topic, 0)};
    int bad = -1;
    deadline = edr_clock_ms() + WAIT_S * 1000;
    while (bad != 0 && edr_clock_ms() < deadline)
        if ((bad = changelog_diff(topic, cl, group, &m, hw, 0)) != 0)
            edr_sleep_ms(300);
    CU_ASSERT_EQUAL_FATAL(bad, 0);

    /* Freeze the owner; the other one takes over after the session
     * timeout and writes the new events. */
    CU_ASSERT_EQUAL_FATAL(kill(w[owner].pid, SIGSTOP), 0);
    CU_ASSERT_EQUAL_FATAL(produce_events(rk, topic, &m, 50, 0), 0);
    hw[0] = high_watermark(rk, topic, 0);
    bad = -1;
    deadline = edr_clock_ms() + 75 * 1000;
    while (bad != 0 && edr_clock_ms() < deadline)
        if ((bad = changelog_diff(topic, cl, group, &m, hw, 0)) != 0)
            edr_sleep_ms(1000);
    CU_ASSERT_EQUAL(bad, 0);
    CU_ASSERT_EQUAL(kill(w[owner].pid, SIGCONT), 0);

    /* The zombie is back: events go on; it must write nothing stale. */
    CU_ASSERT_EQUAL_FATAL(produce_events(rk, topic, &m, 50, 0), 0);
    hw[0] = high_watermark(rk, topic, 0);
    bad = -1;
    deadline = edr_clock_ms() + WAIT_S * 1000;
    while (bad != 0 && edr_clock_ms() < deadline)
        if ((bad = changelog_diff(topic, cl, group, &m, hw, 0)) != 0)
            edr_sleep_ms(300);
    if (bad != 0) {
        changelog_diff(topic, cl, group, &m, hw, 1);
        ops_dump_log(w[owner].log, 20);
        ops_dump_log(w[1 - owner].log, 20);
    }
    CU_ASSERT_EQUAL(bad, 0);

    /* A fresh worker after the history is gone: exactly the model. */
    CU_ASSERT_EQUAL_FATAL(delete_records(rk, topic, hw), 0);
    worker_run(&w[2], "z2", "memory", NULL, topic, dlq, group);
    redisContext *rc = model_redis_connect();
    CU_ASSERT_PTR_NOT_NULL_FATAL(rc);
    bad = -1;
    deadline = edr_clock_ms() + WAIT_S * 1000;
    while (bad != 0 && edr_clock_ms() < deadline) {
        if (ops_wait_status(w[2].http, "/readyz", 200, 1000) == 0)
            bad = model_verify_rpc(rc, w[2].prefix, &m, 0);
        if (bad != 0)
            edr_sleep_ms(300);
    }
    if (bad != 0)
        model_verify_rpc(rc, w[2].prefix, &m, 1);
    CU_ASSERT_EQUAL(bad, 0);
    for (int i = 0; i < 3; i++)
        CU_ASSERT_EQUAL(ops_worker_stop(w[i].pid, 20000), 0);
    redisFree(rc);
    rd_kafka_destroy(rk);
    free(topic);
    free(dlq);
    free(group);
    n_parts = PARTS;
}

/* An existing changelog topic that is not compacted: exit 2, naming
 * EDR_CHANGELOG_TOPIC. */
static void test_invalid_changelog(void)
{
    const char *brokers = test_env("EDR_KAFKA_BROKERS");
    CU_ASSERT_PTR_NOT_NULL_FATAL(brokers);
    char *topic = test_unique_name("ri_src");
    char *group = test_unique_name("ri_grp");
    char cl[256], errstr[512];
    snprintf(cl, sizeof(cl), "%s.changelog", topic);
    CU_ASSERT_EQUAL_FATAL(
        test_kafka_create_topic(brokers, topic, 2, errstr, sizeof(errstr)), 0);
    /* cleanup.policy=delete, the broker's default */
    CU_ASSERT_EQUAL_FATAL(
        test_kafka_create_topic(brokers, cl, 2, errstr, sizeof(errstr)), 0);
    struct worker w;
    worker_run(&w, "inv", "memory", NULL, topic, "ri_dlq", group);
    CU_ASSERT_EQUAL(wait_log(w.log, "invalid setting EDR_CHANGELOG_TOPIC", 30),
                    0);
    CU_ASSERT_EQUAL(ops_worker_stop(w.pid, 20000), 2);
    free(topic);
    free(group);
}

static void register_suites(void)
{
    CU_pSuite s = CU_add_suite("restore", NULL, NULL);
    CU_add_test(s, "memory and file restore from the changelog",
                test_restore_memory_and_file);
    CU_add_test(s, "a changelog topic that is not compacted: exit 2",
                test_invalid_changelog);
    CU_add_test(s, "zombie changelog writer writes nothing stale",
                test_zombie_writer);
}

int main(void)
{
    static const cunit_register_fn regs[] = {register_suites, NULL};
    return cunit_main(regs);
}

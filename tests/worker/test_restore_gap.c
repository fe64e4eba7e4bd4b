/* test_restore_gap.c: a file worker whose saved position fell out of the
 * log (schemas/README.md §4 "The changelog": "...or whose saved position
 * is no longer in the log restores the state from the changelog") on the
 * shared local broker, with edr-worker processes.
 *
 * (a) file worker F and memory worker K apply the history; F stops, more
 *     events follow, which only K applies and writes to the changelog;
 *     DeleteRecords then moves every partition's log start past F's saved
 *     position, and more events follow. F restarted replaces its file
 *     store's state with the changelog's and answers exactly the model,
 *     over Redis and in its file.
 * (b) the same with real retention (retention.ms, segment.ms on the
 *     topic) instead of DeleteRecords: needs the broker's
 *     log.retention.check.interval.ms low (scripts/services.sh: 1000) and
 *     SKIPS loudly when the running broker checks less often.
 * (c) F was the only changelog writer: the changelog's position is F's own
 *     saved position, below the new log start, so it covers nothing: F
 *     keeps its file, reports the gap (503, state_incomplete), and with
 *     EDR_ACCEPT_GAP=1 is ready again.
 * (d) a changelog handover whose re-read range retention deleted writes
 *     nothing (the restore then reports the gap; see the test).
 * Unique names; every wait is on a condition with a deadline. */
#include "base/clock.h"
#include "stores/store.h"
#include "tests/support/cunit_main.h"
#include "tests/support/ingest_model.h"
#include "tests/support/kafka_util.h"
#include "tests/support/ops_util.h"
#include "tests/support/restore_util.h"

#include <CUnit/CUnit.h>
#include <hiredis/hiredis.h>
#include <inttypes.h>
#include <librdkafka/rdkafka.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <yajl/yajl_tree.h>

#define PARTS 2
#define N_KEYS 40
#define WAIT_S 60
#define RETENTION_CHECK_MAX_MS 5000

struct names {
    char *topic, *dlq, *group;
    char cl[256], path[256], journal[300];
};

static void names_init(struct names *n, const char *tag)
{
    char p[64];
    snprintf(p, sizeof(p), "%s_src", tag);
    n->topic = test_unique_name(p);
    snprintf(p, sizeof(p), "%s_dlq", tag);
    n->dlq = test_unique_name(p);
    snprintf(p, sizeof(p), "%s_grp", tag);
    n->group = test_unique_name(p);
    snprintf(n->cl, sizeof(n->cl), "%s.changelog", n->topic);
    snprintf(n->path, sizeof(n->path), "restore_gap_%s_%d.json", tag,
             (int)getpid());
    snprintf(n->journal, sizeof(n->journal), "%s.journal", n->path);
    unlink(n->path);
    unlink(n->journal);
}

static void names_free(struct names *n)
{
    unlink(n->path);
    unlink(n->journal);
    char lock[300];
    snprintf(lock, sizeof(lock), "%s.lock", n->path);
    unlink(lock);
    free(n->topic);
    free(n->dlq);
    free(n->group);
}

/* Waits until w is ready and answers exactly the model over Redis. */
static int wait_model(const struct ru_worker *w, const struct model *m)
{
    redisContext *rc = model_redis_connect();
    if (!rc)
        return -1;
    int bad = -1;
    int64_t deadline = edr_clock_ms() + WAIT_S * 1000;
    while (bad != 0 && edr_clock_ms() < deadline) {
        if (ops_wait_status(w->http, "/readyz", 200, 1000) == 0)
            bad = model_verify_rpc(rc, w->prefix, m, 0);
        if (bad != 0)
            edr_sleep_ms(300);
    }
    if (bad != 0) {
        model_verify_rpc(rc, w->prefix, m, 1);
        ops_dump_log(w->log, 30);
    }
    redisFree(rc);
    return bad;
}

/* Waits until the changelog equals the model at the high watermarks. */
static int wait_changelog(rd_kafka_t *rk, const struct names *n,
                          const struct model *m)
{
    int64_t hw[PARTS];
    for (int32_t p = 0; p < PARTS; p++)
        hw[p] = ru_high_watermark(rk, n->topic, p);
    int bad = -1;
    int64_t deadline = edr_clock_ms() + WAIT_S * 1000;
    while (bad != 0 && edr_clock_ms() < deadline)
        if ((bad = ru_changelog_diff(n->topic, n->cl, n->group, PARTS, m, hw,
                                     0)) != 0)
            edr_sleep_ms(500);
    if (bad != 0)
        ru_changelog_diff(n->topic, n->cl, n->group, PARTS, m, hw, 1);
    return bad;
}

/* The file store at path equals the model. */
static int file_matches(const char *path, const struct model *m)
{
    struct store_err err;
    struct store *st = file_store_open(path, &err);
    if (!st)
        return -1;
    int bad = model_verify_store(st, m, 1);
    store_close(st);
    return bad;
}

/* The log start moves past `before` on every partition (retention = 0:
 * DeleteRecords; 1: the topic's own retention, producing model events
 * every 300 ms until it did). */
static int move_log_start(rd_kafka_t *rk, const struct names *n,
                          struct model *m, const int64_t *before, int retention)
{
    if (!retention)
        return ru_delete_records(rk, n->topic, PARTS, before);
    const char *brokers = test_env("EDR_KAFKA_BROKERS");
    /* Set now, not at creation: the changelog must have caught up first
     * (a handover needs the events since the previous owner's commit). */
    const char *cfg[] = {"cleanup.policy",
                         "delete",
                         "retention.ms",
                         "3000",
                         "segment.ms",
                         "500",
                         NULL};
    if (test_kafka_alter_topic_config(brokers, n->topic, cfg) != 0)
        return -1;
    int64_t deadline = edr_clock_ms() + 120 * 1000;
    for (;;) {
        int moved = 0;
        for (int32_t p = 0; p < PARTS; p++)
            moved += test_kafka_log_start(brokers, n->topic, p) > before[p];
        if (moved == PARTS)
            return 0;
        if (edr_clock_ms() >= deadline)
            return -1;
        if (ru_produce_events(rk, n->topic, m, 2, 0) != 0)
            return -1;
        edr_sleep_ms(300);
    }
}

/* (a)/(b): the changelog K kept restores F's file store. */
static void kept_changelog_case(const char *tag, int retention)
{
    const char *brokers = test_env("EDR_KAFKA_BROKERS");
    CU_ASSERT_PTR_NOT_NULL_FATAL(brokers);
    struct names n;
    names_init(&n, tag);
    char errstr[512];
    CU_ASSERT_EQUAL_FATAL(
        test_kafka_create_topic_with(brokers, n.topic, PARTS, NULL), 0);
    (void)errstr;
    rd_kafka_t *rk = ru_producer_new(brokers);
    CU_ASSERT_PTR_NOT_NULL_FATAL(rk);
    struct model m;
    model_init(&m, tag, 9191, N_KEYS);
    CU_ASSERT_EQUAL_FATAL(ru_produce_events(rk, n.topic, &m, 300, 0), 0);

    struct ru_worker f, k;
    CU_ASSERT_EQUAL_FATAL(ru_worker_run(&f, "f", "file", n.path, n.topic, n.dlq,
                                        n.group, NULL, NULL),
                          0);
    CU_ASSERT_EQUAL_FATAL(ru_worker_run(&k, "k", "memory", NULL, n.topic, n.dlq,
                                        n.group, NULL, NULL),
                          0);
    CU_ASSERT_EQUAL_FATAL(wait_model(&f, &m), 0);
    CU_ASSERT_EQUAL_FATAL(wait_model(&k, &m), 0);
    CU_ASSERT_EQUAL_FATAL(ops_worker_stop(f.pid, 20000), 0);
    int64_t saved[PARTS];
    for (int32_t p = 0; p < PARTS; p++)
        saved[p] = ru_high_watermark(rk, n.topic, p); /* F applied all */

    /* F is down: events only K applies and writes to the changelog. */
    CU_ASSERT_EQUAL_FATAL(ru_produce_events(rk, n.topic, &m, 200, 0), 0);
    CU_ASSERT_EQUAL_FATAL(wait_model(&k, &m), 0);
    /* K took F's changelog partitions over (a rebalance: up to a
     * heartbeat interval) and caught them up before the history goes. */
    CU_ASSERT_EQUAL_FATAL(wait_changelog(rk, &n, &m), 0);
    int64_t hw[PARTS];
    for (int32_t p = 0; p < PARTS; p++)
        hw[p] = ru_high_watermark(rk, n.topic, p);
    CU_ASSERT_EQUAL_FATAL(
        move_log_start(rk, &n, &m, retention ? saved : hw, retention), 0);
    for (int32_t p = 0; p < PARTS; p++)
        CU_ASSERT_FATAL(test_kafka_log_start(brokers, n.topic, p) > saved[p]);
    CU_ASSERT_EQUAL_FATAL(ru_produce_events(rk, n.topic, &m, 50, 0), 0);
    CU_ASSERT_EQUAL_FATAL(wait_changelog(rk, &n, &m), 0);

    /* F again: its positions are out of the log; the changelog covers. */
    CU_ASSERT_EQUAL_FATAL(ru_worker_run(&f, "f2", "file", n.path, n.topic,
                                        n.dlq, n.group, NULL, NULL),
                          0);
    CU_ASSERT_EQUAL(ru_wait_log(f.log, "restore: removed the ", WAIT_S), 0);
    CU_ASSERT_EQUAL(ru_wait_log(f.log, "restored ", WAIT_S), 0);
    CU_ASSERT_EQUAL(wait_model(&f, &m), 0);
    CU_ASSERT_EQUAL(ru_wait_log(f.log, "state gap:", 0), -1);
    /* and it goes on with new events */
    CU_ASSERT_EQUAL_FATAL(ru_produce_events(rk, n.topic, &m, 40, 0), 0);
    CU_ASSERT_EQUAL(wait_model(&f, &m), 0);
    CU_ASSERT_EQUAL(ops_worker_stop(f.pid, 20000), 0);
    CU_ASSERT_EQUAL(file_matches(n.path, &m), 0);
    CU_ASSERT_EQUAL(ops_worker_stop(k.pid, 20000), 0);
    rd_kafka_destroy(rk);
    names_free(&n);
}

static void test_kept_changelog(void)
{
    kept_changelog_case("rgd", 0);
}

static void test_kept_changelog_retention(void)
{
    if (!test_kafka_retention_is_fast(test_env("EDR_KAFKA_BROKERS"),
                                      RETENTION_CHECK_MAX_MS))
        return; /* SKIPPED, said on stderr */
    kept_changelog_case("rgr", 1);
}

static const char *code_of(yajl_val v)
{
    const char *path[] = {"code", NULL};
    yajl_val s = v ? yajl_tree_get(v, path, yajl_t_string) : NULL;
    return s ? YAJL_GET_STRING(s) : "";
}

/* (c): no changelog covers F's partition 0. */
static void test_uncovered(void)
{
    const char *brokers = test_env("EDR_KAFKA_BROKERS");
    CU_ASSERT_PTR_NOT_NULL_FATAL(brokers);
    struct names n;
    names_init(&n, "rgu");
    CU_ASSERT_EQUAL_FATAL(
        test_kafka_create_topic_with(brokers, n.topic, PARTS, NULL), 0);
    rd_kafka_t *rk = ru_producer_new(brokers);
    CU_ASSERT_PTR_NOT_NULL_FATAL(rk);
    struct model m;
    model_init(&m, "rgu", 5151, N_KEYS);
    CU_ASSERT_EQUAL_FATAL(ru_produce_events(rk, n.topic, &m, 200, 0), 0);
    struct ru_worker f;
    CU_ASSERT_EQUAL_FATAL(ru_worker_run(&f, "f", "file", n.path, n.topic, n.dlq,
                                        n.group, NULL, NULL),
                          0);
    CU_ASSERT_EQUAL_FATAL(wait_model(&f, &m), 0);
    CU_ASSERT_EQUAL_FATAL(wait_changelog(rk, &n, &m), 0);
    CU_ASSERT_EQUAL_FATAL(ops_worker_stop(f.pid, 20000), 0);
    int64_t saved0 = ru_high_watermark(rk, n.topic, 0);

    /* F down, nobody writes the changelog; partition 0's log start moves
     * past F's (and the changelog's) position. */
    CU_ASSERT_EQUAL_FATAL(ru_produce_events(rk, n.topic, &m, 100, 0), 0);
    int64_t hw0 = ru_high_watermark(rk, n.topic, 0);
    CU_ASSERT_FATAL(hw0 > saved0);
    CU_ASSERT_EQUAL_FATAL(test_kafka_delete_records(brokers, n.topic, 0, hw0),
                          0);

    CU_ASSERT_EQUAL_FATAL(ru_worker_run(&f, "f2", "file", n.path, n.topic,
                                        n.dlq, n.group, NULL, NULL),
                          0);
    CU_ASSERT_EQUAL(ru_wait_log(f.log, "does not cover partition 0", WAIT_S),
                    0);
    CU_ASSERT_EQUAL(ru_wait_log(f.log, "state gap: partition 0", WAIT_S), 0);
    CU_ASSERT_EQUAL(ops_wait_status(f.http, "/readyz", 503, WAIT_S * 1000), 0);
    redisContext *rc = model_redis_connect();
    CU_ASSERT_PTR_NOT_NULL_FATAL(rc);
    yajl_val v = model_rpc_call(rc, f.prefix, "count", NULL);
    CU_ASSERT_STRING_EQUAL(code_of(v), "state_incomplete");
    yajl_tree_free(v);
    redisFree(rc);
    CU_ASSERT_EQUAL(ops_worker_stop(f.pid, 20000), 0);

    CU_ASSERT_EQUAL_FATAL(ru_worker_run(&f, "f3", "file", n.path, n.topic,
                                        n.dlq, n.group, "EDR_ACCEPT_GAP=1",
                                        NULL),
                          0);
    CU_ASSERT_EQUAL(ops_wait_status(f.http, "/readyz", 200, WAIT_S * 1000), 0);
    CU_ASSERT_EQUAL(ru_wait_log(f.log, "state gap accepted", 0), 0);
    CU_ASSERT_EQUAL(ops_worker_stop(f.pid, 20000), 0);
    rd_kafka_destroy(rk);
    names_free(&n);
}

/* (d) the handover cannot catch up: the changelog owner a (client.id "a",
 * so the range assignor gives it the one partition) is frozen; k applies
 * events it does not own; the history is deleted; a's session times out
 * and k takes the partition over, but the events it would re-read to
 * catch the changelog up are gone. k must say so and write nothing: a
 * fresh memory worker restored from the changelog then reports a gap,
 * never a silently stale state. */
static void test_handover_hole(void)
{
    const char *brokers = test_env("EDR_KAFKA_BROKERS");
    CU_ASSERT_PTR_NOT_NULL_FATAL(brokers);
    struct names n;
    names_init(&n, "rgh");
    CU_ASSERT_EQUAL_FATAL(
        test_kafka_create_topic_with(brokers, n.topic, 1, NULL), 0);
    rd_kafka_t *rk = ru_producer_new(brokers);
    CU_ASSERT_PTR_NOT_NULL_FATAL(rk);
    struct model m;
    model_init(&m, "rgh", 6161, N_KEYS);
    CU_ASSERT_EQUAL_FATAL(ru_produce_events(rk, n.topic, &m, 100, 0), 0);
    const char *args_a[] = {"-X", "session.timeout.ms=6000",
                            "-X", "heartbeat.interval.ms=500",
                            "-X", "client.id=a",
                            NULL};
    const char *args_k[] = {"-X", "session.timeout.ms=6000",
                            "-X", "heartbeat.interval.ms=500",
                            "-X", "client.id=k",
                            NULL};
    struct ru_worker a, k, f;
    CU_ASSERT_EQUAL_FATAL(ru_worker_run_args(&a, "ha", "memory", NULL, n.topic,
                                             n.dlq, n.group, NULL, NULL,
                                             args_a),
                          0);
    CU_ASSERT_EQUAL_FATAL(ru_wait_log(a.log, "partition 0 caught up", WAIT_S),
                          0);
    CU_ASSERT_EQUAL_FATAL(ru_worker_run_args(&k, "hk", "memory", NULL, n.topic,
                                             n.dlq, n.group, NULL, NULL,
                                             args_k),
                          0);
    CU_ASSERT_EQUAL_FATAL(wait_model(&k, &m), 0);
    int64_t hw[1] = {ru_high_watermark(rk, n.topic, 0)};
    CU_ASSERT_EQUAL_FATAL(
        ru_changelog_diff(n.topic, n.cl, n.group, 1, &m, hw, 1), 0);

    CU_ASSERT_EQUAL_FATAL(kill(a.pid, SIGSTOP), 0);
    CU_ASSERT_EQUAL_FATAL(ru_produce_events(rk, n.topic, &m, 100, 0), 0);
    CU_ASSERT_EQUAL_FATAL(wait_model(&k, &m), 0); /* k applied, not owner */
    hw[0] = ru_high_watermark(rk, n.topic, 0);
    CU_ASSERT_EQUAL_FATAL(ru_delete_records(rk, n.topic, 1, hw), 0);
    CU_ASSERT_EQUAL(ru_wait_log(k.log, "partition 0 cannot catch up", WAIT_S),
                    0);
    kill(a.pid, SIGKILL);
    kill(a.pid, SIGCONT);
    CU_ASSERT_EQUAL(ops_worker_stop(a.pid, 20000), 128 + SIGKILL);

    CU_ASSERT_EQUAL_FATAL(ru_worker_run(&f, "hf", "memory", NULL, n.topic,
                                        n.dlq, n.group, NULL, NULL),
                          0);
    CU_ASSERT_EQUAL(ru_wait_log(f.log, "state gap: partition 0", WAIT_S), 0);
    CU_ASSERT_EQUAL(ops_wait_status(f.http, "/readyz", 503, WAIT_S * 1000), 0);
    CU_ASSERT_EQUAL(ops_worker_stop(f.pid, 20000), 0);
    CU_ASSERT_EQUAL(ops_worker_stop(k.pid, 20000), 0);
    rd_kafka_destroy(rk);
    names_free(&n);
}

static void register_suites(void)
{
    CU_pSuite s = CU_add_suite("restore_gap", NULL, NULL);
    CU_add_test(s, "file position out of the log (DeleteRecords): restored",
                test_kept_changelog);
    CU_add_test(s, "file position out of the log (retention): restored",
                test_kept_changelog_retention);
    CU_add_test(s, "no changelog covers it: state_incomplete, accept",
                test_uncovered);
    CU_add_test(s, "a handover that cannot catch up writes nothing",
                test_handover_hole);
}

int main(void)
{
    static const cunit_register_fn regs[] = {register_suites, NULL};
    return cunit_main(regs);
}

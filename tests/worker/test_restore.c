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
#include "tests/support/restore_util.h"

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
#define PARTS 2
/* partitions of the current test's source topic */
static int n_parts = PARTS;
#define WAIT_S 60

static int changelog_diff(const char *src, const char *cl, const char *group,
                          const struct model *m, const int64_t *want, int loud)
{
    return ru_changelog_diff(src, cl, group, n_parts, m, want, loud);
}

static void worker_run(struct ru_worker *w, const char *name, const char *store,
                       const char *path, const char *topic, const char *dlq,
                       const char *group)
{
    CU_ASSERT_FATAL(ru_worker_run(w, name, store, path, topic, dlq, group, NULL,
                                  NULL) == 0);
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
    rd_kafka_t *rk = ru_producer_new(brokers);
    CU_ASSERT_PTR_NOT_NULL_FATAL(rk);
    struct model m;
    model_init(&m, "rs", 4242, N_KEYS);
    CU_ASSERT_EQUAL_FATAL(ru_produce_events(rk, topic, &m, 400, 0), 0);

    /* (c) file worker A writes the changelog of the whole history. */
    struct ru_worker a, b;
    worker_run(&a, "a", "file", path, topic, dlq, group);
    int64_t hw[PARTS];
    for (int32_t p = 0; p < PARTS; p++)
        hw[p] = ru_high_watermark(rk, topic, p);
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
    CU_ASSERT_EQUAL_FATAL(ru_delete_records(rk, topic, n_parts, hw), 0);
    CU_ASSERT_EQUAL_FATAL(ru_produce_events(rk, topic, &m, 100, 0), 0);
    worker_run(&b, "b", "memory", NULL, topic, dlq, group);
    CU_ASSERT_EQUAL(ru_wait_log(b.log, "restored ", WAIT_S), 0);
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
        hw[p] = ru_high_watermark(rk, topic, p);
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
    CU_ASSERT_EQUAL(ru_wait_log(a.log, "restored ", WAIT_S), 0);
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
    rd_kafka_t *rk = ru_producer_new(brokers);
    CU_ASSERT_PTR_NOT_NULL_FATAL(rk);
    struct model m;
    model_init(&m, "rz", 777, N_KEYS);
    CU_ASSERT_EQUAL_FATAL(ru_produce_events(rk, topic, &m, 200, 0), 0);

    struct ru_worker w[3];
    worker_run(&w[0], "z0", "memory", NULL, topic, dlq, group);
    worker_run(&w[1], "z1", "memory", NULL, topic, dlq, group);
    /* The owner caught the changelog up (it applied the history first). */
    int owner = -1;
    int64_t deadline = edr_clock_ms() + WAIT_S * 1000;
    while (owner < 0 && edr_clock_ms() < deadline) {
        for (int i = 0; i < 2 && owner < 0; i++)
            if (ru_wait_log(w[i].log, "partition 0 caught up", 0) == 0)
                owner = i;
        edr_sleep_ms(100);
    }
    CU_ASSERT_FATAL(owner >= 0);
    int64_t hw[1] = {ru_high_watermark(rk, topic, 0)};
    int bad = -1;
    deadline = edr_clock_ms() + WAIT_S * 1000;
    while (bad != 0 && edr_clock_ms() < deadline)
        if ((bad = changelog_diff(topic, cl, group, &m, hw, 0)) != 0)
            edr_sleep_ms(300);
    CU_ASSERT_EQUAL_FATAL(bad, 0);

    /* Freeze the owner; the other one takes over after the session
     * timeout and writes the new events. */
    CU_ASSERT_EQUAL_FATAL(kill(w[owner].pid, SIGSTOP), 0);
    CU_ASSERT_EQUAL_FATAL(ru_produce_events(rk, topic, &m, 50, 0), 0);
    hw[0] = ru_high_watermark(rk, topic, 0);
    bad = -1;
    deadline = edr_clock_ms() + 75 * 1000;
    while (bad != 0 && edr_clock_ms() < deadline)
        if ((bad = changelog_diff(topic, cl, group, &m, hw, 0)) != 0)
            edr_sleep_ms(1000);
    CU_ASSERT_EQUAL(bad, 0);
    CU_ASSERT_EQUAL(kill(w[owner].pid, SIGCONT), 0);

    /* The zombie is back: events go on; it must write nothing stale. */
    CU_ASSERT_EQUAL_FATAL(ru_produce_events(rk, topic, &m, 50, 0), 0);
    hw[0] = ru_high_watermark(rk, topic, 0);
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
    CU_ASSERT_EQUAL_FATAL(ru_delete_records(rk, topic, n_parts, hw), 0);
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
    struct ru_worker w;
    worker_run(&w, "inv", "memory", NULL, topic, "ri_dlq", group);
    CU_ASSERT_EQUAL(
        ru_wait_log(w.log, "invalid setting EDR_CHANGELOG_TOPIC", 30), 0);
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

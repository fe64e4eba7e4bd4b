/* test_changelog.c: worker/topic_admin.c, worker/changelog.c and
 * worker/changelog_restore.c on the shared local broker.
 *
 * - ensure_changelog creates a compacted topic with the source's
 *   partition count, accepts it the second time, and refuses an existing
 *   topic that is not compacted, compacted but deleted by retention, or
 *   has another partition count; an absent source is transient;
 * - the retention read returns the values set on the topic, and the
 *   broker's defaults otherwise;
 * - writer + restore round trip: puts, overwrites and deletes in two
 *   transactions restore to exactly the latest value per key, deleted keys
 *   absent, positions equal to the offsets sent; a new writer of the same
 *   group learns that position when it gains the partition;
 * - restore error paths: records that are not changelog records are
 *   counted and skipped, the callback can stop it, an absent changelog is
 *   an error; a group without committed offsets takes the positions from
 *   the records' edr-source-offset headers;
 * - the record value format (no broker): encode/decode round trip with
 *   escapes, and the values decode refuses;
 * - an unreachable broker is transient for ensure_changelog and open; a
 *   bad -X property is fatal;
 * - zombie fencing: two writers share the ownership group of a
 *   one-partition source; the owner is frozen (not polled) past
 *   max.poll.interval.ms, the other takes the role and writes; the frozen
 *   one's write then returns CHANGELOG_FENCED and a read_committed restore
 *   shows none of its late records.
 * - a fatal producer error (EDR_FAULT=txn) is recoverable by a new writer
 *   of the same id; being fenced by a twin with that id is not.
 * Topics and groups have unique names. Every wait is on a condition with
 * a deadline. */
#include "base/clock.h"
#include "tests/support/cunit_main.h"
#include "tests/support/kafka_util.h"
#include "tests/support/ops_util.h"
#include "stores/fault.h"
#include "worker/changelog.h"
#include "worker/changelog_restore.h"
#include "worker/topic_admin.h"

#include <librdkafka/rdkafka.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define WAIT_MS 30000

static const char *brokers(void)
{
    const char *b = test_env("EDR_KAFKA_BROKERS");
    CU_ASSERT_PTR_NOT_NULL_FATAL(b);
    return b;
}

/* A producer handle for the Admin API calls. */
static rd_kafka_t *admin_new(void)
{
    char buf[256];
    rd_kafka_conf_t *conf = rd_kafka_conf_new();
    rd_kafka_conf_set(conf, "bootstrap.servers", brokers(), buf, sizeof(buf));
    rd_kafka_t *rk = rd_kafka_new(RD_KAFKA_PRODUCER, conf, buf, sizeof(buf));
    CU_ASSERT_PTR_NOT_NULL_FATAL(rk);
    return rk;
}

/* Creates topic with partitions and the name/value configs (NULL-ended),
 * then waits until every partition has a leader. */
static void create_topic(rd_kafka_t *rk, const char *topic, int partitions,
                         const char *const *cfg)
{
    char buf[256];
    rd_kafka_NewTopic_t *nt =
        rd_kafka_NewTopic_new(topic, partitions, 1, buf, sizeof(buf));
    CU_ASSERT_PTR_NOT_NULL_FATAL(nt);
    for (; cfg && cfg[0]; cfg += 2)
        CU_ASSERT_EQUAL_FATAL(rd_kafka_NewTopic_set_config(nt, cfg[0], cfg[1]),
                              0);
    rd_kafka_queue_t *q = rd_kafka_queue_new(rk);
    rd_kafka_CreateTopics(rk, &nt, 1, NULL, q);
    rd_kafka_event_t *ev = rd_kafka_queue_poll(q, WAIT_MS);
    CU_ASSERT_PTR_NOT_NULL_FATAL(ev);
    CU_ASSERT_EQUAL(rd_kafka_event_error(ev), 0);
    size_t cnt = 0;
    const rd_kafka_topic_result_t **tr = rd_kafka_CreateTopics_result_topics(
        rd_kafka_event_CreateTopics_result(ev), &cnt);
    CU_ASSERT_EQUAL_FATAL(cnt, 1);
    CU_ASSERT_EQUAL(rd_kafka_topic_result_error(tr[0]), 0);
    rd_kafka_event_destroy(ev);
    rd_kafka_queue_destroy(q);
    rd_kafka_NewTopic_destroy(nt);

    int64_t deadline = edr_clock_ms() + WAIT_MS;
    int parts = 0, rf = 0;
    while (edr_clock_ms() < deadline) {
        if (topic_admin_partitions(rk, topic, &parts, &rf, buf, sizeof(buf)) ==
                TOPIC_ADMIN_OK &&
            parts == partitions)
            break;
        edr_sleep_ms(100);
    }
    CU_ASSERT_EQUAL_FATAL(parts, partitions);
}

/* ---- topic_admin -------------------------------------------------------- */

static void test_ensure_creates(void)
{
    rd_kafka_t *rk = admin_new();
    char *src = test_unique_name("cl_src");
    char *cl = test_unique_name("cl_log");
    char err[512] = "";

    create_topic(rk, src, 3, NULL);
    int rc = topic_admin_ensure_changelog(rk, src, cl, err, sizeof(err));
    CU_ASSERT_EQUAL(rc, TOPIC_ADMIN_CREATED);
    if (rc != TOPIC_ADMIN_CREATED)
        fprintf(stderr, "ensure: %s\n", err);

    struct topic_retention r;
    CU_ASSERT_EQUAL(topic_admin_retention(rk, cl, &r, err, sizeof(err)),
                    TOPIC_ADMIN_OK);
    CU_ASSERT_STRING_EQUAL(r.cleanup_policy, "compact");
    CU_ASSERT_EQUAL(r.can_delete, 0);
    int parts = 0, rf = 0;
    CU_ASSERT_EQUAL(
        topic_admin_partitions(rk, cl, &parts, &rf, err, sizeof(err)),
        TOPIC_ADMIN_OK);
    CU_ASSERT_EQUAL(parts, 3);
    CU_ASSERT_EQUAL(rf, 1);

    /* Present and valid now; a second worker's call (the create race
     * ends here too, through TOPIC_ALREADY_EXISTS or the describe). */
    CU_ASSERT_EQUAL(topic_admin_ensure_changelog(rk, src, cl, err, sizeof(err)),
                    TOPIC_ADMIN_OK);

    /* An absent source is not an invalid setting (yet): transient. */
    char *nosrc = test_unique_name("cl_nosrc");
    CU_ASSERT_EQUAL(
        topic_admin_ensure_changelog(rk, nosrc, cl, err, sizeof(err)),
        TOPIC_ADMIN_TRANSIENT);
    /* ... and it was not auto-created by the metadata request. */
    CU_ASSERT_EQUAL(
        topic_admin_partitions(rk, nosrc, &parts, &rf, err, sizeof(err)),
        TOPIC_ADMIN_INVALID);
    CU_ASSERT_EQUAL(
        topic_admin_ensure_changelog(rk, src, src, err, sizeof(err)),
        TOPIC_ADMIN_INVALID);
    free(nosrc);
    free(src);
    free(cl);
    rd_kafka_destroy(rk);
}

static void test_ensure_invalid(void)
{
    rd_kafka_t *rk = admin_new();
    char *src = test_unique_name("cl_src");
    char *del = test_unique_name("cl_del");
    char *two = test_unique_name("cl_two");
    char *mixed = test_unique_name("cl_mixed");
    char *forever = test_unique_name("cl_forever");
    char err[512] = "";
    static const char *const compact[] = {"cleanup.policy", "compact", NULL};
    static const char *const delete[] = {"cleanup.policy", "delete", NULL};
    static const char *const cd[] = {"cleanup.policy", "compact,delete",
                                     "retention.ms", "86400000", NULL};
    static const char *const cd_forever[] = {"cleanup.policy",
                                             "compact,delete",
                                             "retention.ms",
                                             "-1",
                                             "retention.bytes",
                                             "-1",
                                             NULL};

    create_topic(rk, src, 3, NULL);
    create_topic(rk, del, 3, delete);
    create_topic(rk, two, 2, compact);
    create_topic(rk, mixed, 3, cd);
    create_topic(rk, forever, 3, cd_forever);

    CU_ASSERT_EQUAL(
        topic_admin_ensure_changelog(rk, src, del, err, sizeof(err)),
        TOPIC_ADMIN_INVALID);
    CU_ASSERT_PTR_NOT_NULL(strstr(err, "EDR_CHANGELOG_TOPIC"));
    CU_ASSERT_PTR_NOT_NULL(strstr(err, "not compacted"));
    CU_ASSERT_PTR_NOT_NULL(strstr(err, del));

    err[0] = '\0';
    CU_ASSERT_EQUAL(
        topic_admin_ensure_changelog(rk, src, two, err, sizeof(err)),
        TOPIC_ADMIN_INVALID);
    CU_ASSERT_PTR_NOT_NULL(strstr(err, "EDR_CHANGELOG_TOPIC"));
    CU_ASSERT_PTR_NOT_NULL(strstr(err, "2 partitions"));

    err[0] = '\0';
    CU_ASSERT_EQUAL(
        topic_admin_ensure_changelog(rk, src, mixed, err, sizeof(err)),
        TOPIC_ADMIN_INVALID);
    CU_ASSERT_PTR_NOT_NULL(strstr(err, "retention"));

    /* compact,delete that never deletes is a valid changelog. */
    CU_ASSERT_EQUAL(
        topic_admin_ensure_changelog(rk, src, forever, err, sizeof(err)),
        TOPIC_ADMIN_OK);
    free(src);
    free(del);
    free(two);
    free(mixed);
    free(forever);
    rd_kafka_destroy(rk);
}

static void test_retention(void)
{
    rd_kafka_t *rk = admin_new();
    char *set = test_unique_name("cl_ret");
    char *dflt = test_unique_name("cl_dflt");
    char err[512] = "";
    static const char *const cfg[] = {"retention.ms", "3600000",
                                      "retention.bytes", "1048576", NULL};

    create_topic(rk, set, 1, cfg);
    create_topic(rk, dflt, 1, NULL);
    struct topic_retention r;
    CU_ASSERT_EQUAL(topic_admin_retention(rk, set, &r, err, sizeof(err)),
                    TOPIC_ADMIN_OK);
    CU_ASSERT_STRING_EQUAL(r.cleanup_policy, "delete");
    CU_ASSERT_EQUAL(r.retention_ms, 3600000);
    CU_ASSERT_EQUAL(r.retention_bytes, 1048576);
    CU_ASSERT_EQUAL(r.can_delete, 1);

    /* The broker's defaults: 7 days, no size limit. */
    CU_ASSERT_EQUAL(topic_admin_retention(rk, dflt, &r, err, sizeof(err)),
                    TOPIC_ADMIN_OK);
    CU_ASSERT_STRING_EQUAL(r.cleanup_policy, "delete");
    CU_ASSERT_EQUAL(r.retention_ms, 604800000);
    CU_ASSERT_EQUAL(r.retention_bytes, -1);
    CU_ASSERT_EQUAL(r.can_delete, 1);

    char *none = test_unique_name("cl_none");
    CU_ASSERT_EQUAL(topic_admin_retention(rk, none, &r, err, sizeof(err)),
                    TOPIC_ADMIN_INVALID);
    CU_ASSERT_PTR_NOT_NULL(strstr(err, "does not exist"));
    free(none);
    free(set);
    free(dflt);
    rd_kafka_destroy(rk);
}

/* ---- writer and restore ------------------------------------------------- */

struct restored {
    int n;
    struct {
        int32_t partition;
        char cp[64];
        char tid[64];
        char entry[256];
    } e[16];
};

static int collect(const struct changelog_entry *e, void *user)
{
    struct restored *r = user;

    if (r->n >= 16)
        return 1;
    r->e[r->n].partition = e->partition;
    snprintf(r->e[r->n].cp, 64, "%s", e->key.counter_party_id);
    snprintf(r->e[r->n].tid, 64, "%s", e->transfer_id);
    snprintf(r->e[r->n].entry, 256, "%.*s", (int)e->entry_len, e->entry_json);
    r->n++;
    return 0;
}

static int stop_at_first(const struct changelog_entry *e, void *user)
{
    (void)e;
    (void)user;
    return 1;
}

/* The restored entry of counter party cp, or NULL. */
static const char *restored_entry(const struct restored *r, const char *cp,
                                  int32_t *partition)
{
    for (int i = 0; i < r->n; i++) {
        if (strcmp(r->e[i].cp, cp) == 0) {
            if (partition)
                *partition = r->e[i].partition;
            return r->e[i].entry;
        }
    }
    return NULL;
}

static struct edr_key key_of(const char *cp)
{
    return (struct edr_key){cp, "https://provider.example/api", "q-sum",
                            "p-sum"};
}

static struct changelog_change put(int32_t p, const char *cp, const char *entry)
{
    return (struct changelog_change){
        .partition = p,
        .key = key_of(cp),
        .entry_json = entry,
        .entry_len = strlen(entry),
    };
}

static struct changelog_change del(int32_t p, const char *cp)
{
    return (struct changelog_change){.partition = p, .key = key_of(cp)};
}

static struct changelog *writer_open(const char *src, const char *cl,
                                     const char *group, const char *id,
                                     char *const *props, size_t n_props)
{
    struct changelog_conf c = {
        .brokers = brokers(),
        .source_topic = src,
        .changelog_topic = cl,
        .group_id = group,
        .worker_id = id,
        .kafka_props = props,
        .n_kafka_props = n_props,
    };
    struct changelog *w = NULL;
    char err[512] = "";
    int rc = changelog_open(&c, &w, err, sizeof(err));
    if (rc != CHANGELOG_OK)
        fprintf(stderr, "changelog_open: %s\n", err);
    CU_ASSERT_EQUAL_FATAL(rc, CHANGELOG_OK);
    return w;
}

/* Polls w (and other, may be NULL) until w owns every partition in
 * 0..n-1 and has nothing pending; 1, or 0 at the deadline. */
static int wait_owns(struct changelog *w, struct changelog *other, int n)
{
    char err[256];
    int64_t deadline = edr_clock_ms() + WAIT_MS;

    while (edr_clock_ms() < deadline) {
        changelog_poll(w, err, sizeof(err));
        if (other)
            changelog_poll(other, err, sizeof(err));
        int all = changelog_pending(w) == 0;
        for (int p = 0; all && p < n; p++)
            all = changelog_owned(w, p);
        if (all)
            return 1;
        edr_sleep_ms(20);
    }
    return 0;
}

static int restore(const char *src, const char *cl, const char *group,
                   struct restored *r, struct changelog_restore_result *res)
{
    struct changelog_restore_conf c = {
        .brokers = brokers(),
        .source_topic = src,
        .changelog_topic = cl,
        .group_id = group,
        .timeout_ms = WAIT_MS,
    };
    char err[512] = "";
    memset(r, 0, sizeof(*r));
    int rc = changelog_restore(&c, collect, r, res, err, sizeof(err));
    if (rc != CHANGELOG_OK)
        fprintf(stderr, "changelog_restore: %s\n", err);
    return rc;
}

static void test_round_trip(void)
{
    rd_kafka_t *rk = admin_new();
    char *src = test_unique_name("cl_src");
    char *cl = test_unique_name("cl_log");
    char *group = test_unique_name("cl_grp");
    char err[512] = "";

    create_topic(rk, src, 2, NULL);
    CU_ASSERT_EQUAL_FATAL(
        topic_admin_ensure_changelog(rk, src, cl, err, sizeof(err)),
        TOPIC_ADMIN_CREATED);

    /* Nothing written yet: empty state, positions 0. */
    struct restored r;
    struct changelog_restore_result res;
    CU_ASSERT_EQUAL_FATAL(restore(src, cl, group, &r, &res), CHANGELOG_OK);
    CU_ASSERT_EQUAL(r.n, 0);
    CU_ASSERT_EQUAL(res.records, 0);
    CU_ASSERT_EQUAL_FATAL(res.n_positions, 2);
    CU_ASSERT_EQUAL(res.positions[0].next_offset, 0);
    CU_ASSERT_EQUAL(res.positions[1].next_offset, 0);
    changelog_restore_result_clear(&res);

    struct changelog *w = writer_open(src, cl, group, "w1", NULL, 0);
    CU_ASSERT_FATAL(wait_owns(w, NULL, 2));
    CU_ASSERT_EQUAL(changelog_committed(w, 0), -1);

    struct changelog_change b1[] = {
        put(0, "cp-a", "{\"transferProcessId\":\"tp-a1\",\"v\":1}"),
        put(1, "cp-b", "{\"transferProcessId\":\"tp-b1\"}"),
        put(0, "cp-c", "{\"transferProcessId\":\"tp-c1\"}"),
    };
    struct store_offset o1[] = {{0, 5, -1}, {1, 3, -1}};
    size_t written = 0;
    CU_ASSERT_EQUAL(
        changelog_write(w, b1, 3, o1, 2, &written, err, sizeof(err)),
        CHANGELOG_OK);
    CU_ASSERT_EQUAL(written, 3);

    struct changelog_change b2[] = {
        put(0, "cp-a", "{\"transferProcessId\":\"tp-a2\",\"v\":2}"),
        del(0, "cp-c"),
        put(1, "cp-d", "{\"transferProcessId\":\"tp-d1\"}"),
    };
    struct store_offset o2[] = {{0, 9, -1}, {1, 7, -1}};
    CU_ASSERT_EQUAL(
        changelog_write(w, b2, 3, o2, 2, &written, err, sizeof(err)),
        CHANGELOG_OK);
    CU_ASSERT_EQUAL(written, 3);

    /* A change without its partition's offset is refused (the offset
     * commit is what fences), and a bad entry too. */
    struct store_offset only1[] = {{1, 8, -1}};
    CU_ASSERT_EQUAL(
        changelog_write(w, b2, 1, only1, 1, &written, err, sizeof(err)),
        CHANGELOG_FATAL);
    CU_ASSERT_PTR_NOT_NULL(strstr(err, "without its source offset"));

    CU_ASSERT_EQUAL_FATAL(restore(src, cl, group, &r, &res), CHANGELOG_OK);
    CU_ASSERT_EQUAL(res.records, 6); /* exactly ours: no marker records */
    CU_ASSERT_EQUAL(res.invalid, 0);
    CU_ASSERT_EQUAL(res.live, 3);
    CU_ASSERT_EQUAL(r.n, 3);
    int32_t p = -1;
    const char *a = restored_entry(&r, "cp-a", &p);
    CU_ASSERT_PTR_NOT_NULL_FATAL(a);
    CU_ASSERT_STRING_EQUAL(a, "{\"transferProcessId\":\"tp-a2\",\"v\":2}");
    CU_ASSERT_EQUAL(p, 0);
    const char *b = restored_entry(&r, "cp-b", &p);
    CU_ASSERT_PTR_NOT_NULL(b);
    CU_ASSERT_EQUAL(p, 1);
    CU_ASSERT_PTR_NULL(restored_entry(&r, "cp-c", NULL)); /* deleted */
    CU_ASSERT_PTR_NOT_NULL(restored_entry(&r, "cp-d", &p));
    CU_ASSERT_EQUAL(p, 1);
    for (int i = 0; i < r.n; i++)
        if (strcmp(r.e[i].cp, "cp-a") == 0)
            CU_ASSERT_STRING_EQUAL(r.e[i].tid, "tp-a2");
    CU_ASSERT_EQUAL_FATAL(res.n_positions, 2);
    CU_ASSERT_EQUAL(res.positions[0].next_offset, 9);
    CU_ASSERT_EQUAL(res.positions[1].next_offset, 7);
    changelog_restore_result_clear(&res);

    /* A group without committed offsets (they expire): the positions come
     * from the records' headers, never past the true position. */
    char *other = test_unique_name("cl_grp_other");
    CU_ASSERT_EQUAL_FATAL(restore(src, cl, other, &r, &res), CHANGELOG_OK);
    CU_ASSERT_EQUAL(r.n, 3);
    CU_ASSERT_EQUAL(res.from_headers, 2);
    CU_ASSERT_EQUAL(res.positions[0].next_offset, 9);
    CU_ASSERT_EQUAL(res.positions[1].next_offset, 7);
    changelog_restore_result_clear(&res);
    free(other);

    /* A record that is not a changelog record is counted, not restored. */
    const char *bad_key =
        "0000000000000000000000000000000000000000000000000000000000000000";
    CU_ASSERT_EQUAL_FATAL(
        test_kafka_produce(brokers(), cl, bad_key, "{}", 2, err, sizeof(err)),
        0);
    CU_ASSERT_EQUAL_FATAL(
        test_kafka_produce(brokers(), cl, "short", "{}", 2, err, sizeof(err)),
        0);
    CU_ASSERT_EQUAL_FATAL(restore(src, cl, group, &r, &res), CHANGELOG_OK);
    CU_ASSERT_EQUAL(res.invalid, 2);
    CU_ASSERT_EQUAL(r.n, 3);
    CU_ASSERT_EQUAL(res.records, 8);
    changelog_restore_result_clear(&res);

    /* The callback can stop the restore; nothing is returned then. */
    struct changelog_restore_conf rc = {
        .brokers = brokers(),
        .source_topic = src,
        .changelog_topic = cl,
        .group_id = group,
        .timeout_ms = WAIT_MS,
    };
    CU_ASSERT_EQUAL(
        changelog_restore(&rc, stop_at_first, NULL, &res, err, sizeof(err)),
        CHANGELOG_STOPPED);
    CU_ASSERT_PTR_NULL(res.positions);
    CU_ASSERT_EQUAL(res.n_positions, 0);
    /* A changelog that does not exist is an error, not an empty state. */
    char *absent = test_unique_name("cl_absent");
    rc.changelog_topic = absent;
    CU_ASSERT_EQUAL(changelog_restore(&rc, collect, &r, &res, err, sizeof(err)),
                    CHANGELOG_FATAL);
    CU_ASSERT_PTR_NOT_NULL(strstr(err, absent));
    free(absent);

    /* The next owner of the group learns where the changelog stands. */
    changelog_close(w);
    w = writer_open(src, cl, group, "w2", NULL, 0);
    CU_ASSERT_FATAL(wait_owns(w, NULL, 2));
    CU_ASSERT_EQUAL(changelog_committed(w, 0), 9);
    CU_ASSERT_EQUAL(changelog_committed(w, 1), 7);
    changelog_close(w);

    free(src);
    free(cl);
    free(group);
    rd_kafka_destroy(rk);
}

/* One transaction over several changelog_add calls: nothing before the
 * commit, everything (the highest offsets) after it; an open transaction
 * that is never committed leaves nothing. */
static void test_txn_spans_batches(void)
{
    rd_kafka_t *rk = admin_new();
    char *src = test_unique_name("cl_src");
    char *cl = test_unique_name("cl_log");
    char *group = test_unique_name("cl_grp");
    char err[512] = "";

    create_topic(rk, src, 2, NULL);
    CU_ASSERT_EQUAL_FATAL(
        topic_admin_ensure_changelog(rk, src, cl, err, sizeof(err)),
        TOPIC_ADMIN_CREATED);
    struct changelog *w = writer_open(src, cl, group, "w1", NULL, 0);
    CU_ASSERT_FATAL(wait_owns(w, NULL, 2));
    CU_ASSERT_EQUAL(changelog_txn_age_ms(w), -1);
    uint64_t ended = changelog_txn_ended(w);

    struct changelog_change b1[] = {
        put(0, "cp-a", "{\"transferProcessId\":\"tp-a1\"}"),
        put(1, "cp-b", "{\"transferProcessId\":\"tp-b1\"}"),
    };
    struct store_offset o1[] = {{0, 4, -1}, {1, 2, -1}};
    struct changelog_change b2[] = {
        put(0, "cp-a", "{\"transferProcessId\":\"tp-a2\"}"),
    };
    struct store_offset o2[] = {{0, 6, -1}};
    size_t written = 0;
    CU_ASSERT_EQUAL(changelog_add(w, b1, 2, o1, 2, &written, err, sizeof(err)),
                    CHANGELOG_OK);
    CU_ASSERT_EQUAL(written, 2);
    CU_ASSERT_EQUAL(changelog_add(w, b2, 1, o2, 1, &written, err, sizeof(err)),
                    CHANGELOG_OK);
    CU_ASSERT_EQUAL(written, 1);
    CU_ASSERT_EQUAL(changelog_txn_records(w), 3);
    CU_ASSERT(changelog_txn_age_ms(w) >= 0);
    CU_ASSERT_EQUAL(changelog_txn_ended(w), ended); /* still open */
    CU_ASSERT_EQUAL(changelog_committed(w, 0), -1);

    CU_ASSERT_EQUAL_FATAL(changelog_commit(w, err, sizeof(err)), CHANGELOG_OK);
    CU_ASSERT_EQUAL(changelog_txn_age_ms(w), -1);
    CU_ASSERT_EQUAL(changelog_txn_records(w), 0);
    CU_ASSERT_EQUAL(changelog_txn_ended(w), ended + 1);
    /* Its own commits are the positions the changelog now reflects. */
    CU_ASSERT_EQUAL(changelog_committed(w, 0), 6);
    CU_ASSERT_EQUAL(changelog_committed(w, 1), 2);
    /* Nothing open: a commit is a no-op. */
    CU_ASSERT_EQUAL(changelog_commit(w, err, sizeof(err)), CHANGELOG_OK);
    CU_ASSERT_EQUAL(changelog_txn_ended(w), ended + 1);

    struct restored r;
    struct changelog_restore_result res;
    CU_ASSERT_EQUAL_FATAL(restore(src, cl, group, &r, &res), CHANGELOG_OK);
    CU_ASSERT_EQUAL(res.records, 3);
    CU_ASSERT_EQUAL(r.n, 2);
    const char *a = restored_entry(&r, "cp-a", NULL);
    CU_ASSERT_PTR_NOT_NULL_FATAL(a);
    CU_ASSERT_STRING_EQUAL(a, "{\"transferProcessId\":\"tp-a2\"}");
    CU_ASSERT_EQUAL_FATAL(res.n_positions, 2);
    CU_ASSERT_EQUAL(res.positions[0].next_offset, 6);
    CU_ASSERT_EQUAL(res.positions[1].next_offset, 2);
    changelog_restore_result_clear(&res);

    /* Added, never committed: the close aborts it, nothing shows. */
    struct changelog_change b3[] = {
        put(1, "cp-c", "{\"transferProcessId\":\"tp-c1\"}"),
    };
    struct store_offset o3[] = {{1, 9, -1}};
    CU_ASSERT_EQUAL(changelog_add(w, b3, 1, o3, 1, &written, err, sizeof(err)),
                    CHANGELOG_OK);
    CU_ASSERT_EQUAL(written, 1);
    changelog_close(w);
    CU_ASSERT_EQUAL_FATAL(restore(src, cl, group, &r, &res), CHANGELOG_OK);
    CU_ASSERT_EQUAL(r.n, 2);
    CU_ASSERT_PTR_NULL(restored_entry(&r, "cp-c", NULL));
    CU_ASSERT_EQUAL(res.records, 3);
    CU_ASSERT_EQUAL_FATAL(res.n_positions, 2);
    CU_ASSERT_EQUAL(res.positions[1].next_offset, 2);
    changelog_restore_result_clear(&res);

    free(src);
    free(cl);
    free(group);
    rd_kafka_destroy(rk);
}

/* A fatal producer error (EDR_FAULT=txn, as a broker restart can leave
 * librdkafka's transaction manager in INVALID_TXN_STATE) is one a new
 * writer clears: changelog_recoverable says so, and a writer reopened
 * with the same id writes again. Fencing by a newer writer with the same
 * transactional.id (a duplicate worker id) is not recoverable. */
static void test_fatal_recoverable(void)
{
    rd_kafka_t *rk = admin_new();
    char *src = test_unique_name("cl_src");
    char *cl = test_unique_name("cl_log");
    char *group = test_unique_name("cl_grp");
    char err[512] = "";
    size_t written = 0;

    create_topic(rk, src, 1, NULL);
    CU_ASSERT_EQUAL_FATAL(
        topic_admin_ensure_changelog(rk, src, cl, err, sizeof(err)),
        TOPIC_ADMIN_CREATED);
    struct changelog *w = writer_open(src, cl, group, "wf", NULL, 0);
    CU_ASSERT_FATAL(wait_owns(w, NULL, 1));
    struct changelog_change b1[] = {
        put(0, "cp-a", "{\"transferProcessId\":\"tp-f\"}")};
    struct store_offset o1[] = {{0, 3, -1}};
    CU_ASSERT_EQUAL(changelog_recoverable(w), 0); /* no error yet */

    fault_arm(FAULT_TXN, 1, 0);
    CU_ASSERT_EQUAL(
        changelog_write(w, b1, 1, o1, 1, &written, err, sizeof(err)),
        CHANGELOG_FATAL);
    fault_disarm_all();
    CU_ASSERT_EQUAL(written, 0);
    CU_ASSERT_EQUAL(changelog_recoverable(w), 1);
    changelog_close(w);

    w = writer_open(src, cl, group, "wf", NULL, 0);
    CU_ASSERT_FATAL(wait_owns(w, NULL, 1));
    CU_ASSERT_EQUAL(
        changelog_write(w, b1, 1, o1, 1, &written, err, sizeof(err)),
        CHANGELOG_OK);
    CU_ASSERT_EQUAL(written, 1);
    struct restored r;
    struct changelog_restore_result res;
    CU_ASSERT_EQUAL_FATAL(restore(src, cl, group, &r, &res), CHANGELOG_OK);
    CU_ASSERT_EQUAL(r.n, 1);
    CU_ASSERT_EQUAL(res.records, 1); /* the failed write left nothing */
    CU_ASSERT_EQUAL_FATAL(res.n_positions, 1);
    CU_ASSERT_EQUAL(res.positions[0].next_offset, 3);
    changelog_restore_result_clear(&res);

    /* A second writer with the same id fences the first for good. */
    struct changelog *twin = writer_open(src, cl, group, "wf", NULL, 0);
    struct store_offset o2[] = {{0, 4, -1}};
    int rc = changelog_write(w, b1, 1, o2, 1, &written, err, sizeof(err));
    CU_ASSERT_EQUAL(rc, CHANGELOG_FATAL);
    CU_ASSERT_EQUAL(changelog_recoverable(w), 0);
    changelog_close(twin);
    changelog_close(w);

    free(src);
    free(cl);
    free(group);
    rd_kafka_destroy(rk);
}

static void test_zombie_fenced(void)
{
    rd_kafka_t *rk = admin_new();
    char *src = test_unique_name("cl_src");
    char *cl = test_unique_name("cl_log");
    char *group = test_unique_name("cl_grp");
    char err[512] = "";
    /* Small timeouts: a writer not polled for 6 s leaves the group. */
    static char p1[] = "session.timeout.ms=6000";
    static char p2[] = "max.poll.interval.ms=6000";
    static char p3[] = "heartbeat.interval.ms=500";
    char *props[] = {p1, p2, p3};

    create_topic(rk, src, 1, NULL);
    CU_ASSERT_EQUAL_FATAL(
        topic_admin_ensure_changelog(rk, src, cl, err, sizeof(err)),
        TOPIC_ADMIN_CREATED);
    struct changelog *w[2];
    w[0] = writer_open(src, cl, group, "a", props, 3);
    CU_ASSERT_FATAL(wait_owns(w[0], NULL, 1));
    uint64_t a0 = changelog_assignments(w[0]);
    w[1] = writer_open(src, cl, group, "b", props, 3);

    /* Both in the group: each saw the rebalance that B's join caused and
     * exactly one of them owns the partition. */
    int64_t deadline = edr_clock_ms() + WAIT_MS;
    int owner = -1;
    while (edr_clock_ms() < deadline) {
        changelog_poll(w[0], err, sizeof(err));
        changelog_poll(w[1], err, sizeof(err));
        if (changelog_assignments(w[0]) > a0 &&
            changelog_assignments(w[1]) > 0 && changelog_pending(w[0]) == 0 &&
            changelog_pending(w[1]) == 0 &&
            changelog_owned(w[0], 0) + changelog_owned(w[1], 0) == 1) {
            owner = changelog_owned(w[0], 0) ? 0 : 1;
            break;
        }
        edr_sleep_ms(20);
    }
    CU_ASSERT_FATAL(owner >= 0);
    struct changelog *z = w[owner], *s = w[1 - owner];

    /* The owner writes while it is the owner. */
    struct changelog_change zb1[] = {
        put(0, "cp-z1", "{\"transferProcessId\":\"tp-z1\"}")};
    struct store_offset zo1[] = {{0, 1, -1}};
    size_t written = 0;
    CU_ASSERT_EQUAL_FATAL(
        changelog_write(z, zb1, 1, zo1, 1, &written, err, sizeof(err)),
        CHANGELOG_OK);
    CU_ASSERT_EQUAL(written, 1);
    CU_ASSERT_EQUAL(changelog_owned(s, 0), 0); /* the other writes nothing */
    CU_ASSERT_EQUAL(
        changelog_write(s, zb1, 1, zo1, 1, &written, err, sizeof(err)),
        CHANGELOG_OK);
    CU_ASSERT_EQUAL(written, 0);

    /* Freeze the owner: only s is polled, until s has taken the role. */
    int64_t t0 = edr_clock_ms();
    CU_ASSERT_FATAL(wait_owns(s, NULL, 1));
    fprintf(stderr, "takeover after %lld ms\n",
            (long long)(edr_clock_ms() - t0));
    CU_ASSERT_EQUAL(changelog_committed(s, 0), 1); /* z's commit */
    /* The zombie still believes it owns the partition ... */
    CU_ASSERT_EQUAL(changelog_owned(z, 0), 1);

    /* ... the new owner writes ... */
    struct changelog_change sb[] = {
        put(0, "cp-s1", "{\"transferProcessId\":\"tp-s1\"}")};
    struct store_offset so[] = {{0, 3, -1}};
    CU_ASSERT_EQUAL(
        changelog_write(s, sb, 1, so, 1, &written, err, sizeof(err)),
        CHANGELOG_OK);
    CU_ASSERT_EQUAL(written, 1);

    /* ... and the zombie's write is fenced by the group coordinator. */
    struct changelog_change zb2[] = {
        put(0, "cp-z1", "{\"transferProcessId\":\"tp-zombie\"}"),
        put(0, "cp-z2", "{\"transferProcessId\":\"tp-z2\"}"),
    };
    struct store_offset zo2[] = {{0, 2, -1}};
    err[0] = '\0';
    int rc = changelog_write(z, zb2, 2, zo2, 1, &written, err, sizeof(err));
    fprintf(stderr, "zombie write: %d (%s)\n", rc, err);
    CU_ASSERT_EQUAL(rc, CHANGELOG_FENCED);
    CU_ASSERT_EQUAL(changelog_owned(z, 0), 0); /* role dropped */
    /* Dropped means dropped: a retry writes nothing. */
    CU_ASSERT_EQUAL(
        changelog_write(z, zb2, 2, zo2, 1, &written, err, sizeof(err)),
        CHANGELOG_OK);
    CU_ASSERT_EQUAL(written, 0);

    struct restored r;
    struct changelog_restore_result res;
    CU_ASSERT_EQUAL_FATAL(restore(src, cl, group, &r, &res), CHANGELOG_OK);
    CU_ASSERT_EQUAL(r.n, 2);
    const char *z1 = restored_entry(&r, "cp-z1", NULL);
    CU_ASSERT_PTR_NOT_NULL_FATAL(z1);
    CU_ASSERT_STRING_EQUAL(z1, "{\"transferProcessId\":\"tp-z1\"}");
    CU_ASSERT_PTR_NULL(restored_entry(&r, "cp-z2", NULL));
    CU_ASSERT_PTR_NOT_NULL(restored_entry(&r, "cp-s1", NULL));
    CU_ASSERT_EQUAL(res.records, 2); /* the aborted ones are invisible */
    CU_ASSERT_EQUAL_FATAL(res.n_positions, 1);
    CU_ASSERT_EQUAL(res.positions[0].next_offset, 3);
    changelog_restore_result_clear(&res);

    changelog_close(z);
    changelog_close(s);
    free(src);
    free(cl);
    free(group);
    rd_kafka_destroy(rk);
}

/* ---- record format (no broker) ----------------------------------------- */

static void test_value_round_trip(void)
{
    struct changelog_change ch = put(0, "cp \"quoted\" \xc3\xa9",
                                     "{\"a\":[1,{\"b\":null}],"
                                     "\"transferProcessId\":\"tp-1\"}");
    char *val = NULL;
    size_t len = 0;
    CU_ASSERT_EQUAL_FATAL(changelog_value_encode(&ch, &val, &len), 0);
    CU_ASSERT_EQUAL(strlen(val), len);
    CU_ASSERT_EQUAL(strncmp(val, "{\"counter_party_id\":", 20), 0);

    char key[EDR_CONNECTION_KEY_LEN + 1];
    edr_connection_key(&ch.key, key);
    char *buf = malloc(len + 1);
    memcpy(buf, val, len + 1);
    struct changelog_value v;
    char err[128];
    CU_ASSERT_EQUAL_FATAL(changelog_value_decode(buf, len, key,
                                                 EDR_CONNECTION_KEY_LEN, &v,
                                                 err, sizeof(err)),
                          0);
    CU_ASSERT_STRING_EQUAL(v.key.counter_party_id, ch.key.counter_party_id);
    CU_ASSERT_STRING_EQUAL(v.key.policy_checksum, "p-sum");
    CU_ASSERT_EQUAL(v.entry_len, ch.entry_len);
    CU_ASSERT_EQUAL(memcmp(v.entry_json, ch.entry_json, ch.entry_len), 0);
    CU_ASSERT_STRING_EQUAL(v.transfer_id, "tp-1");
    changelog_value_clear(&v);

    /* The value of another connection under this key is refused. */
    struct changelog_change other = put(0, "cp-other", ch.entry_json);
    char key2[EDR_CONNECTION_KEY_LEN + 1];
    edr_connection_key(&other.key, key2);
    memcpy(buf, val, len + 1);
    CU_ASSERT_EQUAL(changelog_value_decode(buf, len, key2,
                                           EDR_CONNECTION_KEY_LEN, &v, err,
                                           sizeof(err)),
                    -1);
    CU_ASSERT_PTR_NOT_NULL(strstr(err, "connection key"));
    free(buf);
    free(val);

    /* An entry that is not one JSON object is not encoded. */
    struct changelog_change bad = put(0, "cp", "[1]");
    CU_ASSERT_EQUAL(changelog_value_encode(&bad, &val, &len), -1);
    struct changelog_change tomb = del(0, "cp");
    CU_ASSERT_EQUAL(changelog_value_encode(&tomb, &val, &len), -1);
}

static void test_value_decode_rejects(void)
{
    struct edr_key k = key_of("cp");
    char key[EDR_CONNECTION_KEY_LEN + 1];
    edr_connection_key(&k, key);
    static const char *const bad[] = {
        "",
        "null",
        "{}",
        "{\"counter_party_id\":\"cp\"}",
        "{\"counter_party_id\":\"cp\",\"counter_party_address\":"
        "\"https://provider.example/api\",\"query_checksum\":\"q-sum\","
        "\"policy_checksum\":\"p-sum\"}", /* no edr */
        "{\"counter_party_id\":\"cp\",\"counter_party_address\":"
        "\"https://provider.example/api\",\"query_checksum\":\"q-sum\","
        "\"policy_checksum\":\"p-sum\",\"edr\":{}}", /* no transfer id */
        "{\"counter_party_id\":\"cp\",\"counter_party_address\":"
        "\"https://provider.example/api\",\"query_checksum\":\"q-sum\","
        "\"policy_checksum\":\"p-sum\",\"edr\":[]}", /* not an object */
        "{\"counter_party_id\":\"cp\",\"counter_party_address\":"
        "\"https://provider.example/api\",\"query_checksum\":\"q-sum\","
        "\"policy_checksum\":\"p-sum\",\"edr\":{\"transferProcessId\":"
        "\"t\"}} trailing",
        "{\"counter_party_id\":\"cp\",\"counter_party_address\":"
        "\"https://provider.example/api\",\"query_checksum\":\"q-sum\","
        "\"policy_checksum\":\"\",\"edr\":{\"transferProcessId\":"
        "\"t\"}}", /* empty field */
        "{\"counter_party_id\":\"cp\",\"counter_party_address\":"
        "\"https://provider.example/api\",\"query_checksum\":\"q-sum\","
        "\"policy_checksum\":\"p-sum\",\"edr\":{\"transferProcessId\":"
        "\"t\"", /* cut */
        NULL};
    for (int i = 0; bad[i]; i++) {
        size_t len = strlen(bad[i]);
        char *buf = malloc(len + 1);
        memcpy(buf, bad[i], len + 1);
        struct changelog_value v;
        char err[128] = "";
        CU_ASSERT_EQUAL(changelog_value_decode(buf, len, key,
                                               EDR_CONNECTION_KEY_LEN, &v, err,
                                               sizeof(err)),
                        -1);
        CU_ASSERT(err[0] != '\0');
        free(buf);
    }
    /* The good one, for contrast. */
    const char *good =
        "{\"counter_party_id\":\"cp\",\"counter_party_address\":"
        "\"https://provider.example/api\",\"query_checksum\":\"q-sum\","
        "\"policy_checksum\":\"p-sum\",\"extra\":1,\"edr\":"
        "{\"transferProcessId\":\"t\"}}";
    char *buf = strdup(good);
    struct changelog_value v;
    char err[128];
    CU_ASSERT_EQUAL(changelog_value_decode(buf, strlen(good), key,
                                           EDR_CONNECTION_KEY_LEN, &v, err,
                                           sizeof(err)),
                    0);
    changelog_value_clear(&v);
    free(buf);
}

/* A broker that is not there: every module says "transient", not
 * "invalid" (the worker must back off, not exit 2). */
static void test_unreachable_is_transient(void)
{
    char addr[64], buf[256], err[512] = "";
    snprintf(addr, sizeof(addr), "127.0.0.1:%d", ops_free_port());
    rd_kafka_conf_t *conf = rd_kafka_conf_new();
    rd_kafka_conf_set(conf, "bootstrap.servers", addr, buf, sizeof(buf));
    rd_kafka_t *rk = rd_kafka_new(RD_KAFKA_PRODUCER, conf, buf, sizeof(buf));
    CU_ASSERT_PTR_NOT_NULL_FATAL(rk);
    CU_ASSERT_EQUAL(topic_admin_ensure_changelog(rk, "edr.events",
                                                 "edr.events.changelog", err,
                                                 sizeof(err)),
                    TOPIC_ADMIN_TRANSIENT);
    CU_ASSERT(err[0] != '\0');
    rd_kafka_destroy(rk);

    struct changelog_conf c = {
        .brokers = addr,
        .source_topic = "edr.events",
        .changelog_topic = "edr.events.changelog",
        .group_id = "g",
        .worker_id = "w",
        .op_timeout_ms = 2000,
    };
    struct changelog *w = (struct changelog *)&c; /* must become NULL */
    err[0] = '\0';
    CU_ASSERT_EQUAL(changelog_open(&c, &w, err, sizeof(err)),
                    CHANGELOG_TRANSIENT);
    CU_ASSERT_PTR_NULL(w);
    CU_ASSERT(err[0] != '\0');

    /* A bad -X property is a bad setting. */
    static char badp[] = "no.such.property=1";
    char *props[] = {badp};
    c.kafka_props = props;
    c.n_kafka_props = 1;
    CU_ASSERT_EQUAL(changelog_open(&c, &w, err, sizeof(err)), CHANGELOG_FATAL);
    CU_ASSERT_PTR_NOT_NULL(strstr(err, "no.such.property"));
}

static void register_suites(void)
{
    CU_pSuite f = CU_add_suite("changelog record format", NULL, NULL);
    CU_add_test(f, "value round trip", test_value_round_trip);
    CU_add_test(f, "value decode rejects", test_value_decode_rejects);

    CU_pSuite s = CU_add_suite("changelog", NULL, NULL);
    CU_add_test(s, "ensure creates a compacted topic", test_ensure_creates);
    CU_add_test(s, "ensure refuses a wrong topic", test_ensure_invalid);
    CU_add_test(s, "retention settings", test_retention);
    CU_add_test(s, "write and restore round trip", test_round_trip);
    CU_add_test(s, "a transaction spans several batches",
                test_txn_spans_batches);
    CU_add_test(s, "zombie writer is fenced", test_zombie_fenced);
    CU_add_test(s, "a fatal producer error is recoverable",
                test_fatal_recoverable);
    CU_add_test(s, "unreachable broker is transient",
                test_unreachable_is_transient);
}

int main(void)
{
    static const cunit_register_fn regs[] = {register_suites, NULL};
    return cunit_main(regs);
}

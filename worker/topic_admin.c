/* topic_admin.c: see topic_admin.h. Metadata is always requested for all
 * topics: a request naming one topic may auto-create it on a broker with
 * auto.create.topics.enable (librdkafka producers allow that by default),
 * and creating the changelog with the broker's defaults (cleanup.policy
 * delete) is exactly what must not happen. */
#include "worker/topic_admin.h"
#include "base/errstr.h"

#include "base/clock.h"

#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* Partitions of topic, how many have a leader, and partition 0's replica
 * count. TOPIC_ADMIN_INVALID when unknown, TRANSIENT when no answer. */
static int ta_metadata(rd_kafka_t *rk, const char *topic, int *partitions,
                       int *with_leader, int *replication, char *errstr,
                       size_t n)
{
    const struct rd_kafka_metadata *md = NULL;
    int rc = TOPIC_ADMIN_INVALID;

    *partitions = 0;
    *with_leader = 0;
    *replication = 0;
    rd_kafka_resp_err_t err =
        rd_kafka_metadata(rk, 1, NULL, &md, TOPIC_ADMIN_TIMEOUT_MS);
    if (err) {
        edr_errf(errstr, n, "metadata: %s", rd_kafka_err2str(err));
        return TOPIC_ADMIN_TRANSIENT;
    }
    for (int i = 0; i < md->topic_cnt; i++) {
        const rd_kafka_metadata_topic_t *t = &md->topics[i];
        if (strcmp(t->topic, topic) != 0)
            continue;
        if (t->err == RD_KAFKA_RESP_ERR_UNKNOWN_TOPIC_OR_PART)
            break;
        if (t->err) {
            edr_errf(errstr, n, "metadata of %s: %s", topic,
                     rd_kafka_err2str(t->err));
            rc = TOPIC_ADMIN_TRANSIENT;
            goto done;
        }
        *partitions = t->partition_cnt;
        for (int j = 0; j < t->partition_cnt; j++) {
            const rd_kafka_metadata_partition_t *p = &t->partitions[j];
            if (!p->err && p->leader >= 0)
                (*with_leader)++;
            if (p->id == 0)
                *replication = p->replica_cnt;
        }
        rc = TOPIC_ADMIN_OK;
        goto done;
    }
    edr_errf(errstr, n, "topic %s does not exist", topic);

done:
    rd_kafka_metadata_destroy(md);
    return rc;
}

int topic_admin_partitions(rd_kafka_t *rk, const char *topic, int *partitions,
                           int *replication, char *errstr, size_t n)
{
    int with_leader;

    return ta_metadata(rk, topic, partitions, &with_leader, replication, errstr,
                       n);
}

/* Admin options for op with our timeouts, or NULL (errstr set). */
static rd_kafka_AdminOptions_t *
ta_options(rd_kafka_t *rk, rd_kafka_admin_op_t op, char *errstr, size_t n)
{
    char buf[256];
    rd_kafka_AdminOptions_t *opts = rd_kafka_AdminOptions_new(rk, op);

    if (!opts) {
        edr_errf(errstr, n, "admin options: out of memory");
        return NULL;
    }
    if (rd_kafka_AdminOptions_set_request_timeout(opts, TOPIC_ADMIN_TIMEOUT_MS,
                                                  buf, sizeof(buf)) ||
        (op == RD_KAFKA_ADMIN_OP_CREATETOPICS &&
         rd_kafka_AdminOptions_set_operation_timeout(
             opts, TOPIC_ADMIN_TIMEOUT_MS, buf, sizeof(buf)))) {
        edr_errf(errstr, n, "admin options: %s", buf);
        rd_kafka_AdminOptions_destroy(opts);
        return NULL;
    }
    return opts;
}

/* The values of names[0..k) of topic's configuration into vals (each
 * vsize bytes; "" when the broker did not list the name). *exists = 0
 * when the topic is unknown (then TOPIC_ADMIN_OK too). */
static int ta_describe(rd_kafka_t *rk, const char *topic,
                       const char *const *names, size_t k, char (*vals)[64],
                       int *exists, char *errstr, size_t n)
{
    rd_kafka_ConfigResource_t *res = NULL;
    rd_kafka_AdminOptions_t *opts = NULL;
    rd_kafka_queue_t *q = NULL;
    rd_kafka_event_t *ev = NULL;
    int rc = TOPIC_ADMIN_TRANSIENT;

    *exists = 0;
    for (size_t i = 0; i < k; i++)
        vals[i][0] = '\0';
    res = rd_kafka_ConfigResource_new(RD_KAFKA_RESOURCE_TOPIC, topic);
    opts = ta_options(rk, RD_KAFKA_ADMIN_OP_DESCRIBECONFIGS, errstr, n);
    q = rd_kafka_queue_new(rk);
    if (!res || !opts || !q) {
        if (!opts)
            goto done;
        edr_errf(errstr, n, "describe %s: out of memory", topic);
        goto done;
    }
    rd_kafka_DescribeConfigs(rk, &res, 1, opts, q);
    ev = rd_kafka_queue_poll(q, TOPIC_ADMIN_TIMEOUT_MS + 5000);
    if (!ev) {
        edr_errf(errstr, n, "describe configs of %s: no answer within %d ms",
                 topic, TOPIC_ADMIN_TIMEOUT_MS + 5000);
        goto done;
    }
    if (rd_kafka_event_error(ev)) {
        edr_errf(errstr, n, "describe configs of %s: %s", topic,
                 rd_kafka_event_error_string(ev));
        goto done;
    }
    size_t cnt = 0;
    const rd_kafka_ConfigResource_t **rs =
        rd_kafka_DescribeConfigs_result_resources(
            rd_kafka_event_DescribeConfigs_result(ev), &cnt);
    if (cnt != 1) {
        edr_errf(errstr, n, "describe configs of %s: %zu results", topic, cnt);
        goto done;
    }
    rd_kafka_resp_err_t err = rd_kafka_ConfigResource_error(rs[0]);
    if (err == RD_KAFKA_RESP_ERR_UNKNOWN_TOPIC_OR_PART) {
        rc = TOPIC_ADMIN_OK;
        goto done;
    }
    if (err) {
        const char *s = rd_kafka_ConfigResource_error_string(rs[0]);
        edr_errf(errstr, n, "describe configs of %s: %s", topic,
                 s ? s : rd_kafka_err2str(err));
        goto done;
    }
    *exists = 1;
    const rd_kafka_ConfigEntry_t **es =
        rd_kafka_ConfigResource_configs(rs[0], &cnt);
    for (size_t i = 0; i < cnt; i++) {
        const char *name = rd_kafka_ConfigEntry_name(es[i]);
        const char *val = rd_kafka_ConfigEntry_value(es[i]);
        for (size_t j = 0; name && j < k; j++)
            if (strcmp(name, names[j]) == 0)
                snprintf(vals[j], 64, "%s", val ? val : "");
    }
    rc = TOPIC_ADMIN_OK;

done:
    if (ev)
        rd_kafka_event_destroy(ev);
    if (q)
        rd_kafka_queue_destroy(q);
    if (opts)
        rd_kafka_AdminOptions_destroy(opts);
    if (res)
        rd_kafka_ConfigResource_destroy(res);
    return rc;
}

static int ta_parse_i64(const char *s, int64_t *out)
{
    char *end;

    if (!s[0])
        return -1;
    errno = 0;
    long long v = strtoll(s, &end, 10);
    if (errno || *end)
        return -1;
    *out = (int64_t)v;
    return 0;
}

/* 1 when the comma-separated policy list contains word. */
static int ta_policy_has(const char *policy, const char *word)
{
    size_t wl = strlen(word);

    for (const char *p = policy; *p;) {
        while (*p == ' ' || *p == ',')
            p++;
        size_t l = strcspn(p, ", ");
        if (l == wl && strncmp(p, word, wl) == 0)
            return 1;
        p += l;
    }
    return 0;
}

static const char *const ta_names[] = {"cleanup.policy", "retention.ms",
                                       "retention.bytes"};

/* Describe + parse; *exists as ta_describe. */
static int ta_retention(rd_kafka_t *rk, const char *topic,
                        struct topic_retention *out, int *exists, char *errstr,
                        size_t n)
{
    char vals[3][64];

    memset(out, 0, sizeof(*out));
    int rc = ta_describe(rk, topic, ta_names, 3, vals, exists, errstr, n);
    if (rc != TOPIC_ADMIN_OK || !*exists)
        return rc;
    if (!vals[0][0] || ta_parse_i64(vals[1], &out->retention_ms) ||
        ta_parse_i64(vals[2], &out->retention_bytes)) {
        edr_errf(errstr, n,
                 "topic %s: unreadable retention settings (cleanup.policy=%s "
                 "retention.ms=%s retention.bytes=%s)",
                 topic, vals[0], vals[1], vals[2]);
        return TOPIC_ADMIN_INVALID;
    }
    snprintf(out->cleanup_policy, sizeof(out->cleanup_policy), "%s", vals[0]);
    out->can_delete = ta_policy_has(vals[0], "delete") &&
                      (out->retention_ms >= 0 || out->retention_bytes >= 0);
    return TOPIC_ADMIN_OK;
}

int topic_admin_retention(rd_kafka_t *rk, const char *topic,
                          struct topic_retention *out, char *errstr, size_t n)
{
    int exists;
    int rc = ta_retention(rk, topic, out, &exists, errstr, n);

    if (rc == TOPIC_ADMIN_OK && !exists) {
        edr_errf(errstr, n, "topic %s does not exist", topic);
        return TOPIC_ADMIN_INVALID;
    }
    return rc;
}

const char *const topic_admin_changelog_configs[][2] = {
    {"cleanup.policy", "compact"},
    {"max.message.bytes", TOPIC_ADMIN_CHANGELOG_MAX_BYTES},
    {"message.timestamp.type", "CreateTime"},
    /* segments close after 64 MiB or 10 minutes: the cleaner can act */
    {"segment.bytes", "67108864"},
    {"segment.ms", "600000"},
    /* clean once 10% of the log is superseded records (default 50%) */
    {"min.cleanable.dirty.ratio", "0.1"},
    {NULL, NULL},
};

/* Creates topic; *already = 1 when another client was first. */
static int ta_create(rd_kafka_t *rk, const char *topic, int partitions,
                     int replication, int *already, char *errstr, size_t n)
{
    char buf[256];
    rd_kafka_NewTopic_t *nt = NULL;
    rd_kafka_AdminOptions_t *opts = NULL;
    rd_kafka_queue_t *q = NULL;
    rd_kafka_event_t *ev = NULL;
    int rc = TOPIC_ADMIN_TRANSIENT;

    *already = 0;
    nt =
        rd_kafka_NewTopic_new(topic, partitions, replication, buf, sizeof(buf));
    if (!nt) {
        edr_errf(errstr, n, "EDR_CHANGELOG_TOPIC %s: %s", topic, buf);
        return TOPIC_ADMIN_INVALID;
    }
    /* Compaction only cleans closed segments, and a log only once its
     * uncleaned share reaches min.cleanable.dirty.ratio. With the broker
     * defaults (1 GiB segments rolled after 7 days, ratio 0.5) a changelog
     * of a few hundred MB is never compacted in its first week, and a
     * restore reads every change ever written. So, as Kafka Streams
     * creates its changelogs compacted with CreateTime timestamps, and
     * with the segment and cleaner settings that its documentation
     * recommends tuning for restore time: see the table
     * topic_admin_changelog_configs (README, "Recovery"). */
    int bad = 0;
    for (size_t i = 0; topic_admin_changelog_configs[i][0]; i++)
        bad |= rd_kafka_NewTopic_set_config(
                   nt, topic_admin_changelog_configs[i][0],
                   topic_admin_changelog_configs[i][1]) != 0;
    if (bad) {
        edr_errf(errstr, n, "create %s: cannot set its configuration", topic);
        goto done;
    }
    opts = ta_options(rk, RD_KAFKA_ADMIN_OP_CREATETOPICS, errstr, n);
    if (!opts)
        goto done;
    q = rd_kafka_queue_new(rk);
    rd_kafka_CreateTopics(rk, &nt, 1, opts, q);
    ev = rd_kafka_queue_poll(q, TOPIC_ADMIN_TIMEOUT_MS + 5000);
    if (!ev) {
        edr_errf(errstr, n, "create %s: no answer within %d ms", topic,
                 TOPIC_ADMIN_TIMEOUT_MS + 5000);
        goto done;
    }
    if (rd_kafka_event_error(ev)) {
        edr_errf(errstr, n, "create %s: %s", topic,
                 rd_kafka_event_error_string(ev));
        goto done;
    }
    size_t cnt = 0;
    const rd_kafka_topic_result_t **tr = rd_kafka_CreateTopics_result_topics(
        rd_kafka_event_CreateTopics_result(ev), &cnt);
    if (cnt != 1) {
        edr_errf(errstr, n, "create %s: %zu results", topic, cnt);
        goto done;
    }
    rd_kafka_resp_err_t err = rd_kafka_topic_result_error(tr[0]);
    const char *msg = rd_kafka_topic_result_error_string(tr[0]);
    if (err == RD_KAFKA_RESP_ERR_TOPIC_ALREADY_EXISTS) {
        *already = 1;
    } else if (err == RD_KAFKA_RESP_ERR_TOPIC_EXCEPTION ||
               err == RD_KAFKA_RESP_ERR_INVALID_REPLICATION_FACTOR ||
               err == RD_KAFKA_RESP_ERR_INVALID_CONFIG ||
               err == RD_KAFKA_RESP_ERR_TOPIC_AUTHORIZATION_FAILED ||
               err == RD_KAFKA_RESP_ERR_CLUSTER_AUTHORIZATION_FAILED) {
        edr_errf(errstr, n, "EDR_CHANGELOG_TOPIC %s cannot be created: %s",
                 topic, msg ? msg : rd_kafka_err2str(err));
        rc = TOPIC_ADMIN_INVALID;
        goto done;
    } else if (err) {
        edr_errf(errstr, n, "create %s: %s", topic,
                 msg ? msg : rd_kafka_err2str(err));
        goto done;
    }
    rc = TOPIC_ADMIN_OK;

done:
    if (ev)
        rd_kafka_event_destroy(ev);
    if (q)
        rd_kafka_queue_destroy(q);
    if (opts)
        rd_kafka_AdminOptions_destroy(opts);
    rd_kafka_NewTopic_destroy(nt);
    return rc;
}

/* Waits (bounded) until metadata shows topic with every partition led;
 * *partitions = its count. */
static int ta_wait_ready(rd_kafka_t *rk, const char *topic, int *partitions,
                         char *errstr, size_t n)
{
    int64_t deadline = edr_clock_ms() + TOPIC_ADMIN_TIMEOUT_MS;
    int led, rf, rc;

    for (;;) {
        rc = ta_metadata(rk, topic, partitions, &led, &rf, errstr, n);
        if (rc == TOPIC_ADMIN_OK && *partitions > 0 && led == *partitions)
            return TOPIC_ADMIN_OK;
        if (edr_clock_ms() >= deadline)
            break;
        edr_sleep_ms(100);
    }
    if (rc != TOPIC_ADMIN_TRANSIENT)
        edr_errf(errstr, n, "topic %s: %d of %d partitions ready after %d ms",
                 topic, led, *partitions, TOPIC_ADMIN_TIMEOUT_MS);
    return TOPIC_ADMIN_TRANSIENT;
}

/* The checks of an existing changelog topic. */
static int ta_verify(rd_kafka_t *rk, const char *changelog_topic,
                     const struct topic_retention *r, int want_partitions,
                     char *errstr, size_t n)
{
    int partitions;
    int rc = ta_wait_ready(rk, changelog_topic, &partitions, errstr, n);

    if (!ta_policy_has(r->cleanup_policy, "compact")) {
        edr_errf(errstr, n,
                 "EDR_CHANGELOG_TOPIC %s is not compacted (cleanup.policy=%s, "
                 "needs compact)",
                 changelog_topic, r->cleanup_policy);
        return TOPIC_ADMIN_INVALID;
    }
    if (r->can_delete) {
        edr_errf(errstr, n,
                 "EDR_CHANGELOG_TOPIC %s has cleanup.policy=%s with "
                 "retention.ms=%lld retention.bytes=%lld: retention could "
                 "delete live state (needs compact, or both retentions -1)",
                 changelog_topic, r->cleanup_policy, (long long)r->retention_ms,
                 (long long)r->retention_bytes);
        return TOPIC_ADMIN_INVALID;
    }
    if (rc != TOPIC_ADMIN_OK)
        return rc;
    if (partitions != want_partitions) {
        edr_errf(errstr, n,
                 "EDR_CHANGELOG_TOPIC %s has %d partitions, EDR_TOPIC has %d "
                 "(they must be equal)",
                 changelog_topic, partitions, want_partitions);
        return TOPIC_ADMIN_INVALID;
    }
    return TOPIC_ADMIN_OK;
}

int topic_admin_ensure_changelog(rd_kafka_t *rk, const char *source_topic,
                                 const char *changelog_topic, char *errstr,
                                 size_t n)
{
    struct topic_retention r;
    int partitions, led, rf, exists, already, rc;

    if (strcmp(source_topic, changelog_topic) == 0) {
        edr_errf(errstr, n, "EDR_CHANGELOG_TOPIC %s is EDR_TOPIC itself",
                 changelog_topic);
        return TOPIC_ADMIN_INVALID;
    }
    rc = ta_metadata(rk, source_topic, &partitions, &led, &rf, errstr, n);
    if (rc == TOPIC_ADMIN_INVALID)
        return TOPIC_ADMIN_TRANSIENT; /* the source is not there yet */
    if (rc != TOPIC_ADMIN_OK)
        return rc;
    if (partitions <= 0 || rf <= 0) {
        edr_errf(errstr, n, "topic %s: no partition 0 in metadata",
                 source_topic);
        return TOPIC_ADMIN_TRANSIENT;
    }
    rc = ta_retention(rk, changelog_topic, &r, &exists, errstr, n);
    if (rc != TOPIC_ADMIN_OK)
        return rc;
    if (!exists) {
        rc =
            ta_create(rk, changelog_topic, partitions, rf, &already, errstr, n);
        if (rc != TOPIC_ADMIN_OK)
            return rc;
        if (!already) {
            rc = ta_wait_ready(rk, changelog_topic, &led, errstr, n);
            return rc == TOPIC_ADMIN_OK ? TOPIC_ADMIN_CREATED : rc;
        }
        /* Another worker created it first: check what it made. */
        rc = ta_retention(rk, changelog_topic, &r, &exists, errstr, n);
        if (rc != TOPIC_ADMIN_OK)
            return rc;
        if (!exists) {
            edr_errf(errstr, n, "topic %s: created elsewhere, not visible yet",
                     changelog_topic);
            return TOPIC_ADMIN_TRANSIENT;
        }
    }
    return ta_verify(rk, changelog_topic, &r, partitions, errstr, n);
}

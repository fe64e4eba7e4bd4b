/* kafka_util.c: see kafka_util.h. Admin API topic creation, synchronous
 * produce and unique names for tests on the shared local broker. */
#include "tests/support/kafka_util.h"

#include "base/clock.h"
#include "base/errstr.h"

#include <inttypes.h>
#include <librdkafka/rdkafka.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/time.h>
#include <time.h>
#include <unistd.h>

#define KU_TIMEOUT_MS 30000

rd_kafka_t *test_kafka_client_new(rd_kafka_type_t type, const char *brokers,
                                  const char *const *props,
                                  test_kafka_dr_cb *dr_cb, void *opaque,
                                  char *errstr, size_t n)
{
    char buf[512];
    rd_kafka_conf_t *conf = rd_kafka_conf_new();
    rd_kafka_t *rk = NULL;

    if (brokers && rd_kafka_conf_set(conf, "bootstrap.servers", brokers, buf,
                                     sizeof(buf)) != RD_KAFKA_CONF_OK)
        goto done;
    for (; props && props[0]; props += 2) {
        if (rd_kafka_conf_set(conf, props[0], props[1], buf, sizeof(buf)) !=
            RD_KAFKA_CONF_OK)
            goto done;
    }
    if (dr_cb)
        rd_kafka_conf_set_dr_msg_cb(conf, dr_cb);
    rd_kafka_conf_set_opaque(conf, opaque);
    rk = rd_kafka_new(type, conf, buf, sizeof(buf));
    if (rk)
        conf = NULL; /* now owned by rk */

done:
    if (conf) {
        rd_kafka_conf_destroy(conf);
        edr_errf(errstr, n, "kafka client: %s", buf);
    }
    return rk;
}

/* Partitions of `topic` that have a leader, per the broker's metadata;
 * -1 when the topic is unknown or errored. */
static int ku_ready_partitions(rd_kafka_t *rk, const char *topic)
{
    const struct rd_kafka_metadata *md = NULL;
    rd_kafka_topic_t *rkt = rd_kafka_topic_new(rk, topic, NULL);
    int ready = -1;

    if (!rkt)
        return -1;
    if (rd_kafka_metadata(rk, 0, rkt, &md, 5000) != RD_KAFKA_RESP_ERR_NO_ERROR)
        goto done;
    if (md->topic_cnt != 1 || md->topics[0].err)
        goto done;
    ready = 0;
    for (int i = 0; i < md->topics[0].partition_cnt; i++) {
        const rd_kafka_metadata_partition_t *p = &md->topics[0].partitions[i];
        if (!p->err && p->leader >= 0)
            ready++;
    }

done:
    if (md)
        rd_kafka_metadata_destroy(md);
    rd_kafka_topic_destroy(rkt);
    return ready;
}

int test_kafka_create_topic(const char *brokers, const char *topic,
                            int partitions, char *errstr, size_t n)
{
    char buf[512];
    rd_kafka_t *rk = NULL;
    rd_kafka_NewTopic_t *nt = NULL;
    rd_kafka_AdminOptions_t *opts = NULL;
    rd_kafka_queue_t *q = NULL;
    rd_kafka_event_t *ev = NULL;
    int rc = -1;

    rk = test_kafka_client_new(RD_KAFKA_PRODUCER, brokers, NULL, NULL, NULL,
                               errstr, n);
    if (!rk)
        goto done;
    nt = rd_kafka_NewTopic_new(topic, partitions, 1, buf, sizeof(buf));
    if (!nt) {
        edr_errf(errstr, n, "NewTopic %s: %s", topic, buf);
        goto done;
    }
    opts = rd_kafka_AdminOptions_new(rk, RD_KAFKA_ADMIN_OP_CREATETOPICS);
    if (rd_kafka_AdminOptions_set_operation_timeout(opts, KU_TIMEOUT_MS, buf,
                                                    sizeof(buf)) ||
        rd_kafka_AdminOptions_set_request_timeout(opts, KU_TIMEOUT_MS, buf,
                                                  sizeof(buf))) {
        edr_errf(errstr, n, "admin options: %s", buf);
        goto done;
    }
    q = rd_kafka_queue_new(rk);
    rd_kafka_CreateTopics(rk, &nt, 1, opts, q);
    ev = rd_kafka_queue_poll(q, KU_TIMEOUT_MS + 5000);
    if (!ev) {
        edr_errf(errstr, n, "CreateTopics %s: no result within %d ms", topic,
                 KU_TIMEOUT_MS + 5000);
        goto done;
    }
    if (rd_kafka_event_error(ev)) {
        edr_errf(errstr, n, "CreateTopics %s: %s", topic,
                 rd_kafka_event_error_string(ev));
        goto done;
    }
    const rd_kafka_CreateTopics_result_t *res =
        rd_kafka_event_CreateTopics_result(ev);
    size_t cnt = 0;
    const rd_kafka_topic_result_t **tr =
        rd_kafka_CreateTopics_result_topics(res, &cnt);
    if (cnt != 1) {
        edr_errf(errstr, n, "CreateTopics %s: %zu results", topic, cnt);
        goto done;
    }
    rd_kafka_resp_err_t err = rd_kafka_topic_result_error(tr[0]);
    if (err && err != RD_KAFKA_RESP_ERR_TOPIC_ALREADY_EXISTS) {
        const char *msg = rd_kafka_topic_result_error_string(tr[0]);
        edr_errf(errstr, n, "CreateTopics %s: %s", topic,
                 msg ? msg : rd_kafka_err2str(err));
        goto done;
    }

    /* The controller answers before every broker's metadata cache has the
     * topic; wait until all partitions have a leader. */
    long long deadline = edr_clock_ms() + KU_TIMEOUT_MS;
    int ready = -1;
    while ((ready = ku_ready_partitions(rk, topic)) != partitions) {
        if (ready > partitions) {
            edr_errf(errstr, n, "topic %s exists with %d partitions, not %d",
                     topic, ready, partitions);
            goto done;
        }
        if (edr_clock_ms() >= deadline) {
            edr_errf(errstr, n,
                     "topic %s: %d of %d partitions ready after %d ms", topic,
                     ready < 0 ? 0 : ready, partitions, KU_TIMEOUT_MS);
            goto done;
        }
        edr_sleep_ms(100);
    }
    rc = 0;

done:
    if (ev)
        rd_kafka_event_destroy(ev);
    if (q)
        rd_kafka_queue_destroy(q);
    if (opts)
        rd_kafka_AdminOptions_destroy(opts);
    if (nt)
        rd_kafka_NewTopic_destroy(nt);
    if (rk)
        rd_kafka_destroy(rk);
    return rc;
}

int test_kafka_topic_pair(const char *brokers, const char *prefix,
                          int partitions, char **topic, char **dlq,
                          char *errstr, size_t n)
{
    *topic = test_unique_name(prefix);
    *dlq = NULL;
    if (!*topic) {
        edr_errf(errstr, n, "out of memory");
        return -1;
    }
    size_t size = strlen(*topic) + sizeof("_dlq");
    *dlq = malloc(size);
    if (!*dlq) {
        edr_errf(errstr, n, "out of memory");
        goto fail;
    }
    snprintf(*dlq, size, "%s_dlq", *topic);
    if (test_kafka_create_topic(brokers, *topic, partitions, errstr, n) != 0 ||
        test_kafka_create_topic(brokers, *dlq, partitions, errstr, n) != 0)
        goto fail;
    return 0;

fail:
    free(*topic);
    free(*dlq);
    *topic = *dlq = NULL;
    return -1;
}

/* Delivery report: store the message's error in the int the producer's
 * opaque points to. Called from rd_kafka_flush() on the caller's thread. */
static void ku_dr_cb(rd_kafka_t *rk, const rd_kafka_message_t *msg,
                     void *opaque)
{
    (void)rk;
    *(int *)opaque = msg->err ? (int)msg->err : 0;
}

int test_kafka_produce(const char *brokers, const char *topic, const char *key,
                       const void *val, size_t len, char *errstr, size_t n)
{
    static const char *const props[] = {"acks", "all", "message.timeout.ms",
                                        "30000", NULL};
    int delivered = -1; /* -1: no report yet, else rd_kafka_resp_err_t */
    int rc = -1;
    rd_kafka_t *rk = test_kafka_client_new(RD_KAFKA_PRODUCER, brokers, props,
                                           ku_dr_cb, &delivered, errstr, n);

    if (!rk)
        goto done;
    rd_kafka_resp_err_t err = rd_kafka_producev(
        rk, RD_KAFKA_V_TOPIC(topic), RD_KAFKA_V_KEY(key, key ? strlen(key) : 0),
        RD_KAFKA_V_VALUE((void *)val, len),
        RD_KAFKA_V_MSGFLAGS(RD_KAFKA_MSG_F_COPY), RD_KAFKA_V_END);
    if (err) {
        edr_errf(errstr, n, "produce to %s: %s", topic, rd_kafka_err2str(err));
        goto done;
    }
    rd_kafka_flush(rk, KU_TIMEOUT_MS + 5000);
    if (delivered < 0) {
        edr_errf(errstr, n, "produce to %s: no delivery report", topic);
        goto done;
    }
    if (delivered > 0) {
        edr_errf(errstr, n, "produce to %s: %s", topic,
                 rd_kafka_err2str((rd_kafka_resp_err_t)delivered));
        goto done;
    }
    rc = 0;

done:
    if (rk)
        rd_kafka_destroy(rk);
    return rc;
}

int test_kafka_delete_topic(const char *brokers, const char *topic)
{
    rd_kafka_t *rk = test_kafka_client_new(RD_KAFKA_PRODUCER, brokers, NULL,
                                           NULL, NULL, NULL, 0);
    int rc = -1;
    if (!rk)
        return -1;
    rd_kafka_DeleteTopic_t *dt = rd_kafka_DeleteTopic_new(topic);
    rd_kafka_queue_t *q = rd_kafka_queue_new(rk);
    rd_kafka_DeleteTopics(rk, &dt, 1, NULL, q);
    rd_kafka_event_t *ev = rd_kafka_queue_poll(q, KU_TIMEOUT_MS);
    if (ev) {
        size_t cnt = 0;
        const rd_kafka_topic_result_t **tr =
            rd_kafka_DeleteTopics_result_topics(
                rd_kafka_event_DeleteTopics_result(ev), &cnt);
        rc = !rd_kafka_event_error(ev) && cnt == 1 &&
                     !rd_kafka_topic_result_error(tr[0])
                 ? 0
                 : -1;
        rd_kafka_event_destroy(ev);
    }
    rd_kafka_DeleteTopic_destroy(dt);
    rd_kafka_queue_destroy(q);
    rd_kafka_destroy(rk);
    return rc;
}

char *test_unique_name(const char *prefix)
{
    static atomic_uint counter;
    struct timeval tv;
    char *name = NULL;

    gettimeofday(&tv, NULL);
    unsigned c = atomic_fetch_add(&counter, 1);
    int len = snprintf(NULL, 0, "%s_%ld_%lld%06ld_%u", prefix, (long)getpid(),
                       (long long)tv.tv_sec, (long)tv.tv_usec, c);
    if (len < 0)
        return NULL;
    name = malloc((size_t)len + 1);
    if (name)
        snprintf(name, (size_t)len + 1, "%s_%ld_%lld%06ld_%u", prefix,
                 (long)getpid(), (long long)tv.tv_sec, (long)tv.tv_usec, c);
    return name;
}

/* ---- records, watermarks, configs (moved from test_state_gap_kafka) -- */

/* Waits for the Admin result of type `type` on q (30 s); NULL on timeout. */
static rd_kafka_event_t *ku_admin_wait(rd_kafka_queue_t *q, int type)
{
    int64_t until = edr_clock_ms() + KU_TIMEOUT_MS;
    while (edr_clock_ms() < until) {
        rd_kafka_event_t *ev = rd_kafka_queue_poll(q, 1000);
        if (!ev)
            continue;
        if (rd_kafka_event_type(ev) == type)
            return ev;
        rd_kafka_event_destroy(ev);
    }
    return NULL;
}

/* Deletes the records of topic/partition before offset `before` (the
 * partition's log start becomes `before`). 0 or -1. */
int test_kafka_delete_records(const char *brokers, const char *topic,
                              int32_t partition, int64_t before)
{
    rd_kafka_t *rk = test_kafka_client_new(RD_KAFKA_PRODUCER, brokers, NULL,
                                           NULL, NULL, NULL, 0);
    if (!rk)
        return -1;
    rd_kafka_queue_t *q = rd_kafka_queue_new(rk);
    rd_kafka_topic_partition_list_t *l = rd_kafka_topic_partition_list_new(1);
    rd_kafka_topic_partition_list_add(l, topic, partition)->offset = before;
    rd_kafka_DeleteRecords_t *del = rd_kafka_DeleteRecords_new(l);
    rd_kafka_topic_partition_list_destroy(l);
    rd_kafka_DeleteRecords(rk, &del, 1, NULL, q);
    rd_kafka_DeleteRecords_destroy(del);
    int rc = -1;
    rd_kafka_event_t *ev =
        ku_admin_wait(q, RD_KAFKA_EVENT_DELETERECORDS_RESULT);
    if (ev && !rd_kafka_event_error(ev)) {
        const rd_kafka_topic_partition_list_t *res =
            rd_kafka_DeleteRecords_result_offsets(
                rd_kafka_event_DeleteRecords_result(ev));
        if (res && res->cnt == 1 && !res->elems[0].err &&
            res->elems[0].offset == before)
            rc = 0;
        else if (res && res->cnt == 1)
            fprintf(stderr, "delete records: %s (low %" PRId64 ")\n",
                    rd_kafka_err2str(res->elems[0].err), res->elems[0].offset);
    } else {
        fprintf(stderr, "delete records: %s\n",
                ev ? rd_kafka_event_error_string(ev) : "timed out");
    }
    if (ev)
        rd_kafka_event_destroy(ev);
    rd_kafka_queue_destroy(q);
    rd_kafka_destroy(rk);
    return rc;
}

/* The low watermark of topic/partition, or -1. */
int64_t test_kafka_log_start(const char *brokers, const char *topic,
                             int32_t partition)
{
    rd_kafka_t *rk = test_kafka_client_new(RD_KAFKA_PRODUCER, brokers, NULL,
                                           NULL, NULL, NULL, 0);
    int64_t low = -1, high = -1;
    if (!rk)
        return -1;
    if (rd_kafka_query_watermark_offsets(rk, topic, partition, &low, &high,
                                         10000) != RD_KAFKA_RESP_ERR_NO_ERROR)
        low = -1;
    rd_kafka_destroy(rk);
    return low;
}

/* Creates topic (partitions) with the topic configs (name, value pairs,
 * NULL-terminated). 0 or -1. */
int test_kafka_create_topic_with(const char *brokers, const char *topic,
                                 int partitions, const char *const *configs)
{
    char err[256];
    rd_kafka_t *rk = test_kafka_client_new(RD_KAFKA_PRODUCER, brokers, NULL,
                                           NULL, NULL, NULL, 0);
    if (!rk)
        return -1;
    rd_kafka_queue_t *q = rd_kafka_queue_new(rk);
    rd_kafka_NewTopic_t *nt =
        rd_kafka_NewTopic_new(topic, partitions, 1, err, sizeof(err));
    for (int i = 0; configs && configs[i]; i += 2)
        rd_kafka_NewTopic_set_config(nt, configs[i], configs[i + 1]);
    rd_kafka_CreateTopics(rk, &nt, 1, NULL, q);
    rd_kafka_NewTopic_destroy(nt);
    int rc = -1;
    rd_kafka_event_t *ev = ku_admin_wait(q, RD_KAFKA_EVENT_CREATETOPICS_RESULT);
    if (ev) {
        size_t n = 0;
        const rd_kafka_topic_result_t **res =
            rd_kafka_CreateTopics_result_topics(
                rd_kafka_event_CreateTopics_result(ev), &n);
        if (n == 1 && !rd_kafka_topic_result_error(res[0]))
            rc = 0;
        else if (n == 1)
            fprintf(stderr, "create topic: %s\n",
                    rd_kafka_topic_result_error_string(res[0]));
        rd_kafka_event_destroy(ev);
    }
    rd_kafka_queue_destroy(q);
    rd_kafka_destroy(rk);
    /* Wait for leaders (the helper counts an existing topic as created). */
    if (rc == 0 && test_kafka_create_topic(brokers, topic, partitions, err,
                                           sizeof(err)) != 0)
        rc = -1;
    return rc;
}

/* The value of broker config `name` of broker 1 (malloc'd), or NULL. */
char *test_kafka_broker_config(const char *brokers, const char *name)
{
    rd_kafka_t *rk = test_kafka_client_new(RD_KAFKA_PRODUCER, brokers, NULL,
                                           NULL, NULL, NULL, 0);
    if (!rk)
        return NULL;
    rd_kafka_queue_t *q = rd_kafka_queue_new(rk);
    rd_kafka_ConfigResource_t *cr =
        rd_kafka_ConfigResource_new(RD_KAFKA_RESOURCE_BROKER, "1");
    rd_kafka_DescribeConfigs(rk, &cr, 1, NULL, q);
    rd_kafka_ConfigResource_destroy(cr);
    char *value = NULL;
    rd_kafka_event_t *ev =
        ku_admin_wait(q, RD_KAFKA_EVENT_DESCRIBECONFIGS_RESULT);
    if (ev) {
        size_t n = 0, m = 0;
        const rd_kafka_ConfigResource_t **rs =
            rd_kafka_DescribeConfigs_result_resources(
                rd_kafka_event_DescribeConfigs_result(ev), &n);
        const rd_kafka_ConfigEntry_t **es =
            n == 1 ? rd_kafka_ConfigResource_configs(rs[0], &m) : NULL;
        for (size_t i = 0; i < m; i++)
            if (strcmp(rd_kafka_ConfigEntry_name(es[i]), name) == 0 &&
                rd_kafka_ConfigEntry_value(es[i]))
                value = strdup(rd_kafka_ConfigEntry_value(es[i]));
        rd_kafka_event_destroy(ev);
    }
    rd_kafka_queue_destroy(q);
    rd_kafka_destroy(rk);
    return value;
}

int test_kafka_alter_topic_config(const char *brokers, const char *topic,
                                  const char *const *configs)
{
    rd_kafka_t *rk = test_kafka_client_new(RD_KAFKA_PRODUCER, brokers, NULL,
                                           NULL, NULL, NULL, 0);
    if (!rk)
        return -1;
    rd_kafka_queue_t *q = rd_kafka_queue_new(rk);
    rd_kafka_ConfigResource_t *cr =
        rd_kafka_ConfigResource_new(RD_KAFKA_RESOURCE_TOPIC, topic);
    for (int i = 0; configs && configs[i]; i += 2)
        rd_kafka_ConfigResource_set_config(cr, configs[i], configs[i + 1]);
    rd_kafka_AlterConfigs(rk, &cr, 1, NULL, q);
    rd_kafka_ConfigResource_destroy(cr);
    int rc = -1;
    rd_kafka_event_t *ev = ku_admin_wait(q, RD_KAFKA_EVENT_ALTERCONFIGS_RESULT);
    if (ev) {
        size_t n = 0;
        const rd_kafka_ConfigResource_t **rs =
            rd_kafka_AlterConfigs_result_resources(
                rd_kafka_event_AlterConfigs_result(ev), &n);
        if (!rd_kafka_event_error(ev) && n == 1 &&
            !rd_kafka_ConfigResource_error(rs[0]))
            rc = 0;
        else
            fprintf(stderr, "alter configs: %s\n",
                    n == 1 ? rd_kafka_ConfigResource_error_string(rs[0])
                           : rd_kafka_event_error_string(ev));
        rd_kafka_event_destroy(ev);
    }
    rd_kafka_queue_destroy(q);
    rd_kafka_destroy(rk);
    return rc;
}

int test_kafka_retention_is_fast(const char *brokers, long long max_ms)
{
    char *iv =
        test_kafka_broker_config(brokers, "log.retention.check.interval.ms");
    long long interval = iv ? atoll(iv) : -1;
    free(iv);
    if (interval >= 0 && interval <= max_ms)
        return 1;
    fprintf(stderr,
            "\n  SKIPPED: the running broker checks retention every %lld ms "
            "(log.retention.check.interval.ms; at most %lld needed). "
            "scripts/services.sh sets 1000 for brokers it starts; the "
            "setting is read-only, so the shared broker needs a restart for "
            "this test to run. ",
            interval, max_ms);
    return 0;
}

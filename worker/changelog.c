/* changelog.c: see changelog.h. Two librdkafka clients: a transactional
 * producer that writes the records and commits the source offsets, and a
 * consumer in the ownership group that only ever holds an assignment
 * (paused: it fetches nothing) and provides the group metadata that
 * fences a zombie's transaction (KIP-447). This file: the ownership,
 * open and close; the transactions are changelog_txn.c. */
#include "worker/changelog.h"
#include "worker/changelog_int.h"

#include "base/errstr.h"
#include "worker/config_parse.h"

#include <librdkafka/rdkafka.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define CL_DEFAULT_TIMEOUT_MS 10000
/* An entry comes from an event of at most 1 MiB; with its four key fields
 * (escaped) a record stays well below 2 MiB. The topic is created with
 * the same max.message.bytes (topic_admin.c). */
#define CL_MAX_RECORD_BYTES "2097152"

/* ---- ownership ---------------------------------------------------------- */

/* Grows parts to hold p. Caller holds mu. 0 or -1 (out of memory). */
static int cl_parts_reserve(struct changelog *cl, int32_t p)
{
    if (p < cl->n_parts)
        return 0;
    int32_t np = p + 1 > 2 * cl->n_parts ? p + 1 : 2 * cl->n_parts;
    struct cl_part *a = realloc(cl->parts, (size_t)np * sizeof(*a));
    if (!a)
        return -1;
    for (int32_t i = cl->n_parts; i < np; i++)
        a[i] = (struct cl_part){.committed = -1};
    cl->parts = a;
    cl->n_parts = np;
    return 0;
}

/* Forgets the whole role. Caller holds mu. */
void cl_drop_all(struct changelog *cl)
{
    for (int32_t i = 0; i < cl->n_parts; i++)
        cl->parts[i] = (struct cl_part){.committed = -1};
    cl->pending = 0;
    if (cl->cgmd)
        rd_kafka_consumer_group_metadata_destroy(cl->cgmd);
    cl->cgmd = NULL;
}

/* Rebalance callback of the ownership consumer, served inside
 * changelog_poll(). Eager protocol: every rebalance revokes everything,
 * then assigns the new set. The assignment is paused at once: this
 * consumer exists for the group protocol only. No network wait here
 * (assign and pause are local operations). */
static void cl_rebalance(rd_kafka_t *rk, rd_kafka_resp_err_t err,
                         rd_kafka_topic_partition_list_t *parts, void *opaque)
{
    struct changelog *cl = opaque;

    if (err == RD_KAFKA_RESP_ERR__ASSIGN_PARTITIONS) {
        rd_kafka_assign(rk, parts);
        rd_kafka_pause_partitions(rk, parts);
        pthread_mutex_lock(&cl->mu);
        cl_drop_all(cl);
        cl->cgmd = rd_kafka_consumer_group_metadata(rk);
        for (int i = 0; i < parts->cnt; i++) {
            int32_t p = parts->elems[i].partition;
            if (strcmp(parts->elems[i].topic, cl->source_topic) != 0 || p < 0 ||
                cl_parts_reserve(cl, p) != 0)
                continue; /* out of memory: not owned, never written */
            cl->parts[p].assigned = 1;
            cl->pending++;
        }
        cl->assignments++;
        pthread_mutex_unlock(&cl->mu);
    } else {
        /* The role ends here: what this worker wrote in the open
         * transaction is committed now, with the generation that granted
         * it (as Kafka Streams commits in onPartitionsRevoked), so the next
         * owner starts from it. If that fails, the transaction is aborted
         * and the next owner's catch-up (changelog.h) writes those changes
         * from its own state. This is a network wait inside the callback,
         * bounded by a few timeout_ms; the group waits for it. */
        if (cl->txn_state == CL_TXN_OPEN ||
            cl->txn_state == CL_TXN_COMMIT_PENDING) {
            char ebuf[256];
            if (changelog_commit(cl, ebuf, sizeof(ebuf)) != CHANGELOG_OK &&
                cl->txn_state == CL_TXN_OPEN)
                cl_abort(cl, ebuf, sizeof(ebuf));
        }
        pthread_mutex_lock(&cl->mu);
        cl_drop_all(cl);
        pthread_mutex_unlock(&cl->mu);
        rd_kafka_assign(rk, NULL);
    }
}

int changelog_owned(struct changelog *cl, int32_t p)
{
    int owned = 0;

    pthread_mutex_lock(&cl->mu);
    if (p >= 0 && p < cl->n_parts)
        owned = cl->parts[p].owned;
    pthread_mutex_unlock(&cl->mu);
    return owned;
}

int64_t changelog_committed(struct changelog *cl, int32_t p)
{
    int64_t c = -1;

    pthread_mutex_lock(&cl->mu);
    if (p >= 0 && p < cl->n_parts && cl->parts[p].owned)
        c = cl->parts[p].committed;
    pthread_mutex_unlock(&cl->mu);
    return c;
}

uint64_t changelog_assignments(struct changelog *cl)
{
    pthread_mutex_lock(&cl->mu);
    uint64_t a = cl->assignments;
    pthread_mutex_unlock(&cl->mu);
    return a;
}

int changelog_pending(struct changelog *cl)
{
    pthread_mutex_lock(&cl->mu);
    int p = cl->pending;
    pthread_mutex_unlock(&cl->mu);
    return p;
}

/* Reads the committed positions of the assigned, not yet owned
 * partitions, then marks them owned. Blocking (OffsetFetch). */
static int cl_read_positions(struct changelog *cl, char *errstr, size_t n)
{
    rd_kafka_topic_partition_list_t *l = rd_kafka_topic_partition_list_new(4);
    int rc = CHANGELOG_OK;

    pthread_mutex_lock(&cl->mu);
    for (int32_t i = 0; i < cl->n_parts; i++)
        if (cl->parts[i].assigned && !cl->parts[i].owned)
            rd_kafka_topic_partition_list_add(l, cl->source_topic, i);
    pthread_mutex_unlock(&cl->mu);
    if (l->cnt == 0)
        goto done;
    rd_kafka_resp_err_t err =
        rd_kafka_committed(cl->consumer, l, cl->timeout_ms);
    for (int i = 0; !err && i < l->cnt; i++)
        err = l->elems[i].err;
    if (err) {
        edr_errf(errstr, n, "changelog: committed offsets of %s: %s",
                 cl->source_topic, rd_kafka_err2str(err));
        rc = CHANGELOG_TRANSIENT;
        goto done;
    }
    pthread_mutex_lock(&cl->mu);
    /* A rebalance between the two locks would have reset the table:
     * only mark partitions that are still assigned. */
    for (int i = 0; i < l->cnt; i++) {
        int32_t p = l->elems[i].partition;
        if (p < cl->n_parts && cl->parts[p].assigned && !cl->parts[p].owned) {
            cl->parts[p].owned = 1;
            cl->parts[p].committed =
                l->elems[i].offset >= 0 ? l->elems[i].offset : -1;
            cl->pending--;
        }
    }
    pthread_mutex_unlock(&cl->mu);

done:
    rd_kafka_topic_partition_list_destroy(l);
    return rc;
}

int changelog_poll(struct changelog *cl, char *errstr, size_t n)
{
    rd_kafka_message_t *m;
    char buf[256];

    /* Serves the group protocol and the rebalance callback; a record that
     * slipped in before the pause took effect is dropped unread. */
    while ((m = rd_kafka_consumer_poll(cl->consumer, 0)) != NULL)
        rd_kafka_message_destroy(m);
    rd_kafka_poll(cl->producer, 0);
    if (cl->fatal || rd_kafka_fatal_error(cl->producer, buf, sizeof(buf))) {
        cl->fatal = 1;
        edr_errf(errstr, n, "changelog producer: fatal error: %s", buf);
        return CHANGELOG_FATAL;
    }
    pthread_mutex_lock(&cl->mu);
    int pending = cl->pending;
    pthread_mutex_unlock(&cl->mu);
    if (pending > 0)
        return cl_read_positions(cl, errstr, n);
    return CHANGELOG_OK;
}

int changelog_recoverable(struct changelog *cl)
{
    char buf[256];
    rd_kafka_resp_err_t code =
        rd_kafka_fatal_error(cl->producer, buf, sizeof(buf));
    return code != RD_KAFKA_RESP_ERR_NO_ERROR &&
           code != RD_KAFKA_RESP_ERR_PRODUCER_FENCED &&
           code != RD_KAFKA_RESP_ERR__FENCED &&
           code != RD_KAFKA_RESP_ERR_INVALID_PRODUCER_EPOCH &&
           code != RD_KAFKA_RESP_ERR_TRANSACTIONAL_ID_AUTHORIZATION_FAILED;
}

/* ---- open / close ------------------------------------------------------ */

/* Applies the -X "name=value" properties of c to conf. */
static int cl_props(rd_kafka_conf_t *conf, const struct changelog_conf *c,
                    char *errstr, size_t n)
{
    for (size_t i = 0; i < c->n_kafka_props; i++) {
        const char *prop = c->kafka_props[i];
        char name[256];
        const char *eq = strchr(prop, '=');
        if (!eq || (size_t)(eq - prop) >= sizeof(name)) {
            edr_errf(errstr, n, "changelog: bad -X property");
            return -1;
        }
        memcpy(name, prop, (size_t)(eq - prop));
        name[eq - prop] = '\0';
        if (config_kafka_set(conf, name, eq + 1, errstr, n) != 0)
            return -1;
    }
    return 0;
}

static rd_kafka_t *cl_client(rd_kafka_type_t type, rd_kafka_conf_t *conf,
                             char *errstr, size_t n)
{
    char buf[512];
    rd_kafka_t *rk = rd_kafka_new(type, conf, buf, sizeof(buf));

    if (!rk) {
        rd_kafka_conf_destroy(conf);
        edr_errf(errstr, n, "changelog: kafka client: %s", buf);
    }
    return rk; /* conf now owned by rk, or destroyed */
}

/* A transaction error: abort when needed, map to a status. */
int changelog_open(const struct changelog_conf *c, struct changelog **out,
                   char *errstr, size_t n)
{
    struct changelog *cl = calloc(1, sizeof(*cl));
    rd_kafka_conf_t *conf = NULL;
    char *txn_id = NULL, *group = NULL;
    int rc = CHANGELOG_FATAL;

    *out = NULL;
    if (!cl) {
        edr_errf(errstr, n, "changelog: out of memory");
        return CHANGELOG_FATAL;
    }
    pthread_mutex_init(&cl->mu, NULL);
    cl->timeout_ms =
        c->op_timeout_ms > 0 ? c->op_timeout_ms : CL_DEFAULT_TIMEOUT_MS;
    cl->source_topic = strdup(c->source_topic);
    cl->changelog_topic = strdup(c->changelog_topic);
    size_t gl = strlen(c->group_id) + sizeof(".changelog");
    size_t tl = gl + 1 + strlen(c->worker_id);
    group = malloc(gl);
    txn_id = malloc(tl);
    if (!cl->source_topic || !cl->changelog_topic || !group || !txn_id) {
        edr_errf(errstr, n, "changelog: out of memory");
        goto done;
    }
    snprintf(group, gl, "%s.changelog", c->group_id);
    snprintf(txn_id, tl, "%s.%s", group, c->worker_id);

    /* The transactional producer. */
    conf = rd_kafka_conf_new();
    /* Defaults an -X property may override: the records are JSON (lz4
     * sends and stores ~4x fewer bytes, and a restore reads fewer), and a
     * transaction lasts EDR_CHANGELOG_COMMIT_MS anyway, so batches may
     * wait a little longer to grow. */
    if (config_kafka_set(conf, "bootstrap.servers", c->brokers, errstr, n) ||
        config_kafka_set(conf, "compression.type", "lz4", errstr, n) ||
        config_kafka_set(conf, "linger.ms", "20", errstr, n) ||
        cl_props(conf, c, errstr, n) ||
        config_kafka_set(conf, "transactional.id", txn_id, errstr, n) ||
        config_kafka_set(conf, "enable.idempotence", "true", errstr, n) ||
        config_kafka_set(conf, "acks", "all", errstr, n) ||
        config_kafka_set(conf, "message.max.bytes", CL_MAX_RECORD_BYTES, errstr,
                         n))
        goto done;
    rd_kafka_conf_set_opaque(conf, cl);
    cl->producer = cl_client(RD_KAFKA_PRODUCER, conf, errstr, n);
    conf = NULL; /* owned by the producer, or destroyed */
    if (!cl->producer)
        goto done;
    config_log_producer(cl->producer, "changelog");

    /* The ownership consumer: group protocol only. */
    conf = rd_kafka_conf_new();
    if (config_kafka_set(conf, "bootstrap.servers", c->brokers, errstr, n) ||
        cl_props(conf, c, errstr, n) ||
        config_kafka_set(conf, "group.id", group, errstr, n) ||
        config_kafka_set(conf, "enable.auto.commit", "false", errstr, n) ||
        config_kafka_set(conf, "enable.auto.offset.store", "false", errstr,
                         n) ||
        config_kafka_set(conf, "isolation.level", "read_committed", errstr,
                         n) ||
        config_kafka_set(conf, "partition.assignment.strategy", "range", errstr,
                         n) ||
        config_kafka_set(conf, "enable.partition.eof", "false", errstr, n))
        goto done;
    rd_kafka_conf_set_opaque(conf, cl);
    rd_kafka_conf_set_rebalance_cb(conf, cl_rebalance);
    cl->consumer = cl_client(RD_KAFKA_CONSUMER, conf, errstr, n);
    conf = NULL;
    if (!cl->consumer)
        goto done;
    rd_kafka_poll_set_consumer(cl->consumer);

    rd_kafka_topic_partition_list_t *sub = rd_kafka_topic_partition_list_new(1);
    rd_kafka_topic_partition_list_add(sub, cl->source_topic,
                                      RD_KAFKA_PARTITION_UA);
    rd_kafka_resp_err_t err = rd_kafka_subscribe(cl->consumer, sub);
    rd_kafka_topic_partition_list_destroy(sub);
    if (err) {
        edr_errf(errstr, n, "changelog: subscribe to %s: %s", cl->source_topic,
                 rd_kafka_err2str(err));
        goto done;
    }

    rd_kafka_error_t *e =
        rd_kafka_init_transactions(cl->producer, cl->timeout_ms);
    if (e) {
        rc = rd_kafka_error_is_fatal(e) ? CHANGELOG_FATAL : CHANGELOG_TRANSIENT;
        edr_errf(errstr, n, "changelog: init transactions (%s): %s", txn_id,
                 rd_kafka_error_string(e));
        rd_kafka_error_destroy(e);
        goto done;
    }
    *out = cl;
    cl = NULL;
    rc = CHANGELOG_OK;

done:
    if (conf)
        rd_kafka_conf_destroy(conf);
    changelog_close(cl);
    free(group);
    free(txn_id);
    return rc;
}

void changelog_close(struct changelog *cl)
{
    if (!cl)
        return;
    if (cl->producer && !cl->fatal && cl->txn_state != CL_TXN_NONE) {
        rd_kafka_error_t *e =
            rd_kafka_abort_transaction(cl->producer, cl->timeout_ms);
        if (e)
            rd_kafka_error_destroy(e);
    }
    if (cl->consumer) {
        rd_kafka_consumer_close(cl->consumer); /* leaves the group */
        rd_kafka_destroy(cl->consumer);
    }
    if (cl->producer)
        rd_kafka_destroy(cl->producer);
    pthread_mutex_lock(&cl->mu);
    cl_drop_all(cl);
    pthread_mutex_unlock(&cl->mu);
    pthread_mutex_destroy(&cl->mu);
    free(cl->parts);
    if (cl->txn_offs)
        rd_kafka_topic_partition_list_destroy(cl->txn_offs);
    free(cl->source_topic);
    free(cl->changelog_topic);
    free(cl);
}

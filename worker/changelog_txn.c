/* changelog_txn.c: the changelog's transactions (see changelog.h):
 * records and source offsets added to one open transaction over many
 * batches, committed with send_offsets_to_transaction, and what a failed
 * transactional call means (retry, abort, fenced, fatal). */
#include "worker/changelog.h"
#include "worker/changelog_int.h"

#include "base/clock.h"
#include "base/errstr.h"
#include "stores/fault.h"

#include <librdkafka/rdkafka.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* ---- write ------------------------------------------------------------- */

/* The transaction ended (committed: its offsets become the partitions'
 * committed positions; aborted: nothing of it is visible). */
static void cl_txn_end(struct changelog *cl, int committed)
{
    if (committed && cl->txn_offs) {
        pthread_mutex_lock(&cl->mu);
        for (int i = 0; i < cl->txn_offs->cnt; i++) {
            int32_t p = cl->txn_offs->elems[i].partition;
            if (p >= 0 && p < cl->n_parts && cl->parts[p].owned)
                cl->parts[p].committed = cl->txn_offs->elems[i].offset;
        }
        pthread_mutex_unlock(&cl->mu);
    }
    if (cl->txn_offs)
        rd_kafka_topic_partition_list_destroy(cl->txn_offs);
    cl->txn_offs = NULL;
    cl->txn_records = 0;
    cl->txn_state = CL_TXN_NONE;
    cl->txn_ended++;
}

int cl_abort(struct changelog *cl, char *errstr, size_t n)
{
    rd_kafka_error_t *e =
        rd_kafka_abort_transaction(cl->producer, cl->timeout_ms);

    if (!e) {
        cl_txn_end(cl, 0);
        return CHANGELOG_OK;
    }
    int fatal = rd_kafka_error_is_fatal(e);
    edr_errf(errstr, n, "changelog: abort: %s", rd_kafka_error_string(e));
    rd_kafka_error_destroy(e);
    if (fatal) {
        cl->fatal = 1;
        return CHANGELOG_FATAL;
    }
    cl->txn_state = CL_TXN_ABORT_PENDING;
    return CHANGELOG_TRANSIENT;
}

int cl_txn_fail(struct changelog *cl, rd_kafka_error_t *e, const char *what,
                char *errstr, size_t n)
{
    rd_kafka_resp_err_t code = rd_kafka_error_code(e);
    int fatal = rd_kafka_error_is_fatal(e);
    int must_abort = rd_kafka_error_txn_requires_abort(e);
    int retriable = rd_kafka_error_is_retriable(e);

    edr_errf(errstr, n, "changelog: %s: %s", what, rd_kafka_error_string(e));
    rd_kafka_error_destroy(e);
    if (fatal) {
        /* PRODUCER_FENCED: another process runs with this worker's
         * transactional.id (a duplicate EDR_WORKER_ID). */
        cl->fatal = 1;
        return CHANGELOG_FATAL;
    }
    if (!must_abort && retriable && cl->txn_state == CL_TXN_COMMIT_PENDING)
        return CHANGELOG_TRANSIENT; /* commit again next time */
    int fenced = code == RD_KAFKA_RESP_ERR_ILLEGAL_GENERATION ||
                 code == RD_KAFKA_RESP_ERR_UNKNOWN_MEMBER_ID ||
                 code == RD_KAFKA_RESP_ERR_FENCED_INSTANCE_ID;
    if (fenced) {
        /* The group moved on without us: we are a zombie. The role comes
         * back only through a new assignment. */
        pthread_mutex_lock(&cl->mu);
        cl_drop_all(cl);
        pthread_mutex_unlock(&cl->mu);
    }
    if (cl->txn_state != CL_TXN_NONE || must_abort) {
        char abuf[256];
        /* An abort that times out is finished by the next write. */
        if (cl_abort(cl, abuf, sizeof(abuf)) == CHANGELOG_FATAL)
            return CHANGELOG_FATAL;
    }
    return fenced ? CHANGELOG_FENCED : CHANGELOG_TRANSIENT;
}

/* Finishes what an earlier write left unfinished. */
static int cl_resolve(struct changelog *cl, char *errstr, size_t n)
{
    if (cl->txn_state == CL_TXN_ABORT_PENDING)
        return cl_abort(cl, errstr, n);
    if (cl->txn_state == CL_TXN_COMMIT_PENDING) {
        rd_kafka_error_t *e =
            rd_kafka_commit_transaction(cl->producer, cl->timeout_ms);
        if (e)
            return cl_txn_fail(cl, e, "commit", errstr, n);
        cl_txn_end(cl, 1);
    }
    return CHANGELOG_OK;
}

/* Whether src has an entry for p; its index or -1. */
static long cl_src_index(const struct store_offset *src, size_t n_src,
                         int32_t p)
{
    for (size_t i = 0; i < n_src; i++)
        if (src[i].partition == p)
            return (long)i;
    return -1;
}

/* Produces one record, waiting (bounded) while the queue is full. */
static int cl_produce(struct changelog *cl, const struct changelog_change *ch,
                      int64_t next_offset, int64_t deadline, char *errstr,
                      size_t n)
{
    char key[EDR_CONNECTION_KEY_LEN + 1];
    char pos[24];
    char *val = NULL;
    size_t len = 0;

    snprintf(pos, sizeof(pos), "%lld", (long long)next_offset);

    edr_connection_key(&ch->key, key);
    if (ch->entry_json && changelog_value_encode(ch, &val, &len) != 0) {
        edr_errf(errstr, n,
                 "changelog: entry of partition %d is not a JSON "
                 "object or out of memory",
                 (int)ch->partition);
        return CHANGELOG_FATAL;
    }
    for (;;) {
        rd_kafka_resp_err_t err = rd_kafka_producev(
            cl->producer, RD_KAFKA_V_TOPIC(cl->changelog_topic),
            RD_KAFKA_V_PARTITION(ch->partition),
            RD_KAFKA_V_KEY(key, EDR_CONNECTION_KEY_LEN),
            RD_KAFKA_V_VALUE(val, len),
            RD_KAFKA_V_HEADER(CHANGELOG_HEADER_POSITION, pos, -1),
            RD_KAFKA_V_MSGFLAGS(RD_KAFKA_MSG_F_FREE), RD_KAFKA_V_END);
        if (!err)
            return CHANGELOG_OK; /* val now owned by librdkafka */
        if (err != RD_KAFKA_RESP_ERR__QUEUE_FULL ||
            edr_clock_ms() >= deadline) {
            free(val);
            edr_errf(errstr, n, "changelog: produce to %s [%d]: %s",
                     cl->changelog_topic, (int)ch->partition,
                     rd_kafka_err2str(err));
            return err == RD_KAFKA_RESP_ERR__FATAL ? CHANGELOG_FATAL
                                                   : CHANGELOG_TRANSIENT;
        }
        rd_kafka_poll(cl->producer, 50);
    }
}

int changelog_add(struct changelog *cl, const struct changelog_change *ch,
                  size_t n_ch, const struct store_offset *src, size_t n_src,
                  size_t *written, char *errstr, size_t n)
{
    rd_kafka_topic_partition_list_t *offs = NULL;
    size_t out = 0;
    int rc = CHANGELOG_OK;

    if (written)
        *written = 0;
    if (cl->fatal) {
        edr_errf(errstr, n, "changelog: the producer had a fatal error");
        return CHANGELOG_FATAL;
    }
    if (cl->txn_state != CL_TXN_OPEN) {
        rc = cl_resolve(cl, errstr, n);
        if (rc != CHANGELOG_OK)
            return rc;
    }
    for (size_t i = 0; i < n_ch; i++) {
        if (cl_src_index(src, n_src, ch[i].partition) < 0) {
            /* The offset commit is what fences a zombie: never write a
             * partition's records without it. */
            edr_errf(errstr, n,
                     "changelog: change of partition %d without its source "
                     "offset",
                     (int)ch[i].partition);
            return CHANGELOG_FATAL;
        }
    }

    /* The role at this call. The group metadata is only replaced inside
     * changelog_poll(), on this same thread, which commits (or aborts) the
     * open transaction first when the role is revoked. */
    offs = rd_kafka_topic_partition_list_new((int)(n_src ? n_src : 1));
    pthread_mutex_lock(&cl->mu);
    rd_kafka_consumer_group_metadata_t *md = cl->cgmd;
    for (size_t i = 0; md && i < n_src; i++) {
        int32_t p = src[i].partition;
        if (p >= 0 && p < cl->n_parts && cl->parts[p].owned)
            rd_kafka_topic_partition_list_add(offs, cl->source_topic, p)
                ->offset = src[i].next_offset;
    }
    pthread_mutex_unlock(&cl->mu);
    if (offs->cnt == 0)
        goto done; /* nothing owned: nothing to write */

    if (cl->txn_state == CL_TXN_NONE) {
        if (fault_hit(FAULT_TXN)) /* test build only: stores/fault.h */
            rd_kafka_test_fatal_error(cl->producer,
                                      RD_KAFKA_RESP_ERR_INVALID_TXN_STATE,
                                      "EDR_FAULT=txn");
        rd_kafka_error_t *e = rd_kafka_begin_transaction(cl->producer);
        if (e) {
            rc = cl_txn_fail(cl, e, "begin transaction", errstr, n);
            goto done;
        }
        cl->txn_state = CL_TXN_OPEN;
        cl->txn_offs = rd_kafka_topic_partition_list_new(offs->cnt);
        cl->txn_began_ms = edr_clock_ms();
        cl->txn_records = 0;
    }
    int64_t deadline = edr_clock_ms() + cl->timeout_ms;
    for (size_t i = 0; i < n_ch; i++) {
        rd_kafka_topic_partition_t *o = rd_kafka_topic_partition_list_find(
            offs, cl->source_topic, ch[i].partition);
        if (!o)
            continue; /* another worker writes that partition */
        rc = cl_produce(cl, &ch[i], o->offset, deadline, errstr, n);
        if (rc != CHANGELOG_OK) {
            /* The whole open transaction goes, earlier calls' records
             * included: the caller must rewrite them (changelog.h). */
            char abuf[256];
            int arc = cl_abort(cl, abuf, sizeof(abuf));
            if (rc != CHANGELOG_FATAL && arc == CHANGELOG_FATAL)
                rc = arc;
            goto done;
        }
        out++;
    }
    for (int i = 0; i < offs->cnt; i++) {
        rd_kafka_topic_partition_t *t = rd_kafka_topic_partition_list_find(
            cl->txn_offs, cl->source_topic, offs->elems[i].partition);
        if (!t)
            rd_kafka_topic_partition_list_add(cl->txn_offs, cl->source_topic,
                                              offs->elems[i].partition)
                ->offset = offs->elems[i].offset;
        else if (offs->elems[i].offset > t->offset)
            t->offset = offs->elems[i].offset;
    }
    cl->txn_records += out;
    if (written)
        *written = out;

done:
    rd_kafka_topic_partition_list_destroy(offs);
    return rc;
}

int changelog_commit(struct changelog *cl, char *errstr, size_t n)
{
    if (cl->fatal) {
        edr_errf(errstr, n, "changelog: the producer had a fatal error");
        return CHANGELOG_FATAL;
    }
    if (cl->txn_state != CL_TXN_OPEN)
        return cl_resolve(cl, errstr, n);

    pthread_mutex_lock(&cl->mu);
    rd_kafka_consumer_group_metadata_t *md = cl->cgmd;
    pthread_mutex_unlock(&cl->mu);
    if (!md) {
        /* The role went without a revoke that committed (cannot happen
         * through changelog_poll; kept safe): nothing of it may show. */
        char abuf[256];
        if (cl_abort(cl, abuf, sizeof(abuf)) == CHANGELOG_FATAL)
            return CHANGELOG_FATAL;
        edr_errf(errstr, n, "changelog: the writer role was lost");
        return CHANGELOG_FENCED;
    }
    rd_kafka_error_t *e = rd_kafka_send_offsets_to_transaction(
        cl->producer, cl->txn_offs, md, cl->timeout_ms);
    if (e)
        return cl_txn_fail(cl, e, "send offsets", errstr, n);
    cl->txn_state = CL_TXN_COMMIT_PENDING;
    e = rd_kafka_commit_transaction(cl->producer, cl->timeout_ms);
    if (e)
        return cl_txn_fail(cl, e, "commit", errstr, n);
    cl_txn_end(cl, 1);
    return CHANGELOG_OK;
}

int changelog_write(struct changelog *cl, const struct changelog_change *ch,
                    size_t n_ch, const struct store_offset *src, size_t n_src,
                    size_t *written, char *errstr, size_t n)
{
    size_t out = 0;
    if (written)
        *written = 0;
    int rc = changelog_add(cl, ch, n_ch, src, n_src, &out, errstr, n);
    if (rc == CHANGELOG_OK)
        rc = changelog_commit(cl, errstr, n);
    if (rc == CHANGELOG_OK && written)
        *written = out;
    return rc;
}

int64_t changelog_txn_age_ms(const struct changelog *cl)
{
    if (cl->txn_state != CL_TXN_OPEN)
        return -1;
    return edr_clock_ms() - cl->txn_began_ms;
}

size_t changelog_txn_records(const struct changelog *cl)
{
    return cl->txn_state == CL_TXN_OPEN ? cl->txn_records : 0;
}

uint64_t changelog_txn_ended(const struct changelog *cl)
{
    return cl->txn_ended;
}

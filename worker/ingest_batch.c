/* ingest_batch.c: one store batch per poll round (worker/ingest_int.h).
 *
 * Decodes the batch, dead-letters the rejected events, then applies the
 * good ones and the offsets of all of them (last offset + 1 per
 * partition) as one store batch. Offsets move only after the store
 * accepted the batch, so a crash replays, and replays are harmless
 * (schemas/README.md §1). Transient failures pause the partitions and
 * retry the same batch; a fenced batch (STORE_CONFLICT: another worker
 * owns a partition now) drops that partition's part; a batch the store
 * rejects as invalid is applied event by event. */
#include "worker/ingest_int.h"

#include "worker/backoff.h"
#include "worker/log.h"
#include "worker/metrics.h"
#include "worker/positions.h"

#include <inttypes.h>
#include <stdio.h>

/* Builds the store batch from the items: every good op not yet applied
 * (or only item `single`'s op when single >= 0, without offsets), plus the
 * offsets of all items kept (unless single >= 0), without ops when
 * offsets_only. */
static void build_batch(struct ingest *in, long single, int offsets_only,
                        struct store_batch *b)
{
    size_t n_ops = 0, n_offs = 0;
    for (size_t i = 0; i < in->n_items; i++) {
        struct item *it = &in->items[i];
        if (it->dropped)
            continue;
        if (single >= 0) {
            if ((size_t)single == i)
                in->ops[n_ops++] = it->op;
            continue;
        }
        if (!offsets_only && !it->bad && !it->applied)
            in->ops[n_ops++] = it->op;
        size_t j = 0;
        while (j < n_offs && in->offs[j].partition != it->msg->partition)
            j++;
        if (j == n_offs) {
            in->offs[n_offs].partition = it->msg->partition;
            in->offs[n_offs++].first_offset =
                in->group_mode ? it->msg->offset : -1;
        }
        in->offs[j].next_offset = it->msg->offset + 1;
    }
    /* One event alone (apply_one_by_one) is fenced too, at the start of
     * its partition's part of the batch, without moving the offset. */
    for (size_t i = 0;
         single >= 0 && n_ops > 0 && in->group_mode && i < in->n_items; i++) {
        const struct item *it = &in->items[i];
        if (!it->dropped &&
            it->msg->partition == in->items[single].msg->partition) {
            in->offs[0] = (struct store_offset){
                it->msg->partition, it->msg->offset, it->msg->offset};
            n_offs = 1;
            break;
        }
    }
    *b = (struct store_batch){.ops = in->ops,
                              .n_ops = n_ops,
                              .topic = in->cfg->topic,
                              .offsets = in->offs,
                              .n_offsets = n_offs};
}

/* The store fenced batch b (STORE_CONFLICT): another worker applied
 * events of some partition past where this batch starts, so the group
 * gave that partition away while this worker was frozen. Re-reads the
 * store's offsets, drops the items of every such partition and, if it is
 * still assigned here, seeks it to what the store holds so nothing this
 * worker still owns is skipped. *dropped = how many partitions it
 * dropped. ROUND_OK, or ROUND_STOPPED / ROUND_FATAL when the offsets
 * cannot be loaded. */
static int drop_fenced(struct ingest *in, const struct store_batch *b,
                       int *dropped)
{
    *dropped = 0;
    int rc = ingest_load_offsets(in);
    if (rc != 0)
        return rc;
    for (size_t j = 0; j < b->n_offsets; j++) {
        const struct store_offset *o = &b->offsets[j];
        int64_t stored = ingest_saved_offset(in, o->partition);
        if (o->first_offset < 0 || stored <= o->first_offset)
            continue;
        log_warn("partition %" PRId32 " was advanced by another worker past "
                 "offset %" PRId64 " (to %" PRId64 "): this worker lost it; "
                 "dropping its pending events and re-reading the offsets",
                 o->partition, o->first_offset, stored);
        (*dropped)++;
        for (size_t i = 0; i < in->n_items; i++)
            if (in->items[i].msg->partition == o->partition)
                in->items[i].dropped = 1;
        struct part *p = ingest_part(in, o->partition, 0);
        if (!p || !p->assigned)
            continue;
        rd_kafka_topic_partition_list_t *l =
            rd_kafka_topic_partition_list_new(1);
        rd_kafka_topic_partition_list_add(l, in->cfg->topic, o->partition)
            ->offset = stored;
        rd_kafka_error_t *e = rd_kafka_seek_partitions(in->rk, l, 0);
        if (e) {
            log_warn("kafka: seek partition %" PRId32 ": %s", o->partition,
                     rd_kafka_error_string(e));
            rd_kafka_error_destroy(e);
        }
        rd_kafka_topic_partition_list_destroy(l);
        p->next = stored;
        p->expect = stored;
    }
    return ROUND_OK;
}

/* Applies the batch build_batch(single, offsets_only) makes, retrying
 * transient failures with the partitions paused. Returns STORE_OK,
 * STORE_INVALID (with *rejected filled), or ROUND_STOPPED / ROUND_FATAL
 * mapped to STORE_TRANSIENT / STORE_FATAL. */
static int apply_retry(struct ingest *in, long single, int offsets_only,
                       struct store_err *rejected, size_t *changed)
{
    struct backoff b;
    backoff_init(&b, RETRY_MIN_MS, RETRY_MAX_MS);
    for (;;) {
        struct store_batch batch;
        struct store_err err = {0};
        build_batch(in, single, offsets_only, &batch);
        /* Nothing left (every partition revoked or fenced meanwhile) is a
         * success too: it must end the outage, or the partitions would
         * stay paused for good. */
        int rc = batch.n_ops == 0 && batch.n_offsets == 0
                     ? STORE_OK
                     : in->st->ops->apply(in->st, &batch, &err);
        if (rc == STORE_OK) {
            if (outage_log_end(&in->store_log))
                metrics_set_store_ok(1);
            if (in->outage && b.attempts)
                ingest_outage_end(in, "store", b.attempts);
            if (changed)
                *changed = batch.changed;
            return STORE_OK;
        }
        if (rc == STORE_INVALID) {
            *rejected = err;
            return STORE_INVALID;
        }
        if (rc == STORE_CONFLICT) {
            /* Each round drops at least one partition of the batch, so
             * this ends; if none was found stale (offsets moved back
             * meanwhile?), retry like an outage rather than spin. */
            int dropped, r = drop_fenced(in, &batch, &dropped);
            if (r == ROUND_STOPPED)
                return STORE_TRANSIENT;
            if (r == ROUND_FATAL)
                return STORE_FATAL;
            if (dropped > 0)
                continue;
            log_warn("store: %s, but no partition is behind the store; "
                     "retrying",
                     err.msg);
        } else if (rc != STORE_TRANSIENT) {
            log_error("store: fatal error: %s", err.msg);
            return STORE_FATAL;
        }
        if (outage_log_note(&in->store_log, "store",
                            "pausing consumption and retrying", err.msg,
                            ingest_now()) == OUTAGE_LINE_FIRST) {
            metrics_outage("store");
            metrics_set_store_ok(0);
        }
        ingest_outage_begin(in);
        metrics_retry("store");
        ingest_changelog_poll(in); /* keep the ownership group's member */
        if (*in->stop) {
            log_warn("store: stopping during an outage; the batch in flight "
                     "will be consumed again at the next start");
            return STORE_TRANSIENT;
        }
        ingest_wait_serving(in, backoff_next(&b));
    }
}

static int rc_to_round(int rc)
{
    return rc == STORE_OK          ? ROUND_OK
           : rc == STORE_TRANSIENT ? ROUND_STOPPED
                                   : ROUND_FATAL;
}

/* A batch the store rejected as invalid: apply its events one by one and
 * dead-letter the ones it rejects, then record the offsets. */
static int apply_one_by_one(struct ingest *in, const struct store_err *why)
{
    log_warn("store rejected a batch (%s); applying its events one by one",
             why->msg);
    for (size_t i = 0; i < in->n_items; i++) {
        struct item *it = &in->items[i];
        if (it->dropped || it->bad)
            continue;
        struct store_err rej = {0};
        int rc = apply_retry(in, (long)i, 0, &rej, NULL);
        if (rc == STORE_INVALID) {
            it->bad = 1;
            it->err = EVENT_ERR_SCHEMA;
            snprintf(it->reason, sizeof(it->reason), "store rejected: %s",
                     rej.msg);
            continue;
        }
        if (rc != STORE_OK)
            return rc_to_round(rc);
        it->applied = 1;
    }
    int rc = ingest_send_dead_letters(in);
    if (rc != ROUND_OK)
        return rc;
    struct store_err rej = {0};
    rc = apply_retry(in, -1, 1, &rej, NULL);
    if (rc == STORE_INVALID) {
        log_error("store: rejected offsets: %s", rej.msg);
        return ROUND_FATAL;
    }
    return rc_to_round(rc);
}

static void after_apply(struct ingest *in, double started)
{
    uint64_t by_type[4] = {0};
    size_t n_good = 0;
    for (size_t i = 0; i < in->n_items; i++) {
        struct item *it = &in->items[i];
        if (it->dropped)
            continue;
        if (it->bad) {
            in->dead++;
            metrics_event_dead_lettered(it->err);
            log_warn("dead-lettered %s[%" PRId32 "]@%" PRId64 ": %s",
                     in->cfg->topic, it->msg->partition, it->msg->offset,
                     it->reason);
        } else {
            n_good++;
            by_type[it->ev.type & 3]++;
        }
    }
    for (int t = EVENT_NEGOTIATED; t <= EVENT_EXPIRED; t++)
        if (by_type[t])
            metrics_events_applied((enum event_type)t, by_type[t]);
    in->applied += n_good;
    metrics_batch_applied(n_good, ingest_now() - started);
    if (in->count_each_batch) {
        uint64_t entries;
        struct store_err err = {0};
        if (in->st->ops->count(in->st, NULL, &entries, &err) == STORE_OK)
            metrics_store_entries(entries);
    }

    struct store_batch batch;
    build_batch(in, -1, 1, &batch);
    rd_kafka_topic_partition_list_t *l =
        in->group_mode ? rd_kafka_topic_partition_list_new((int)batch.n_offsets)
                       : NULL;
    for (size_t j = 0; j < batch.n_offsets; j++) {
        struct part *p = ingest_part(in, batch.offsets[j].partition, 0);
        if (p)
            p->next = batch.offsets[j].next_offset;
        if (l)
            rd_kafka_topic_partition_list_add(l, in->cfg->topic,
                                              batch.offsets[j].partition)
                ->offset = batch.offsets[j].next_offset;
    }
    positions_applied(batch.offsets, batch.n_offsets); /* wakes lookups */
    if (l) {
        /* Kafka's committed offsets only inform lag tools; the store's
         * offsets table is what the worker resumes from. */
        rd_kafka_offsets_store(in->rk, l);
        rd_kafka_topic_partition_list_destroy(l);
        if (ingest_now() - in->last_commit >= COMMIT_EVERY_S) {
            rd_kafka_commit(in->rk, NULL, 1);
            in->last_commit = ingest_now();
        }
    }
}

/* An event whose decode ran out of memory is retried, never dead-lettered:
 * its partition holds at it (the events before it are applied) and comes
 * back after a backoff, as a failed dead-letter copy does. */
static void hold_out_of_memory(struct ingest *in)
{
    for (size_t i = 0; i < in->n_items; i++) {
        struct item *it = &in->items[i];
        if (it->nomem && !it->dropped) {
            metrics_retry("other");
            ingest_hold_partition(in, it->msg->partition, it->msg->offset,
                                  "out of memory decoding its event");
        }
    }
}

int ingest_process_batch(struct ingest *in)
{
    double started = ingest_now();
    log_debug("batch of %zu messages", in->n_items);
    int has_bad = 0;
    decode_pool_post(&in->dec, in->items, in->n_items);
    decode_pool_finish(&in->dec);
    hold_out_of_memory(in);
    for (size_t i = 0; i < in->n_items; i++)
        has_bad |= in->items[i].bad && !in->items[i].dropped;
    if (has_bad) {
        int rc = ingest_send_dead_letters(in);
        if (rc != ROUND_OK)
            return rc;
    }
    struct store_err rej = {0};
    int rc = apply_retry(in, -1, 0, &rej, NULL);
    if (rc == STORE_INVALID)
        rc = apply_one_by_one(in, &rej);
    else
        rc = rc_to_round(rc);
    if (rc == ROUND_OK) {
        after_apply(in, started);
        rc = ingest_changelog_write(in);
    }
    return rc;
}

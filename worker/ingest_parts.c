/* ingest_parts.c: the Kafka loop's partition state (worker/ingest_int.h).
 *
 * Which partitions this worker holds and where each stands; pausing them
 * all during a store outage; the group-mode rebalance callback (postgres
 * store: the offsets table is the truth, so every new partition is
 * assigned paused and, outside the callback, sought to what the store
 * last applied: ingest_seek_pending); and assign mode (memory and file
 * stores: every partition of the topic, new ones too). Either way a
 * partition starts only after its state-gap check (ingest_gaps.c); one
 * with a gap stays paused. */
#include "worker/ingest_int.h"

#include "worker/backoff.h"
#include "worker/log.h"
#include "worker/metrics.h"

#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

struct part *ingest_part(struct ingest *in, int32_t id, int create)
{
    if (id < 0)
        return NULL;
    if (id >= in->n_parts) {
        if (!create)
            return NULL;
        struct part *grown =
            realloc(in->parts, (size_t)(id + 1) * sizeof(*grown));
        if (!grown)
            return NULL;
        for (int32_t i = in->n_parts; i <= id; i++)
            grown[i] = (struct part){
                .expect = -1, .next = -1, .low = -1, .target = -1};
        in->parts = grown;
        in->n_parts = id + 1;
    }
    struct part *p = &in->parts[id];
    if (create)
        p->known = 1;
    return p->known ? p : NULL;
}

int64_t ingest_saved_offset(const struct ingest *in, int32_t id)
{
    for (size_t i = 0; i < in->n_saved; i++)
        if (in->saved[i].partition == id)
            return in->saved[i].next_offset;
    return -1;
}

static int any_assigned(const struct ingest *in)
{
    for (int32_t i = 0; i < in->n_parts; i++)
        if (in->parts[i].assigned)
            return 1;
    return 0;
}

/* Pauses (pause=1) or resumes every assigned partition. */
void ingest_set_paused(struct ingest *in, int pause)
{
    rd_kafka_topic_partition_list_t *l = rd_kafka_topic_partition_list_new(8);
    for (int32_t i = 0; i < in->n_parts; i++)
        if (in->parts[i].assigned && in->parts[i].paused != pause &&
            !((in->parts[i].pending || in->parts[i].held || in->parts[i].gap) &&
              !pause))
            rd_kafka_topic_partition_list_add(l, in->cfg->topic, i);
    if (l->cnt > 0) {
        rd_kafka_resp_err_t err = pause ? rd_kafka_pause_partitions(in->rk, l)
                                        : rd_kafka_resume_partitions(in->rk, l);
        if (err)
            log_warn("kafka: %s partitions: %s", pause ? "pause" : "resume",
                     rd_kafka_err2str(err));
        for (int i = 0; i < l->cnt; i++)
            in->parts[l->elems[i].partition].paused = pause;
    }
    rd_kafka_topic_partition_list_destroy(l);
}

static void format_partitions(const rd_kafka_topic_partition_list_t *l,
                              int with_offsets, char *out, size_t cap)
{
    size_t n = 0;
    out[0] = '\0';
    for (int i = 0; i < l->cnt && n + 32 < cap; i++) {
        int64_t off = l->elems[i].offset;
        if (!with_offsets)
            n += (size_t)snprintf(out + n, cap - n, "%s%" PRId32, i ? " " : "",
                                  l->elems[i].partition);
        else if (off > 0) /* 0, the first offset ever, reads "start" */
            n += (size_t)snprintf(out + n, cap - n, "%s%" PRId32 "@%" PRId64,
                                  i ? " " : "", l->elems[i].partition, off);
        else
            n += (size_t)snprintf(out + n, cap - n, "%s%" PRId32 "@start",
                                  i ? " " : "", l->elems[i].partition);
    }
    if (l->cnt == 0)
        snprintf(out, cap, "none");
}

/* Loads the store's offsets, retrying transient failures. 0, or
 * ROUND_STOPPED / ROUND_FATAL. */
int ingest_load_offsets(struct ingest *in)
{
    struct backoff b;
    backoff_init(&b, RETRY_MIN_MS, RETRY_MAX_MS);
    for (;;) {
        struct store_err err = {0};
        free(in->saved);
        in->saved = NULL;
        in->n_saved = 0;
        int rc = in->st->ops->load_offsets(in->st, in->cfg->topic, &in->saved,
                                           &in->n_saved, &err);
        if (rc == STORE_OK) {
            if (outage_log_end(&in->store_log)) {
                metrics_set_store_ok(1);
                log_info("store: offsets loaded after %u retries", b.attempts);
            }
            return 0;
        }
        if (rc != STORE_TRANSIENT) {
            log_error("store: cannot load offsets: %s", err.msg);
            return ROUND_FATAL;
        }
        if (outage_log_note(&in->store_log, "store",
                            "cannot load offsets; retrying", err.msg,
                            ingest_now()) == OUTAGE_LINE_FIRST) {
            metrics_outage("store");
            metrics_set_store_ok(0);
        }
        metrics_retry("store");
        if (*in->stop)
            return ROUND_STOPPED;
        /* Serving the consumer meanwhile: rebalances go on, and the
         * group keeps this member (max.poll.interval.ms). */
        ingest_wait_serving(in, backoff_next(&b));
    }
}

/* Marks the partitions of l assigned at the offsets in l (which must come
 * from the store, or be OFFSET_BEGINNING). */
static void mark_assigned(struct ingest *in,
                          const rd_kafka_topic_partition_list_t *l)
{
    for (int i = 0; i < l->cnt; i++) {
        struct part *p = ingest_part(in, l->elems[i].partition, 1);
        if (!p)
            continue;
        p->assigned = 1;
        p->paused = 0;
        p->next = l->elems[i].offset >= 0 ? l->elems[i].offset : -1;
        p->expect = p->next;
    }
    metrics_set_kafka_assigned(in->joined || any_assigned(in));
}

/* Sets each partition's start offset: the store's, else the beginning
 * (group mode, in the rebalance callback: the partitions are paused and
 * sought after their gap check, ingest_seek_pending). */
static void set_start_offsets(struct ingest *in,
                              rd_kafka_topic_partition_list_t *l)
{
    for (int i = 0; i < l->cnt; i++) {
        int64_t off = ingest_saved_offset(in, l->elems[i].partition);
        l->elems[i].offset = off >= 0 ? off : RD_KAFKA_OFFSET_BEGINNING;
    }
}

static void drop_items_of(struct ingest *in,
                          const rd_kafka_topic_partition_list_t *l)
{
    for (size_t i = 0; i < in->n_items; i++)
        for (int j = 0; j < l->cnt; j++)
            if (in->items[i].msg->partition == l->elems[j].partition)
                in->items[i].dropped = 1;
}

void ingest_rebalance_cb(rd_kafka_t *rk, rd_kafka_resp_err_t err,
                         rd_kafka_topic_partition_list_t *l, void *opaque)
{
    struct ingest *in = opaque;
    int coop = strcmp(rd_kafka_rebalance_protocol(rk), "COOPERATIVE") == 0;
    rd_kafka_error_t *error = NULL;
    rd_kafka_resp_err_t aerr = RD_KAFKA_RESP_ERR_NO_ERROR;
    char text[1024];

    if (err == RD_KAFKA_RESP_ERR__ASSIGN_PARTITIONS) {
        /* The offsets table is the truth, but reading it is store work,
         * which may wait out an outage: not here, inside librdkafka's
         * poll. Assign each new partition paused at the offset last read
         * (an explicit offset, so librdkafka asks nothing of Kafka's
         * committed offsets that could race the seek); the loop reads the
         * store and seeks it (ingest_seek_pending). */
        set_start_offsets(in, l);
        if (coop)
            error = rd_kafka_incremental_assign(rk, l);
        else
            aerr = rd_kafka_assign(rk, l);
        in->joined = 1;
        in->assign_gen++;
        mark_assigned(in, l);
        /* Also because librdkafka 2.0 keeps a partition's pause flag
         * across its revocation, the resume comes explicitly after the
         * seek (tests/fault/, group-zombie). */
        rd_kafka_pause_partitions(rk, l);
        for (int i = 0; i < l->cnt; i++) {
            struct part *p = ingest_part(in, l->elems[i].partition, 0);
            if (p && !p->pending) {
                p->pending = 1;
                p->paused = 1;
                in->n_pending++;
            }
        }
        format_partitions(l, 0, text, sizeof(text));
        log_info("kafka: assigned partitions of %s: %s (to be sought to the "
                 "store's offsets)",
                 in->cfg->topic, text);
    } else {
        if (err != RD_KAFKA_RESP_ERR__REVOKE_PARTITIONS)
            log_error("kafka: rebalance error: %s", rd_kafka_err2str(err));
        drop_items_of(in, l);
        /* Lag tools see the last applied offsets of what we give up. */
        rd_kafka_commit(rk, NULL, 1);
        if (coop)
            error = rd_kafka_incremental_unassign(rk, l);
        else
            aerr = rd_kafka_assign(rk, NULL);
        for (int i = 0; i < l->cnt; i++) {
            struct part *p = ingest_part(in, l->elems[i].partition, 0);
            if (p) {
                if (p->pending)
                    in->n_pending--;
                p->pending = 0;
                p->held = 0;
                p->assigned = 0;
                p->paused = 0;
                p->lag = 0;
                metrics_consumer_lag(l->elems[i].partition, -1);
            }
        }
        format_partitions(l, 0, text, sizeof(text));
        log_info("kafka: %s partitions of %s: %s",
                 rd_kafka_assignment_lost(rk) ? "lost" : "revoked",
                 in->cfg->topic, text);
    }
    if (error) {
        log_error("kafka: assignment failed: %s", rd_kafka_error_string(error));
        rd_kafka_error_destroy(error);
    } else if (aerr) {
        log_error("kafka: assignment failed: %s", rd_kafka_err2str(aerr));
    }
}

int ingest_seek_pending(struct ingest *in)
{
    unsigned gen;
    do {
        /* An assignment while the offsets are read may have come after
         * the read: read again, so every partition gets a fresh one. */
        gen = in->assign_gen;
        int rc = ingest_load_offsets(in);
        if (rc != 0)
            return rc;
    } while (gen != in->assign_gen);
    rd_kafka_topic_partition_list_t *l = rd_kafka_topic_partition_list_new(8);
    for (int32_t i = 0; i < in->n_parts; i++) {
        struct part *p = &in->parts[i];
        if (!p->pending || !p->assigned)
            continue;
        /* The offsets table's position (none: the log's start, 0) is
         * what the state needs; the log may no longer hold it. */
        int64_t off = ingest_saved_offset(in, i);
        off = ingest_gap_check(in, i, off >= 0 ? off : 0);
        rd_kafka_topic_partition_list_add(l, in->cfg->topic, i)->offset = off;
        p->pending = 0;
        p->next = off;
        p->expect = off;
    }
    in->n_pending = 0;
    if (l->cnt > 0) {
        char text[1024];
        rd_kafka_error_t *e = rd_kafka_seek_partitions(in->rk, l, 0);
        if (e) {
            log_warn("kafka: seek: %s", rd_kafka_error_string(e));
            rd_kafka_error_destroy(e);
        }
        format_partitions(l, 1, text, sizeof(text));
        log_info("kafka: partitions of %s start at the store's offsets: %s",
                 in->cfg->topic, text);
        if (!in->outage) {
            /* Not those with a gap: they stay paused. */
            rd_kafka_topic_partition_list_t *r =
                rd_kafka_topic_partition_list_new(l->cnt);
            for (int i = 0; i < l->cnt; i++)
                if (!in->parts[l->elems[i].partition].gap)
                    rd_kafka_topic_partition_list_add(r, in->cfg->topic,
                                                      l->elems[i].partition);
            rd_kafka_resp_err_t err =
                r->cnt ? rd_kafka_resume_partitions(in->rk, r) : 0;
            if (err)
                log_warn("kafka: resume partitions: %s", rd_kafka_err2str(err));
            for (int i = 0; i < r->cnt; i++)
                in->parts[r->elems[i].partition].paused = 0;
            rd_kafka_topic_partition_list_destroy(r);
        }
    }
    rd_kafka_topic_partition_list_destroy(l);
    return 0;
}

/* Assigns the partitions of the topic not assigned yet (all of them at
 * start, new ones later) at the offsets saved with the state. */
void ingest_assign_new(struct ingest *in)
{
    const struct rd_kafka_metadata *md = NULL;
    rd_kafka_resp_err_t err = rd_kafka_metadata(in->rk, 0, in->rkt, &md, 2000);
    if (err) {
        if (ingest_now() >= in->warn_until) {
            log_warn("kafka: metadata of %s: %s", in->cfg->topic,
                     rd_kafka_err2str(err));
            in->warn_until = ingest_now() + 30;
        }
        return;
    }
    if (in->kafka_down) {
        in->kafka_down = 0;
        log_info("kafka: brokers reachable again");
    }
    rd_kafka_topic_partition_list_t *l = rd_kafka_topic_partition_list_new(8);
    if (md->topic_cnt == 1 && md->topics[0].err) {
        if (ingest_now() >= in->warn_until) {
            log_warn("kafka: topic %s: %s; waiting for it", in->cfg->topic,
                     rd_kafka_err2str(md->topics[0].err));
            in->warn_until = ingest_now() + 30;
        }
    } else if (md->topic_cnt == 1) {
        for (int i = 0; i < md->topics[0].partition_cnt; i++) {
            int32_t id = md->topics[0].partitions[i].id;
            struct part *p = ingest_part(in, id, 0);
            if (!p || !p->assigned)
                rd_kafka_topic_partition_list_add(l, in->cfg->topic, id);
        }
    }
    rd_kafka_metadata_destroy(md);
    if (l->cnt > 0) {
        char text[1024];
        ingest_gaps_start_offsets(in, l);
        rd_kafka_error_t *error = rd_kafka_incremental_assign(in->rk, l);
        if (error) {
            log_error("kafka: assign: %s", rd_kafka_error_string(error));
            rd_kafka_error_destroy(error);
        } else {
            mark_assigned(in, l);
            if (in->outage)
                ingest_set_paused(in, 1);
            ingest_gaps_pause(in);
            format_partitions(l, 1, text, sizeof(text));
            log_info("kafka: assigned partitions of %s: %s", in->cfg->topic,
                     text);
        }
    }
    rd_kafka_topic_partition_list_destroy(l);
}

void ingest_outage_begin(struct ingest *in)
{
    if (in->outage)
        return;
    in->outage = 1;
    in->outage_start = ingest_now();
    ingest_set_paused(in, 1);
}

void ingest_outage_end(struct ingest *in, const char *what, unsigned retries)
{
    if (!in->outage)
        return;
    in->outage = 0;
    log_info("%s recovered after %.1f s and %u retries; resuming", what,
             ingest_now() - in->outage_start, retries);
    /* The log may have moved past a partition meanwhile. */
    ingest_gaps_recheck(in);
    ingest_set_paused(in, 0);
}

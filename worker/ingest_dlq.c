/* ingest_dlq.c: sending a batch's rejected events to the dead-letter
 * topic (schemas/README.md §1, "Rejected events" and v2 "Dead letters
 * never wedge a partition"; the producer is worker/dlq.c).
 *
 * The batch waits for the broker's acknowledgement of every copy. A copy
 * refused as too large goes again at once without its value. A copy that
 * fails otherwise holds only its partition, at that event: the partition's
 * items from the event on leave the batch (the ones before it, and the
 * other partitions, are applied), the partition is sought back to the
 * event and paused, and resumed after a backoff of its own
 * (ingest_release_holds), when the event comes again and its copy is
 * retried. */
#include "worker/ingest_int.h"

#include "worker/backoff.h"
#include "worker/dlq.h"
#include "worker/log.h"
#include "worker/metrics.h"

#include <inttypes.h>
#include <stdio.h>

void ingest_hold_partition(struct ingest *in, int32_t id, int64_t at,
                           const char *why)
{
    struct part *p = ingest_part(in, id, 0);
    for (size_t i = 0; i < in->n_items; i++) {
        struct item *it = &in->items[i];
        if (it->msg->partition == id && it->msg->offset >= at && !it->dropped)
            it->dropped = 1; /* not this round's: fetched again later */
    }
    if (!p || !p->assigned)
        return;
    if (!p->hold_b.min_ms)
        backoff_init(&p->hold_b, RETRY_MIN_MS, RETRY_MAX_MS);
    unsigned ms = backoff_next(&p->hold_b);
    p->held = 1;
    p->hold_until = ingest_now() + ms / 1000.0;
    p->expect = at;
    rd_kafka_topic_partition_list_t *l = rd_kafka_topic_partition_list_new(1);
    rd_kafka_topic_partition_list_add(l, in->cfg->topic, id)->offset = at;
    rd_kafka_pause_partitions(in->rk, l);
    p->paused = 1;
    rd_kafka_error_t *e = rd_kafka_seek_partitions(in->rk, l, 0);
    if (e) {
        log_warn("kafka: seek partition %" PRId32 ": %s", id,
                 rd_kafka_error_string(e));
        rd_kafka_error_destroy(e);
    }
    rd_kafka_topic_partition_list_destroy(l);
    log_warn("partition %" PRId32 " held at offset %" PRId64
             ": %s; retrying in %u ms, the other partitions go on",
             id, at, why, ms);
}

void ingest_release_holds(struct ingest *in, double now)
{
    if (in->outage)
        return; /* the outage's end resumes everything */
    for (int32_t i = 0; i < in->n_parts; i++) {
        struct part *p = &in->parts[i];
        if (!p->held || now < p->hold_until)
            continue;
        p->held = 0;
        if (!p->assigned || p->pending)
            continue;
        rd_kafka_topic_partition_list_t *l =
            rd_kafka_topic_partition_list_new(1);
        rd_kafka_topic_partition_list_add(l, in->cfg->topic, i);
        rd_kafka_resume_partitions(in->rk, l);
        rd_kafka_topic_partition_list_destroy(l);
        p->paused = 0;
    }
}

int ingest_send_dead_letters(struct ingest *in)
{
    for (;;) {
        char errstr[256];
        for (size_t i = 0; i < in->n_items; i++) {
            struct item *it = &in->items[i];
            if (!it->bad || it->dropped || it->dlq_state == DLQ_DONE)
                continue;
            /* A failure to even queue it shows as DLQ_FAILED below. */
            dlq_produce(in->dlq, it->msg, it->reason, it->dlq_without_value,
                        &it->dlq_state, errstr, sizeof(errstr));
        }
        /* The producer's own timeout (10 s) bounds this wait. */
        while (dlq_wait(in->dlq, 1000) > 0)
            ;
        /* A copy the topic can never take goes again at once, without
         * its value (§1 v2): not an outage, no backoff. */
        int again = 0;
        for (size_t i = 0; i < in->n_items; i++) {
            struct item *it = &in->items[i];
            if (it->bad && !it->dropped && it->dlq_state == DLQ_TOO_LARGE &&
                !it->dlq_without_value) {
                log_warn("dead-letter copy of %s[%" PRId32 "]@%" PRId64
                         " (%zu bytes) refused as too large (%s); writing "
                         "it without its value",
                         in->cfg->topic, it->msg->partition, it->msg->offset,
                         it->msg->len, dlq_last_error(in->dlq));
                it->dlq_without_value = 1;
                it->dlq_state = DLQ_NONE;
                again = 1;
            }
        }
        if (!again)
            break;
    }
    /* Every copy acknowledged or failed for good this round. The first
     * failed one of each partition holds it there (items are in offset
     * order per partition). */
    int failed = 0;
    for (size_t i = 0; i < in->n_items; i++) {
        struct item *it = &in->items[i];
        if (!it->bad || it->dropped)
            continue;
        struct part *p = ingest_part(in, it->msg->partition, 0);
        if (it->dlq_state == DLQ_DONE) {
            if (p && p->hold_b.attempts)
                backoff_reset(&p->hold_b);
            continue;
        }
        if (failed++ == 0) {
            if (outage_log_note(&in->dlq_log, "dead-letter topic",
                                "holding the partitions of the failed copies",
                                dlq_last_error(in->dlq),
                                ingest_now()) == OUTAGE_LINE_FIRST)
                metrics_outage("kafka");
        }
        metrics_retry("kafka");
        char why[320];
        snprintf(why, sizeof(why), "its dead-letter copy failed (%s)",
                 dlq_last_error(in->dlq));
        ingest_hold_partition(in, it->msg->partition, it->msg->offset, why);
    }
    if (!failed && outage_log_end(&in->dlq_log))
        log_info("dead-letter topic: copies acknowledged again");
    /* Even when stopping: what is before the held events is applied. */
    return ROUND_OK;
}

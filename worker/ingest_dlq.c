/* ingest_dlq.c: sending a batch's rejected events to the dead-letter
 * topic (schemas/README.md §1, "Rejected events"; the producer is
 * worker/dlq.c).
 *
 * The batch is applied only after the broker acknowledged every copy;
 * while copies fail, the partitions are paused and the copies retried
 * with backoff. */
#include "worker/ingest_int.h"

#include "worker/backoff.h"
#include "worker/dlq.h"
#include "worker/log.h"
#include "worker/metrics.h"

#include <inttypes.h>

/* Copies every bad, not yet acknowledged item to the dead-letter topic
 * and waits until the broker acknowledged all of them, retrying failures.
 * ROUND_OK, or ROUND_STOPPED (stop requested while it failed). */
int ingest_send_dead_letters(struct ingest *in)
{
    struct backoff b;
    backoff_init(&b, RETRY_MIN_MS, RETRY_MAX_MS);
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
        if (again)
            continue;
        int failed = 0;
        for (size_t i = 0; i < in->n_items; i++) {
            struct item *it = &in->items[i];
            if (it->bad && !it->dropped && it->dlq_state != DLQ_DONE)
                failed++;
        }
        if (!failed) {
            outage_log_end(&in->dlq_log);
            if (b.attempts)
                ingest_outage_end(in, "dead-letter topic", b.attempts);
            return ROUND_OK;
        }
        if (outage_log_note(&in->dlq_log, "dead-letter topic",
                            "pausing consumption and retrying",
                            dlq_last_error(in->dlq),
                            ingest_now()) == OUTAGE_LINE_FIRST)
            metrics_outage("kafka");
        ingest_outage_begin(in);
        metrics_retry("kafka");
        if (*in->stop)
            return ROUND_STOPPED;
        ingest_wait_serving(in, backoff_next(&b));
    }
}

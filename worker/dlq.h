/* dlq.h: the dead-letter producer (schemas/README.md §1, "Rejected events").
 *
 * A rejected event is copied unchanged (key, value, headers) to
 * EDR_DLQ_TOPIC with the headers edr-error, edr-source-topic,
 * edr-source-partition and edr-source-offset added. The producer is
 * idempotent with acks=all; the caller learns from a per-message state
 * when the broker acknowledged the copy, and only then moves past the
 * event. Used by the ingest thread only.
 *
 * (v2) The producer's own limits accept any record the broker can take.
 * A copy the topic refuses as too large ends as DLQ_TOO_LARGE; the caller
 * then writes it again with its value left out (dlq_produce with
 * without_value), which adds edr-value-size and edr-value-sha256 and says
 * so in edr-error. */
#ifndef EDR_WORKER_DLQ_H
#define EDR_WORKER_DLQ_H

#include "worker/config.h"

#include <librdkafka/rdkafka.h>
#include <stddef.h>

enum dlq_state {
    DLQ_NONE = 0,
    DLQ_PENDING,   /* queued, no delivery report yet */
    DLQ_DONE,      /* acknowledged by the broker */
    DLQ_FAILED,    /* not written: produce again later */
    DLQ_TOO_LARGE, /* refused as too large: produce again without value */
};

struct dlq;

/* NULL with errstr when the producer can't be created. cfg borrowed. */
struct dlq *dlq_open(const struct config *cfg, char *errstr,
                     size_t errstr_size);

/* Queues the copy of msg with reason (no EDR contents in it); with
 * without_value, an empty value instead of msg's, and the headers
 * edr-value-size and edr-value-sha256 of msg's value. *state is set to
 * DLQ_PENDING and later, inside dlq_wait(), to DLQ_DONE, DLQ_FAILED or
 * DLQ_TOO_LARGE; it must stay valid until then. Returns 0, or -1 with
 * *state = DLQ_FAILED (or DLQ_TOO_LARGE) and errstr when it could not
 * even be queued. */
int dlq_produce(struct dlq *d, const rd_kafka_message_t *msg,
                const char *reason, int without_value, int *state, char *errstr,
                size_t errstr_size);

/* 1 when err means the record is too large for the topic (or the
 * producer): writing it again unchanged can never succeed. */
int dlq_err_too_large(rd_kafka_resp_err_t err);

/* Serves delivery reports until none is outstanding or timeout_ms has
 * passed; returns how many are still outstanding. */
int dlq_wait(struct dlq *d, int timeout_ms);

/* Drops whatever is still queued or in flight and serves the resulting
 * reports (they end as DLQ_FAILED), so no state pointer is written
 * after it returns. */
void dlq_abort(struct dlq *d);

/* The reason of the last failed delivery, for the log. */
const char *dlq_last_error(const struct dlq *d);

/* Flushes (a few seconds at most), then frees. NULL is ok. */
void dlq_close(struct dlq *d);

#endif

/* edc_publish.h: the producer of the EDC callback route
 * (schemas/README.md §6): one edr.expired event at a time, answered only
 * after the broker's delivery report.
 *
 * Its own idempotent producer with acks=all, apart from the dead-letter
 * producer of the Kafka loop (worker/dlq.c, ingest thread only), so a
 * callback waiting for the broker never holds up ingest and the other way
 * round. A thread of its own serves the delivery reports; any number of
 * HTTP connection threads may send and wait concurrently. */
#ifndef EDR_WORKER_EDC_PUBLISH_H
#define EDR_WORKER_EDC_PUBLISH_H

#include "worker/config.h"

#include <stddef.h>
#include <stdint.h>

/* How long an event may take to be acknowledged (librdkafka's
 * message.timeout.ms); a send waits this long plus a small margin. */
#define EDC_PUBLISH_TIMEOUT_MS 5000

struct edc_publisher;

/* A producer for cfg->topic (brokers and -X properties from cfg, which
 * is borrowed for the call). NULL with errstr when it cannot be made. */
struct edc_publisher *edc_publisher_open(const struct config *cfg, char *errstr,
                                         size_t errstr_size);

/* Produces one record (key and value copied; header content-type:
 * application/cloudevents+json) and waits for its delivery report.
 * 0 with *partition and *offset once the broker acknowledged it; -1 with
 * the reason in errstr (librdkafka's text: no secret in it) when it was
 * refused, failed or not acknowledged in time. Any thread. */
int edc_publisher_send(struct edc_publisher *p, const char *key, size_t key_len,
                       const char *value, size_t len, int32_t *partition,
                       int64_t *offset, char *errstr, size_t errstr_size);

/* Flushes what is in flight (a few seconds at most), stops the thread and
 * frees. Only after every sender returned. NULL is ok. */
void edc_publisher_close(struct edc_publisher *p);

#endif

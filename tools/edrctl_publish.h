/* edrctl_publish.h: the producer edrctl's subcommands share (publish,
 * invalidate; tools/edrctl_publish.c). One idempotent producer with
 * linger.ms=0 and message.timeout.ms = EDR_TIMEOUT_MS; events are checked
 * with the worker's own decoder before they are produced, keyed by their
 * connection key and carry content-type: application/cloudevents+json.
 * Messages go to stderr, prefixed "edrctl <who>:". One thread. */
#ifndef EDR_TOOLS_EDRCTL_PUBLISH_H
#define EDR_TOOLS_EDRCTL_PUBLISH_H

#include "schemas/event_encode.h"
#include "worker/config.h"

#include <librdkafka/rdkafka.h>
#include <stddef.h>
#include <stdint.h>

struct edrctl_producer {
    rd_kafka_t *rk;
    const char *who; /* borrowed: "publish", "invalidate" */
    int timeout_ms;
    size_t sent;      /* records handed to librdkafka */
    size_t delivered; /* delivery reports without error */
    size_t failed;    /* delivery reports with an error */
    rd_kafka_resp_err_t first_err;
    int32_t partition; /* of the last delivered record */
    int64_t offset;
};

/* Opens p for cfg's brokers and topic. Returns EDRCTL_OK, EDRCTL_USAGE
 * (an invalid -X property) or EDRCTL_ERROR; on failure p holds nothing. */
int edrctl_producer_open(struct edrctl_producer *p, const struct config *cfg,
                         const char *who);

/* Produces one record (value copied) to cfg's topic. hdrs (may be NULL)
 * is taken over in every case. EDRCTL_OK or EDRCTL_ERROR. */
int edrctl_producer_send(struct edrctl_producer *p, const char *topic,
                         const char *key, size_t key_len, const char *value,
                         size_t len, rd_kafka_headers_t *hdrs);

/* Encodes spec, checks it with event_decode and produces it keyed by its
 * connection key, with hdrs (NULL: none; taken over in every case) plus
 * content-type. EDRCTL_OK, EDRCTL_USAGE (an event the worker would reject;
 * the reason on stderr) or EDRCTL_ERROR. */
int edrctl_producer_send_event(struct edrctl_producer *p, const char *topic,
                               const struct event_spec *spec,
                               rd_kafka_headers_t *hdrs);

/* Waits (up to the timeout plus 1 s) for the delivery report of every
 * record sent. EDRCTL_OK when all were delivered, else EDRCTL_ERROR (the
 * reason on stderr; p->delivered says how many made it). */
int edrctl_producer_flush(struct edrctl_producer *p);

/* Releases p (safe on a zeroed or closed p). */
void edrctl_producer_close(struct edrctl_producer *p);

/* "urn:edrctl:<host name>", the default CloudEvents source. */
void edrctl_default_source(char *out, size_t n);

#endif

/* event_encode.h: building one EDR lifecycle event (schemas/README.md §1) as
 * CloudEvents 1.0 JSON, for edrctl publish and the tests.
 *
 * The encoder only shapes the document; whether it satisfies the contract
 * is event_decode's call (edrctl runs every event it builds through the
 * decoder before producing it). */
#ifndef EDR_SCHEMAS_EVENT_ENCODE_H
#define EDR_SCHEMAS_EVENT_ENCODE_H

#include "schemas/edr_key.h"
#include "schemas/event.h"

#include <stddef.h>

#define EVENT_ID_LEN 36   /* a UUID in text, without NUL */
#define EVENT_TIME_LEN 24 /* 2026-11-27T10:00:00.123Z, without NUL */

/* What goes into one event; every pointer is borrowed for the call. */
struct event_spec {
    enum event_type type;
    const char *id;      /* NULL: a fresh random UUID v4 */
    const char *source;  /* required, e.g. "urn:edrctl:host" */
    const char *time;    /* NULL: now, RFC 3339 in UTC */
    const char *subject; /* NULL: the transfer process id when known */
    struct edr_key key;
    /* negotiated/renewed: data.edr, the text of a JSON object (NULL: the
     * object {"transferProcessId": transfer_id} when transfer_id is set,
     * else no data.edr at all, which the decoder then rejects). */
    const char *edr_json;
    size_t edr_len;
    /* expired: data.transfer_process_id when non-NULL; negotiated and
     * renewed: see edr_json. */
    const char *transfer_id;
};

/* Encodes spec as compact JSON into *out (malloc'd, NUL-terminated,
 * *out_len bytes without the NUL). Returns 0, or -1 with errstr when
 * edr_json is not a JSON object or memory runs out. Any thread. */
int event_encode(const struct event_spec *spec, char **out, size_t *out_len,
                 char *errstr, size_t errstr_size);

/* A fresh random UUID v4 (from /dev/urandom) into out. 0, or -1 when no
 * randomness could be read. */
int event_new_id(char out[EVENT_ID_LEN + 1]);

/* Now as RFC 3339 UTC with milliseconds into out. */
void event_time_now(char out[EVENT_TIME_LEN + 1]);

#endif

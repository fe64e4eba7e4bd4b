/* event.h: decoding of one EDR lifecycle event (schemas/README.md §1), a
 * CloudEvents 1.0 JSON document, with yajl's streaming parser.
 *
 * The decoder enforces every rule of the contract and keeps only what the
 * handlers need; it never reads past the given length. */
#ifndef EDR_SCHEMAS_EVENT_H
#define EDR_SCHEMAS_EVENT_H

#include "schemas/edr_key.h"

#include <stddef.h>

#define EVENT_MAX_BYTES (1024 * 1024)

enum event_type {
    EVENT_NEGOTIATED = 1, /* "edr.negotiated" */
    EVENT_RENEWED,        /* "edr.renewed" */
    EVENT_EXPIRED,        /* "edr.expired" */
};

/* Why an event was rejected; also the metrics' reason class. */
enum event_error {
    EVENT_OK = 0,
    EVENT_ERR_SIZE,   /* larger than EVENT_MAX_BYTES */
    EVENT_ERR_UTF8,   /* not valid UTF-8 */
    EVENT_ERR_JSON,   /* not well-formed JSON */
    EVENT_ERR_SCHEMA, /* JSON, but breaks a rule of the contract */
};

/* A decoded event; every string is owned by it (event_clear frees). */
struct event {
    enum event_type type;
    char *id;
    char *source;
    char *subject; /* NULL when absent */
    char *counter_party_id;
    char *counter_party_address;
    char *query_checksum;
    char *policy_checksum;
    /* negotiated/renewed: data.edr.transferProcessId;
     * expired: data.transfer_process_id, or NULL when absent. */
    char *transfer_id;
    /* negotiated/renewed: data.edr re-serialized compactly without its
     * @type, @context and providerId members; NULL for expired. */
    char *entry_json;
    size_t entry_len;
};

/* Decodes len bytes at buf into *ev (which it initialises). Returns
 * EVENT_OK, or an event_error with a reason naming the failing member in
 * errstr (e.g. "data.policy_checksum: missing"); on error *ev holds
 * nothing to free. Any thread; no global state. */
enum event_error event_decode(struct event *ev, const void *buf, size_t len,
                              char *errstr, size_t errstr_size);

/* Frees what *ev owns and zeroes it. */
void event_clear(struct event *ev);

/* Borrowed view of ev's four key fields. */
struct edr_key event_key(const struct event *ev);

/* "edr.negotiated", ... for a type; NULL for an invalid one. */
const char *event_type_name(enum event_type t);

/* "size", "utf8", "json", "schema". */
const char *event_error_class(enum event_error e);

#endif

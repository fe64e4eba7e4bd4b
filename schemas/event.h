/* event.h: decoding of one EDR lifecycle event (schemas/README.md §1), a
 * CloudEvents 1.0 JSON document, with yajl's streaming parser.
 *
 * The decoder enforces every rule of the contract and hands back facts:
 * the envelope, the four key fields, the transfer id and data.edr as
 * compact JSON with the spans of its top-level members. What an event
 * does to the state (which store op, what the stored entry is) is
 * decided in handlers/. It never reads past the given length.
 *
 * The implementation: schemas/event_decode.c (the streaming decoder),
 * event_rules.c (the member rules), event_edr.c (data.edr's text and the
 * result block), with schemas/arena.c, json_scan.c, dup_members.c and
 * rfc3339.c below them; this header's small helpers are in event.c. */
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

/* Why an event was not decoded. SIZE to SCHEMA: the event is invalid
 * (dead-letter it, move on); also the metrics' reason class. */
enum event_error {
    EVENT_OK = 0,
    EVENT_ERR_SIZE,   /* larger than EVENT_MAX_BYTES */
    EVENT_ERR_UTF8,   /* not valid UTF-8 */
    EVENT_ERR_JSON,   /* not well-formed JSON */
    EVENT_ERR_SCHEMA, /* JSON, but breaks a rule of the contract */
    /* Out of memory while decoding: says nothing about the event. A
     * transient error: retry the same event later, never dead-letter. */
    EVENT_ERR_NOMEM,
};

/* One top-level member of data.edr, as offsets into event.edr_json. */
struct event_member {
    size_t name_off, name_len; /* the name as written there: JSON-escaped,
                                  without its quotes */
    size_t off, len;           /* the whole member, "name":value */
};

/* A decoded event. Every pointer points into one block that the event
 * owns (event_clear frees it). */
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
    /* negotiated/renewed: data.edr re-serialized compactly, every member
     * kept in order and numbers digit for digit; NULL for expired. */
    char *edr_json;
    size_t edr_len;
    /* negotiated/renewed: data.edr's top-level members, in order. */
    struct event_member *edr_members;
    size_t n_edr_members;
    /* negotiated/renewed: edr_len + 1 bytes the event owns for what a
     * handler derives from edr_json (handlers/ writes the stored entry
     * here), so that deciding allocates nothing. NULL for expired. */
    char *scratch;
    void *mem; /* the block; internal */
};

/* Decodes len bytes at buf into *ev (which it initialises). Returns
 * EVENT_OK, or an event_error with a reason naming the failing member in
 * errstr (e.g. "data.policy_checksum: missing"); on error *ev holds
 * nothing to free. EVENT_ERR_NOMEM when memory ran out (errstr says so).
 * Any thread; no global state. */
enum event_error event_decode(struct event *ev, const void *buf, size_t len,
                              char *errstr, size_t errstr_size);

/* Frees what *ev owns and zeroes it. NULL is ok. */
void event_clear(struct event *ev);

/* Borrowed view of ev's four key fields. */
struct edr_key event_key(const struct event *ev);

/* "edr.negotiated", ... for a type; NULL for an invalid one. */
const char *event_type_name(enum event_type t);

/* "size", "utf8", "json", "schema", "nomem". */
const char *event_error_class(enum event_error e);

#endif

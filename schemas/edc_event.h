/* edc_event.h: decoding one EDC callback event (schemas/README.md §6), the
 * body an Eclipse/Tractus-X EDC connector's callback dispatcher POSTs:
 *
 *   {"id": "5e1c...", "at": 1796305164000,
 *    "type": "TransferProcessTerminated",
 *    "payload": {"transferProcessId": "tp-1", "type": "CONSUMER", ...}}
 *
 * Only what the worker acts on is kept: id, type, payload.transferProcessId
 * and payload.type. Every other member (at, assetId, contractId,
 * callbackAddresses, a Started event's dataAddress with its token, ...) is
 * parsed and dropped, never copied. Which events end an EDR is decided in
 * handlers/edc_expiry.h; the HTTP side is worker/edc_callback.c. */
#ifndef EDR_SCHEMAS_EDC_EVENT_H
#define EDR_SCHEMAS_EDC_EVENT_H

#include <stddef.h>

/* The largest body accepted (§6: over 1 MiB is a 400). */
#define EDC_EVENT_MAX_BYTES (1024 * 1024)

/* payload.type: which side of the transfer the connector is. */
enum edc_party {
    EDC_PARTY_OTHER = 0, /* absent, not a string, or another value */
    EDC_PARTY_CONSUMER,  /* "CONSUMER" */
    EDC_PARTY_PROVIDER,  /* "PROVIDER" */
};

enum edc_event_status {
    EDC_EVENT_OK = 0,
    EDC_EVENT_INVALID = -1, /* not such an event: errstr says why (a 400) */
    EDC_EVENT_NOMEM = -2,   /* out of memory: says nothing about the body */
};

/* A decoded callback; the strings are malloc'd, NUL-terminated and
 * contain no NUL (\u0000 is rejected). */
struct edc_event {
    char *id;                  /* non-empty */
    char *type;                /* e.g. "TransferProcessTerminated" */
    char *transfer_process_id; /* payload.transferProcessId, non-empty */
    enum edc_party party;      /* payload.type */
};

/* Decodes len bytes at buf into *ev (which it initialises). Rules, in
 * order: at most EDC_EVENT_MAX_BYTES, not empty, UTF-8 without \u0000 or
 * unpaired surrogate escapes, well-formed JSON, a top-level object, a
 * non-empty string id, a string type, an object payload with a non-empty
 * string transferProcessId; none of these members twice. Returns an
 * edc_event_status; on error *ev holds nothing and errstr a reason naming
 * the member, which quotes nothing of the body (it goes back to the
 * client and into logs). Any thread. */
int edc_event_decode(struct edc_event *ev, const void *buf, size_t len,
                     char *errstr, size_t errstr_size);

/* Frees what ev holds and zeroes it. NULL is ok. */
void edc_event_clear(struct edc_event *ev);

#endif

/* edc_callback.h: POST /callbacks/edc, the EDC callback route
 * (schemas/README.md §6), apart from HTTP itself.
 *
 * worker/http.c serves the route when the worker has a struct
 * edc_callback (EDR_CALLBACK_AUTH_CODE is set): it checks the auth header
 * with edc_callback_authorized, collects the body into a struct edc_body
 * (never more than EDC_EVENT_MAX_BYTES in memory) and lets
 * edc_callback_handle answer it. Handling decodes the body
 * (schemas/edc_event.h), asks handlers/edc_expiry.h whether it ends an
 * EDR, looks the connection up by transfer id in the store (a read, safe
 * next to ingest like the lookup responder's) and publishes edr.expired
 * through its own producer (worker/edc_publish.h), answering once the
 * broker acknowledged it.
 *
 * In every store mode the local store suffices: memory and file workers
 * each hold the whole state (§4), postgres workers share one table.
 *
 * The auth code is a secret: it is never logged, echoed in a reply or
 * put into an error text. Threads: every function may be called from any
 * thread (libmicrohttpd runs one per connection). */
#ifndef EDR_WORKER_EDC_CALLBACK_H
#define EDR_WORKER_EDC_CALLBACK_H

#include "schemas/edc_event.h"
#include "stores/store.h"
#include "worker/config.h"

#include <stddef.h>

struct edc_callback;

/* One answer: an HTTP status and its JSON body ("" for 204). */
struct edc_reply {
    unsigned int status;
    char body[1536]; /* room for an escaped reason */
};

/* The route's state for cfg (callback_auth_key, callback_auth_code,
 * which must be set, worker_id, topic, brokers; copied). NULL with
 * errstr (never the code) when its producer cannot be made. */
struct edc_callback *edc_callback_open(const struct config *cfg, char *errstr,
                                       size_t errstr_size);

/* Gives the route the store once it is open (st borrowed: it must
 * outlive the HTTP server). Until then callbacks that need it get 503,
 * which EDC retries. */
void edc_callback_set_store(struct edc_callback *cb, struct store *st);

/* The header name that carries the code (EDR_CALLBACK_AUTH_KEY). */
const char *edc_callback_auth_key(const struct edc_callback *cb);

/* 1 when value[0..len) (NULL: the header is absent) is the auth code,
 * compared in constant time (base/ct_equal.h). */
int edc_callback_authorized(const struct edc_callback *cb, const char *value,
                            size_t len);

/* Fills *out with a rejection decided before the body was read (401 for
 * the header, 400 for a body over the limit) and counts it. */
void edc_callback_refuse(struct edc_reply *out, unsigned int status);

/* Answers one whole body (len bytes at body) of an authorized request:
 * 400 not such an event, 204 nothing to do, 200 once edr.expired was
 * acknowledged or when no connection holds the transfer id, 503 when it
 * cannot be done now (store not open or failing, state incomplete, the
 * broker did not acknowledge in EDC_PUBLISH_TIMEOUT_MS). Counted in
 * edr_callbacks_total. Blocks up to a few seconds. */
void edc_callback_handle(struct edc_callback *cb, const char *body, size_t len,
                         struct edc_reply *out);

/* Frees; only after the HTTP server stopped. NULL is ok. */
void edc_callback_close(struct edc_callback *cb);

/* A request body collected chunk by chunk with a ceiling. Zeroed is
 * empty. */
struct edc_body {
    char *data;
    size_t len, cap;
    size_t seen;   /* every byte offered, kept or not */
    int too_large; /* more than EDC_EVENT_MAX_BYTES: data freed */
};

/* Appends n bytes at s. Past EDC_EVENT_MAX_BYTES the body is dropped and
 * too_large set; later bytes are only counted. 0; -1 when out of memory;
 * -2 when the client sent more than EDC_BODY_DISCARD_MAX in all (close
 * the connection instead of reading on). */
#define EDC_BODY_DISCARD_MAX (8 * (size_t)EDC_EVENT_MAX_BYTES)
int edc_body_append(struct edc_body *b, const char *s, size_t n);
void edc_body_free(struct edc_body *b);

#endif

/* edc_callback.c: see edc_callback.h. The order of the checks follows
 * §6: the header (401) before the body is read, then the body (400),
 * then whether the event matters (204), then the store (200 or 503). */
#include "worker/edc_callback.h"

#include "base/ct_equal.h"
#include "handlers/edc_expiry.h"
#include "schemas/edr_key.h"
#include "schemas/event.h"
#include "schemas/event_encode.h"
#include "schemas/text.h"
#include "worker/edc_publish.h"
#include "worker/log.h"
#include "worker/metrics.h"
#include "worker/rpc_gaps.h"

#include <inttypes.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* the longest part of a client-chosen string a log line shows */
#define LOG_TEXT_MAX 64
/* the longest reason a 400 or 503 body carries */
#define REASON_MAX 200

struct edc_callback {
    char *auth_key;
    char *auth_code; /* the secret */
    size_t auth_code_len;
    char *source; /* urn:edr-worker:<worker id> */
    struct edc_publisher *pub;
    _Atomic(struct store *) st;
};

struct edc_callback *edc_callback_open(const struct config *cfg, char *errstr,
                                       size_t errstr_size)
{
    struct edc_callback *cb = calloc(1, sizeof(*cb));
    size_t n = strlen(cfg->worker_id) + sizeof("urn:edr-worker:");
    if (!cb || !(cb->auth_key = strdup(cfg->callback_auth_key)) ||
        !(cb->auth_code = strdup(cfg->callback_auth_code)) ||
        !(cb->source = malloc(n))) {
        snprintf(errstr, errstr_size, "callbacks: out of memory");
        goto fail;
    }
    cb->auth_code_len = strlen(cb->auth_code);
    snprintf(cb->source, n, "urn:edr-worker:%s", cfg->worker_id);
    atomic_init(&cb->st, NULL);
    if (!(cb->pub = edc_publisher_open(cfg, errstr, errstr_size)))
        goto fail;
    return cb;
fail:
    edc_callback_close(cb);
    return NULL;
}

void edc_callback_set_store(struct edc_callback *cb, struct store *st)
{
    atomic_store(&cb->st, st);
}

const char *edc_callback_auth_key(const struct edc_callback *cb)
{
    return cb->auth_key;
}

int edc_callback_authorized(const struct edc_callback *cb, const char *value,
                            size_t len)
{
    /* an absent header is compared like an empty one: same time */
    return edr_ct_equal(cb->auth_code, cb->auth_code_len, value ? value : "",
                        value ? len : 0) &&
           value != NULL;
}

/* The outcome label for metrics and the reply. */
static void answer(struct edc_reply *out, unsigned int status,
                   const char *outcome, const char *body)
{
    out->status = status;
    snprintf(out->body, sizeof(out->body), "%s", body);
    metrics_callback(outcome);
}

/* {"error": reason}, the reason escaped and cut at REASON_MAX bytes. */
static void answer_error(struct edc_reply *out, unsigned int status,
                         const char *outcome, const char *reason)
{
    char esc[TEXT_JSON_ESCAPE_MAX(REASON_MAX) + 1];
    size_t n = strlen(reason);
    n = text_json_escape(esc, reason, n > REASON_MAX ? REASON_MAX : n,
                         TEXT_HIGH_UTF8);
    esc[n] = '\0';
    out->status = status;
    snprintf(out->body, sizeof(out->body), "{\"error\":\"%s\"}\n", esc);
    metrics_callback(outcome);
}

void edc_callback_refuse(struct edc_reply *out, unsigned int status)
{
    if (status == 401)
        answer_error(out, 401, "unauthorized",
                     "missing or wrong callback auth header");
    else
        answer_error(out, 400, "bad_request",
                     "body: larger than 1048576 bytes");
}

/* A client-chosen string made safe for one log line (escaped, cut). */
static void log_text(char out[TEXT_JSON_ESCAPE_MAX(LOG_TEXT_MAX) + 1],
                     const char *s)
{
    size_t n = strlen(s);
    n = text_json_escape(out, s, n > LOG_TEXT_MAX ? LOG_TEXT_MAX : n,
                         TEXT_HIGH_UTF8);
    out[n] = '\0';
}

/* Why the state cannot answer now (§4), or NULL. */
static const char *state_unavailable(void)
{
    char gaps[2];
    if (metrics_get_restoring())
        return "restoring the state from the changelog; retry later";
    if (rpc_gaps_describe(gaps, sizeof(gaps)) > 0)
        return "state incomplete (a gap in the event log); retry later";
    return NULL;
}

/* Encodes, checks with the worker's own decoder (never publish what the
 * workers would dead-letter) and publishes the expiry of rec. */
static void publish_expiry(struct edc_callback *cb, const struct edc_event *ev,
                           const struct store_record *rec,
                           struct edc_reply *out)
{
    struct event_spec spec;
    struct event check;
    char *json = NULL, errstr[256], key[EDR_CONNECTION_KEY_LEN + 1];
    char id[TEXT_JSON_ESCAPE_MAX(LOG_TEXT_MAX) + 1];
    size_t len = 0;
    int32_t partition = -1;
    int64_t offset = -1;

    edc_expiry_event(ev, rec, cb->source, &spec);
    edr_connection_key(&spec.key, key);
    log_text(id, ev->id);
    if (event_encode(&spec, &json, &len, errstr, sizeof(errstr)) != 0) {
        log_warn("callback \"%s\": cannot encode edr.expired: %s", id, errstr);
        answer_error(out, 503, "unavailable", "out of memory; retry later");
        goto out;
    }
    if (event_decode(&check, json, len, errstr, sizeof(errstr)) != EVENT_OK) {
        /* the callback's id is the only part the client chose */
        log_warn("callback \"%s\": edr.expired would be invalid: %s", id,
                 errstr);
        answer_error(out, 400, "bad_request",
                     "the edr.expired event of this callback would be "
                     "invalid (see the worker log)");
        goto out;
    }
    event_clear(&check);
    if (edc_publisher_send(cb->pub, key, EDR_CONNECTION_KEY_LEN, json, len,
                           &partition, &offset, errstr, sizeof(errstr)) != 0) {
        log_warn("callback \"%s\": edr.expired for connection %s not "
                 "published: %s",
                 id, key, errstr);
        answer_error(out, 503, "unavailable",
                     "edr.expired not published; retry later");
        goto out;
    }
    log_info("callback \"%s\": edr.expired published for connection %s "
             "(partition %" PRId32 ", offset %" PRId64 ")",
             id, key, partition, offset);
    out->status = 200;
    snprintf(out->body, sizeof(out->body),
             "{\"status\":\"expired\",\"partition\":%" PRId32
             ",\"offset\":%" PRId64 "}\n",
             partition, offset);
    metrics_callback("expired");
out:
    free(json);
}

void edc_callback_handle(struct edc_callback *cb, const char *body, size_t len,
                         struct edc_reply *out)
{
    struct edc_event ev;
    struct store_record rec;
    struct store_err err;
    char errstr[256];
    const char *why;
    memset(&rec, 0, sizeof(rec));
    memset(&err, 0, sizeof(err));

    int rc = edc_event_decode(&ev, body, len, errstr, sizeof(errstr));
    if (rc == EDC_EVENT_NOMEM) {
        answer_error(out, 503, "unavailable", "out of memory; retry later");
        return;
    }
    if (rc != EDC_EVENT_OK) {
        answer_error(out, 400, "bad_request", errstr);
        return;
    }
    if (!edc_expiry_applies(&ev)) {
        answer(out, 204, "ignored", "");
        goto out;
    }
    struct store *st = atomic_load(&cb->st);
    if (!st || !st->ops->get_by_transfer_id) {
        answer_error(out, 503, "unavailable",
                     "the store is not open yet; retry later");
        goto out;
    }
    if ((why = state_unavailable())) {
        answer_error(out, 503, "unavailable", why);
        goto out;
    }
    rc = st->ops->get_by_transfer_id(st, ev.transfer_process_id, &rec, &err);
    if (rc == STORE_NOT_FOUND) {
        answer(out, 200, "not_found", "{\"status\":\"not_found\"}\n");
    } else if (rc < 0) {
        char id[TEXT_JSON_ESCAPE_MAX(LOG_TEXT_MAX) + 1];
        log_text(id, ev.id);
        log_warn("callback \"%s\": store: %s", id, err.msg);
        answer_error(out, 503, "unavailable", "store unavailable; retry later");
    } else {
        publish_expiry(cb, &ev, &rec, out);
    }
out:
    store_record_clear(&rec);
    edc_event_clear(&ev);
}

void edc_callback_close(struct edc_callback *cb)
{
    if (!cb)
        return;
    edc_publisher_close(cb->pub);
    if (cb->auth_code) /* a secret: wiped before it goes back */
        memset(cb->auth_code, 0, cb->auth_code_len);
    free(cb->auth_code);
    free(cb->auth_key);
    free(cb->source);
    free(cb);
}

int edc_body_append(struct edc_body *b, const char *s, size_t n)
{
    b->seen += n;
    if (b->seen > EDC_BODY_DISCARD_MAX)
        return -2;
    if (b->too_large)
        return 0;
    if (b->seen > EDC_EVENT_MAX_BYTES) {
        edc_body_free(b);
        b->too_large = 1;
        return 0;
    }
    if (b->len + n > b->cap) {
        size_t cap = b->cap ? b->cap : 4096;
        while (cap < b->len + n)
            cap *= 2;
        char *d = realloc(b->data, cap);
        if (!d)
            return -1;
        b->data = d;
        b->cap = cap;
    }
    memcpy(b->data + b->len, s, n);
    b->len += n;
    return 0;
}

void edc_body_free(struct edc_body *b)
{
    free(b->data);
    b->data = NULL;
    b->len = b->cap = 0;
}

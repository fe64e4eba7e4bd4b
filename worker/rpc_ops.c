/* rpc_ops.c: answering one lookup request (schemas/README.md §2).
 *
 * Decodes the popped bytes (schemas/request.c), applies the reply_to rule
 * (only <prefix>:reply:* lists are ever answered), runs the op against the
 * store and writes the reply into the thread's buffer for rpc_reply.c.
 *
 * Error replies carry a code and a fixed reason: a store's own message
 * (libpq names hosts, ports, users; the file store names paths) goes to
 * the log with the request id, never to the client. */
#include "schemas/request.h"
#include "worker/log.h"
#include "worker/metrics.h"
#include "worker/rpc_internal.h"

#include "base/clock.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* A client-chosen string made safe for one log line: printable ASCII,
 * truncated. */
static void log_safe(char *out, size_t cap, const char *s)
{
    size_t o = 0;
    for (; s && *s && o + 1 < cap; s++)
        out[o++] = (*s >= 0x20 && *s < 0x7f) ? *s : '?';
    out[o] = '\0';
}

/* Writes the error reply for a failed store call and logs the detail. */
static const char *store_error_reply(struct rpc_thread *t,
                                     const struct request *req, int rc,
                                     const struct store_err *err)
{
    struct rpc_server *srv = t->srv;
    const char *code, *reason;
    uint64_t skipped;
    char id[80];

    if (rc == STORE_TRANSIENT) {
        code = REPLY_CODE_UNAVAILABLE;
        reason = "store unavailable; retry later";
    } else if (rc == STORE_INVALID) {
        code = REPLY_CODE_BAD_REQUEST;
        reason = "the store rejected the request's arguments";
    } else {
        code = REPLY_CODE_INTERNAL;
        reason = "internal store error; see the worker log";
    }
    reply_error(&t->out, req->id, code, reason);
    if (rpc_log_allowed(srv, &srv->log_store, &skipped)) {
        log_safe(id, sizeof(id), req->id);
        log_warn("rpc: %s request \"%s\" answered %s: store: %s; %llu more "
                 "store errors since the last such line",
                 request_op_name(req->op), id, code, err->msg,
                 (unsigned long long)skipped);
    }
    return "error";
}

static const char *op_get(struct rpc_thread *t, const struct request *req)
{
    struct store *st = t->srv->st;
    struct store_record rec;
    struct store_err err;
    struct edr_key k = request_key(req);
    const char *status;
    memset(&rec, 0, sizeof(rec));
    memset(&err, 0, sizeof(err));

    int rc = st->ops->get(st, &k, &rec, &err);
    if (rc == STORE_NOT_FOUND) {
        reply_begin(&t->out, req->id, "not_found");
        reply_raw(&t->out, "{}", 2);
        status = "not_found";
    } else if (rc < 0) {
        status = store_error_reply(t, req, rc, &err);
        goto out;
    } else if (!rec.entry_json ||
               !reply_is_json_object(rec.entry_json, rec.entry_len)) {
        /* never splice text that would make the reply invalid JSON */
        reply_error(&t->out, req->id, REPLY_CODE_INTERNAL,
                    "store: stored entry is not a JSON object");
        status = "error";
        goto out;
    } else {
        reply_begin(&t->out, req->id, "ok");
        reply_raw(&t->out, rec.entry_json, rec.entry_len);
        status = "ok";
    }
    reply_end(&t->out);
out:
    store_record_clear(&rec);
    return status;
}

static const char *op_get_transfer_id(struct rpc_thread *t,
                                      const struct request *req)
{
    struct store *st = t->srv->st;
    struct store_err err;
    struct edr_key k = request_key(req);
    char *tid = NULL;
    memset(&err, 0, sizeof(err));

    int rc = st->ops->get_transfer_id(st, &k, &tid, &err);
    if (rc < 0)
        return store_error_reply(t, req, rc, &err);
    if (rc == STORE_NOT_FOUND || !tid) {
        free(tid);
        reply_begin(&t->out, req->id, "not_found");
        reply_raw(&t->out, "null", 4);
        reply_end(&t->out);
        return "not_found";
    }
    reply_begin(&t->out, req->id, "ok");
    reply_cstr(&t->out, tid);
    reply_end(&t->out);
    free(tid);
    return "ok";
}

static const char *op_count(struct rpc_thread *t, const struct request *req)
{
    struct store *st = t->srv->st;
    struct store_err err;
    uint64_t n = 0;
    memset(&err, 0, sizeof(err));

    int rc = st->ops->count(st, STORE_FILTER_PARTY(req->substring), &n, &err);
    if (rc < 0)
        return store_error_reply(t, req, rc, &err);
    reply_begin(&t->out, req->id, "ok");
    reply_u64(&t->out, n);
    reply_end(&t->out);
    return "ok";
}

static void write_member(struct reply_buf *b, int first, const char *name,
                         const char *value)
{
    reply_raw(b, first ? "{" : ",", 1);
    reply_cstr(b, name);
    reply_raw(b, ":", 1);
    reply_cstr(b, value);
}

static const char *op_list(struct rpc_thread *t, const struct request *req)
{
    struct store *st = t->srv->st;
    struct store_err err;
    struct store_list l;
    memset(&err, 0, sizeof(err));
    memset(&l, 0, sizeof(l));

    int rc = st->ops->list(st, STORE_FILTER_PARTY(req->substring), req->cursor,
                           req->limit, &l, &err);
    if (rc < 0)
        return store_error_reply(t, req, rc, &err);
    reply_begin(&t->out, req->id, "ok");
    reply_raw(&t->out, "{\"items\":[", 10);
    for (size_t i = 0; i < l.n_items; i++) {
        const struct store_record *r = &l.items[i];
        if (i)
            reply_raw(&t->out, ",", 1);
        write_member(&t->out, 1, "counter_party_id", r->counter_party_id);
        write_member(&t->out, 0, "counter_party_address",
                     r->counter_party_address);
        write_member(&t->out, 0, "query_checksum", r->query_checksum);
        write_member(&t->out, 0, "policy_checksum", r->policy_checksum);
        write_member(&t->out, 0, "transferProcessId", r->transfer_id);
        reply_raw(&t->out, "}", 1);
    }
    reply_raw(&t->out, "],\"next_cursor\":", 16);
    reply_cstr(&t->out, l.next_cursor);
    reply_raw(&t->out, "}", 1);
    reply_end(&t->out);
    store_list_clear(&l);
    return "ok";
}

/* Answers from the entries gauge the ingest side keeps
 * (metrics_store_entries): a ping never touches the store, so it stays
 * cheap and answers even while the store is slow (§2, v2). */
static const char *op_ping(struct rpc_thread *t, const struct request *req)
{
    reply_begin(&t->out, req->id, "ok");
    write_member(&t->out, 1, "worker", t->srv->worker_id);
    write_member(&t->out, 0, "store", t->srv->st->ops->name);
    reply_raw(&t->out, ",\"entries\":", 11);
    reply_u64(&t->out, metrics_get_store_entries());
    reply_raw(&t->out, "}", 1);
    reply_end(&t->out);
    return "ok";
}

/* A request whose reply_to we must not write to: logged (rate-limited),
 * counted, never answered anywhere. */
static void drop_refused(struct rpc_thread *t, const struct request *req)
{
    struct rpc_server *srv = t->srv;
    uint64_t skipped;
    char id[80];
    atomic_fetch_add(&srv->n_refused, 1);
    metrics_lookup_dropped("reply_to_refused");
    if (rpc_log_allowed(srv, &srv->log_refused, &skipped)) {
        log_safe(id, sizeof(id), req->id);
        log_warn("rpc: dropped request \"%s\": its reply_to does not begin "
                 "with %s:reply: and is never written; %llu more since the "
                 "last such line",
                 id, srv->prefix, (unsigned long long)skipped);
    }
}

static void drop_unreadable(struct rpc_thread *t, enum request_error e,
                            const char *why)
{
    struct rpc_server *srv = t->srv;
    uint64_t skipped;
    atomic_fetch_add(&srv->n_unanswerable, 1);
    metrics_lookup_dropped("unreadable");
    if (rpc_log_allowed(srv, &srv->log_unreadable, &skipped))
        log_warn("rpc: dropped a malformed request without a readable "
                 "reply_to (%s: %s); %llu more since the last such line",
                 request_error_class(e), why, (unsigned long long)skipped);
}

void rpc_handle_request(struct rpc_thread *t, const char *buf, size_t len)
{
    struct rpc_server *srv = t->srv;
    struct request req;
    char why[512];
    double t0 = edr_clock_s();
    const char *status = "error";

    enum request_error e = request_decode(&req, buf, len, why, sizeof(why));
    if (req.reply_to && !request_reply_to_allowed(req.reply_to, srv->prefix)) {
        /* also covers reply_to = the request queue, which an expiry
         * would destroy */
        drop_refused(t, &req);
        metrics_lookup("invalid", "error", edr_clock_s() - t0);
        goto out;
    }
    if (e != REQUEST_OK) {
        if (req.reply_to) {
            reply_error(&t->out, req.id, REPLY_CODE_BAD_REQUEST, why);
            log_debug("rpc: rejected a request (%s: %s)",
                      request_error_class(e), why);
            if (!t->out.oom)
                rpc_reply_send(t, req.reply_to, 0, 0);
        } else {
            drop_unreadable(t, e, why);
        }
        metrics_lookup("invalid", "error", edr_clock_s() - t0);
        goto out;
    }
    if (req.has_deadline && edr_epoch_ms() > req.deadline_ms) {
        /* the client has given up: an answer would only litter Redis */
        atomic_fetch_add(&srv->n_expired, 1);
        metrics_lookup_dropped("expired");
        log_debug("rpc: dropped %s request past its deadline by %lld ms",
                  request_op_name(req.op),
                  (long long)(edr_epoch_ms() - req.deadline_ms));
        goto out;
    }
    if (req.op != REQUEST_PING && req.op != REQUEST_OP_NONE &&
        metrics_get_restoring()) {
        /* the state is incomplete until the changelog restore ends */
        reply_error(&t->out, req.id, REPLY_CODE_UNAVAILABLE,
                    "restoring the state from the changelog; retry later");
        status = "error";
        goto answer;
    }
    switch (req.op) {
    case REQUEST_GET_CONNECTION:
        status = op_get(t, &req);
        break;
    case REQUEST_GET_TRANSFER_ID:
        status = op_get_transfer_id(t, &req);
        break;
    case REQUEST_COUNT:
        status = op_count(t, &req);
        break;
    case REQUEST_LIST:
        status = op_list(t, &req);
        break;
    case REQUEST_PING:
        status = op_ping(t, &req);
        break;
    case REQUEST_OP_NONE:
        reply_error(&t->out, req.id, REPLY_CODE_BAD_REQUEST, "op: missing");
        break;
    }
answer:
    if (t->out.oom) {
        /* a huge list page and no memory: answer small rather than not */
        reply_buf_free(&t->out);
        reply_error(&t->out, req.id, REPLY_CODE_INTERNAL,
                    "worker: out of memory");
        status = "error";
    }
    if (!t->out.oom)
        rpc_reply_send(t, req.reply_to, req.has_deadline, req.deadline_ms);
    atomic_fetch_add(&srv->n_answered, 1);
    metrics_lookup(request_op_name(req.op), status, edr_clock_s() - t0);
out:
    request_clear(&req);
    /* don't let one huge reply pin memory for the thread's lifetime
     * (unless it is the pending one, still to be sent) */
    if (t->out.cap > 1024 * 1024 && !t->pending_to)
        reply_buf_free(&t->out);
}

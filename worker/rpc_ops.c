/* rpc_ops.c: answering one lookup request (schemas/README.md §2).
 *
 * Decodes the popped bytes (schemas/request.c), applies the reply_to rule
 * (only <prefix>:reply:* lists are ever answered), runs the op against the
 * store and writes the reply into the thread's buffer for rpc_reply.c.
 * A request that must wait (min_positions not reached yet, or nothing
 * found and wait_ms > 0) goes to rpc_wait.c after one attempt here.
 *
 * Error replies carry a code and a fixed reason: a store's own message
 * (libpq names hosts, ports, users; the file store names paths) goes to
 * the log with the request id, never to the client. */
#include "schemas/request.h"
#include "worker/log.h"
#include "worker/metrics.h"
#include "worker/positions.h"
#include "worker/rpc_gaps.h"
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

/* The reply to a get_connection whose store read returned rc and rec
 * (cleared here); NULL when nothing was found and the lookup must wait. */
static const char *get_reply(struct rpc_thread *t, const struct request *req,
                             int final, int rc, struct store_record *recp,
                             const struct store_err *errp)
{
    struct store_record rec = *recp;
    struct store_err err = *errp;
    const char *status;
    *recp = (struct store_record){0};

    if (rc == STORE_NOT_FOUND && !final) {
        status = NULL;
        goto out;
    } else if (rc == STORE_NOT_FOUND) {
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

static const char *op_get(struct rpc_thread *t, const struct request *req,
                          int final)
{
    struct store *st = t->srv->st;
    struct store_record rec;
    struct store_err err;
    struct edr_key k = request_key(req);
    memset(&rec, 0, sizeof(rec));
    memset(&err, 0, sizeof(err));

    int rc = st->ops->get(st, &k, &rec, &err);
    return get_reply(t, req, final, rc, &rec, &err);
}

/* get_connection with min_positions on a store that checks the positions
 * and reads the entry together (store_ops.get_after: one round trip to
 * PostgreSQL instead of two). As rpc_answer_once. */
static const char *op_get_after(struct rpc_thread *t, const struct request *req,
                                int final, int found_final, int *covered)
{
    struct store *st = t->srv->st;
    struct store_record rec;
    struct store_err err;
    struct edr_key k = request_key(req);
    int reached = 0;
    memset(&rec, 0, sizeof(rec));
    memset(&err, 0, sizeof(err));

    struct store_position *need = malloc(req->n_positions * sizeof(*need));
    if (!need) {
        reply_error(&t->out, req->id, REPLY_CODE_INTERNAL,
                    "worker: out of memory");
        return "error";
    }
    for (size_t i = 0; i < req->n_positions; i++)
        need[i] = (struct store_position){req->positions[i].partition,
                                          req->positions[i].offset};
    int rc = st->ops->get_after(st, t->srv->cfg->topic, need, req->n_positions,
                                &k, &rec, &reached, &err);
    free(need);
    if (rc < 0)
        return store_error_reply(t, req, rc, &err);
    if (!reached) {
        store_record_clear(&rec);
        if (!final)
            return NULL;
        reply_error(&t->out, req->id, REPLY_CODE_TIMEOUT,
                    "min_positions: not reached within the wait");
        return "error";
    }
    *covered = 1;
    return get_reply(t, req, found_final, rc, &rec, &err);
}

/* 1 when this worker's own ingest applied every min_positions event
 * (positions_reached's first look, without the store). */
static int positions_local(const struct request *req)
{
    for (size_t i = 0; i < req->n_positions; i++)
        if (positions_next(req->positions[i].partition) <=
            req->positions[i].offset)
            return 0;
    return 1;
}

static const char *op_get_transfer_id(struct rpc_thread *t,
                                      const struct request *req, int final)
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
        if (!final)
            return NULL;
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

/* The count/list filters of req (borrowed from it). */
static struct store_filter request_filter(const struct request *req)
{
    struct store_filter f = {.party_substring = req->substring,
                             .transfer_id = req->transfer_process_id,
                             .asset_id = req->asset_id,
                             .asset_id_prefix = req->asset_id_prefix};
    return f;
}

static const char *op_count(struct rpc_thread *t, const struct request *req)
{
    struct store *st = t->srv->st;
    struct store_err err;
    uint64_t n = 0;
    memset(&err, 0, sizeof(err));

    struct store_filter f = request_filter(req);
    int rc = st->ops->count(st, &f, &n, &err);
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

    struct store_filter f = request_filter(req);
    int rc = st->ops->list(st, &f, req->cursor, req->limit, &l, &err);
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
        if (r->asset_id)
            write_member(&t->out, 0, "assetId", r->asset_id);
        reply_raw(&t->out, "}", 1);
    }
    reply_raw(&t->out, "],\"next_cursor\":", 16);
    reply_cstr(&t->out, l.next_cursor);
    reply_raw(&t->out, "}", 1);
    reply_end(&t->out);
    store_list_clear(&l);
    return "ok";
}

static const char *op_get_by_transfer_id(struct rpc_thread *t,
                                         const struct request *req, int final)
{
    struct store *st = t->srv->st;
    struct store_record rec;
    struct store_err err;
    const char *status;
    memset(&rec, 0, sizeof(rec));
    memset(&err, 0, sizeof(err));

    if (!st->ops->get_by_transfer_id) {
        reply_error(&t->out, req->id, REPLY_CODE_INTERNAL,
                    "get_by_transfer_id: not supported by this store");
        return "error";
    }
    int rc =
        st->ops->get_by_transfer_id(st, req->transfer_process_id, &rec, &err);
    if (rc == STORE_NOT_FOUND && !final) {
        status = NULL;
    } else if (rc == STORE_NOT_FOUND) {
        reply_begin(&t->out, req->id, "not_found");
        reply_raw(&t->out, "{}", 2);
        reply_end(&t->out);
        status = "not_found";
    } else if (rc < 0) {
        status = store_error_reply(t, req, rc, &err);
    } else if (!rec.entry_json ||
               !reply_is_json_object(rec.entry_json, rec.entry_len)) {
        reply_error(&t->out, req->id, REPLY_CODE_INTERNAL,
                    "store: stored entry is not a JSON object");
        status = "error";
    } else {
        reply_begin(&t->out, req->id, "ok");
        write_member(&t->out, 1, "counter_party_id", rec.counter_party_id);
        write_member(&t->out, 0, "counter_party_address",
                     rec.counter_party_address);
        write_member(&t->out, 0, "query_checksum", rec.query_checksum);
        write_member(&t->out, 0, "policy_checksum", rec.policy_checksum);
        reply_raw(&t->out, ",\"edr\":", 7);
        reply_raw(&t->out, rec.entry_json, rec.entry_len);
        reply_raw(&t->out, "}", 1);
        reply_end(&t->out);
        status = "ok";
    }
    store_record_clear(&rec);
    return status;
}

/* 1 when the state answered from includes every min_positions event, 0
 * when not yet, a negative store status (err filled) when the store's
 * offsets cannot be read. The worker's own applied positions (ingest,
 * worker/positions.c) are looked at first, for every store: ingest records
 * a position only after its batch was applied (for PostgreSQL: committed),
 * so any read begun afterwards sees it, whichever connection it uses, and
 * a state never moves back past an applied offset (the offsets fence).
 * The store's offsets table covers the rest: what another worker applied
 * to a shared store, and what a file store held before this process
 * started. */
static int positions_reached(struct rpc_thread *t, const struct request *req,
                             struct store_err *err)
{
    struct store *st = t->srv->st;
    struct store_offset *offs = NULL;
    size_t n_offs = 0;
    int loaded = 0, reached = 1;
    for (size_t i = 0; i < req->n_positions && reached; i++) {
        const struct request_position *p = &req->positions[i];
        if (positions_next(p->partition) > p->offset)
            continue;
        if (!loaded) {
            int rc = st->ops->load_offsets(st, t->srv->cfg->topic, &offs,
                                           &n_offs, err);
            if (rc < 0)
                return rc;
            loaded = 1;
        }
        reached = 0;
        for (size_t j = 0; j < n_offs; j++)
            if (offs[j].partition == p->partition &&
                offs[j].next_offset > p->offset)
                reached = 1;
    }
    free(offs);
    return reached;
}

static int is_get_op(enum request_op op)
{
    return op == REQUEST_GET_CONNECTION || op == REQUEST_GET_TRANSFER_ID ||
           op == REQUEST_GET_BY_TRANSFER_ID;
}

int64_t rpc_wait_until(const struct request *req, int64_t now_ms)
{
    int64_t wait = req->has_wait        ? req->wait_ms
                   : req->has_positions ? REQUEST_POSITIONS_WAIT_DEFAULT_MS
                                        : 0;
    if (req->has_deadline) {
        int64_t left = req->deadline_ms - edr_epoch_ms();
        if (left < wait)
            wait = left > 0 ? left : 0;
    }
    return now_ms + wait;
}

/* Answers from the entries gauge the ingest side keeps
 * (metrics_store_entries): a ping never touches the store, so it stays
 * cheap and answers even while the store is slow (§2, v2). */
static const char *op_ping(struct rpc_thread *t, const struct request *req);

const char *rpc_answer_once(struct rpc_thread *t, const struct request *req,
                            int final, int *covered)
{
    /* State gaps (§4) refuse before anything is read: on the first
     * attempt and on every retry of a waiting lookup. */
    const char *refused;
    if (rpc_gaps_refuse(&t->out, req, &refused))
        return refused;
    if (req->op != REQUEST_PING && req->op != REQUEST_OP_NONE &&
        metrics_get_restoring()) {
        /* the state is incomplete until the changelog restore ends (§4) */
        reply_error(&t->out, req->id, REPLY_CODE_UNAVAILABLE,
                    "restoring the state from the changelog; retry later");
        return "error";
    }
    /* a get that finds nothing is final only once its wait_ms is over */
    int found_final =
        final || !req->has_wait || req->wait_ms == 0 || !is_get_op(req->op);
    if (req->op != REQUEST_PING && req->n_positions > 0 && !*covered &&
        positions_local(req))
        *covered = 1;
    if (req->op == REQUEST_GET_CONNECTION && req->n_positions > 0 &&
        !*covered && t->srv->st->ops->get_after)
        return op_get_after(t, req, final, found_final, covered);
    if (req->op != REQUEST_PING && req->n_positions > 0 && !*covered) {
        struct store_err err;
        memset(&err, 0, sizeof(err));
        int r = positions_reached(t, req, &err);
        if (r < 0)
            return store_error_reply(t, req, r, &err);
        if (r == 0 && !final)
            return NULL;
        if (r == 0) {
            reply_error(&t->out, req->id, REPLY_CODE_TIMEOUT,
                        "min_positions: not reached within the wait");
            return "error";
        }
        *covered = 1;
    }
    switch (req->op) {
    case REQUEST_GET_CONNECTION:
        return op_get(t, req, found_final);
    case REQUEST_GET_TRANSFER_ID:
        return op_get_transfer_id(t, req, found_final);
    case REQUEST_GET_BY_TRANSFER_ID:
        return op_get_by_transfer_id(t, req, found_final);
    case REQUEST_COUNT:
        return op_count(t, req);
    case REQUEST_LIST:
        return op_list(t, req);
    case REQUEST_PING:
        return op_ping(t, req);
    case REQUEST_OP_NONE:
        break;
    }
    reply_error(&t->out, req->id, REPLY_CODE_BAD_REQUEST, "op: missing");
    return "error";
}

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

void rpc_finish(struct rpc_thread *t, const struct request *req,
                const char *status, double t0)
{
    struct rpc_server *srv = t->srv;
    if (t->out.oom) {
        /* a huge list page and no memory: answer small rather than not */
        reply_buf_free(&t->out);
        reply_error(&t->out, req->id, REPLY_CODE_INTERNAL,
                    "worker: out of memory");
        status = "error";
    }
    if (!t->out.oom)
        rpc_reply_send(t, req->reply_to, req->has_deadline, req->deadline_ms);
    else
        rpc_inflight_done(t);
    atomic_fetch_add(&srv->n_answered, 1);
    metrics_lookup(request_op_name(req->op), status, edr_clock_s() - t0);
}

void rpc_handle_request(struct rpc_thread *t, const char *buf, size_t len)
{
    struct rpc_server *srv = t->srv;
    struct request req;
    char why[512];
    double t0 = edr_clock_s();
    int covered = 0;

    t->cur_raw = buf;
    t->cur_raw_len = len;
    enum request_error e = request_decode(&req, buf, len, why, sizeof(why));
    if (req.reply_to && !request_reply_to_allowed(req.reply_to, srv->prefix)) {
        /* also covers reply_to = the request queue, which an expiry
         * would destroy */
        drop_refused(t, &req);
        rpc_inflight_done(t);
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
            else
                rpc_inflight_done(t);
        } else {
            drop_unreadable(t, e, why);
            rpc_inflight_done(t);
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
        rpc_inflight_done(t);
        goto out;
    }
    const char *status = rpc_answer_once(t, &req, 0, &covered);
    if (!status) {
        int64_t until = rpc_wait_until(&req, edr_clock_ms());
        if (rpc_wait_spawn(t, &req, buf, len, until) == 0)
            goto out; /* req (now empty) and the answer belong to a waiter */
        status = rpc_wait_answer(t, &req, until);
        if (!status)
            goto out; /* stopping: left in flight, requeued by the keeper */
    }
    rpc_finish(t, &req, status, t0);
out:
    t->cur_raw = NULL;
    t->cur_raw_len = 0;
    request_clear(&req);
    /* don't let one huge reply pin memory for the thread's lifetime
     * (unless it is the pending one, still to be sent) */
    if (t->out.cap > 1024 * 1024 && !t->pending_to)
        reply_buf_free(&t->out);
}

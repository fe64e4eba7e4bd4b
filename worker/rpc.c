/* rpc.c: the Redis request/reply responder (schemas/README.md §2).
 *
 * cfg->rpc_threads threads, each with its own hiredis connection, loop on
 * BRPOP <prefix>:requests with a 1 s timeout (so a stop is noticed within
 * a second), decode the request (schemas/request.c), read the store and
 * answer with MULTI LPUSH EXPIRE EXEC sent in one write, so a reply list
 * never exists without its expiry; the thread's next BRPOP rides in the
 * same write, so each request costs the thread one round trip. A request
 * naming the request queue as reply_to is dropped (an answer would put an
 * expiry on the queue). Redis outages are retried inside each
 * thread with capped, jittered backoff; the server logs once when an
 * outage begins and once when it ends, never per attempt. The Kafka loop
 * runs on other threads and never waits for anything here. */
#include "worker/rpc.h"

#include "schemas/reply.h"
#include "schemas/request.h"
#include "worker/log.h"
#include "worker/metrics.h"
#include "worker/redis_url.h"

#include <hiredis/hiredis.h>

#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#define RPC_THREADS_DEFAULT 4
#define RPC_THREADS_MAX 64
#define RPC_BRPOP_TIMEOUT "1"
/* socket timeout: longer than the BRPOP wait, short enough to notice a
 * server that stopped answering */
#define RPC_IO_TIMEOUT_MS 5000
#define RPC_REPLY_TTL "60"
#define RPC_BACKOFF_MIN_MS 100
#define RPC_BACKOFF_MAX_MS 5000
/* at most one "malformed request dropped" line per interval */
#define RPC_MALFORMED_LOG_MS 10000

struct rpc_thread {
    struct rpc_server *srv;
    pthread_t tid;
    int started;
    redisContext *c;
    int attempt;       /* failed connects in a row, for the backoff */
    int pop_in_flight; /* a BRPOP went out behind the last reply */
    unsigned seed;     /* rand_r state for the jitter */
    struct reply_buf out;
    /* a reply that could not be sent because the connection broke; sent
     * again right after the reconnect */
    char *pending_to;
    int pending_has_deadline;
    int64_t pending_deadline_ms;
};

struct rpc_server {
    const struct config *cfg;
    struct store *st;
    struct redis_url url;
    char where[300]; /* host:port/db for logs */
    char *queue;     /* <prefix>:requests */
    const char *worker_id;
    int n_threads;
    struct rpc_thread *threads;
    atomic_int stopping;
    atomic_int n_connected;

    pthread_mutex_t lock; /* guards the fields below */
    int down;             /* an outage is in progress */
    int down_kind;        /* redis_url_failure of the logged outage */
    int ever_connected;
    int64_t down_since_ms;
    int64_t malformed_logged_ms;
    uint64_t malformed_suppressed;

    atomic_ullong n_answered;
    atomic_ullong n_expired;
    atomic_ullong n_unanswerable;
};

static int64_t now_mono_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static double now_mono_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static int64_t now_epoch_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* ---------------------------------------------------------- connection */

static void set_connected(struct rpc_thread *t, int up)
{
    struct rpc_server *srv = t->srv;
    /* under the lock, so two threads can't publish their counts to the
     * gauge in the wrong order */
    pthread_mutex_lock(&srv->lock);
    int n = up ? atomic_fetch_add(&srv->n_connected, 1) + 1
               : atomic_fetch_sub(&srv->n_connected, 1) - 1;
    metrics_set_redis_connected(n > 0);
    pthread_mutex_unlock(&srv->lock);
}

/* One failure of this thread. Logs only when an outage begins or its kind
 * changes (unreachable -> auth refused), not per attempt. */
static void note_down(struct rpc_server *srv, int kind, const char *reason)
{
    pthread_mutex_lock(&srv->lock);
    if (!srv->down) {
        srv->down = 1;
        srv->down_kind = kind;
        srv->down_since_ms = now_mono_ms();
        metrics_outage("redis");
        if (kind == REDIS_URL_AUTH)
            log_error("rpc: redis %s refused the credentials of "
                      "EDR_REDIS_URL (%s); lookups stop until it accepts "
                      "them, retrying with backoff",
                      srv->where, reason);
        else
            log_warn("rpc: redis %s unavailable (%s); lookups stop, ingest "
                     "goes on, retrying with backoff",
                     srv->where, reason);
    } else if (kind != srv->down_kind) {
        srv->down_kind = kind;
        log_warn("rpc: redis %s still unavailable, now: %s", srv->where,
                 reason);
    }
    pthread_mutex_unlock(&srv->lock);
}

static void note_up(struct rpc_server *srv)
{
    pthread_mutex_lock(&srv->lock);
    if (srv->down) {
        srv->down = 0;
        log_info("rpc: redis %s available again after %.1f s; answering "
                 "lookups",
                 srv->where,
                 (double)(now_mono_ms() - srv->down_since_ms) / 1000.0);
    } else if (!srv->ever_connected) {
        log_info("rpc: %d responder threads answering %s on redis %s",
                 srv->n_threads, srv->queue, srv->where);
    }
    srv->ever_connected = 1;
    pthread_mutex_unlock(&srv->lock);
}

static void disconnect(struct rpc_thread *t)
{
    if (!t->c)
        return;
    redisFree(t->c);
    t->c = NULL;
    t->pop_in_flight = 0;
    set_connected(t, 0);
}

/* Drops the connection after an I/O error or an error reply. */
static void lose_connection(struct rpc_thread *t, int kind, const char *reason)
{
    char why[256];
    snprintf(why, sizeof(why), "%s", reason); /* it may live in t->c */
    disconnect(t);
    note_down(t->srv, kind, why);
}

/* Sleeps the backoff for the current attempt in short slices, so a stop
 * is noticed promptly. */
static void backoff(struct rpc_thread *t)
{
    int64_t ms = RPC_BACKOFF_MIN_MS;
    for (int i = 0; i < t->attempt && ms < RPC_BACKOFF_MAX_MS; i++)
        ms *= 2;
    if (ms > RPC_BACKOFF_MAX_MS)
        ms = RPC_BACKOFF_MAX_MS;
    /* +-25% jitter so the threads (and workers) don't reconnect in step */
    ms = ms * 3 / 4 +
         (int64_t)((unsigned)rand_r(&t->seed) % (unsigned)(ms / 2 + 1));
    t->attempt++;
    int64_t until = now_mono_ms() + ms;
    while (!atomic_load(&t->srv->stopping)) {
        int64_t left = until - now_mono_ms();
        if (left <= 0)
            break;
        struct timespec ts = {0, (left > 50 ? 50 : left) * 1000000L};
        nanosleep(&ts, NULL);
    }
}

static int connect_thread(struct rpc_thread *t)
{
    char err[512];
    int kind = 0;
    if (t->attempt > 0)
        metrics_retry("redis");
    t->c = redis_url_connect(&t->srv->url, RPC_IO_TIMEOUT_MS, &kind, err,
                             sizeof(err));
    if (!t->c) {
        note_down(t->srv, kind, err);
        return -1;
    }
    t->attempt = 0;
    set_connected(t, 1);
    note_up(t->srv);
    return 0;
}

/* ------------------------------------------------------------- replies */

static void pending_clear(struct rpc_thread *t)
{
    free(t->pending_to);
    t->pending_to = NULL;
}

/* Sends t->out to reply_to with its expiry, as one transaction in one
 * write, followed (unless stopping) by the thread's next BRPOP, so a
 * responder spends one round trip per request, not two. 0 when sent (or
 * refused by Redis for good: the reply list is of the wrong type); -1 when
 * the connection broke, in which case the reply is kept as pending for the
 * next connection. */
static int send_reply(struct rpc_thread *t, const char *reply_to,
                      int has_deadline, int64_t deadline_ms)
{
    redisContext *c = t->c;
    size_t to_len = strlen(reply_to);
    const char *multi[1] = {"MULTI"};
    const char *lpush[3] = {"LPUSH", reply_to, t->out.data};
    size_t lpush_len[3] = {5, to_len, t->out.len};
    const char *expire[3] = {"EXPIRE", reply_to, RPC_REPLY_TTL};
    size_t expire_len[3] = {6, to_len, sizeof(RPC_REPLY_TTL) - 1};
    const char *exec[1] = {"EXEC"};
    const char *pop[3] = {"BRPOP", t->srv->queue, RPC_BRPOP_TIMEOUT};
    int then_pop = !t->pop_in_flight && !atomic_load(&t->srv->stopping);
    redisReply *r = NULL;
    int rc = 0;
    const char *bad = NULL;

    if (redisAppendCommandArgv(c, 1, multi, NULL) != REDIS_OK ||
        redisAppendCommandArgv(c, 3, lpush, lpush_len) != REDIS_OK ||
        redisAppendCommandArgv(c, 3, expire, expire_len) != REDIS_OK ||
        redisAppendCommandArgv(c, 1, exec, NULL) != REDIS_OK ||
        (then_pop && redisAppendCommandArgv(c, 3, pop, NULL) != REDIS_OK))
        goto broken;
    t->pop_in_flight = then_pop;
    for (int i = 0; i < 4; i++) {
        if (redisGetReply(c, (void **)&r) != REDIS_OK || !r)
            goto broken;
        if (i < 3 && r->type == REDIS_REPLY_ERROR && !bad)
            bad = "command refused";
        if (i == 3) {
            if (r->type != REDIS_REPLY_ARRAY || r->elements != 2)
                bad = "transaction aborted";
            else if (r->element[0]->type == REDIS_REPLY_ERROR)
                bad = "reply_to is not a list";
        }
        freeReplyObject(r);
        r = NULL;
    }
    if (bad) {
        /* Redis answered, so the connection is fine; this reply cannot be
         * delivered (e.g. reply_to holds a string). Not worth a retry. */
        log_debug("rpc: reply not delivered: %s", bad);
    }
    pending_clear(t);
    return rc;

broken:
    if (r)
        freeReplyObject(r);
    if (!t->pending_to || strcmp(t->pending_to, reply_to) != 0) {
        pending_clear(t);
        t->pending_to = strdup(reply_to);
    }
    t->pending_has_deadline = has_deadline;
    t->pending_deadline_ms = deadline_ms;
    lose_connection(t, REDIS_URL_UNREACHABLE,
                    c->errstr[0] ? c->errstr : "connection lost");
    return -1;
}

/* After a reconnect: delivers the reply that the broken connection lost,
 * unless its client has given up (deadline passed). */
static void send_pending(struct rpc_thread *t)
{
    if (!t->pending_to)
        return;
    if (!t->out.data) {
        pending_clear(t);
        return;
    }
    if (t->pending_has_deadline && now_epoch_ms() > t->pending_deadline_ms) {
        pending_clear(t);
        return;
    }
    char *to = t->pending_to;
    t->pending_to = NULL; /* send_reply re-arms it if it fails again */
    send_reply(t, to, t->pending_has_deadline, t->pending_deadline_ms);
    free(to);
}

static void log_malformed(struct rpc_server *srv, enum request_error e,
                          const char *why)
{
    int64_t now = now_mono_ms();
    pthread_mutex_lock(&srv->lock);
    if (srv->malformed_logged_ms == 0 ||
        now - srv->malformed_logged_ms >= RPC_MALFORMED_LOG_MS) {
        log_warn("rpc: dropped a malformed request without a readable "
                 "reply_to (%s: %s); %llu more since the last such line",
                 request_error_class(e), why,
                 (unsigned long long)srv->malformed_suppressed);
        srv->malformed_logged_ms = now;
        srv->malformed_suppressed = 0;
    } else {
        srv->malformed_suppressed++;
    }
    pthread_mutex_unlock(&srv->lock);
}

/* ----------------------------------------------------------------- ops */

static const char *store_error_reply(struct reply_buf *b, const char *id,
                                     const struct store_err *err)
{
    char why[320];
    snprintf(why, sizeof(why), "store: %s", err->msg);
    reply_error(b, id, why);
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
        status = store_error_reply(&t->out, req->id, &err);
        goto out;
    } else if (!rec.entry_json ||
               !reply_is_json_object(rec.entry_json, rec.entry_len)) {
        /* never splice text that would make the reply invalid JSON */
        reply_error(&t->out, req->id,
                    "store: stored entry is not a JSON "
                    "object");
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
        return store_error_reply(&t->out, req->id, &err);
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

    if (st->ops->count(st, req->substring, &n, &err) < 0)
        return store_error_reply(&t->out, req->id, &err);
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

    if (st->ops->list(st, req->substring, req->cursor, req->limit, &l, &err) <
        0)
        return store_error_reply(&t->out, req->id, &err);
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

static const char *op_ping(struct rpc_thread *t, const struct request *req)
{
    struct store *st = t->srv->st;
    struct store_err err;
    uint64_t n = 0;
    memset(&err, 0, sizeof(err));

    if (st->ops->count(st, NULL, &n, &err) < 0)
        return store_error_reply(&t->out, req->id, &err);
    reply_begin(&t->out, req->id, "ok");
    write_member(&t->out, 1, "worker", t->srv->worker_id);
    write_member(&t->out, 0, "store", st->ops->name);
    reply_raw(&t->out, ",\"entries\":", 11);
    reply_u64(&t->out, n);
    reply_raw(&t->out, "}", 1);
    reply_end(&t->out);
    return "ok";
}

/* Decodes and answers one popped request. */
static void handle_request(struct rpc_thread *t, const char *buf, size_t len)
{
    struct rpc_server *srv = t->srv;
    struct request req;
    char why[512];
    double t0 = now_mono_s();
    const char *status = "error";

    enum request_error e = request_decode(&req, buf, len, why, sizeof(why));
    if (req.reply_to && strcmp(req.reply_to, srv->queue) == 0) {
        /* answering onto the request queue would also put an expiry on
         * it: never */
        free(req.reply_to);
        req.reply_to = NULL;
        if (e == REQUEST_OK) {
            e = REQUEST_ERR_SCHEMA;
            snprintf(why, sizeof(why), "reply_to: is the request queue");
        }
    }
    if (e != REQUEST_OK) {
        if (req.reply_to) {
            reply_error(&t->out, req.id, why);
            log_debug("rpc: rejected a request (%s: %s)",
                      request_error_class(e), why);
            if (!t->out.oom)
                send_reply(t, req.reply_to, 0, 0);
        } else {
            atomic_fetch_add(&srv->n_unanswerable, 1);
            log_malformed(srv, e, why);
        }
        metrics_lookup("invalid", "error", now_mono_s() - t0);
        goto out;
    }
    if (req.has_deadline && now_epoch_ms() > req.deadline_ms) {
        /* the client has given up: an answer would only litter Redis */
        atomic_fetch_add(&srv->n_expired, 1);
        log_debug("rpc: dropped %s request past its deadline by %lld ms",
                  request_op_name(req.op),
                  (long long)(now_epoch_ms() - req.deadline_ms));
        goto out;
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
        reply_error(&t->out, req.id, "op: missing");
        break;
    }
    if (t->out.oom) {
        /* a huge list page and no memory: answer small rather than not */
        reply_buf_free(&t->out);
        reply_error(&t->out, req.id, "worker: out of memory");
        status = "error";
    }
    if (!t->out.oom)
        send_reply(t, req.reply_to, req.has_deadline, req.deadline_ms);
    atomic_fetch_add(&srv->n_answered, 1);
    metrics_lookup(request_op_name(req.op), status, now_mono_s() - t0);
out:
    request_clear(&req);
    /* don't let one huge reply pin memory for the thread's lifetime
     * (unless it is the pending one, still to be sent) */
    if (t->out.cap > 1024 * 1024 && !t->pending_to)
        reply_buf_free(&t->out);
}

/* -------------------------------------------------------------- thread */

static void *rpc_thread_main(void *arg)
{
    struct rpc_thread *t = arg;
    struct rpc_server *srv = t->srv;
    const char *argv[3] = {"BRPOP", srv->queue, RPC_BRPOP_TIMEOUT};

    /* a BRPOP already sent may pop a request: answer it before leaving */
    while (!atomic_load(&srv->stopping) || t->pop_in_flight) {
        if (!t->c) {
            if (connect_thread(t) != 0) {
                backoff(t);
                continue;
            }
            send_pending(t);
            continue;
        }
        redisReply *r = NULL;
        if ((!t->pop_in_flight &&
             redisAppendCommandArgv(t->c, 3, argv, NULL) != REDIS_OK) ||
            redisGetReply(t->c, (void **)&r) != REDIS_OK || !r) {
            if (r)
                freeReplyObject(r);
            lose_connection(t, REDIS_URL_UNREACHABLE,
                            t->c->errstr[0] ? t->c->errstr : "connection lost");
            backoff(t);
            continue;
        }
        t->pop_in_flight = 0;
        if (r->type == REDIS_REPLY_ARRAY && r->elements == 2 &&
            r->element[1]->type == REDIS_REPLY_STRING) {
            handle_request(t, r->element[1]->str, r->element[1]->len);
        } else if (r->type == REDIS_REPLY_ERROR) {
            /* LOADING after a restart, WRONGTYPE on the queue, NOAUTH
             * after an ACL change: all cured by time or an operator */
            char why[256];
            snprintf(why, sizeof(why), "BRPOP refused: %.200s", r->str);
            lose_connection(t, REDIS_URL_REFUSED, why);
            freeReplyObject(r);
            backoff(t);
            continue;
        }
        freeReplyObject(r);
    }
    disconnect(t);
    pending_clear(t);
    reply_buf_free(&t->out);
    return NULL;
}

struct rpc_server *rpc_server_start(const struct config *cfg, struct store *st,
                                    char *errstr, size_t errstr_size)
{
    struct rpc_server *srv = calloc(1, sizeof(*srv));
    const char *prefix = cfg->rpc_prefix ? cfg->rpc_prefix : "edr";
    const char *url =
        cfg->redis_url ? cfg->redis_url : "redis://127.0.0.1:6379/0";
    sigset_t all, old;

    if (!srv) {
        snprintf(errstr, errstr_size, "rpc: out of memory");
        return NULL;
    }
    pthread_mutex_init(&srv->lock, NULL);
    srv->cfg = cfg;
    srv->st = st;
    srv->worker_id = cfg->worker_id ? cfg->worker_id : "edr-worker";
    if (redis_url_parse(url, &srv->url, errstr, errstr_size) != 0)
        goto fail;
    redis_url_describe(&srv->url, srv->where, sizeof(srv->where));
    size_t qlen = strlen(prefix) + sizeof(":requests");
    srv->queue = malloc(qlen);
    srv->n_threads =
        cfg->rpc_threads > 0 ? cfg->rpc_threads : RPC_THREADS_DEFAULT;
    if (srv->n_threads > RPC_THREADS_MAX)
        srv->n_threads = RPC_THREADS_MAX;
    srv->threads = calloc((size_t)srv->n_threads, sizeof(*srv->threads));
    if (!srv->queue || !srv->threads) {
        snprintf(errstr, errstr_size, "rpc: out of memory");
        goto fail;
    }
    snprintf(srv->queue, qlen, "%s:requests", prefix);
    metrics_set_redis_connected(0);

    /* The responders take no signals: SIGTERM belongs to the main thread,
     * and a SIGPIPE from a dead Redis socket must only fail the write. */
    sigfillset(&all);
    pthread_sigmask(SIG_SETMASK, &all, &old);
    for (int i = 0; i < srv->n_threads; i++) {
        struct rpc_thread *t = &srv->threads[i];
        t->srv = srv;
        t->seed = (unsigned)now_epoch_ms() ^ (unsigned)(i * 7919);
        if (pthread_create(&t->tid, NULL, rpc_thread_main, t) != 0) {
            pthread_sigmask(SIG_SETMASK, &old, NULL);
            snprintf(errstr, errstr_size, "rpc: cannot start thread %d", i);
            goto fail;
        }
        t->started = 1;
    }
    pthread_sigmask(SIG_SETMASK, &old, NULL);
    return srv;

fail:
    rpc_server_stop(srv);
    return NULL;
}

int rpc_server_connected(const struct rpc_server *srv)
{
    if (!srv)
        return 0;
    return atomic_load(&srv->n_connected) > 0;
}

void rpc_server_stop(struct rpc_server *srv)
{
    if (!srv)
        return;
    atomic_store(&srv->stopping, 1);
    for (int i = 0; srv->threads && i < srv->n_threads; i++)
        if (srv->threads[i].started)
            pthread_join(srv->threads[i].tid, NULL);
    if (srv->ever_connected)
        log_info("rpc: responder stopped (%llu answered, %llu past their "
                 "deadline, %llu malformed without reply_to)",
                 (unsigned long long)atomic_load(&srv->n_answered),
                 (unsigned long long)atomic_load(&srv->n_expired),
                 (unsigned long long)atomic_load(&srv->n_unanswerable));
    metrics_set_redis_connected(0);
    free(srv->threads);
    free(srv->queue);
    redis_url_clear(&srv->url);
    pthread_mutex_destroy(&srv->lock);
    free(srv);
}

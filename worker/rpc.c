/* rpc.c: the Redis request/reply responder (schemas/README.md §2):
 * threads, connections and the request loop.
 *
 * cfg->rpc_threads threads, each with its own hiredis connection, loop on
 * BLMOVE <prefix>:requests <prefix>:inflight:<worker_id> RIGHT LEFT 1
 * (Redis' reliable queue: the oldest request, as producers LPUSH, moves
 * atomically onto this worker's in-flight list; a 1 s timeout so a stop
 * is noticed within a second) and hand each popped request to rpc_ops.c,
 * which answers it through rpc_reply.c (whose one script pushes the
 * reply and removes the request from the in-flight list, and whose write
 * also carries the thread's next BLMOVE, so each request costs one round
 * trip). rpc_keeper.c keeps this worker's heartbeat and gives the
 * in-flight requests of a dead worker back to the queue. Redis outages are
 * retried inside each thread with capped, jittered backoff; the server logs
 * once when an outage begins and once when it ends, never per attempt. The
 * Kafka loop runs on other threads and never waits for anything here. */
#include "worker/rpc.h"

#include "worker/backoff.h"
#include "worker/log.h"
#include "worker/metrics.h"
#include "worker/positions.h"
#include "worker/rpc_internal.h"

#include "base/clock.h"

#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define RPC_THREADS_DEFAULT 4
#define RPC_BACKOFF_MIN_MS 100
#define RPC_BACKOFF_MAX_MS 5000

int rpc_log_allowed(struct rpc_server *srv, struct rpc_log_limit *l,
                    uint64_t *suppressed)
{
    int64_t now = edr_clock_ms();
    int ok = 0;
    pthread_mutex_lock(&srv->lock);
    if (l->logged_ms == 0 || now - l->logged_ms >= RPC_DROP_LOG_MS) {
        *suppressed = l->suppressed;
        l->logged_ms = now;
        l->suppressed = 0;
        ok = 1;
    } else {
        l->suppressed++;
    }
    pthread_mutex_unlock(&srv->lock);
    return ok;
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
        srv->down_since_ms = edr_clock_ms();
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
                 (double)(edr_clock_ms() - srv->down_since_ms) / 1000.0);
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
    if (!t->is_waiter)
        set_connected(t, 0);
}

/* Drops the connection after an I/O error or an error reply. */
void rpc_lose_connection(struct rpc_thread *t, int kind, const char *reason)
{
    char why[256];
    snprintf(why, sizeof(why), "%s", reason); /* it may live in t->c */
    disconnect(t);
    if (t->is_waiter)
        return; /* its own short-lived connection: no outage to report */
    atomic_fetch_add(&t->srv->n_losses, 1);
    note_down(t->srv, kind, why);
}

/* Sleeps the backoff for the current attempt (worker/backoff.h, the one
 * jittered backoff) in short slices, so a stop is noticed promptly. */
static void backoff(struct rpc_thread *t)
{
    int64_t until = edr_clock_ms() + backoff_next(&t->bo);
    t->attempt++;
    while (!atomic_load(&t->srv->stopping)) {
        int64_t left = until - edr_clock_ms();
        if (left <= 0)
            break;
        edr_sleep_ms((unsigned)(left > 50 ? 50 : left));
    }
}

void rpc_inflight_done(struct rpc_thread *t)
{
    if (!t->c || !t->cur_raw)
        return;
    const char *argv[4] = {"LREM", t->srv->inflight, "1", t->cur_raw};
    size_t lens[4] = {4, strlen(t->srv->inflight), 1, t->cur_raw_len};
    redisReply *r = redisCommandArgv(t->c, 4, argv, lens);
    if (!r) {
        rpc_lose_connection(t, REDIS_URL_UNREACHABLE,
                            t->c && t->c->errstr[0] ? t->c->errstr
                                                    : "connection lost");
        return;
    }
    freeReplyObject(r);
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
        atomic_fetch_add(&t->srv->n_connect_failures, 1);
        note_down(t->srv, kind, err);
        return -1;
    }
    t->attempt = 0;
    backoff_reset(&t->bo);
    set_connected(t, 1);
    note_up(t->srv);
    return 0;
}

/* -------------------------------------------------------------- thread */

static void *rpc_thread_main(void *arg)
{
    struct rpc_thread *t = arg;
    struct rpc_server *srv = t->srv;
    const char *argv[6] = {"BLMOVE", srv->queue, srv->inflight,
                           "RIGHT",  "LEFT",     RPC_BRPOP_TIMEOUT};

    /* a BLMOVE already sent may pop a request: answer it before leaving */
    while (!atomic_load(&srv->stopping) || t->pop_in_flight) {
        if (!t->c) {
            if (connect_thread(t) != 0) {
                backoff(t);
                continue;
            }
            rpc_reply_send_pending(t);
            continue;
        }
        /* nothing is popped before the keeper gave this worker's
         * in-flight requests of a previous life back (they would be
         * answered twice) */
        if (!t->pop_in_flight && !atomic_load(&srv->keeper_ready)) {
            edr_sleep_ms(20);
            continue;
        }
        redisReply *r = NULL;
        if ((!t->pop_in_flight &&
             redisAppendCommandArgv(t->c, 6, argv, NULL) != REDIS_OK) ||
            redisGetReply(t->c, (void **)&r) != REDIS_OK || !r) {
            if (r)
                freeReplyObject(r);
            rpc_lose_connection(t, REDIS_URL_UNREACHABLE,
                                t->c->errstr[0] ? t->c->errstr
                                                : "connection lost");
            backoff(t);
            continue;
        }
        t->pop_in_flight = 0;
        if (r->type == REDIS_REPLY_STRING) {
            rpc_handle_request(t, r->str, r->len);
        } else if (r->type == REDIS_REPLY_ERROR) {
            /* LOADING after a restart, WRONGTYPE on the queue, NOAUTH
             * after an ACL change: all cured by time or an operator */
            char why[256];
            snprintf(why, sizeof(why), "BLMOVE refused: %.200s", r->str);
            rpc_lose_connection(t, REDIS_URL_REFUSED, why);
            freeReplyObject(r);
            backoff(t);
            continue;
        }
        freeReplyObject(r);
    }
    disconnect(t);
    rpc_reply_pending_clear(t);
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
    srv->prefix = strdup(prefix);
    srv->worker_id = cfg->worker_id ? cfg->worker_id : "edr-worker";
    if (redis_url_parse(url, &srv->url, errstr, errstr_size) != 0)
        goto fail;
    redis_url_describe(&srv->url, srv->where, sizeof(srv->where));
    size_t qlen = strlen(prefix) + sizeof(":requests");
    srv->queue = malloc(qlen);
    size_t ilen = strlen(prefix) + strlen(srv->worker_id) + 16;
    srv->inflight = malloc(ilen);
    srv->heartbeat = malloc(ilen);
    srv->workers = malloc(ilen);
    srv->n_threads =
        cfg->rpc_threads > 0 ? cfg->rpc_threads : RPC_THREADS_DEFAULT;
    if (srv->n_threads > CONFIG_RPC_THREADS_MAX) {
        /* config_load rejects this already (exit 2); never cap silently */
        snprintf(errstr, errstr_size,
                 "invalid setting EDR_RPC_THREADS (--rpc-threads): at most "
                 "%d",
                 CONFIG_RPC_THREADS_MAX);
        goto fail;
    }
    srv->threads = calloc((size_t)srv->n_threads, sizeof(*srv->threads));
    if (!srv->queue || !srv->threads || !srv->prefix || !srv->inflight ||
        !srv->heartbeat || !srv->workers) {
        snprintf(errstr, errstr_size, "rpc: out of memory");
        goto fail;
    }
    snprintf(srv->queue, qlen, "%s:requests", prefix);
    snprintf(srv->inflight, ilen, "%s:inflight:%s", prefix, srv->worker_id);
    snprintf(srv->heartbeat, ilen, "%s:worker:%s", prefix, srv->worker_id);
    snprintf(srv->workers, ilen, "%s:workers", prefix);
    metrics_set_redis_connected(0);

    /* The responders take no signals: SIGTERM belongs to the main thread,
     * and a SIGPIPE from a dead Redis socket must only fail the write. */
    sigfillset(&all);
    pthread_sigmask(SIG_SETMASK, &all, &old);
    if (pthread_create(&srv->keeper, NULL, rpc_keeper_main, srv) != 0) {
        pthread_sigmask(SIG_SETMASK, &old, NULL);
        snprintf(errstr, errstr_size, "rpc: cannot start the keeper thread");
        goto fail;
    }
    srv->keeper_started = 1;
    for (int i = 0; i < srv->n_threads; i++) {
        struct rpc_thread *t = &srv->threads[i];
        t->srv = srv;
        backoff_init(&t->bo, RPC_BACKOFF_MIN_MS, RPC_BACKOFF_MAX_MS);
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

void rpc_server_get_stats(const struct rpc_server *srv,
                          struct rpc_server_stats *out)
{
    memset(out, 0, sizeof(*out));
    if (!srv)
        return;
    out->answered = atomic_load(&srv->n_answered);
    out->expired = atomic_load(&srv->n_expired);
    out->unanswerable = atomic_load(&srv->n_unanswerable);
    out->refused = atomic_load(&srv->n_refused);
    out->connect_failures = atomic_load(&srv->n_connect_failures);
    out->losses = atomic_load(&srv->n_losses);
    out->requeued = atomic_load(&srv->n_requeued);
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
    /* a responder waiting inline (all waiters busy) wakes and gives up */
    positions_wake_all();
    for (int i = 0; srv->threads && i < srv->n_threads; i++)
        if (srv->threads[i].started)
            pthread_join(srv->threads[i].tid, NULL);
    /* waiters see the stop at their next wake and leave their requests in
     * flight, unanswered */
    while (atomic_load(&srv->n_waiters) > 0) {
        positions_wake_all();
        edr_sleep_ms(10);
    }
    /* the keeper last: it hands what is still in flight back to the
     * queue and removes the heartbeat */
    atomic_store(&srv->keeper_stop, 1);
    if (srv->keeper_started)
        pthread_join(srv->keeper, NULL);
    if (srv->ever_connected)
        log_info("rpc: responder stopped (%llu answered, %llu past their "
                 "deadline, %llu malformed without reply_to, %llu with a "
                 "refused reply_to)",
                 (unsigned long long)atomic_load(&srv->n_answered),
                 (unsigned long long)atomic_load(&srv->n_expired),
                 (unsigned long long)atomic_load(&srv->n_unanswerable),
                 (unsigned long long)atomic_load(&srv->n_refused));
    metrics_set_redis_connected(0);
    free(srv->threads);
    free(srv->queue);
    free(srv->inflight);
    free(srv->heartbeat);
    free(srv->workers);
    free(srv->prefix);
    redis_url_clear(&srv->url);
    pthread_mutex_destroy(&srv->lock);
    free(srv);
}

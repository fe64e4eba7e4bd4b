/* rpc_keeper.c: the other half of the reliable request queue
 * (schemas/README.md §2, v2: requests survive a worker's death).
 *
 * Responders move each request atomically from <prefix>:requests onto
 * <prefix>:inflight:<worker_id> (BLMOVE) and remove it with the reply
 * (rpc_reply.c). This thread, with a connection of its own:
 *   - every second sets <prefix>:worker:<worker_id> with a 5 s expiry
 *     and adds the id to the set <prefix>:workers;
 *   - every 2 s looks at every registered worker and, for one whose
 *     heartbeat expired, moves its in-flight requests back onto the
 *     queue's consuming end (the oldest first, as they were) and removes
 *     it from the set: one Lua script, so two live workers reaping the
 *     same dead one never both move a request, and a worker that is
 *     alive again (its heartbeat came back) is left alone;
 *   - at start, before the responders pop anything, gives back what this
 *     worker id left in flight in a previous life; at a clean stop, gives
 *     back what is still in flight (waiters abandoned at the stop) and
 *     deletes the heartbeat.
 * A request taken over may already have been answered just before its
 * worker died (or by a worker that was only frozen and wakes up): the
 * client then gets two replies with the same id, which §2 allows. */
#include "worker/log.h"
#include "worker/rpc_internal.h"

#include "base/clock.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* KEYS[1] the heartbeat, KEYS[2] the in-flight list, KEYS[3] the queue,
 * KEYS[4] the workers set; ARGV[1] the worker id, ARGV[2] "1" to skip
 * the liveness check (our own list). -1 when the worker is alive, else
 * how many requests went back. */
static const char reap_script[] =
    "if ARGV[2] ~= '1' and redis.call('EXISTS', KEYS[1]) == 1 then\n"
    "  return -1\n"
    "end\n"
    "local n = 0\n"
    "while redis.call('LMOVE', KEYS[2], KEYS[3], 'LEFT', 'RIGHT') do\n"
    "  n = n + 1\n"
    "end\n"
    "if ARGV[2] ~= '1' then redis.call('SREM', KEYS[4], ARGV[1]) end\n"
    "return n\n";

/* Runs the script for worker id (own: skip the liveness check). The
 * number requeued, -1 when alive, -2 on a connection or script error. */
static long long reap(struct rpc_server *srv, redisContext *c, const char *id,
                      int own)
{
    size_t cap = strlen(srv->prefix) + strlen(id) + 16;
    char *hb = malloc(cap), *inflight = malloc(cap);
    long long n = -2;
    if (!hb || !inflight)
        goto out;
    snprintf(hb, cap, "%s:worker:%s", srv->prefix, id);
    snprintf(inflight, cap, "%s:inflight:%s", srv->prefix, id);
    const char *argv[9] = {"EVAL",       reap_script, "4",
                           hb,           inflight,    srv->queue,
                           srv->workers, id,          own ? "1" : "0"};
    redisReply *r = redisCommandArgv(c, 9, argv, NULL);
    if (r && r->type == REDIS_REPLY_INTEGER)
        n = r->integer;
    else if (r && r->type == REDIS_REPLY_ERROR)
        log_warn("rpc: taking over in-flight requests refused by redis "
                 "(%.200s)",
                 r->str);
    if (r)
        freeReplyObject(r);
out:
    free(hb);
    free(inflight);
    return n;
}

static int heartbeat(struct rpc_server *srv, redisContext *c)
{
    const char *set[6] = {"SET", srv->heartbeat, "1", "PX",
                          RPC_HEARTBEAT_TTL_MS};
    const char *add[3] = {"SADD", srv->workers, srv->worker_id};
    redisReply *r1 = NULL, *r2 = NULL;
    int ok = redisAppendCommandArgv(c, 5, set, NULL) == REDIS_OK &&
             redisAppendCommandArgv(c, 3, add, NULL) == REDIS_OK &&
             redisGetReply(c, (void **)&r1) == REDIS_OK &&
             redisGetReply(c, (void **)&r2) == REDIS_OK && r1 && r2 &&
             r1->type != REDIS_REPLY_ERROR && r2->type != REDIS_REPLY_ERROR;
    if (r1)
        freeReplyObject(r1);
    if (r2)
        freeReplyObject(r2);
    return ok ? 0 : -1;
}

/* Looks at every registered worker but us; -1 on a connection error. */
static int reap_dead(struct rpc_server *srv, redisContext *c)
{
    const char *argv[2] = {"SMEMBERS", srv->workers};
    redisReply *r = redisCommandArgv(c, 2, argv, NULL);
    if (!r)
        return -1;
    int rc = 0;
    for (size_t i = 0; r->type == REDIS_REPLY_ARRAY && i < r->elements; i++) {
        const redisReply *e = r->element[i];
        if (e->type != REDIS_REPLY_STRING ||
            strcmp(e->str, srv->worker_id) == 0 || memchr(e->str, 0, e->len))
            continue;
        long long n = reap(srv, c, e->str, 0);
        if (n == -2 && c->err) {
            rc = -1;
            break;
        }
        if (n > 0) {
            atomic_fetch_add(&srv->n_requeued, (unsigned long long)n);
            log_warn("rpc: worker %.100s stopped answering (heartbeat "
                     "expired); %lld in-flight requests went back to %s",
                     e->str, n, srv->queue);
        } else if (n == 0) {
            log_info("rpc: worker %.100s is gone; unregistered it", e->str);
        }
    }
    freeReplyObject(r);
    return rc;
}

/* Sleeps ms in short slices; 1 when the keeper must stop. */
static int nap(struct rpc_server *srv, int64_t ms)
{
    int64_t until = edr_clock_ms() + ms;
    while (!atomic_load(&srv->keeper_stop)) {
        int64_t left = until - edr_clock_ms();
        if (left <= 0)
            return 0;
        edr_sleep_ms((unsigned)(left > 50 ? 50 : left));
    }
    return 1;
}

void *rpc_keeper_main(void *arg)
{
    struct rpc_server *srv = arg;
    redisContext *c = NULL;
    int64_t last_reap = 0;
    char err[512];

    while (!atomic_load(&srv->keeper_stop)) {
        if (!c) {
            int kind = 0;
            c = redis_url_connect(&srv->url, RPC_IO_TIMEOUT_MS, &kind, err,
                                  sizeof(err));
            if (!c) {
                /* the responders report the outage */
                nap(srv, 1000);
                continue;
            }
        }
        if (!atomic_load(&srv->keeper_ready)) {
            long long n = reap(srv, c, srv->worker_id, 1);
            /* an error reply (NOAUTH, scripts denied): the responders
             * meet it too and report it; don't hold them back */
            if (n == -2 && !c->err)
                atomic_store(&srv->keeper_ready, 1);
            if (n >= 0) {
                if (n > 0)
                    log_info("rpc: %lld requests this worker id left in "
                             "flight went back to %s",
                             n, srv->queue);
                atomic_store(&srv->keeper_ready, 1);
            }
        }
        int bad = atomic_load(&srv->keeper_ready) ? heartbeat(srv, c) : -1;
        if (bad == 0 && edr_clock_ms() - last_reap >= RPC_REAP_EVERY_MS) {
            bad = reap_dead(srv, c);
            last_reap = edr_clock_ms();
        }
        if (bad != 0 || c->err) {
            redisFree(c);
            c = NULL;
        }
        nap(srv, RPC_HEARTBEAT_EVERY_MS);
    }

    /* a clean stop: what is still in flight goes back to the queue, and
     * we are no longer a worker others need to watch */
    if (!c) {
        int kind = 0;
        c = redis_url_connect(&srv->url, RPC_IO_TIMEOUT_MS, &kind, err,
                              sizeof(err));
    }
    if (c) {
        long long n = reap(srv, c, srv->worker_id, 1);
        if (n > 0)
            log_info("rpc: %lld unanswered requests went back to %s", n,
                     srv->queue);
        const char *del[2] = {"DEL", srv->heartbeat};
        const char *rem[3] = {"SREM", srv->workers, srv->worker_id};
        redisReply *r = redisCommandArgv(c, 2, del, NULL);
        if (r)
            freeReplyObject(r);
        r = redisCommandArgv(c, 3, rem, NULL);
        if (r)
            freeReplyObject(r);
        redisFree(c);
    }
    return NULL;
}

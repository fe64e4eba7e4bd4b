/* rpc_reply.c: delivering one lookup reply onto its reply_to list
 * (schemas/README.md §2).
 *
 * The reply goes out as one Lua script run atomically by Redis: it pushes
 * and sets the 60 s expiry only when reply_to is a list or does not exist,
 * and otherwise changes nothing and answers an error. A worker therefore
 * never alters a hash, a string or any other key a client named (the v1
 * MULTI LPUSH EXPIRE EXEC let the EXPIRE run after a failed LPUSH, and
 * deleted the key a minute later). The same script removes the request
 * from this worker's in-flight list (the reliable queue, rpc.c), so a
 * reply and its acknowledgement are one step: a worker that dies before
 * it leaves the request in flight for another worker to answer, one that
 * dies after has answered. The thread's next BLMOVE rides in the same
 * write, so a request costs one round trip. */
#include "schemas/request.h"
#include "worker/log.h"
#include "worker/metrics.h"
#include "worker/rpc_internal.h"

#include "base/clock.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define RPC_REPLY_TTL "60"

/* KEYS[1] reply_to, KEYS[2] the in-flight list, ARGV[1] the reply,
 * ARGV[2] the expiry in seconds, ARGV[3] the request as popped. */
static const char push_script[] =
    "redis.call('LREM', KEYS[2], 1, ARGV[3])\n"
    "local t = redis.call('TYPE', KEYS[1])['ok']\n"
    "if t ~= 'list' and t ~= 'none' then\n"
    "  return redis.error_reply('EDRNOTLIST reply_to holds a ' .. t)\n"
    "end\n"
    "redis.call('LPUSH', KEYS[1], ARGV[1])\n"
    "redis.call('EXPIRE', KEYS[1], ARGV[2])\n"
    "return 1\n";

void rpc_reply_pending_clear(struct rpc_thread *t)
{
    free(t->pending_to);
    t->pending_to = NULL;
    free(t->pending_raw);
    t->pending_raw = NULL;
    t->pending_raw_len = 0;
}

/* Redis answered the script with an error: the reply cannot be delivered
 * (reply_to holds another type, or scripting is denied). Not worth a
 * retry; logged (rate-limited) and counted. */
static void note_refused(struct rpc_thread *t, const char *why)
{
    struct rpc_server *srv = t->srv;
    uint64_t skipped;
    atomic_fetch_add(&srv->n_refused, 1);
    metrics_lookup_dropped("reply_to_refused");
    if (rpc_log_allowed(srv, &srv->log_refused, &skipped))
        log_warn("rpc: reply not delivered, redis refused it (%.200s); the "
                 "key is left as it was; %llu more since the last such line",
                 why, (unsigned long long)skipped);
}

int rpc_reply_send(struct rpc_thread *t, const char *reply_to, int has_deadline,
                   int64_t deadline_ms)
{
    redisContext *c = t->c;
    const char *raw = t->cur_raw ? t->cur_raw : "";
    size_t raw_len = t->cur_raw ? t->cur_raw_len : 0;
    const char *eval[8] = {
        "EVAL",           push_script, "2",           reply_to,
        t->srv->inflight, t->out.data, RPC_REPLY_TTL, raw};
    size_t eval_len[8] = {4,
                          sizeof(push_script) - 1,
                          1,
                          strlen(reply_to),
                          strlen(t->srv->inflight),
                          t->out.len,
                          sizeof(RPC_REPLY_TTL) - 1,
                          raw_len};
    const char *pop[6] = {"BLMOVE", t->srv->queue, t->srv->inflight,
                          "RIGHT",  "LEFT",        RPC_BRPOP_TIMEOUT};
    int then_pop =
        !t->is_waiter && !t->pop_in_flight && !atomic_load(&t->srv->stopping);
    redisReply *r = NULL;

    if (!c)
        goto broken;
    if (redisAppendCommandArgv(c, 8, eval, eval_len) != REDIS_OK ||
        (then_pop && redisAppendCommandArgv(c, 6, pop, NULL) != REDIS_OK))
        goto broken;
    t->pop_in_flight = then_pop;
    if (redisGetReply(c, (void **)&r) != REDIS_OK || !r)
        goto broken;
    if (r->type == REDIS_REPLY_ERROR)
        note_refused(t, r->str);
    freeReplyObject(r);
    rpc_reply_pending_clear(t);
    return 0;

broken:
    if (r)
        freeReplyObject(r);
    if (!t->pending_to || strcmp(t->pending_to, reply_to) != 0 ||
        t->pending_raw != t->cur_raw) {
        char *to = strdup(reply_to);
        char *copy = raw_len ? malloc(raw_len) : NULL;
        if (copy)
            memcpy(copy, raw, raw_len);
        rpc_reply_pending_clear(t);
        t->pending_to = to;
        t->pending_raw = copy;
        t->pending_raw_len = copy ? raw_len : 0;
    }
    t->pending_has_deadline = has_deadline;
    t->pending_deadline_ms = deadline_ms;
    if (c)
        rpc_lose_connection(t, REDIS_URL_UNREACHABLE,
                            c->errstr[0] ? c->errstr : "connection lost");
    return -1;
}

void rpc_reply_send_pending(struct rpc_thread *t)
{
    if (!t->pending_to)
        return;
    if (!t->out.data ||
        (t->pending_has_deadline && edr_epoch_ms() > t->pending_deadline_ms)) {
        rpc_reply_pending_clear(t);
        return;
    }
    char *to = t->pending_to;
    char *raw = t->pending_raw;
    t->pending_to = NULL; /* rpc_reply_send re-arms it if it fails again */
    t->pending_raw = NULL;
    t->cur_raw = raw;
    t->cur_raw_len = t->pending_raw_len;
    rpc_reply_send(t, to, t->pending_has_deadline, t->pending_deadline_ms);
    t->cur_raw = NULL;
    t->cur_raw_len = 0;
    free(to);
    free(raw);
}

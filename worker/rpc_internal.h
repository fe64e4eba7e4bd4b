/* rpc_internal.h: what the three files of the lookup responder share
 * (not for other modules; worker/rpc.h is the public interface).
 *
 *   rpc.c        threads, Redis connections, the request loop
 *   rpc_ops.c    decoding a popped request and answering it from the store
 *   rpc_reply.c  delivering a reply onto its reply_to list
 *
 * A struct rpc_thread belongs to its one thread; struct rpc_server is
 * shared, its mutable fields behind `lock` or atomic. */
#ifndef EDR_WORKER_RPC_INTERNAL_H
#define EDR_WORKER_RPC_INTERNAL_H

#include "schemas/reply.h"
#include "stores/store.h"
#include "worker/config.h"
#include "worker/redis_url.h"

#include <hiredis/hiredis.h>

#include <pthread.h>
#include <stdatomic.h>
#include <stdint.h>

#define RPC_BRPOP_TIMEOUT "1"
/* at most one "dropped a request" line per interval and kind */
#define RPC_DROP_LOG_MS 10000

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

/* A log line that is rate-limited to one per RPC_DROP_LOG_MS. */
struct rpc_log_limit {
    int64_t logged_ms;
    uint64_t suppressed;
};

struct rpc_server {
    const struct config *cfg;
    struct store *st;
    struct redis_url url;
    char where[300]; /* host:port/db for logs */
    char *queue;     /* <prefix>:requests */
    char *prefix;    /* EDR_RPC_PREFIX (a copy); replies go to
                        <prefix>:reply:* only */
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
    struct rpc_log_limit log_unreadable;
    struct rpc_log_limit log_refused;
    struct rpc_log_limit log_store;

    atomic_ullong n_answered;
    atomic_ullong n_expired;
    atomic_ullong n_unanswerable;
    atomic_ullong n_refused;          /* reply_to not ours, or not a list */
    atomic_ullong n_connect_failures; /* failed connects, any thread */
    atomic_ullong n_losses;           /* connections dropped after errors */
};

/* rpc.c: 1 when a line limited by l may be written now (then
 * *suppressed = the lines skipped since the last one); takes srv->lock. */
int rpc_log_allowed(struct rpc_server *srv, struct rpc_log_limit *l,
                    uint64_t *suppressed);

/* rpc_ops.c: decodes and answers one popped request (len bytes at buf),
 * sending the reply through rpc_reply_send. Responder threads only. */
void rpc_handle_request(struct rpc_thread *t, const char *buf, size_t len);

/* rpc_reply.c: sends t->out to reply_to (which must satisfy
 * request_reply_to_allowed) with its 60 s expiry, by one Lua script that
 * pushes only onto a list or a missing key, followed in the same write
 * (unless stopping) by the thread's next BRPOP. 0 when sent or refused by
 * Redis for good (reply_to is not a list: logged and counted); -1 when the
 * connection broke: the reply is then kept as pending and the connection
 * dropped. */
int rpc_reply_send(struct rpc_thread *t, const char *reply_to, int has_deadline,
                   int64_t deadline_ms);
/* After a reconnect: delivers the reply the broken connection lost,
 * unless its deadline passed. */
void rpc_reply_send_pending(struct rpc_thread *t);
void rpc_reply_pending_clear(struct rpc_thread *t);

/* rpc.c: drops t's connection after an I/O error (reason may live in
 * t->c) and notes the outage. */
void rpc_lose_connection(struct rpc_thread *t, int kind, const char *reason);

#endif

/* rpc_internal.h: what the three files of the lookup responder share
 * (not for other modules; worker/rpc.h is the public interface).
 *
 *   rpc.c        threads, Redis connections, the request loop
 *   rpc_keeper.c the heartbeat and the takeover of a dead worker's
 *                in-flight requests (the reliable queue)
 *   rpc_ops.c    decoding a popped request and answering it from the store
 *   rpc_wait.c   min_positions and wait_ms: waiting for ingest, on waiter
 *                threads so the responders keep serving
 *   rpc_reply.c  delivering a reply onto its reply_to list
 *
 * A struct rpc_thread belongs to its one thread; struct rpc_server is
 * shared, its mutable fields behind `lock` or atomic. */
#ifndef EDR_WORKER_RPC_INTERNAL_H
#define EDR_WORKER_RPC_INTERNAL_H

#include "schemas/reply.h"
#include "schemas/request.h"
#include "stores/store.h"
#include "worker/backoff.h"
#include "worker/config.h"
#include "worker/redis_url.h"

#include <hiredis/hiredis.h>

#include <pthread.h>
#include <stdatomic.h>
#include <stdint.h>

#define RPC_BRPOP_TIMEOUT "1"
/* socket timeout: longer than the BLMOVE wait, short enough to notice a
 * server that stopped answering */
#define RPC_IO_TIMEOUT_MS 5000
/* heartbeat: refreshed every RPC_HEARTBEAT_EVERY_MS, expires after
 * RPC_HEARTBEAT_TTL_MS; dead workers are looked for every
 * RPC_REAP_EVERY_MS. A death is noticed within TTL + REAP (7 s), well
 * inside the contract's 15 s. */
#define RPC_HEARTBEAT_EVERY_MS 1000
#define RPC_HEARTBEAT_TTL_MS "5000"
#define RPC_REAP_EVERY_MS 2000
/* waiting requests (min_positions, wait_ms) handed to their own threads
 * at most; beyond that they wait on the responder thread that popped
 * them */
#define RPC_WAITERS_MAX 64
/* at most one "dropped a request" line per interval and kind */
#define RPC_DROP_LOG_MS 10000

struct rpc_thread {
    struct rpc_server *srv;
    pthread_t tid;
    int started;
    redisContext *c;
    int attempt;       /* failed connects in a row */
    struct backoff bo; /* the reconnect delays */
    int pop_in_flight; /* a BLMOVE went out behind the last reply */
    int is_waiter;     /* a waiter thread (rpc_wait.c): never pops, its
                          connection is not counted as a responder's */
    /* the request in hand as popped (borrowed for the handling): removed
     * from the in-flight list with its reply */
    const char *cur_raw;
    size_t cur_raw_len;
    struct reply_buf out;
    /* a reply that could not be sent because the connection broke; sent
     * again right after the reconnect */
    char *pending_to;
    char *pending_raw; /* the request it answers (for the LREM) */
    size_t pending_raw_len;
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
    char *inflight;  /* <prefix>:inflight:<worker_id>: popped, unanswered */
    char *heartbeat; /* <prefix>:worker:<worker_id>, expires with us */
    char *workers;   /* <prefix>:workers: the set of registered ids */
    char *prefix;    /* EDR_RPC_PREFIX (a copy); replies go to
                        <prefix>:reply:* only */
    const char *worker_id;
    int n_threads;
    struct rpc_thread *threads;
    atomic_int stopping;
    atomic_int n_connected;
    atomic_int keeper_ready; /* the own in-flight list was reclaimed */
    atomic_int keeper_stop;  /* set after the responders were joined */
    pthread_t keeper;
    int keeper_started;
    atomic_int n_waiters; /* waiter threads running */

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
    atomic_ullong n_requeued;         /* taken over from dead workers */
};

/* rpc.c: 1 when a line limited by l may be written now (then
 * *suppressed = the lines skipped since the last one); takes srv->lock. */
int rpc_log_allowed(struct rpc_server *srv, struct rpc_log_limit *l,
                    uint64_t *suppressed);

/* rpc_ops.c: decodes and answers one popped request (len bytes at buf),
 * sending the reply through rpc_reply_send and removing the request from
 * the in-flight list. Responder threads only. */
void rpc_handle_request(struct rpc_thread *t, const char *buf, size_t len);

/* rpc_ops.c: one attempt at answering req into t->out. With final = 0 it
 * returns NULL, writing nothing, when the request must wait (positions
 * not reached, or nothing found and wait_ms > 0); otherwise it writes the
 * reply and returns its status ("ok", "not_found", "error"). *covered
 * (in/out) notes that min_positions were reached. */
const char *rpc_answer_once(struct rpc_thread *t, const struct request *req,
                            int final, int *covered);

/* rpc_wait.c: answers req, which rpc_answer_once(final = 0) said must
 * wait, until until_ms (monotonic): on a waiter thread of its own when
 * one is free, then 0 and *req and the raw bytes were taken over;
 * otherwise -1 and nothing happened (the caller waits inline with
 * rpc_wait_answer). */
int rpc_wait_spawn(struct rpc_thread *t, struct request *req, const char *raw,
                   size_t raw_len, int64_t until_ms);
/* Waits (on the calling thread) and writes the final reply into t->out;
 * its status, or NULL when the server is stopping (no reply then: the
 * request stays in flight and is requeued). */
const char *rpc_wait_answer(struct rpc_thread *t, const struct request *req,
                            int64_t until_ms);
/* rpc_ops.c: sends the reply in t->out (or a small out-of-memory error
 * reply) for req and counts it; t0 is when handling began
 * (edr_clock_s). */
void rpc_finish(struct rpc_thread *t, const struct request *req,
                const char *status, double t0);
/* rpc_ops.c: the monotonic time until which req may wait. */
int64_t rpc_wait_until(const struct request *req, int64_t now_ms);

/* rpc.c: LREM of the request in hand (t->cur_raw) from the in-flight
 * list, for requests dropped without a reply. */
void rpc_inflight_done(struct rpc_thread *t);

/* rpc_keeper.c: the heartbeat thread. */
void *rpc_keeper_main(void *arg);

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

/* rpc_wait.c: lookups that wait (schemas/README.md §2, v2): for
 * min_positions (read-your-writes) and for a match (wait_ms).
 *
 * Design. A request that must wait leaves its responder thread at once:
 * it goes, with a copy of its popped bytes, to a waiter thread of its own
 * (at most RPC_WAITERS_MAX at a time), so a responder never sits in a
 * wait while other requests queue up behind it. Only when that many
 * waiters already run does the responder wait itself (the pool is then
 * honestly rpc_threads + RPC_WAITERS_MAX deep; no request is refused). A
 * waiter:
 *   - memory and file stores: sleeps on the condition variable of
 *     worker/positions.c, which ingest signals after every applied batch,
 *     and re-checks after each apply (no polling);
 *   - a shared store (PostgreSQL, where another worker may be the one
 *     applying): polls the store (offsets table for min_positions, the
 *     lookup itself for wait_ms) with jittered backoff from 2 to 500 ms,
 *     only while it waits, and re-checks at once when the store hears
 *     of a commit by any worker (store_ops.wait_applied: PostgreSQL's
 *     LISTEN/NOTIFY, a wake-up hint, never trusted as the state) or,
 *     without that, when this worker's own ingest applies a batch;
 * then sends the reply on a short-lived connection of its own, which also
 * removes the request from the in-flight list. Until then the request
 * stays in flight: if the worker dies it is taken over (rpc_keeper.c); at
 * a clean stop waiters give up without replying and the keeper puts their
 * requests back on the queue for another worker. */
#include "worker/backoff.h"
#include "worker/log.h"
#include "worker/positions.h"
#include "worker/rpc_internal.h"

#include "base/clock.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* The first polls come soon: an event just published is typically
 * applied a few milliseconds later, and each poll is one indexed read. */
#define WAIT_POLL_MIN_MS 2
/* a wait on the store's wake-ups looks at the stop this often */
#define WAIT_SLICE_MS 50
#define WAIT_POLL_MAX_MS 500
/* a waiter's reply: connect attempts for at most this long */
#define WAIT_SEND_TRIES 10

struct rpc_waiter {
    struct rpc_thread t;
    struct request req;
    char *raw;
    size_t raw_len;
    int64_t until_ms;
    double t0;
};

/* Sleeps until until, an apply of this worker's ingest, or the stop
 * (positions_wake_all). A shared store's waiter wakes after its next
 * backoff delay at the latest, for what other workers applied, and as
 * soon as the store hears of an apply by any worker (wait_applied,
 * PostgreSQL's LISTEN; that covers this worker's own applies too), in
 * slices so that a stop is seen. sgen: the store's count, taken before
 * the last look. */
static void wait_a_while(struct rpc_server *srv, uint64_t gen, uint64_t *sgen,
                         int64_t until, struct backoff *bo)
{
    struct store *st = srv->st;
    int64_t stop_at = until;
    if (!st->ops->caps.shared) {
        positions_wait_change(gen, stop_at);
        return;
    }
    stop_at = edr_clock_ms() + backoff_next(bo);
    if (stop_at > until)
        stop_at = until;
    while (st->ops->wait_applied && !atomic_load(&srv->stopping)) {
        int64_t now = edr_clock_ms();
        if (now >= stop_at)
            return;
        int64_t slice =
            now + WAIT_SLICE_MS < stop_at ? now + WAIT_SLICE_MS : stop_at;
        int r = st->ops->wait_applied(st, sgen, slice);
        if (r > 0)
            return;
        if (r < 0)
            break; /* not listening: the condition variable and the poll */
    }
    positions_wait_change(gen, stop_at);
}

const char *rpc_wait_answer(struct rpc_thread *t, const struct request *req,
                            int64_t until_ms)
{
    struct backoff bo;
    int covered = 0;
    backoff_init(&bo, WAIT_POLL_MIN_MS, WAIT_POLL_MAX_MS);
    struct store *st = t->srv->st;
    uint64_t sgen = 0;
    for (;;) {
        uint64_t gen = positions_generation();
        if (st->ops->caps.shared && st->ops->wait_applied)
            st->ops->wait_applied(st, &sgen, 0); /* takes the count */
        if (atomic_load(&t->srv->stopping))
            return NULL;
        int final = edr_clock_ms() >= until_ms;
        const char *status = rpc_answer_once(t, req, final, &covered);
        if (status)
            return status;
        wait_a_while(t->srv, gen, &sgen, until_ms, &bo);
    }
}

static void waiter_free(struct rpc_waiter *w)
{
    request_clear(&w->req);
    free(w->raw);
    reply_buf_free(&w->t.out);
    rpc_reply_pending_clear(&w->t);
    free(w);
}

static void *waiter_main(void *arg)
{
    struct rpc_waiter *w = arg;
    struct rpc_thread *t = &w->t;
    struct rpc_server *srv = t->srv;
    char err[512];

    const char *status = rpc_wait_answer(t, &w->req, w->until_ms);
    for (int i = 0; status && i < WAIT_SEND_TRIES; i++) {
        int kind = 0;
        if (atomic_load(&srv->stopping) ||
            (w->req.has_deadline && edr_epoch_ms() > w->req.deadline_ms))
            break;
        t->c = redis_url_connect(&srv->url, RPC_IO_TIMEOUT_MS, &kind, err,
                                 sizeof(err));
        if (t->c) {
            t->cur_raw = w->raw;
            t->cur_raw_len = w->raw_len;
            rpc_finish(t, &w->req, status, w->t0);
            if (t->c) { /* sent (else rpc_reply_send dropped it) */
                redisFree(t->c);
                t->c = NULL;
                break;
            }
        }
        edr_sleep_ms(1000);
    }
    waiter_free(w);
    atomic_fetch_sub(&srv->n_waiters, 1);
    return NULL;
}

int rpc_wait_spawn(struct rpc_thread *t, struct request *req, const char *raw,
                   size_t raw_len, int64_t until_ms)
{
    struct rpc_server *srv = t->srv;
    if (atomic_fetch_add(&srv->n_waiters, 1) >= RPC_WAITERS_MAX) {
        atomic_fetch_sub(&srv->n_waiters, 1);
        return -1;
    }
    struct rpc_waiter *w = calloc(1, sizeof(*w));
    char *copy = malloc(raw_len ? raw_len : 1);
    if (!w || !copy)
        goto fail;
    memcpy(copy, raw, raw_len);
    w->t.srv = srv;
    w->t.is_waiter = 1;
    w->raw = copy;
    w->raw_len = raw_len;
    w->until_ms = until_ms;
    w->t0 = edr_clock_s();
    w->req = *req;

    pthread_attr_t a;
    pthread_t tid;
    pthread_attr_init(&a);
    pthread_attr_setdetachstate(&a, PTHREAD_CREATE_DETACHED);
    /* the responder's signal mask (all blocked) is inherited */
    int rc = pthread_create(&tid, &a, waiter_main, w);
    pthread_attr_destroy(&a);
    if (rc != 0)
        goto fail;
    memset(req, 0, sizeof(*req)); /* now owned by the waiter */
    return 0;

fail:
    free(copy);
    free(w);
    atomic_fetch_sub(&srv->n_waiters, 1);
    return -1;
}

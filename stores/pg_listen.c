/* pg_listen.c: hearing of applies, so lookups that wait for a position
 * (min_positions) or a match (wait_ms) wake when any worker commits a
 * batch instead of at their next poll (store_ops.wait_applied).
 *
 * Every apply's offsets call notifies PG_NOTIFY_CHANNEL with the quoted
 * table name (pg_sql.c, pg_fence_fmt); PostgreSQL delivers it only once
 * that transaction committed. One listener thread per store, started by
 * the first wait, holds its own connection with LISTEN and counts the
 * notifications for this table in n_heard. It is a wake-up hint only:
 * the waiter always re-reads the offsets table or the entry, and keeps
 * polling with backoff, so a lost notification (listener reconnecting,
 * server silent) costs time, never correctness. A reconnect counts as a
 * notification, since what was applied meanwhile went unheard. */
#include "stores/pg_internal.h"

#include "base/clock.h"

#include <errno.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

static void pg_heard(struct pg_store *s, int listening)
{
    pthread_mutex_lock(&s->nlock);
    s->n_heard++;
    s->listening = listening;
    pthread_cond_broadcast(&s->ncond);
    pthread_mutex_unlock(&s->nlock);
}

static int pg_listen_stopping(struct pg_store *s)
{
    pthread_mutex_lock(&s->nlock);
    int stop = s->listen_stop;
    pthread_mutex_unlock(&s->nlock);
    return stop;
}

/* A connection with LISTEN in force, or NULL. */
static PGconn *pg_listen_connect(struct pg_store *s)
{
    struct store_err err = {0};
    int rc, io;
    PGconn *c = pg_connect_raw(s->dsn, &rc, &err);
    if (!c)
        return NULL;
    PGresult *res = pg_query(c, "LISTEN " PG_NOTIFY_CHANNEL, 0, NULL, &io);
    int ok = res && PQresultStatus(res) == PGRES_COMMAND_OK;
    PQclear(res);
    if (!ok) {
        PQfinish(c);
        return NULL;
    }
    return c;
}

/* 1 when c has notifications for this table; -1 when c broke. */
static int pg_listen_read(struct pg_store *s, PGconn *c)
{
    int hit = 0;
    if (!PQconsumeInput(c) || PQstatus(c) != CONNECTION_OK)
        return -1;
    PGnotify *n;
    while ((n = PQnotifies(c))) {
        if (n->extra && !strcmp(n->extra, s->qtable))
            hit = 1;
        PQfreemem(n);
    }
    return hit;
}

static void *pg_listen_main(void *arg)
{
    struct pg_store *s = arg;
    PGconn *c = NULL;
    int64_t retry_ms = PG_LISTEN_RETRY_MIN_MS, next_try = 0;

    while (!pg_listen_stopping(s)) {
        if (!c && edr_clock_ms() >= next_try) {
            if ((c = pg_listen_connect(s))) {
                retry_ms = PG_LISTEN_RETRY_MIN_MS;
                pg_heard(s, 1); /* what was applied meanwhile went unheard */
            } else {
                next_try = edr_clock_ms() + retry_ms;
                retry_ms = retry_ms * 2 > PG_LISTEN_RETRY_MAX_MS
                               ? PG_LISTEN_RETRY_MAX_MS
                               : retry_ms * 2;
            }
        }
        if (!c) {
            edr_sleep_ms(PG_LISTEN_SLICE_MS);
            continue;
        }
        struct pollfd p = {.fd = PQsocket(c), .events = POLLIN};
        int r = poll(&p, 1, PG_LISTEN_SLICE_MS);
        if (r < 0 && errno != EINTR)
            r = -1;
        int got = r > 0 ? pg_listen_read(s, c) : r < 0 ? -1 : 0;
        if (got < 0) {
            PQfinish(c);
            c = NULL;
            pg_heard(s, 0);
        } else if (got > 0) {
            pg_heard(s, 1);
        }
    }
    PQfinish(c);
    return NULL;
}

/* Starts the listener once; nlock held. */
static void pg_listen_start(struct pg_store *s)
{
    if (s->listen_state != 0)
        return;
    sigset_t all, old;
    sigfillset(&all);
    /* only worker/ takes signals */
    pthread_sigmask(SIG_SETMASK, &all, &old);
    s->listen_state =
        pthread_create(&s->listener, NULL, pg_listen_main, s) ? -1 : 1;
    pthread_sigmask(SIG_SETMASK, &old, NULL);
}

int pg_wait_applied(struct store *st, uint64_t *gen, int64_t until_ms)
{
    struct pg_store *s = (struct pg_store *)st;
    int rc;

    pthread_mutex_lock(&s->nlock);
    pg_listen_start(s);
    if (!s->listening) {
        *gen = s->n_heard;
        pthread_mutex_unlock(&s->nlock);
        return -1;
    }
    while (s->n_heard == *gen && s->listening) {
        int64_t left = until_ms - edr_clock_ms();
        if (left <= 0)
            break;
        struct timespec ts;
        clock_gettime(CLOCK_MONOTONIC, &ts);
        ts.tv_sec += left / 1000;
        ts.tv_nsec += (long)(left % 1000) * 1000000L;
        if (ts.tv_nsec >= 1000000000L) {
            ts.tv_sec++;
            ts.tv_nsec -= 1000000000L;
        }
        pthread_cond_timedwait(&s->ncond, &s->nlock, &ts);
    }
    rc = s->n_heard != *gen ? 1 : s->listening ? 0 : -1;
    *gen = s->n_heard;
    pthread_mutex_unlock(&s->nlock);
    return rc;
}

void pg_listen_stop(struct pg_store *s)
{
    pthread_mutex_lock(&s->nlock);
    int running = s->listen_state == 1;
    s->listen_stop = 1;
    pthread_mutex_unlock(&s->nlock);
    if (running)
        pthread_join(s->listener, NULL);
}

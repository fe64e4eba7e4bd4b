/* pg_conn.c: the PostgreSQL store's connections.
 *
 * The single writer connection, the small lazily connected reader pool,
 * and the pipeline plumbing (flushing while reading, one result per
 * query). A lost connection is finished and set to NULL; the next call
 * connects again. */
#include "stores/pg_internal.h"

#include "base/clock.h"
#include "stores/fault.h"
#include "stores/pg_dsn.h"

#include <errno.h>
#include <poll.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <sys/socket.h>
#include <sys/types.h>

/* ---- waiting, with a deadline -------------------------------------- */

/* Flushes c's output; with want_result, also waits until a result can be
 * read without blocking. Every wakeup (bytes in or room to send) resets
 * the PG_ANSWER_MS allowance: only a silent server times out. */
static int pg_wait(PGconn *c, int want_result)
{
    int64_t last = edr_clock_ms();
    for (;;) {
        int f = PQflush(c);
        if (f < 0)
            return PG_IO_BROKEN;
        if (f == 0 && (!want_result || !PQisBusy(c)))
            return PG_IO_OK;
        if (PQstatus(c) != CONNECTION_OK)
            return PG_IO_BROKEN;
        int64_t left = last + PG_ANSWER_MS - edr_clock_ms();
        if (left <= 0)
            return PG_IO_SILENT;
        struct pollfd p = {.fd = PQsocket(c),
                           .events = (short)(POLLIN | (f ? POLLOUT : 0))};
        int r = poll(&p, 1, (int)left);
        if (r < 0 && errno != EINTR)
            return PG_IO_BROKEN;
        if (r <= 0)
            continue;
        last = edr_clock_ms();
        if ((p.revents & (POLLIN | POLLERR | POLLHUP)) && !PQconsumeInput(c))
            return PG_IO_BROKEN;
    }
}

int pg_flush(PGconn *c)
{
    return pg_wait(c, 0);
}

int pg_await(PGconn *c)
{
    return pg_wait(c, 1);
}

PGresult *pg_next_result(PGconn *c, int *io)
{
    if ((*io = pg_await(c)) != PG_IO_OK)
        return NULL;
    PGresult *res = PQgetResult(c);
    if (!res)
        return NULL;
    if (PQresultStatus(res) == PGRES_PIPELINE_SYNC)
        return res; /* no NULL follows a sync */
    for (;;) {
        if ((*io = pg_await(c)) != PG_IO_OK) {
            PQclear(res);
            return NULL;
        }
        PGresult *extra = PQgetResult(c);
        if (!extra)
            break;
        PQclear(extra); /* none expected: one result per query */
        if (PQstatus(c) != CONNECTION_OK)
            break;
    }
    return res;
}

PGresult *pg_collect(PGconn *c, int *io)
{
    PGresult *keep = NULL;
    for (;;) {
        if ((*io = pg_await(c)) != PG_IO_OK) {
            PQclear(keep);
            return NULL;
        }
        PGresult *res = PQgetResult(c);
        if (!res)
            return keep;
        ExecStatusType es = PQresultStatus(res);
        if (keep && PQresultStatus(keep) == PGRES_FATAL_ERROR)
            PQclear(res); /* the first error tells what went wrong */
        else {
            PQclear(keep);
            keep = res;
        }
        if (es == PGRES_COPY_IN || es == PGRES_COPY_OUT ||
            es == PGRES_COPY_BOTH || PQstatus(c) != CONNECTION_OK)
            return keep;
    }
}

PGresult *pg_query(PGconn *c, const char *sql, int n, const char *const *vals,
                   int *io)
{
    if (!PQsendQueryParams(c, sql, n, NULL, vals, NULL, NULL, 0)) {
        *io = PG_IO_BROKEN;
        return NULL;
    }
    return pg_collect(c, io);
}

/* ---- connections ---------------------------------------------------- */

/* The writer's and readers' session settings, pipelined before the
 * statements are prepared: statement_timeout unless something (the DSN's
 * options, PGOPTIONS, ALTER ROLE or DATABASE) set one. */
static const char pg_session_sql[] =
    "SELECT set_config(name, $1, false) FROM pg_settings "
    "WHERE name = 'statement_timeout' AND source = 'default'";

/* Prepares the statements a writer or a reader uses, in one pipelined
 * round trip. */
int pg_prepare(struct pg_store *s, PGconn *c, int writer, struct store_err *err)
{
    static const Oid put_types[8] = {PG_TEXT_OID, PG_TEXT_OID, PG_TEXT_OID,
                                     PG_TEXT_OID, PG_TEXT_OID, PG_TEXT_OID,
                                     PG_TEXT_OID, PG_TEXT_OID};
    int first = writer ? PG_PUT : PG_GET,
        last = writer ? PG_CLEAR : PG_GET_AFTER;
    int rc = STORE_OK;

    const char *timeout[1] = {PG_STATEMENT_TIMEOUT};
    int io;

    if (!PQenterPipelineMode(c))
        return pg_fail_conn(err, STORE_TRANSIENT, "pipeline mode", c);
    if (!PQsendQueryParams(c, pg_session_sql, 1, NULL, timeout, NULL, NULL,
                           0)) {
        rc = pg_fail_conn(err, STORE_TRANSIENT, "prepare", c);
        goto out;
    }
    if (writer &&
        (!PQsendQueryParams(c, pg_stage_sql, 0, NULL, NULL, NULL, NULL, 0) ||
         !PQsendQueryParams(c, s->fence_sql, 0, NULL, NULL, NULL, NULL, 0))) {
        rc = pg_fail_conn(err, STORE_TRANSIENT, "prepare", c);
        goto out;
    }
    for (int i = first; i <= last; i++) {
        const Oid *types = i == PG_PUT ? put_types : NULL;
        if (!PQsendPrepare(c, pg_stmts[i].name, s->sql[i], pg_stmts[i].n_params,
                           types)) {
            rc = pg_fail_conn(err, STORE_TRANSIENT, "prepare", c);
            goto out;
        }
    }
    if (!PQpipelineSync(c)) {
        rc = pg_fail_conn(err, STORE_TRANSIENT, "prepare", c);
        goto out;
    }
    for (;;) {
        PGresult *res = pg_next_result(c, &io);
        if (!res) {
            rc = pg_fail_io(err, io, "prepare", c);
            goto out;
        }
        ExecStatusType es = PQresultStatus(res);
        if (es == PGRES_FATAL_ERROR && rc == STORE_OK) {
            struct store_err why = {0};
            rc = pg_fail_result(c, res, &why);
            /* Typically a missing column or constraint: a table of that
             * name that this store did not make. */
            if (rc == STORE_FATAL || rc == STORE_INVALID)
                rc = store_fail(err, STORE_FATAL,
                                "postgres: cannot prepare statements on %s "
                                "(is it laid out as schemas/README.md §4?): %s",
                                s->qtable, why.msg);
            else
                rc = store_fail(err, rc, "%s", why.msg);
        }
        PQclear(res);
        if (es == PGRES_PIPELINE_SYNC)
            break;
    }
out:
    /* After a failure the caller drops c, whatever state it is in. */
    if (rc == STORE_OK && !PQexitPipelineMode(c))
        rc = pg_fail_conn(err, STORE_TRANSIENT, "pipeline mode", c);
    return rc;
}

static void pg_ignore_notice(void *arg, const char *message)
{
    (void)arg;
    (void)message;
}

/* Connects to dsn; client encoding is forced to UTF-8 since entries and
 * keys are UTF-8, the DSN may override the application name and every
 * timeout. Asynchronous, so that the server's refusal reaches us as an
 * SQLSTATE (PQERRORS_SQLSTATE) rather than translated text, and so that
 * the whole set-up has one deadline. */
PGconn *pg_connect_raw(const char *dsn, int *rc, struct store_err *err)
{
    enum { MAX_KW = 10 };
    static const struct {
        const char *kw, *env, *val;
    } defaults[] = {
        {"keepalives", NULL, "1"},
        {"keepalives_idle", NULL, PG_KEEPALIVES_IDLE},
        {"keepalives_interval", NULL, PG_KEEPALIVES_INTERVAL},
        {"keepalives_count", NULL, PG_KEEPALIVES_COUNT},
        {"tcp_user_timeout", NULL, PG_TCP_USER_TIMEOUT},
    };
    const char *kw[MAX_KW], *val[MAX_KW];
    size_t n = 0;
    int timeout_s = PG_CONNECT_TIMEOUT_S;
    PQconninfoOption *opts = PQconninfoParse(dsn, NULL);
    PGconn *c = NULL;

    if (!opts) {
        char why[128];
        /* NULL for out of memory too; either way nothing to connect to. */
        pg_dsn_validate(dsn, why, sizeof(why));
        *rc = store_fail(err, STORE_INVALID, "postgres: %s", why);
        return NULL;
    }
    kw[n] = "application_name", val[n++] = "edr-worker";
    for (size_t i = 0; i < sizeof(defaults) / sizeof(defaults[0]); i++) {
        const PQconninfoOption *o = opts;
        while (o->keyword && strcmp(o->keyword, defaults[i].kw))
            o++;
        if (!o->keyword || !o->val)
            kw[n] = defaults[i].kw, val[n++] = defaults[i].val;
    }
    /* The DSN's or PGCONNECT_TIMEOUT's connect_timeout, else ours; as in
     * libpq, 0 or less waits for ever. */
    const char *ct = getenv("PGCONNECT_TIMEOUT");
    for (const PQconninfoOption *o = opts; o->keyword; o++)
        if (!strcmp(o->keyword, "connect_timeout") && o->val)
            ct = o->val;
    if (ct && *ct)
        timeout_s = atoi(ct);
    PQconninfoFree(opts);
    kw[n] = "dbname", val[n++] = dsn; /* later keywords override it */
    kw[n] = "client_encoding", val[n++] = "UTF8";
    kw[n] = NULL, val[n] = NULL;

    if (!(c = PQconnectStartParams(kw, val, 1)) ||
        PQstatus(c) == CONNECTION_BAD) {
        *rc = pg_fail_connect(err, c);
        goto fail;
    }
    PQsetErrorVerbosity(c, PQERRORS_SQLSTATE);
    int64_t deadline = edr_clock_ms() + (int64_t)timeout_s * 1000;
    PostgresPollingStatusType ps = PGRES_POLLING_WRITING;
    while (ps != PGRES_POLLING_OK) {
        if (ps == PGRES_POLLING_FAILED) {
            *rc = pg_fail_connect(err, c);
            goto fail;
        }
        int64_t left = deadline - edr_clock_ms();
        if (timeout_s > 0 && left <= 0) {
            *rc = store_fail(err, STORE_TRANSIENT,
                             "postgres: connect: no answer within %d s",
                             timeout_s);
            goto fail;
        }
        struct pollfd p = {.fd = PQsocket(c),
                           .events =
                               ps == PGRES_POLLING_READING ? POLLIN : POLLOUT};
        int r = poll(&p, 1, timeout_s > 0 ? (int)left : -1);
        if (r < 0 && errno != EINTR) {
            *rc = store_fail(err, STORE_TRANSIENT, "postgres: connect: poll");
            goto fail;
        }
        if (r > 0)
            ps = PQconnectPoll(c);
    }
    /* "relation already exists, skipping" and the like are not errors, and
     * only worker/ writes to the log. */
    PQsetNoticeProcessor(c, pg_ignore_notice, NULL);
    /* Sends never block, and no wait is unbounded: every wait goes
     * through pg_wait(). */
    if (PQsetnonblocking(c, 1) != 0) {
        *rc = pg_fail_conn(err, STORE_TRANSIENT, "connect", c);
        goto fail;
    }
    *rc = STORE_OK;
    return c;
fail:
    PQfinish(c);
    return NULL;
}

PGconn *pg_connect(struct pg_store *s, int writer, int *rc,
                   struct store_err *err)
{
    PGconn *c = pg_connect_raw(s->dsn, rc, err);
    if (!c && *rc == STORE_AUTH) {
        /* The store was open: credentials being rotated are an outage
         * (store.h, STORE_AUTH). */
        *rc = STORE_TRANSIENT;
        if (err)
            err->status = STORE_TRANSIENT;
    }
    if (c && (*rc = pg_prepare(s, c, writer, err)) != STORE_OK) {
        PQfinish(c);
        c = NULL;
    }
    return c;
}

/* A pooled connection may have died while idle (server restart). libpq
 * reports the server's goodbye as a mere notice and only notices the
 * closed socket when the next query fails; a non-blocking peek finds it
 * first, so that query goes to a fresh connection instead. */
static int pg_alive(PGconn *c)
{
    for (int i = 0; i < 2; i++) {
        if (PQstatus(c) != CONNECTION_OK || !PQconsumeInput(c) ||
            PQstatus(c) != CONNECTION_OK ||
            PQtransactionStatus(c) != PQTRANS_IDLE)
            return 0;
        char ch;
        ssize_t r = recv(PQsocket(c), &ch, 1, MSG_PEEK | MSG_DONTWAIT);
        if (r == 0)
            return 0; /* end of stream: the server closed it */
        if (r < 0)
            return errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR;
        /* Unread bytes (TLS records, say): let libpq take them, look
         * again. */
    }
    return 1;
}

/* Makes sure the writer is connected; wlock held. */
int pg_writer_ready(struct pg_store *s, struct store_err *err)
{
    if (s->writer && pg_alive(s->writer))
        return STORE_OK;
    PQfinish(s->writer);
    int rc;
    s->writer = pg_connect(s, 1, &rc, err);
    return rc;
}

/* Lends a reader connection, connecting one when the pool is short. */
PGconn *pg_reader_take(struct pg_store *s, int *rc, struct store_err *err)
{
    PGconn *c = NULL;

    struct timespec until;
    clock_gettime(CLOCK_MONOTONIC, &until);
    until.tv_sec += PG_POOL_WAIT_MS / 1000;
    until.tv_nsec += (long)(PG_POOL_WAIT_MS % 1000) * 1000000L;
    if (until.tv_nsec >= 1000000000L) {
        until.tv_sec++;
        until.tv_nsec -= 1000000000L;
    }
    int64_t t0 = edr_clock_ms(), waited = 0;
    pthread_mutex_lock(&s->plock);
    while (s->n_idle == 0 && s->n_open >= PG_READERS) {
        waited = 1;
        /* Every lent connection is stuck on a server that stopped
         * answering: give up well before the lenders do. */
        if (pthread_cond_timedwait(&s->pcond, &s->plock, &until) == ETIMEDOUT) {
            pthread_mutex_unlock(&s->plock);
            *rc = store_fail(err, STORE_TRANSIENT,
                             "postgres: no reader connection free within "
                             "%d s",
                             PG_POOL_WAIT_MS / 1000);
            return NULL;
        }
    }
    if (waited && s->reader_fail_ms >= t0) {
        pthread_mutex_unlock(&s->plock);
        *rc = store_fail(err, STORE_TRANSIENT,
                         "postgres: server unavailable (another reader "
                         "connection failed meanwhile)");
        return NULL;
    }
    if (s->n_idle > 0)
        c = s->idle[--s->n_idle];
    else
        s->n_open++; /* a slot, connected below without the lock */
    pthread_mutex_unlock(&s->plock);

    if (c && !pg_alive(c)) {
        PQfinish(c);
        c = NULL;
    }
    if (!c && !(c = pg_connect(s, 0, rc, err))) {
        pthread_mutex_lock(&s->plock);
        s->reader_fail_ms = edr_clock_ms();
        s->n_open--;
        pthread_cond_signal(&s->pcond);
        pthread_mutex_unlock(&s->plock);
        return NULL;
    }
    *rc = STORE_OK;
    return c;
}

/* Returns a lent connection; NULL (dropped after a loss) frees its slot. */
void pg_reader_give(struct pg_store *s, PGconn *c)
{
    if (c && PQstatus(c) != CONNECTION_OK) {
        PQfinish(c);
        c = NULL;
    }
    pthread_mutex_lock(&s->plock);
    if (c) {
        s->idle[s->n_idle++] = c;
    } else {
        s->reader_fail_ms = edr_clock_ms();
        s->n_open--;
    }
    pthread_cond_signal(&s->pcond);
    pthread_mutex_unlock(&s->plock);
}

/* Runs one prepared statement outside a pipeline. On a lost link *cp is
 * finished and set to NULL. Returns the result (caller clears) or NULL
 * with *rc and err set. */
/* pg_exec and pg_exec_sql: a prepared statement (name) or text (sql). */
static PGresult *pg_exec_any(PGconn **cp, const char *name, const char *sql,
                             int n, const char *const *vals, int *rc,
                             struct store_err *err)
{
    if (fault_hit(FAULT_QUERY)) {
        *rc = pg_fault(cp, err);
        return NULL;
    }
    int io = PG_IO_BROKEN;
    PGresult *res = NULL;
    int sent = name ? PQsendQueryPrepared(*cp, name, n, vals, NULL, NULL, 0)
                    : PQsendQueryParams(*cp, sql, n, NULL, vals, NULL, NULL, 0);
    if (sent)
        res = pg_collect(*cp, &io);
    ExecStatusType es = PQresultStatus(res);
    if (res && (es == PGRES_TUPLES_OK || es == PGRES_COMMAND_OK)) {
        *rc = STORE_OK;
        return res;
    }
    *rc =
        res ? pg_fail_result(*cp, res, err) : pg_fail_io(err, io, "query", *cp);
    PQclear(res);
    if (!res || PQstatus(*cp) != CONNECTION_OK) {
        PQfinish(*cp);
        *cp = NULL;
    }
    return NULL;
}

PGresult *pg_exec(PGconn **cp, enum pg_stmt st, int n, const char *const *vals,
                  int *rc, struct store_err *err)
{
    return pg_exec_any(cp, pg_stmts[st].name, NULL, n, vals, rc, err);
}

PGresult *pg_exec_sql(PGconn **cp, const char *sql, int n,
                      const char *const *vals, int *rc, struct store_err *err)
{
    return pg_exec_any(cp, NULL, sql, n, vals, rc, err);
}

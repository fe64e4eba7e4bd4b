/* pg_conn.c: the PostgreSQL store's connections.
 *
 * The single writer connection, the small lazily connected reader pool,
 * and the pipeline plumbing (flushing while reading, one result per
 * query). A lost connection is finished and set to NULL; the next call
 * connects again. */
#include "stores/pg_internal.h"

#include "stores/fault.h"

#include <errno.h>
#include <poll.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/types.h>

/* ---- connections ---------------------------------------------------- */

/* Sends what libpq buffered while reading whatever the server answers, so
 * a long pipeline cannot deadlock with both socket buffers full. */
int pg_flush(PGconn *c)
{
    for (;;) {
        int r = PQflush(c);
        if (r == 0)
            return 0;
        if (r < 0)
            return -1;
        struct pollfd p = {.fd = PQsocket(c), .events = POLLIN | POLLOUT};
        if (poll(&p, 1, -1) < 0) {
            if (errno == EINTR)
                continue;
            return -1;
        }
        if ((p.revents & POLLIN) && !PQconsumeInput(c))
            return -1;
    }
}

/* Reads the results of one pipelined query: returns its result (caller
 * clears) after consuming the NULL that ends it. NULL when the link
 * broke. */
PGresult *pg_next_result(PGconn *c)
{
    PGresult *res = PQgetResult(c);
    if (!res)
        return NULL;
    ExecStatusType es = PQresultStatus(res);
    if (es == PGRES_PIPELINE_SYNC)
        return res; /* no NULL follows a sync */
    PGresult *extra;
    while ((extra = PQgetResult(c)) != NULL) {
        PQclear(extra); /* none expected: one result per query */
        if (PQstatus(c) != CONNECTION_OK)
            break;
    }
    return res;
}

/* Prepares the statements a writer or a reader uses, in one pipelined
 * round trip. */
int pg_prepare(struct pg_store *s, PGconn *c, int writer, struct store_err *err)
{
    static const Oid put_types[8] = {PG_TEXT_OID, PG_TEXT_OID, PG_TEXT_OID,
                                     PG_TEXT_OID, PG_TEXT_OID, PG_TEXT_OID,
                                     PG_TEXT_OID, PG_TEXT_OID};
    int first = writer ? PG_PUT : PG_GET, last = writer ? PG_CLEAR : PG_OFFSETS;
    int rc = STORE_OK;

    if (!PQenterPipelineMode(c))
        return pg_fail_conn(err, STORE_TRANSIENT, "pipeline mode", c);
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
    if (!PQpipelineSync(c) || pg_flush(c) < 0) {
        rc = pg_fail_conn(err, STORE_TRANSIENT, "prepare", c);
        goto out;
    }
    for (;;) {
        PGresult *res = pg_next_result(c);
        if (!res) {
            rc = pg_fail_conn(err, STORE_TRANSIENT, "prepare", c);
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
    if (PQstatus(c) == CONNECTION_OK && !PQexitPipelineMode(c) &&
        rc == STORE_OK)
        rc = pg_fail_conn(err, STORE_TRANSIENT, "pipeline mode", c);
    return rc;
}

static void pg_ignore_notice(void *arg, const char *message)
{
    (void)arg;
    (void)message;
}

/* Connects to s->dsn; client encoding is forced to UTF-8 since entries and
 * keys are UTF-8, the DSN may override the application name. */
PGconn *pg_connect_raw(const char *dsn, int *rc, struct store_err *err)
{
    const char *const kw[] = {"application_name", "dbname", "client_encoding",
                              NULL};
    const char *const val[] = {"edr-worker", dsn, "UTF8", NULL};
    PGconn *c = PQconnectdbParams(kw, val, 1);
    if (!c || PQstatus(c) != CONNECTION_OK) {
        *rc = pg_fail_conn(err, STORE_TRANSIENT, "connect", c);
        PQfinish(c);
        return NULL;
    }
    /* "relation already exists, skipping" and the like are not errors, and
     * only worker/ writes to the log. */
    PQsetNoticeProcessor(c, pg_ignore_notice, NULL);
    /* Sends never block: pg_flush() interleaves reading (libpq still waits
     * for results in PQgetResult and PQexec*). */
    if (PQsetnonblocking(c, 1) != 0) {
        *rc = pg_fail_conn(err, STORE_TRANSIENT, "connect", c);
        PQfinish(c);
        return NULL;
    }
    *rc = STORE_OK;
    return c;
}

PGconn *pg_connect(struct pg_store *s, int writer, int *rc,
                   struct store_err *err)
{
    PGconn *c = pg_connect_raw(s->dsn, rc, err);
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

    pthread_mutex_lock(&s->plock);
    while (s->n_idle == 0 && s->n_open >= PG_READERS)
        pthread_cond_wait(&s->pcond, &s->plock);
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
    if (c)
        s->idle[s->n_idle++] = c;
    else
        s->n_open--;
    pthread_cond_signal(&s->pcond);
    pthread_mutex_unlock(&s->plock);
}

/* Runs one prepared statement outside a pipeline. On a lost link *cp is
 * finished and set to NULL. Returns the result (caller clears) or NULL
 * with *rc and err set. */
PGresult *pg_exec(PGconn **cp, enum pg_stmt st, int n, const char *const *vals,
                  int *rc, struct store_err *err)
{
    if (fault_hit(FAULT_QUERY)) {
        *rc = pg_fault(cp, err);
        return NULL;
    }
    PGresult *res =
        PQexecPrepared(*cp, pg_stmts[st].name, n, vals, NULL, NULL, 0);
    ExecStatusType es = PQresultStatus(res);
    if (res && (es == PGRES_TUPLES_OK || es == PGRES_COMMAND_OK)) {
        *rc = STORE_OK;
        return res;
    }
    *rc = pg_fail_result(*cp, res, err);
    PQclear(res);
    if (PQstatus(*cp) != CONNECTION_OK) {
        PQfinish(*cp);
        *cp = NULL;
    }
    return NULL;
}

/* pg_store.c: the PostgreSQL store (schemas/README.md §4): open, close and
 * its table of operations; the work is done by the stores/pg_*.c files
 * listed in stores/pg_internal.h, the only ones that include libpq-fe.h.
 *
 * One table keyed by the connection key (schemas/edr_key.h) plus
 * "<table>_offsets" for the Kafka progress, written in the same
 * transaction as the data. The table has the columns of schemas/README.md §4
 * and edr_text, the entry exactly as given (jsonb reorders keys and
 * rewrites escapes; reads return edr_text).
 *
 * The single writer thread owns one connection; readers take a connection
 * from a small lazily connected pool, so lookups never wait for the
 * writer. A lost connection (or an injected FAULT_QUERY) drops that
 * connection, which makes the server roll back any open transaction, and
 * reports STORE_TRANSIENT; the next call connects again. */
#include "stores/pg_internal.h"

#include "stores/pg_dsn.h"

#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

/* ---- open and close ------------------------------------------------- */

static const struct store_ops pg_store_ops;

static void pg_free(struct pg_store *s)
{
    if (!s)
        return;
    pg_listen_stop(s);
    PQfinish(s->writer);
    for (size_t i = 0; i < s->n_idle; i++)
        PQfinish(s->idle[i]);
    for (int i = 0; i < PG_NSTMT; i++)
        free(s->sql[i]);
    free(s->fence_sql);
    free(s->dsn);
    pthread_mutex_destroy(&s->wlock);
    pthread_mutex_destroy(&s->plock);
    pthread_cond_destroy(&s->pcond);
    pthread_mutex_destroy(&s->nlock);
    pthread_cond_destroy(&s->ncond);
    free(s);
}

struct store *pg_store_open(const char *dsn, const char *table,
                            struct store_err *err)
{
    struct pg_store *s = NULL;
    PGconn *c = NULL;
    int rc;

    char why[128];
    if (pg_dsn_validate(dsn, why, sizeof(why)) != 0) {
        store_fail(err, STORE_INVALID, "postgres: %s", why);
        return NULL;
    }
    if (!pg_store_table_valid(table)) {
        store_fail(err, STORE_INVALID,
                   "postgres: table name must match [A-Za-z_][A-Za-z0-9_]* "
                   "and be at most %d bytes",
                   PG_STORE_TABLE_MAX);
        return NULL;
    }
    if (!(s = calloc(1, sizeof(*s))) || !(s->dsn = strdup(dsn))) {
        free(s);
        store_fail(err, STORE_FATAL, "postgres: out of memory");
        return NULL;
    }
    s->base.ops = &pg_store_ops;
    pthread_mutex_init(&s->wlock, NULL);
    pthread_mutex_init(&s->plock, NULL);
    pthread_condattr_t ca;
    pthread_condattr_init(&ca);
    /* pg_reader_take() waits with a deadline on the monotonic clock. */
    pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
    pthread_cond_init(&s->pcond, &ca);
    pthread_mutex_init(&s->nlock, NULL);
    pthread_cond_init(&s->ncond, &ca); /* pg_wait_applied: monotonic too */
    pthread_condattr_destroy(&ca);
    snprintf(s->table, sizeof(s->table), "%s", table);
    pg_quote(s->qtable, sizeof(s->qtable), table, "");
    pg_quote(s->qoffsets, sizeof(s->qoffsets), table, "_offsets");
    for (int i = 0; i < PG_NSTMT; i++) {
        if (!(s->sql[i] = pg_expand(pg_stmts[i].fmt, s->qtable, s->qoffsets))) {
            store_fail(err, STORE_FATAL, "postgres: out of memory");
            goto fail;
        }
    }
    if (!(s->fence_sql = pg_expand(pg_fence_fmt, s->qtable, s->qoffsets))) {
        store_fail(err, STORE_FATAL, "postgres: out of memory");
        goto fail;
    }

    if (!(c = pg_connect_raw(s->dsn, &rc, err)))
        goto fail;
    if (pg_create_schema(s, c, err) != STORE_OK ||
        pg_prepare(s, c, 1, err) != STORE_OK)
        goto fail;
    s->writer = c;
    c = NULL; /* now owned by s */
    return &s->base;
fail:
    PQfinish(c);
    pg_free(s);
    return NULL;
}

static void pg_close(struct store *st)
{
    pg_free((struct pg_store *)st);
}

int pg_store_estimate(struct store *st, uint64_t *out, struct store_err *err)
{
    if (!st || st->ops != &pg_store_ops) {
        if (out)
            *out = 0;
        return store_fail(err, STORE_INVALID,
                          "postgres: estimate needs a PostgreSQL store");
    }
    return pg_estimate((struct pg_store *)st, out, err);
}

static const struct store_ops pg_store_ops = {
    .name = "postgres",
    .caps = {.shared = 1},
    .apply = pg_apply,
    .get = pg_get,
    .get_transfer_id = pg_get_transfer_id,
    .count = pg_count,
    .list = pg_list,
    .get_by_transfer_id = pg_get_by_transfer_id,
    .get_after = pg_get_after,
    .wait_applied = pg_wait_applied,
    .clear_party = pg_clear_party,
    .load_offsets = pg_load_offsets,
    .estimate = pg_store_estimate,
    .close = pg_close,
};

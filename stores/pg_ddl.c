/* pg_ddl.c: creating and dropping the PostgreSQL store's tables.
 *
 * The layout is schemas/README.md §4 plus edr_text. Workers starting at
 * once serialise on an advisory lock; a worker without the right to
 * create anything starts when everything is already there. */
#include "stores/pg_internal.h"

#include "stores/fault.h"

#include <stdio.h>
#include <string.h>

/* ---- schema --------------------------------------------------------- */

/* Runs one plain statement (DDL) with optional text parameters. */
int pg_run(PGconn *c, const char *sql, int n, const char *const *vals,
           struct store_err *err)
{
    if (fault_hit(FAULT_QUERY))
        return store_fail(err, STORE_TRANSIENT,
                          "postgres: connection lost (injected fault)");
    int io;
    PGresult *res = pg_query(c, sql, n, vals, &io);
    ExecStatusType es = PQresultStatus(res);
    int rc = STORE_OK;
    if (!res)
        rc = pg_fail_io(err, io, "schema", c);
    else if (es != PGRES_COMMAND_OK && es != PGRES_TUPLES_OK)
        rc = pg_fail_result(c, res, err);
    PQclear(res);
    return rc;
}

/* Returns 1 when the tables, the index and every column exist, so a
 * worker without the right to create anything can still start. */
static int pg_schema_present(PGconn *c, const char *const names[4])
{
    int io;
    PGresult *res = pg_query(
        c,
        "SELECT to_regclass($1) IS NOT NULL AND to_regclass($2) IS NOT NULL "
        "AND to_regclass($3) IS NOT NULL AND to_regclass($4) IS NOT NULL "
        "AND EXISTS (SELECT 1 FROM "
        "pg_attribute WHERE attrelid = to_regclass($1) AND attname = "
        "'edr_text' AND NOT attisdropped)",
        4, names, &io);
    int yes = PQresultStatus(res) == PGRES_TUPLES_OK && PQntuples(res) == 1 &&
              !strcmp(PQgetvalue(res, 0, 0), "t");
    PQclear(res);
    return yes;
}

/* Creates what is missing. The layout is schemas/README.md §4 plus edr_text:
 * jsonb reorders keys and rewrites escapes and numbers, while a store
 * returns an entry exactly as it was given (store.h). */
int pg_create_schema(struct pg_store *s, PGconn *c, struct store_err *err)
{
    char sql[5][1024];
    char qindex[PG_STORE_TABLE_MAX + 8 + 3];
    char qasset[PG_STORE_TABLE_MAX + 8 + 3];
    const char *lock_key[] = {PG_DDL_LOCK_KEY};
    int rc;

    /* The table name was validated; the index name fits 63 bytes too. */
    pg_quote(qindex, sizeof(qindex), s->table, "_tp_idx");
    pg_quote(qasset, sizeof(qasset), s->table, "_as_idx");
    snprintf(sql[0], sizeof(sql[0]),
             "CREATE TABLE IF NOT EXISTS %s ("
             "connection_key text COLLATE \"C\" PRIMARY KEY, "
             "counter_party_id text NOT NULL, "
             "counter_party_address text NOT NULL, "
             "query_checksum text NOT NULL, "
             "policy_checksum text NOT NULL, "
             "transfer_process_id text NOT NULL, "
             "edr jsonb NOT NULL, edr_text text)",
             s->qtable);
    /* A hash index has no size limit per value (a B-tree rejects values
     * over ~2.7 kB), and lookups by transfer id are equality only. */
    snprintf(sql[1], sizeof(sql[1]),
             "CREATE INDEX IF NOT EXISTS %s ON %s "
             "USING hash (transfer_process_id)",
             qindex, s->qtable);
    snprintf(sql[2], sizeof(sql[2]),
             "CREATE TABLE IF NOT EXISTS %s ("
             "topic text NOT NULL, partition integer NOT NULL, "
             "next_offset bigint NOT NULL, PRIMARY KEY (topic, partition))",
             s->qoffsets);
    /* A table made by another program has rows without edr_text: reads
     * fall back to edr for those. */
    snprintf(sql[3], sizeof(sql[3]),
             "ALTER TABLE %s ADD COLUMN IF NOT EXISTS edr_text text",
             s->qtable);

    /* The asset id filters (v2): = and LIKE 'prefix%' on the first
     * PG_ASSET_CHARS characters, byte-wise (text_pattern_ops), whatever
     * the database's collation. Added to a v1 table in place. */
    snprintf(sql[4], sizeof(sql[4]),
             "CREATE INDEX IF NOT EXISTS %s ON %s "
             "(left(" PG_ASSET_EXPR ", %d) text_pattern_ops)",
             qasset, s->qtable, PG_ASSET_CHARS);

    const char *names[4] = {s->qtable, s->qoffsets, qindex, qasset};
    if (pg_schema_present(c, names))
        return STORE_OK;
    if ((rc = pg_run(c, "BEGIN", 0, NULL, err)) != STORE_OK)
        return rc;
    if ((rc = pg_run(c, "SELECT pg_advisory_xact_lock($1::bigint)", 1, lock_key,
                     err)) != STORE_OK)
        goto out;
    for (int i = 0; i < 5; i++)
        if ((rc = pg_run(c, sql[i], 0, NULL, err)) != STORE_OK)
            goto out;
    rc = pg_run(c, "COMMIT", 0, NULL, err);
out:
    if (rc != STORE_OK && PQstatus(c) == CONNECTION_OK) {
        int io;
        PQclear(pg_query(c, "ROLLBACK", 0, NULL, &io));
    }
    return rc;
}

int pg_store_drop(const char *dsn, const char *table, struct store_err *err)
{
    char sql[256], qtable[PG_STORE_TABLE_MAX + 3],
        qoffsets[PG_STORE_TABLE_MAX + 8 + 3];
    PGconn *c;
    int rc;

    if (!pg_store_table_valid(table))
        return store_fail(err, STORE_INVALID, "postgres: bad table name");
    if (!(c = pg_connect_raw(dsn, &rc, err)))
        return rc;
    pg_quote(qtable, sizeof(qtable), table, "");
    pg_quote(qoffsets, sizeof(qoffsets), table, "_offsets");
    snprintf(sql, sizeof(sql), "DROP TABLE IF EXISTS %s, %s", qtable, qoffsets);
    rc = pg_run(c, sql, 0, NULL, err);
    PQfinish(c);
    return rc;
}

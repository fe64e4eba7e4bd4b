/* pg_sql.c: the PostgreSQL store's SQL text (stores/pg_internal.h).
 *
 * Every prepared statement, the writer's session objects (staging table,
 * fenced offsets function) and the quoting of the one identifier that is
 * ever put into SQL: the validated table name. Every value travels as a
 * parameter. */
#include "stores/pg_internal.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* Statement text; pg_expand() puts the quoted table for {t} and the
 * quoted offsets table for {o}. */
const struct pg_stmt_def pg_stmts[PG_NSTMT] = {
    [PG_PUT] =
        {"edr_put",
         "INSERT INTO {t} (connection_key, counter_party_id, "
         "counter_party_address, query_checksum, policy_checksum, "
         "transfer_process_id, edr, edr_text) VALUES ($1, $2, $3, $4, "
         "$5, $6, coalesce($8, $7)::jsonb, $7) ON CONFLICT (connection_key) DO "
         "UPDATE SET "
         "counter_party_id = EXCLUDED.counter_party_id, "
         "counter_party_address = EXCLUDED.counter_party_address, "
         "query_checksum = EXCLUDED.query_checksum, "
         "policy_checksum = EXCLUDED.policy_checksum, "
         "transfer_process_id = EXCLUDED.transfer_process_id, "
         "edr = EXCLUDED.edr, edr_text = EXCLUDED.edr_text",
         8},
    /* A put-only batch, copied into the session's staging table: the last
     * put of each key wins, as applying them in order would. */
    [PG_MERGE] = {"edr_merge",
                  "INSERT INTO {t} (connection_key, counter_party_id, "
                  "counter_party_address, query_checksum, policy_checksum, "
                  "transfer_process_id, edr, edr_text) "
                  "SELECT DISTINCT ON (connection_key) connection_key, "
                  "counter_party_id, counter_party_address, query_checksum, "
                  "policy_checksum, transfer_process_id, "
                  "coalesce(edr_json, edr)::jsonb, edr "
                  "FROM pg_temp.edr_stage ORDER BY connection_key, ord DESC "
                  "ON CONFLICT (connection_key) DO UPDATE SET "
                  "counter_party_id = EXCLUDED.counter_party_id, "
                  "counter_party_address = EXCLUDED.counter_party_address, "
                  "query_checksum = EXCLUDED.query_checksum, "
                  "policy_checksum = EXCLUDED.policy_checksum, "
                  "transfer_process_id = EXCLUDED.transfer_process_id, "
                  "edr = EXCLUDED.edr, edr_text = EXCLUDED.edr_text",
                  0},
    [PG_DEL] = {"edr_del", "DELETE FROM {t} WHERE connection_key = $1", 1},
    [PG_DEL_IF] = {"edr_del_if",
                   "DELETE FROM {t} WHERE connection_key = $1 "
                   "AND transfer_process_id = $2",
                   2},
    /* Every offset of the batch in one call, fenced (pg_fence_sql). */
    [PG_OFFSET_PUT] = {"edr_offset_put",
                       "SELECT pg_temp.edr_offsets_put($1, $2::integer[], "
                       "$3::bigint[], $4::bigint[])",
                       4},
    [PG_CLEAR] = {"edr_clear",
                  "DELETE FROM {t} WHERE strpos(counter_party_id, $1) > 0", 1},
    [PG_GET] = {"edr_get",
                "SELECT transfer_process_id, coalesce(edr_text, edr::text), "
                "edr_text IS NULL FROM {t} WHERE connection_key = $1",
                1},
    [PG_TID] = {"edr_tid",
                "SELECT transfer_process_id FROM {t} "
                "WHERE connection_key = $1",
                1},
    [PG_COUNT] = {"edr_count", "SELECT count(*) FROM {t}", 0},
    [PG_COUNT_SUB] = {"edr_count_sub",
                      "SELECT count(*) FROM {t} "
                      "WHERE strpos(counter_party_id, $1) > 0",
                      1},
#define PG_LIST_COLS "SELECT " PG_ROW_COLS " FROM {t} "
    [PG_LIST] = {"edr_list", PG_LIST_COLS "ORDER BY connection_key LIMIT $1",
                 1},
    [PG_LIST_SUB] = {"edr_list_sub",
                     PG_LIST_COLS "WHERE strpos(counter_party_id, $1) > 0 "
                                  "ORDER BY connection_key LIMIT $2",
                     2},
    [PG_LIST_CUR] = {"edr_list_cur",
                     PG_LIST_COLS "WHERE connection_key > $1 "
                                  "ORDER BY connection_key LIMIT $2",
                     2},
    [PG_LIST_CUR_SUB] = {"edr_list_cur_sub",
                         PG_LIST_COLS "WHERE connection_key > $1 AND "
                                      "strpos(counter_party_id, $2) > 0 "
                                      "ORDER BY connection_key LIMIT $3",
                         3},
#undef PG_LIST_COLS
    /* Several holders: the smallest connection key (schemas/README.md
     * §2); the hash index finds them. */
    [PG_BY_TID] = {"edr_by_tid",
                   "SELECT " PG_ROW_COLS ", coalesce(edr_text, edr::text), "
                   "edr_text IS NULL FROM {t} WHERE transfer_process_id = $1 "
                   "ORDER BY connection_key LIMIT 1",
                   1},
    /* The server's running count of live rows (pg_store_estimate()): no
     * scan. $1 is the quoted table name. */
    [PG_ESTIMATE] = {"edr_estimate",
                     "SELECT coalesce((SELECT greatest(n_live_tup, 0) FROM "
                     "pg_stat_user_tables WHERE relid = to_regclass($1)), 0)",
                     1},
    /* get with min_positions (pg_get_after): the positions check and the
     * read in one statement, so one snapshot holds both (the row is at
     * least as recent as the offsets that passed) and one round trip does
     * it. $2 and $3: the partitions and offsets needed, as arrays. The
     * columns: reached, found, then PG_GET's. */
    [PG_GET_AFTER] =
        {"edr_get_after",
         "SELECT r.reached, g.connection_key IS NOT NULL, "
         "g.transfer_process_id, coalesce(g.edr_text, g.edr::text), "
         "g.edr_text IS NULL FROM (SELECT coalesce(bool_and(o.next_offset "
         "IS NOT NULL AND o.next_offset > n.off), true) AS reached "
         "FROM unnest($2::integer[], $3::bigint[]) AS n(p, off) "
         "LEFT JOIN {o} o ON o.topic = $1 AND o.partition = n.p) r "
         "LEFT JOIN {t} g ON r.reached AND g.connection_key = $4",
         4},
    [PG_OFFSETS] = {"edr_offsets",
                    "SELECT partition, next_offset FROM {o} "
                    "WHERE topic = $1 ORDER BY partition",
                    1},
};
/* ---- names ---------------------------------------------------------- */

int pg_store_table_valid(const char *table)
{
    if (!table || !*table)
        return 0;
    size_t n = strlen(table);
    if (n > PG_STORE_TABLE_MAX)
        return 0;
    for (size_t i = 0; i < n; i++) {
        char c = table[i];
        int alpha =
            (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || c == '_';
        if (!alpha && !(i > 0 && c >= '0' && c <= '9'))
            return 0;
    }
    return 1;
}

/* Quotes an already validated name, so mixed case is kept as given and no
 * reserved word can break the statement. */
void pg_quote(char *out, size_t size, const char *table, const char *suffix)
{
    snprintf(out, size, "\"%s%s\"", table, suffix);
}

/* Returns a malloc'd copy of fmt with {t} and {o} replaced by the quoted
 * names, or NULL when out of memory. */
char *pg_expand(const char *fmt, const char *qtable, const char *qoffsets)
{
    size_t n = strlen(fmt) + 4 * (strlen(qtable) + strlen(qoffsets)) + 1;
    char *out = malloc(n), *w = out;
    if (!out)
        return NULL;
    for (const char *r = fmt; *r;) {
        const char *name = NULL;
        if (!strncmp(r, "{t}", 3))
            name = qtable;
        else if (!strncmp(r, "{o}", 3))
            name = qoffsets;
        if (name) {
            size_t len = strlen(name);
            memcpy(w, name, len);
            w += len;
            r += 3;
        } else {
            *w++ = *r++;
        }
    }
    *w = '\0';
    return out;
}
/* The writer's staging table for put-only batches (pg_copy_in()): private
 * to its session, emptied by every commit and rollback. */
const char pg_stage_sql[] =
    "CREATE TEMP TABLE IF NOT EXISTS edr_stage (ord integer, "
    "connection_key text, counter_party_id text, counter_party_address text, "
    "query_checksum text, policy_checksum text, transfer_process_id text, "
    "edr text, edr_json text) ON COMMIT DELETE ROWS";

/* The writer's offsets upsert with the fence (store.h, struct
 * store_offset), private to its session like edr_stage. For each
 * partition: upsert next_offset unless first_offset >= 0 and the stored
 * next_offset is past it. ON CONFLICT locks the row whether or not the
 * WHERE holds, and waits for a concurrent inserter, so two writers of one
 * partition serialise here and the later one sees the other's progress.
 * Any fenced partition raises SQLSTATE PG_FENCED_STATE naming them all,
 * which aborts the pipeline: the transaction rolls back whole. Sent first
 * in the batch's transaction, so a zombie writer stops before its ops.
 * It also notifies PG_NOTIFY_CHANNEL with the quoted table name: lookups
 * waiting for a position (on any worker) wake when the batch commits. */
const char pg_fence_fmt[] =
    "CREATE OR REPLACE FUNCTION pg_temp.edr_offsets_put(t text, "
    "p integer[], f bigint[], n bigint[]) RETURNS void "
    "LANGUAGE plpgsql AS $edr$ DECLARE bad text; BEGIN "
    "FOR i IN 1 .. coalesce(array_length(p, 1), 0) LOOP "
    "INSERT INTO {o} AS o (topic, partition, next_offset) "
    "VALUES (t, p[i], n[i]) ON CONFLICT (topic, partition) "
    "DO UPDATE SET next_offset = EXCLUDED.next_offset "
    "WHERE f[i] < 0 OR o.next_offset <= f[i]; "
    "IF NOT FOUND THEN bad := concat_ws(', ', bad, p[i]::text); END IF; "
    "END LOOP; "
    "IF bad IS NOT NULL THEN RAISE EXCEPTION USING ERRCODE = '" PG_FENCED_STATE
    "', MESSAGE = 'offsets fenced: partition(s) ' || bad || "
    "' advanced by another writer past this batch''s first offset'; "
    "END IF; "
    /* delivered to every listener at COMMIT, never before (pg_listen.c) */
    "PERFORM pg_notify('" PG_NOTIFY_CHANNEL "', '{t}'); END $edr$";

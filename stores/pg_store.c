/* pg_store.c: the PostgreSQL store (schemas/README.md §4), the only file that
 * includes libpq-fe.h.
 *
 * One table keyed by the connection key (schemas/edr_key.h) plus
 * "<table>_offsets" for the Kafka progress, written in the same
 * transaction as the data. The table has the columns of schemas/README.md §4
 * and edr_text, the entry exactly as given (jsonb reorders keys and
 * rewrites escapes; reads return edr_text).
 *
 * The single writer thread owns one connection. A batch goes as one libpq
 * pipeline (BEGIN, the offsets, one prepared upsert or delete per op in
 * order, COMMIT): one round trip instead of one per op, and ops on the
 * same key apply in handler order. A large batch of puts only is instead
 * copied into a session staging table and merged by one INSERT ... SELECT
 * (measured faster: fewer statements for the server). Readers take a
 * connection from a small lazily connected pool, so lookups never wait
 * for the writer.
 *
 * A lost connection (or an injected FAULT_QUERY) drops that connection,
 * which makes the server roll back any open transaction, and reports
 * STORE_TRANSIENT; the next call connects again. Every value travels as a
 * parameter; the only text put into SQL is the validated, quoted table
 * name. */
#include "stores/pg_store.h"

#include "schemas/edr_key.h"
#include "stores/fault.h"
#include "stores/store.h"

#include <libpq-fe.h>

#include <errno.h>
#include <inttypes.h>
#include <limits.h>
#include <poll.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/types.h>

/* Reader connections; the machine this targets has few cores, and each
 * lookup is one short indexed query. */
#define PG_READERS 4
/* Serialises table creation across workers starting at once: CREATE ...
 * IF NOT EXISTS alone can fail with unique_violation on pg_type. */
#define PG_DDL_LOCK_KEY "4558474186256748370" /* any fixed value */
/* Batches of at least this many puts (and nothing else) go through COPY
 * (pg_copy_in()); smaller ones, and any with a delete, through one
 * pipeline. */
#define PG_COPY_MIN 64
/* PostgreSQL's text type OID: the entry is sent as binary text (its raw
 * bytes and length, no NUL needed) and cast to jsonb by the server. */
#define PG_TEXT_OID 25
/* The SQLSTATE the offsets fence raises (pg_fence_fmt): STORE_CONFLICT. */
#define PG_FENCED_STATE "EDRFC"

enum pg_stmt {
    PG_PUT, /* writer connection only: PG_PUT .. PG_CLEAR */
    PG_DEL,
    PG_DEL_IF,
    PG_OFFSET_PUT,
    PG_MERGE,
    PG_CLEAR,
    PG_GET, /* reader connections only: PG_GET .. PG_OFFSETS */
    PG_TID,
    PG_COUNT,
    PG_COUNT_SUB,
    PG_LIST,
    PG_LIST_SUB,
    PG_LIST_CUR,
    PG_LIST_CUR_SUB,
    PG_OFFSETS,
    PG_NSTMT
};

/* Statement text; pg_expand() puts the quoted table for {t} and the
 * quoted offsets table for {o}. */
static const struct {
    const char *name;
    const char *fmt;
    int n_params;
} pg_stmts[PG_NSTMT] = {
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
#define PG_LIST_COLS                                                           \
    "SELECT connection_key, counter_party_id, counter_party_address, "         \
    "query_checksum, policy_checksum, transfer_process_id FROM {t} "
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
    [PG_OFFSETS] = {"edr_offsets",
                    "SELECT partition, next_offset FROM {o} "
                    "WHERE topic = $1 ORDER BY partition",
                    1},
};

struct pg_store {
    struct store base;
    char *dsn;
    char table[PG_STORE_TABLE_MAX + 1];
    char qtable[PG_STORE_TABLE_MAX + 3];       /* "<table>" */
    char qoffsets[PG_STORE_TABLE_MAX + 8 + 3]; /* "<table>_offsets" */
    char *sql[PG_NSTMT];
    char *fence_sql; /* pg_fence_fmt expanded */

    pthread_mutex_t wlock; /* the writer connection: apply, clear_party */
    PGconn *writer;        /* NULL after a loss until the next call */

    pthread_mutex_t plock; /* the reader pool */
    pthread_cond_t pcond;
    PGconn *idle[PG_READERS];
    size_t n_idle;
    size_t n_open; /* idle plus lent out */
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
static void pg_quote(char *out, size_t size, const char *table,
                     const char *suffix)
{
    snprintf(out, size, "\"%s%s\"", table, suffix);
}

/* Returns a malloc'd copy of fmt with {t} and {o} replaced by the quoted
 * names, or NULL when out of memory. */
static char *pg_expand(const char *fmt, const char *qtable,
                       const char *qoffsets)
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

/* ---- errors --------------------------------------------------------- */

/* Copies libpq's message without its trailing newline. */
static int pg_fail_conn(struct store_err *err, int status, const char *what,
                        PGconn *c)
{
    const char *m = c ? PQerrorMessage(c) : "out of memory";
    size_t n = strlen(m);
    while (n > 0 && (m[n - 1] == '\n' || m[n - 1] == ' '))
        n--;
    return store_fail(err, status, "postgres: %s: %.*s", what, (int)n, m);
}

static int pg_status_of(const char *state)
{
    if (!state || strlen(state) != 5)
        return STORE_TRANSIENT; /* libpq-side failure: the link */
    if (!strcmp(state, PG_FENCED_STATE))
        return STORE_CONFLICT;
    /* 08 connection, 53 resources (disk full), 57 operator intervention
     * (admin shutdown, cancel), 40 rollback (deadlock, serialization), 58
     * system I/O, 55P03 lock not available: retrying can succeed. */
    if (!strncmp(state, "08", 2) || !strncmp(state, "53", 2) ||
        !strncmp(state, "57", 2) || !strncmp(state, "40", 2) ||
        !strncmp(state, "58", 2) || !strcmp(state, "55P03"))
        return STORE_TRANSIENT;
    /* 22 data (bad JSON, invalid UTF-8), 23 constraint, 54 too large:
     * this input will never apply. */
    if (!strncmp(state, "22", 2) || !strncmp(state, "23", 2) ||
        !strncmp(state, "54", 2))
        return STORE_INVALID;
    return STORE_FATAL; /* 42 missing table or column, 28 auth, XX ... */
}

/* Fills err from a failed result. Only the SQLSTATE and primary message
 * are used: the detail and context lines can quote entry contents. */
static int pg_fail_result(PGconn *c, const PGresult *res, struct store_err *err)
{
    if (!c || PQstatus(c) != CONNECTION_OK)
        return pg_fail_conn(err, STORE_TRANSIENT, "connection lost", c);
    const char *state = res ? PQresultErrorField(res, PG_DIAG_SQLSTATE) : NULL;
    const char *msg =
        res ? PQresultErrorField(res, PG_DIAG_MESSAGE_PRIMARY) : NULL;
    if (!msg)
        return pg_fail_conn(err, pg_status_of(state), "query failed", c);
    /* Data errors may end with the offending input ("...: \"value\""). */
    int len = (int)strlen(msg);
    if (state && !strncmp(state, "22", 2) && strchr(msg, ':'))
        len = (int)(strchr(msg, ':') - msg);
    return store_fail(err, pg_status_of(state), "postgres: %.*s (SQLSTATE %s)",
                      len, msg, state ? state : "none");
}

static int pg_fault(PGconn **cp, struct store_err *err)
{
    PQfinish(*cp);
    *cp = NULL;
    return store_fail(err, STORE_TRANSIENT,
                      "postgres: connection lost (injected fault)");
}

/* ---- connections ---------------------------------------------------- */

/* Sends what libpq buffered while reading whatever the server answers, so
 * a long pipeline cannot deadlock with both socket buffers full. */
static int pg_flush(PGconn *c)
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
static PGresult *pg_next_result(PGconn *c)
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

/* The writer's staging table for put-only batches (pg_copy_in()): private
 * to its session, emptied by every commit and rollback. */
static const char pg_stage_sql[] =
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
 * in the batch's transaction, so a zombie writer stops before its ops. */
static const char pg_fence_fmt[] =
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
    "END IF; END $edr$";

/* Prepares the statements a writer or a reader uses, in one pipelined
 * round trip. */
static int pg_prepare(struct pg_store *s, PGconn *c, int writer,
                      struct store_err *err)
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
static PGconn *pg_connect_raw(const char *dsn, int *rc, struct store_err *err)
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

static PGconn *pg_connect(struct pg_store *s, int writer, int *rc,
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
static int pg_writer_ready(struct pg_store *s, struct store_err *err)
{
    if (s->writer && pg_alive(s->writer))
        return STORE_OK;
    PQfinish(s->writer);
    int rc;
    s->writer = pg_connect(s, 1, &rc, err);
    return rc;
}

/* Lends a reader connection, connecting one when the pool is short. */
static PGconn *pg_reader_take(struct pg_store *s, int *rc,
                              struct store_err *err)
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
static void pg_reader_give(struct pg_store *s, PGconn *c)
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
static PGresult *pg_exec(PGconn **cp, enum pg_stmt st, int n,
                         const char *const *vals, int *rc,
                         struct store_err *err)
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

/* ---- schema --------------------------------------------------------- */

/* Runs one plain statement (DDL) with optional text parameters. */
static int pg_run(PGconn *c, const char *sql, int n, const char *const *vals,
                  struct store_err *err)
{
    if (fault_hit(FAULT_QUERY))
        return store_fail(err, STORE_TRANSIENT,
                          "postgres: connection lost (injected fault)");
    PGresult *res = PQexecParams(c, sql, n, NULL, vals, NULL, NULL, 0);
    ExecStatusType es = PQresultStatus(res);
    int rc = STORE_OK;
    if (!res || (es != PGRES_COMMAND_OK && es != PGRES_TUPLES_OK))
        rc = pg_fail_result(c, res, err);
    PQclear(res);
    return rc;
}

/* Returns 1 when the tables, the index and every column exist, so a
 * worker without the right to create anything can still start. */
static int pg_schema_present(PGconn *c, const char *const names[3])
{
    PGresult *res = PQexecParams(
        c,
        "SELECT to_regclass($1) IS NOT NULL AND to_regclass($2) IS NOT NULL "
        "AND to_regclass($3) IS NOT NULL AND EXISTS (SELECT 1 FROM "
        "pg_attribute WHERE attrelid = to_regclass($1) AND attname = "
        "'edr_text' AND NOT attisdropped)",
        3, NULL, names, NULL, NULL, 0);
    int yes = PQresultStatus(res) == PGRES_TUPLES_OK && PQntuples(res) == 1 &&
              !strcmp(PQgetvalue(res, 0, 0), "t");
    PQclear(res);
    return yes;
}

/* Creates what is missing. The layout is schemas/README.md §4 plus edr_text:
 * jsonb reorders keys and rewrites escapes and numbers, while a store
 * returns an entry exactly as it was given (store.h). */
static int pg_create_schema(struct pg_store *s, PGconn *c,
                            struct store_err *err)
{
    char sql[4][1024];
    char qindex[PG_STORE_TABLE_MAX + 8 + 3];
    const char *lock_key[] = {PG_DDL_LOCK_KEY};
    int rc;

    /* The table name was validated; the index name fits 63 bytes too. */
    pg_quote(qindex, sizeof(qindex), s->table, "_tp_idx");
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

    const char *names[3] = {s->qtable, s->qoffsets, qindex};
    if (pg_schema_present(c, names))
        return STORE_OK;
    if ((rc = pg_run(c, "BEGIN", 0, NULL, err)) != STORE_OK)
        return rc;
    if ((rc = pg_run(c, "SELECT pg_advisory_xact_lock($1::bigint)", 1, lock_key,
                     err)) != STORE_OK)
        goto out;
    for (int i = 0; i < 4; i++)
        if ((rc = pg_run(c, sql[i], 0, NULL, err)) != STORE_OK)
            goto out;
    rc = pg_run(c, "COMMIT", 0, NULL, err);
out:
    if (rc != STORE_OK && PQstatus(c) == CONNECTION_OK)
        PQclear(PQexec(c, "ROLLBACK"));
    return rc;
}

/* ---- open and close ------------------------------------------------- */

static const struct store_ops pg_store_ops;

static void pg_free(struct pg_store *s)
{
    if (!s)
        return;
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
    free(s);
}

struct store *pg_store_open(const char *dsn, const char *table,
                            struct store_err *err)
{
    struct pg_store *s = NULL;
    PGconn *c = NULL;
    int rc;

    if (!dsn || !*dsn) {
        store_fail(err, STORE_INVALID, "postgres: no DSN (EDR_PG_DSN)");
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
    pthread_cond_init(&s->pcond, NULL);
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

/* ---- writes --------------------------------------------------------- */

static int pg_check_batch(const struct store_batch *b, struct store_err *err)
{
    if (b->n_ops > 0 && !b->ops)
        return store_fail(err, STORE_INVALID, "postgres: batch without ops");
    for (size_t i = 0; i < b->n_ops; i++) {
        const struct store_op *op = &b->ops[i];
        const struct edr_key *k = &op->key;
        if (!k->counter_party_id || !k->counter_party_address ||
            !k->query_checksum || !k->policy_checksum)
            return store_fail(err, STORE_INVALID,
                              "postgres: op %zu: missing key field", i);
        if (op->kind == STORE_OP_PUT &&
            (!op->transfer_id || !*op->transfer_id || !op->entry_json ||
             op->entry_len == 0))
            return store_fail(err, STORE_INVALID,
                              "postgres: op %zu: put without transfer id "
                              "or entry",
                              i);
        /* libpq takes parameter lengths as int; jsonb's limit is lower. */
        if (op->kind == STORE_OP_PUT && op->entry_len > INT_MAX / 2)
            return store_fail(err, STORE_INVALID,
                              "postgres: op %zu: entry too large", i);
        if (op->kind != STORE_OP_PUT && op->kind != STORE_OP_DELETE)
            return store_fail(err, STORE_INVALID,
                              "postgres: op %zu: unknown kind", i);
    }
    if (b->n_offsets > 0 && (!b->topic || !b->offsets))
        return store_fail(err, STORE_INVALID,
                          "postgres: offsets without a topic");
    return STORE_OK;
}

static int pg_hex4(const char *p, const char *end)
{
    int v = 0;
    if (end - p < 4)
        return -1;
    for (int i = 0; i < 4; i++) {
        char c = p[i];
        int d = c >= '0' && c <= '9'   ? c - '0'
                : c >= 'a' && c <= 'f' ? c - 'a' + 10
                : c >= 'A' && c <= 'F' ? c - 'A' + 10
                                       : -1;
        if (d < 0)
            return -1;
        v = v * 16 + d;
    }
    return v;
}

/* jsonb rejects two escapes that JSON text allows: \u0000 and unpaired
 * surrogates, so one such entry would fail its whole batch forever. For
 * the jsonb column only (edr_text keeps the entry as given, and reads
 * return that) each becomes \ufffd, of the same length. Returns a malloc'd
 * copy when something changed, else NULL (*oom set when out of memory). */
static char *pg_jsonb_safe(const char *s, size_t n, int *oom)
{
    const char *end = s + n;
    char *out = NULL;
    int in_str = 0;

    *oom = 0;
    if (!memchr(s, '\\', n))
        return NULL; /* no escapes at all: the usual case */
    for (const char *p = s; p < end; p++) {
        if (!in_str) {
            in_str = *p == '"';
            continue;
        }
        if (*p == '"') {
            in_str = 0;
            continue;
        }
        if (*p != '\\' || ++p >= end || *p != 'u')
            continue; /* a plain character or a one-letter escape */
        int cp = pg_hex4(p + 1, end), bad = cp == 0;
        if (cp >= 0xD800 && cp <= 0xDBFF) {
            int lo = end - p >= 11 && p[5] == '\\' && p[6] == 'u'
                         ? pg_hex4(p + 7, end)
                         : -1;
            if (lo >= 0xDC00 && lo <= 0xDFFF)
                p += 6; /* a proper pair: skip its second half */
            else
                bad = 1;
        } else if (cp >= 0xDC00 && cp <= 0xDFFF) {
            bad = 1;
        }
        if (bad) {
            if (!out) {
                if (!(out = malloc(n))) {
                    *oom = 1;
                    return NULL;
                }
                memcpy(out, s, n);
            }
            memcpy(out + (p + 1 - s), "fffd", 4);
        }
        if (cp >= 0)
            p += 4;
    }
    return out;
}
/* Queues one op of the pipeline; key is its connection key. Returns 1,
 * or 0 when libpq could not queue it (or out of memory). */
static int pg_send_op(PGconn *c, const struct store_op *op, const char *key)
{
    const struct edr_key *k = &op->key;
    if (op->kind == STORE_OP_PUT) {
        int oom;
        char *safe = pg_jsonb_safe(op->entry_json, op->entry_len, &oom);
        const char *vals[8] = {key,
                               k->counter_party_id,
                               k->counter_party_address,
                               k->query_checksum,
                               k->policy_checksum,
                               op->transfer_id,
                               op->entry_json,
                               safe};
        int lens[8] = {
            0, 0, 0, 0, 0, 0, (int)op->entry_len, (int)op->entry_len};
        int fmts[8] = {0, 0, 0, 0, 0, 0, 1, 1};
        /* libpq copies the values into its buffer before returning. */
        int ok = !oom && PQsendQueryPrepared(c, pg_stmts[PG_PUT].name, 8, vals,
                                             lens, fmts, 0);
        free(safe);
        return ok;
    }
    const char *vals[2] = {key, op->transfer_id};
    if (!op->transfer_id)
        return PQsendQueryPrepared(c, pg_stmts[PG_DEL].name, 1, vals, NULL,
                                   NULL, 0);
    return PQsendQueryPrepared(c, pg_stmts[PG_DEL_IF].name, 2, vals, NULL, NULL,
                               0);
}

/* A growable buffer for the binary COPY stream. */
struct pg_buf {
    char *p;
    size_t n, cap;
    int oom;
};

static void pg_buf_add(struct pg_buf *bf, const void *d, size_t n)
{
    if (bf->oom)
        return;
    if (bf->n + n > bf->cap) {
        size_t cap = bf->cap ? bf->cap : 65536;
        while (cap < bf->n + n)
            cap *= 2;
        char *p = realloc(bf->p, cap);
        if (!p) {
            bf->oom = 1;
            return;
        }
        bf->p = p;
        bf->cap = cap;
    }
    memcpy(bf->p + bf->n, d, n);
    bf->n += n;
}

static void pg_buf_be(struct pg_buf *bf, uint32_t v, size_t width)
{
    unsigned char be[4] = {(unsigned char)(v >> 24), (unsigned char)(v >> 16),
                           (unsigned char)(v >> 8), (unsigned char)v};
    pg_buf_add(bf, be + 4 - width, width);
}

static void pg_buf_text(struct pg_buf *bf, const char *t, size_t n)
{
    pg_buf_be(bf, (uint32_t)n, 4);
    pg_buf_add(bf, t, n);
}

/* Copying pays off for batches of puts only: one COPY and one INSERT ...
 * SELECT instead of one upsert per op (deletes keep the pipeline, where
 * their order against puts is kept without further thought). */
static int pg_copy_worthy(const struct store_batch *b)
{
    if (b->n_ops < PG_COPY_MIN)
        return 0;
    for (size_t i = 0; i < b->n_ops; i++)
        if (b->ops[i].kind != STORE_OP_PUT)
            return 0;
    return 1;
}

/* Opens the batch's transaction and copies its puts into the staging
 * table in PostgreSQL's binary COPY format (lengths, no escaping). On
 * failure the transaction is rolled back or the writer dropped. */
static int pg_copy_in(struct pg_store *s, struct store_batch *b,
                      struct store_err *err)
{
    static const char sig[11] = "PGCOPY\n\377\r\n";
    PGconn *c = s->writer;
    struct pg_buf bf = {0};
    PGresult *res = NULL;
    int rc = STORE_OK;

    pg_buf_add(&bf, sig, sizeof(sig));
    pg_buf_be(&bf, 0, 4); /* flags */
    pg_buf_be(&bf, 0, 4); /* header extension */
    for (size_t i = 0; i < b->n_ops; i++) {
        const struct store_op *op = &b->ops[i];
        const struct edr_key *k = &op->key;
        char key[EDR_CONNECTION_KEY_LEN + 1];
        edr_connection_key(k, key);
        int oom;
        char *safe = pg_jsonb_safe(op->entry_json, op->entry_len, &oom);
        bf.oom |= oom;
        pg_buf_be(&bf, 9, 2); /* fields */
        pg_buf_be(&bf, 4, 4);
        pg_buf_be(&bf, (uint32_t)i, 4); /* ord: later puts win */
        pg_buf_text(&bf, key, EDR_CONNECTION_KEY_LEN);
        pg_buf_text(&bf, k->counter_party_id, strlen(k->counter_party_id));
        pg_buf_text(&bf, k->counter_party_address,
                    strlen(k->counter_party_address));
        pg_buf_text(&bf, k->query_checksum, strlen(k->query_checksum));
        pg_buf_text(&bf, k->policy_checksum, strlen(k->policy_checksum));
        pg_buf_text(&bf, op->transfer_id, strlen(op->transfer_id));
        pg_buf_text(&bf, op->entry_json, op->entry_len);
        if (safe)
            pg_buf_text(&bf, safe, op->entry_len);
        else
            pg_buf_be(&bf, 0xffffffffu, 4); /* NULL: edr itself is fine */
        free(safe);
    }
    pg_buf_be(&bf, 0xffff, 2); /* trailer */
    if (bf.oom) {
        free(bf.p);
        return store_fail(err, STORE_TRANSIENT, "postgres: out of memory");
    }

    if (fault_hit(FAULT_QUERY)) {
        rc = pg_fault(&s->writer, err);
        goto out;
    }
    /* COPY cannot be pipelined; blocking sends are safe here because the
     * server answers nothing until the copy ends. */
    PQsetnonblocking(c, 0);
    res = PQexec(c, "BEGIN; COPY pg_temp.edr_stage FROM STDIN "
                    "(FORMAT binary)");
    if (PQresultStatus(res) != PGRES_COPY_IN) {
        rc = pg_fail_result(c, res, err);
        goto done;
    }
    PQclear(res);
    res = NULL;
    if (fault_hit(FAULT_QUERY)) {
        rc = pg_fault(&s->writer, err);
        goto out;
    }
    if (PQputCopyData(c, bf.p, (int)bf.n) != 1 || PQputCopyEnd(c, NULL) != 1) {
        rc = pg_fail_conn(err, STORE_TRANSIENT, "copy", c);
        goto done;
    }
    res = PQgetResult(c);
    if (PQresultStatus(res) != PGRES_COMMAND_OK)
        rc = pg_fail_result(c, res, err);
done:
    PQclear(res);
    res = NULL;
    while ((res = PQgetResult(c)) != NULL) /* the end of the query */
        PQclear(res);
    if (PQstatus(c) != CONNECTION_OK) {
        if (rc == STORE_OK)
            rc = pg_fail_conn(err, STORE_TRANSIENT, "connection lost", c);
        PQfinish(s->writer);
        s->writer = NULL;
        goto out;
    }
    PQsetnonblocking(c, 1);
    if (rc != STORE_OK && PQtransactionStatus(c) != PQTRANS_IDLE) {
        res = PQexec(c, "ROLLBACK");
        if (PQresultStatus(res) != PGRES_COMMAND_OK) {
            PQfinish(s->writer); /* closing rolls back too */
            s->writer = NULL;
        }
        PQclear(res);
    }
out:
    free(bf.p);
    return rc;
}

/* Sends the rest of the batch as one pipeline and reads its results;
 * wlock held and the writer connected. Without copied: BEGIN, the
 * offsets, one upsert or delete per op in order, COMMIT. With copied (the
 * transaction is open and the puts are staged, pg_copy_in()): the
 * offsets, the merge, COMMIT. A fenced offset (pg_fence_fmt) fails the
 * lot with STORE_CONFLICT. A fault or a lost link drops the writer, which
 * rolls the open transaction back on the server. */
static int pg_run_batch(struct pg_store *s, struct store_batch *b, int copied,
                        struct store_err *err)
{
    PGconn *c = s->writer;
    char(*keys)[EDR_CONNECTION_KEY_LEN + 1] = NULL;
    char *nums = NULL; /* the offsets as three array literals */
    size_t n_queries = 0, changed = 0, n_ops = copied ? 0 : b->n_ops;
    size_t op_first; /* the query number of the first op */
    size_t nums_cap = 3 * (b->n_offsets * 22 + 3);
    int rc = STORE_OK;

    keys = malloc((n_ops ? n_ops : 1) * sizeof(*keys));
    nums = malloc(nums_cap);
    if (!keys || !nums) {
        rc = store_fail(err, STORE_TRANSIENT, "postgres: out of memory");
        if (copied)
            goto lost; /* the open transaction must go */
        goto out;
    }
    if (!PQenterPipelineMode(c)) {
        rc = pg_fail_conn(err, STORE_TRANSIENT, "pipeline mode", c);
        goto lost;
    }

    if (fault_hit(FAULT_QUERY))
        goto fault;
    if (!copied) {
        if (!PQsendQueryParams(c, "BEGIN", 0, NULL, NULL, NULL, NULL, 0))
            goto send_failed;
        n_queries++;
    }
    /* The offsets first: the fence stops a stale writer before its ops
     * and holds the partitions' rows until COMMIT. */
    if (b->n_offsets > 0) {
        const char *vals[4] = {b->topic, nums, NULL, NULL};
        char *w = nums, *end = nums + nums_cap;
        for (int col = 0; col < 3; col++) {
            if (col > 0)
                vals[1 + col] = w;
            *w++ = '{';
            for (size_t i = 0; i < b->n_offsets; i++) {
                const struct store_offset *o = &b->offsets[i];
                int64_t v = col == 0 ? o->partition
                            : col == 1
                                ? (o->first_offset < 0 ? -1 : o->first_offset)
                                : o->next_offset;
                w += snprintf(w, (size_t)(end - w), "%s%" PRId64, i ? "," : "",
                              v);
            }
            *w++ = '}';
            *w++ = '\0';
        }
        if (fault_hit(FAULT_QUERY))
            goto fault;
        if (!PQsendQueryPrepared(c, pg_stmts[PG_OFFSET_PUT].name, 4, vals, NULL,
                                 NULL, 0))
            goto send_failed;
        n_queries++;
    }
    if (copied) {
        if (!PQsendQueryPrepared(c, pg_stmts[PG_MERGE].name, 0, NULL, NULL,
                                 NULL, 0))
            goto send_failed;
        changed = b->n_ops; /* every put replaces or inserts */
        n_queries++;
    }
    op_first = n_queries;
    for (size_t i = 0; i < n_ops; i++) {
        edr_connection_key(&b->ops[i].key, keys[i]);
        if (fault_hit(FAULT_QUERY))
            goto fault;
        if (!pg_send_op(c, &b->ops[i], keys[i]))
            goto send_failed;
        n_queries++;
    }
    if (fault_hit(FAULT_QUERY))
        goto fault;
    if (!PQsendQueryParams(c, "COMMIT", 0, NULL, NULL, NULL, NULL, 0) ||
        !PQpipelineSync(c) || pg_flush(c) < 0)
        goto send_failed;
    n_queries++;

    /* Results, in order, then the sync. After the first error the server
     * skips the rest (PIPELINE_ABORTED) and the transaction is rolled back
     * below. */
    for (size_t q = 0; q <= n_queries; q++) {
        PGresult *res = pg_next_result(c);
        if (!res || PQstatus(c) != CONNECTION_OK) {
            PQclear(res);
            rc = pg_fail_conn(err, STORE_TRANSIENT, "connection lost", c);
            goto lost;
        }
        ExecStatusType es = PQresultStatus(res);
        if (es == PGRES_FATAL_ERROR && rc == STORE_OK)
            rc = pg_fail_result(c, res, err);
        else if (es == PGRES_COMMAND_OK && q >= op_first &&
                 q < op_first + n_ops)
            changed += strtoul(PQcmdTuples(res), NULL, 10);
        PQclear(res);
        if (es == PGRES_PIPELINE_SYNC)
            break;
        if (q == n_queries) { /* the sync must come last */
            /* Seen when the server shuts down mid-pipeline (SQLSTATE
             * 57P01 adds a result). Transient: the writer is dropped, and
             * retrying a batch that may have committed is a harmless
             * replay (tests/fault/, postgres-outage). */
            if (rc == STORE_OK)
                rc = store_fail(err, STORE_TRANSIENT,
                                "postgres: pipeline out of step");
            goto lost;
        }
    }
    if (!PQexitPipelineMode(c)) {
        rc = pg_fail_conn(err, STORE_TRANSIENT, "pipeline mode", c);
        goto lost;
    }
    if (rc != STORE_OK && PQtransactionStatus(c) != PQTRANS_IDLE) {
        PGresult *res = PQexec(c, "ROLLBACK");
        int ok = PQresultStatus(res) == PGRES_COMMAND_OK;
        PQclear(res);
        if (!ok)
            goto lost; /* keeps rc: the batch's own error */
    }
    if (rc == STORE_OK)
        b->changed = changed;
    goto out;

fault:
    rc = store_fail(err, STORE_TRANSIENT,
                    "postgres: connection lost (injected fault)");
    goto lost;
send_failed:
    rc = pg_fail_conn(err, STORE_TRANSIENT, "send", c);
lost:
    /* Closing the session aborts whatever it had begun on the server. */
    PQfinish(s->writer);
    s->writer = NULL;
out:
    free(keys);
    free(nums);
    return rc;
}

static int pg_apply(struct store *st, struct store_batch *b,
                    struct store_err *err)
{
    struct pg_store *s = (struct pg_store *)st;
    int rc;

    b->changed = 0;
    if ((rc = pg_check_batch(b, err)) != STORE_OK)
        return rc;
    if (b->n_ops == 0 && b->n_offsets == 0)
        return STORE_OK;
    pthread_mutex_lock(&s->wlock);
    rc = pg_writer_ready(s, err);
    if (rc == STORE_OK && pg_copy_worthy(b)) {
        rc = pg_copy_in(s, b, err);
        if (rc == STORE_OK)
            rc = pg_run_batch(s, b, 1, err);
    } else if (rc == STORE_OK) {
        rc = pg_run_batch(s, b, 0, err);
    }
    pthread_mutex_unlock(&s->wlock);
    return rc;
}

static int pg_clear_party(struct store *st, const char *substring,
                          uint64_t *removed, struct store_err *err)
{
    struct pg_store *s = (struct pg_store *)st;
    const char *vals[1] = {substring};
    PGresult *res = NULL;
    int rc;

    *removed = 0;
    if (!substring || !*substring)
        return store_fail(err, STORE_INVALID,
                          "postgres: clear_party needs a non-empty "
                          "substring");
    pthread_mutex_lock(&s->wlock);
    if ((rc = pg_writer_ready(s, err)) == STORE_OK &&
        (res = pg_exec(&s->writer, PG_CLEAR, 1, vals, &rc, err)))
        *removed = strtoull(PQcmdTuples(res), NULL, 10);
    pthread_mutex_unlock(&s->wlock);
    PQclear(res);
    return rc;
}

/* ---- reads ---------------------------------------------------------- */

/* jsonb prints one space after each ':' and ','; entries are compact JSON
 * (store.h), so whitespace outside strings goes. Returns the new length. */
static size_t pg_json_compact(char *s)
{
    char *w = s;
    int in_str = 0, esc = 0;
    for (const char *r = s; *r; r++) {
        char ch = *r;
        if (in_str) {
            if (esc)
                esc = 0;
            else if (ch == '\\')
                esc = 1;
            else if (ch == '"')
                in_str = 0;
        } else if (ch == '"') {
            in_str = 1;
        } else if (ch == ' ' || ch == '\n' || ch == '\t' || ch == '\r') {
            continue;
        }
        *w++ = ch;
    }
    *w = '\0';
    return (size_t)(w - s);
}

static char *pg_dup(const PGresult *res, int row, int col)
{
    return strdup(PQgetvalue(res, row, col));
}

static int pg_oom(struct store_err *err)
{
    return store_fail(err, STORE_TRANSIENT, "postgres: out of memory");
}

/* Runs a read on a pooled connection: returns the result or NULL with *rc
 * and err set. */
static PGresult *pg_read(struct pg_store *s, enum pg_stmt st, int n,
                         const char *const *vals, int *rc,
                         struct store_err *err)
{
    PGconn *c = pg_reader_take(s, rc, err);
    if (!c)
        return NULL;
    PGresult *res = pg_exec(&c, st, n, vals, rc, err);
    pg_reader_give(s, c);
    return res;
}

static int pg_key_check(const struct edr_key *k, struct store_err *err)
{
    if (!k || !k->counter_party_id || !k->counter_party_address ||
        !k->query_checksum || !k->policy_checksum)
        return store_fail(err, STORE_INVALID, "postgres: missing key field");
    return STORE_OK;
}

static int pg_get(struct store *st, const struct edr_key *k,
                  struct store_record *out, struct store_err *err)
{
    char key[EDR_CONNECTION_KEY_LEN + 1];
    const char *vals[1] = {key};
    PGresult *res;
    int rc;

    *out = (struct store_record){0};
    if ((rc = pg_key_check(k, err)) != STORE_OK)
        return rc;
    edr_connection_key(k, key);
    if (!(res = pg_read((struct pg_store *)st, PG_GET, 1, vals, &rc, err)))
        return rc;
    if (PQntuples(res) == 0) {
        rc = STORE_NOT_FOUND;
        goto out;
    }
    out->counter_party_id = strdup(k->counter_party_id);
    out->counter_party_address = strdup(k->counter_party_address);
    out->query_checksum = strdup(k->query_checksum);
    out->policy_checksum = strdup(k->policy_checksum);
    out->transfer_id = pg_dup(res, 0, 0);
    out->entry_json = pg_dup(res, 0, 1);
    if (!out->counter_party_id || !out->counter_party_address ||
        !out->query_checksum || !out->policy_checksum || !out->transfer_id ||
        !out->entry_json) {
        store_record_clear(out);
        rc = pg_oom(err);
        goto out;
    }
    /* Only a row without edr_text gives jsonb's spaced-out text. */
    if (!strcmp(PQgetvalue(res, 0, 2), "t"))
        out->entry_len = pg_json_compact(out->entry_json);
    else
        out->entry_len = strlen(out->entry_json);
out:
    PQclear(res);
    return rc;
}

static int pg_get_transfer_id(struct store *st, const struct edr_key *k,
                              char **out, struct store_err *err)
{
    char key[EDR_CONNECTION_KEY_LEN + 1];
    const char *vals[1] = {key};
    PGresult *res;
    int rc;

    *out = NULL;
    if ((rc = pg_key_check(k, err)) != STORE_OK)
        return rc;
    edr_connection_key(k, key);
    if (!(res = pg_read((struct pg_store *)st, PG_TID, 1, vals, &rc, err)))
        return rc;
    if (PQntuples(res) == 0)
        rc = STORE_NOT_FOUND;
    else if (!(*out = pg_dup(res, 0, 0)))
        rc = pg_oom(err);
    PQclear(res);
    return rc;
}

static int pg_count(struct store *st, const char *substring, uint64_t *out,
                    struct store_err *err)
{
    const char *vals[1] = {substring};
    int sub = substring && *substring;
    PGresult *res;
    int rc;

    *out = 0;
    res = pg_read((struct pg_store *)st, sub ? PG_COUNT_SUB : PG_COUNT,
                  sub ? 1 : 0, vals, &rc, err);
    if (!res)
        return rc;
    *out = strtoull(PQgetvalue(res, 0, 0), NULL, 10);
    PQclear(res);
    return STORE_OK;
}

static int pg_list(struct store *st, const char *substring, const char *cursor,
                   size_t limit, struct store_list *out, struct store_err *err)
{
    char lim[24];
    const char *vals[3];
    int n = 0, sub = substring && *substring, cur = cursor != NULL;
    enum pg_stmt stmt;
    PGresult *res;
    int rc = STORE_OK;

    *out = (struct store_list){0};
    if (limit < 1 || limit > 1000)
        return store_fail(err, STORE_INVALID,
                          "postgres: list limit must be 1..1000");
    /* A cursor is a connection key, as every store gives it out. */
    if (cursor && strspn(cursor, "0123456789abcdef") != strlen(cursor))
        return store_fail(err, STORE_INVALID, "postgres: malformed cursor");
    if (cursor && strlen(cursor) != EDR_CONNECTION_KEY_LEN)
        return store_fail(err, STORE_INVALID, "postgres: malformed cursor");
    /* One row more than asked tells whether a next page exists. */
    snprintf(lim, sizeof(lim), "%zu", limit + 1);
    if (cur)
        vals[n++] = cursor;
    if (sub)
        vals[n++] = substring;
    vals[n++] = lim;
    stmt = cur ? (sub ? PG_LIST_CUR_SUB : PG_LIST_CUR)
               : (sub ? PG_LIST_SUB : PG_LIST);
    if (!(res = pg_read((struct pg_store *)st, stmt, n, vals, &rc, err)))
        return rc;

    size_t rows = (size_t)PQntuples(res);
    size_t take = rows > limit ? limit : rows;
    if (take > 0 && !(out->items = calloc(take, sizeof(*out->items)))) {
        rc = pg_oom(err);
        goto out;
    }
    for (size_t i = 0; i < take; i++) {
        struct store_record *r = &out->items[i];
        out->n_items = i + 1;
        r->counter_party_id = pg_dup(res, (int)i, 1);
        r->counter_party_address = pg_dup(res, (int)i, 2);
        r->query_checksum = pg_dup(res, (int)i, 3);
        r->policy_checksum = pg_dup(res, (int)i, 4);
        r->transfer_id = pg_dup(res, (int)i, 5);
        if (!r->counter_party_id || !r->counter_party_address ||
            !r->query_checksum || !r->policy_checksum || !r->transfer_id) {
            rc = pg_oom(err);
            goto out;
        }
    }
    if (rows > limit && !(out->next_cursor = pg_dup(res, (int)take - 1, 0)))
        rc = pg_oom(err);
out:
    if (rc != STORE_OK)
        store_list_clear(out);
    PQclear(res);
    return rc;
}

static int pg_load_offsets(struct store *st, const char *topic,
                           struct store_offset **out, size_t *n,
                           struct store_err *err)
{
    const char *vals[1] = {topic};
    PGresult *res;
    int rc;

    *out = NULL;
    *n = 0;
    if (!topic)
        return store_fail(err, STORE_INVALID, "postgres: no topic");
    if (!(res = pg_read((struct pg_store *)st, PG_OFFSETS, 1, vals, &rc, err)))
        return rc;
    size_t rows = (size_t)PQntuples(res);
    if (rows > 0 && !(*out = calloc(rows, sizeof(**out)))) {
        rc = pg_oom(err);
        goto out;
    }
    for (size_t i = 0; i < rows; i++) {
        (*out)[i].partition =
            (int32_t)strtol(PQgetvalue(res, (int)i, 0), NULL, 10);
        (*out)[i].next_offset = strtoll(PQgetvalue(res, (int)i, 1), NULL, 10);
        (*out)[i].first_offset = -1;
    }
    *n = rows;
    rc = STORE_OK;
out:
    PQclear(res);
    return rc;
}

static const struct store_ops pg_store_ops = {
    .name = "postgres",
    .caps = {.shared = 1},
    .apply = pg_apply,
    .get = pg_get,
    .get_transfer_id = pg_get_transfer_id,
    .count = pg_count,
    .list = pg_list,
    .clear_party = pg_clear_party,
    .load_offsets = pg_load_offsets,
    .close = pg_close,
};

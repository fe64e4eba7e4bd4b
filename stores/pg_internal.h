/* pg_internal.h: what the files of the PostgreSQL store share, and nothing
 * outside stores/pg_*.c may include (it exposes libpq).
 *
 * The store is split by concept:
 *   pg_sql.c      statement text and table-name quoting
 *   pg_sqlstate.c SQLSTATE classification and error messages
 *   pg_conn.c     connections: the writer, the reader pool, pipelines
 *   pg_ddl.c      creating and dropping the tables
 *   pg_copy.c     the binary COPY stream for put-only batches
 *   pg_apply.c    batches (apply) and clear_party
 *   pg_read.c     lookups, count, list, offsets
 *   pg_listen.c   LISTEN for applies, waking lookups that wait
 *   pg_store.c    open, close and the ops table
 * stores/pg_store.h is the public face; stores/pg_dsn.h checks a DSN. */
#ifndef EDR_STORES_PG_INTERNAL_H
#define EDR_STORES_PG_INTERNAL_H

#include "stores/pg_store.h"
#include "stores/store.h"

#include <libpq-fe.h>

#include <pthread.h>
#include <stddef.h>
#include <stdint.h>

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

/* A server that stops answering (stopped, partitioned, swapping) is an
 * outage within 15 s (schemas/README.md §3), and TCP alone cannot tell: a
 * stopped process's kernel still acknowledges everything. So every wait
 * for the server has a deadline: a server silent for PG_ANSWER_MS drops
 * that connection (STORE_TRANSIENT). The server's own statement_timeout,
 * where the DSN or the role sets none, is shorter, so a slow statement
 * ends with the server's clean error first. Each default below applies
 * only where the DSN (or libpq's environment variable) says nothing. */
#define PG_ANSWER_MS 10000
#define PG_STATEMENT_TIMEOUT "8s"
#define PG_CONNECT_TIMEOUT_S 5 /* whole connection set-up */
#define PG_KEEPALIVES_IDLE "5"
#define PG_KEEPALIVES_INTERVAL "2"
#define PG_KEEPALIVES_COUNT "3"
#define PG_TCP_USER_TIMEOUT "10000" /* ms unacknowledged: a dead peer */
/* How long a reader waits for a pool connection to come free. */
#define PG_POOL_WAIT_MS 10000
/* COPY data goes to libpq in pieces of this size (its length is an int). */
#define PG_COPY_CHUNK ((size_t)1 << 20)

/* The channel every apply notifies at commit, with the quoted table
 * name as payload (pg_fence_fmt), and pg_listen.c listens on. */
#define PG_NOTIFY_CHANNEL "edr_applied"
/* The listener's poll slice (how soon it sees a stop) and its reconnect
 * delays. */
#define PG_LISTEN_SLICE_MS 100
#define PG_LISTEN_RETRY_MIN_MS 100
#define PG_LISTEN_RETRY_MAX_MS 5000

/* What waiting on a connection ended with (pg_flush, pg_await). */
enum { PG_IO_OK = 0, PG_IO_BROKEN = -1, PG_IO_SILENT = -2 };

enum pg_stmt {
    PG_PUT, /* writer connection only: PG_PUT .. PG_CLEAR */
    PG_DEL,
    PG_DEL_IF,
    PG_OFFSET_PUT,
    PG_MERGE,
    PG_CLEAR,
    PG_GET, /* reader connections only: PG_GET .. PG_GET_AFTER */
    PG_TID,
    PG_COUNT,
    PG_COUNT_SUB,
    PG_LIST,
    PG_LIST_SUB,
    PG_LIST_CUR,
    PG_LIST_CUR_SUB,
    PG_BY_TID,
    PG_ESTIMATE,
    PG_OFFSETS,
    PG_GET_AFTER,
    PG_NSTMT
};

/* The columns of a list item, in this order: connection_key, the four
 * key fields, transfer_process_id, and the entry's string assetId or
 * NULL. */
#define PG_ASSET_EXPR "(edr->>'assetId')"
#define PG_ROW_COLS                                                            \
    "connection_key, counter_party_id, counter_party_address, "                \
    "query_checksum, policy_checksum, transfer_process_id, "                   \
    "CASE WHEN jsonb_typeof(edr->'assetId') = 'string' THEN " PG_ASSET_EXPR    \
    " END"
/* The asset id index holds the first PG_ASSET_CHARS characters (a B-tree
 * entry must stay under ~2.7 kB): left(assetId, PG_ASSET_CHARS) with
 * text_pattern_ops serves both = and LIKE 'prefix%'. */
#define PG_ASSET_CHARS 512

/* One prepared statement: its name and text, {t} and {o} standing for the
 * quoted table and offsets table (pg_expand()). */
struct pg_stmt_def {
    const char *name;
    const char *fmt;
    int n_params;
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
    /* edr_clock_ms() of the last reader connection lost or refused: a
     * reader that waited for the pool meanwhile fails at once instead of
     * trying the same server again, so no read waits much longer than
     * PG_POOL_WAIT_MS or PG_ANSWER_MS. */
    int64_t reader_fail_ms;

    /* pg_listen.c: applies heard of through LISTEN, for waiting lookups.
     * Started by the first pg_wait_applied(), stopped by close. */
    pthread_mutex_t nlock;
    pthread_cond_t ncond;
    uint64_t n_heard; /* notifications for this table, and reconnects */
    int listening;    /* the listener's LISTEN is in force */
    int listen_state; /* 0 not started, 1 running, -1 could not start */
    int listen_stop;  /* close: the listener leaves */
    pthread_t listener;
};

/* ---- pg_sql.c ---- */
extern const struct pg_stmt_def pg_stmts[PG_NSTMT];
extern const char pg_stage_sql[];
extern const char pg_fence_fmt[];
void pg_quote(char *out, size_t size, const char *table, const char *suffix);
char *pg_expand(const char *fmt, const char *qtable, const char *qoffsets);

/* ---- pg_sqlstate.c ---- */
int pg_status_of(const char *state);
/* Turns s into one line: control characters become blanks, runs of
 * blanks one, none at either end. In place. */
void pg_one_line(char *s);
/* err from a failed or broken connection: a generic reason (and the
 * SQLSTATE when the server sent one), never libpq's text, which names the
 * host and user. */
int pg_fail_conn(struct store_err *err, int status, const char *what,
                 PGconn *c);
/* err from a connection attempt that failed: STORE_AUTH when the server
 * rejected the credentials (class 28) or wanted a missing password, else
 * STORE_TRANSIENT. */
int pg_fail_connect(struct store_err *err, PGconn *c);
/* err from a PG_IO_* failure of pg_flush/pg_await: STORE_TRANSIENT. */
int pg_fail_io(struct store_err *err, int io, const char *what, PGconn *c);
int pg_fail_result(PGconn *c, const PGresult *res, struct store_err *err);
int pg_fault(PGconn **cp, struct store_err *err);
int pg_oom(struct store_err *err);

/* ---- pg_conn.c ---- */
/* Sends everything libpq buffered, reading meanwhile so that a long
 * pipeline cannot deadlock with both socket buffers full. PG_IO_*. */
int pg_flush(PGconn *c);
/* pg_flush, then waits until PQgetResult() will not block. PG_IO_*. */
int pg_await(PGconn *c);
/* The result of one pipelined query (caller clears), after consuming the
 * NULL that ends it; NULL with *io set when the link broke (PG_IO_OK:
 * libpq had no result) or the server went silent. */
PGresult *pg_next_result(PGconn *c, int *io);
/* PQexecParams without its unbounded wait: sends sql (not in pipeline
 * mode) and collects its results like PQexec (the first error, else the
 * last result; stops at COPY IN). NULL with *io set when sending failed
 * or the server went silent: drop the connection then. */
PGresult *pg_query(PGconn *c, const char *sql, int n, const char *const *vals,
                   int *io);
/* The results of what was sent, as pg_query. */
PGresult *pg_collect(PGconn *c, int *io);
PGconn *pg_connect_raw(const char *dsn, int *rc, struct store_err *err);
PGconn *pg_connect(struct pg_store *s, int writer, int *rc,
                   struct store_err *err);
int pg_prepare(struct pg_store *s, PGconn *c, int writer,
               struct store_err *err);
int pg_writer_ready(struct pg_store *s, struct store_err *err);
PGconn *pg_reader_take(struct pg_store *s, int *rc, struct store_err *err);
void pg_reader_give(struct pg_store *s, PGconn *c);
PGresult *pg_exec(PGconn **cp, enum pg_stmt st, int n, const char *const *vals,
                  int *rc, struct store_err *err);
/* As pg_exec, with statement text sent unnamed (planned with the values
 * at hand, so a LIKE prefix or an expression index can be used). */
PGresult *pg_exec_sql(PGconn **cp, const char *sql, int n,
                      const char *const *vals, int *rc, struct store_err *err);

/* ---- pg_ddl.c ---- */
int pg_run(PGconn *c, const char *sql, int n, const char *const *vals,
           struct store_err *err);
int pg_create_schema(struct pg_store *s, PGconn *c, struct store_err *err);

/* ---- pg_copy.c ---- */
char *pg_jsonb_safe(const char *s, size_t n, int *oom);
int pg_copy_worthy(const struct store_batch *b);
/* Hands n bytes at p to put() in pieces of at most PG_COPY_CHUNK bytes
 * (libpq takes an int length). Returns 0, or the first nonzero put()
 * returned. Exposed for tests. */
int pg_copy_chunks(const char *p, size_t n,
                   int (*put)(void *ctx, const char *p, int len), void *ctx);
int pg_copy_in(struct pg_store *s, struct store_batch *b,
               struct store_err *err);

/* ---- pg_apply.c ---- */
int pg_apply(struct store *st, struct store_batch *b, struct store_err *err);
int pg_clear_party(struct store *st, const char *substring, uint64_t *removed,
                   struct store_err *err);

/* ---- pg_listen.c ---- */
int pg_wait_applied(struct store *st, uint64_t *gen, int64_t until_ms);
/* Stops the listener thread, if any (close). */
void pg_listen_stop(struct pg_store *s);

/* ---- pg_read.c ---- */
int pg_get(struct store *st, const struct edr_key *k, struct store_record *out,
           struct store_err *err);
int pg_get_after(struct store *st, const char *topic,
                 const struct store_position *need, size_t n_need,
                 const struct edr_key *k, struct store_record *out,
                 int *reached, struct store_err *err);
int pg_get_transfer_id(struct store *st, const struct edr_key *k, char **out,
                       struct store_err *err);
int pg_count(struct store *st, const struct store_filter *f, uint64_t *out,
             struct store_err *err);
int pg_list(struct store *st, const struct store_filter *f, const char *cursor,
            size_t limit, struct store_list *out, struct store_err *err);
int pg_get_by_transfer_id(struct store *st, const char *transfer_id,
                          struct store_record *out, struct store_err *err);
/* The text of a count (list = 0) or list (list = 1) filtered by f after
 * cursor (may be NULL), for pg_exec_sql: only parameters carry values.
 * vals gets *n parameters pointing into f, cursor, lim and q's buffers.
 * Returns NULL when out of memory; free() the text and pg_filter_free(q).
 * Exposed so a test can EXPLAIN exactly what the store runs. */
struct pg_filter_bufs {
    char *like, *like_short; /* LIKE patterns of the asset id prefix */
    char *bytes; /* the prefix as bytea text, when it is not UTF-8 */
};
char *pg_filter_sql(const struct pg_store *s, int list,
                    const struct store_filter *f, const char *cursor,
                    const char *lim, const char *vals[8], int *n,
                    struct pg_filter_bufs *q);
void pg_filter_free(struct pg_filter_bufs *q);
int pg_estimate(struct pg_store *s, uint64_t *out, struct store_err *err);
int pg_load_offsets(struct store *st, const char *topic,
                    struct store_offset **out, size_t *n,
                    struct store_err *err);

#endif

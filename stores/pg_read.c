/* pg_read.c: the PostgreSQL store's reads.
 *
 * get, get_transfer_id, count, list and load_offsets, each one prepared
 * statement on a connection lent by the reader pool (pg_conn.c). */
#include "stores/pg_internal.h"

#include "base/hex.h"
#include "schemas/edr_key.h"
#include "schemas/utf8.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

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

/* The one-row read of statement `stmt` by the connection key of k: the
 * result (PQclear it), or NULL with *rc and err set. */
static PGresult *pg_read_by_key(struct store *st, enum pg_stmt stmt,
                                const struct edr_key *k, int *rc,
                                struct store_err *err)
{
    char key[EDR_CONNECTION_KEY_LEN + 1];
    const char *vals[1] = {key};
    if ((*rc = pg_key_check(k, err)) != STORE_OK)
        return NULL;
    edr_connection_key(k, key);
    return pg_read((struct pg_store *)st, stmt, 1, vals, rc, err);
}

/* *out = the entry at k from PG_GET's columns, starting at column col of
 * res's first row. STORE_OK, or STORE_TRANSIENT (out of memory, err set). */
static int pg_record_of(const PGresult *res, int col, const struct edr_key *k,
                        struct store_record *out, struct store_err *err)
{
    out->counter_party_id = strdup(k->counter_party_id);
    out->counter_party_address = strdup(k->counter_party_address);
    out->query_checksum = strdup(k->query_checksum);
    out->policy_checksum = strdup(k->policy_checksum);
    out->transfer_id = pg_dup(res, 0, col);
    out->entry_json = pg_dup(res, 0, col + 1);
    if (!out->counter_party_id || !out->counter_party_address ||
        !out->query_checksum || !out->policy_checksum || !out->transfer_id ||
        !out->entry_json) {
        store_record_clear(out);
        return pg_oom(err);
    }
    /* Only a row without edr_text gives jsonb's spaced-out text. */
    if (!strcmp(PQgetvalue(res, 0, col + 2), "t"))
        out->entry_len = pg_json_compact(out->entry_json);
    else
        out->entry_len = strlen(out->entry_json);
    return STORE_OK;
}

int pg_get(struct store *st, const struct edr_key *k, struct store_record *out,
           struct store_err *err)
{
    PGresult *res;
    int rc;

    *out = (struct store_record){0};
    if (!(res = pg_read_by_key(st, PG_GET, k, &rc, err)))
        return rc;
    rc = PQntuples(res) == 0 ? STORE_NOT_FOUND
                             : pg_record_of(res, 0, k, out, err);
    PQclear(res);
    return rc;
}

/* "{a,b,...}": an array literal of n integers, for a parameter. NULL when
 * out of memory; free() it. */
static char *pg_int_array(const struct store_position *need, size_t n,
                          int offsets)
{
    size_t cap = 2 + n * 21, len = 0; /* 20 digits and a sign, or a comma */
    char *out = malloc(cap);
    if (!out)
        return NULL;
    out[len++] = '{';
    for (size_t i = 0; i < n; i++)
        len += (size_t)snprintf(out + len, cap - len, "%s%lld", i ? "," : "",
                                offsets ? (long long)need[i].offset
                                        : (long long)need[i].partition);
    snprintf(out + len, cap - len, "}");
    return out;
}

int pg_get_after(struct store *st, const char *topic,
                 const struct store_position *need, size_t n_need,
                 const struct edr_key *k, struct store_record *out,
                 int *reached, struct store_err *err)
{
    char key[EDR_CONNECTION_KEY_LEN + 1];
    PGresult *res = NULL;
    int rc;

    *out = (struct store_record){0};
    *reached = 0;
    if (!topic || !need || n_need == 0)
        return store_fail(err, STORE_INVALID,
                          "postgres: get_after needs a topic and positions");
    if ((rc = pg_key_check(k, err)) != STORE_OK)
        return rc;
    edr_connection_key(k, key);
    char *parts = pg_int_array(need, n_need, 0);
    char *offs = pg_int_array(need, n_need, 1);
    if (!parts || !offs) {
        rc = pg_oom(err);
        goto out;
    }
    const char *vals[4] = {topic, parts, offs, key};
    if (!(res =
              pg_read((struct pg_store *)st, PG_GET_AFTER, 4, vals, &rc, err)))
        goto out;
    if (PQntuples(res) != 1) {
        rc = store_fail(err, STORE_FATAL,
                        "postgres: get_after: %d rows, expected 1",
                        PQntuples(res));
        goto out;
    }
    if (strcmp(PQgetvalue(res, 0, 0), "t") != 0) {
        rc = STORE_OK; /* not reached yet: nothing read */
        goto out;
    }
    *reached = 1;
    rc = strcmp(PQgetvalue(res, 0, 1), "t") != 0
             ? STORE_NOT_FOUND
             : pg_record_of(res, 2, k, out, err);
    if (rc < 0)
        *reached = 0;
out:
    PQclear(res);
    free(parts);
    free(offs);
    return rc;
}

int pg_get_transfer_id(struct store *st, const struct edr_key *k, char **out,
                       struct store_err *err)
{
    PGresult *res;
    int rc;

    *out = NULL;
    if (!(res = pg_read_by_key(st, PG_TID, k, &rc, err)))
        return rc;
    if (PQntuples(res) == 0)
        rc = STORE_NOT_FOUND;
    else if (!(*out = pg_dup(res, 0, 0)))
        rc = pg_oom(err);
    PQclear(res);
    return rc;
}

/* 1 when an exact member of f is not UTF-8: no stored text equals it
 * (and the server would refuse it as a parameter). */
static int pg_filter_none(const struct store_filter *f)
{
    return f && ((f->transfer_id &&
                  !utf8_valid(f->transfer_id, strlen(f->transfer_id), NULL)) ||
                 (f->asset_id &&
                  !utf8_valid(f->asset_id, strlen(f->asset_id), NULL)));
}

/* f asks for more than a party substring: the statement is built. */
static int pg_filter_built(const struct store_filter *f)
{
    return !store_filter_party_only(f);
}

/* LIKE pattern matching the bytes of p[0..n) followed by anything. */
static char *pg_like_prefix(const char *p, size_t n)
{
    char *out = malloc(2 * n + 2), *w = out;
    if (!out)
        return NULL;
    for (size_t i = 0; i < n; i++) {
        if (p[i] == '\\' || p[i] == '%' || p[i] == '_')
            *w++ = '\\';
        *w++ = p[i];
    }
    *w++ = '%';
    *w = '\0';
    return out;
}

/* Bytes of the first max characters of UTF-8 text s[0..n), as left()
 * counts. */
static size_t pg_utf8_chars(const char *s, size_t n, size_t max)
{
    size_t i = 0, chars = 0;
    for (; i < n; i++) {
        if (((unsigned char)s[i] & 0xC0) != 0x80) {
            if (chars == max)
                break;
            chars++;
        }
    }
    return i;
}

void pg_filter_free(struct pg_filter_bufs *q)
{
    free(q->like);
    free(q->like_short);
    free(q->bytes);
    *q = (struct pg_filter_bufs){0};
}

char *pg_filter_sql(const struct pg_store *s, int list,
                    const struct store_filter *f, const char *cursor,
                    const char *lim, const char *vals[8], int *n,
                    struct pg_filter_bufs *q)
{
    char sql[1536], num[16];
    size_t len = 0;
    *n = 0;
    *q = (struct pg_filter_bufs){0};
    /* Bounded by construction (a few fixed clauses); the check only keeps
     * a mistake from writing past sql. */
#define PG_ADD(...)                                                            \
    (len < sizeof(sql)                                                         \
         ? (void)(len +=                                                       \
                  (size_t)snprintf(sql + len, sizeof(sql) - len, __VA_ARGS__)) \
         : (void)0)
#define PG_PARAM(v)                                                            \
    (vals[*n] = (v), snprintf(num, sizeof(num), "$%d", ++*n), num)
    if (list)
        PG_ADD("SELECT " PG_ROW_COLS " FROM %s WHERE TRUE", s->qtable);
    else
        PG_ADD("SELECT count(*) FROM %s WHERE TRUE", s->qtable);
    if (cursor)
        PG_ADD(" AND connection_key > %s", PG_PARAM(cursor));
    if (f && f->party_substring && f->party_substring[0])
        PG_ADD(" AND strpos(counter_party_id, %s) > 0",
               PG_PARAM(f->party_substring));
    if (f && f->transfer_id)
        PG_ADD(" AND transfer_process_id = %s", PG_PARAM(f->transfer_id));
    if (f && (f->asset_id || f->asset_id_prefix))
        PG_ADD(" AND jsonb_typeof(edr->'assetId') = 'string'");
    if (f && f->asset_id) {
        const char *p = PG_PARAM(f->asset_id);
        PG_ADD(" AND left(" PG_ASSET_EXPR
               ", %d) = left(%s, %d) AND " PG_ASSET_EXPR " = %s",
               PG_ASSET_CHARS, p, PG_ASSET_CHARS, p);
    }
    if (f && f->asset_id_prefix) {
        /* A byte prefix may end inside a character (or hold bytes no
         * text has), which no text parameter may: LIKE takes its longest
         * valid UTF-8 start, and the bytes are compared as bytea. */
        const char *a = f->asset_id_prefix;
        size_t an = strlen(a), ok = an;
        if (!utf8_valid(a, an, &ok) && !(q->bytes = malloc(2 * an + 3))) {
            pg_filter_free(q);
            return NULL;
        }
        q->like = pg_like_prefix(a, ok);
        q->like_short = pg_like_prefix(a, pg_utf8_chars(a, ok, PG_ASSET_CHARS));
        if (!q->like || !q->like_short) {
            pg_filter_free(q);
            return NULL;
        }
        if (q->bytes) {
            memcpy(q->bytes, "\\x", 2);
            edr_hex_encode(q->bytes + 2, a, an);
        }
        PG_ADD(" AND left(" PG_ASSET_EXPR ", %d) LIKE %s", PG_ASSET_CHARS,
               PG_PARAM(q->like_short));
        PG_ADD(" AND " PG_ASSET_EXPR " LIKE %s", PG_PARAM(q->like));
        if (q->bytes)
            PG_ADD(" AND position(%s::bytea in convert_to(" PG_ASSET_EXPR
                   ", 'UTF8')) = 1",
                   PG_PARAM(q->bytes));
    }
    if (list)
        PG_ADD(" ORDER BY connection_key LIMIT %s", PG_PARAM(lim));
#undef PG_ADD
#undef PG_PARAM
    char *out = len < sizeof(sql) ? strdup(sql) : NULL;
    if (!out)
        pg_filter_free(q);
    return out;
}

/* A built statement on a pooled connection, as pg_read. */
static PGresult *pg_read_sql(struct pg_store *s, const char *sql, int n,
                             const char *const *vals, int *rc,
                             struct store_err *err)
{
    PGconn *c = pg_reader_take(s, rc, err);
    if (!c)
        return NULL;
    PGresult *res = pg_exec_sql(&c, sql, n, vals, rc, err);
    pg_reader_give(s, c);
    return res;
}

int pg_count(struct store *st, const struct store_filter *f, uint64_t *out,
             struct store_err *err)
{
    struct pg_store *s = (struct pg_store *)st;
    const char *substring = f ? f->party_substring : NULL;
    const char *vals[8] = {substring};
    int sub = substring && *substring, n = 0;
    struct pg_filter_bufs q = {0};
    PGresult *res;
    int rc;

    *out = 0;
    if (pg_filter_none(f))
        return STORE_OK;
    if (pg_filter_built(f)) {
        char *sql = pg_filter_sql(s, 0, f, NULL, NULL, vals, &n, &q);
        if (!sql)
            return pg_oom(err);
        res = pg_read_sql(s, sql, n, vals, &rc, err);
        free(sql);
        pg_filter_free(&q);
    } else {
        res = pg_read(s, sub ? PG_COUNT_SUB : PG_COUNT, sub ? 1 : 0, vals, &rc,
                      err);
    }
    if (!res)
        return rc;
    *out = strtoull(PQgetvalue(res, 0, 0), NULL, 10);
    PQclear(res);
    return STORE_OK;
}

/* Copies row i's list columns (PG_ROW_COLS) into r; -1 on OOM. */
static int pg_row(const PGresult *res, int i, struct store_record *r)
{
    r->counter_party_id = pg_dup(res, i, 1);
    r->counter_party_address = pg_dup(res, i, 2);
    r->query_checksum = pg_dup(res, i, 3);
    r->policy_checksum = pg_dup(res, i, 4);
    r->transfer_id = pg_dup(res, i, 5);
    if (!PQgetisnull(res, i, 6) && !(r->asset_id = pg_dup(res, i, 6)))
        return -1;
    return r->counter_party_id && r->counter_party_address &&
                   r->query_checksum && r->policy_checksum && r->transfer_id
               ? 0
               : -1;
}

int pg_list(struct store *st, const struct store_filter *f, const char *cursor,
            size_t limit, struct store_list *out, struct store_err *err)
{
    struct pg_store *s = (struct pg_store *)st;
    const char *substring = f ? f->party_substring : NULL;
    char lim[24];
    const char *vals[8];
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
    if (pg_filter_none(f))
        return STORE_OK;
    snprintf(lim, sizeof(lim), "%zu", limit + 1);
    if (pg_filter_built(f)) {
        struct pg_filter_bufs q;
        char *sql = pg_filter_sql(s, 1, f, cursor, lim, vals, &n, &q);
        if (!sql)
            return pg_oom(err);
        res = pg_read_sql(s, sql, n, vals, &rc, err);
        free(sql);
        pg_filter_free(&q);
        if (!res)
            return rc;
    } else {
        if (cur)
            vals[n++] = cursor;
        if (sub)
            vals[n++] = substring;
        vals[n++] = lim;
        stmt = cur ? (sub ? PG_LIST_CUR_SUB : PG_LIST_CUR)
                   : (sub ? PG_LIST_SUB : PG_LIST);
        if (!(res = pg_read(s, stmt, n, vals, &rc, err)))
            return rc;
    }

    size_t rows = (size_t)PQntuples(res);
    size_t take = rows > limit ? limit : rows;
    if (take > 0 && !(out->items = calloc(take, sizeof(*out->items)))) {
        rc = pg_oom(err);
        goto out;
    }
    for (size_t i = 0; i < take; i++) {
        out->n_items = i + 1;
        if (pg_row(res, (int)i, &out->items[i]) != 0) {
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

int pg_get_by_transfer_id(struct store *st, const char *transfer_id,
                          struct store_record *out, struct store_err *err)
{
    const char *vals[1] = {transfer_id};
    PGresult *res;
    int rc;

    *out = (struct store_record){0};
    if (!transfer_id)
        return store_fail(err, STORE_INVALID, "postgres: missing transfer id");
    if (!utf8_valid(transfer_id, strlen(transfer_id), NULL))
        return STORE_NOT_FOUND;
    if (!(res = pg_read((struct pg_store *)st, PG_BY_TID, 1, vals, &rc, err)))
        return rc;
    if (PQntuples(res) == 0) {
        rc = STORE_NOT_FOUND;
        goto out;
    }
    if (pg_row(res, 0, out) != 0 || !(out->entry_json = pg_dup(res, 0, 7))) {
        store_record_clear(out);
        rc = pg_oom(err);
        goto out;
    }
    /* Only a row without edr_text gives jsonb's spaced-out text. */
    if (!strcmp(PQgetvalue(res, 0, 8), "t"))
        out->entry_len = pg_json_compact(out->entry_json);
    else
        out->entry_len = strlen(out->entry_json);
out:
    PQclear(res);
    return rc;
}

int pg_estimate(struct pg_store *s, uint64_t *out, struct store_err *err)
{
    const char *vals[1] = {s->qtable};
    PGresult *res;
    int rc;

    *out = 0;
    if (!(res = pg_read(s, PG_ESTIMATE, 1, vals, &rc, err)))
        return rc;
    if (PQntuples(res) == 1)
        *out = strtoull(PQgetvalue(res, 0, 0), NULL, 10);
    PQclear(res);
    return STORE_OK;
}

int pg_load_offsets(struct store *st, const char *topic,
                    struct store_offset **out, size_t *n, struct store_err *err)
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

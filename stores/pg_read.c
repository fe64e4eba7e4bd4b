/* pg_read.c: the PostgreSQL store's reads.
 *
 * get, get_transfer_id, count, list and load_offsets, each one prepared
 * statement on a connection lent by the reader pool (pg_conn.c). */
#include "stores/pg_internal.h"

#include "schemas/edr_key.h"

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

int pg_get(struct store *st, const struct edr_key *k, struct store_record *out,
           struct store_err *err)
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

int pg_get_transfer_id(struct store *st, const struct edr_key *k, char **out,
                       struct store_err *err)
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

int pg_count(struct store *st, const struct store_filter *f, uint64_t *out,
             struct store_err *err)
{
    if (!store_filter_party_only(f))
        return store_fail(err, STORE_INVALID,
                          "%s store: this filter is not supported yet",
                          "postgres");
    const char *substring = f ? f->party_substring : NULL;
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

int pg_list(struct store *st, const struct store_filter *f, const char *cursor,
            size_t limit, struct store_list *out, struct store_err *err)
{
    if (!store_filter_party_only(f))
        return store_fail(err, STORE_INVALID,
                          "%s store: this filter is not supported yet",
                          "postgres");
    const char *substring = f ? f->party_substring : NULL;
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

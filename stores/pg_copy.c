/* pg_copy.c: the binary COPY stream for large put-only batches.
 *
 * Encodes the batch's puts in PostgreSQL's binary COPY format into the
 * writer session's staging table, inside the batch's transaction
 * (pg_apply.c merges them). Also makes entries acceptable to jsonb
 * (pg_jsonb_safe), which the pipeline path uses too. */
#include "stores/pg_internal.h"

#include "base/hex.h"
#include "schemas/edr_key.h"
#include "stores/fault.h"

#include <limits.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

static int pg_hex4(const char *p, const char *end)
{
    uint64_t v;
    if (end - p < 4 || edr_hex_parse(p, 4, EDR_HEX_ANY_CASE, &v) != 0)
        return -1;
    return (int)v;
}

/* jsonb rejects two escapes that JSON text allows: \u0000 and unpaired
 * surrogates, so one such entry would fail its whole batch forever. For
 * the jsonb column only (edr_text keeps the entry as given, and reads
 * return that) each becomes \ufffd, of the same length. Returns a malloc'd
 * copy when something changed, else NULL (*oom set when out of memory). */
char *pg_jsonb_safe(const char *s, size_t n, int *oom)
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
int pg_copy_worthy(const struct store_batch *b)
{
    if (b->n_ops < PG_COPY_MIN)
        return 0;
    for (size_t i = 0; i < b->n_ops; i++)
        if (b->ops[i].kind != STORE_OP_PUT)
            return 0;
    return 1;
}

int pg_copy_chunks(const char *p, size_t n,
                   int (*put)(void *ctx, const char *p, int len), void *ctx)
{
    while (n > 0) {
        size_t len = n < PG_COPY_CHUNK ? n : PG_COPY_CHUNK;
        int r = put(ctx, p, (int)len);
        if (r != 0)
            return r;
        p += len;
        n -= len;
    }
    return 0;
}

/* Queues len bytes of COPY data (len < 0: the end of the data) on the
 * connection ctx and flushes them. libpq refuses (0) only when its
 * buffer is full; after a complete flush a second refusal means out of
 * memory. PG_IO_*. */
static int pg_put_copy(void *ctx, const char *p, int len)
{
    PGconn *c = ctx;
    for (int tries = 0; tries < 2; tries++) {
        int r = len < 0 ? PQputCopyEnd(c, NULL) : PQputCopyData(c, p, len);
        if (r < 0)
            return PG_IO_BROKEN;
        int io = pg_flush(c);
        if (io != PG_IO_OK || r == 1)
            return io;
    }
    return PG_IO_BROKEN;
}

/* Opens the batch's transaction and copies its puts into the staging
 * table in PostgreSQL's binary COPY format (lengths, no escaping). On
 * failure the transaction is rolled back or the writer dropped. */
int pg_copy_in(struct pg_store *s, struct store_batch *b, struct store_err *err)
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
    /* COPY cannot be pipelined. Sends stay non-blocking: a server that
     * stops reading must not hang the writer (pg_put_copy). */
    int io = PG_IO_BROKEN;
    if (PQsendQuery(c, "BEGIN; COPY pg_temp.edr_stage FROM STDIN "
                       "(FORMAT binary)"))
        res = pg_collect(c, &io);
    if (!res) {
        rc = pg_fail_io(err, io, "copy", c);
        goto lost;
    }
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
    io = pg_copy_chunks(bf.p, bf.n, pg_put_copy, c);
    if (io == PG_IO_OK)
        io = pg_put_copy(c, NULL, -1);
    if (io == PG_IO_OK && !(res = pg_collect(c, &io)))
        io = io == PG_IO_OK ? PG_IO_BROKEN : io;
    if (io != PG_IO_OK) {
        rc = pg_fail_io(err, io, "copy", c);
        goto lost;
    }
    if (PQresultStatus(res) != PGRES_COMMAND_OK)
        rc = pg_fail_result(c, res, err);
done:
    PQclear(res);
    res = NULL;
    if (PQstatus(c) != CONNECTION_OK) {
        if (rc == STORE_OK)
            rc = pg_fail_conn(err, STORE_TRANSIENT, "connection lost", c);
        goto lost;
    }
    if (rc != STORE_OK && PQtransactionStatus(c) != PQTRANS_IDLE) {
        res = pg_query(c, "ROLLBACK", 0, NULL, &io);
        int ok = PQresultStatus(res) == PGRES_COMMAND_OK;
        PQclear(res);
        if (!ok)
            goto lost; /* closing rolls back too */
    }
    goto out;
lost:
    PQfinish(s->writer);
    s->writer = NULL;
out:
    free(bf.p);
    return rc;
}

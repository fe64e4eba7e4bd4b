/* pg_apply.c: the PostgreSQL store's writes: apply() and clear_party().
 *
 * A batch goes as one libpq pipeline (BEGIN, the fenced offsets, one
 * prepared upsert or delete per op in order, COMMIT), or, when it is a
 * large batch of puts only, as a COPY into the staging table plus one
 * merge. Any failure leaves the table exactly as before. */
#include "stores/pg_internal.h"

#include "schemas/edr_key.h"
#include "stores/fault.h"

#include <inttypes.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

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
/* Queues one op of the pipeline; key is its connection key. Returns 1,
 * 0 when libpq could not queue it, -1 when out of memory. */
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
        if (oom)
            return -1;
        int ok = PQsendQueryPrepared(c, pg_stmts[PG_PUT].name, 8, vals, lens,
                                     fmts, 0);
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
        int sent = pg_send_op(c, &b->ops[i], keys[i]);
        if (sent < 0) {
            rc = pg_oom(err); /* the open pipeline must go */
            goto lost;
        }
        if (!sent)
            goto send_failed;
        n_queries++;
    }
    if (fault_hit(FAULT_QUERY))
        goto fault;
    if (!PQsendQueryParams(c, "COMMIT", 0, NULL, NULL, NULL, NULL, 0) ||
        !PQpipelineSync(c))
        goto send_failed;
    n_queries++;

    /* Results, in order, then the sync. After the first error the server
     * skips the rest (PIPELINE_ABORTED) and the transaction is rolled back
     * below. */
    for (size_t q = 0; q <= n_queries; q++) {
        int io;
        PGresult *res = pg_next_result(c, &io);
        if (!res || PQstatus(c) != CONNECTION_OK) {
            PQclear(res);
            rc = pg_fail_io(err, io, "batch", c);
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
        int io;
        PGresult *res = pg_query(c, "ROLLBACK", 0, NULL, &io);
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

int pg_apply(struct store *st, struct store_batch *b, struct store_err *err)
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

int pg_clear_party(struct store *st, const char *substring, uint64_t *removed,
                   struct store_err *err)
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

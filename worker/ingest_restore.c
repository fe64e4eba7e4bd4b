/* ingest_restore.c: a memory/file worker that starts with an empty state
 * restores it from the changelog (schemas/README.md §4 "The changelog",
 * worker/changelog_restore.h), so its start costs what the live entries
 * cost, not what the history cost.
 *
 * Restored: the memory store at every start; the file store when its file
 * was missing (no saved offsets and no entry). The live entries are put in
 * batches of RESTORE_BATCH; the last batch carries the positions the
 * restored state reflects, which become the saved offsets (in->saved) the
 * loop continues EDR_TOPIC from. While it runs the worker reports
 * "restoring" (metrics_set_restoring): /readyz says not ready and lookups
 * answer `unavailable`.
 *
 * Not done: a file store whose saved position is no longer in the log is
 * left to the state-gap check (it is not moved aside and restored). */
#include "worker/ingest_int.h"

#include "base/clock.h"
#include "worker/changelog_restore.h"
#include "worker/config.h"
#include "worker/log.h"
#include "worker/metrics.h"

#include <inttypes.h>
#include <stdlib.h>
#include <string.h>

#define RESTORE_BATCH 1000

/* The puts gathered for the next store batch, with their own copies. */
struct restore_buf {
    struct ingest *in;
    struct store_op ops[RESTORE_BATCH];
    size_t n;
    uint64_t applied;
    int failed; /* a store failure that is not transient: stop */
};

static void buf_clear(struct restore_buf *rb)
{
    for (size_t i = 0; i < rb->n; i++) {
        struct store_op *op = &rb->ops[i];
        free((char *)op->key.counter_party_id);
        free((char *)op->key.counter_party_address);
        free((char *)op->key.query_checksum);
        free((char *)op->key.policy_checksum);
        free((char *)op->transfer_id);
        free((char *)op->entry_json);
    }
    rb->n = 0;
}

/* Applies the buffered puts (and offs, when n_offs > 0), retrying a
 * transient store failure. 0, or -1 (stopped, or a store failure). */
static int buf_flush(struct restore_buf *rb, const struct store_offset *offs,
                     size_t n_offs)
{
    struct ingest *in = rb->in;
    struct backoff b;
    backoff_init(&b, RETRY_MIN_MS, RETRY_MAX_MS);
    struct store_batch batch = {.ops = rb->ops,
                                .n_ops = rb->n,
                                .topic = in->cfg->topic,
                                .offsets = offs,
                                .n_offsets = n_offs};
    for (;;) {
        struct store_err err = {0};
        int rc = in->st->ops->apply(in->st, &batch, &err);
        if (rc == STORE_OK)
            break;
        if (rc != STORE_TRANSIENT || *in->stop) {
            log_error("restore: store: %s", err.msg);
            rb->failed = rc != STORE_TRANSIENT;
            buf_clear(rb);
            return -1;
        }
        if (b.attempts == 0)
            log_warn("restore: store: %s; retrying", err.msg);
        metrics_retry("store");
        edr_sleep_ms(backoff_next(&b));
    }
    rb->applied += rb->n;
    buf_clear(rb);
    return 0;
}

static char *dup_n(const char *s, size_t n)
{
    char *d = malloc(n + 1);
    if (d) {
        memcpy(d, s, n);
        d[n] = '\0';
    }
    return d;
}

static int restore_cb(const struct changelog_entry *e, void *user)
{
    struct restore_buf *rb = user;
    struct store_op *op = &rb->ops[rb->n++];
    memset(op, 0, sizeof(*op));
    op->kind = STORE_OP_PUT;
    op->key.counter_party_id = strdup(e->key.counter_party_id);
    op->key.counter_party_address = strdup(e->key.counter_party_address);
    op->key.query_checksum = strdup(e->key.query_checksum);
    op->key.policy_checksum = strdup(e->key.policy_checksum);
    op->transfer_id = strdup(e->transfer_id);
    op->entry_json = dup_n(e->entry_json, e->entry_len);
    op->entry_len = e->entry_len;
    if (!op->key.counter_party_id || !op->key.counter_party_address ||
        !op->key.query_checksum || !op->key.policy_checksum ||
        !op->transfer_id || !op->entry_json) {
        log_error("restore: out of memory");
        rb->failed = 1;
        buf_clear(rb);
        return 1;
    }
    if (rb->n == RESTORE_BATCH && buf_flush(rb, NULL, 0) != 0)
        return 1;
    return *rb->in->stop ? 1 : 0;
}

/* 1 when the state is empty and must come from the changelog. */
static int needs_restore(struct ingest *in)
{
    if (in->st->ops->caps.volatile_state)
        return 1;
    if (in->n_saved > 0)
        return 0;
    uint64_t n = 1;
    struct store_err err = {0};
    if (in->st->ops->count(in->st, NULL, &n, &err) != STORE_OK)
        return 0; /* a file store answers from memory: not expected */
    return n == 0;
}

int ingest_restore(struct ingest *in)
{
    const struct config *cfg = in->cfg;
    if (!cfg->changelog_topic || in->group_mode || !needs_restore(in))
        return ROUND_OK;
    if (in->cl_created) {
        /* Empty; and on a cluster the brokers may not all know it yet (a
         * metadata request right after the creation can answer "does not
         * exist"). */
        log_info("restore: the changelog %s was just created: nothing to "
                 "restore",
                 cfg->changelog_topic);
        return ROUND_OK;
    }

    struct changelog_restore_conf conf = {
        .brokers = cfg->brokers,
        .source_topic = cfg->topic,
        .changelog_topic = cfg->changelog_topic,
        .group_id = cfg->group_id,
        .kafka_props = cfg->kafka_props,
        .n_kafka_props = cfg->n_kafka_props,
    };
    struct restore_buf *rb = calloc(1, sizeof(*rb));
    if (!rb) {
        log_error("restore: out of memory");
        return ROUND_FATAL;
    }
    rb->in = in;
    metrics_set_restoring(1);
    log_info("restoring the %s store from the changelog %s", in->st->ops->name,
             cfg->changelog_topic);

    int result = ROUND_OK;
    struct backoff b;
    backoff_init(&b, RETRY_MIN_MS, RETRY_MAX_MS);
    double t0 = ingest_now();
    for (;;) {
        struct changelog_restore_result r = {0};
        char errstr[512];
        rb->applied = 0;
        int rc = changelog_restore(&conf, restore_cb, rb, &r, errstr,
                                   sizeof(errstr));
        if (rc == CHANGELOG_OK) {
            if (buf_flush(rb, r.positions, r.n_positions) != 0) {
                changelog_restore_result_clear(&r);
                result = rb->failed ? ROUND_FATAL : ROUND_STOPPED;
                break;
            }
            if (r.invalid)
                log_warn("restore: %" PRIu64 " records of %s are not "
                         "changelog records; skipped",
                         r.invalid, cfg->changelog_topic);
            if (r.from_headers)
                log_warn("restore: %" PRIu64 " positions came from the "
                         "records' headers (the ownership group's offsets "
                         "are gone): some events are replayed again",
                         r.from_headers);
            free(in->saved);
            in->saved = r.positions; /* now owned by in */
            in->n_saved = r.n_positions;
            r.positions = NULL;
            r.n_positions = 0;
            int64_t sum = 0;
            for (size_t i = 0; i < in->n_saved; i++)
                sum += in->saved[i].next_offset;
            log_info("restored %" PRIu64 " entries (%" PRIu64
                     " changelog records) in %.2f s; continuing %s from the "
                     "restored positions (%zu partitions, %" PRId64
                     " events covered)",
                     rb->applied, r.records, ingest_now() - t0, cfg->topic,
                     in->n_saved, sum);
            changelog_restore_result_clear(&r);
            break;
        }
        buf_clear(rb);
        if (rc == CHANGELOG_STOPPED || *in->stop) {
            result = rb->failed ? ROUND_FATAL : ROUND_STOPPED;
            break;
        }
        if (rc != CHANGELOG_TRANSIENT) {
            log_error("restore: %s", errstr);
            result = ROUND_FATAL;
            break;
        }
        if (b.attempts == 0 || b.attempts % 10 == 0)
            log_warn("restore: %s; retrying", errstr);
        metrics_retry("kafka");
        unsigned ms = backoff_next(&b);
        for (int64_t until = edr_clock_ms() + ms;
             !*in->stop && edr_clock_ms() < until;)
            edr_sleep_ms(50);
    }
    metrics_set_restoring(0);
    free(rb);
    return result;
}

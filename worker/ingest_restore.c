/* ingest_restore.c: a memory/file worker that starts with an empty state
 * restores it from the changelog (schemas/README.md §4 "The changelog",
 * worker/changelog_restore.h), so its start costs what the live entries
 * cost, not what the history cost.
 *
 * Restored: the memory store at every start; the file store when its file
 * was missing (no saved offsets and no entry), and when a saved position
 * is below its partition's log start (retention deleted events it never
 * applied): then its whole state is replaced by the changelog's (see
 * "a file store whose saved position fell out of the log" below). The live
 * entries are put in batches of RESTORE_BATCH; the last batch carries the
 * positions the restored state reflects, which become the saved offsets
 * (in->saved) the loop continues EDR_TOPIC from. While it runs the worker
 * reports "restoring" (metrics_set_restoring): /readyz says not ready and
 * lookups answer `unavailable`.
 *
 * A position that falls out of the log while the worker runs (a long
 * outage) is found by the state-gap check (ingest_gaps.c), which asks for
 * the same replacement (in->restore_pending): the loop pauses everything,
 * runs it, and restarts every partition at the restored positions. A
 * declined replacement is tried again after RESTORE_RETRY_S (a keeper may
 * have caught up). */
#include "worker/ingest_int.h"

#include "base/clock.h"
#include "worker/changelog_restore.h"
#include "worker/config.h"
#include "worker/log.h"
#include "worker/metrics.h"
#include "worker/restore_cover.h"
#include "worker/topic_admin.h"

#include <inttypes.h>
#include <stdlib.h>
#include <string.h>

#define RESTORE_BATCH 1000
/* A restore the changelog declined is tried again after this. */
#define RESTORE_RETRY_S 60.0

/* The puts gathered for the next store batch, with their own copies. */
struct restore_buf {
    struct ingest *in;
    struct store_op ops[RESTORE_BATCH];
    size_t n;
    uint64_t applied;
    int failed;   /* a store failure that is not transient: stop */
    int borrowed; /* ops[] point into another's memory: not freed */
    int declined; /* check_cover declined the replacement */
    int64_t *low; /* replace: the log start of each source partition */
    int32_t n_low;
};

static void buf_clear(struct restore_buf *rb)
{
    for (size_t i = 0; !rb->borrowed && i < rb->n; i++) {
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

/* ---- a file store whose saved position fell out of the log ----------- */

/* The store does not know which partition an entry came from (producers
 * choose the partition; the worker cannot compute it), and the changelog
 * cannot tell either for a deleted entry (compaction drops tombstones
 * after delete.retention.ms). So a partition's state cannot be cut out of
 * the file store alone: the WHOLE state is replaced by the changelog's,
 * and every partition continues from the changelog's position. That is
 * exact for every partition the changelog covers (its position is still
 * in the log: replaying from there over the restored state is
 * idempotent), so the replacement is done only when it leaves no
 * partition worse than the file did (check_cover). */

/* 1 when partition p's saved (or, unsaved, 0) position is below the log
 * start low[p]. */
static int out_of_log(const struct restore_buf *rb, int32_t p)
{
    int64_t s = ingest_saved_offset(rb->in, p);
    return rb->low[p] > (s >= 0 ? s : 0);
}

/* Reads the log start of every source partition into rb->low. 1 when a
 * partition's saved position is below it (the changelog must replace the
 * state), 0 when none is or the log starts cannot be read (the state-gap
 * check then reports, and re-checks, what it finds). */
static int saved_out_of_log(struct restore_buf *rb)
{
    struct ingest *in = rb->in;
    char errstr[256];
    int parts = 0, rf = 0, found = 0;
    if (topic_admin_partitions(in->rk, in->cfg->topic, &parts, &rf, errstr,
                               sizeof(errstr)) != TOPIC_ADMIN_OK ||
        parts <= 0) {
        log_warn("restore: cannot read the partitions of %s (%s); the saved "
                 "positions are checked against the log later",
                 in->cfg->topic, errstr);
        return 0;
    }
    rb->low = calloc((size_t)parts, sizeof(*rb->low));
    if (!rb->low)
        return 0;
    rb->n_low = parts;
    for (int32_t p = 0; p < parts; p++) {
        int64_t hi = -1;
        rd_kafka_resp_err_t err = rd_kafka_query_watermark_offsets(
            in->rk, in->cfg->topic, p, &rb->low[p], &hi, 5000);
        if (err) {
            log_warn("restore: cannot read the log start of partition "
                     "%" PRId32 " of %s (%s); checked later",
                     p, in->cfg->topic, rd_kafka_err2str(err));
            return 0;
        }
        if (out_of_log(rb, p)) {
            log_warn(
                "restore: the saved position %" PRId64 " of partition %" PRId32
                " of %s is below its log start "
                "%" PRId64 " (retention deleted events this store never "
                "applied): restoring from the changelog",
                ingest_saved_offset(in, p) < 0 ? 0 : ingest_saved_offset(in, p),
                p, in->cfg->topic, rb->low[p]);
            found = 1;
        }
    }
    return found;
}

/* Empties the store in batches of RESTORE_BATCH deletes; the first batch
 * also sets every partition's saved offset to 0, so a crash from here on
 * leaves a store that the next start restores again (its positions are
 * below the log start) or replays from a complete log: never a half
 * replaced state taken for a whole one. 0, or -1. */
static int wipe_store(struct restore_buf *rb)
{
    struct ingest *in = rb->in;
    size_t n_offs = (size_t)rb->n_low + in->n_saved;
    struct store_offset *offs = calloc(n_offs, sizeof(*offs));
    if (!offs) {
        log_error("restore: out of memory");
        rb->failed = 1;
        return -1;
    }
    n_offs = 0;
    for (int32_t p = 0; p < rb->n_low; p++)
        offs[n_offs++] = (struct store_offset){p, 0, -1};
    for (size_t i = 0; i < in->n_saved; i++)
        if (in->saved[i].partition >= rb->n_low)
            offs[n_offs++] =
                (struct store_offset){in->saved[i].partition, 0, -1};
    int rc = 0;
    uint64_t removed = 0;
    for (int first = 1;; first = 0) {
        struct store_list l = {0};
        struct store_err err = {0};
        if (in->st->ops->list(in->st, NULL, NULL, RESTORE_BATCH, &l, &err) !=
            STORE_OK) {
            log_error("restore: store: %s", err.msg);
            rb->failed = 1;
            rc = -1;
            break;
        }
        for (size_t i = 0; i < l.n_items; i++) {
            struct store_op *op = &rb->ops[i];
            memset(op, 0, sizeof(*op));
            op->kind = STORE_OP_DELETE;
            op->key.counter_party_id = l.items[i].counter_party_id;
            op->key.counter_party_address = l.items[i].counter_party_address;
            op->key.query_checksum = l.items[i].query_checksum;
            op->key.policy_checksum = l.items[i].policy_checksum;
        }
        rb->n = l.n_items;
        removed += l.n_items;
        rb->borrowed = 1; /* the keys belong to l */
        rc = l.n_items > 0 || first
                 ? buf_flush(rb, first ? offs : NULL, first ? n_offs : 0)
                 : 0;
        rb->borrowed = 0;
        size_t got = l.n_items;
        store_list_clear(&l);
        if (rc != 0 || got == 0)
            break;
    }
    free(offs);
    rb->applied = 0;
    if (rc == 0)
        log_info("restore: removed the %" PRIu64 " entries of the file store",
                 removed);
    return rc;
}

/* changelog_restore's check: replaces the state when restore_cover.h
 * says so; else declines: the file store is kept and the state-gap check
 * reports its gaps, as without a changelog. */
static int check_cover(const struct store_offset *pos, size_t n, void *user)
{
    struct restore_buf *rb = user;
    struct ingest *in = rb->in;
    int64_t *v = calloc(3 * (n ? n : 1), sizeof(*v));
    if (!v) {
        log_error("restore: out of memory");
        rb->failed = 1;
        return 1;
    }
    int64_t *c = v, *s = v + n, *low = v + 2 * n;
    for (size_t i = 0; i < n; i++) {
        int32_t p = pos[i].partition;
        c[i] = pos[i].next_offset;
        s[i] = ingest_saved_offset(in, p);
        low[i] = p < rb->n_low ? rb->low[p] : 0;
        if (restore_cover_uncovered(c[i], s[i], low[i]))
            log_error("restore: the changelog %s does not cover partition "
                      "%" PRId32 " of %s: it reflects offset %" PRId64
                      ", the log starts at %" PRId64,
                      in->cfg->changelog_topic, p, in->cfg->topic, c[i],
                      low[i]);
    }
    int32_t at = -1;
    enum restore_cover d = restore_cover_decide(n, c, s, low, &at);
    if (d == RESTORE_COVER_BEHIND)
        log_error("restore: the changelog is behind the file store in "
                  "partition %" PRId32 " (offset %" PRId64 " against %" PRId64
                  "): the file store is kept; its state gaps are reported",
                  pos[at].partition, c[at], s[at] < 0 ? 0 : s[at]);
    else if (d == RESTORE_COVER_NONE)
        log_error("restore: the changelog covers no partition whose "
                  "position fell out of the log: the file store is kept; "
                  "its state gaps are reported");
    free(v);
    if (d != RESTORE_COVER_REPLACE) {
        rb->declined = 1;
        return 1;
    }
    return wipe_store(rb) == 0 ? 0 : 1;
}

/* ---- which restore --------------------------------------------------- */

enum { RESTORE_NONE, RESTORE_EMPTY, RESTORE_REPLACE };

/* RESTORE_EMPTY when the state is empty and must come from the changelog;
 * RESTORE_REPLACE when a file store's saved position fell out of the
 * log. */
static int needs_restore(struct restore_buf *rb)
{
    struct ingest *in = rb->in;
    if (in->st->ops->caps.volatile_state)
        return RESTORE_EMPTY;
    if (in->n_saved > 0)
        return saved_out_of_log(rb) ? RESTORE_REPLACE : RESTORE_NONE;
    uint64_t n = 1;
    struct store_err err = {0};
    if (in->st->ops->count(in->st, NULL, &n, &err) != STORE_OK)
        return RESTORE_NONE; /* a file store answers from memory */
    if (n == 0)
        return RESTORE_EMPTY;
    /* entries without positions: a state whose next offsets are 0 */
    return saved_out_of_log(rb) ? RESTORE_REPLACE : RESTORE_NONE;
}

/* The restore; running: the loop found a gap while it ran (only the
 * replacement applies). *restored = 1 when the state was restored. */
static int run_restore(struct ingest *in, int running, int *restored)
{
    const struct config *cfg = in->cfg;
    *restored = 0;
    /* postgres (group mode) has no changelog (schemas/README.md §4) */
    if (!cfg->changelog_topic || in->group_mode)
        return ROUND_OK;
    if (in->cl_created && !running) {
        /* Empty at start; and on a cluster the brokers may not all know it
         * yet (a metadata request right after the creation can answer
         * "does not exist"). Later, other workers may have filled it. */
        in->cl_created = 0;
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
    metrics_set_restoring(1); /* not ready, lookups unavailable */
    int mode = running ? (saved_out_of_log(rb) ? RESTORE_REPLACE : RESTORE_NONE)
                       : needs_restore(rb);
    if (mode == RESTORE_NONE) {
        metrics_set_restoring(0);
        free(rb->low);
        free(rb);
        return ROUND_OK;
    }
    conf.check = mode == RESTORE_REPLACE ? check_cover : NULL;
    log_info("restoring the %s store from the changelog %s%s",
             in->st->ops->name, cfg->changelog_topic,
             mode == RESTORE_REPLACE ? " (replacing its state)" : "");

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
            *restored = 1;
            break;
        }
        buf_clear(rb);
        if (rc == CHANGELOG_STOPPED && rb->declined) {
            /* the file store is kept; the gap check reports; not again
             * before RESTORE_RETRY_S */
            in->restore_after = ingest_now() + RESTORE_RETRY_S;
            break;
        }
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
    free(rb->low);
    free(rb);
    return result;
}

int ingest_restore(struct ingest *in)
{
    int restored;
    return run_restore(in, 0, &restored);
}

int ingest_restore_running(struct ingest *in)
{
    int restored = 0;
    in->restore_pending = 0;
    in->restore_after = ingest_now() + RESTORE_RETRY_S;
    if (!in->cfg->changelog_topic || in->group_mode)
        return ROUND_OK;
    ingest_set_paused(in, 1);
    int rc = ingest_load_offsets(in); /* what the state reflects now */
    if (rc == 0)
        rc = run_restore(in, 1, &restored);
    if (rc == ROUND_OK && restored) {
        /* every partition goes on from the restored positions */
        for (int32_t i = 0; i < in->n_parts; i++) {
            struct part *p = &in->parts[i];
            if (!p->known || !p->assigned)
                continue;
            int64_t off = ingest_saved_offset(in, i);
            p->expect = p->next = off >= 0 ? off : 0;
            p->reset = 1; /* restarted there by the re-check */
            p->gap = 0;
        }
        in->cl_assign_seen = UINT64_MAX; /* re-evaluate the handover */
        ingest_gaps_recheck(in);
    }
    if (!in->outage)
        ingest_set_paused(in, 0);
    return rc == ROUND_STOPPED ? ROUND_OK : rc;
}

/* ingest_changelog.c: the Kafka loop's side of the changelog
 * (schemas/README.md §4 "The changelog", worker/changelog.h).
 *
 * At start: the source topic's retention is read (gauges; a warning when
 * retention can delete events and no changelog protects the state), the
 * changelog topic is ensured (created, or checked: an invalid one is an
 * invalid setting) and the writer opened. After each applied batch, for
 * the partitions this worker owns, the current state of every key the
 * batch touched (read back from the store: a put of the stored entry, or a
 * tombstone when the key is gone) is added to the open changelog
 * transaction with the batch's next offsets; the transaction is committed
 * when it is EDR_CHANGELOG_COMMIT_MS old or holds CL_TXN_MAX_RECORDS
 * records (checked after each batch and each loop round), when the role
 * is revoked (changelog.c) and at shutdown. One transaction per batch made
 * ingest with the changelog ~8x slower than without (two blocking round
 * trips, send_offsets and commit, per batch of a few hundred events).
 *
 * Why a transaction over many batches stays exact. The changelog and the
 * source offsets committed for the ownership group change together, at
 * commit, so a restore (changelog_restore.c: changelog read_committed,
 * then the source from those offsets) sees a state that reflects exactly
 * the source positions it continues from. The local store applies first
 * and commits later; a crash in between loses nothing: the local state of
 * a memory worker is gone, a file worker resumes from its own saved
 * offsets, and the changelog still reflects its committed offsets (the
 * open transaction is aborted by the broker). An abort while running
 * (TRANSIENT) drops every batch of the transaction: the owned partitions
 * go back to CL_NEW and are caught up from this worker's last commit
 * (changelog_committed), exactly as at a handover.
 *
 * Read-your-writes (min_positions) is not affected: every memory/file
 * worker applies every partition of the source itself and answers from
 * its own store, whose positions are those of events it applied from the
 * source log, never rolled back. The changelog is a copy of that state
 * for restores, not its source: an aborted changelog transaction loses no
 * applied event, it only delays when the changelog reflects it. So a
 * lookup may be answered from state that the changelog does not hold yet,
 * never from state that will be undone.
 *
 * Handover (changelog.h): a partition gained with committed position c
 * while this worker's applied position q is past c is caught up first:
 * source [c, q) is re-read, and the current state of every key it touched
 * is written with offset q. With q <= c nothing is written for it until a
 * batch takes it past c. A partition's state:
 *   CL_NEW   not owned, or owned and not looked at yet
 *   CL_WAIT  owned, this worker behind c: write once a batch passes c
 *   CL_READY owned and caught up: every batch is written
 *   CL_HOLE  owned, but retention deleted part of source [c, q): the keys
 *            those events touched are unknown, so nothing is written and
 *            the changelog stays at c (a restore from it then reports the
 *            gap instead of a silently stale state; logged at error level) */
#include "worker/ingest_int.h"

#include "base/clock.h"
#include "schemas/event.h"
#include "worker/changelog.h"
#include "worker/changelog_keys.h"
#include "worker/config.h"
#include "worker/config_parse.h"
#include "worker/log.h"
#include "worker/metrics.h"
#include "worker/topic_admin.h"

#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

enum cl_state { CL_NEW = 0, CL_WAIT, CL_READY, CL_HOLE };

/* catch_up: source [from, to) is no longer all in the log. */
#define CATCHUP_HOLE 1

/* Bound of the handover re-read of the source. */
#define CATCHUP_TIMEOUT_MS 60000
/* A catch-up that failed is tried again after this long. */
#define CATCHUP_RETRY_S 1.0
/* A transaction is committed once it holds this many records, whatever
 * its age: it bounds the re-read after an abort. */
#define CL_TXN_MAX_RECORDS 50000
#define CL_WARN_EVERY_S 10.0

/* Sleeps ms in short steps, polling the changelog's clients; 1 when
 * stopped. */
static int wait_or_stop(struct ingest *in, unsigned ms)
{
    int64_t until = edr_clock_ms() + ms;
    while (!*in->stop) {
        int64_t left = until - edr_clock_ms();
        if (left <= 0)
            return 0;
        if (in->cl) {
            char errstr[256];
            changelog_poll(in->cl, errstr, sizeof(errstr));
        }
        edr_sleep_ms(left < 100 ? (unsigned)left : 100);
    }
    return 1;
}

int ingest_changelog_check(struct ingest *in)
{
    const struct config *cfg = in->cfg;
    char errstr[512];
    struct topic_retention r;

    int rc =
        topic_admin_retention(in->rk, cfg->topic, &r, errstr, sizeof(errstr));
    if (rc == TOPIC_ADMIN_OK) {
        metrics_source_retention(r.retention_ms, r.retention_bytes);
        log_info("kafka: %s: cleanup.policy=%s retention.ms=%" PRId64
                 " retention.bytes=%" PRId64,
                 cfg->topic, r.cleanup_policy, r.retention_ms,
                 r.retention_bytes);
        if (r.can_delete && !cfg->changelog_topic)
            log_warn("kafka: retention of %s can delete events and no "
                     "changelog protects the state (EDR_CHANGELOG_TOPIC=off): "
                     "a worker starting after that serves an incomplete "
                     "state",
                     cfg->topic);
    } else {
        log_warn("kafka: could not read the retention of %s: %s", cfg->topic,
                 errstr);
    }
    if (!cfg->changelog_topic)
        return ROUND_OK;

    struct backoff b;
    backoff_init(&b, RETRY_MIN_MS, RETRY_MAX_MS);
    for (;;) {
        rc = topic_admin_ensure_changelog(
            in->rk, cfg->topic, cfg->changelog_topic, errstr, sizeof(errstr));
        if (rc == TOPIC_ADMIN_CREATED) {
            log_info("kafka: created the changelog topic %s",
                     cfg->changelog_topic);
            in->cl_created = 1;
        }
        if (rc >= 0)
            return ROUND_OK;
        if (rc == TOPIC_ADMIN_INVALID) {
            log_error("invalid setting EDR_CHANGELOG_TOPIC: %s", errstr);
            return ROUND_CONFIG;
        }
        if (b.attempts == 0 || b.attempts % 10 == 0)
            log_warn("kafka: changelog topic %s: %s; retrying",
                     cfg->changelog_topic, errstr);
        metrics_retry("kafka");
        if (wait_or_stop(in, backoff_next(&b)))
            return ROUND_STOPPED;
    }
}

int ingest_changelog_open(struct ingest *in)
{
    const struct config *cfg = in->cfg;
    if (!cfg->changelog_topic)
        return ROUND_OK;
    struct changelog_conf c = {
        .brokers = cfg->brokers,
        .source_topic = cfg->topic,
        .changelog_topic = cfg->changelog_topic,
        .group_id = cfg->group_id,
        .worker_id = cfg->worker_id,
        .kafka_props = cfg->kafka_props,
        .n_kafka_props = cfg->n_kafka_props,
    };
    struct backoff b;
    backoff_init(&b, RETRY_MIN_MS, RETRY_MAX_MS);
    for (;;) {
        char errstr[512];
        int rc = changelog_open(&c, &in->cl, errstr, sizeof(errstr));
        if (rc == CHANGELOG_OK) {
            log_info("kafka: changelog %s open (ownership group %s.changelog)",
                     cfg->changelog_topic, cfg->group_id);
            return ROUND_OK;
        }
        if (rc != CHANGELOG_TRANSIENT) {
            log_error("invalid setting EDR_CHANGELOG_TOPIC: writer: %s",
                      errstr);
            return ROUND_CONFIG;
        }
        if (b.attempts == 0 || b.attempts % 10 == 0)
            log_warn("kafka: changelog writer: %s; retrying", errstr);
        metrics_retry("kafka");
        if (wait_or_stop(in, backoff_next(&b)))
            return ROUND_STOPPED;
    }
}

void ingest_changelog_close(struct ingest *in)
{
    if (in->cl && !in->fatal) {
        /* What was applied is in the changelog before the worker leaves
         * (SIGTERM, --exit-when-caught-up). */
        char errstr[512];
        int rc = changelog_commit(in->cl, errstr, sizeof(errstr));
        if (rc != CHANGELOG_OK)
            log_warn("changelog: final commit: %s (the next owner catches "
                     "up)",
                     errstr);
    }
    if (in->cl) {
        log_info("kafka: closing the changelog writer (%" PRIu64
                 " records written, %" PRIu64
                 " transactions committed by the loop in %.2f s)",
                 in->cl_written, in->cl_commits, in->cl_commit_s);
        changelog_close(in->cl);
        in->cl = NULL;
    }
    free(in->clp);
    in->clp = NULL;
    in->n_clp = 0;
}

/* After CHANGELOG_FATAL: when a new producer clears the failure, closes
 * the writer and opens a new one, the way a rebalance would: every owned
 * partition starts over as CL_NEW, so its catch-up rewrites what the
 * aborted transaction held. 1 when reopened (or stopped meanwhile), 0 when
 * the failure stays fatal. */
static int reopen_writer(struct ingest *in, const char *errstr)
{
    if (!in->cl || !changelog_recoverable(in->cl))
        return 0;
    log_error("changelog: %s; the writer is reopened and catches up from "
              "the source",
              errstr);
    metrics_retry("kafka");
    changelog_close(in->cl);
    in->cl = NULL;
    if (in->clp)
        memset(in->clp, 0, (size_t)in->n_clp * sizeof(*in->clp));
    return ingest_changelog_open(in) != ROUND_CONFIG;
}

static struct cl_part *cl_part(struct ingest *in, int32_t p)
{
    if (p < 0)
        return NULL;
    if (p >= in->n_clp) {
        int32_t n = p + 1 > in->n_parts ? p + 1 : in->n_parts;
        struct cl_part *a = realloc(in->clp, (size_t)n * sizeof(*a));
        if (!a)
            return NULL;
        memset(a + in->n_clp, 0, (size_t)(n - in->n_clp) * sizeof(*a));
        in->clp = a;
        in->n_clp = n;
    }
    return &in->clp[p];
}

/* The next offset after what the store holds for p (0: nothing). */
static int64_t applied_position(struct ingest *in, int32_t p)
{
    struct part *pt = ingest_part(in, p, 0);
    if (pt && pt->next >= 0)
        return pt->next;
    int64_t s = ingest_saved_offset(in, p);
    return s > 0 ? s : 0;
}

static int cl_warn_allowed(struct ingest *in)
{
    double now = ingest_now();
    if (now < in->cl_warn_until)
        return 0;
    in->cl_warn_until = now + CL_WARN_EVERY_S;
    return 1;
}

/* After a transaction of this worker failed (TRANSIENT: aborted, or its
 * commit timed out): every owned partition is caught up again from this
 * worker's last commit, as at a handover (the header comment). */
static void cl_rewind(struct ingest *in)
{
    for (int32_t p = 0; p < in->n_clp; p++)
        in->clp[p].state = CL_NEW;
}

/* Maps a changelog status of a write or commit to the loop's reaction.
 * ROUND_OK or ROUND_FATAL. */
static int cl_status(struct ingest *in, int rc, const char *errstr)
{
    if (rc == CHANGELOG_OK)
        return ROUND_OK;
    if (rc == CHANGELOG_FENCED) {
        log_warn("changelog: this worker lost the writer role (%s); "
                 "its open transaction was not written",
                 errstr);
        return ROUND_OK;
    }
    if (rc == CHANGELOG_TRANSIENT) {
        if (cl_warn_allowed(in))
            log_warn("changelog: %s; its partitions are caught up again",
                     errstr);
        metrics_retry("kafka");
        cl_rewind(in);
        return ROUND_OK;
    }
    if (rc == CHANGELOG_FATAL && reopen_writer(in, errstr))
        return ROUND_OK; /* the new writer catches every partition up */
    log_error("changelog: fatal error: %s", errstr);
    return ROUND_FATAL;
}

/* Commits the open transaction when it is due (force: now). ROUND_OK or
 * ROUND_FATAL. */
static int cl_commit_due(struct ingest *in, int force)
{
    int64_t age = changelog_txn_age_ms(in->cl);
    if (age < 0)
        return ROUND_OK;
    if (!force && age < in->cfg->changelog_commit_ms &&
        changelog_txn_records(in->cl) < CL_TXN_MAX_RECORDS)
        return ROUND_OK;
    char errstr[512];
    double t0 = ingest_now();
    int rc = changelog_commit(in->cl, errstr, sizeof(errstr));
    in->cl_commit_s += ingest_now() - t0;
    in->cl_commits += rc == CHANGELOG_OK;
    return cl_status(in, rc, errstr);
}

/* Reads the current state of every key of ks from the store and adds it
 * to the open transaction with the offsets src[0..n_src) (commit: and
 * commits it). Returns the changelog status (TRANSIENT also when stopped
 * during a store outage), CHANGELOG_FATAL when out of memory or the store
 * failed fatally. Store reads are retried; the changelog is tried once
 * (the caller decides: an abort needs a catch-up, not a retry). */
static int write_keys(struct ingest *in, const struct cl_keys *ks,
                      const struct store_offset *src, size_t n_src, int commit,
                      char *errstr, size_t n)
{
    struct changelog_change *ch = calloc(ks->n ? ks->n : 1, sizeof(*ch));
    struct store_record *recs = calloc(ks->n ? ks->n : 1, sizeof(*recs));
    struct backoff b;
    int rc = CHANGELOG_FATAL;

    backoff_init(&b, RETRY_MIN_MS, RETRY_MAX_MS);
    snprintf(errstr, n, "changelog: out of memory");
    if (!ch || !recs)
        goto out;
    for (size_t i = 0; i < ks->n; i++) {
        struct store_err err = {0};
        int g;
        while ((g = in->st->ops->get(in->st, &ks->v[i].key, &recs[i], &err)) ==
                   STORE_TRANSIENT &&
               !*in->stop)
            if (wait_or_stop(in, backoff_next(&b)))
                break;
        if (g == STORE_TRANSIENT) {
            snprintf(errstr, n, "store: %s", err.msg);
            rc = CHANGELOG_TRANSIENT;
            goto out;
        }
        if (g < 0) {
            snprintf(errstr, n, "store: %s", err.msg);
            goto out;
        }
        ch[i].partition = ks->v[i].partition;
        ch[i].key = ks->v[i].key;
        if (g == STORE_OK) {
            ch[i].entry_json = recs[i].entry_json;
            ch[i].entry_len = recs[i].entry_len;
        } /* else NOT_FOUND: a tombstone */
    }
    size_t written = 0;
    rc = changelog_add(in->cl, ch, ks->n, src, n_src, &written, errstr, n);
    if (rc == CHANGELOG_OK) {
        in->cl_written += written;
        if (commit)
            rc = changelog_commit(in->cl, errstr, n);
    }
out:
    for (size_t i = 0; recs && i < ks->n; i++)
        store_record_clear(&recs[i]);
    free(recs);
    free(ch);
    return rc;
}

/* ---- handover catch-up ------------------------------------------------- */

static rd_kafka_t *catchup_consumer(struct ingest *in, char *errstr, size_t n)
{
    const struct config *cfg = in->cfg;
    rd_kafka_conf_t *conf = rd_kafka_conf_new();
    char group[512];
    snprintf(group, sizeof(group), "%s.changelog.catchup", cfg->group_id);
    for (size_t i = 0; i < cfg->n_kafka_props; i++) {
        const char *prop = cfg->kafka_props[i];
        const char *eq = strchr(prop, '=');
        char name[256];
        if (!eq || (size_t)(eq - prop) >= sizeof(name))
            continue;
        memcpy(name, prop, (size_t)(eq - prop));
        name[eq - prop] = '\0';
        if (config_kafka_set(conf, name, eq + 1, errstr, n) != 0)
            goto fail;
    }
    if (config_kafka_set(conf, "bootstrap.servers", cfg->brokers, errstr, n) ||
        config_kafka_set(conf, "group.id", group, errstr, n) ||
        config_kafka_set(conf, "enable.auto.commit", "false", errstr, n) ||
        config_kafka_set(conf, "enable.auto.offset.store", "false", errstr,
                         n) ||
        config_kafka_set(conf, "auto.offset.reset", "error", errstr, n) ||
        config_kafka_set(conf, "enable.partition.eof", "true", errstr, n))
        goto fail;
    rd_kafka_t *rk = rd_kafka_new(RD_KAFKA_CONSUMER, conf, errstr, n);
    if (!rk)
        goto fail;
    conf = NULL; /* now owned by rk */
    return rk;
fail:
    rd_kafka_conf_destroy(conf);
    return NULL;
}

/* Re-reads source partition p over [from, to) and writes the current state
 * of every key its events touched, with offset `to`. CHANGELOG_OK, or the
 * status of the failure (TRANSIENT: try again later). */
static int catch_up(struct ingest *in, int32_t p, int64_t from, int64_t to)
{
    char errstr[512];
    struct cl_keys ks = {0};
    int rc = CHANGELOG_TRANSIENT;
    uint64_t events = 0;
    double t0 = ingest_now();

    rd_kafka_t *rk = catchup_consumer(in, errstr, sizeof(errstr));
    if (!rk) {
        log_error("changelog: catch-up consumer: %s", errstr);
        return CHANGELOG_FATAL;
    }
    int64_t low = -1, high = -1;
    if (rd_kafka_query_watermark_offsets(rk, in->cfg->topic, p, &low, &high,
                                         5000) != RD_KAFKA_RESP_ERR_NO_ERROR)
        goto out; /* TRANSIENT: looked at again */
    if (low > from) {
        log_error("changelog: partition %" PRId32 " cannot catch up: source "
                  "offsets %" PRId64 "-%" PRId64 " were deleted by retention "
                  "before the changelog reflected them; its changelog stays "
                  "at %" PRId64 " (a restore from it reports the gap)",
                  p, from, low - 1, from);
        rc = CATCHUP_HOLE;
        goto out;
    }
    rd_kafka_topic_partition_list_t *l = rd_kafka_topic_partition_list_new(1);
    rd_kafka_topic_partition_list_add(l, in->cfg->topic, p)->offset = from;
    rd_kafka_resp_err_t e = rd_kafka_assign(rk, l);
    rd_kafka_topic_partition_list_destroy(l);
    if (e) {
        log_warn("changelog: catch-up assign: %s", rd_kafka_err2str(e));
        goto out;
    }
    int64_t deadline = edr_clock_ms() + CATCHUP_TIMEOUT_MS;
    int64_t pos = from;
    while (pos < to) {
        if (*in->stop || edr_clock_ms() > deadline)
            goto out;
        rd_kafka_message_t *m = rd_kafka_consumer_poll(rk, 100);
        changelog_poll(in->cl, errstr, sizeof(errstr));
        if (!m)
            continue;
        if (m->err == RD_KAFKA_RESP_ERR__PARTITION_EOF) {
            pos = m->offset; /* the log ends before `to`: nothing more */
            rd_kafka_message_destroy(m);
            if (pos < to)
                goto out;
            break;
        }
        if (m->err == RD_KAFKA_RESP_ERR__AUTO_OFFSET_RESET) {
            rd_kafka_message_destroy(m); /* deleted meanwhile: look again */
            goto out;
        }
        if (m->err) {
            if (cl_warn_allowed(in))
                log_warn("changelog: catch-up read: %s",
                         rd_kafka_message_errstr(m));
            rd_kafka_message_destroy(m);
            continue;
        }
        pos = m->offset + 1;
        if (m->offset < to) {
            struct event ev;
            char why[128];
            if (event_decode(&ev, m->payload ? m->payload : "", m->len, why,
                             sizeof(why)) == EVENT_OK) {
                struct edr_key k = event_key(&ev);
                int a = cl_keys_add(&ks, p, &k, 1);
                event_clear(&ev);
                events++;
                if (a != 0) {
                    rd_kafka_message_destroy(m);
                    log_error("changelog: out of memory");
                    rc = CHANGELOG_FATAL;
                    goto out;
                }
            } /* a bad event changed nothing: the dead-letter copy has it */
        }
        rd_kafka_message_destroy(m);
    }
    cl_keys_unique(&ks);
    struct store_offset src = {p, to, -1};
    rc = write_keys(in, &ks, &src, 1, 1, errstr, sizeof(errstr));
    if (rc == CHANGELOG_FENCED)
        log_warn("changelog: catch-up of partition %" PRId32 ": %s", p, errstr);
    else if (rc == CHANGELOG_TRANSIENT)
        log_warn("changelog: catch-up of partition %" PRId32 ": %s; retrying",
                 p, errstr);
    else if (rc == CHANGELOG_FATAL)
        log_error("changelog: catch-up of partition %" PRId32 ": %s", p,
                  errstr);
    if (rc == CHANGELOG_OK)
        log_info("changelog: partition %" PRId32 " caught up: source [%" PRId64
                 ", %" PRId64 ") re-read (%" PRIu64 " events, %zu keys) in "
                 "%.1f s",
                 p, from, to, events, ks.n, ingest_now() - t0);
out:
    cl_keys_clear(&ks);
    rd_kafka_consumer_close(rk);
    rd_kafka_destroy(rk);
    return rc;
}

void ingest_changelog_poll(struct ingest *in)
{
    char errstr[512];
    if (!in->cl)
        return;
    int rc = changelog_poll(in->cl, errstr, sizeof(errstr));
    if (rc == CHANGELOG_FATAL) {
        if (!reopen_writer(in, errstr)) {
            log_error("changelog: %s", errstr);
            in->fatal = 1;
        }
        return;
    }
    if (rc == CHANGELOG_TRANSIENT && cl_warn_allowed(in))
        log_warn("changelog: %s", errstr);
    if (cl_commit_due(in, 0) == ROUND_FATAL) {
        in->fatal = 1;
        return;
    }
    if (!in->cl)
        return; /* reopened after a fatal error, and stopped meanwhile */
    uint64_t a = changelog_assignments(in->cl);
    int reset = a != in->cl_assign_seen;
    in->cl_assign_seen = a;
    for (int32_t p = 0; p < in->n_parts || p < in->n_clp; p++) {
        struct cl_part *c = cl_part(in, p);
        if (!c)
            return; /* out of memory: nothing owned is written */
        if (reset || !changelog_owned(in->cl, p)) {
            c->state = CL_NEW;
            continue;
        }
        if (c->state != CL_NEW)
            continue;
        int64_t committed = changelog_committed(in->cl, p);
        int64_t from = committed > 0 ? committed : 0;
        int64_t q = applied_position(in, p);
        if (q > from) {
            if (ingest_now() < in->cl_retry_at)
                return;
            int r = catch_up(in, p, from, q);
            if (r == CHANGELOG_OK)
                c->state = CL_READY;
            else if (r == CATCHUP_HOLE)
                c->state = CL_HOLE;
            else if (r == CHANGELOG_FATAL &&
                     !reopen_writer(in, "catch-up failed"))
                in->fatal = 1;
            /* TRANSIENT / FENCED: a later poll looks again */
            if (r != CHANGELOG_OK && r != CATCHUP_HOLE) {
                in->cl_retry_at = ingest_now() + CATCHUP_RETRY_S;
                return;
            }
        } else if (q == from) {
            c->state = CL_READY;
        } else {
            c->state = CL_WAIT;
            c->committed = committed;
        }
    }
}

int ingest_changelog_write(struct ingest *in)
{
    if (!in->cl)
        return ROUND_OK;
    size_t n_src = 0;
    struct cl_keys ks = {0};
    int result = ROUND_OK;
    struct store_offset *src =
        malloc((in->n_items ? in->n_items : 1) * sizeof(*src));
    if (!src) {
        log_error("changelog: out of memory");
        return ROUND_FATAL;
    }

    /* The batch's next offsets of the partitions to write. */
    for (size_t i = 0; i < in->n_items; i++) {
        const struct item *it = &in->items[i];
        if (it->dropped)
            continue;
        int32_t p = it->msg->partition;
        size_t j = 0;
        while (j < n_src && src[j].partition != p)
            j++;
        if (j == n_src) {
            struct cl_part *c = cl_part(in, p);
            if (!c || c->state == CL_NEW || c->state == CL_HOLE ||
                !changelog_owned(in->cl, p))
                continue;
            src[n_src++] = (struct store_offset){p, it->msg->offset + 1, -1};
        } else if (it->msg->offset + 1 > src[j].next_offset) {
            src[j].next_offset = it->msg->offset + 1;
        }
    }
    /* CL_WAIT: only once the batch passes the previous owner's position
     * (an earlier commit would move the changelog's position back). */
    size_t o = 0;
    for (size_t j = 0; j < n_src; j++) {
        struct cl_part *c = cl_part(in, src[j].partition);
        if (c->state == CL_WAIT && src[j].next_offset <= c->committed)
            continue;
        src[o++] = src[j];
    }
    n_src = o;
    if (n_src == 0)
        goto out;
    for (size_t i = 0; i < in->n_items; i++) {
        const struct item *it = &in->items[i];
        if (it->dropped || it->bad)
            continue;
        size_t j = 0;
        while (j < n_src && src[j].partition != it->msg->partition)
            j++;
        if (j == n_src)
            continue;
        if (cl_keys_add(&ks, it->msg->partition, &it->op.key, 0) != 0) {
            log_error("changelog: out of memory");
            result = ROUND_FATAL;
            goto out;
        }
    }
    cl_keys_unique(&ks);
    char errstr[512];
    int rc = write_keys(in, &ks, src, n_src, in->cfg->changelog_commit_ms <= 0,
                        errstr, sizeof(errstr));
    if (rc == CHANGELOG_OK) {
        for (size_t j = 0; j < n_src; j++)
            cl_part(in, src[j].partition)->state = CL_READY;
        result = cl_commit_due(in, 0);
    } else {
        result = cl_status(in, rc, errstr);
    }
out:
    cl_keys_clear(&ks);
    free(src);
    return result;
}

/* ingest.c: see ingest.h. The loop; its parts are in ingest_int.h.
 *
 * One round: wait up to IDLE_WAIT_MS for a first message, then take what
 * arrives within BATCH_WAIT_MS (at most BATCH_MAX messages)
 * (ingest_fill.c); decode them (decode_pool.c), copy the rejected ones to
 * the dead-letter topic (ingest_dlq.c), then apply the good ones and the
 * offsets of all of them as one store batch (ingest_batch.c).
 *
 * While the store is failing, every assigned partition is paused and the
 * consumer is still polled, so rebalances are served and the group keeps
 * this member; the same batch is retried with jittered backoff. A failing
 * dead-letter copy holds only its own partition (ingest_dlq.c). A partition
 * revoked meanwhile drops its part of the pending batch: its new owner starts
 * from the offsets in the store, which never saw that part.
 *
 * Memory and file modes with a changelog (ingest_changelog.c): at start
 * the topics are checked and an empty state is restored from the
 * changelog (ingest_restore.c); every round serves the changelog's
 * ownership group, and each applied batch is written to the changelog. */
#include "worker/ingest.h"

#include "worker/dlq.h"
#include "worker/ingest_int.h"
#include "worker/log.h"
#include "worker/metrics.h"
#include "worker/rpc_gaps.h"

#include <stdlib.h>
#include <time.h>

/* Bound of the wait for a first assignment before leaving the group. */
#define FIRST_ASSIGN_WAIT_S 10.0

/* librdkafka before 2.3.0 (Debian 12 ships 2.0.2) aborts in
 * rd_kafka_destroy of a cooperative-sticky member whose JoinGroup was
 * answered but that has no first assignment yet: the assignor's state is
 * made by that assignment, and its destroy asserts it exists
 * (rd_kafka_sticky_assignor_state_destroy: Assertion `assignor_state'
 * failed; upstream #4312, fixed by #4381). So a member that subscribed
 * and is asked to stop that early serves the consumer, dropping what it
 * fetches, until the first assignment came (the rebalance callback sets
 * in->joined), at most FIRST_ASSIGN_WAIT_S; then it leaves the normal way
 * (revocation, close). Without an answered JoinGroup there is no state to
 * destroy and nothing to wait for, which is also the case while the
 * brokers are down. */
static void await_first_assignment(struct ingest *in)
{
    if (!in->group_mode || in->joined || in->kafka_down ||
        rd_kafka_version() >= 0x020300ff)
        return;
    log_info("kafka: stopping before the first assignment; waiting for it "
             "(at most %.0f s) to leave the group cleanly",
             FIRST_ASSIGN_WAIT_S);
    double until = ingest_now() + FIRST_ASSIGN_WAIT_S;
    while (!in->joined && !in->kafka_down && ingest_now() < until) {
        rd_kafka_message_t *m = rd_kafka_consume_queue(in->q, 100);
        if (m)
            rd_kafka_message_destroy(m); /* not applied: not ours to keep */
    }
    if (!in->joined)
        log_warn("kafka: no assignment within %.0f s; leaving anyway",
                 FIRST_ASSIGN_WAIT_S);
}

double ingest_now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

int ingest_run(const struct config *cfg, struct store *st,
               volatile sig_atomic_t *stop, const struct ingest_opts *opts)
{
    struct ingest in_s = {0}, *in = &in_s;
    int result = INGEST_OK;
    char errstr[512];

    in->cfg = cfg;
    in->st = st;
    in->stop = stop;
    in->opts = opts;
    in->group_mode = st->ops->caps.shared;
    /* A scan-priced count (PostgreSQL) is left to the periodic progress(). */
    in->count_each_batch = st->ops->caps.cheap_count;
    in->items = calloc(BATCH_MAX, sizeof(*in->items));
    in->ops = calloc(BATCH_MAX, sizeof(*in->ops));
    in->offs_cap = BATCH_MAX;
    in->offs = calloc(in->offs_cap, sizeof(*in->offs));
    in->gaps = state_gaps_new();
    if (!in->items || !in->ops || !in->offs || !in->gaps) {
        log_error("out of memory");
        result = INGEST_FATAL;
        goto out;
    }
    rpc_gaps_publish(in->gaps); /* lookups, /readyz, /metrics see it */
    decode_pool_start(&in->dec);
    if (!(in->dlq = dlq_open(cfg, errstr, sizeof(errstr)))) {
        log_error("kafka: dead-letter producer: %s", errstr);
        result = INGEST_CONFIG;
        goto out;
    }
    if (*stop)
        goto out; /* stopped while starting: no group to join and leave */
    if (ingest_consumer_open(in, errstr, sizeof(errstr)) != 0) {
        log_error("kafka: consumer: %s", errstr);
        result = INGEST_CONFIG;
        goto out;
    }
    metrics_set_store_ok(1);
    ingest_gaps_warn_retention(in);
    if (!in->group_mode) {
        int rc = ingest_load_offsets(in);
        if (rc == ROUND_FATAL) {
            result = INGEST_FATAL;
            goto out;
        }
        if (rc == ROUND_STOPPED)
            goto out;
        if (st->ops->caps.volatile_state)
            in->n_saved = 0; /* nothing survived: replay the log's start */
        metrics_set_store_ok(1);
        /* The changelog (memory/file modes): check the topics, restore an
         * empty state from it, then open the writer. */
        rc = ingest_changelog_check(in);
        if (rc == ROUND_OK)
            rc = ingest_restore(in);
        if (rc == ROUND_OK)
            rc = ingest_changelog_open(in);
        if (rc != ROUND_OK) {
            result = rc == ROUND_CONFIG  ? INGEST_CONFIG
                     : rc == ROUND_FATAL ? INGEST_FATAL
                                         : INGEST_OK;
            goto out;
        }
    }
    log_info("consuming %s (%s store, %s)", cfg->topic, st->ops->name,
             in->group_mode ? "consumer group" : "all partitions");

    double now = ingest_now();
    in->last_progress = in->last_lag = now;
    in->last_meta = now - METADATA_EVERY_S;
    while (!*stop && !in->fatal) {
        ingest_changelog_poll(in);
        if (in->fatal)
            break;
        if (in->n_pending > 0) {
            int rc = ingest_seek_pending(in);
            if (rc == ROUND_FATAL)
                in->fatal = 1;
            if (rc != 0)
                continue;
        }
        now = ingest_now();
        ingest_gaps_tick(in, now);
        if (in->restore_pending && !in->outage && now >= in->restore_after) {
            if (ingest_restore_running(in) == ROUND_FATAL)
                in->fatal = 1;
            continue;
        }
        ingest_release_holds(in, now);
        if (!in->group_mode && now - in->last_meta >= METADATA_EVERY_S) {
            ingest_assign_new(in);
            in->last_meta = now;
        } else if (in->group_mode && in->kafka_down &&
                   now - in->last_meta >= METADATA_EVERY_S) {
            const struct rd_kafka_metadata *md;
            if (!rd_kafka_metadata(in->rk, 0, in->rkt, &md, 500)) {
                rd_kafka_metadata_destroy(md);
                in->kafka_down = 0;
                log_info("kafka: brokers reachable again");
            }
            in->last_meta = now;
        }
        if (now - in->last_lag >= LAG_EVERY_S) {
            ingest_update_lag(in);
            in->last_lag = now;
        }
        if (now - in->last_progress >= PROGRESS_EVERY_S)
            ingest_progress(in, now);
#ifdef EDR_TEST_HOOKS
        if (opts->exit_when_caught_up && ingest_caught_up(in)) {
            ingest_report_caught_up(in);
            break;
        }
#endif

        if (ingest_fill_batch(in) == 0)
            continue;
        int rc = ingest_process_batch(in);
        if (rc == ROUND_STOPPED) {
            dlq_abort(in->dlq);
        } else if (rc == ROUND_FATAL) {
            in->fatal = 1;
        }
        ingest_clear_items(in);
    }
    if (in->fatal)
        result = INGEST_FATAL;

out:
    ingest_changelog_close(in);
    if (in->rk) {
        if (in->q)
            await_first_assignment(in);
        log_info("kafka: closing the consumer");
        if (in->group_mode) {
            /* Asynchronous on purpose: librdkafka holds a commit back
             * while a rebalance is in progress, and only this thread
             * serves the rebalance, so a synchronous commit here could
             * wait out the request timeout (seen: > 30 s in 1 of 50
             * SIGTERMs). These offsets only inform lag tools; the store's
             * offsets table is what the worker resumes from. Close still
             * sends it. */
            rd_kafka_resp_err_t err = rd_kafka_commit(in->rk, NULL, 1);
            if (err && err != RD_KAFKA_RESP_ERR__NO_OFFSET)
                log_warn("kafka: final commit: %s", rd_kafka_err2str(err));
        }
        rd_kafka_consumer_close(in->rk);
        ingest_clear_items(in);
        if (in->rkt)
            rd_kafka_topic_destroy(in->rkt);
        if (in->q)
            rd_kafka_queue_destroy(in->q);
        rd_kafka_destroy(in->rk);
    }
    dlq_close(in->dlq);
    decode_pool_stop(&in->dec);
    free(in->items);
    free(in->ops);
    free(in->offs);
    free(in->saved);
    free(in->parts);
    rpc_gaps_publish(NULL); /* waits for the readers of in->gaps */
    state_gaps_free(in->gaps);
    return result;
}

/* ingest_gaps.c: state gaps (schemas/README.md §4 "State gaps";
 * worker/ingest_int.h).
 *
 * Before a partition is consumed (at start, after every assignment, after
 * a broker or store outage, after the fetcher stopped at an offset reset)
 * the next offset its state needs is compared with the partition's log
 * start. Below it, retention deleted events the state never saw: the
 * partition stays paused and the gap goes into in->gaps, where lookups
 * (worker/rpc_gaps.c), /readyz and /metrics see it; the other partitions
 * go on. With EDR_ACCEPT_GAP the loss is logged and the partition starts
 * at the log start. The consumer runs with auto.offset.reset=error
 * (ingest_consumer.c), so a fetch that finds its offset deleted is never
 * moved silently: it comes here as a consume error. */
#include "worker/ingest_int.h"

#include "worker/log.h"

#include <inttypes.h>
#include <string.h>

#define WATERMARK_TIMEOUT_MS 5000
#define RECHECK_EVERY_S 1.0

int64_t ingest_gap_needed(const struct ingest *in, int32_t id)
{
    if (id >= 0 && id < in->n_parts && in->parts[id].known &&
        in->parts[id].assigned && !in->parts[id].pending &&
        in->parts[id].expect >= 0)
        return in->parts[id].expect;
    int64_t off = ingest_saved_offset(in, id);
    return off >= 0 ? off : 0;
}

int64_t ingest_gap_check(struct ingest *in, int32_t id, int64_t needed)
{
    struct part *p = ingest_part(in, id, 1);
    int64_t low = -1, high = -1, from = 0, to = 0;

    if (!p)
        return needed;
    rd_kafka_resp_err_t err = rd_kafka_query_watermark_offsets(
        in->rk, in->cfg->topic, id, &low, &high, WATERMARK_TIMEOUT_MS);
    if (err) {
        log_warn("kafka: cannot read the log start of partition %" PRId32
                 " of %s (%s); checking it again later",
                 id, in->cfg->topic, rd_kafka_err2str(err));
        in->gaps_recheck = 1;
        return needed;
    }
    int had = p->gap;
    int64_t n = state_gaps_check(in->gaps, id, needed, low, in->cfg->accept_gap,
                                 &from, &to);
    if (n < 0) {
        /* Out of memory: not known to be complete; look again later. */
        log_error("state gaps: out of memory checking partition %" PRId32, id);
        p->gap = 1;
        in->gaps_recheck = 1;
        return needed;
    }
    if (n == 0) {
        if (had)
            log_info("state gap of partition %" PRId32 " of %s is gone", id,
                     in->cfg->topic);
        p->gap = 0;
        return needed;
    }
    if (in->cfg->accept_gap) {
        p->gap = 0;
        log_error("state gap accepted (EDR_ACCEPT_GAP): partition %" PRId32
                  " of %s: offsets %" PRId64 "-%" PRId64 " (%" PRId64
                  " events) were deleted by retention before "
                  "this worker applied them and are lost; continuing from "
                  "the log start %" PRId64,
                  id, in->cfg->topic, from, to - 1, n, low);
        return low;
    }
    int cl = in->cfg->changelog_topic && !in->group_mode;
    if (!had || p->gap_from != from || p->gap_to != to)
        log_error("state gap: partition %" PRId32 " of %s is missing "
                  "offsets %" PRId64 "-%" PRId64 " (%" PRId64
                  " events deleted by retention before this worker applied "
                  "them%s): the partition is not consumed and lookups answer "
                  "state_incomplete; EDR_ACCEPT_GAP=1 accepts the loss",
                  id, in->cfg->topic, from, to - 1, n,
                  cl ? "; restored from the changelog if it covers them"
                     : "; no changelog covers them");
    p->gap = 1;
    p->gap_from = from;
    p->gap_to = to;
    if (cl)
        in->restore_pending = 1; /* the changelog may cover it */
    return needed;
}

void ingest_gaps_start_offsets(struct ingest *in,
                               rd_kafka_topic_partition_list_t *l)
{
    for (int i = 0; i < l->cnt; i++) {
        int32_t id = l->elems[i].partition;
        int64_t off = ingest_saved_offset(in, id);
        l->elems[i].offset = ingest_gap_check(in, id, off >= 0 ? off : 0);
    }
}

void ingest_gaps_pause(struct ingest *in)
{
    rd_kafka_topic_partition_list_t *l = rd_kafka_topic_partition_list_new(4);
    for (int32_t i = 0; i < in->n_parts; i++)
        if (in->parts[i].assigned && in->parts[i].gap && !in->parts[i].paused)
            rd_kafka_topic_partition_list_add(l, in->cfg->topic, i);
    if (l->cnt > 0) {
        rd_kafka_resp_err_t err = rd_kafka_pause_partitions(in->rk, l);
        if (err)
            log_warn("kafka: pause partitions: %s", rd_kafka_err2str(err));
        for (int i = 0; i < l->cnt; i++)
            in->parts[l->elems[i].partition].paused = 1;
    }
    rd_kafka_topic_partition_list_destroy(l);
}

void ingest_gaps_on_reset(struct ingest *in, const rd_kafka_message_t *m)
{
    struct part *p = ingest_part(in, m->partition, 0);
    if (!p || !p->assigned)
        return;
    log_warn("kafka: partition %" PRId32 " of %s: %s; checking it for a "
             "state gap",
             m->partition, in->cfg->topic, rd_kafka_message_errstr(m));
    p->reset = 1;
    in->gaps_recheck = 1;
}

/* Starts p's fetcher again at off. A fetcher stopped at an offset reset
 * is not started (librdkafka refuses the seek): assign mode assigns the
 * partition again; group mode tries the seek, then the same. */
static void restart_at(struct ingest *in, int32_t id, int64_t off, int stopped)
{
    struct part *p = &in->parts[id];
    rd_kafka_topic_partition_list_t *l = rd_kafka_topic_partition_list_new(1);
    rd_kafka_topic_partition_list_add(l, in->cfg->topic, id)->offset = off;
    rd_kafka_error_t *e = NULL;
    if (!stopped || in->group_mode) {
        e = rd_kafka_seek_partitions(in->rk, l, WATERMARK_TIMEOUT_MS);
        int sought = !e && !l->elems[0].err;
        if (e)
            rd_kafka_error_destroy(e);
        if (sought)
            goto done;
        l->elems[0].err = RD_KAFKA_RESP_ERR_NO_ERROR;
    }
    e = rd_kafka_incremental_unassign(in->rk, l);
    if (!e) {
        l->elems[0].offset = off;
        e = rd_kafka_incremental_assign(in->rk, l);
    }
    if (e) {
        log_error("kafka: cannot restart partition %" PRId32 " at %" PRId64
                  ": %s",
                  id, off, rd_kafka_error_string(e));
        rd_kafka_error_destroy(e);
        p->reset = 1;
        in->gaps_recheck = 1;
        goto out;
    }
    /* A new assignment is fetched unless paused: keep what holds it. */
    if (in->outage || p->held || p->gap)
        rd_kafka_pause_partitions(in->rk, l);
    else
        rd_kafka_resume_partitions(in->rk, l);
    p->paused = in->outage || p->held || p->gap;
done:
    p->expect = off;
    p->next = off;
out:
    rd_kafka_topic_partition_list_destroy(l);
}

void ingest_gaps_recheck(struct ingest *in)
{
    in->gaps_recheck = 0;
    for (int32_t i = 0; i < in->n_parts; i++) {
        struct part *p = &in->parts[i];
        if (!p->known || !p->assigned || p->pending || p->held)
            continue;
        int64_t needed = ingest_gap_needed(in, i);
        int stopped = p->reset;
        p->reset = 0;
        int64_t start = ingest_gap_check(in, i, needed);
        if (p->gap) {
            if (stopped)
                p->expect = needed; /* where it must go on, once it can */
            continue;
        }
        if (start != needed || stopped)
            restart_at(in, i, start, stopped);
    }
    ingest_gaps_pause(in);
}

void ingest_gaps_tick(struct ingest *in, double now)
{
    if (!in->gaps_recheck || in->kafka_down || now < in->gaps_recheck_at)
        return;
    in->gaps_recheck_at = now + RECHECK_EVERY_S;
    ingest_gaps_recheck(in);
}

/* The value of topic config `name` in the DescribeConfigs result res, or
 * NULL. */
static const char *topic_config(const rd_kafka_DescribeConfigs_result_t *res,
                                const char *name)
{
    size_t n = 0, m = 0;
    const rd_kafka_ConfigResource_t **rs =
        rd_kafka_DescribeConfigs_result_resources(res, &n);
    if (n != 1 || rd_kafka_ConfigResource_error(rs[0]))
        return NULL;
    const rd_kafka_ConfigEntry_t **es =
        rd_kafka_ConfigResource_configs(rs[0], &m);
    for (size_t i = 0; i < m; i++)
        if (strcmp(rd_kafka_ConfigEntry_name(es[i]), name) == 0)
            return rd_kafka_ConfigEntry_value(es[i]);
    return NULL;
}

void ingest_gaps_warn_retention(struct ingest *in)
{
    /* memory and file with a changelog restore what retention deleted */
    if (!in->group_mode && in->cfg->changelog_topic)
        return;
    rd_kafka_queue_t *q = rd_kafka_queue_new(in->rk);
    rd_kafka_ConfigResource_t *cr =
        rd_kafka_ConfigResource_new(RD_KAFKA_RESOURCE_TOPIC, in->cfg->topic);
    rd_kafka_AdminOptions_t *o =
        rd_kafka_AdminOptions_new(in->rk, RD_KAFKA_ADMIN_OP_DESCRIBECONFIGS);
    rd_kafka_AdminOptions_set_request_timeout(o, WATERMARK_TIMEOUT_MS, NULL, 0);
    rd_kafka_DescribeConfigs(in->rk, &cr, 1, o, q);
    rd_kafka_ConfigResource_destroy(cr);
    rd_kafka_AdminOptions_destroy(o);
    rd_kafka_event_t *ev = NULL;
    double until = ingest_now() + WATERMARK_TIMEOUT_MS / 1000.0 + 1;
    while (!ev && !*in->stop && ingest_now() < until) /* SIGTERM: at once */
        ev = rd_kafka_queue_poll(q, 100);
    const rd_kafka_DescribeConfigs_result_t *res =
        ev ? rd_kafka_event_DescribeConfigs_result(ev) : NULL;
    const char *ms = res ? topic_config(res, "retention.ms") : NULL;
    const char *bytes = res ? topic_config(res, "retention.bytes") : NULL;
    const char *policy = res ? topic_config(res, "cleanup.policy") : NULL;
    if (!ms && !bytes) {
        log_debug("kafka: cannot read the retention of %s", in->cfg->topic);
    } else if ((!policy || strstr(policy, "delete")) &&
               ((ms && strcmp(ms, "-1") != 0) ||
                (bytes && strcmp(bytes, "-1") != 0))) {
        log_warn("kafka: retention can delete events of %s (retention.ms "
                 "%s, retention.bytes %s) and %s: a %s longer than that "
                 "leaves a state gap (schemas/README.md §4)",
                 in->cfg->topic, ms ? ms : "?", bytes ? bytes : "?",
                 in->group_mode ? "the postgres store has no changelog"
                                : "the changelog is off",
                 in->group_mode ? "stop of every worker" : "worker stop");
    }
    if (ev)
        rd_kafka_event_destroy(ev);
    rd_kafka_queue_destroy(q);
}

/* ingest_progress.c: lag, progress lines and gauges of the Kafka loop
 * (worker/ingest_int.h, worker/metrics.h). */
#include "worker/ingest_int.h"

#include "worker/log.h"
#include "worker/metrics.h"

#include <inttypes.h>

void ingest_update_lag(struct ingest *in)
{
    int64_t total = 0;
    /* Where a partition starts matters only until its first message; ask
     * for all such starts in one request. */
    rd_kafka_topic_partition_list_t *l = rd_kafka_topic_partition_list_new(4);
    for (int32_t i = 0; i < in->n_parts; i++)
        if (in->parts[i].assigned && in->parts[i].next < 0 &&
            in->parts[i].low < 0)
            rd_kafka_topic_partition_list_add(l, in->cfg->topic, i)->offset =
                RD_KAFKA_OFFSET_BEGINNING;
    if (l->cnt > 0 && rd_kafka_offsets_for_times(in->rk, l, 500) == 0)
        for (int j = 0; j < l->cnt; j++)
            if (!l->elems[j].err && l->elems[j].offset >= 0)
                in->parts[l->elems[j].partition].low = l->elems[j].offset;
    rd_kafka_topic_partition_list_destroy(l);

    for (int32_t i = 0; i < in->n_parts; i++) {
        struct part *p = &in->parts[i];
        if (!p->assigned)
            continue;
        int64_t lo = -1, hi = -1;
        rd_kafka_get_watermark_offsets(in->rk, in->cfg->topic, i, &lo, &hi);
        if (hi < 0)
            continue;
        int64_t pos = p->next >= 0 ? p->next : p->low >= 0 ? p->low : 0;
        p->lag = hi > pos ? hi - pos : 0;
        metrics_consumer_lag(i, p->lag);
        total += p->lag;
    }
    in->lag_total = total;
}

void ingest_progress(struct ingest *in, double now)
{
    double dt = now - in->last_progress;
    uint64_t d = in->applied - in->applied_at_progress;
    size_t n = 0;
    for (int32_t i = 0; i < in->n_parts; i++)
        n += in->parts[i].assigned ? 1 : 0;
    log_info("progress: %" PRIu64 " events applied (%.0f/s), %" PRIu64
             " dead-lettered, lag %" PRId64 ", %zu partitions",
             in->applied, dt > 0 ? (double)d / dt : 0.0, in->dead,
             in->lag_total, n);
    in->applied_at_progress = in->applied;
    in->last_progress = now;
    /* The gauge (and ping, which reads it) never scans a shared table:
     * a store whose count() scans offers a cheap estimate instead. */
    uint64_t entries;
    struct store_err err = {0};
    const struct store_ops *ops = in->st->ops;
    int rc = in->outage      ? STORE_TRANSIENT
             : ops->estimate ? ops->estimate(in->st, &entries, &err)
                             : ops->count(in->st, NULL, &entries, &err);
    if (rc == STORE_OK)
        metrics_store_entries(entries);
}

/* ingest_catchup.c: the finish line of --exit-when-caught-up, a testing
 * and benchmark aid compiled only into the test build (EDR_TEST_HOOKS,
 * edr-worker-test): stop once every partition of the topic is applied up
 * to the high watermark it had when the worker started. */
#include "worker/ingest_int.h"

#ifdef EDR_TEST_HOOKS

#include "worker/log.h"

#include <inttypes.h>
#include <stdio.h>

/* The high watermark of every partition at start: the finish line of
 * --exit-when-caught-up. One ListOffsets request each for the ends and
 * the starts (query_watermark_offsets would ask per partition). */
static void load_targets(struct ingest *in)
{
    const struct rd_kafka_metadata *md = NULL;
    if (rd_kafka_metadata(in->rk, 0, in->rkt, &md, 2000))
        return;
    int ok = md->topic_cnt == 1 && !md->topics[0].err &&
             md->topics[0].partition_cnt > 0;
    rd_kafka_topic_partition_list_t *hi =
        rd_kafka_topic_partition_list_new(ok ? md->topics[0].partition_cnt : 1);
    rd_kafka_topic_partition_list_t *lo =
        rd_kafka_topic_partition_list_new(ok ? md->topics[0].partition_cnt : 1);
    for (int i = 0; ok && i < md->topics[0].partition_cnt; i++) {
        int32_t id = md->topics[0].partitions[i].id;
        rd_kafka_topic_partition_list_add(hi, in->cfg->topic, id)->offset =
            RD_KAFKA_OFFSET_END;
        rd_kafka_topic_partition_list_add(lo, in->cfg->topic, id)->offset =
            RD_KAFKA_OFFSET_BEGINNING;
    }
    rd_kafka_metadata_destroy(md);
    if (ok && (rd_kafka_offsets_for_times(in->rk, hi, 5000) ||
               rd_kafka_offsets_for_times(in->rk, lo, 5000)))
        ok = 0;
    for (int i = 0; ok && i < hi->cnt; i++) {
        struct part *p = ingest_part(in, hi->elems[i].partition, 1);
        if (!p || hi->elems[i].err || lo->elems[i].err ||
            hi->elems[i].offset < 0) {
            ok = 0;
            break;
        }
        p->target = hi->elems[i].offset;
        p->low = lo->elems[i].offset;
    }
    rd_kafka_topic_partition_list_destroy(hi);
    rd_kafka_topic_partition_list_destroy(lo);
    in->targets_ready = ok;
    log_debug("exit-when-caught-up: high watermarks %s",
              ok ? "known" : "not known yet");
}

int ingest_caught_up(struct ingest *in)
{
    if (!in->targets_ready) {
        load_targets(in);
        if (!in->targets_ready)
            return 0;
    }
    for (int32_t i = 0; i < in->n_parts; i++) {
        struct part *p = &in->parts[i];
        if (!p->known || p->target < 0)
            continue;
        if (!p->assigned)
            return 0;
        int64_t pos = p->next >= 0 ? p->next : p->low;
        if (pos < 0 || pos < p->target)
            return 0;
    }
    return 1;
}

void ingest_report_caught_up(struct ingest *in)
{
    double s = ingest_now() - in->opts->start_time;
    double rate = s > 0 ? (double)in->applied / s : 0;
    log_info("caught up: %" PRIu64 " events applied in %.3f s (%.0f/s)",
             in->applied, s, rate);
    printf("{\"applied\": %" PRIu64 ", \"dead_lettered\": %" PRIu64
           ", \"seconds\": %.3f, \"events_per_s\": %.0f}\n",
           in->applied, in->dead, s, rate);
    fflush(stdout);
}

#endif /* EDR_TEST_HOOKS */

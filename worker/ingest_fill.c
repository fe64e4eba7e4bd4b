/* ingest_fill.c: filling a batch from the consumer queue
 * (worker/ingest_int.h).
 *
 * Takes messages one by one (see ingest_fill_batch for why not in bulk),
 * drops stale and revoked ones, and, while paused for an outage, serves
 * callbacks and hands back what the fetcher still delivers. */
#include "worker/ingest_int.h"

#include "worker/log.h"

#include <string.h>

static void consume_error(struct ingest *in, const rd_kafka_message_t *m)
{
    if (m->err == RD_KAFKA_RESP_ERR__PARTITION_EOF)
        return;
    if (m->err == RD_KAFKA_RESP_ERR__AUTO_OFFSET_RESET) {
        ingest_gaps_on_reset(in, m); /* never rate-limited away */
        return;
    }
    if (ingest_now() < in->warn_until)
        return;
    in->warn_until = ingest_now() + 10;
    log_warn("kafka: consume: %s", rd_kafka_message_errstr(m));
}

/* Waits up to ms while serving callbacks; used while paused for an
 * outage. A message that still arrives (fetched before the pause took
 * effect) is handed back: its partition is sought to the first offset the
 * batch has not taken (not to the message, which may not be the first one
 * fetched), so everything from there comes again after the resume. */
void ingest_wait_serving(struct ingest *in, unsigned ms)
{
    double until = ingest_now() + ms / 1000.0;
    for (;;) {
        double left = until - ingest_now();
        if (left <= 0 || *in->stop)
            return;
        int wait = left > 0.1 ? 100 : (int)(left * 1000) + 1;
        rd_kafka_message_t *m = rd_kafka_consume_queue(in->q, wait);
        if (!m)
            continue;
        struct part *p = ingest_part(in, m->partition, 0);
        if (!m->err && p && p->assigned && !p->pending && !p->held &&
            (p->expect < 0 || m->offset >= p->expect)) {
            if (p->expect < 0)
                p->expect = m->offset; /* the first since the assignment */
            rd_kafka_topic_partition_list_t *l =
                rd_kafka_topic_partition_list_new(1);
            rd_kafka_topic_partition_list_add(l, in->cfg->topic, m->partition)
                ->offset = p->expect;
            rd_kafka_error_t *e = rd_kafka_seek_partitions(in->rk, l, 0);
            if (e)
                rd_kafka_error_destroy(e);
            rd_kafka_topic_partition_list_destroy(l);
        } else if (m->err) {
            consume_error(in, m);
        }
        rd_kafka_message_destroy(m);
    }
}

/* Takes one message into the batch, or drops it (error, revoked
 * partition, or stale: fetched before a seek). */
static void accept_message(struct ingest *in, rd_kafka_message_t *m)
{
    if (m->err) {
        consume_error(in, m);
        rd_kafka_message_destroy(m);
        return;
    }
    struct part *p = ingest_part(in, m->partition, 0);
    if (!p || !p->assigned || p->pending || p->held ||
        (p->expect >= 0 && m->offset < p->expect)) {
        rd_kafka_message_destroy(m);
        return;
    }
    p->expect = m->offset + 1;
    if (in->kafka_down) {
        in->kafka_down = 0;
        log_info("kafka: brokers reachable again");
    }
    struct item *it = &in->items[in->n_items++];
    memset(it, 0, sizeof(*it));
    it->msg = m;
}

/* Fills the batch: waits up to IDLE_WAIT_MS for a first message, then up
 * to BATCH_WAIT_MS for more. One message per call on purpose: librdkafka
 * 2.0's batch calls (rd_kafka_consume_batch_queue) can skip offsets when
 * pause, resume, seek or a rebalance happen during the call (fixed
 * upstream in 2.1.0), and this loop uses all four. */
size_t ingest_fill_batch(struct ingest *in)
{
    rd_kafka_message_t *m = rd_kafka_consume_queue(in->q, IDLE_WAIT_MS);
    if (!m)
        return 0;
    accept_message(in, m);
    double until = ingest_now() + BATCH_WAIT_MS / 1000.0;
    while (in->n_items < BATCH_MAX) {
        /* Take what is queued without waiting; wait only when it is dry. */
        m = rd_kafka_consume_queue(in->q, 0);
        if (!m) {
            double left = until - ingest_now();
            if (left <= 0)
                break;
            m = rd_kafka_consume_queue(in->q, (int)(left * 1000) + 1);
            if (!m)
                break;
        }
        accept_message(in, m);
    }
    return in->n_items;
}

void ingest_clear_items(struct ingest *in)
{
    for (size_t i = 0; i < in->n_items; i++) {
        struct item *it = &in->items[i];
        if (it->decoded)
            event_clear(&it->ev);
        rd_kafka_message_destroy(it->msg);
    }
    in->n_items = 0;
}

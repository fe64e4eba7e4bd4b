/* ingest_consumer.c: the consumer's configuration and callbacks
 * (worker/ingest_int.h).
 *
 * Defaults first, then the operator's -X properties, then what the loop's
 * correctness needs (manual offset store and commit), which -X cannot
 * override. The error callback turns librdkafka's fatal error into exit 3
 * and reports a broker outage once. */
#include "worker/ingest_int.h"

#include "worker/config_parse.h"
#include "worker/log.h"
#include "worker/metrics.h"

#include <stdio.h>

static void error_cb(rd_kafka_t *rk, int err, const char *reason, void *opaque)
{
    struct ingest *in = opaque;
    if (err == RD_KAFKA_RESP_ERR__FATAL) {
        char buf[512];
        rd_kafka_fatal_error(rk, buf, sizeof(buf));
        log_error("kafka: fatal error: %s", buf);
        in->fatal = 1;
        return;
    }
    if (err == RD_KAFKA_RESP_ERR__ALL_BROKERS_DOWN) {
        if (!in->kafka_down) {
            /* librdkafka keeps reconnecting; lookups go on meanwhile. */
            log_warn("kafka: all brokers down (%s); reconnecting", reason);
            metrics_outage("kafka");
            in->kafka_down = 1;
            /* Retention may pass a position meanwhile: look again once
             * the brokers are back. */
            in->gaps_recheck = 1;
        }
        return;
    }
    log_debug("kafka: %s: %s", rd_kafka_err2name(err), reason);
}

static void log_cb(const rd_kafka_t *rk, int level, const char *fac,
                   const char *buf)
{
    (void)rk;
    /* librdkafka repeats connection errors itself; keep them at warn. */
    log_msg(level <= 4   ? EDR_LOG_WARN
            : level <= 6 ? EDR_LOG_INFO
                         : EDR_LOG_DEBUG,
            "kafka: %s: %s", fac, buf);
}

int ingest_consumer_open(struct ingest *in, char *errstr, size_t errstr_size)
{
    const struct config *cfg = in->cfg;
    rd_kafka_conf_t *conf = rd_kafka_conf_new();
    if (config_kafka_set(conf, "bootstrap.servers", cfg->brokers, errstr,
                         errstr_size) ||
        config_kafka_set(conf, "client.id", "edr-worker", errstr,
                         errstr_size) ||
        config_kafka_set(conf, "enable.partition.eof", "false", errstr,
                         errstr_size) ||
        config_kafka_set(conf, "topic.metadata.refresh.interval.ms", "5000",
                         errstr, errstr_size))
        goto fail;
    /* librdkafka needs a group id even to assign partitions itself; in
     * memory and file mode the group is never joined nor committed to. */
    if (config_kafka_set(conf, "group.id", cfg->group_id, errstr, errstr_size))
        goto fail;
    if (in->group_mode &&
        config_kafka_set(conf, "partition.assignment.strategy",
                         "cooperative-sticky", errstr, errstr_size))
        goto fail;
    /* Prefetch (overridable with -X): once the local queue reaches either
     * limit, librdkafka before 2.1 stops fetching for a whole second
     * (upstream issue #2879), long after this loop has drained it: with
     * the defaults (64 MiB, 100,000 messages) catching up on a backlog
     * spent most of its time idle. 256 MiB is about 0.3 s of consumption
     * at full speed. Newer versions make the pause configurable. */
    if (config_kafka_set(conf, "queued.max.messages.kbytes", "262144", errstr,
                         errstr_size) ||
        config_kafka_set(conf, "queued.min.messages", "1000000", errstr,
                         errstr_size))
        goto fail;
    /* Records up to what the broker can hold (a topic's max.message.bytes
     * may be far above librdkafka's default of 1,000,000): a poison event
     * of any size must be fetched to be dead-lettered, never wedge its
     * partition. fetch.max.bytes and receive.message.max.bytes follow. */
    if (config_kafka_set(conf, "message.max.bytes", "1000000000", errstr,
                         errstr_size))
        goto fail;
    if (rd_kafka_version() >= 0x020100ff)
        config_kafka_set(conf, "fetch.queue.backoff.ms", "20", errstr,
                         errstr_size);
    if (config_apply_kafka_props(cfg, conf, errstr, errstr_size))
        goto fail;
    /* Not overridable: offsets move only after the store took the batch,
     * and only this code commits them. Every partition starts at an
     * explicit offset (saved, restored, or 0) after its gap check, so an
     * offset out of range is never jumped over: it comes back as a
     * consume error and is checked again (ingest_gaps.c). */
    if (config_kafka_set(conf, "auto.offset.reset", "error", errstr,
                         errstr_size) ||
        config_kafka_set(conf, "enable.auto.offset.store", "false", errstr,
                         errstr_size) ||
        config_kafka_set(conf, "enable.auto.commit", "false", errstr,
                         errstr_size))
        goto fail;
    rd_kafka_conf_set_error_cb(conf, error_cb);
    rd_kafka_conf_set_log_cb(conf, log_cb);
    if (in->group_mode)
        rd_kafka_conf_set_rebalance_cb(conf, ingest_rebalance_cb);
    rd_kafka_conf_set_opaque(conf, in);

    in->rk = rd_kafka_new(RD_KAFKA_CONSUMER, conf, errstr, errstr_size);
    if (!in->rk)
        goto fail;
    conf = NULL; /* now owned by in->rk */
    rd_kafka_poll_set_consumer(in->rk);
    in->q = rd_kafka_queue_get_consumer(in->rk);
    in->rkt = rd_kafka_topic_new(in->rk, cfg->topic, NULL);
    if (!in->q || !in->rkt) {
        snprintf(errstr, errstr_size, "cannot create the consumer queue");
        return -1;
    }
    if (in->group_mode) {
        rd_kafka_topic_partition_list_t *l =
            rd_kafka_topic_partition_list_new(1);
        rd_kafka_topic_partition_list_add(l, cfg->topic, RD_KAFKA_PARTITION_UA);
        rd_kafka_resp_err_t err = rd_kafka_subscribe(in->rk, l);
        rd_kafka_topic_partition_list_destroy(l);
        if (err) {
            snprintf(errstr, errstr_size, "subscribe: %s",
                     rd_kafka_err2str(err));
            return -1;
        }
    }
    return 0;

fail:
    if (conf)
        rd_kafka_conf_destroy(conf);
    return -1;
}

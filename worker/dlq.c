/* dlq.c: see dlq.h. The delivery report callback writes the outcome into
 * the state the caller handed over as the message's opaque. */
#include "worker/dlq.h"

#include "schemas/sha256.h"
#include "worker/config_parse.h"
#include "worker/log.h"

#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

struct dlq {
    rd_kafka_t *rk;
    char *topic;
    int outstanding;
    char last_error[256];
};

static void dlq_dr_cb(rd_kafka_t *rk, const rd_kafka_message_t *m, void *opaque)
{
    struct dlq *d = opaque;
    int *state = m->_private;
    (void)rk;
    if (state)
        *state = !m->err                     ? DLQ_DONE
                 : dlq_err_too_large(m->err) ? DLQ_TOO_LARGE
                                             : DLQ_FAILED;
    if (m->err)
        snprintf(d->last_error, sizeof(d->last_error), "%s",
                 rd_kafka_err2str(m->err));
    d->outstanding--;
}

static void dlq_log_cb(const rd_kafka_t *rk, int level, const char *fac,
                       const char *buf)
{
    (void)rk;
    /* -X properties go to the consumer and this producer alike; the
     * consumer-only ones are expected to be ignored here. */
    if (strcmp(fac, "CONFWARN") == 0)
        return;
    log_msg(level <= 3   ? EDR_LOG_ERROR
            : level == 4 ? EDR_LOG_WARN
            : level <= 6 ? EDR_LOG_INFO
                         : EDR_LOG_DEBUG,
            "kafka dlq producer: %s: %s", fac, buf);
}

struct dlq *dlq_open(const struct config *cfg, char *errstr, size_t errstr_size)
{
    struct dlq *d = calloc(1, sizeof(*d));
    rd_kafka_conf_t *conf = rd_kafka_conf_new();
    if (!d || !conf || !(d->topic = strdup(cfg->dlq_topic))) {
        snprintf(errstr, errstr_size, "out of memory");
        goto fail;
    }
    /* Defaults first, so -X can tune them; idempotence last, because a
     * duplicate in the dead-letter topic is harmless but a loss is not. */
    if (config_kafka_set(conf, "bootstrap.servers", cfg->brokers, errstr,
                         errstr_size) ||
        config_kafka_set(conf, "linger.ms", "0", errstr, errstr_size) ||
        config_kafka_set(conf, "message.timeout.ms", "10000", errstr,
                         errstr_size) ||
        config_kafka_set(conf, "client.id", "edr-worker-dlq", errstr,
                         errstr_size) ||
        config_apply_kafka_props(cfg, conf, errstr, errstr_size) ||
        config_kafka_set(conf, "enable.idempotence", "true", errstr,
                         errstr_size))
        goto fail;
    /* After -X, which may lower message.max.bytes for the consumer's
     * sake: this producer is never the reason a copy fails (§1 v2), so
     * its limit is librdkafka's maximum and only the broker's counts. */
    if (config_kafka_set(conf, "message.max.bytes", "1000000000", errstr,
                         errstr_size))
        goto fail;
    rd_kafka_conf_set_dr_msg_cb(conf, dlq_dr_cb);
    rd_kafka_conf_set_log_cb(conf, dlq_log_cb);
    rd_kafka_conf_set_opaque(conf, d);
    d->rk = rd_kafka_new(RD_KAFKA_PRODUCER, conf, errstr, errstr_size);
    if (!d->rk)
        goto fail;
    conf = NULL; /* now owned by d->rk */
    config_log_producer(d->rk, "dlq");
    return d;

fail:
    if (conf)
        rd_kafka_conf_destroy(conf);
    if (d)
        free(d->topic);
    free(d);
    return NULL;
}

int dlq_err_too_large(rd_kafka_resp_err_t err)
{
    return err == RD_KAFKA_RESP_ERR_MSG_SIZE_TOO_LARGE ||
           err == RD_KAFKA_RESP_ERR_RECORD_LIST_TOO_LARGE;
}

static void value_sha256(const rd_kafka_message_t *msg, char hex[65])
{
    struct sha256 s;
    unsigned char digest[32];
    sha256_init(&s);
    sha256_update(&s, msg->payload ? msg->payload : "", msg->len);
    sha256_final(&s, digest);
    for (int i = 0; i < 32; i++)
        snprintf(hex + 2 * i, 3, "%02x", digest[i]);
}

int dlq_produce(struct dlq *d, const rd_kafka_message_t *msg,
                const char *reason, int without_value, int *state, char *errstr,
                size_t errstr_size)
{
    rd_kafka_headers_t *src = NULL, *hdrs;
    char part[16], off[32], size[32], sha[65], why[512];
    const char *topic = rd_kafka_topic_name(msg->rkt);
    const void *value = msg->payload;
    size_t len = msg->len;

    if (rd_kafka_message_headers(msg, &src) == RD_KAFKA_RESP_ERR_NO_ERROR)
        hdrs = rd_kafka_headers_copy(src);
    else
        hdrs = rd_kafka_headers_new(4);
    snprintf(part, sizeof(part), "%" PRId32, msg->partition);
    snprintf(off, sizeof(off), "%" PRId64, msg->offset);
    if (without_value) {
        /* The value is what makes it too large; the reader learns what
         * it was from its size and digest (the source offset has it,
         * while retention keeps it). */
        snprintf(why, sizeof(why),
                 "value left out: the dead-letter topic refused the record "
                 "as too large (%zu bytes); %s",
                 msg->len, reason);
        snprintf(size, sizeof(size), "%zu", msg->len);
        value_sha256(msg, sha);
        rd_kafka_header_add(hdrs, "edr-value-size", -1, size, -1);
        rd_kafka_header_add(hdrs, "edr-value-sha256", -1, sha, -1);
        reason = why;
        value = "";
        len = 0;
    }
    rd_kafka_header_add(hdrs, "edr-error", -1, reason, -1);
    rd_kafka_header_add(hdrs, "edr-source-topic", -1, topic, -1);
    rd_kafka_header_add(hdrs, "edr-source-partition", -1, part, -1);
    rd_kafka_header_add(hdrs, "edr-source-offset", -1, off, -1);

    *state = DLQ_PENDING;
    rd_kafka_resp_err_t err = rd_kafka_producev(
        d->rk, RD_KAFKA_V_TOPIC(d->topic),
        RD_KAFKA_V_MSGFLAGS(RD_KAFKA_MSG_F_COPY),
        RD_KAFKA_V_KEY(msg->key, msg->key_len),
        RD_KAFKA_V_VALUE((void *)value, len), RD_KAFKA_V_HEADERS(hdrs),
        RD_KAFKA_V_OPAQUE(state), RD_KAFKA_V_END);
    if (err) {
        rd_kafka_headers_destroy(hdrs); /* not taken over on failure */
        *state = dlq_err_too_large(err) ? DLQ_TOO_LARGE : DLQ_FAILED;
        snprintf(errstr, errstr_size, "%s", rd_kafka_err2str(err));
        snprintf(d->last_error, sizeof(d->last_error), "%s",
                 rd_kafka_err2str(err));
        return -1;
    }
    d->outstanding++;
    return 0;
}

int dlq_wait(struct dlq *d, int timeout_ms)
{
    int waited = 0;
    rd_kafka_poll(d->rk, 0);
    while (d->outstanding > 0 && waited < timeout_ms) {
        int step = timeout_ms - waited < 50 ? timeout_ms - waited : 50;
        rd_kafka_poll(d->rk, step);
        waited += step;
    }
    return d->outstanding;
}

void dlq_abort(struct dlq *d)
{
    if (!d || d->outstanding == 0)
        return;
    rd_kafka_purge(d->rk, RD_KAFKA_PURGE_F_QUEUE | RD_KAFKA_PURGE_F_INFLIGHT);
    /* Purged messages report promptly; in-flight ones once their request
     * returns or times out. */
    for (int i = 0; i < 400 && d->outstanding > 0; i++)
        rd_kafka_poll(d->rk, 50);
}

const char *dlq_last_error(const struct dlq *d)
{
    return d->last_error[0] ? d->last_error : "unknown error";
}

void dlq_close(struct dlq *d)
{
    if (!d)
        return;
    if (d->outstanding > 0)
        dlq_abort(d);
    rd_kafka_flush(d->rk, 2000);
    rd_kafka_destroy(d->rk);
    free(d->topic);
    free(d);
}

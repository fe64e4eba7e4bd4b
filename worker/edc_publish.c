/* edc_publish.c: see edc_publish.h. Each send hands librdkafka a small
 * heap record as the message's opaque; the delivery report (on the poll
 * thread) fills it and wakes the sender. The record has two owners, the
 * sender and the report, and the last one to let go frees it, so a
 * sender that stops waiting never leaves the report writing into freed
 * memory. */
#include "worker/edc_publish.h"

#include "base/clock.h"
#include "worker/config_parse.h"
#include "worker/log.h"

#include <librdkafka/rdkafka.h>

#include <errno.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

/* the report's margin over message.timeout.ms */
#define WAIT_MARGIN_MS 1000

struct pending {
    int done;   /* the report came */
    int owners; /* 2 until the sender or the report let go */
    rd_kafka_resp_err_t err;
    int32_t partition;
    int64_t offset;
};

struct edc_publisher {
    rd_kafka_t *rk;
    char *topic;
    pthread_t poller;
    int poller_started;
    atomic_int stop;
    pthread_mutex_t lock; /* guards every struct pending */
    pthread_cond_t cond;  /* a report came (CLOCK_MONOTONIC) */
};

/* Drops one owner of r; frees it when it was the last. Under p->lock. */
static void pending_release(struct pending *r)
{
    if (--r->owners == 0)
        free(r);
}

static void dr_cb(rd_kafka_t *rk, const rd_kafka_message_t *m, void *opaque)
{
    struct edc_publisher *p = opaque;
    struct pending *r = m->_private;
    (void)rk;
    if (!r)
        return;
    pthread_mutex_lock(&p->lock);
    r->done = 1;
    r->err = m->err;
    r->partition = m->partition;
    r->offset = m->offset;
    pending_release(r);
    pthread_cond_broadcast(&p->cond);
    pthread_mutex_unlock(&p->lock);
}

static void log_cb(const rd_kafka_t *rk, int level, const char *fac,
                   const char *buf)
{
    (void)rk;
    /* -X properties meant for the consumer are ignored here, as expected */
    if (level > 4 || strcmp(fac, "CONFWARN") == 0)
        return;
    log_warn("kafka callback producer: %s: %s", fac, buf);
}

static void *poll_main(void *arg)
{
    struct edc_publisher *p = arg;
    while (!atomic_load(&p->stop))
        rd_kafka_poll(p->rk, 100);
    return NULL;
}

struct edc_publisher *edc_publisher_open(const struct config *cfg, char *errstr,
                                         size_t errstr_size)
{
    char timeout[16];
    struct edc_publisher *p = calloc(1, sizeof(*p));
    rd_kafka_conf_t *conf = rd_kafka_conf_new();
    pthread_condattr_t ca;
    if (!p || !conf || !(p->topic = strdup(cfg->topic))) {
        snprintf(errstr, errstr_size, "out of memory");
        goto fail;
    }
    snprintf(timeout, sizeof(timeout), "%d", EDC_PUBLISH_TIMEOUT_MS);
    /* -X may tune the defaults; acks and idempotence come last: an
     * expiry must not be lost or reordered by retries */
    if (config_kafka_set(conf, "bootstrap.servers", cfg->brokers, errstr,
                         errstr_size) ||
        config_kafka_set(conf, "linger.ms", "0", errstr, errstr_size) ||
        config_kafka_set(conf, "client.id", "edr-worker-callbacks", errstr,
                         errstr_size) ||
        config_apply_kafka_props(cfg, conf, errstr, errstr_size) ||
        config_kafka_set(conf, "message.timeout.ms", timeout, errstr,
                         errstr_size) ||
        config_kafka_set(conf, "acks", "all", errstr, errstr_size) ||
        config_kafka_set(conf, "enable.idempotence", "true", errstr,
                         errstr_size))
        goto fail;
    rd_kafka_conf_set_dr_msg_cb(conf, dr_cb);
    rd_kafka_conf_set_log_cb(conf, log_cb);
    rd_kafka_conf_set_opaque(conf, p);
    pthread_mutex_init(&p->lock, NULL);
    pthread_condattr_init(&ca);
    pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
    pthread_cond_init(&p->cond, &ca);
    pthread_condattr_destroy(&ca);
    if (!(p->rk = rd_kafka_new(RD_KAFKA_PRODUCER, conf, errstr, errstr_size)))
        goto fail;
    conf = NULL; /* now owned by p->rk */
    if (pthread_create(&p->poller, NULL, poll_main, p) != 0) {
        snprintf(errstr, errstr_size, "cannot start the producer's thread");
        goto fail;
    }
    p->poller_started = 1;
    return p;

fail:
    if (conf)
        rd_kafka_conf_destroy(conf);
    edc_publisher_close(p);
    return NULL;
}

/* Waits (under p->lock) until r is done or until the monotonic ms. */
static void wait_done(struct edc_publisher *p, struct pending *r,
                      int64_t until_ms)
{
    struct timespec ts = {.tv_sec = (time_t)(until_ms / 1000),
                          .tv_nsec = (long)(until_ms % 1000) * 1000000L};
    while (!r->done)
        if (pthread_cond_timedwait(&p->cond, &p->lock, &ts) == ETIMEDOUT)
            break;
}

int edc_publisher_send(struct edc_publisher *p, const char *key, size_t key_len,
                       const char *value, size_t len, int32_t *partition,
                       int64_t *offset, char *errstr, size_t errstr_size)
{
    int rc = -1;
    struct pending *r = calloc(1, sizeof(*r));
    rd_kafka_headers_t *hdrs = rd_kafka_headers_new(1);
    if (!r || !hdrs) {
        snprintf(errstr, errstr_size, "out of memory");
        free(r);
        if (hdrs)
            rd_kafka_headers_destroy(hdrs);
        return -1;
    }
    r->owners = 2;
    rd_kafka_header_add(hdrs, "content-type", -1,
                        "application/cloudevents+json", -1);
    int64_t until = edr_clock_ms() + EDC_PUBLISH_TIMEOUT_MS + WAIT_MARGIN_MS;
    rd_kafka_resp_err_t err = rd_kafka_producev(
        p->rk, RD_KAFKA_V_TOPIC(p->topic),
        RD_KAFKA_V_MSGFLAGS(RD_KAFKA_MSG_F_COPY), RD_KAFKA_V_KEY(key, key_len),
        RD_KAFKA_V_VALUE((void *)value, len), RD_KAFKA_V_HEADERS(hdrs),
        RD_KAFKA_V_OPAQUE(r), RD_KAFKA_V_END);
    if (err) {
        rd_kafka_headers_destroy(hdrs); /* not taken on failure */
        snprintf(errstr, errstr_size, "not queued: %s", rd_kafka_err2str(err));
        free(r);
        return -1;
    }
    pthread_mutex_lock(&p->lock);
    wait_done(p, r, until);
    if (!r->done) {
        snprintf(errstr, errstr_size, "no delivery report within %d ms",
                 EDC_PUBLISH_TIMEOUT_MS + WAIT_MARGIN_MS);
    } else if (r->err) {
        snprintf(errstr, errstr_size, "not delivered: %s",
                 rd_kafka_err2str(r->err));
    } else {
        *partition = r->partition;
        *offset = r->offset;
        rc = 0;
    }
    pending_release(r);
    pthread_mutex_unlock(&p->lock);
    return rc;
}

void edc_publisher_close(struct edc_publisher *p)
{
    if (!p)
        return;
    if (p->rk)
        rd_kafka_flush(p->rk, 3000);
    if (p->poller_started) {
        atomic_store(&p->stop, 1);
        pthread_join(p->poller, NULL);
    }
    if (p->rk) {
        /* reports of what the flush left are served here: they free
         * their records */
        rd_kafka_purge(p->rk,
                       RD_KAFKA_PURGE_F_QUEUE | RD_KAFKA_PURGE_F_INFLIGHT);
        rd_kafka_poll(p->rk, 0);
        rd_kafka_destroy(p->rk);
        pthread_mutex_destroy(&p->lock);
        pthread_cond_destroy(&p->cond);
    }
    free(p->topic);
    free(p);
}

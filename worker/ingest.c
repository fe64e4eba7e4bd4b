/* ingest.c: see ingest.h.
 *
 * One round: wait up to IDLE_WAIT_MS for a first message, then take what
 * arrives within BATCH_WAIT_MS (at most BATCH_MAX messages); decode them,
 * copy the rejected ones to the dead-letter topic and wait for the
 * broker's acknowledgement, then apply the good ones and the offsets of
 * all of them (last offset + 1 per partition) as one store batch. Offsets
 * move only after the store accepted the batch, so a crash replays, and
 * replays are harmless (schemas/README.md §1).
 *
 * While the store or the dead-letter topic is failing, every assigned
 * partition is paused and the consumer is still polled, so rebalances are
 * served and the group keeps this member; the same batch is retried with
 * capped exponential backoff. A partition revoked meanwhile drops its part
 * of the pending batch: its new owner starts from the offsets in the
 * store, which never saw that part. */
#include "worker/ingest.h"

#include "handlers/handler.h"
#include "schemas/event.h"
#include "worker/backoff.h"
#include "worker/config_parse.h"
#include "worker/dlq.h"
#include "worker/log.h"
#include "worker/metrics.h"

#include <inttypes.h>
#include <librdkafka/rdkafka.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#define BATCH_MAX 2000
#define BATCH_WAIT_MS 5
#define IDLE_WAIT_MS 100
#define LAG_EVERY_S 1.0
#define PROGRESS_EVERY_S 10.0
#define METADATA_EVERY_S 5.0
#define COMMIT_EVERY_S 0.5
#define RETRY_MIN_MS 100
#define RETRY_MAX_MS 5000
/* Batches at least this big are decoded by two threads. */
#define PARALLEL_DECODE_MIN 64
/* Items a decoding thread takes at a time from a shared batch. */
#define DECODE_CHUNK 16

enum { ROUND_OK = 0, ROUND_STOPPED = 1, ROUND_FATAL = -1 };

struct part {
    int known; /* seen in metadata or an assignment */
    int assigned;
    int paused;
    int64_t expect; /* next offset expected from the fetcher, -1 any */
    int64_t next;   /* next offset after what the store holds, -1 unknown */
    int64_t low;    /* low watermark when next is unknown, -1 unknown */
    int64_t target; /* exit-when-caught-up: high watermark at start */
    int64_t lag;
};

struct item {
    rd_kafka_message_t *msg;
    struct event ev;
    struct store_op op;
    int decoded;   /* ev holds a decoded event to clear */
    int bad;       /* to the dead-letter topic */
    int dropped;   /* its partition was revoked: not ours to apply */
    int applied;   /* applied alone (after a rejected batch) */
    int dlq_state; /* enum dlq_state */
    enum event_error err;
    char reason[320];
};

/* A second thread that decodes a batch with the ingest thread: both take
 * DECODE_CHUNK items at a time until none is left, so neither waits long
 * for the other when the scheduler delays one. Decoding is most of the
 * CPU time per event, and it needs no shared state (schemas/event.h,
 * handlers/). (Decoding the next batch while storing one was tried: no
 * measurable gain for the file or postgres store, slower for memory.) */
struct decoder_thread {
    pthread_t thread;
    pthread_mutex_t mu;
    pthread_cond_t cv;
    struct item *items; /* the batch posted; set under mu */
    size_t n;
    atomic_size_t next; /* first item not taken yet */
    int posted;         /* the ingest thread waits for has_work == 0 */
    int has_work;       /* a batch is posted to the thread */
    int quit;
    int inited;
    int started;
};

struct ingest {
    const struct config *cfg;
    struct store *st;
    volatile sig_atomic_t *stop;
    const struct ingest_opts *opts;
    int group_mode;

    rd_kafka_t *rk;
    rd_kafka_queue_t *q;
    rd_kafka_topic_t *rkt; /* for metadata requests */
    struct dlq *dlq;

    struct part *parts;
    int32_t n_parts; /* parts[0..n_parts-1], indexed by partition id */

    struct item *items;
    size_t n_items;
    int count_each_batch; /* count() is O(1): refresh the gauge per batch */
    struct store_op *ops;
    struct store_offset *offs;
    size_t offs_cap;

    struct decoder_thread dec;
    struct store_offset *saved; /* offsets from the store at start */
    size_t n_saved;

    int outage; /* store or dead-letter outage: partitions paused */
    double outage_start;
    int fatal;      /* set from a callback: exit 3 */
    int kafka_down; /* all brokers down reported */
    int joined;     /* group mode: an assignment was received */
    int targets_ready;

    uint64_t applied; /* events applied (good ones) */
    uint64_t dead;    /* events dead-lettered */
    uint64_t applied_at_progress;
    double last_progress, last_lag, last_meta, last_commit;
    int64_t lag_total;
    double warn_until; /* rate limit of consumer error lines */
};

double ingest_now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

/* ---- partitions ---------------------------------------------------- */

static struct part *part_get(struct ingest *in, int32_t id, int create)
{
    if (id < 0)
        return NULL;
    if (id >= in->n_parts) {
        if (!create)
            return NULL;
        struct part *grown =
            realloc(in->parts, (size_t)(id + 1) * sizeof(*grown));
        if (!grown)
            return NULL;
        for (int32_t i = in->n_parts; i <= id; i++)
            grown[i] = (struct part){
                .expect = -1, .next = -1, .low = -1, .target = -1};
        in->parts = grown;
        in->n_parts = id + 1;
    }
    struct part *p = &in->parts[id];
    if (create)
        p->known = 1;
    return p->known ? p : NULL;
}

static int64_t saved_offset(const struct ingest *in, int32_t id)
{
    for (size_t i = 0; i < in->n_saved; i++)
        if (in->saved[i].partition == id)
            return in->saved[i].next_offset;
    return -1;
}

static int any_assigned(const struct ingest *in)
{
    for (int32_t i = 0; i < in->n_parts; i++)
        if (in->parts[i].assigned)
            return 1;
    return 0;
}

/* Pauses (pause=1) or resumes every assigned partition. */
static void set_paused(struct ingest *in, int pause)
{
    rd_kafka_topic_partition_list_t *l = rd_kafka_topic_partition_list_new(8);
    for (int32_t i = 0; i < in->n_parts; i++)
        if (in->parts[i].assigned && in->parts[i].paused != pause)
            rd_kafka_topic_partition_list_add(l, in->cfg->topic, i);
    if (l->cnt > 0) {
        rd_kafka_resp_err_t err = pause ? rd_kafka_pause_partitions(in->rk, l)
                                        : rd_kafka_resume_partitions(in->rk, l);
        if (err)
            log_warn("kafka: %s partitions: %s", pause ? "pause" : "resume",
                     rd_kafka_err2str(err));
        for (int i = 0; i < l->cnt; i++)
            in->parts[l->elems[i].partition].paused = pause;
    }
    rd_kafka_topic_partition_list_destroy(l);
}

static void format_partitions(const rd_kafka_topic_partition_list_t *l,
                              int with_offsets, char *out, size_t cap)
{
    size_t n = 0;
    out[0] = '\0';
    for (int i = 0; i < l->cnt && n + 32 < cap; i++) {
        int64_t off = l->elems[i].offset;
        if (!with_offsets)
            n += (size_t)snprintf(out + n, cap - n, "%s%" PRId32, i ? " " : "",
                                  l->elems[i].partition);
        else if (off >= 0)
            n += (size_t)snprintf(out + n, cap - n, "%s%" PRId32 "@%" PRId64,
                                  i ? " " : "", l->elems[i].partition, off);
        else
            n += (size_t)snprintf(out + n, cap - n, "%s%" PRId32 "@start",
                                  i ? " " : "", l->elems[i].partition);
    }
    if (l->cnt == 0)
        snprintf(out, cap, "none");
}

/* Loads the store's offsets, retrying transient failures. 0, or
 * ROUND_STOPPED / ROUND_FATAL. */
static int load_saved_offsets(struct ingest *in)
{
    struct backoff b;
    backoff_init(&b, RETRY_MIN_MS, RETRY_MAX_MS);
    for (;;) {
        struct store_err err = {0};
        free(in->saved);
        in->saved = NULL;
        in->n_saved = 0;
        int rc = in->st->ops->load_offsets(in->st, in->cfg->topic, &in->saved,
                                           &in->n_saved, &err);
        if (rc == STORE_OK) {
            if (b.attempts)
                log_info("store: offsets loaded after %u retries", b.attempts);
            return 0;
        }
        if (rc != STORE_TRANSIENT) {
            log_error("store: cannot load offsets: %s", err.msg);
            return ROUND_FATAL;
        }
        if (b.attempts == 0) {
            log_warn("store: cannot load offsets (%s); retrying", err.msg);
            metrics_outage("store");
            metrics_set_store_ok(0);
        }
        metrics_retry("store");
        if (*in->stop)
            return ROUND_STOPPED;
        unsigned ms = backoff_next(&b);
        struct timespec ts = {ms / 1000, (long)(ms % 1000) * 1000000L};
        nanosleep(&ts, NULL);
    }
}

/* Marks the partitions of l assigned at the offsets in l (which must come
 * from the store, or be OFFSET_BEGINNING). */
static void mark_assigned(struct ingest *in,
                          const rd_kafka_topic_partition_list_t *l)
{
    for (int i = 0; i < l->cnt; i++) {
        struct part *p = part_get(in, l->elems[i].partition, 1);
        if (!p)
            continue;
        p->assigned = 1;
        p->paused = 0;
        p->next = l->elems[i].offset >= 0 ? l->elems[i].offset : -1;
        p->expect = p->next;
    }
    metrics_set_kafka_assigned(in->joined || any_assigned(in));
}

/* Sets each partition's start offset: the store's, else the beginning. */
static void set_start_offsets(struct ingest *in,
                              rd_kafka_topic_partition_list_t *l)
{
    for (int i = 0; i < l->cnt; i++) {
        int64_t off = saved_offset(in, l->elems[i].partition);
        l->elems[i].offset = off >= 0 ? off : RD_KAFKA_OFFSET_BEGINNING;
    }
}

/* ---- group mode: rebalances ------------------------------------------ */

static void drop_items_of(struct ingest *in,
                          const rd_kafka_topic_partition_list_t *l)
{
    for (size_t i = 0; i < in->n_items; i++)
        for (int j = 0; j < l->cnt; j++)
            if (in->items[i].msg->partition == l->elems[j].partition)
                in->items[i].dropped = 1;
}

static void rebalance_cb(rd_kafka_t *rk, rd_kafka_resp_err_t err,
                         rd_kafka_topic_partition_list_t *l, void *opaque)
{
    struct ingest *in = opaque;
    int coop = strcmp(rd_kafka_rebalance_protocol(rk), "COOPERATIVE") == 0;
    rd_kafka_error_t *error = NULL;
    rd_kafka_resp_err_t aerr = RD_KAFKA_RESP_ERR_NO_ERROR;
    char text[1024];

    if (err == RD_KAFKA_RESP_ERR__ASSIGN_PARTITIONS) {
        /* The offsets table is the truth: seek every new partition to
         * what the store last applied, whatever Kafka has committed. */
        int rc = load_saved_offsets(in);
        if (rc == ROUND_FATAL)
            in->fatal = 1;
        set_start_offsets(in, l);
        if (coop)
            error = rd_kafka_incremental_assign(rk, l);
        else
            aerr = rd_kafka_assign(rk, l);
        in->joined = 1;
        mark_assigned(in, l);
        if (in->outage || rc != 0) {
            set_paused(in, 1);
        } else {
            /* librdkafka 2.0 keeps a partition's pause flag across its
             * revocation: one revoked during an outage would come back
             * paused for good (tests/fault/, group-zombie). */
            rd_kafka_resume_partitions(rk, l);
        }
        format_partitions(l, 1, text, sizeof(text));
        log_info("kafka: assigned partitions of %s: %s", in->cfg->topic, text);
    } else {
        if (err != RD_KAFKA_RESP_ERR__REVOKE_PARTITIONS)
            log_error("kafka: rebalance error: %s", rd_kafka_err2str(err));
        drop_items_of(in, l);
        /* Lag tools see the last applied offsets of what we give up. */
        rd_kafka_commit(rk, NULL, 1);
        if (coop)
            error = rd_kafka_incremental_unassign(rk, l);
        else
            aerr = rd_kafka_assign(rk, NULL);
        for (int i = 0; i < l->cnt; i++) {
            struct part *p = part_get(in, l->elems[i].partition, 0);
            if (p) {
                p->assigned = 0;
                p->paused = 0;
                p->lag = 0;
                metrics_consumer_lag(l->elems[i].partition, -1);
            }
        }
        format_partitions(l, 0, text, sizeof(text));
        log_info("kafka: %s partitions of %s: %s",
                 rd_kafka_assignment_lost(rk) ? "lost" : "revoked",
                 in->cfg->topic, text);
    }
    if (error) {
        log_error("kafka: assignment failed: %s", rd_kafka_error_string(error));
        rd_kafka_error_destroy(error);
    } else if (aerr) {
        log_error("kafka: assignment failed: %s", rd_kafka_err2str(aerr));
    }
}

/* ---- assign mode: every partition ------------------------------------ */

/* Assigns the partitions of the topic not assigned yet (all of them at
 * start, new ones later) at the offsets saved with the state. */
static void assign_new_partitions(struct ingest *in)
{
    const struct rd_kafka_metadata *md = NULL;
    rd_kafka_resp_err_t err = rd_kafka_metadata(in->rk, 0, in->rkt, &md, 2000);
    if (err) {
        if (ingest_now() >= in->warn_until) {
            log_warn("kafka: metadata of %s: %s", in->cfg->topic,
                     rd_kafka_err2str(err));
            in->warn_until = ingest_now() + 30;
        }
        return;
    }
    if (in->kafka_down) {
        in->kafka_down = 0;
        log_info("kafka: brokers reachable again");
    }
    rd_kafka_topic_partition_list_t *l = rd_kafka_topic_partition_list_new(8);
    if (md->topic_cnt == 1 && md->topics[0].err) {
        if (ingest_now() >= in->warn_until) {
            log_warn("kafka: topic %s: %s; waiting for it", in->cfg->topic,
                     rd_kafka_err2str(md->topics[0].err));
            in->warn_until = ingest_now() + 30;
        }
    } else if (md->topic_cnt == 1) {
        for (int i = 0; i < md->topics[0].partition_cnt; i++) {
            int32_t id = md->topics[0].partitions[i].id;
            struct part *p = part_get(in, id, 0);
            if (!p || !p->assigned)
                rd_kafka_topic_partition_list_add(l, in->cfg->topic, id);
        }
    }
    rd_kafka_metadata_destroy(md);
    if (l->cnt > 0) {
        char text[1024];
        set_start_offsets(in, l);
        rd_kafka_error_t *error = rd_kafka_incremental_assign(in->rk, l);
        if (error) {
            log_error("kafka: assign: %s", rd_kafka_error_string(error));
            rd_kafka_error_destroy(error);
        } else {
            mark_assigned(in, l);
            if (in->outage)
                set_paused(in, 1);
            format_partitions(l, 1, text, sizeof(text));
            log_info("kafka: assigned partitions of %s: %s", in->cfg->topic,
                     text);
        }
    }
    rd_kafka_topic_partition_list_destroy(l);
}

/* ---- consumer callbacks ---------------------------------------------- */

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

static int consumer_open(struct ingest *in, char *errstr, size_t errstr_size)
{
    const struct config *cfg = in->cfg;
    rd_kafka_conf_t *conf = rd_kafka_conf_new();
    if (config_kafka_set(conf, "bootstrap.servers", cfg->brokers, errstr,
                         errstr_size) ||
        config_kafka_set(conf, "client.id", "edr-worker", errstr,
                         errstr_size) ||
        config_kafka_set(conf, "auto.offset.reset", "earliest", errstr,
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
    if (rd_kafka_version() >= 0x020100ff)
        config_kafka_set(conf, "fetch.queue.backoff.ms", "20", errstr,
                         errstr_size);
    if (config_apply_kafka_props(cfg, conf, errstr, errstr_size))
        goto fail;
    /* Not overridable: offsets move only after the store took the batch,
     * and only this code commits them. */
    if (config_kafka_set(conf, "enable.auto.offset.store", "false", errstr,
                         errstr_size) ||
        config_kafka_set(conf, "enable.auto.commit", "false", errstr,
                         errstr_size))
        goto fail;
    rd_kafka_conf_set_error_cb(conf, error_cb);
    rd_kafka_conf_set_log_cb(conf, log_cb);
    if (in->group_mode)
        rd_kafka_conf_set_rebalance_cb(conf, rebalance_cb);
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

/* ---- consuming --------------------------------------------------------- */

static void consume_error(struct ingest *in, const rd_kafka_message_t *m)
{
    if (m->err == RD_KAFKA_RESP_ERR__PARTITION_EOF)
        return;
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
static void wait_serving(struct ingest *in, unsigned ms)
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
        struct part *p = part_get(in, m->partition, 0);
        if (!m->err && p && p->assigned &&
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
    struct part *p = part_get(in, m->partition, 0);
    if (!p || !p->assigned || (p->expect >= 0 && m->offset < p->expect)) {
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
static size_t fill_batch(struct ingest *in)
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

static void clear_items(struct ingest *in)
{
    for (size_t i = 0; i < in->n_items; i++) {
        struct item *it = &in->items[i];
        if (it->decoded)
            event_clear(&it->ev);
        rd_kafka_message_destroy(it->msg);
    }
    in->n_items = 0;
}

/* ---- one round ---------------------------------------------------------- */

static void decode_item(struct item *it)
{
    const rd_kafka_message_t *m = it->msg;
    it->err = event_decode(&it->ev, m->payload ? m->payload : "", m->len,
                           it->reason, sizeof(it->reason));
    if (it->err != EVENT_OK) {
        it->bad = 1;
        if (!it->reason[0])
            snprintf(it->reason, sizeof(it->reason), "invalid event (%s)",
                     event_error_class(it->err));
        return;
    }
    it->decoded = 1;
    if (handler_event_to_op(&it->ev, &it->op) != 0) {
        it->bad = 1;
        it->err = EVENT_ERR_SCHEMA;
        snprintf(it->reason, sizeof(it->reason),
                 "type: no store operation for this event");
    }
}

/* Decodes chunks of items[0..n) until none is left untaken. */
static void decode_share(struct decoder_thread *d, struct item *items, size_t n)
{
    for (;;) {
        size_t i = atomic_fetch_add(&d->next, DECODE_CHUNK);
        if (i >= n)
            return;
        size_t end = n - i > DECODE_CHUNK ? i + DECODE_CHUNK : n;
        for (; i < end; i++)
            decode_item(&items[i]);
    }
}

static void *decoder_main(void *arg)
{
    struct decoder_thread *d = arg;
    pthread_mutex_lock(&d->mu);
    for (;;) {
        while (!d->has_work && !d->quit)
            pthread_cond_wait(&d->cv, &d->mu);
        if (d->quit)
            break;
        struct item *items = d->items;
        size_t n = d->n;
        pthread_mutex_unlock(&d->mu);
        decode_share(d, items, n);
        pthread_mutex_lock(&d->mu);
        d->has_work = 0;
        pthread_cond_broadcast(&d->cv);
    }
    pthread_mutex_unlock(&d->mu);
    return NULL;
}

static void decoder_start(struct decoder_thread *d)
{
    pthread_mutex_init(&d->mu, NULL);
    pthread_cond_init(&d->cv, NULL);
    d->inited = 1;
    d->started = pthread_create(&d->thread, NULL, decoder_main, d) == 0;
}

static void decoder_stop(struct decoder_thread *d)
{
    if (!d->inited)
        return;
    if (d->started) {
        pthread_mutex_lock(&d->mu);
        d->quit = 1;
        pthread_cond_broadcast(&d->cv);
        pthread_mutex_unlock(&d->mu);
        pthread_join(d->thread, NULL);
        d->started = 0;
    }
    pthread_cond_destroy(&d->cv);
    pthread_mutex_destroy(&d->mu);
}

/* Starts decoding items[0..n) on the decoder thread (if it runs and the
 * batch is worth it); decode_finish completes it. One batch at a time. */
static void decode_post(struct decoder_thread *d, struct item *items, size_t n)
{
    d->items = items;
    d->n = n;
    atomic_store(&d->next, 0);
    d->posted = d->started && n >= PARALLEL_DECODE_MIN;
    if (d->posted) {
        pthread_mutex_lock(&d->mu);
        d->has_work = 1;
        pthread_cond_broadcast(&d->cv);
        pthread_mutex_unlock(&d->mu);
    }
}

/* Decodes what the decoder thread has not taken of the posted batch and
 * waits for the thread's part: afterwards every item is decoded. */
static void decode_finish(struct decoder_thread *d)
{
    decode_share(d, d->items, d->n);
    if (d->posted) {
        pthread_mutex_lock(&d->mu);
        while (d->has_work)
            pthread_cond_wait(&d->cv, &d->mu);
        pthread_mutex_unlock(&d->mu);
        d->posted = 0;
    }
}

static void outage_begin(struct ingest *in, const char *what, const char *why)
{
    if (in->outage)
        return;
    in->outage = 1;
    in->outage_start = ingest_now();
    log_warn("%s unavailable (%s); pausing consumption and retrying", what,
             why);
    set_paused(in, 1);
}

static void outage_end(struct ingest *in, const char *what, unsigned retries)
{
    if (!in->outage)
        return;
    in->outage = 0;
    log_info("%s recovered after %.1f s and %u retries; resuming", what,
             ingest_now() - in->outage_start, retries);
    set_paused(in, 0);
}

/* Copies every bad, not yet acknowledged item to the dead-letter topic
 * and waits until the broker acknowledged all of them, retrying failures.
 * ROUND_OK, or ROUND_STOPPED (stop requested while it failed). */
static int send_dead_letters(struct ingest *in)
{
    struct backoff b;
    backoff_init(&b, RETRY_MIN_MS, RETRY_MAX_MS);
    for (;;) {
        char errstr[256];
        for (size_t i = 0; i < in->n_items; i++) {
            struct item *it = &in->items[i];
            if (!it->bad || it->dropped || it->dlq_state == DLQ_DONE)
                continue;
            /* A failure to even queue it shows as DLQ_FAILED below. */
            dlq_produce(in->dlq, it->msg, it->reason, &it->dlq_state, errstr,
                        sizeof(errstr));
        }
        /* The producer's own timeout (10 s) bounds this wait. */
        while (dlq_wait(in->dlq, 1000) > 0)
            ;
        int failed = 0;
        for (size_t i = 0; i < in->n_items; i++) {
            struct item *it = &in->items[i];
            if (it->bad && !it->dropped && it->dlq_state != DLQ_DONE)
                failed++;
        }
        if (!failed) {
            if (b.attempts)
                outage_end(in, "dead-letter topic", b.attempts);
            return ROUND_OK;
        }
        if (b.attempts == 0) {
            metrics_outage("kafka");
            outage_begin(in, "dead-letter topic", dlq_last_error(in->dlq));
        }
        metrics_retry("kafka");
        if (*in->stop)
            return ROUND_STOPPED;
        wait_serving(in, backoff_next(&b));
    }
}

/* Builds the store batch from the items: every good op not yet applied
 * (or only item `single`'s op when single >= 0, without offsets), plus the
 * offsets of all items kept (unless single >= 0), without ops when
 * offsets_only. */
static void build_batch(struct ingest *in, long single, int offsets_only,
                        struct store_batch *b)
{
    size_t n_ops = 0, n_offs = 0;
    for (size_t i = 0; i < in->n_items; i++) {
        struct item *it = &in->items[i];
        if (it->dropped)
            continue;
        if (single >= 0) {
            if ((size_t)single == i)
                in->ops[n_ops++] = it->op;
            continue;
        }
        if (!offsets_only && !it->bad && !it->applied)
            in->ops[n_ops++] = it->op;
        size_t j = 0;
        while (j < n_offs && in->offs[j].partition != it->msg->partition)
            j++;
        if (j == n_offs) {
            in->offs[n_offs].partition = it->msg->partition;
            in->offs[n_offs++].first_offset =
                in->group_mode ? it->msg->offset : -1;
        }
        in->offs[j].next_offset = it->msg->offset + 1;
    }
    /* One event alone (apply_one_by_one) is fenced too, at the start of
     * its partition's part of the batch, without moving the offset. */
    for (size_t i = 0;
         single >= 0 && n_ops > 0 && in->group_mode && i < in->n_items; i++) {
        const struct item *it = &in->items[i];
        if (!it->dropped &&
            it->msg->partition == in->items[single].msg->partition) {
            in->offs[0] = (struct store_offset){
                it->msg->partition, it->msg->offset, it->msg->offset};
            n_offs = 1;
            break;
        }
    }
    *b = (struct store_batch){.ops = in->ops,
                              .n_ops = n_ops,
                              .topic = in->cfg->topic,
                              .offsets = in->offs,
                              .n_offsets = n_offs};
}

/* The store fenced batch b (STORE_CONFLICT): another worker applied
 * events of some partition past where this batch starts, so the group
 * gave that partition away while this worker was frozen. Re-reads the
 * store's offsets, drops the items of every such partition and, if it is
 * still assigned here, seeks it to what the store holds so nothing this
 * worker still owns is skipped. *dropped = how many partitions it
 * dropped. ROUND_OK, or ROUND_STOPPED / ROUND_FATAL when the offsets
 * cannot be loaded. */
static int drop_fenced(struct ingest *in, const struct store_batch *b,
                       int *dropped)
{
    *dropped = 0;
    int rc = load_saved_offsets(in);
    if (rc != 0)
        return rc;
    for (size_t j = 0; j < b->n_offsets; j++) {
        const struct store_offset *o = &b->offsets[j];
        int64_t stored = saved_offset(in, o->partition);
        if (o->first_offset < 0 || stored <= o->first_offset)
            continue;
        log_warn("partition %" PRId32 " was advanced by another worker past "
                 "offset %" PRId64 " (to %" PRId64 "): this worker lost it; "
                 "dropping its pending events and re-reading the offsets",
                 o->partition, o->first_offset, stored);
        (*dropped)++;
        for (size_t i = 0; i < in->n_items; i++)
            if (in->items[i].msg->partition == o->partition)
                in->items[i].dropped = 1;
        struct part *p = part_get(in, o->partition, 0);
        if (!p || !p->assigned)
            continue;
        rd_kafka_topic_partition_list_t *l =
            rd_kafka_topic_partition_list_new(1);
        rd_kafka_topic_partition_list_add(l, in->cfg->topic, o->partition)
            ->offset = stored;
        rd_kafka_error_t *e = rd_kafka_seek_partitions(in->rk, l, 0);
        if (e) {
            log_warn("kafka: seek partition %" PRId32 ": %s", o->partition,
                     rd_kafka_error_string(e));
            rd_kafka_error_destroy(e);
        }
        rd_kafka_topic_partition_list_destroy(l);
        p->next = stored;
        p->expect = stored;
    }
    return ROUND_OK;
}

/* Applies the batch build_batch(single, offsets_only) makes, retrying
 * transient failures with the partitions paused. Returns STORE_OK,
 * STORE_INVALID (with *rejected filled), or ROUND_STOPPED / ROUND_FATAL
 * mapped to STORE_TRANSIENT / STORE_FATAL. */
static int apply_retry(struct ingest *in, long single, int offsets_only,
                       struct store_err *rejected, size_t *changed)
{
    struct backoff b;
    backoff_init(&b, RETRY_MIN_MS, RETRY_MAX_MS);
    for (;;) {
        struct store_batch batch;
        struct store_err err = {0};
        build_batch(in, single, offsets_only, &batch);
        /* Nothing left (every partition revoked or fenced meanwhile) is a
         * success too: it must end the outage, or the partitions would
         * stay paused for good. */
        int rc = batch.n_ops == 0 && batch.n_offsets == 0
                     ? STORE_OK
                     : in->st->ops->apply(in->st, &batch, &err);
        if (rc == STORE_OK) {
            if (in->outage && b.attempts) {
                metrics_set_store_ok(1);
                outage_end(in, "store", b.attempts);
            }
            if (changed)
                *changed = batch.changed;
            return STORE_OK;
        }
        if (rc == STORE_INVALID) {
            *rejected = err;
            return STORE_INVALID;
        }
        if (rc == STORE_CONFLICT) {
            /* Each round drops at least one partition of the batch, so
             * this ends; if none was found stale (offsets moved back
             * meanwhile?), retry like an outage rather than spin. */
            int dropped, r = drop_fenced(in, &batch, &dropped);
            if (r == ROUND_STOPPED)
                return STORE_TRANSIENT;
            if (r == ROUND_FATAL)
                return STORE_FATAL;
            if (dropped > 0)
                continue;
            log_warn("store: %s, but no partition is behind the store; "
                     "retrying",
                     err.msg);
        } else if (rc != STORE_TRANSIENT) {
            log_error("store: fatal error: %s", err.msg);
            return STORE_FATAL;
        }
        if (b.attempts == 0) {
            metrics_outage("store");
            metrics_set_store_ok(0);
            outage_begin(in, "store", err.msg);
        }
        metrics_retry("store");
        if (*in->stop) {
            log_warn("store: stopping during an outage; the batch in flight "
                     "will be consumed again at the next start");
            return STORE_TRANSIENT;
        }
        wait_serving(in, backoff_next(&b));
    }
}

static int rc_to_round(int rc)
{
    return rc == STORE_OK          ? ROUND_OK
           : rc == STORE_TRANSIENT ? ROUND_STOPPED
                                   : ROUND_FATAL;
}

/* A batch the store rejected as invalid: apply its events one by one and
 * dead-letter the ones it rejects, then record the offsets. */
static int apply_one_by_one(struct ingest *in, const struct store_err *why)
{
    log_warn("store rejected a batch (%s); applying its events one by one",
             why->msg);
    for (size_t i = 0; i < in->n_items; i++) {
        struct item *it = &in->items[i];
        if (it->dropped || it->bad)
            continue;
        struct store_err rej = {0};
        int rc = apply_retry(in, (long)i, 0, &rej, NULL);
        if (rc == STORE_INVALID) {
            it->bad = 1;
            it->err = EVENT_ERR_SCHEMA;
            snprintf(it->reason, sizeof(it->reason), "store rejected: %s",
                     rej.msg);
            continue;
        }
        if (rc != STORE_OK)
            return rc_to_round(rc);
        it->applied = 1;
    }
    int rc = send_dead_letters(in);
    if (rc != ROUND_OK)
        return rc;
    struct store_err rej = {0};
    rc = apply_retry(in, -1, 1, &rej, NULL);
    if (rc == STORE_INVALID) {
        log_error("store: rejected offsets: %s", rej.msg);
        return ROUND_FATAL;
    }
    return rc_to_round(rc);
}

static void after_apply(struct ingest *in, double started)
{
    uint64_t by_type[4] = {0};
    size_t n_good = 0;
    for (size_t i = 0; i < in->n_items; i++) {
        struct item *it = &in->items[i];
        if (it->dropped)
            continue;
        if (it->bad) {
            in->dead++;
            metrics_event_dead_lettered(it->err);
            log_warn("dead-lettered %s[%" PRId32 "]@%" PRId64 ": %s",
                     in->cfg->topic, it->msg->partition, it->msg->offset,
                     it->reason);
        } else {
            n_good++;
            by_type[it->ev.type & 3]++;
        }
    }
    for (int t = EVENT_NEGOTIATED; t <= EVENT_EXPIRED; t++)
        if (by_type[t])
            metrics_events_applied((enum event_type)t, by_type[t]);
    in->applied += n_good;
    metrics_batch_applied(n_good, ingest_now() - started);
    if (in->count_each_batch) {
        uint64_t entries;
        struct store_err err = {0};
        if (in->st->ops->count(in->st, NULL, &entries, &err) == STORE_OK)
            metrics_store_entries(entries);
    }

    struct store_batch batch;
    build_batch(in, -1, 1, &batch);
    rd_kafka_topic_partition_list_t *l =
        in->group_mode ? rd_kafka_topic_partition_list_new((int)batch.n_offsets)
                       : NULL;
    for (size_t j = 0; j < batch.n_offsets; j++) {
        struct part *p = part_get(in, batch.offsets[j].partition, 0);
        if (p)
            p->next = batch.offsets[j].next_offset;
        if (l)
            rd_kafka_topic_partition_list_add(l, in->cfg->topic,
                                              batch.offsets[j].partition)
                ->offset = batch.offsets[j].next_offset;
    }
    if (l) {
        /* Kafka's committed offsets only inform lag tools; the store's
         * offsets table is what the worker resumes from. */
        rd_kafka_offsets_store(in->rk, l);
        rd_kafka_topic_partition_list_destroy(l);
        if (ingest_now() - in->last_commit >= COMMIT_EVERY_S) {
            rd_kafka_commit(in->rk, NULL, 1);
            in->last_commit = ingest_now();
        }
    }
}

static int process_batch(struct ingest *in)
{
    double started = ingest_now();
    log_debug("batch of %zu messages", in->n_items);
    int has_bad = 0;
    decode_post(&in->dec, in->items, in->n_items);
    decode_finish(&in->dec);
    for (size_t i = 0; i < in->n_items; i++)
        has_bad |= in->items[i].bad;
    if (has_bad) {
        int rc = send_dead_letters(in);
        if (rc != ROUND_OK)
            return rc;
    }
    struct store_err rej = {0};
    int rc = apply_retry(in, -1, 0, &rej, NULL);
    if (rc == STORE_INVALID)
        rc = apply_one_by_one(in, &rej);
    else
        rc = rc_to_round(rc);
    if (rc == ROUND_OK)
        after_apply(in, started);
    return rc;
}

/* ---- ticks ------------------------------------------------------------- */

static void update_lag(struct ingest *in)
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

static void progress(struct ingest *in, double now)
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
    uint64_t entries;
    struct store_err err = {0};
    if (!in->outage &&
        in->st->ops->count(in->st, NULL, &entries, &err) == STORE_OK)
        metrics_store_entries(entries);
}

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
        struct part *p = part_get(in, hi->elems[i].partition, 1);
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

static int caught_up(struct ingest *in)
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

static void report_caught_up(struct ingest *in)
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

/* ---- the loop ---------------------------------------------------------- */

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
    if (!in->items || !in->ops || !in->offs) {
        log_error("out of memory");
        result = INGEST_FATAL;
        goto out;
    }
    decoder_start(&in->dec);
    if (!(in->dlq = dlq_open(cfg, errstr, sizeof(errstr)))) {
        log_error("kafka: dead-letter producer: %s", errstr);
        result = INGEST_CONFIG;
        goto out;
    }
    if (consumer_open(in, errstr, sizeof(errstr)) != 0) {
        log_error("kafka: consumer: %s", errstr);
        result = INGEST_CONFIG;
        goto out;
    }
    metrics_set_store_ok(1);
    if (!in->group_mode) {
        int rc = load_saved_offsets(in);
        if (rc == ROUND_FATAL) {
            result = INGEST_FATAL;
            goto out;
        }
        if (rc == ROUND_STOPPED)
            goto out;
        if (st->ops->caps.volatile_state)
            in->n_saved = 0; /* nothing survived: replay the log's start */
        metrics_set_store_ok(1);
    }
    log_info("consuming %s (%s store, %s)", cfg->topic, st->ops->name,
             in->group_mode ? "consumer group" : "all partitions");

    double now = ingest_now();
    in->last_progress = in->last_lag = now;
    in->last_meta = now - METADATA_EVERY_S;
    while (!*stop && !in->fatal) {
        now = ingest_now();
        if (!in->group_mode && now - in->last_meta >= METADATA_EVERY_S) {
            assign_new_partitions(in);
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
            update_lag(in);
            in->last_lag = now;
        }
        if (now - in->last_progress >= PROGRESS_EVERY_S)
            progress(in, now);
        if (opts->exit_when_caught_up && caught_up(in)) {
            report_caught_up(in);
            break;
        }

        if (fill_batch(in) == 0)
            continue;
        int rc = process_batch(in);
        if (rc == ROUND_STOPPED) {
            dlq_abort(in->dlq);
        } else if (rc == ROUND_FATAL) {
            in->fatal = 1;
        }
        clear_items(in);
    }
    if (in->fatal)
        result = INGEST_FATAL;

out:
    if (in->rk) {
        log_info("kafka: closing the consumer");
        if (in->group_mode) {
            rd_kafka_resp_err_t err = rd_kafka_commit(in->rk, NULL, 0);
            if (err && err != RD_KAFKA_RESP_ERR__NO_OFFSET)
                log_warn("kafka: final commit: %s", rd_kafka_err2str(err));
        }
        rd_kafka_consumer_close(in->rk);
        clear_items(in);
        if (in->rkt)
            rd_kafka_topic_destroy(in->rkt);
        if (in->q)
            rd_kafka_queue_destroy(in->q);
        rd_kafka_destroy(in->rk);
    }
    dlq_close(in->dlq);
    decoder_stop(&in->dec);
    free(in->items);
    free(in->ops);
    free(in->offs);
    free(in->saved);
    free(in->parts);
    return result;
}

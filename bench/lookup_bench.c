/* lookup_bench.c: lookup round trips through Redis (schemas/README.md §2), the
 * worker's responder against the bare floor of Redis itself.
 *
 * In one run, against the Redis of $EDR_REDIS_URL:
 *   floor   a trivial responder (same thread count): BRPOP, then LPUSH +
 *           EXPIRE of a fixed reply, pipelined; no decoding, no store
 *   memory  rpc_server_start() in-process over a memory store holding
 *           --entries entries (the worker's code path without Kafka)
 *   postgres the same over the PostgreSQL store ($EDR_PG_DSN, table
 *           --pg-table, filled once and reused by later runs)
 * Each is driven by 1, 8 and 32 client threads (each its own connection
 * and reply list) sending get_connection for random existing keys: the
 * request LPUSH and the BLPOP for its reply go out in one write. Reported:
 * lookups/s per client count, round-trip p50/p99/p99.9 with one client,
 * and the ratios to the floor (issue 6 targets: p50 <= 1.15x, p99 <=
 * 1.5x, throughput >= 90% at 8 and 32 clients).
 *
 * usage: lookup_bench [--entries N] [--seconds S] [--threads T]
 *                     [--stores memory,postgres] [--rounds R]
 *                     [--verbose] [--pg-table NAME] [--pg-drop]
 *                     [--quantiles FILE]
 * Rows interleave (floor, memory, postgres, floor, ...) for --rounds
 * rounds and the medians are reported, so background load drifts hit all
 * responders alike.
 *
 * Each store row also reports store_us: the median time spent inside the
 * store's read (get, or get_after for min_positions) per lookup, timed by
 * a wrapper store around the real one; the rest of a round trip is Redis
 * and the responder.
 *
 * Read-your-writes rows (issue 16; "+ryw", 1 and 8 clients, skipped with
 * --no-ryw): each client "publishes" a new entry for a random key (a new
 * transferProcessId) and gets back its (partition, offset) at once, like
 * edrctl publish; an applier thread per store (in place of Kafka and the
 * ingest loop) applies what was published, in batches with the offsets,
 * as soon as it can; the client then sends get_connection with
 * min_positions {partition: offset} and times publish to reply. A reply
 * without the new transferProcessId counts as failed (stale). The memory
 * applier reports its positions as the worker's ingest does; the postgres
 * applier does not, as if another worker applied the partition, so the
 * lookup must find the position in the shared offsets table. */
#include "base/clock.h"
#include "schemas/edr_key.h"
#include "stores/pg_store.h"
#include "stores/store.h"
#include "worker/config.h"
#include "worker/log.h"
#include "worker/positions.h"
#include "worker/redis_url.h"
#include "worker/rpc.h"

#include <hiredis/hiredis.h>

#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#define MAX_CLIENTS 64
#define MAX_ROUNDS 15

static const char *redis_url;
static struct redis_url url;
static long n_entries = 100000;
static double seconds = 3.0;
static int rpc_threads = 4;
static char run_id[64];
static int rounds = 3;
static int verbose;
/* --quantiles FILE (for bench/run.sh's latency chart): one line per row,
 * "responder clients round q1 .. q99 q99.5 q99.9" in microseconds */
static FILE *quantiles_out;
static const char *row_name = "";
static int row_round;
static int with_ryw = 1;
static char bench_topic[96];

/* -------------------------------------------------- timed store reads */

/* Samples of the time spent in a store's reads, in seconds; recorded only
 * while `on` (the measured window). */
#define STORE_SAMPLES (1 << 20)
struct samples {
    atomic_int on;
    atomic_size_t n;
    double *v;
};

/* A store whose reads are the inner store's, timed. */
struct timed_store {
    struct store base;
    struct store_ops ops;
    struct store *in;
    struct samples s;
};

static void sample(struct samples *s, double t0)
{
    double dt = edr_clock_s() - t0;
    if (!atomic_load(&s->on))
        return;
    size_t i = atomic_fetch_add(&s->n, 1);
    if (i < STORE_SAMPLES)
        s->v[i] = dt;
}

static int timed_get(struct store *st, const struct edr_key *k,
                     struct store_record *out, struct store_err *err)
{
    struct timed_store *ts = (struct timed_store *)st;
    double t0 = edr_clock_s();
    int rc = ts->in->ops->get(ts->in, k, out, err);
    sample(&ts->s, t0);
    return rc;
}

static int timed_get_after(struct store *st, const char *topic,
                           const struct store_position *need, size_t n_need,
                           const struct edr_key *k, struct store_record *out,
                           int *reached, struct store_err *err)
{
    struct timed_store *ts = (struct timed_store *)st;
    double t0 = edr_clock_s();
    int rc = ts->in->ops->get_after(ts->in, topic, need, n_need, k, out,
                                    reached, err);
    sample(&ts->s, t0);
    return rc;
}

#define TIMED_FORWARD(name, params, args)                                      \
    static int timed_##name params                                             \
    {                                                                          \
        struct store *in = ((struct timed_store *)st)->in;                     \
        return in->ops->name args;                                             \
    }
TIMED_FORWARD(apply,
              (struct store * st, struct store_batch *b, struct store_err *err),
              (in, b, err))
TIMED_FORWARD(get_transfer_id,
              (struct store * st, const struct edr_key *k, char **out,
               struct store_err *err),
              (in, k, out, err))
TIMED_FORWARD(count,
              (struct store * st, const struct store_filter *f, uint64_t *out,
               struct store_err *err),
              (in, f, out, err))
TIMED_FORWARD(list,
              (struct store * st, const struct store_filter *f,
               const char *cursor, size_t limit, struct store_list *out,
               struct store_err *err),
              (in, f, cursor, limit, out, err))
TIMED_FORWARD(load_offsets,
              (struct store * st, const char *topic, struct store_offset **out,
               size_t *n, struct store_err *err),
              (in, topic, out, n, err))
TIMED_FORWARD(wait_applied,
              (struct store * st, uint64_t *gen, int64_t until_ms),
              (in, gen, until_ms))
#undef TIMED_FORWARD

static struct timed_store *timed_wrap(struct store *in)
{
    struct timed_store *ts = calloc(1, sizeof(*ts));
    if (!ts || !(ts->s.v = malloc(STORE_SAMPLES * sizeof(double)))) {
        fprintf(stderr, "lookup_bench: out of memory\n");
        exit(1);
    }
    ts->in = in;
    ts->ops = (struct store_ops){
        .name = in->ops->name,
        .caps = in->ops->caps,
        .apply = timed_apply,
        .get = timed_get,
        .get_transfer_id = timed_get_transfer_id,
        .count = timed_count,
        .list = timed_list,
        .load_offsets = timed_load_offsets,
        .get_after = in->ops->get_after ? timed_get_after : NULL,
        .wait_applied = in->ops->wait_applied ? timed_wait_applied : NULL,
    };
    ts->base.ops = &ts->ops;
    return ts;
}

static redisContext *connect_or_die(void)
{
    char err[256];
    int failure;
    redisContext *c =
        redis_url_connect(&url, 10000, &failure, err, sizeof(err));
    if (!c) {
        fprintf(stderr, "lookup_bench: redis: %s\n", err);
        exit(1);
    }
    return c;
}

/* ------------------------------------------------------------- entries */

static void entry_key(long i, char cp[32], char addr[80], char q[80],
                      char p[80])
{
    snprintf(cp, 32, "BPNL%012ld", i);
    snprintf(addr, 80, "https://provider-%ld.example.com/api/v1/dsp", i % 977);
    snprintf(q, 80, "%016lx%016lxquery", (unsigned long)i * 2654435761UL,
             (unsigned long)i);
    snprintf(p, 80, "%016lx%016lxpolicy", (unsigned long)i * 40503UL,
             (unsigned long)i);
}

/* A realistic EDR entry of about 600 bytes. */
static int entry_json(long i, char *out, size_t cap)
{
    char token[321];
    for (int k = 0; k < 320; k++)
        token[k] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123"
                   "456789"[(i * 31 + k * 7) % 62];
    token[320] = '\0';
    return snprintf(out, cap,
                    "{\"transferProcessId\":\"tp-%ld\",\"assetId\":\"asset-"
                    "%ld\",\"agreementId\":\"agreement-%ld\",\"endpoint\":"
                    "\"https://provider-%ld.example.com/public\",\"authType\":"
                    "\"bearer\",\"endpointType\":\"https://w3id.org/idsa/v4.1/"
                    "HTTP\",\"authorization\":\"%s\",\"expiresIn\":300}",
                    i, i, i, i % 977, token);
}

/* Fills st with entries 0..n-1 unless it already holds exactly n. */
static int fill(struct store *st, long n)
{
    struct store_err err;
    uint64_t have = 0;
    if (st->ops->count(st, NULL, &have, &err) == STORE_OK &&
        have == (uint64_t)n)
        return 0;
    enum { BATCH = 1000 };
    static char keys[BATCH][4][80], tids[BATCH][32], entries[BATCH][800];
    static struct store_op ops[BATCH];
    double t0 = edr_clock_s();
    for (long base = 0; base < n; base += BATCH) {
        size_t m = 0;
        for (long i = base; i < n && i < base + BATCH; i++, m++) {
            entry_key(i, keys[m][0], keys[m][1], keys[m][2], keys[m][3]);
            snprintf(tids[m], sizeof(tids[m]), "tp-%ld", i);
            int len = entry_json(i, entries[m], sizeof(entries[m]));
            ops[m] = (struct store_op){
                .kind = STORE_OP_PUT,
                .key = {keys[m][0], keys[m][1], keys[m][2], keys[m][3]},
                .transfer_id = tids[m],
                .entry_json = entries[m],
                .entry_len = (size_t)len,
            };
        }
        struct store_batch b = {.ops = ops, .n_ops = m};
        if (st->ops->apply(st, &b, &err) != STORE_OK) {
            fprintf(stderr, "lookup_bench: fill: %s\n", err.msg);
            return -1;
        }
    }
    fprintf(stderr,
            "lookup_bench: filled %s store with %ld entries in %.1f s\n",
            st->ops->name, n, edr_clock_s() - t0);
    return 0;
}

/* -------------------------------------------------------------- floor */

struct floor_server {
    char queue[128];
    atomic_int stop;
    pthread_t tids[MAX_CLIENTS];
    int n;
};

static const char floor_reply[] =
    "{\"id\":\"x\",\"status\":\"ok\",\"result\":{\"transferProcessId\":"
    "\"tp-1\",\"assetId\":\"asset-1\",\"agreementId\":\"agreement-1\","
    "\"endpoint\":\"https://provider-1.example.com/public\",\"authType\":"
    "\"bearer\",\"endpointType\":\"https://w3id.org/idsa/v4.1/HTTP\","
    "\"authorization\":\"AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA"
    "AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA"
    "AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA"
    "AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA"
    "AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA\",\"expiresIn\":300}}";

/* BRPOP, find reply_to by a plain search, LPUSH + EXPIRE pipelined. */
static void *floor_main(void *arg)
{
    struct floor_server *fs = arg;
    redisContext *c = connect_or_die();
    const char *pop[3] = {"BRPOP", fs->queue, "1"};
    while (!atomic_load(&fs->stop)) {
        redisReply *r = redisCommandArgv(c, 3, pop, NULL);
        if (!r)
            break;
        if (r->type == REDIS_REPLY_ARRAY && r->elements == 2) {
            const char *s = r->element[1]->str;
            const char *k = strstr(s, "\"reply_to\":\"");
            if (k) {
                k += 12;
                const char *e = strchr(k, '"');
                size_t klen = e ? (size_t)(e - k) : 0;
                const char *push[3] = {"LPUSH", k, floor_reply};
                size_t push_len[3] = {5, klen, sizeof(floor_reply) - 1};
                const char *exp[3] = {"EXPIRE", k, "60"};
                size_t exp_len[3] = {6, klen, 2};
                redisAppendCommandArgv(c, 3, push, push_len);
                redisAppendCommandArgv(c, 3, exp, exp_len);
                for (int i = 0; i < 2; i++) {
                    redisReply *x = NULL;
                    if (redisGetReply(c, (void **)&x) == REDIS_OK && x)
                        freeReplyObject(x);
                }
            }
        }
        freeReplyObject(r);
    }
    redisFree(c);
    return NULL;
}

static void floor_start(struct floor_server *fs, int n)
{
    snprintf(fs->queue, sizeof(fs->queue), "bench-floor-%s:requests", run_id);
    atomic_store(&fs->stop, 0);
    fs->n = n;
    for (int i = 0; i < n; i++)
        pthread_create(&fs->tids[i], NULL, floor_main, fs);
}

static void floor_stop(struct floor_server *fs)
{
    atomic_store(&fs->stop, 1);
    for (int i = 0; i < fs->n; i++)
        pthread_join(fs->tids[i], NULL);
}

/* ------------------------------------------------------------ applier */

/* What a client published: key `key` now has transfer id tid. */
#define RYW_PARTS 4
#define RYW_QUEUE 64
struct publish {
    long key;
    char tid[48];
};

/* Stands in for Kafka and the ingest loop of one store: a publish gets
 * its (partition, offset) at once; the applier thread applies what was
 * published, in order, in batches with their offsets. */
struct applier {
    struct store *st;
    int part_base; /* its partitions: part_base .. + RYW_PARTS - 1 */
    int report;    /* positions_applied after each batch, as ingest */
    pthread_mutex_t lock;
    pthread_cond_t cond;
    struct publish q[RYW_QUEUE];
    size_t n_q;
    int64_t next[RYW_PARTS]; /* next offset handed out per partition */
    int stop;
    pthread_t tid;
    long failed;
    struct samples as; /* apply() durations: what the commit costs */
};

/* Queues a publish of key (partition chosen by the caller); returns its
 * offset. Waits while the queue is full. */
static int64_t applier_publish(struct applier *ap, int part, long key,
                               const char *tid)
{
    pthread_mutex_lock(&ap->lock);
    while (ap->n_q == RYW_QUEUE)
        pthread_cond_wait(&ap->cond, &ap->lock);
    int64_t off = ap->next[part]++;
    ap->q[ap->n_q].key = key;
    snprintf(ap->q[ap->n_q].tid, sizeof(ap->q[0].tid), "%s", tid);
    ap->n_q++;
    pthread_cond_broadcast(&ap->cond);
    pthread_mutex_unlock(&ap->lock);
    return off;
}

static void *applier_main(void *arg)
{
    struct applier *ap = arg;
    static __thread char keys[RYW_QUEUE][4][80], entries[RYW_QUEUE][800];
    struct publish batch[RYW_QUEUE];
    struct store_op ops[RYW_QUEUE];
    for (;;) {
        pthread_mutex_lock(&ap->lock);
        while (ap->n_q == 0 && !ap->stop)
            pthread_cond_wait(&ap->cond, &ap->lock);
        if (ap->n_q == 0 && ap->stop) {
            pthread_mutex_unlock(&ap->lock);
            break;
        }
        size_t n = ap->n_q;
        memcpy(batch, ap->q, n * sizeof(batch[0]));
        /* the offsets handed out so far are exactly those queued */
        struct store_offset offs[RYW_PARTS];
        size_t n_offs = 0;
        for (int p = 0; p < RYW_PARTS; p++)
            if (ap->next[p] > 0)
                offs[n_offs++] =
                    (struct store_offset){ap->part_base + p, ap->next[p], -1};
        ap->n_q = 0;
        pthread_cond_broadcast(&ap->cond);
        pthread_mutex_unlock(&ap->lock);
        for (size_t i = 0; i < n; i++) {
            entry_key(batch[i].key, keys[i][0], keys[i][1], keys[i][2],
                      keys[i][3]);
            int len = snprintf(entries[i], sizeof(entries[i]),
                               "{\"transferProcessId\":\"%s\",\"assetId\":"
                               "\"asset-%ld\",\"expiresIn\":300}",
                               batch[i].tid, batch[i].key);
            ops[i] = (struct store_op){
                .kind = STORE_OP_PUT,
                .key = {keys[i][0], keys[i][1], keys[i][2], keys[i][3]},
                .transfer_id = batch[i].tid,
                .entry_json = entries[i],
                .entry_len = (size_t)len,
            };
        }
        struct store_batch b = {.ops = ops,
                                .n_ops = n,
                                .topic = bench_topic,
                                .offsets = offs,
                                .n_offsets = n_offs};
        struct store_err err;
        double t0 = edr_clock_s();
        int rc = ap->st->ops->apply(ap->st, &b, &err);
        sample(&ap->as, t0);
        if (rc != STORE_OK) {
            fprintf(stderr, "lookup_bench: applier: %s\n", err.msg);
            ap->failed++;
            continue;
        }
        if (ap->report)
            positions_applied(offs, n_offs);
    }
    return NULL;
}

static void applier_start(struct applier *ap, struct store *st, int part_base,
                          int report)
{
    memset(ap, 0, sizeof(*ap));
    ap->st = st;
    ap->part_base = part_base;
    ap->report = report;
    if (!(ap->as.v = malloc(STORE_SAMPLES * sizeof(double)))) {
        fprintf(stderr, "lookup_bench: out of memory\n");
        exit(1);
    }
    pthread_mutex_init(&ap->lock, NULL);
    pthread_cond_init(&ap->cond, NULL);
    pthread_create(&ap->tid, NULL, applier_main, ap);
}

static void applier_stop(struct applier *ap)
{
    pthread_mutex_lock(&ap->lock);
    ap->stop = 1;
    pthread_cond_broadcast(&ap->cond);
    pthread_mutex_unlock(&ap->lock);
    pthread_join(ap->tid, NULL);
}

/* ------------------------------------------------------------- clients */

struct client {
    pthread_t tid;
    int index;
    const char *queue;
    struct applier *ap; /* read-your-writes rows: publish first */
    atomic_int *go;     /* 1: warm up, 2: measure, 3: stop */
    double *lat;        /* round trips in seconds */
    size_t n_lat, cap_lat;
    long done, failed;
};

static void *client_main(void *arg)
{
    struct client *cl = arg;
    redisContext *c = connect_or_die();
    char reply_to[128], req[1024], id[32];
    unsigned seed = (unsigned)(cl->index * 7919 + 17);
    /* v2: a reply_to must begin with <prefix>:reply:, the queue's prefix */
    size_t plen = strlen(cl->queue) - strlen(":requests");
    snprintf(reply_to, sizeof(reply_to), "%.*s:reply:%d", (int)plen, cl->queue,
             cl->index);
    while (atomic_load(cl->go) == 0)
        usleep(100);
    for (long n = 0;; n++) {
        int phase = atomic_load(cl->go);
        if (phase == 3)
            break;
        char cp[32], addr[80], q[80], p[80], bound[96] = "", tid[48] = "";
        long i = (long)(rand_r(&seed) % (unsigned)n_entries);
        if (cl->ap) /* keys of its own: no other client's publish hides */
            i = i - i % MAX_CLIENTS + cl->index;
        if (i >= n_entries)
            i = cl->index % n_entries;
        entry_key(i, cp, addr, q, p);
        snprintf(id, sizeof(id), "%d-%ld", cl->index, n);
        double t0 = edr_clock_s();
        if (cl->ap) {
            /* publish, then look up with the position it got */
            int part = cl->index % RYW_PARTS;
            snprintf(tid, sizeof(tid), "tp-ryw-%d-%ld", cl->index, n);
            int64_t off = applier_publish(cl->ap, part, i, tid);
            snprintf(bound, sizeof(bound), ",\"min_positions\":{\"%d\":%lld}",
                     cl->ap->part_base + part, (long long)off);
        }
        int len = snprintf(req, sizeof(req),
                           "{\"id\":\"%s\",\"reply_to\":\"%s\",\"op\":"
                           "\"get_connection\",\"args\":{\"counter_party_id\":"
                           "\"%s\",\"counter_party_address\":\"%s\","
                           "\"query_checksum\":\"%s\",\"policy_checksum\":"
                           "\"%s\"%s}}",
                           id, reply_to, cp, addr, q, p, bound);
        const char *push[3] = {"LPUSH", cl->queue, req};
        size_t push_len[3] = {5, strlen(cl->queue), (size_t)len};
        const char *pop[3] = {"BLPOP", reply_to, "5"};
        redisAppendCommandArgv(c, 3, push, push_len);
        redisAppendCommandArgv(c, 3, pop, NULL);
        redisReply *r1 = NULL, *r2 = NULL;
        int ok = redisGetReply(c, (void **)&r1) == REDIS_OK &&
                 redisGetReply(c, (void **)&r2) == REDIS_OK && r2 &&
                 r2->type == REDIS_REPLY_ARRAY && r2->elements == 2 &&
                 strstr(r2->element[1]->str, "\"status\":\"ok\"") &&
                 (!tid[0] || strstr(r2->element[1]->str, tid));
        double dt = edr_clock_s() - t0;
        if (r1)
            freeReplyObject(r1);
        if (r2)
            freeReplyObject(r2);
        if (!ok) {
            cl->failed++;
            if (c->err)
                break;
            continue;
        }
        if (phase != 2)
            continue;
        cl->done++;
        if (cl->n_lat == cl->cap_lat) {
            cl->cap_lat = cl->cap_lat ? cl->cap_lat * 2 : 65536;
            cl->lat = realloc(cl->lat, cl->cap_lat * sizeof(double));
        }
        cl->lat[cl->n_lat++] = dt;
    }
    redisFree(c);
    return NULL;
}

struct result {
    double rate;
    double p50, p99, p999; /* microseconds */
    double store_p50;      /* microseconds in the store's read, or 0 */
    double apply_p50;      /* +ryw: microseconds per applier batch */
    long failed;
};

static int cmp_double(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return x < y ? -1 : x > y;
}

static double pct(const double *v, size_t n, double p)
{
    if (n == 0)
        return 0;
    size_t i = (size_t)(p * (double)(n - 1) + 0.5);
    return v[i] * 1e6;
}

/* n_clients threads against queue for `seconds` (after a short warm-up);
 * with ap, read-your-writes lookups; ss, when given, times the store. */
static struct result drive(const char *queue, int n_clients, struct applier *ap,
                           struct samples *ss)
{
    struct client cls[MAX_CLIENTS];
    atomic_int go = 0;
    struct result res = {0};
    memset(cls, 0, sizeof(cls));
    for (int i = 0; i < n_clients; i++) {
        cls[i].index = i;
        cls[i].queue = queue;
        cls[i].go = &go;
        cls[i].ap = ap;
        pthread_create(&cls[i].tid, NULL, client_main, &cls[i]);
    }
    edr_sleep_ms(200); /* connections up */
    atomic_store(&go, 1);
    edr_sleep_ms(300); /* warm-up, not recorded */
    double t0 = edr_clock_s();
    if (ss) {
        atomic_store(&ss->n, 0);
        atomic_store(&ss->on, 1);
    }
    if (ap) {
        atomic_store(&ap->as.n, 0);
        atomic_store(&ap->as.on, 1);
    }
    atomic_store(&go, 2);
    edr_sleep_ms((unsigned)(seconds * 1000));
    atomic_store(&go, 3);
    if (ss) {
        atomic_store(&ss->on, 0);
        size_t n = atomic_load(&ss->n);
        if (n > STORE_SAMPLES)
            n = STORE_SAMPLES;
        qsort(ss->v, n, sizeof(double), cmp_double);
        res.store_p50 = pct(ss->v, n, 0.50);
    }
    if (ap) {
        atomic_store(&ap->as.on, 0);
        size_t n = atomic_load(&ap->as.n);
        if (n > STORE_SAMPLES)
            n = STORE_SAMPLES;
        qsort(ap->as.v, n, sizeof(double), cmp_double);
        res.apply_p50 = pct(ap->as.v, n, 0.50);
    }
    double elapsed = edr_clock_s() - t0;
    /* requests begun in the window and finished just after it count: at
     * most one per client */
    long done = 0;
    size_t total = 0;
    for (int i = 0; i < n_clients; i++) {
        pthread_join(cls[i].tid, NULL);
        done += cls[i].done;
        total += cls[i].n_lat;
        res.failed += cls[i].failed;
    }
    double *all = malloc((total ? total : 1) * sizeof(double));
    size_t k = 0;
    for (int i = 0; i < n_clients; i++) {
        memcpy(all + k, cls[i].lat, cls[i].n_lat * sizeof(double));
        k += cls[i].n_lat;
        free(cls[i].lat);
    }
    qsort(all, k, sizeof(double), cmp_double);
    res.rate = (double)done / elapsed;
    res.p50 = pct(all, k, 0.50);
    res.p99 = pct(all, k, 0.99);
    res.p999 = pct(all, k, 0.999);
    if (quantiles_out) {
        fprintf(quantiles_out, "%s %d %d", row_name, n_clients, row_round);
        for (int q = 1; q <= 99; q++)
            fprintf(quantiles_out, " %.1f", pct(all, k, q / 100.0));
        fprintf(quantiles_out, " %.1f %.1f\n", pct(all, k, 0.995),
                pct(all, k, 0.999));
    }
    free(all);
    return res;
}

static const int client_counts[] = {1, 8, 32};
#define N_COUNTS 3

/* The --verbose rows (bench/suite_report.py parses them: keep the seven
 * columns). */
static void print_row(const char *what, int clients, const struct result *r)
{
    printf("%-9s %7d %11.0f %9.0f %9.0f %9.0f %7ld\n", what, clients, r->rate,
           r->p50, r->p99, r->p999, r->failed);
    fflush(stdout);
}

/* The medians table: store_us added ("-" for the floor). */
static void print_median_row(const char *what, int clients,
                             const struct result *r, int has_store)
{
    printf("%-12s %7d %11.0f %9.0f %9.0f %9.0f %7ld", what, clients, r->rate,
           r->p50, r->p99, r->p999, r->failed);
    if (has_store)
        printf(" %9.0f\n", r->store_p50);
    else
        printf(" %9s\n", "-");
}

/* Read-your-writes rows run at the first N_RYW client counts (1, 8). */
#define N_RYW 2

/* One responder under test: the floor or the worker over a store. */
struct target {
    const char *name;
    char ryw_name[32];
    char queue[128];
    char prefix[96];
    struct config cfg; /* the server keeps a pointer to it */
    struct timed_store *ts;
    struct applier ap;
    struct rpc_server *srv;
    struct result res[N_COUNTS][MAX_ROUNDS];
    struct result ryw[N_RYW][MAX_ROUNDS];
};

static int target_start(struct target *t, struct store *st)
{
    char err[256];
    memset(&t->cfg, 0, sizeof(t->cfg));
    snprintf(t->prefix, sizeof(t->prefix), "bench-%s-%s", st->ops->name,
             run_id);
    snprintf(t->queue, sizeof(t->queue), "%s:requests", t->prefix);
    t->cfg.redis_url = (char *)redis_url;
    t->cfg.rpc_prefix = t->prefix;
    t->cfg.worker_id = (char *)"lookup-bench";
    t->cfg.rpc_threads = rpc_threads;
    t->cfg.topic = bench_topic;
    t->name = st->ops->name;
    snprintf(t->ryw_name, sizeof(t->ryw_name), "%s+ryw", t->name);
    t->ts = timed_wrap(st);
    /* memory: partitions 0.., reported like ingest does; postgres:
     * partitions 100.., never reported (another worker's, as far as this
     * process knows), so positions are looked up in the offsets table */
    int shared = st->ops->caps.shared;
    applier_start(&t->ap, st, shared ? 100 : 0, !shared);
    t->srv = rpc_server_start(&t->cfg, &t->ts->base, err, sizeof(err));
    if (!t->srv) {
        fprintf(stderr, "lookup_bench: %s\n", err);
        return -1;
    }
    for (int i = 0; i < 100 && !rpc_server_connected(t->srv); i++)
        edr_sleep_ms(50);
    return 0;
}

static int cmp_result_rate(const void *a, const void *b)
{
    const struct result *x = a, *y = b;
    return x->rate < y->rate ? -1 : x->rate > y->rate;
}

/* Median of each figure over the rounds (taken one by one). */
static struct result median(const struct result *r, int n)
{
    struct result tmp[MAX_ROUNDS], out;
    double v[MAX_ROUNDS];
    memcpy(tmp, r, (size_t)n * sizeof(*r));
    qsort(tmp, (size_t)n, sizeof(*tmp), cmp_result_rate);
    out = tmp[n / 2];
    for (int i = 0; i < n; i++)
        v[i] = r[i].p50;
    qsort(v, (size_t)n, sizeof(double), cmp_double);
    out.p50 = v[n / 2];
    for (int i = 0; i < n; i++)
        v[i] = r[i].p99;
    qsort(v, (size_t)n, sizeof(double), cmp_double);
    out.p99 = v[n / 2];
    for (int i = 0; i < n; i++)
        v[i] = r[i].p999;
    qsort(v, (size_t)n, sizeof(double), cmp_double);
    out.p999 = v[n / 2];
    for (int i = 0; i < n; i++)
        v[i] = r[i].store_p50;
    qsort(v, (size_t)n, sizeof(double), cmp_double);
    out.store_p50 = v[n / 2];
    for (int i = 0; i < n; i++)
        v[i] = r[i].apply_p50;
    qsort(v, (size_t)n, sizeof(double), cmp_double);
    out.apply_p50 = v[n / 2];
    out.failed = 0;
    for (int i = 0; i < n; i++)
        out.failed += r[i].failed;
    return out;
}

static void print_ratios(const struct target *s, const struct target *f)
{
    struct result sm[N_COUNTS], fm[N_COUNTS];
    for (int i = 0; i < N_COUNTS; i++) {
        sm[i] = median(s->res[i], rounds);
        fm[i] = median(f->res[i], rounds);
    }
    printf("%s vs floor: p50 %.2fx (target <= 1.15; postgres, issue 16: "
           "<= 1.3), p99 %.2fx (<= 1.5), throughput 1: %.0f%%, 8: %.0f%%, "
           "32: %.0f%% (>= 90%% at 8 and 32)\n",
           s->name, sm[0].p50 / fm[0].p50, sm[0].p99 / fm[0].p99,
           100 * sm[0].rate / fm[0].rate, 100 * sm[1].rate / fm[1].rate,
           100 * sm[2].rate / fm[2].rate);
    if (!with_ryw)
        return;
    struct result rm[N_RYW];
    for (int i = 0; i < N_RYW; i++)
        rm[i] = median(s->ryw[i], rounds);
    printf("%s vs plain: p50 %.2fx, p99 %.2fx at 1 client; p50 %.2fx, "
           "throughput %.0f%% at 8; vs floor: p50 %.2fx at 1, throughput "
           "%.0f%% at 8; the applier's batch (apply, commit) p50 %.0f us at "
           "1, %.0f us at 8\n",
           s->ryw_name, rm[0].p50 / sm[0].p50, rm[0].p99 / sm[0].p99,
           rm[1].p50 / sm[1].p50, 100 * rm[1].rate / sm[1].rate,
           rm[0].p50 / fm[0].p50, 100 * rm[1].rate / fm[1].rate,
           rm[0].apply_p50, rm[1].apply_p50);
}

int main(int argc, char **argv)
{
    const char *stores = "memory,postgres";
    const char *pg_table = "edr_bench_lookup";
    int pg_drop = 0;
    char err[256];
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "--entries") && i + 1 < argc)
            n_entries = atol(argv[++i]);
        else if (!strcmp(argv[i], "--seconds") && i + 1 < argc)
            seconds = atof(argv[++i]);
        else if (!strcmp(argv[i], "--threads") && i + 1 < argc)
            rpc_threads = atoi(argv[++i]);
        else if (!strcmp(argv[i], "--stores") && i + 1 < argc)
            stores = argv[++i];
        else if (!strcmp(argv[i], "--pg-table") && i + 1 < argc)
            pg_table = argv[++i];
        else if (!strcmp(argv[i], "--rounds") && i + 1 < argc)
            rounds = atoi(argv[++i]);
        else if (!strcmp(argv[i], "--verbose"))
            verbose = 1;
        else if (!strcmp(argv[i], "--quantiles") && i + 1 < argc) {
            quantiles_out = fopen(argv[++i], "w");
            if (!quantiles_out) {
                perror("lookup_bench: --quantiles");
                return 2;
            }
        } else if (!strcmp(argv[i], "--pg-drop"))
            pg_drop = 1;
        else if (!strcmp(argv[i], "--no-ryw"))
            with_ryw = 0;
        else {
            fprintf(stderr, "usage: lookup_bench [--entries N] [--seconds S] "
                            "[--threads T] [--stores memory,postgres] "
                            "[--rounds R] [--verbose] [--pg-table NAME] "
                            "[--pg-drop] [--quantiles FILE] [--no-ryw]\n");
            return 2;
        }
    }
    if (n_entries < 1 || seconds <= 0 || rounds < 1 || rounds > MAX_ROUNDS ||
        rpc_threads < 1 || rpc_threads > MAX_CLIENTS) {
        fprintf(stderr, "lookup_bench: bad argument\n");
        return 2;
    }
    signal(SIGPIPE, SIG_IGN);
    log_init("lookup-bench", EDR_LOG_WARN, 0);
    redis_url = getenv("EDR_REDIS_URL");
    if (!redis_url) {
        fprintf(stderr, "lookup_bench: set EDR_REDIS_URL (eval \"$(scripts/"
                        "services.sh env)\")\n");
        return 2;
    }
    if (redis_url_parse(redis_url, &url, err, sizeof(err))) {
        fprintf(stderr, "lookup_bench: %s\n", err);
        return 2;
    }
    snprintf(run_id, sizeof(run_id), "%ld-%ld", (long)getpid(),
             (long)time(NULL));
    /* the offsets the appliers write: this run's own topic name */
    snprintf(bench_topic, sizeof(bench_topic), "lookup-bench-%s", run_id);

    static struct target targets[3];
    int n_targets = 0;
    struct store *mem = NULL, *pg = NULL;
    struct floor_server fs;
    struct store_err serr;
    const char *dsn = getenv("EDR_PG_DSN");

    /* every responder runs for the whole run; an idle one only waits in
     * BRPOP, so rows can interleave and share the same background load */
    targets[n_targets].name = "floor";
    floor_start(&fs, rpc_threads);
    snprintf(targets[n_targets].queue, sizeof(targets[0].queue), "%s",
             fs.queue);
    n_targets++;
    if (strstr(stores, "memory")) {
        mem = mem_store_open(&serr);
        if (!mem || fill(mem, n_entries) ||
            target_start(&targets[n_targets], mem)) {
            fprintf(stderr, "lookup_bench: memory store failed\n");
            return 1;
        }
        n_targets++;
    }
    if (strstr(stores, "postgres")) {
        pg = dsn ? pg_store_open(dsn, pg_table, &serr) : NULL;
        if (!pg)
            fprintf(stderr, "lookup_bench: postgres store: %s\n",
                    dsn ? serr.msg : "EDR_PG_DSN not set");
        else if (fill(pg, n_entries) == 0 &&
                 target_start(&targets[n_targets], pg) == 0)
            n_targets++;
    }

    printf("lookup_bench: get_connection round trips, %ld entries, %d "
           "responder threads, %d rounds of %.1f s per row, redis %s\n",
           n_entries, rpc_threads, rounds, seconds, redis_url);
    printf("%-9s %7s %11s %9s %9s %9s %7s\n", "responder", "clients",
           "lookups/s", "p50_us", "p99_us", "p99.9_us", "failed");
    for (int c = 0; c < N_COUNTS; c++)
        for (int r = 0; r < rounds; r++)
            for (int t = 0; t < n_targets; t++) {
                struct target *tg = &targets[t];
                row_name = tg->name;
                row_round = r;
                tg->res[c][r] = drive(tg->queue, client_counts[c], NULL,
                                      tg->ts ? &tg->ts->s : NULL);
                if (verbose)
                    print_row(tg->name, client_counts[c], &tg->res[c][r]);
                if (!with_ryw || c >= N_RYW || !tg->ts)
                    continue;
                row_name = tg->ryw_name;
                tg->ryw[c][r] =
                    drive(tg->queue, client_counts[c], &tg->ap, &tg->ts->s);
                if (verbose)
                    print_row(tg->ryw_name, client_counts[c], &tg->ryw[c][r]);
            }
    printf("medians over %d rounds (store_us: median time in the store's "
           "read per lookup):\n",
           rounds);
    printf("%-12s %7s %11s %9s %9s %9s %7s %9s\n", "responder", "clients",
           "lookups/s", "p50_us", "p99_us", "p99.9_us", "failed", "store_us");
    for (int t = 0; t < n_targets; t++) {
        for (int c = 0; c < N_COUNTS; c++) {
            struct result m = median(targets[t].res[c], rounds);
            print_median_row(targets[t].name, client_counts[c], &m,
                             targets[t].ts != NULL);
        }
        for (int c = 0; with_ryw && targets[t].ts && c < N_RYW; c++) {
            struct result m = median(targets[t].ryw[c], rounds);
            print_median_row(targets[t].ryw_name, client_counts[c], &m, 1);
        }
    }
    for (int t = 1; t < n_targets; t++)
        print_ratios(&targets[t], &targets[0]);

    floor_stop(&fs);
    for (int t = 1; t < n_targets; t++) {
        rpc_server_stop(targets[t].srv);
        applier_stop(&targets[t].ap);
        if (targets[t].ap.failed)
            fprintf(stderr, "lookup_bench: %s: %ld batches failed\n",
                    targets[t].ryw_name, targets[t].ap.failed);
        free(targets[t].ts->s.v);
        free(targets[t].ap.as.v);
        free(targets[t].ts);
    }
    store_close(mem);
    store_close(pg);
    if (dsn && pg_drop)
        pg_store_drop(dsn, pg_table, &serr);
    redis_url_clear(&url);
    if (quantiles_out)
        fclose(quantiles_out);
    return 0;
}

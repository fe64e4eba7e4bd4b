/* test_rpc_v2.c: the v2 lookup rules of worker/rpc*.c (schemas/README.md
 * §2) in process, against the shared Redis ($EDR_REDIS_URL, a unique
 * prefix per run) and, for the shared-store paths, the shared PostgreSQL
 * ($EDR_PG_DSN, a table per run).
 *
 *   - wait_ms: a get waiting for an entry is answered as soon as it is
 *     applied (memory: woken by positions_applied, no polling), and
 *     not_found when the wait ends; while it waits, the only responder
 *     thread goes on answering others;
 *   - min_positions: answered once the positions are applied, `timeout`
 *     when they are not within wait_ms; a file-store-like state whose
 *     offsets predate this process (store offsets only) counts too;
 *   - bad wait_ms / min_positions: `bad_request`;
 *   - get_by_transfer_id and the count/list filters reach the store;
 *   - the reliable queue: nothing stays in flight once answered, the
 *     heartbeat key and registration, a dead worker's in-flight request
 *     answered by this one, a live one's left alone, a clean stop giving
 *     back a waiting request;
 *   - postgres: min_positions and wait_ms satisfied by writes this
 *     process never applied itself (another worker's), found by polling.
 * The multi-process cases (SIGSTOP then SIGKILL of a worker, two
 * workers on one PostgreSQL table) are in
 * tests/integration/test_lookup_reliable.c. */
#include "base/clock.h"
#include "schemas/reply.h"
#include "stores/pg_store.h"
#include "stores/store.h"
#include "tests/support/cunit_main.h"
#include "worker/config.h"
#include "worker/positions.h"
#include "worker/redis_url.h"
#include "worker/rpc.h"

#include <hiredis/hiredis.h>

#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define TOPIC "rpcv2-topic"

static const char *redis_url;
static redisContext *cli;
static int seq;

struct fixture {
    char prefix[96];
    char queue[128];
    struct store *st;
    struct rpc_server *srv;
    struct config cfg;
};
static struct fixture mem, pg;
static char pg_table[64];

static redisContext *connect_url(const char *url)
{
    struct redis_url u;
    char err[256];
    int failure;
    if (redis_url_parse(url, &u, err, sizeof(err)))
        return NULL;
    redisContext *c = redis_url_connect(&u, 40000, &failure, err, sizeof(err));
    redis_url_clear(&u);
    return c;
}

static long long redis_int(const char *a0, const char *a1, const char *a2)
{
    const char *argv[3] = {a0, a1, a2};
    redisReply *r = redisCommandArgv(cli, a2 ? 3 : 2, argv, NULL);
    long long v = r && r->type == REDIS_REPLY_INTEGER ? r->integer : -99;
    if (r)
        freeReplyObject(r);
    return v;
}

static int push(const char *q, const char *req)
{
    const char *argv[3] = {"LPUSH", q, req};
    redisReply *r = redisCommandArgv(cli, 3, argv, NULL);
    int rc = r && r->type == REDIS_REPLY_INTEGER ? 0 : -1;
    if (r)
        freeReplyObject(r);
    return rc;
}

/* Sends {"id","reply_to","op":op,"args":args} on f's queue; the reply_to
 * in rt (160 bytes). */
static int send_req(const struct fixture *f, const char *op, const char *args,
                    char *rt)
{
    char req[4096];
    snprintf(rt, 160, "%s:reply:v2-%d", f->prefix, ++seq);
    snprintf(req, sizeof(req),
             "{\"id\":\"v2-%d\",\"reply_to\":\"%s\",\"op\":\"%s\","
             "\"args\":%s}",
             seq, rt, op, args);
    return push(f->queue, req);
}

/* Waits up to ms for the reply on rt; 0 with *m decoded, or -1. */
static int recv_reply(const char *rt, int ms, struct reply_msg *m)
{
    char secs[32], err[256];
    snprintf(secs, sizeof(secs), "%d.%03d", ms / 1000, ms % 1000);
    const char *argv[3] = {"BLPOP", rt, secs};
    redisReply *r = redisCommandArgv(cli, 3, argv, NULL);
    int rc = -1;
    if (r && r->type == REDIS_REPLY_ARRAY && r->elements == 2)
        rc = reply_decode(m, r->element[1]->str, r->element[1]->len, err,
                          sizeof(err));
    if (r)
        freeReplyObject(r);
    return rc;
}

static int call(const struct fixture *f, const char *op, const char *args,
                int ms, struct reply_msg *m)
{
    char rt[160];
    if (send_req(f, op, args, rt))
        return -1;
    return recv_reply(rt, ms, m);
}

static int start(struct fixture *f, const char *name, struct store *st,
                 int threads)
{
    snprintf(f->prefix, sizeof(f->prefix), "rpcv2-%s-%ld-%lld", name,
             (long)getpid(), (long long)edr_epoch_ms());
    snprintf(f->queue, sizeof(f->queue), "%s:requests", f->prefix);
    f->st = st;
    memset(&f->cfg, 0, sizeof(f->cfg));
    f->cfg.redis_url = (char *)redis_url;
    f->cfg.rpc_prefix = f->prefix;
    f->cfg.worker_id = (char *)"v2-worker";
    f->cfg.rpc_threads = threads;
    f->cfg.topic = (char *)TOPIC;
    char errstr[256];
    f->srv = rpc_server_start(&f->cfg, st, errstr, sizeof(errstr));
    if (!f->srv) {
        fprintf(stderr, "rpc_server_start: %s\n", errstr);
        return -1;
    }
    for (int i = 0; i < 500 && !rpc_server_connected(f->srv); i++)
        edr_sleep_ms(10);
    /* answering needs the keeper's first pass too: a ping proves both */
    struct reply_msg m;
    if (call(f, "ping", "{}", 5000, &m))
        return -1;
    reply_msg_clear(&m);
    return 0;
}

static void put(struct store *st, const char *party, const char *tid,
                const char *asset, int32_t partition, int64_t next)
{
    struct store_err err;
    char entry[256];
    snprintf(entry, sizeof(entry),
             "{\"transferProcessId\":\"%s\",\"assetId\":\"%s\"}", tid, asset);
    struct store_op op = {.kind = STORE_OP_PUT,
                          .key = {party, "https://a", "q", "p"},
                          .transfer_id = tid,
                          .entry_json = entry,
                          .entry_len = strlen(entry)};
    struct store_offset off = {partition, next, -1};
    struct store_batch b = {.ops = &op,
                            .n_ops = 1,
                            .topic = TOPIC,
                            .offsets = &off,
                            .n_offsets = next >= 0 ? 1 : 0};
    CU_ASSERT_EQUAL(st->ops->apply(st, &b, &err), STORE_OK);
}

static int suite_init(void)
{
    struct store_err err;
    redis_url = test_env("EDR_REDIS_URL");
    if (!redis_url || !(cli = connect_url(redis_url)))
        return -1;
    struct store *st = mem_store_open(&err);
    if (!st)
        return -1;
    /* one responder thread: a waiting lookup must not take it away */
    return start(&mem, "mem", st, 1);
}

static int suite_clean(void)
{
    rpc_server_stop(mem.srv);
    store_close(mem.st);
    return 0;
}

static double since(int64_t t0)
{
    return (double)(edr_clock_ms() - t0);
}

#define GET_ARGS(party, extra)                                                 \
    "{\"counter_party_id\":\"" party "\",\"counter_party_address\":"           \
    "\"https://a\",\"query_checksum\":\"q\",\"policy_checksum\":\"p\"" extra   \
    "}"

/* ---------------------------------------------------------------- waits */

struct later {
    struct store *st;
    const char *party, *tid;
    int32_t partition;
    int64_t next;
    int delay_ms;
    int notify; /* positions_applied as ingest does */
};

static void *apply_later(void *arg)
{
    struct later *l = arg;
    edr_sleep_ms((unsigned)l->delay_ms);
    put(l->st, l->party, l->tid, "asset-late", l->partition, l->next);
    if (l->notify) {
        struct store_offset o = {l->partition, l->next, -1};
        positions_applied(&o, 1);
    }
    return NULL;
}

static void test_wait_found(void)
{
    char rt[160];
    struct reply_msg m;
    pthread_t th;
    struct later l = {mem.st, "BPNLWAIT1", "tp-w1", 0, 1, 400, 1};
    int64_t t0 = edr_clock_ms();
    CU_ASSERT_EQUAL_FATAL(send_req(&mem, "get_connection",
                                   GET_ARGS("BPNLWAIT1", ",\"wait_ms\":20000"),
                                   rt),
                          0);
    pthread_create(&th, NULL, apply_later, &l);
    /* the one responder serves others meanwhile */
    edr_sleep_ms(100);
    int64_t p0 = edr_clock_ms();
    CU_ASSERT_EQUAL_FATAL(call(&mem, "ping", "{}", 3000, &m), 0);
    CU_ASSERT_EQUAL(m.status, REPLY_OK);
    CU_ASSERT_TRUE(since(p0) < 1000);
    reply_msg_clear(&m);

    CU_ASSERT_EQUAL_FATAL(recv_reply(rt, 10000, &m), 0);
    pthread_join(th, NULL);
    double took = since(t0);
    CU_ASSERT_EQUAL(m.status, REPLY_OK);
    CU_ASSERT_PTR_NOT_NULL(strstr(m.result_json, "tp-w1"));
    /* at the apply (400 ms), not at the end of the 20 s wait */
    CU_ASSERT_TRUE(took >= 380 && took < 2500);
    reply_msg_clear(&m);

    /* the transfer-id form too, with an entry already there: at once */
    t0 = edr_clock_ms();
    CU_ASSERT_EQUAL_FATAL(call(&mem, "get_connection_transfer_id",
                               GET_ARGS("BPNLWAIT1", ",\"wait_ms\":20000"),
                               3000, &m),
                          0);
    CU_ASSERT_EQUAL(m.status, REPLY_OK);
    CU_ASSERT_STRING_EQUAL(m.result_json, "\"tp-w1\"");
    CU_ASSERT_TRUE(since(t0) < 1000);
    reply_msg_clear(&m);
}

static void test_wait_not_found(void)
{
    struct reply_msg m;
    int64_t t0 = edr_clock_ms();
    /* an apply of something else wakes it, and it goes on waiting */
    pthread_t th;
    struct later l = {mem.st, "BPNLOTHER", "tp-o", 0, 2, 200, 1};
    pthread_create(&th, NULL, apply_later, &l);
    CU_ASSERT_EQUAL_FATAL(call(&mem, "get_connection_transfer_id",
                               GET_ARGS("BPNLNEVER", ",\"wait_ms\":700"), 5000,
                               &m),
                          0);
    pthread_join(th, NULL);
    double took = since(t0);
    CU_ASSERT_EQUAL(m.status, REPLY_NOT_FOUND);
    CU_ASSERT_STRING_EQUAL(m.result_json, "null");
    CU_ASSERT_TRUE(took >= 690 && took < 3000);
    reply_msg_clear(&m);

    /* wait_ms 0 (and absent): at once */
    t0 = edr_clock_ms();
    CU_ASSERT_EQUAL_FATAL(call(&mem, "get_connection",
                               GET_ARGS("BPNLNEVER", ",\"wait_ms\":0"), 3000,
                               &m),
                          0);
    CU_ASSERT_EQUAL(m.status, REPLY_NOT_FOUND);
    CU_ASSERT_STRING_EQUAL(m.result_json, "{}");
    CU_ASSERT_TRUE(since(t0) < 1000);
    reply_msg_clear(&m);
}

static void test_min_positions(void)
{
    char rt[160];
    struct reply_msg m;
    pthread_t th;
    positions_reset();

    /* never reached: timeout after wait_ms */
    int64_t t0 = edr_clock_ms();
    CU_ASSERT_EQUAL_FATAL(call(&mem, "count",
                               "{\"min_positions\":{\"3\":10},"
                               "\"wait_ms\":500}",
                               5000, &m),
                          0);
    CU_ASSERT_EQUAL(m.status, REPLY_ERROR);
    CU_ASSERT_PTR_NOT_NULL_FATAL(m.code);
    CU_ASSERT_STRING_EQUAL(m.code, "timeout");
    CU_ASSERT_TRUE(since(t0) >= 490);
    reply_msg_clear(&m);

    /* reached during the wait (offset 10 applied = next offset 11) */
    struct later l = {mem.st, "BPNLPOS1", "tp-p1", 3, 11, 300, 1};
    t0 = edr_clock_ms();
    CU_ASSERT_EQUAL_FATAL(
        send_req(&mem, "get_connection",
                 GET_ARGS("BPNLPOS1", ",\"min_positions\":{\"3\":10}"), rt),
        0);
    pthread_create(&th, NULL, apply_later, &l);
    CU_ASSERT_EQUAL_FATAL(recv_reply(rt, 8000, &m), 0);
    pthread_join(th, NULL);
    CU_ASSERT_EQUAL(m.status, REPLY_OK);
    CU_ASSERT_PTR_NOT_NULL(strstr(m.result_json, "tp-p1"));
    CU_ASSERT_TRUE(since(t0) >= 280 && since(t0) < 2500);
    reply_msg_clear(&m);

    /* next offset 11 does not include offset 11 */
    CU_ASSERT_EQUAL_FATAL(call(&mem, "list_connections",
                               "{\"min_positions\":{\"3\":11},"
                               "\"wait_ms\":200}",
                               5000, &m),
                          0);
    CU_ASSERT_PTR_NOT_NULL_FATAL(m.code);
    CU_ASSERT_STRING_EQUAL(m.code, "timeout");
    reply_msg_clear(&m);

    /* the store's own offsets count (a file store restarted: nothing
     * applied by this process yet) */
    put(mem.st, "BPNLPOS2", "tp-p2", "asset-x", 9, 100);
    t0 = edr_clock_ms();
    CU_ASSERT_EQUAL_FATAL(call(&mem, "get_connection_transfer_id",
                               GET_ARGS("BPNLPOS2", ",\"min_positions\":{"
                                                    "\"9\":99,\"3\":10}"),
                               3000, &m),
                          0);
    CU_ASSERT_EQUAL(m.status, REPLY_OK);
    CU_ASSERT_STRING_EQUAL(m.result_json, "\"tp-p2\"");
    CU_ASSERT_TRUE(since(t0) < 1000);
    reply_msg_clear(&m);

    /* the 5 s default when wait_ms is absent */
    t0 = edr_clock_ms();
    CU_ASSERT_EQUAL_FATAL(
        call(&mem, "count", "{\"min_positions\":{\"4\":0}}", 9000, &m), 0);
    CU_ASSERT_PTR_NOT_NULL_FATAL(m.code);
    CU_ASSERT_STRING_EQUAL(m.code, "timeout");
    CU_ASSERT_TRUE(since(t0) >= 4900 && since(t0) < 7000);
    reply_msg_clear(&m);
}

static void test_bad_args(void)
{
    static const char *const cases[][2] = {
        {"get_connection", GET_ARGS("B", ",\"wait_ms\":30001")},
        {"get_connection", GET_ARGS("B", ",\"wait_ms\":-1")},
        {"count", "{\"min_positions\":{\"x\":1}}"},
        {"count", "{\"min_positions\":{\"1\":-1}}"},
        {"list_connections", "{\"min_positions\":[]}"},
        {"get_by_transfer_id", "{}"},
        {"get_by_transfer_id", "{\"transfer_process_id\":7}"},
        {"count", "{\"asset_id\":[]}"},
    };
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        struct reply_msg m;
        CU_ASSERT_EQUAL_FATAL(call(&mem, cases[i][0], cases[i][1], 3000, &m),
                              0);
        CU_ASSERT_EQUAL(m.status, REPLY_ERROR);
        CU_ASSERT_PTR_NOT_NULL_FATAL(m.code);
        CU_ASSERT_STRING_EQUAL(m.code, "bad_request");
        reply_msg_clear(&m);
    }
}

/* get_by_transfer_id and the filters go to the store as given: the reply
 * is what the store answers for the same call (a backend still without
 * them answers internal / bad_request; with them, the entries). */
static void test_store_passthrough(void)
{
    struct reply_msg m;
    struct store *st = mem.st;
    put(st, "BPNLPASS", "tp-pass", "asset-pass-1", 0, -1);

    CU_ASSERT_EQUAL_FATAL(call(&mem, "get_by_transfer_id",
                               "{\"transfer_process_id\":\"tp-pass\"}", 3000,
                               &m),
                          0);
    if (!st->ops->get_by_transfer_id) {
        CU_ASSERT_EQUAL(m.status, REPLY_ERROR);
        CU_ASSERT_STRING_EQUAL(m.code, "internal");
        CU_ASSERT_PTR_NOT_NULL(strstr(m.error, "not supported"));
    } else {
        CU_ASSERT_EQUAL(m.status, REPLY_OK);
        CU_ASSERT_PTR_NOT_NULL(
            strstr(m.result_json, "\"counter_party_id\":\"BPNLPASS\""));
        CU_ASSERT_PTR_NOT_NULL(strstr(m.result_json, "\"edr\":{"));
    }
    reply_msg_clear(&m);

    struct store_filter f = {.asset_id_prefix = "asset-pass-"};
    uint64_t n = 0;
    struct store_err err;
    int rc = st->ops->count(st, &f, &n, &err);
    CU_ASSERT_EQUAL_FATAL(
        call(&mem, "count", "{\"asset_id_prefix\":\"asset-pass-\"}", 3000, &m),
        0);
    if (rc == STORE_OK) {
        char want[32];
        snprintf(want, sizeof(want), "%llu", (unsigned long long)n);
        CU_ASSERT_EQUAL(n, 1);
        CU_ASSERT_STRING_EQUAL(m.result_json, want);
    } else {
        CU_ASSERT_EQUAL(m.status, REPLY_ERROR);
        CU_ASSERT_STRING_EQUAL(m.code, "bad_request");
    }
    reply_msg_clear(&m);

    /* list items carry assetId when the store gives one (a party-only
     * filter every store has) */
    struct store_list l;
    memset(&l, 0, sizeof(l));
    CU_ASSERT_EQUAL_FATAL(
        st->ops->list(st, STORE_FILTER_PARTY("BPNLPASS"), NULL, 10, &l, &err),
        STORE_OK);
    CU_ASSERT_EQUAL_FATAL(l.n_items, 1);
    CU_ASSERT_EQUAL_FATAL(call(&mem, "list_connections",
                               "{\"counter_party_id_substring\":\"BPNLPASS\"}",
                               3000, &m),
                          0);
    CU_ASSERT_EQUAL(m.status, REPLY_OK);
    if (l.items[0].asset_id) {
        CU_ASSERT_PTR_NOT_NULL(
            strstr(m.result_json, "\"assetId\":\"asset-pass-1\""));
    } else {
        CU_ASSERT_PTR_NULL(strstr(m.result_json, "assetId"));
    }
    store_list_clear(&l);
    reply_msg_clear(&m);
}

/* ------------------------------------------------------- reliable queue */

static void test_inflight_cleared(void)
{
    char inflight[200], hb[200], workers[200];
    snprintf(inflight, sizeof(inflight), "%s:inflight:v2-worker", mem.prefix);
    snprintf(hb, sizeof(hb), "%s:worker:v2-worker", mem.prefix);
    snprintf(workers, sizeof(workers), "%s:workers", mem.prefix);
    struct reply_msg m;
    for (int i = 0; i < 5; i++) {
        CU_ASSERT_EQUAL_FATAL(call(&mem, "ping", "{}", 3000, &m), 0);
        reply_msg_clear(&m);
    }
    /* a malformed one and one past its deadline leave nothing either */
    char rt[160];
    CU_ASSERT_EQUAL(send_req(&mem, "nope", "{}", rt), 0);
    CU_ASSERT_EQUAL_FATAL(recv_reply(rt, 3000, &m), 0);
    reply_msg_clear(&m);
    char req[300];
    snprintf(req, sizeof(req),
             "{\"id\":\"old\",\"reply_to\":\"%s:reply:old\",\"op\":\"ping\","
             "\"deadline_ms\":1}",
             mem.prefix);
    CU_ASSERT_EQUAL(push(mem.queue, req), 0);
    for (int i = 0; i < 300 && redis_int("LLEN", mem.queue, NULL) != 0; i++)
        edr_sleep_ms(10);
    CU_ASSERT_EQUAL_FATAL(call(&mem, "ping", "{}", 3000, &m), 0);
    reply_msg_clear(&m);
    CU_ASSERT_EQUAL(redis_int("LLEN", inflight, NULL), 0);
    long long pttl = redis_int("PTTL", hb, NULL);
    CU_ASSERT_TRUE(pttl > 0 && pttl <= 5000);
    CU_ASSERT_EQUAL(redis_int("SISMEMBER", workers, "v2-worker"), 1);
}

static void test_takeover(void)
{
    char inflight[200], workers[200], hb[200], rt[160], req[400];
    struct reply_msg m;
    snprintf(workers, sizeof(workers), "%s:workers", mem.prefix);

    /* a live worker (heartbeat present) keeps its in-flight request */
    snprintf(inflight, sizeof(inflight), "%s:inflight:alive", mem.prefix);
    snprintf(hb, sizeof(hb), "%s:worker:alive", mem.prefix);
    snprintf(rt, sizeof(rt), "%s:reply:alive-1", mem.prefix);
    snprintf(req, sizeof(req),
             "{\"id\":\"alive-1\",\"reply_to\":\"%s\",\"op\":\"ping\"}", rt);
    CU_ASSERT_EQUAL(redis_int("SADD", workers, "alive"), 1);
    {
        const char *set[5] = {"SET", hb, "1", "PX", "20000"};
        redisReply *r = redisCommandArgv(cli, 5, set, NULL);
        if (r)
            freeReplyObject(r);
    }
    CU_ASSERT_EQUAL(redis_int("RPUSH", inflight, req), 1);

    /* a dead one (registered, no heartbeat): two requests taken over */
    char dinflight[200], drt[2][160], dreq[2][400];
    snprintf(dinflight, sizeof(dinflight), "%s:inflight:ghost", mem.prefix);
    CU_ASSERT_EQUAL(redis_int("SADD", workers, "ghost"), 1);
    for (int i = 0; i < 2; i++) {
        snprintf(drt[i], sizeof(drt[i]), "%s:reply:ghost-%d", mem.prefix, i);
        snprintf(
            dreq[i], sizeof(dreq[i]),
            "{\"id\":\"ghost-%d\",\"reply_to\":\"%s\",\"op\":\"get_"
            "connection_transfer_id\",\"args\":" GET_ARGS("BPNLWAIT1", "") "}",
            i, drt[i]);
        CU_ASSERT_EQUAL(redis_int("LPUSH", dinflight, dreq[i]), i + 1);
    }
    int64_t t0 = edr_clock_ms();
    for (int i = 0; i < 2; i++) {
        CU_ASSERT_EQUAL_FATAL(recv_reply(drt[i], 15000, &m), 0);
        CU_ASSERT_EQUAL(m.status, REPLY_OK);
        CU_ASSERT_STRING_EQUAL(m.result_json, "\"tp-w1\"");
        reply_msg_clear(&m);
    }
    /* one reap period (2 s) and change */
    CU_ASSERT_TRUE(since(t0) < 4000);
    CU_ASSERT_EQUAL(redis_int("LLEN", dinflight, NULL), 0);
    CU_ASSERT_EQUAL(redis_int("SISMEMBER", workers, "ghost"), 0);
    /* the live one's request is untouched, and it stays registered */
    CU_ASSERT_EQUAL(redis_int("LLEN", inflight, NULL), 1);
    CU_ASSERT_EQUAL(redis_int("LLEN", rt, NULL), 0);
    CU_ASSERT_EQUAL(redis_int("SISMEMBER", workers, "alive"), 1);

    struct rpc_server_stats s;
    rpc_server_get_stats(mem.srv, &s);
    CU_ASSERT_EQUAL(s.requeued, 2);

    /* once its heartbeat is gone it is taken over too */
    CU_ASSERT_EQUAL(redis_int("DEL", hb, NULL), 1);
    CU_ASSERT_EQUAL_FATAL(recv_reply(rt, 15000, &m), 0);
    CU_ASSERT_EQUAL(m.status, REPLY_OK);
    reply_msg_clear(&m);
}

/* A clean stop gives a waiting request back to the queue, unanswered. */
static void test_stop_requeues(void)
{
    struct fixture f;
    struct store_err err;
    struct store *st = mem_store_open(&err);
    CU_ASSERT_PTR_NOT_NULL_FATAL(st);
    CU_ASSERT_EQUAL_FATAL(start(&f, "stop", st, 2), 0);
    char rt[160], inflight[200];
    snprintf(inflight, sizeof(inflight), "%s:inflight:v2-worker", f.prefix);
    CU_ASSERT_EQUAL_FATAL(send_req(&f, "get_connection",
                                   GET_ARGS("BPNLNONE", ",\"wait_ms\":30000"),
                                   rt),
                          0);
    for (int i = 0; i < 300 && redis_int("LLEN", inflight, NULL) != 1; i++)
        edr_sleep_ms(10);
    CU_ASSERT_EQUAL(redis_int("LLEN", inflight, NULL), 1);
    int64_t t0 = edr_clock_ms();
    rpc_server_stop(f.srv);
    CU_ASSERT_TRUE(since(t0) < 3000); /* the waiter did not hold it up */
    CU_ASSERT_EQUAL(redis_int("LLEN", inflight, NULL), 0);
    CU_ASSERT_EQUAL(redis_int("LLEN", f.queue, NULL), 1);
    CU_ASSERT_EQUAL(redis_int("LLEN", rt, NULL), 0);
    char hb[200];
    snprintf(hb, sizeof(hb), "%s:worker:v2-worker", f.prefix);
    CU_ASSERT_EQUAL(redis_int("EXISTS", hb, NULL), 0);
    redis_int("DEL", f.queue, NULL);
    store_close(st);
}

/* A file store restarted: its state (and offsets) predate this process,
 * which has applied nothing yet; min_positions inside them are reached,
 * past them wait for ingest. */
static void test_file_restart(void)
{
    struct store_err err;
    char path[128];
    snprintf(path, sizeof(path), "/tmp/edr-rpcv2-%ld/store.db", (long)getpid());
    struct store *st = file_store_open(path, &err);
    CU_ASSERT_PTR_NOT_NULL_FATAL(st);
    put(st, "BPNLFILE", "tp-file", "asset-f", 5, 50);
    store_close(st);
    st = file_store_open(path, &err); /* the restart */
    CU_ASSERT_PTR_NOT_NULL_FATAL(st);
    positions_reset();
    struct fixture f;
    CU_ASSERT_EQUAL_FATAL(start(&f, "file", st, 1), 0);
    struct reply_msg m;
    int64_t t0 = edr_clock_ms();
    CU_ASSERT_EQUAL_FATAL(call(&f, "get_connection_transfer_id",
                               GET_ARGS("BPNLFILE", ",\"min_positions\":{"
                                                    "\"5\":49}"),
                               3000, &m),
                          0);
    CU_ASSERT_EQUAL(m.status, REPLY_OK);
    CU_ASSERT_STRING_EQUAL(m.result_json, "\"tp-file\"");
    CU_ASSERT_TRUE(since(t0) < 1000);
    reply_msg_clear(&m);
    CU_ASSERT_EQUAL_FATAL(call(&f, "count",
                               "{\"min_positions\":{\"5\":50},\"wait_ms\":300}",
                               3000, &m),
                          0);
    CU_ASSERT_PTR_NOT_NULL_FATAL(m.code);
    CU_ASSERT_STRING_EQUAL(m.code, "timeout");
    reply_msg_clear(&m);
    rpc_server_stop(f.srv);
    store_close(st);
    unlink(path);
    char dir[128];
    snprintf(dir, sizeof(dir), "/tmp/edr-rpcv2-%ld", (long)getpid());
    rmdir(dir);
}

/* ------------------------------------------------------------- postgres */

static int pg_init(void)
{
    struct store_err err;
    const char *dsn = test_env("EDR_PG_DSN");
    redis_url = test_env("EDR_REDIS_URL");
    if (!dsn || !redis_url || (!cli && !(cli = connect_url(redis_url))))
        return -1;
    snprintf(pg_table, sizeof(pg_table), "rpcv2_%ld_%lld", (long)getpid(),
             (long long)edr_epoch_ms() % 100000000);
    struct store *st = pg_store_open(dsn, pg_table, &err);
    if (!st) {
        fprintf(stderr, "pg_store_open: %s\n", err.msg);
        return -1;
    }
    return start(&pg, "pg", st, 2);
}

static int pg_clean(void)
{
    struct store_err err;
    rpc_server_stop(pg.srv);
    store_close(pg.st);
    const char *dsn = test_env("EDR_PG_DSN");
    if (dsn)
        pg_store_drop(dsn, pg_table, &err);
    return 0;
}

/* Writes another worker made (through its own store handle): this
 * process never calls positions_applied for them. */
static void *pg_apply_later(void *arg)
{
    struct later *l = arg;
    struct store_err err;
    edr_sleep_ms((unsigned)l->delay_ms);
    struct store *other = pg_store_open(test_env("EDR_PG_DSN"), pg_table, &err);
    if (!other)
        return NULL;
    put(other, l->party, l->tid, "asset-pg", l->partition, l->next);
    store_close(other);
    return NULL;
}

static void test_pg_positions_and_wait(void)
{
    char rt[160], rt2[160];
    struct reply_msg m;
    pthread_t th;
    positions_reset();

    int64_t t0 = edr_clock_ms();
    CU_ASSERT_EQUAL_FATAL(call(&pg, "count",
                               "{\"min_positions\":{\"1\":5},"
                               "\"wait_ms\":400}",
                               5000, &m),
                          0);
    CU_ASSERT_PTR_NOT_NULL_FATAL(m.code);
    CU_ASSERT_STRING_EQUAL(m.code, "timeout");
    CU_ASSERT_TRUE(since(t0) >= 390);
    reply_msg_clear(&m);

    /* one waits for the position, one for the entry itself */
    struct later l = {NULL, "BPNLPG1", "tp-pg1", 1, 6, 600, 0};
    t0 = edr_clock_ms();
    CU_ASSERT_EQUAL_FATAL(
        send_req(&pg, "get_connection",
                 GET_ARGS("BPNLPG1", ",\"min_positions\":{\"1\":5}"), rt),
        0);
    CU_ASSERT_EQUAL_FATAL(send_req(&pg, "get_connection_transfer_id",
                                   GET_ARGS("BPNLPG1", ",\"wait_ms\":10000"),
                                   rt2),
                          0);
    pthread_create(&th, NULL, pg_apply_later, &l);
    CU_ASSERT_EQUAL_FATAL(recv_reply(rt, 8000, &m), 0);
    CU_ASSERT_EQUAL(m.status, REPLY_OK);
    CU_ASSERT_PTR_NOT_NULL(strstr(m.result_json, "tp-pg1"));
    reply_msg_clear(&m);
    CU_ASSERT_EQUAL_FATAL(recv_reply(rt2, 8000, &m), 0);
    CU_ASSERT_EQUAL(m.status, REPLY_OK);
    CU_ASSERT_STRING_EQUAL(m.result_json, "\"tp-pg1\"");
    reply_msg_clear(&m);
    pthread_join(th, NULL);
    /* polled with backoff capped at 500 ms: found within about that */
    CU_ASSERT_TRUE(since(t0) >= 580 && since(t0) < 2500);

    /* wait_ms runs out: not_found */
    t0 = edr_clock_ms();
    CU_ASSERT_EQUAL_FATAL(call(&pg, "get_connection",
                               GET_ARGS("BPNLPGNONE", ",\"wait_ms\":600"), 5000,
                               &m),
                          0);
    CU_ASSERT_EQUAL(m.status, REPLY_NOT_FOUND);
    CU_ASSERT_TRUE(since(t0) >= 590);
    reply_msg_clear(&m);
}

/* A position this worker's own ingest applied (and so committed) counts
 * without the offsets table, which here knows nothing of partition 9;
 * one past it still waits for the table, and times out. */
static void test_pg_local_positions(void)
{
    struct reply_msg m;
    positions_reset();
    struct store_offset o = {9, 21, -1};
    positions_applied(&o, 1);

    int64_t t0 = edr_clock_ms();
    CU_ASSERT_EQUAL_FATAL(
        call(&pg, "get_connection",
             GET_ARGS("BPNLPGLOC", ",\"min_positions\":{\"9\":20}"), 5000, &m),
        0);
    CU_ASSERT_EQUAL(m.status, REPLY_NOT_FOUND);
    CU_ASSERT_TRUE(since(t0) < 2000);
    reply_msg_clear(&m);

    t0 = edr_clock_ms();
    CU_ASSERT_EQUAL_FATAL(
        call(&pg, "get_connection",
             GET_ARGS("BPNLPGLOC", ",\"min_positions\":{\"9\":21},"
                                   "\"wait_ms\":300"),
             5000, &m),
        0);
    CU_ASSERT_PTR_NOT_NULL_FATAL(m.code);
    CU_ASSERT_STRING_EQUAL(m.code, "timeout");
    CU_ASSERT_TRUE(since(t0) >= 290);
    reply_msg_clear(&m);
    positions_reset();
}

/* min_positions reached through the table (another worker's commit,
 * get_after's one statement), the key absent: not_found, at once. */
static void test_pg_reached_not_found(void)
{
    struct reply_msg m;
    positions_reset();
    struct store_err err;
    struct store *other = pg_store_open(test_env("EDR_PG_DSN"), pg_table, &err);
    CU_ASSERT_PTR_NOT_NULL_FATAL(other);
    put(other, "BPNLPGOTHER", "tp-o", "asset-pg", 3, 8);
    store_close(other);
    CU_ASSERT_EQUAL_FATAL(
        call(&pg, "get_connection",
             GET_ARGS("BPNLPGABSENT", ",\"min_positions\":{\"3\":7}"), 5000,
             &m),
        0);
    CU_ASSERT_EQUAL(m.status, REPLY_NOT_FOUND);
    reply_msg_clear(&m);
    CU_ASSERT_EQUAL_FATAL(
        call(&pg, "get_connection",
             GET_ARGS("BPNLPGOTHER", ",\"min_positions\":{\"3\":7}"), 5000, &m),
        0);
    CU_ASSERT_EQUAL(m.status, REPLY_OK);
    CU_ASSERT_PTR_NOT_NULL(m.result_json && strstr(m.result_json, "tp-o"));
    reply_msg_clear(&m);
}

static void register_suites(void)
{
    CU_pSuite s = CU_add_suite("rpc v2 (memory)", suite_init, suite_clean);
    CU_add_test(s, "wait_ms: answered at the apply", test_wait_found);
    CU_add_test(s, "wait_ms: not_found at the end", test_wait_not_found);
    CU_add_test(s, "min_positions", test_min_positions);
    CU_add_test(s, "bad wait_ms / min_positions", test_bad_args);
    CU_add_test(s, "get_by_transfer_id and filters reach the store",
                test_store_passthrough);
    CU_add_test(s, "nothing stays in flight", test_inflight_cleared);
    CU_add_test(s, "a dead worker's requests are taken over", test_takeover);
    CU_add_test(s, "a clean stop requeues a waiting request",
                test_stop_requeues);
    CU_add_test(s, "file store restarted: its own offsets count",
                test_file_restart);
    CU_pSuite p = CU_add_suite("rpc v2 (postgres)", pg_init, pg_clean);
    CU_add_test(p, "min_positions and wait_ms by polling",
                test_pg_positions_and_wait);
    CU_add_test(p, "min_positions: own applied positions count",
                test_pg_local_positions);
    CU_add_test(p, "min_positions reached, key absent: not_found",
                test_pg_reached_not_found);
}

int main(void)
{
    signal(SIGPIPE, SIG_IGN);
    static const cunit_register_fn regs[] = {register_suites, NULL};
    return cunit_main(regs);
}

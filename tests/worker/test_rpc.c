/* test_rpc.c: the lookup responder (worker/rpc.c) over a memory store,
 * against real Redis servers.
 *
 * On the shared Redis ($EDR_REDIS_URL, a unique prefix per run): every op,
 * list paging through all entries by cursor, the not_found forms,
 * deadline expiry (no reply), the reply list's TTL, error replies with
 * their codes, a flood of malformed requests (bad JSON, unknown ops,
 * missing members, 1 MiB requests, binary junk) mixed with good ones; the
 * v2 rules: reply_to outside <prefix>:reply: is never written, a reply_to
 * naming a hash or a string keeps its value and expiry, ping answers from
 * the entries gauge, and store errors (addresses, user names) never reach
 * a reply.
 *
 * On private redis-server instances this test starts itself (ports 16390
 * and 16391, never the shared one): a restart mid-run (answering resumes,
 * one log line per outage and one on recovery), and authentication (ACL
 * user:password and :password URLs, a wrong password refused clearly). */
#include "schemas/edr_key.h"
#include "schemas/reply.h"
#include "stores/store.h"
#include "tests/support/cunit_main.h"
#include "base/clock.h"
#include "worker/config.h"
#include "worker/metrics.h"
#include "worker/redis_url.h"
#include "worker/rpc.h"

#include <hiredis/hiredis.h>
#include <yajl/yajl_tree.h>

#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#define N_ENTRIES 230
#define RESTART_PORT 16390
#define AUTH_PORT 16391

static const char *redis_url;
static char prefix[96];
static char queue[128];
static struct store *st;
static struct rpc_server *srv;
static struct config cfg;
static redisContext *cli;
static int seq;

static int64_t now_ms(void)
{
    return edr_epoch_ms();
}

/* Polls cond(arg) every 10 ms until it holds or ms pass; its last value. */
static int wait_for(int (*cond)(void *), void *arg, int ms)
{
    int64_t until = edr_clock_ms() + ms;
    while (!cond(arg)) {
        if (edr_clock_ms() >= until)
            return cond(arg);
        edr_sleep_ms(10);
    }
    return 1;
}

static void del_key(redisContext *c, const char *key);

static int srv_is_connected(void *arg)
{
    return rpc_server_connected(arg);
}

/* The key fields and entry of test entry i. */
static void entry_fields(int i, char cp[64], char addr[64], char q[32],
                         char p[32], char entry[160], char tid[32])
{
    snprintf(cp, 64, "%s%05d", i % 3 == 0 ? "BPNLA" : "BPNLB", i);
    snprintf(addr, 64, "https://provider-%d.example/api/dsp", i);
    snprintf(q, 32, "q%d", i);
    snprintf(p, 32, "p%d", i);
    snprintf(tid, 32, "tp-%d", i);
    snprintf(entry, 160,
             "{\"transferProcessId\":\"tp-%d\",\"assetId\":\"asset-%d\","
             "\"endpoint\":\"https://x\\/\\u00e9\",\"n\":[%d,1.5,null]}",
             i, i, i);
}

static redisContext *connect_url(const char *url)
{
    struct redis_url u;
    char err[256];
    int failure;
    if (redis_url_parse(url, &u, err, sizeof(err)))
        return NULL;
    redisContext *c = redis_url_connect(&u, 15000, &failure, err, sizeof(err));
    if (!c)
        fprintf(stderr, "connect %s: %s\n", url, err);
    redis_url_clear(&u);
    return c;
}

/* LPUSHes one request; 0 or -1. */
static int push(redisContext *c, const char *q, const char *req, size_t len)
{
    const char *argv[3] = {"LPUSH", q, req};
    size_t lens[3] = {5, strlen(q), len};
    redisReply *r = redisCommandArgv(c, 3, argv, lens);
    int rc = r && r->type == REDIS_REPLY_INTEGER ? 0 : -1;
    if (r)
        freeReplyObject(r);
    return rc;
}

/* BLPOP reply_to for up to secs; malloc'd reply text or NULL. */
static char *wait_reply(redisContext *c, const char *reply_to, const char *secs)
{
    const char *argv[3] = {"BLPOP", reply_to, secs};
    redisReply *r = redisCommandArgv(c, 3, argv, NULL);
    char *out = NULL;
    if (r && r->type == REDIS_REPLY_ARRAY && r->elements == 2)
        out = strndup(r->element[1]->str, r->element[1]->len);
    if (r)
        freeReplyObject(r);
    return out;
}

/* Copies tmpl to out with its first "%s" replaced by a and the second by b
 * (templates, not printf formats: the test builds them at run time). */
static void fill(char *out, size_t cap, const char *tmpl, const char *a,
                 const char *b)
{
    size_t o = 0;
    int k = 0;
    for (const char *p = tmpl; *p && o + 1 < cap; p++) {
        if (p[0] == '%' && p[1] == 's' && k < 2) {
            const char *v = k++ == 0 ? a : b;
            size_t n = strlen(v);
            if (o + n + 1 >= cap)
                break;
            memcpy(out + o, v, n);
            o += n;
            p++;
            continue;
        }
        out[o++] = *p;
    }
    out[o] = '\0';
}

/* Sends a request built from fmt, whose %s (first) is the id and (second)
 * the reply_to; returns the raw reply or NULL on timeout. */
static char *call_on(redisContext *c, const char *q, const char *pfx,
                     const char *body_fmt, const char *secs, char *id_out)
{
    char id[64], reply_to[512], req[8192];
    snprintf(id, sizeof(id), "req-%d", ++seq);
    snprintf(reply_to, sizeof(reply_to), "%s:reply:%s", pfx, id);
    fill(req, sizeof(req), body_fmt, id, reply_to);
    if (id_out)
        strcpy(id_out, id);
    if (push(c, q, req, strlen(req)))
        return NULL;
    return wait_reply(c, reply_to, secs);
}

static char *call(const char *body_fmt, char *id_out)
{
    return call_on(cli, queue, prefix, body_fmt, "10", id_out);
}

/* call() and decode; 0 with *m filled or -1. */
static int call_decoded(const char *body_fmt, struct reply_msg *m)
{
    char id[64], err[256];
    char *raw = call(body_fmt, id);
    if (!raw)
        return -1;
    int rc = reply_decode(m, raw, strlen(raw), err, sizeof(err));
    if (rc == 0 && (!m->id || strcmp(m->id, id) != 0)) {
        reply_msg_clear(m);
        rc = -1;
    }
    free(raw);
    return rc;
}

static int suite_init(void)
{
    struct store_err err;
    redis_url = test_env("EDR_REDIS_URL");
    if (!redis_url)
        return -1;
    snprintf(prefix, sizeof(prefix), "rpctest-%ld-%lld", (long)getpid(),
             (long long)now_ms());
    snprintf(queue, sizeof(queue), "%s:requests", prefix);
    st = mem_store_open(&err);
    if (!st)
        return -1;
    for (int i = 0; i < N_ENTRIES; i++) {
        char cp[64], addr[64], q[32], p[32], entry[160], tid[32];
        entry_fields(i, cp, addr, q, p, entry, tid);
        struct edr_key k = {cp, addr, q, p};
        if (store_put(st, &k, tid, entry, strlen(entry), &err) != STORE_OK)
            return -1;
    }
    memset(&cfg, 0, sizeof(cfg));
    cfg.redis_url = (char *)redis_url;
    cfg.rpc_prefix = prefix;
    cfg.worker_id = (char *)"test-worker-1";
    cfg.rpc_threads = 4;
    char errstr[256];
    srv = rpc_server_start(&cfg, st, errstr, sizeof(errstr));
    if (!srv) {
        fprintf(stderr, "rpc_server_start: %s\n", errstr);
        return -1;
    }
    cli = connect_url(redis_url);
    return cli && wait_for(srv_is_connected, srv, 5000) ? 0 : -1;
}

static int suite_clean(void)
{
    rpc_server_stop(srv);
    if (cli) {
        redisReply *r = redisCommand(cli, "DEL %s", queue);
        if (r)
            freeReplyObject(r);
        redisFree(cli);
    }
    store_close(st);
    return 0;
}

/* ------------------------------------------------------------------ ops */

/* ping answers from the entries gauge ingest keeps, never from the store:
 * the gauge is set to a number the store does not hold. */
static void test_ping(void)
{
    struct reply_msg m;
    metrics_store_entries(N_ENTRIES + 1000);
    CU_ASSERT_EQUAL_FATAL(call_decoded("{\"id\":\"%s\",\"reply_to\":\"%s\","
                                       "\"op\":\"ping\"}",
                                       &m),
                          0);
    CU_ASSERT_EQUAL(m.status, REPLY_OK);
    char want[160];
    snprintf(want, sizeof(want),
             "{\"worker\":\"test-worker-1\",\"store\":\"memory\","
             "\"entries\":%d}",
             N_ENTRIES + 1000);
    CU_ASSERT_STRING_EQUAL(m.result_json, want);
    reply_msg_clear(&m);
    metrics_store_entries(N_ENTRIES);
}

static void test_get(void)
{
    for (int i = 0; i < N_ENTRIES; i += 7) {
        char cp[64], addr[64], q[32], p[32], entry[160], tid[32];
        char fmt[1024], want[512];
        entry_fields(i, cp, addr, q, p, entry, tid);
        snprintf(fmt, sizeof(fmt),
                 "{\"id\":\"%%s\",\"reply_to\":\"%%s\",\"op\":\"get_"
                 "connection\",\"args\":{\"counter_party_id\":\"%s\","
                 "\"counter_party_address\":\"%s\",\"query_checksum\":\"%s\","
                 "\"policy_checksum\":\"%s\"}}",
                 cp, addr, q, p);
        char id[64];
        char *raw = call(fmt, id);
        CU_ASSERT_PTR_NOT_NULL_FATAL(raw);
        /* the stored entry, spliced verbatim */
        snprintf(want, sizeof(want),
                 "{\"id\":\"%s\",\"status\":\"ok\",\"result\":%s}", id, entry);
        CU_ASSERT_STRING_EQUAL(raw, want);
        free(raw);

        /* the same keys for the transfer id */
        snprintf(fmt, sizeof(fmt),
                 "{\"id\":\"%%s\",\"reply_to\":\"%%s\",\"op\":\"get_"
                 "connection_transfer_id\",\"args\":{\"counter_party_id\":"
                 "\"%s\",\"counter_party_address\":\"%s\",\"query_checksum\":"
                 "\"%s\",\"policy_checksum\":\"%s\"}}",
                 cp, addr, q, p);
        struct reply_msg m;
        CU_ASSERT_EQUAL_FATAL(call_decoded(fmt, &m), 0);
        CU_ASSERT_EQUAL(m.status, REPLY_OK);
        snprintf(want, sizeof(want), "\"%s\"", tid);
        CU_ASSERT_STRING_EQUAL(m.result_json, want);
        reply_msg_clear(&m);
    }
}

static void test_not_found(void)
{
    static const char args[] =
        "\"args\":{\"counter_party_id\":\"nobody\",\"counter_party_address\":"
        "\"https://nowhere\",\"query_checksum\":\"q0\",\"policy_checksum\":"
        "\"p0\"}}";
    char fmt[512];
    char id[64], want[256];
    snprintf(fmt, sizeof(fmt),
             "{\"id\":\"%%s\",\"reply_to\":\"%%s\",\"op\":\"get_connection\","
             "%s",
             args);
    char *raw = call(fmt, id);
    CU_ASSERT_PTR_NOT_NULL_FATAL(raw);
    snprintf(want, sizeof(want),
             "{\"id\":\"%s\",\"status\":\"not_found\",\"result\":{}}", id);
    CU_ASSERT_STRING_EQUAL(raw, want);
    free(raw);

    snprintf(fmt, sizeof(fmt),
             "{\"id\":\"%%s\",\"reply_to\":\"%%s\",\"op\":\"get_connection_"
             "transfer_id\",%s",
             args);
    raw = call(fmt, id);
    CU_ASSERT_PTR_NOT_NULL_FATAL(raw);
    snprintf(want, sizeof(want),
             "{\"id\":\"%s\",\"status\":\"not_found\",\"result\":null}", id);
    CU_ASSERT_STRING_EQUAL(raw, want);
    free(raw);
}

static void test_count(void)
{
    struct reply_msg m;
    char want[32];
    int n_a = 0;
    for (int i = 0; i < N_ENTRIES; i++)
        n_a += i % 3 == 0;
    CU_ASSERT_EQUAL_FATAL(call_decoded("{\"id\":\"%s\",\"reply_to\":\"%s\","
                                       "\"op\":\"count\"}",
                                       &m),
                          0);
    snprintf(want, sizeof(want), "%d", N_ENTRIES);
    CU_ASSERT_STRING_EQUAL(m.result_json, want);
    reply_msg_clear(&m);

    CU_ASSERT_EQUAL_FATAL(
        call_decoded("{\"id\":\"%s\",\"reply_to\":\"%s\",\"op\":\"count\","
                     "\"args\":{\"counter_party_id_substring\":\"NLA\"}}",
                     &m),
        0);
    snprintf(want, sizeof(want), "%d", n_a);
    CU_ASSERT_STRING_EQUAL(m.result_json, want);
    reply_msg_clear(&m);

    CU_ASSERT_EQUAL_FATAL(
        call_decoded("{\"id\":\"%s\",\"reply_to\":\"%s\",\"op\":\"count\","
                     "\"args\":{\"counter_party_id_substring\":\"zzz\"}}",
                     &m),
        0);
    CU_ASSERT_EQUAL(m.status, REPLY_OK);
    CU_ASSERT_STRING_EQUAL(m.result_json, "0");
    reply_msg_clear(&m);
}

static int str_cmp(const void *a, const void *b)
{
    return strcmp(*(char *const *)a, *(char *const *)b);
}

/* Pages through list_connections (limit, optional substring) and checks
 * that it returns exactly the expected entries, in connection-key order,
 * each once. */
static void list_all(int limit, const char *substring, int want_n)
{
    char *seen_keys[N_ENTRIES];
    int n = 0, pages = 0;
    char cursor[80] = "";
    for (;;) {
        char fmt[512];
        char args[256];
        int off = snprintf(args, sizeof(args), "{\"limit\":%d", limit);
        if (substring)
            off +=
                snprintf(args + off, sizeof(args) - (size_t)off,
                         ",\"counter_party_id_substring\":\"%s\"", substring);
        if (cursor[0])
            off += snprintf(args + off, sizeof(args) - (size_t)off,
                            ",\"cursor\":\"%s\"", cursor);
        snprintf(args + off, sizeof(args) - (size_t)off, "}");
        snprintf(fmt, sizeof(fmt),
                 "{\"id\":\"%%s\",\"reply_to\":\"%%s\",\"op\":\"list_"
                 "connections\",\"args\":%s}",
                 args);
        char id[64];
        char *raw = call(fmt, id);
        CU_ASSERT_PTR_NOT_NULL_FATAL(raw);
        yajl_val v = yajl_tree_parse(raw, NULL, 0);
        free(raw);
        CU_ASSERT_PTR_NOT_NULL_FATAL(v);
        const char *p_items[] = {"result", "items", NULL};
        const char *p_next[] = {"result", "next_cursor", NULL};
        yajl_val items = yajl_tree_get(v, p_items, yajl_t_array);
        yajl_val next = yajl_tree_get(v, p_next, yajl_t_any);
        CU_ASSERT_PTR_NOT_NULL_FATAL(items);
        CU_ASSERT_PTR_NOT_NULL_FATAL(next);
        CU_ASSERT_TRUE(items->u.array.len <= (size_t)limit);
        pages++;
        for (size_t i = 0; i < items->u.array.len; i++) {
            yajl_val it = items->u.array.values[i];
            const char *f[5] = {"counter_party_id", "counter_party_address",
                                "query_checksum", "policy_checksum",
                                "transferProcessId"};
            const char *val[5];
            for (int j = 0; j < 5; j++) {
                const char *path[] = {f[j], NULL};
                yajl_val s = yajl_tree_get(it, path, yajl_t_string);
                val[j] = s ? YAJL_GET_STRING(s) : "";
            }
            int idx = atoi(val[2] + 1); /* "q<i>" */
            char cp[64], addr[64], q[32], p[32], entry[160], tid[32];
            entry_fields(idx, cp, addr, q, p, entry, tid);
            CU_ASSERT_STRING_EQUAL(val[0], cp);
            CU_ASSERT_STRING_EQUAL(val[1], addr);
            CU_ASSERT_STRING_EQUAL(val[3], p);
            CU_ASSERT_STRING_EQUAL(val[4], tid);
            if (substring)
                CU_ASSERT_PTR_NOT_NULL(strstr(val[0], substring));
            struct edr_key k = {cp, addr, q, p};
            char key[EDR_CONNECTION_KEY_LEN + 1];
            edr_connection_key(&k, key);
            /* ascending by connection key across pages */
            if (n > 0)
                CU_ASSERT_TRUE(strcmp(seen_keys[n - 1], key) < 0);
            CU_ASSERT_TRUE_FATAL(n < N_ENTRIES);
            seen_keys[n++] = strdup(key);
        }
        if (YAJL_IS_NULL(next)) {
            yajl_tree_free(v);
            break;
        }
        CU_ASSERT_TRUE_FATAL(YAJL_IS_STRING(next));
        snprintf(cursor, sizeof(cursor), "%s", YAJL_GET_STRING(next));
        yajl_tree_free(v);
        CU_ASSERT_TRUE_FATAL(pages <= N_ENTRIES + 1);
    }
    CU_ASSERT_EQUAL(n, want_n);
    qsort(seen_keys, (size_t)n, sizeof(char *), str_cmp);
    for (int i = 1; i < n; i++)
        CU_ASSERT_TRUE(strcmp(seen_keys[i - 1], seen_keys[i]) != 0);
    for (int i = 0; i < n; i++)
        free(seen_keys[i]);
}

/* How many test entries have substring in their counter_party_id. */
static int n_matching(const char *substring)
{
    int n = 0;
    for (int i = 0; i < N_ENTRIES; i++) {
        char cp[64], addr[64], q[32], p[32], entry[160], tid[32];
        entry_fields(i, cp, addr, q, p, entry, tid);
        n += strstr(cp, substring) != NULL;
    }
    return n;
}

static void test_list(void)
{
    list_all(7, NULL, N_ENTRIES);
    list_all(1000, NULL, N_ENTRIES);
    list_all(10, "BPNLA", n_matching("BPNLA"));
    list_all(1, "BPNLA0001", n_matching("BPNLA0001"));
    CU_ASSERT_EQUAL(n_matching("BPNLA0001"), 3);
}

static void test_list_default_limit(void)
{
    struct reply_msg m;
    CU_ASSERT_EQUAL_FATAL(call_decoded("{\"id\":\"%s\",\"reply_to\":\"%s\","
                                       "\"op\":\"list_connections\"}",
                                       &m),
                          0);
    yajl_val v = yajl_tree_parse(m.result_json, NULL, 0);
    const char *p_items[] = {"items", NULL};
    yajl_val items = yajl_tree_get(v, p_items, yajl_t_array);
    CU_ASSERT_PTR_NOT_NULL_FATAL(items);
    CU_ASSERT_EQUAL(items->u.array.len, 100);
    yajl_tree_free(v);
    reply_msg_clear(&m);

    /* nothing matches: ok with empty items and a null cursor */
    CU_ASSERT_EQUAL_FATAL(
        call_decoded("{\"id\":\"%s\",\"reply_to\":\"%s\",\"op\":\"list_"
                     "connections\",\"args\":{\"counter_party_id_substring\":"
                     "\"none\"}}",
                     &m),
        0);
    CU_ASSERT_EQUAL(m.status, REPLY_OK);
    CU_ASSERT_STRING_EQUAL(m.result_json,
                           "{\"items\":[],\"next_cursor\":null}");
    reply_msg_clear(&m);
}

static void test_errors(void)
{
    static const struct {
        const char *fmt;
        const char *reason;
    } cases[] = {
        {"{\"id\":\"%s\",\"reply_to\":\"%s\",\"op\":\"drop\"}",
         "op: unknown operation"},
        {"{\"id\":\"%s\",\"reply_to\":\"%s\",\"op\":\"get_connection\","
         "\"args\":{\"counter_party_id\":\"x\"}}",
         "args.counter_party_address: missing"},
        {"{\"id\":\"%s\",\"reply_to\":\"%s\",\"op\":\"list_connections\","
         "\"args\":{\"limit\":5000}}",
         "args.limit: out of range"},
        {"{\"id\":\"%s\",\"reply_to\":\"%s\",\"op\":\"ping\",", /* cut */
         "not well-formed JSON"},
        {"{\"id\":\"%s\",\"reply_to\":\"%s\",\"op\":\"count\","
         "\"deadline_ms\":\"soon\"}",
         "deadline_ms"},
    };
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        struct reply_msg m;
        CU_ASSERT_EQUAL_FATAL(call_decoded(cases[i].fmt, &m), 0);
        CU_ASSERT_EQUAL(m.status, REPLY_ERROR);
        CU_ASSERT_PTR_NOT_NULL(m.error && strstr(m.error, cases[i].reason));
        /* v2: a request breaking the contract is a bad_request */
        CU_ASSERT_PTR_NOT_NULL_FATAL(m.code);
        CU_ASSERT_STRING_EQUAL(m.code, "bad_request");
        reply_msg_clear(&m);
    }
}

struct expired_wait {
    struct rpc_server *s;
    unsigned long long want;
};

static int expired_reached(void *arg)
{
    struct expired_wait *w = arg;
    struct rpc_server_stats stats;
    rpc_server_get_stats(w->s, &stats);
    return stats.expired >= w->want;
}

/* A request past its deadline gets no reply; the next one does. */
static void test_deadline(void)
{
    char req[512], reply_to[160];
    struct rpc_server_stats stats;
    rpc_server_get_stats(srv, &stats);
    struct expired_wait w = {srv, stats.expired + 1};
    snprintf(reply_to, sizeof(reply_to), "%s:reply:late", prefix);
    snprintf(req, sizeof(req),
             "{\"id\":\"late\",\"reply_to\":\"%s\",\"op\":\"ping\","
             "\"deadline_ms\":%lld}",
             reply_to, (long long)(now_ms() - 1));
    CU_ASSERT_EQUAL_FATAL(push(cli, queue, req, strlen(req)), 0);

    /* a deadline in the future is answered */
    struct reply_msg m;
    char fmt[256];
    snprintf(fmt, sizeof(fmt),
             "{\"id\":\"%%s\",\"reply_to\":\"%%s\",\"op\":\"count\","
             "\"deadline_ms\":%lld}",
             (long long)(now_ms() + 10000));
    CU_ASSERT_EQUAL_FATAL(call_decoded(fmt, &m), 0);
    CU_ASSERT_EQUAL(m.status, REPLY_OK);
    reply_msg_clear(&m);

    /* the late one was dropped (counted), and nothing was written */
    CU_ASSERT_TRUE(wait_for(expired_reached, &w, 10000));
    const char *exists[2] = {"EXISTS", reply_to};
    redisReply *r = redisCommandArgv(cli, 2, exists, NULL);
    CU_ASSERT_TRUE(r && r->type == REDIS_REPLY_INTEGER && r->integer == 0);
    if (r)
        freeReplyObject(r);
}

/* A request naming the request queue as its reply_to is dropped: an
 * answer there would put an expiry on the queue. The queue is kept busy
 * behind it (requests past their deadline, dropped quickly), so an expiry
 * would show while they drain. */
static void test_reply_to_queue(void)
{
    char req[512];
    static const char filler[] = "{\"id\":\"f\",\"reply_to\":\"nowhere\","
                                 "\"op\":\"ping\",\"deadline_ms\":1}";
    snprintf(req, sizeof(req),
             "{\"id\":\"loop\",\"reply_to\":\"%s\",\"op\":\"ping\"}", queue);
    redisAppendCommand(cli, "MULTI");
    redisAppendCommand(cli, "LPUSH %s %s", queue, req);
    for (int i = 0; i < 20000; i++)
        redisAppendCommand(cli, "LPUSH %s %s", queue, filler);
    redisAppendCommand(cli, "EXEC");
    for (int i = 0; i < 20003; i++) {
        redisReply *r = NULL;
        CU_ASSERT_EQUAL_FATAL(redisGetReply(cli, (void **)&r), REDIS_OK);
        freeReplyObject(r);
    }
    int saw_queue = 0, saw_ttl = 0;
    for (int i = 0; i < 5000; i++) {
        redisReply *r = redisCommand(cli, "TTL %s", queue);
        long long ttl = r && r->type == REDIS_REPLY_INTEGER ? r->integer : -9;
        if (r)
            freeReplyObject(r);
        if (ttl == -2)
            break;
        saw_queue += ttl == -1;
        saw_ttl += ttl >= 0;
    }
    CU_ASSERT_TRUE(saw_queue > 0);
    CU_ASSERT_EQUAL(saw_ttl, 0);
    /* and the responder is fine */
    struct reply_msg m;
    CU_ASSERT_EQUAL_FATAL(call_decoded("{\"id\":\"%s\",\"reply_to\":\"%s\","
                                       "\"op\":\"ping\"}",
                                       &m),
                          0);
    reply_msg_clear(&m);
}

/* The reply list carries an expiry as soon as it exists. */
static void test_reply_ttl(void)
{
    char req[512], reply_to[160];
    snprintf(reply_to, sizeof(reply_to), "%s:reply:ttl", prefix);
    snprintf(req, sizeof(req),
             "{\"id\":\"ttl\",\"reply_to\":\"%s\",\"op\":\"ping\"}", reply_to);
    CU_ASSERT_EQUAL_FATAL(push(cli, queue, req, strlen(req)), 0);
    long long ttl = -3;
    for (int i = 0; i < 200; i++) {
        redisReply *r = redisCommand(cli, "EXISTS %s", reply_to);
        int exists = r && r->type == REDIS_REPLY_INTEGER && r->integer == 1;
        if (r)
            freeReplyObject(r);
        if (exists) {
            r = redisCommand(cli, "TTL %s", reply_to);
            if (r && r->type == REDIS_REPLY_INTEGER)
                ttl = r->integer;
            if (r)
                freeReplyObject(r);
            break;
        }
        edr_sleep_ms(10);
    }
    CU_ASSERT_TRUE(ttl > 0 && ttl <= 60);
    redisReply *r = redisCommand(cli, "DEL %s", reply_to);
    if (r)
        freeReplyObject(r);
}

/* ---------------------------------------------------------------- flood */

static void test_flood(void)
{
    enum { N_GOOD = 400, N_BAD_PER_GOOD = 8 };
    static char big[1024 * 1024 + 64];
    int n_big = 0, n_errs_expected = 0;
    char reply_to[160], req[1024];
    redisContext *c = connect_url(redis_url);
    CU_ASSERT_PTR_NOT_NULL_FATAL(c);

    /* a 1 MiB request with a readable reply_to up front */
    snprintf(reply_to, sizeof(reply_to), "%s:reply:flood-err", prefix);
    int hl = snprintf(big, sizeof(big),
                      "{\"id\":\"big\",\"reply_to\":\"%s\",\"op\":\"ping\","
                      "\"pad\":\"",
                      reply_to);
    memset(big + hl, 'x', sizeof(big) - (size_t)hl);

    unsigned rnd = 12345;
    int pushed = 0;
    for (int g = 0; g < N_GOOD; g++) {
        for (int b = 0; b < N_BAD_PER_GOOD; b++) {
            const char *bad;
            size_t len;
            char junk[512];
            switch ((g * N_BAD_PER_GOOD + b) % 8) {
            case 0:
                bad = "{\"id\":\"x\",\"reply_to\":";
                len = strlen(bad);
                break;
            case 1: /* unknown op, answered with an error */
                snprintf(junk, sizeof(junk),
                         "{\"id\":\"u%d\",\"reply_to\":\"%s\",\"op\":\"nope\"}",
                         g, reply_to);
                bad = junk;
                len = strlen(junk);
                n_errs_expected++;
                break;
            case 2: /* missing members, answered with an error */
                snprintf(junk, sizeof(junk),
                         "{\"id\":\"m%d\",\"reply_to\":\"%s\",\"op\":"
                         "\"get_connection\",\"args\":{}}",
                         g, reply_to);
                bad = junk;
                len = strlen(junk);
                n_errs_expected++;
                break;
            case 3: /* binary junk */
                for (size_t k = 0; k < sizeof(junk); k++)
                    junk[k] = (char)(rand_r(&rnd) & 0xff);
                bad = junk;
                len = sizeof(junk);
                break;
            case 4:
                bad = "{\"op\":\"ping\"}"; /* no reply_to: counted */
                len = strlen(bad);
                break;
            case 5:
                if (n_big < 16 && g % 20 == 0) {
                    bad = big;
                    len = sizeof(big);
                    n_big++;
                    n_errs_expected++;
                } else {
                    bad = "[]";
                    len = 2;
                }
                break;
            case 6:
                bad = "";
                len = 0;
                break;
            default:
                bad = "null";
                len = 4;
                break;
            }
            const char *argv[3] = {"LPUSH", queue, bad};
            size_t lens[3] = {5, strlen(queue), len};
            redisAppendCommandArgv(c, 3, argv, lens);
            pushed++;
        }
        snprintf(req, sizeof(req),
                 "{\"id\":\"g%d\",\"reply_to\":\"%s:reply:flood-%d\","
                 "\"op\":\"get_connection_transfer_id\",\"args\":{"
                 "\"counter_party_id\":\"%s%05d\",\"counter_party_address\":"
                 "\"https://provider-%d.example/api/dsp\",\"query_checksum\":"
                 "\"q%d\",\"policy_checksum\":\"p%d\"}}",
                 g, prefix, g, g % N_ENTRIES % 3 == 0 ? "BPNLA" : "BPNLB",
                 g % N_ENTRIES, g % N_ENTRIES, g % N_ENTRIES, g % N_ENTRIES);
        const char *argv[3] = {"LPUSH", queue, req};
        redisAppendCommandArgv(c, 3, argv, NULL);
        pushed++;
    }
    for (int i = 0; i < pushed; i++) {
        redisReply *r = NULL;
        CU_ASSERT_EQUAL_FATAL(redisGetReply(c, (void **)&r), REDIS_OK);
        freeReplyObject(r);
    }
    /* every good request answered correctly */
    int good_ok = 0;
    for (int g = 0; g < N_GOOD; g++) {
        char to[160], want[64];
        snprintf(to, sizeof(to), "%s:reply:flood-%d", prefix, g);
        char *raw = wait_reply(c, to, "30");
        struct reply_msg m;
        char err[128];
        if (raw && reply_decode(&m, raw, strlen(raw), err, sizeof(err)) == 0) {
            snprintf(want, sizeof(want), "\"tp-%d\"", g % N_ENTRIES);
            char id[16];
            snprintf(id, sizeof(id), "g%d", g);
            good_ok += m.status == REPLY_OK &&
                       strcmp(m.result_json, want) == 0 && m.id &&
                       strcmp(m.id, id) == 0;
            reply_msg_clear(&m);
        }
        free(raw);
    }
    CU_ASSERT_EQUAL(good_ok, N_GOOD);
    /* the malformed ones that had a readable reply_to got error replies */
    int errs = 0;
    for (;;) {
        char *raw = wait_reply(c, reply_to, "2");
        if (!raw)
            break;
        struct reply_msg m;
        char err[128];
        if (reply_decode(&m, raw, strlen(raw), err, sizeof(err)) == 0) {
            errs += m.status == REPLY_ERROR;
            reply_msg_clear(&m);
        }
        free(raw);
    }
    CU_ASSERT_EQUAL(errs, n_errs_expected);
    CU_ASSERT_TRUE(n_big > 0);
    /* still healthy: every thread connected, pings answered */
    CU_ASSERT_TRUE(rpc_server_connected(srv));
    for (int i = 0; i < 8; i++) {
        char *raw = call_on(c, queue, prefix,
                            "{\"id\":\"%s\",\"reply_to\":\"%s\",\"op\":"
                            "\"ping\"}",
                            "5", NULL);
        CU_ASSERT_PTR_NOT_NULL(raw);
        free(raw);
    }
    redisFree(c);
}

/* -------------------------------------------------------------- edrctl */

/* Runs ../edrctl (or $EDR_EDRCTL_BIN) with args; its exit code, stdout's
 * first line in out. */
static int edrctl(const char *const *args, char *out, size_t n)
{
    const char *bin = getenv("EDR_EDRCTL_BIN");
    char *argv[32];
    char path[128];
    int a = 0;
    argv[a++] = (char *)(bin && *bin ? bin : "../edrctl");
    for (; *args && a < 31; args++)
        argv[a++] = (char *)*args;
    argv[a] = NULL;
    snprintf(path, sizeof(path), "/tmp/edrctl-rpc-%ld.out", (long)getpid());
    fflush(stdout);
    pid_t pid = fork();
    if (pid == 0) {
        int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC, 0600);
        int nul = open("/dev/null", O_WRONLY);
        dup2(fd, 1);
        dup2(nul, 2);
        execv(argv[0], argv);
        _exit(127);
    }
    int status = 0;
    waitpid(pid, &status, 0);
    out[0] = '\0';
    FILE *f = fopen(path, "r");
    if (f) {
        if (!fgets(out, (int)n, f))
            out[0] = '\0';
        fclose(f);
    }
    unlink(path);
    out[strcspn(out, "\n")] = '\0';
    return WIFEXITED(status) ? WEXITSTATUS(status) : 128;
}

/* edrctl's lookups against the in-process responder: results on stdout
 * and the exit codes of schemas/README.md §5. */
static void test_edrctl(void)
{
    char cp[64], addr[64], q[32], p[32], entry[160], tid[32], out[1024];
    char want[64], big[1100];
    entry_fields(5, cp, addr, q, p, entry, tid);
    const char *get[] = {"get", "--rpc-prefix", prefix, "--party",
                         cp,    "--address",    addr,   "--query",
                         q,     "--policy",     p,      NULL};
    CU_ASSERT_EQUAL(edrctl(get, out, sizeof(out)), 0);
    /* edrctl re-serialises the result: the same JSON, written compactly
     * by yajl_gen (so "\\/" and "\\u00e9" come out as "/" and UTF-8) */
    char wrapped[256], err[128];
    struct reply_msg canon;
    snprintf(wrapped, sizeof(wrapped),
             "{\"id\":\"x\",\"status\":\"ok\",\"result\":%s}", entry);
    CU_ASSERT_EQUAL_FATAL(
        reply_decode(&canon, wrapped, strlen(wrapped), err, sizeof(err)), 0);
    CU_ASSERT_STRING_EQUAL(out, canon.result_json);
    CU_ASSERT_PTR_NOT_NULL(strstr(out, "https://x/\xc3\xa9"));
    reply_msg_clear(&canon);
    get[0] = "transfer-id";
    CU_ASSERT_EQUAL(edrctl(get, out, sizeof(out)), 0);
    snprintf(want, sizeof(want), "\"%s\"", tid);
    CU_ASSERT_STRING_EQUAL(out, want);
    get[10] = "no-such-policy";
    CU_ASSERT_EQUAL(edrctl(get, out, sizeof(out)), 1);
    CU_ASSERT_STRING_EQUAL(out, "null");
    get[0] = "get";
    CU_ASSERT_EQUAL(edrctl(get, out, sizeof(out)), 1);
    CU_ASSERT_STRING_EQUAL(out, "{}");
    /* the worker refuses an oversized key: an error reply, exit 3 */
    memset(big, 'x', 1030);
    big[1030] = '\0';
    get[10] = big;
    CU_ASSERT_EQUAL(edrctl(get, out, sizeof(out)), 3);

    const char *count[] = {
        "count", "--rpc-prefix", prefix, "--party-substring", "BPNLA", NULL};
    CU_ASSERT_EQUAL(edrctl(count, out, sizeof(out)), 0);
    snprintf(want, sizeof(want), "%d", n_matching("BPNLA"));
    CU_ASSERT_STRING_EQUAL(out, want);

    const char *list[] = {"list", "--rpc-prefix", prefix, "--limit", "2", NULL};
    CU_ASSERT_EQUAL(edrctl(list, out, sizeof(out)), 0);
    CU_ASSERT_PTR_NOT_NULL(strstr(out, "\"next_cursor\":\""));
    const char *ping[] = {"ping", "--rpc-prefix", prefix, NULL};
    CU_ASSERT_EQUAL(edrctl(ping, out, sizeof(out)), 0);
    CU_ASSERT_PTR_NOT_NULL(strstr(out, "\"worker\":\"test-worker-1\""));

    /* usage errors: exit 2 */
    const char *bad_limit[] = {"list", "--rpc-prefix", prefix, "--limit", "0",
                               NULL};
    CU_ASSERT_EQUAL(edrctl(bad_limit, out, sizeof(out)), 2);
    const char *missing[] = {"get", "--rpc-prefix", prefix, "--party", "x",
                             NULL};
    CU_ASSERT_EQUAL(edrctl(missing, out, sizeof(out)), 2);
    const char *unknown[] = {"ping", "--rpc-prefix", prefix, "--bogus", NULL};
    CU_ASSERT_EQUAL(edrctl(unknown, out, sizeof(out)), 2);

    /* nobody answers: exit 3 after --timeout-ms */
    const char *lonely[] = {"ping",         "--rpc-prefix", "rpctest-nobody",
                            "--timeout-ms", "300",          NULL};
    CU_ASSERT_EQUAL(edrctl(lonely, out, sizeof(out)), 3);
}

/* ------------------------------------------------- private redis servers */

/* Starts redis-server on port with extra args (NULL-terminated), waits
 * until it accepts connections. pid or -1. */
static pid_t start_redis(int port, const char *const *extra)
{
    const char *bin = getenv("EDR_REDIS_SERVER");
    char portstr[16], dir[64];
    snprintf(portstr, sizeof(portstr), "%d", port);
    snprintf(dir, sizeof(dir), "/tmp/edr-rpc-redis-%d", port);
    mkdir(dir, 0700);
    const char *argv[32] = {bin ? bin : "redis-server",
                            "--port",
                            portstr,
                            "--bind",
                            "127.0.0.1",
                            "--save",
                            "",
                            "--appendonly",
                            "no",
                            "--dir",
                            dir,
                            "--logfile",
                            "",
                            "--loglevel",
                            "warning"};
    int n = 15;
    for (; extra && *extra && n < 30; extra++)
        argv[n++] = *extra;
    argv[n] = NULL;
    pid_t pid = fork();
    if (pid == 0) {
        int fd = open("/dev/null", O_WRONLY);
        if (fd >= 0) {
            dup2(fd, 1);
            dup2(fd, 2);
        }
        execvp(argv[0], (char *const *)argv);
        _exit(127);
    }
    if (pid < 0)
        return -1;
    for (int i = 0; i < 100; i++) {
        redisContext *c = redisConnect("127.0.0.1", port);
        int ok = c && !c->err;
        if (c)
            redisFree(c);
        if (ok)
            return pid;
        edr_sleep_ms(50);
    }
    kill(pid, SIGKILL);
    waitpid(pid, NULL, 0);
    return -1;
}

static void stop_redis(pid_t pid)
{
    if (pid <= 0)
        return;
    kill(pid, SIGKILL); /* abrupt, like a crash */
    waitpid(pid, NULL, 0);
}

static int wait_connected(struct rpc_server *s, int want, int ms)
{
    int64_t until = edr_clock_ms() + ms;
    while (rpc_server_connected(s) != want && edr_clock_ms() < until)
        edr_sleep_ms(20);
    return rpc_server_connected(s) == want;
}

/* Waits until s has failed at least n more times (failed connects plus
 * dropped connections) than `since`; 1 when it did within ms. */
struct failures_wait {
    struct rpc_server *s;
    unsigned long long want;
};

static unsigned long long failures_of(struct rpc_server *s)
{
    struct rpc_server_stats st_;
    rpc_server_get_stats(s, &st_);
    return st_.connect_failures + st_.losses;
}

static int failures_reached(void *arg)
{
    struct failures_wait *w = arg;
    return failures_of(w->s) >= w->want;
}

static int wait_failures(struct rpc_server *s, unsigned long long n, int ms)
{
    struct failures_wait w = {s, failures_of(s) + n};
    return wait_for(failures_reached, &w, ms);
}

/* Counts lines of a file containing needle. */
static int count_lines(const char *path, const char *needle)
{
    FILE *f = fopen(path, "r");
    char line[2048];
    int n = 0;
    if (!f)
        return -1;
    while (fgets(line, sizeof(line), f))
        n += strstr(line, needle) != NULL;
    fclose(f);
    return n;
}

/* Redis killed and restarted while a responder runs: it reconnects and
 * answers again, logging the outage once and the recovery once. */
static void test_restart(void)
{
    char url[128], logpath[128];
    snprintf(url, sizeof(url), "redis://127.0.0.1:%d/0", RESTART_PORT);
    snprintf(logpath, sizeof(logpath), "/tmp/edr-rpc-restart-%ld.log",
             (long)getpid());
    pid_t pid = start_redis(RESTART_PORT, NULL);
    CU_ASSERT_TRUE_FATAL(pid > 0);

    /* capture this responder's log lines */
    fflush(stderr);
    int saved = dup(2);
    int fd = open(logpath, O_WRONLY | O_CREAT | O_TRUNC, 0600);
    dup2(fd, 2);
    close(fd);

    struct config c2 = cfg;
    c2.redis_url = url;
    c2.rpc_prefix = (char *)"rpctest";
    char err[256];
    struct rpc_server *s = rpc_server_start(&c2, st, err, sizeof(err));
    redisContext *c = connect_url(url);
    char *first = s && c && wait_connected(s, 1, 5000)
                      ? call_on(c, "rpctest:requests", "rpctest",
                                "{\"id\":\"%s\",\"reply_to\":\"%s\","
                                "\"op\":\"ping\"}",
                                "5", NULL)
                      : NULL;
    int ok_before = first != NULL;
    free(first);
    if (c)
        redisFree(c);

    for (int round = 0; round < 2; round++) {
        stop_redis(pid);
        pid = -1;
        int went_down = s && wait_connected(s, 0, 8000);
        /* several reconnect attempts fail meanwhile (logged once) */
        int retried = s && wait_failures(s, 3, 10000);
        CU_ASSERT_TRUE(retried);
        pid = start_redis(RESTART_PORT, NULL);
        int came_back = pid > 0 && s && wait_connected(s, 1, 10000);
        c = connect_url(url);
        char *raw = c ? call_on(c, "rpctest:requests", "rpctest",
                                "{\"id\":\"%s\",\"reply_to\":\"%s\",\"op\":"
                                "\"count\"}",
                                "10", NULL)
                      : NULL;
        if (c)
            redisFree(c);
        CU_ASSERT_TRUE(went_down);
        CU_ASSERT_TRUE(came_back);
        CU_ASSERT_PTR_NOT_NULL(raw);
        free(raw);
    }
    rpc_server_stop(s);
    stop_redis(pid);

    fflush(stderr);
    dup2(saved, 2);
    close(saved);
    CU_ASSERT_TRUE(ok_before);
    /* two outages: two lines each way, however many attempts failed */
    int down = count_lines(logpath, "unavailable (");
    int up = count_lines(logpath, "available again");
    if (down != 2 || up != 2)
        fprintf(stderr, "\n  log has %d outage and %d recovery lines\n", down,
                up);
    CU_ASSERT_EQUAL(down, 2);
    CU_ASSERT_EQUAL(up, 2);
    unlink(logpath);
}

static char *ping_via(const char *url, const char *db_url)
{
    struct config c2 = cfg;
    char err[256];
    c2.redis_url = (char *)url;
    c2.rpc_prefix = (char *)"rpctest";
    c2.rpc_threads = 2;
    struct rpc_server *s = rpc_server_start(&c2, st, err, sizeof(err));
    if (!s)
        return NULL;
    char *raw = NULL;
    redisContext *c = connect_url(db_url);
    if (c && wait_connected(s, 1, 5000))
        raw = call_on(c, "rpctest:requests", "rpctest",
                      "{\"id\":\"%s\",\"reply_to\":\"%s\",\"op\":\"ping\"}",
                      "5", NULL);
    if (c)
        redisFree(c);
    rpc_server_stop(s);
    return raw;
}

/* Password and ACL user authentication, database selection, and a wrong
 * password refused with a clear reason. */
static void test_auth(void)
{
    static const char *const extra[] = {"--requirepass", "s3cret-pw", NULL};
    pid_t pid = start_redis(AUTH_PORT, extra);
    CU_ASSERT_TRUE_FATAL(pid > 0);
    char url[160], url2[160];

    /* an ACL user alongside the default user's password */
    snprintf(url, sizeof(url), "redis://:s3cret-pw@127.0.0.1:%d/0", AUTH_PORT);
    redisContext *admin = connect_url(url);
    CU_ASSERT_PTR_NOT_NULL_FATAL(admin);
    redisReply *r = redisCommand(admin, "ACL SETUSER alice on >al%%ce-pw ~* "
                                        "&* +@all");
    CU_ASSERT_TRUE(r && r->type == REDIS_REPLY_STATUS);
    if (r)
        freeReplyObject(r);
    redisFree(admin);

    /* :password */
    char *raw = ping_via(url, url);
    CU_ASSERT_PTR_NOT_NULL(raw);
    free(raw);

    /* user:password (percent-encoded '%'), database 3 */
    snprintf(url, sizeof(url), "redis://alice:al%%25ce-pw@127.0.0.1:%d/3",
             AUTH_PORT);
    raw = ping_via(url, url);
    CU_ASSERT_PTR_NOT_NULL(raw);
    free(raw);
    /* ... and the requests really went to database 3: nobody answers
     * database 0's queue with that URL */
    snprintf(url2, sizeof(url2), "redis://alice:al%%25ce-pw@127.0.0.1:%d/0",
             AUTH_PORT);
    {
        struct config c2 = cfg;
        char err[256];
        c2.redis_url = url;
        c2.rpc_prefix = (char *)"rpctest";
        struct rpc_server *s = rpc_server_start(&c2, st, err, sizeof(err));
        redisContext *c = connect_url(url2);
        CU_ASSERT_TRUE(wait_connected(s, 1, 5000));
        raw = c ? call_on(c, "rpctest:requests", "rpctest",
                          "{\"id\":\"%s\",\"reply_to\":\"%s\",\"op\":"
                          "\"ping\"}",
                          "1", NULL)
                : NULL;
        CU_ASSERT_PTR_NULL(raw);
        free(raw);
        if (c) {
            redisReply *d = redisCommand(c, "DEL rpctest:requests");
            if (d)
                freeReplyObject(d);
            redisFree(c);
        }
        rpc_server_stop(s);
    }

    /* wrong password: a clear AUTH failure, and a responder that never
     * counts as connected */
    struct redis_url u;
    char err[256];
    int failure = 0;
    snprintf(url2, sizeof(url2), "redis://alice:badpass123@127.0.0.1:%d/0",
             AUTH_PORT);
    CU_ASSERT_EQUAL_FATAL(redis_url_parse(url2, &u, err, sizeof(err)), 0);
    redisContext *c = redis_url_connect(&u, 2000, &failure, err, sizeof(err));
    CU_ASSERT_PTR_NULL(c);
    CU_ASSERT_EQUAL(failure, REDIS_URL_AUTH);
    CU_ASSERT_PTR_NOT_NULL(strstr(err, "AUTH refused"));
    CU_ASSERT_PTR_NULL(strstr(err, "badpass123"));
    if (c)
        redisFree(c);
    redis_url_clear(&u);
    /* no password at all against a server that wants one */
    snprintf(url2, sizeof(url2), "redis://127.0.0.1:%d/0", AUTH_PORT);
    struct config c2 = cfg;
    c2.redis_url = url2;
    struct rpc_server *s = rpc_server_start(&c2, st, err, sizeof(err));
    CU_ASSERT_PTR_NOT_NULL_FATAL(s);
    /* BRPOP gets NOAUTH: the connection is dropped, again and again, and
     * a request waiting in the queue is never answered */
    CU_ASSERT_TRUE(wait_failures(s, 2, 10000));
    snprintf(url, sizeof(url), "redis://:s3cret-pw@127.0.0.1:%d/0", AUTH_PORT);
    redisContext *pw = connect_url(url);
    CU_ASSERT_PTR_NOT_NULL_FATAL(pw);
    raw = call_on(pw, "rpctest:requests", "rpctest",
                  "{\"id\":\"%s\",\"reply_to\":\"%s\",\"op\":\"ping\"}", "1",
                  NULL);
    CU_ASSERT_PTR_NULL(raw);
    free(raw);
    del_key(pw, "rpctest:requests");
    redisFree(pw);
    rpc_server_stop(s);

    snprintf(url2, sizeof(url2), "redis://:wrong@127.0.0.1:%d/0", AUTH_PORT);
    c2.redis_url = url2;
    s = rpc_server_start(&c2, st, err, sizeof(err));
    CU_ASSERT_PTR_NOT_NULL_FATAL(s);
    /* AUTH refused at connect: failed connects, never connected */
    CU_ASSERT_TRUE(wait_failures(s, 2, 10000));
    CU_ASSERT_FALSE(rpc_server_connected(s));
    struct rpc_server_stats stats;
    rpc_server_get_stats(s, &stats);
    CU_ASSERT_TRUE(stats.connect_failures >= 2);
    rpc_server_stop(s);

    /* a bad URL is a setting error at start */
    c2.redis_url = (char *)"redis://host:notaport";
    CU_ASSERT_PTR_NULL(rpc_server_start(&c2, st, err, sizeof(err)));
    CU_ASSERT_PTR_NOT_NULL(strstr(err, "port"));
    stop_redis(pid);
}

/* ------------------------------------------------------ v2 reply rules */

struct refused_wait {
    struct rpc_server *s;
    unsigned long long want;
};

static int refused_reached(void *arg)
{
    struct refused_wait *w = arg;
    struct rpc_server_stats stats;
    rpc_server_get_stats(w->s, &stats);
    return stats.refused >= w->want;
}

static unsigned long long refused_now(struct rpc_server *s)
{
    struct rpc_server_stats stats;
    rpc_server_get_stats(s, &stats);
    return stats.refused;
}

static long long int_cmd(redisContext *c, const char *cmd, const char *key)
{
    const char *argv[2] = {cmd, key};
    redisReply *r = redisCommandArgv(c, 2, argv, NULL);
    long long v = r && r->type == REDIS_REPLY_INTEGER ? r->integer : -99;
    if (r)
        freeReplyObject(r);
    return v;
}

static void del_key(redisContext *c, const char *key)
{
    const char *argv[2] = {"DEL", key};
    redisReply *r = redisCommandArgv(c, 2, argv, NULL);
    if (r)
        freeReplyObject(r);
}

/* A reply_to outside <prefix>:reply: gets no reply anywhere, and the drop
 * is counted (rpc stats and the edr_lookups_dropped_total metric). */
static void test_reply_to_foreign(void)
{
    char req[512], foreign[160], ours[160];
    snprintf(foreign, sizeof(foreign), "%s-other:reply:f1", prefix);
    snprintf(ours, sizeof(ours), "%s:reply:f1", prefix);
    uint64_t dropped0 = metrics_get_lookups_dropped("reply_to_refused");
    struct refused_wait w = {srv, refused_now(srv) + 2};
    snprintf(req, sizeof(req),
             "{\"id\":\"f1\",\"reply_to\":\"%s\",\"op\":\"ping\"}", foreign);
    CU_ASSERT_EQUAL_FATAL(push(cli, queue, req, strlen(req)), 0);
    /* malformed, with a foreign reply_to: no error reply there either */
    snprintf(req, sizeof(req),
             "{\"id\":\"f2\",\"reply_to\":\"%s\",\"op\":\"nope\"}", foreign);
    CU_ASSERT_EQUAL_FATAL(push(cli, queue, req, strlen(req)), 0);
    CU_ASSERT_TRUE(wait_for(refused_reached, &w, 10000));
    CU_ASSERT_TRUE(metrics_get_lookups_dropped("reply_to_refused") >=
                   dropped0 + 2);
    CU_ASSERT_EQUAL(int_cmd(cli, "EXISTS", foreign), 0);
    CU_ASSERT_EQUAL(int_cmd(cli, "EXISTS", ours), 0);
    char *text = NULL;
    size_t len = 0;
    CU_ASSERT_EQUAL_FATAL(metrics_render(&text, &len), 0);
    CU_ASSERT_PTR_NOT_NULL(
        strstr(text, "edr_lookups_dropped_total{reason=\"reply_to_refused\"}"));
    free(text);
    /* and the responder still answers */
    struct reply_msg m;
    CU_ASSERT_EQUAL_FATAL(call_decoded("{\"id\":\"%s\",\"reply_to\":\"%s\","
                                       "\"op\":\"ping\"}",
                                       &m),
                          0);
    reply_msg_clear(&m);
}

/* A reply_to naming a hash or a string keeps its value and its expiry
 * (v1 ran EXPIRE 60 after the failed LPUSH: the key vanished a minute
 * later). A missing reply_to and a list are still answered. */
static void test_reply_to_not_list(void)
{
    char hkey[160], skey[160], req[512];
    snprintf(hkey, sizeof(hkey), "%s:reply:a-hash", prefix);
    snprintf(skey, sizeof(skey), "%s:reply:a-string", prefix);
    const char *hset[4] = {"HSET", hkey, "field", "kept"};
    const char *set[5] = {"SET", skey, "kept-too", "EX", "1000"};
    const char *hexp[3] = {"EXPIRE", hkey, "1000"};
    redisReply *r = redisCommandArgv(cli, 4, hset, NULL);
    CU_ASSERT_TRUE(r && r->type == REDIS_REPLY_INTEGER);
    freeReplyObject(r);
    r = redisCommandArgv(cli, 3, hexp, NULL);
    freeReplyObject(r);
    r = redisCommandArgv(cli, 5, set, NULL);
    CU_ASSERT_TRUE(r && r->type == REDIS_REPLY_STATUS);
    freeReplyObject(r);

    struct refused_wait w = {srv, refused_now(srv) + 3};
    snprintf(req, sizeof(req),
             "{\"id\":\"h\",\"reply_to\":\"%s\",\"op\":\"ping\"}", hkey);
    CU_ASSERT_EQUAL_FATAL(push(cli, queue, req, strlen(req)), 0);
    snprintf(req, sizeof(req),
             "{\"id\":\"s\",\"reply_to\":\"%s\",\"op\":\"count\"}", skey);
    CU_ASSERT_EQUAL_FATAL(push(cli, queue, req, strlen(req)), 0);
    /* an error reply is refused the same way */
    snprintf(req, sizeof(req),
             "{\"id\":\"s2\",\"reply_to\":\"%s\",\"op\":\"bogus\"}", skey);
    CU_ASSERT_EQUAL_FATAL(push(cli, queue, req, strlen(req)), 0);
    CU_ASSERT_TRUE(wait_for(refused_reached, &w, 10000));

    long long httl = int_cmd(cli, "TTL", hkey);
    long long sttl = int_cmd(cli, "TTL", skey);
    CU_ASSERT_TRUE(httl > 900 && httl <= 1000);
    CU_ASSERT_TRUE(sttl > 900 && sttl <= 1000);
    const char *hget[3] = {"HGET", hkey, "field"};
    r = redisCommandArgv(cli, 3, hget, NULL);
    CU_ASSERT_TRUE(r && r->type == REDIS_REPLY_STRING &&
                   strcmp(r->str, "kept") == 0);
    freeReplyObject(r);
    const char *get[2] = {"GET", skey};
    r = redisCommandArgv(cli, 2, get, NULL);
    CU_ASSERT_TRUE(r && r->type == REDIS_REPLY_STRING &&
                   strcmp(r->str, "kept-too") == 0);
    freeReplyObject(r);
    CU_ASSERT_EQUAL(int_cmd(cli, "HLEN", hkey), 1);
    del_key(cli, hkey);
    del_key(cli, skey);
}

/* The server keeps its own copy of EDR_RPC_PREFIX: the caller's buffer
 * may change after the start (lookup_bench passes a temporary). */
static void test_prefix_copied(void)
{
    char pfx[128], keep[128], q[160], err[256];
    snprintf(pfx, sizeof(pfx), "%s-copy", prefix);
    snprintf(keep, sizeof(keep), "%s", pfx);
    snprintf(q, sizeof(q), "%s:requests", keep);
    struct config c2 = cfg;
    c2.rpc_prefix = pfx;
    c2.rpc_threads = 1;
    struct rpc_server *s = rpc_server_start(&c2, st, err, sizeof(err));
    CU_ASSERT_PTR_NOT_NULL_FATAL(s);
    memset(pfx, 'z', sizeof(pfx) - 1);
    pfx[sizeof(pfx) - 1] = '\0';
    char *raw = wait_for(srv_is_connected, s, 5000)
                    ? call_on(cli, q, keep,
                              "{\"id\":\"%s\",\"reply_to\":\"%s\","
                              "\"op\":\"ping\"}",
                              "10", NULL)
                    : NULL;
    CU_ASSERT_PTR_NOT_NULL(raw);
    free(raw);
    rpc_server_stop(s);
}

/* ---------------------------------------------------- store errors */

/* A store whose every read fails with a libpq-like message naming a host,
 * a port and a user, with the status chosen per op. */
static const char leaky_msg[] =
    "connection to server at \"10.1.2.3\", port 5432 failed: host=10.1.2.3 "
    "user=bob password authentication failed; SELECT entry FROM "
    "/var/lib/edr/secret.json";

static int leaky_get(struct store *s, const struct edr_key *k,
                     struct store_record *out, struct store_err *err)
{
    (void)s, (void)k, (void)out;
    return store_fail(err, STORE_TRANSIENT, "%s", leaky_msg);
}

static int leaky_get_tid(struct store *s, const struct edr_key *k, char **out,
                         struct store_err *err)
{
    (void)s, (void)k, (void)out;
    return store_fail(err, STORE_FATAL, "%s", leaky_msg);
}

static int leaky_count(struct store *s, const struct store_filter *sub,
                       uint64_t *out, struct store_err *err)
{
    (void)s, (void)sub, (void)out;
    return store_fail(err, STORE_INVALID, "%s", leaky_msg);
}

static int leaky_list(struct store *s, const struct store_filter *sub,
                      const char *cursor, size_t limit, struct store_list *out,
                      struct store_err *err)
{
    (void)s, (void)sub, (void)cursor, (void)limit, (void)out;
    return store_fail(err, STORE_CONFLICT, "%s", leaky_msg);
}

static const struct store_ops leaky_ops = {
    .name = "leaky",
    .get = leaky_get,
    .get_transfer_id = leaky_get_tid,
    .count = leaky_count,
    .list = leaky_list,
};

/* Store errors reach the log with the request id, never the reply: codes
 * unavailable (TRANSIENT), bad_request (INVALID), internal (others), and
 * no address, port, user, SQL or path in any reply. */
static void test_store_errors(void)
{
    static const struct {
        const char *op_and_args;
        const char *code;
    } cases[] = {
        {"\"op\":\"get_connection\",\"args\":{\"counter_party_id\":\"a\","
         "\"counter_party_address\":\"b\",\"query_checksum\":\"c\","
         "\"policy_checksum\":\"d\"}",
         "unavailable"},
        {"\"op\":\"get_connection_transfer_id\",\"args\":{"
         "\"counter_party_id\":\"a\",\"counter_party_address\":\"b\","
         "\"query_checksum\":\"c\",\"policy_checksum\":\"d\"}",
         "internal"},
        {"\"op\":\"count\"", "bad_request"},
        {"\"op\":\"list_connections\"", "internal"},
    };
    static const char *const leaks[] = {"10.1.2.3", "5432",     "bob",
                                        "SELECT",   "/var/lib", "password"};
    struct store leaky = {&leaky_ops};
    char logpath[128], pfx[128], q[160], err[256];
    snprintf(logpath, sizeof(logpath), "/tmp/edr-rpc-leak-%ld.log",
             (long)getpid());
    snprintf(pfx, sizeof(pfx), "%s-leaky", prefix);
    snprintf(q, sizeof(q), "%s:requests", pfx);

    fflush(stderr);
    int saved = dup(2);
    int fd = open(logpath, O_WRONLY | O_CREAT | O_TRUNC, 0600);
    dup2(fd, 2);
    close(fd);

    struct config c2 = cfg;
    c2.rpc_prefix = pfx;
    c2.rpc_threads = 1;
    struct rpc_server *s = rpc_server_start(&c2, &leaky, err, sizeof(err));
    int up = s && wait_for(srv_is_connected, s, 5000);
    char *raw[4] = {NULL, NULL, NULL, NULL};
    char ids[4][64];
    for (size_t i = 0; up && i < 4; i++) {
        char fmt[512];
        snprintf(fmt, sizeof(fmt), "{\"id\":\"%%s\",\"reply_to\":\"%%s\",%s}",
                 cases[i].op_and_args);
        raw[i] = call_on(cli, q, pfx, fmt, "10", ids[i]);
    }
    rpc_server_stop(s);
    fflush(stderr);
    dup2(saved, 2);
    close(saved);

    CU_ASSERT_TRUE_FATAL(up);
    for (size_t i = 0; i < 4; i++) {
        CU_ASSERT_PTR_NOT_NULL_FATAL(raw[i]);
        struct reply_msg m;
        CU_ASSERT_EQUAL_FATAL(
            reply_decode(&m, raw[i], strlen(raw[i]), err, sizeof(err)), 0);
        CU_ASSERT_EQUAL(m.status, REPLY_ERROR);
        CU_ASSERT_PTR_NOT_NULL_FATAL(m.code);
        CU_ASSERT_STRING_EQUAL(m.code, cases[i].code);
        for (size_t j = 0; j < sizeof(leaks) / sizeof(leaks[0]); j++) {
            if (strstr(raw[i], leaks[j]))
                fprintf(stderr, "\n  reply leaks \"%s\": %s\n", leaks[j],
                        raw[i]);
            CU_ASSERT_PTR_NULL(strstr(raw[i], leaks[j]));
        }
        reply_msg_clear(&m);
        free(raw[i]);
    }
    /* the detail went to the log, with the request id (the first line;
     * the rest fall in the rate limit) */
    char needle[128];
    snprintf(needle, sizeof(needle), "\"%s\" answered unavailable", ids[0]);
    CU_ASSERT_EQUAL(count_lines(logpath, needle), 1);
    CU_ASSERT_EQUAL(count_lines(logpath, "host=10.1.2.3 user=bob"), 1);
    unlink(logpath);
}

static void register_suites(void)
{
    CU_pSuite s = CU_add_suite("rpc", suite_init, suite_clean);
    CU_add_test(s, "ping", test_ping);
    CU_add_test(s, "get_connection and transfer id", test_get);
    CU_add_test(s, "not_found forms", test_not_found);
    CU_add_test(s, "count", test_count);
    CU_add_test(s, "list paging", test_list);
    CU_add_test(s, "list default limit and empty", test_list_default_limit);
    CU_add_test(s, "error replies", test_errors);
    CU_add_test(s, "deadline", test_deadline);
    CU_add_test(s, "reply ttl", test_reply_ttl);
    CU_add_test(s, "reply_to is the queue", test_reply_to_queue);
    CU_add_test(s, "reply_to outside the prefix", test_reply_to_foreign);
    CU_add_test(s, "reply_to is a hash or a string", test_reply_to_not_list);
    CU_add_test(s, "store errors stay in the log", test_store_errors);
    CU_add_test(s, "the prefix is copied", test_prefix_copied);
    CU_add_test(s, "malformed flood", test_flood);
    CU_add_test(s, "edrctl lookups", test_edrctl);
    CU_add_test(s, "redis restart", test_restart);
    CU_add_test(s, "authentication", test_auth);
}

int main(void)
{
    signal(SIGPIPE, SIG_IGN);
    static const cunit_register_fn regs[] = {register_suites, NULL};
    return cunit_main(regs);
}

/* ingest_model.c: see ingest_model.h. */
#include "tests/support/ingest_model.h"

#include "base/clock.h"
#include "schemas/edr_key.h"
#include "schemas/sha256.h"
#include "stores/store.h"
#include "tests/support/cunit_main.h"
#include "tests/support/kafka_util.h"
#include "tests/support/ops_util.h"
#include "tests/support/proc_util.h"
#include "worker/redis_url.h"
#include <CUnit/CUnit.h>
#include <hiredis/hiredis.h>
#include <inttypes.h>
#include <librdkafka/rdkafka.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>
#include <yajl/yajl_tree.h>

/* ---- the model ----------------------------------------------------------- */

unsigned model_rnd(struct model *m)
{
    m->rng = m->rng * 1103515245u + 12345u;
    return (m->rng >> 8) & 0xffffff;
}

void model_init(struct model *m, const char *tag, unsigned seed, int n_keys)
{
    memset(m, 0, sizeof(*m));
    m->rng = seed;
    m->n_keys = n_keys > MODEL_MAX_KEYS ? MODEL_MAX_KEYS : n_keys;
    for (int k = 0; k < m->n_keys; k++) {
        struct conn *c = &m->c[k];
        snprintf(c->party, sizeof(c->party), "BPNL-%s-%02d", tag, k % 7);
        snprintf(c->address, sizeof(c->address),
                 "https://provider-%d.example.com/dsp", k);
        snprintf(c->query, sizeof(c->query), "q%d", k);
        snprintf(c->policy, sizeof(c->policy), "p%d", k % 3);
    }
}

struct edr_key model_conn_key(const struct conn *c)
{
    return (struct edr_key){c->party, c->address, c->query, c->policy};
}

/* Writes the next event into buf and applies it to the model. *k gets
 * the connection. Kinds: negotiated, renewed, expired (current transfer),
 * stale expired (an older transfer: no change), expired without transfer
 * id, and an exact duplicate of the connection's previous event. */
size_t model_next(struct model *m, char *buf, size_t cap, int *k)
{
    int key = (int)(model_rnd(m) % m->n_keys);
    struct conn *c = &m->c[key];
    unsigned kind = model_rnd(m) % 10;
    int n = 0;
    *k = key;
    m->n_events++;
    if (kind == 9 && c->last_event[0]) {
        /* Redelivery of the same event: applying it again changes
         * nothing, in the worker as in the model. */
        n = snprintf(buf, cap, "%s", c->last_event);
        return (size_t)n;
    }
    if (kind <= 4 || !c->present) {
        int v = ++c->next_version;
        const char *type =
            c->present && kind % 2 ? "edr.renewed" : "edr.negotiated";
        snprintf(c->tid, sizeof(c->tid), "tp-%d-%d", key, v);
        n = snprintf(buf, cap,
                     "{\"specversion\":\"1.0\",\"id\":\"ev-%d\","
                     "\"source\":\"urn:test\",\"type\":\"%s\","
                     "\"data\":{\"counter_party_id\":\"%s\","
                     "\"counter_party_address\":\"%s\","
                     "\"query_checksum\":\"%s\",\"policy_checksum\":\"%s\","
                     "\"edr\":{\"@type\":\"EDR\",\"@context\":{\"a\":\"b\"},"
                     "\"providerId\":\"P\",\"transferProcessId\":\"%s\","
                     "\"endpoint\":\"https://dp/%d\",\"n\":%d}}}",
                     m->n_events, type, c->party, c->address, c->query,
                     c->policy, c->tid, key, v);
        c->present = 1;
        c->version = v;
    } else if (kind <= 6) {
        n = snprintf(buf, cap,
                     "{\"specversion\":\"1.0\",\"id\":\"ev-%d\","
                     "\"source\":\"urn:test\",\"type\":\"edr.expired\","
                     "\"data\":{\"counter_party_id\":\"%s\","
                     "\"counter_party_address\":\"%s\","
                     "\"query_checksum\":\"%s\",\"policy_checksum\":\"%s\","
                     "\"transfer_process_id\":\"%s\"}}",
                     m->n_events, c->party, c->address, c->query, c->policy,
                     c->tid);
        c->present = 0;
    } else if (kind == 7) {
        /* Stale: a transfer this connection had before. */
        n = snprintf(buf, cap,
                     "{\"specversion\":\"1.0\",\"id\":\"ev-%d\","
                     "\"source\":\"urn:test\",\"type\":\"edr.expired\","
                     "\"data\":{\"counter_party_id\":\"%s\","
                     "\"counter_party_address\":\"%s\","
                     "\"query_checksum\":\"%s\",\"policy_checksum\":\"%s\","
                     "\"transfer_process_id\":\"tp-%d-0\"}}",
                     m->n_events, c->party, c->address, c->query, c->policy,
                     key);
    } else {
        n = snprintf(buf, cap,
                     "{\"specversion\":\"1.0\",\"id\":\"ev-%d\","
                     "\"source\":\"urn:test\",\"type\":\"edr.expired\","
                     "\"data\":{\"counter_party_id\":\"%s\","
                     "\"counter_party_address\":\"%s\","
                     "\"query_checksum\":\"%s\",\"policy_checksum\":\"%s\"}}",
                     m->n_events, c->party, c->address, c->query, c->policy);
        c->present = 0;
    }
    snprintf(c->last_event, sizeof(c->last_event), "%s", buf);
    return (size_t)n;
}

int model_count(const struct model *m)
{
    int n = 0;
    for (int k = 0; k < m->n_keys; k++)
        n += m->c[k].present;
    return n;
}

const char *model_str_of(yajl_val v)
{
    const char *s = v ? YAJL_GET_STRING(v) : NULL;
    return s ? s : "";
}

/* Checks one stored entry (a parsed object) against the model. */
int model_entry_matches(yajl_val obj, const struct conn *c)
{
    const char *tp_path[] = {"transferProcessId", NULL};
    const char *n_path[] = {"n", NULL};
    const char *type_path[] = {"@type", NULL};
    const char *prov_path[] = {"providerId", NULL};
    const char *ctx_path[] = {"@context", NULL};
    yajl_val tp = yajl_tree_get(obj, tp_path, yajl_t_string);
    yajl_val n = yajl_tree_get(obj, n_path, yajl_t_number);
    return tp && strcmp(model_str_of(tp), c->tid) == 0 && n &&
           YAJL_IS_INTEGER(n) && YAJL_GET_INTEGER(n) == c->version &&
           !yajl_tree_get(obj, type_path, yajl_t_any) &&
           !yajl_tree_get(obj, prov_path, yajl_t_any) &&
           !yajl_tree_get(obj, ctx_path, yajl_t_any);
}

/* Compares a store with the model; returns the number of differences
 * (printing the first few when loud). */
int model_verify_store(struct store *st, const struct model *m, int loud)
{
    int bad = 0;
    for (int k = 0; k < m->n_keys; k++) {
        const struct conn *c = &m->c[k];
        struct edr_key key = model_conn_key(c);
        struct store_record r = {0};
        struct store_err err = {0};
        int rc = st->ops->get(st, &key, &r, &err);
        int ok;
        if (!c->present) {
            ok = rc == STORE_NOT_FOUND;
        } else if (rc != STORE_OK) {
            ok = 0;
        } else {
            yajl_val v = yajl_tree_parse(r.entry_json, NULL, 0);
            ok = v && model_entry_matches(v, c) &&
                 strcmp(r.transfer_id, c->tid) == 0;
            yajl_tree_free(v);
        }
        if (!ok && loud && bad < 5)
            fprintf(stderr, "\n  key %d: want %s %s, store rc %d tid %s", k,
                    c->present ? "present" : "absent", c->tid, rc,
                    r.transfer_id ? r.transfer_id : "-");
        bad += !ok;
        store_record_clear(&r);
    }
    uint64_t n = 0;
    struct store_err err = {0};
    if (st->ops->count(st, STORE_FILTER_PARTY(NULL), &n, &err) != STORE_OK ||
        n != (uint64_t)model_count(m)) {
        if (loud)
            fprintf(stderr, "\n  count %" PRIu64 ", want %d", n,
                    model_count(m));
        bad++;
    }
    return bad;
}

/* ---- Kafka ----------------------------------------------------------------
 */

void model_dr_cb(rd_kafka_t *rk, const rd_kafka_message_t *msg, void *op)
{
    (void)rk;
    (void)op;
    struct sent *s = msg->_private;
    if (s) {
        s->partition = msg->partition;
        s->offset = msg->offset;
        s->err = msg->err ? -1 : 1;
    }
}

/* ---- lookups over Redis ---- */

redisContext *model_redis_connect(void)
{
    const char *url = test_env("EDR_REDIS_URL");
    struct redis_url u;
    char err[256];
    int failure;
    if (!url || redis_url_parse(url, &u, err, sizeof(err)) != 0) {
        fprintf(stderr, "\n  EDR_REDIS_URL: %s\n", url ? err : "not set");
        return NULL;
    }
    redisContext *c = redis_url_connect(&u, 10000, &failure, err, sizeof(err));
    redis_url_clear(&u);
    if (!c)
        fprintf(stderr, "\n  redis: %s\n", err);
    return c;
}

/* One request; the parsed reply (yajl_tree_free) or NULL. */
yajl_val model_rpc_call(redisContext *rc, const char *prefix, const char *op,
                        const struct conn *c)
{
    static int seq;
    char req[2048], reply_to[128], list[128];
    snprintf(reply_to, sizeof(reply_to), "%s:reply:%d", prefix, ++seq);
    snprintf(list, sizeof(list), "%s:requests", prefix);
    if (c)
        snprintf(req, sizeof(req),
                 "{\"id\":\"r%d\",\"reply_to\":\"%s\",\"op\":\"%s\","
                 "\"args\":{\"counter_party_id\":\"%s\","
                 "\"counter_party_address\":\"%s\",\"query_checksum\":\"%s\","
                 "\"policy_checksum\":\"%s\"}}",
                 seq, reply_to, op, c->party, c->address, c->query, c->policy);
    else
        snprintf(req, sizeof(req),
                 "{\"id\":\"r%d\",\"reply_to\":\"%s\",\"op\":\"%s\","
                 "\"args\":{}}",
                 seq, reply_to, op);
    freeReplyObject(redisCommand(rc, "LPUSH %s %s", list, req));
    redisReply *rep = redisCommand(rc, "BLPOP %s 5", reply_to);
    yajl_val v = NULL;
    if (rep && rep->type == REDIS_REPLY_ARRAY && rep->elements == 2)
        v = yajl_tree_parse(rep->element[1]->str, NULL, 0);
    freeReplyObject(rep);
    return v;
}

int model_verify_rpc(redisContext *rc, const char *prefix,
                     const struct model *m, int loud)
{
    const char *status_path[] = {"status", NULL};
    const char *result_path[] = {"result", NULL};
    int bad = 0;
    for (int k = 0; k < m->n_keys; k++) {
        const struct conn *c = &m->c[k];
        yajl_val v = model_rpc_call(rc, prefix, "get_connection", c);
        yajl_val st = v ? yajl_tree_get(v, status_path, yajl_t_string) : NULL;
        yajl_val res = v ? yajl_tree_get(v, result_path, yajl_t_object) : NULL;
        int ok =
            st && (c->present ? strcmp(model_str_of(st), "ok") == 0 && res &&
                                    model_entry_matches(res, c)
                              : strcmp(model_str_of(st), "not_found") == 0);
        if (!ok && loud && bad < 5)
            fprintf(stderr, "\n  key %d: want %s %s, got %s", k,
                    c->present ? "present" : "absent", c->tid,
                    st ? model_str_of(st) : "no reply");
        bad += !ok;
        yajl_tree_free(v);
    }
    const char *count_path[] = {"result", NULL};
    yajl_val v = model_rpc_call(rc, prefix, "count", NULL);
    yajl_val n = v ? yajl_tree_get(v, count_path, yajl_t_number) : NULL;
    if (!n || YAJL_GET_INTEGER(n) != model_count(m)) {
        if (loud)
            fprintf(stderr, "\n  count %lld, want %d",
                    n ? YAJL_GET_INTEGER(n) : -1LL, model_count(m));
        bad++;
    }
    yajl_tree_free(v);
    return bad;
}

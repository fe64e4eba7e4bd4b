/* ingest_model.h: the model of a connection's life that the Kafka-loop
 * tests (test_ingest, test_restore) publish and check against: a fixed set
 * of connections, random negotiations, renewals, expiries (late ones
 * included) and duplicates, the state they must leave, and the checks of
 * a store or a lookup against it. One copy, used by both. */
#ifndef EDR_TESTS_INGEST_MODEL_H
#define EDR_TESTS_INGEST_MODEL_H

#include "schemas/edr_key.h"
#include "stores/store.h"

#include <hiredis/hiredis.h>
#include <librdkafka/rdkafka.h>
#include <stddef.h>
#include <stdint.h>
#include <yajl/yajl_tree.h>

#define MODEL_MAX_KEYS 64

struct conn {
    char party[48], address[64], query[24], policy[24];
    int present;
    char tid[48]; /* stored transferProcessId */
    int version;  /* n in the stored entry */
    int next_version;
    char last_event[1024]; /* for duplicates */
};

struct model {
    struct conn c[MODEL_MAX_KEYS];
    int n_keys; /* keys in use, <= MODEL_MAX_KEYS */
    unsigned rng;
    int n_events;
};

struct sent {
    int32_t partition;
    int64_t offset;
    int err;
};

unsigned model_rnd(struct model *m);
void model_init(struct model *m, const char *tag, unsigned seed, int n_keys);
struct edr_key model_conn_key(const struct conn *c);
size_t model_next(struct model *m, char *buf, size_t cap, int *k);
int model_count(const struct model *m);
const char *model_str_of(yajl_val v);
int model_entry_matches(yajl_val obj, const struct conn *c);
int model_verify_store(struct store *st, const struct model *m, int loud);
void model_dr_cb(rd_kafka_t *rk, const rd_kafka_message_t *msg, void *op);

redisContext *model_redis_connect(void);
yajl_val model_rpc_call(redisContext *rc, const char *prefix, const char *op,
                        const struct conn *c);
int model_verify_rpc(redisContext *rc, const char *prefix,
                     const struct model *m, int loud);

#endif

/* restore_util.c: see restore_util.h (moved from test_restore.c). */
#include "tests/support/restore_util.h"

#include "base/clock.h"
#include "schemas/edr_key.h"
#include "stores/store.h"
#include "tests/support/cunit_main.h"
#include "tests/support/kafka_util.h"
#include "tests/support/ops_util.h"
#include "tests/support/proc_util.h"
#include "worker/changelog_restore.h"

#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

rd_kafka_t *ru_producer_new(const char *brokers)
{
    static const char *const props[] = {"enable.idempotence", "true",
                                        "linger.ms", "1", NULL};
    return test_kafka_client_new(RD_KAFKA_PRODUCER, brokers, props, model_dr_cb,
                                 NULL, NULL, 0);
}

int ru_produce(rd_kafka_t *rk, const char *topic, const struct model *m, int k,
               const char *raw_key, const void *val, size_t len,
               const char *xtest, struct sent *s)
{
    char ckey[EDR_CONNECTION_KEY_LEN + 1];
    const char *key = raw_key;
    if (k >= 0) {
        struct edr_key ek = model_conn_key(&m->c[k]);
        edr_connection_key(&ek, ckey);
        key = ckey;
    }
    rd_kafka_headers_t *h = rd_kafka_headers_new(2);
    rd_kafka_header_add(h, "content-type", -1, "application/cloudevents+json",
                        -1);
    if (xtest)
        rd_kafka_header_add(h, "x-test", -1, xtest, -1);
    rd_kafka_resp_err_t err = rd_kafka_producev(
        rk, RD_KAFKA_V_TOPIC(topic), RD_KAFKA_V_MSGFLAGS(RD_KAFKA_MSG_F_COPY),
        RD_KAFKA_V_KEY(key, key ? strlen(key) : 0),
        RD_KAFKA_V_VALUE((void *)val, len), RD_KAFKA_V_HEADERS(h),
        RD_KAFKA_V_OPAQUE(s), RD_KAFKA_V_END);
    if (err) {
        rd_kafka_headers_destroy(h);
        return -1;
    }
    rd_kafka_poll(rk, 0);
    return 0;
}

int ru_produce_events(rd_kafka_t *rk, const char *topic, struct model *m, int n,
                      int delay_ms)
{
    for (int i = 0; i < n; i++) {
        char buf[1024];
        int k;
        size_t len = model_next(m, buf, sizeof(buf), &k);
        if (ru_produce(rk, topic, m, k, NULL, buf, len, NULL, NULL) != 0)
            return -1;
        if (delay_ms) {
            rd_kafka_poll(rk, 0);
            edr_sleep_ms((unsigned)delay_ms);
        }
    }
    return rd_kafka_flush(rk, 30000) == 0 ? 0 : -1;
}

int64_t ru_high_watermark(rd_kafka_t *rk, const char *topic, int32_t p)
{
    int64_t lo = -1, hi = -1;
    if (rd_kafka_query_watermark_offsets(rk, topic, p, &lo, &hi, 10000))
        return -1;
    return hi;
}

int ru_delete_records(rd_kafka_t *rk, const char *topic, int n_parts,
                      const int64_t *before)
{
    rd_kafka_topic_partition_list_t *l =
        rd_kafka_topic_partition_list_new(n_parts);
    for (int32_t p = 0; p < n_parts; p++)
        rd_kafka_topic_partition_list_add(l, topic, p)->offset = before[p];
    rd_kafka_DeleteRecords_t *dr = rd_kafka_DeleteRecords_new(l);
    rd_kafka_topic_partition_list_destroy(l);
    rd_kafka_queue_t *q = rd_kafka_queue_new(rk);
    rd_kafka_DeleteRecords(rk, &dr, 1, NULL, q);
    rd_kafka_DeleteRecords_destroy(dr);
    rd_kafka_event_t *ev = rd_kafka_queue_poll(q, 30000);
    int rc = -1;
    if (ev && !rd_kafka_event_error(ev)) {
        const rd_kafka_topic_partition_list_t *res =
            rd_kafka_DeleteRecords_result_offsets(
                rd_kafka_event_DeleteRecords_result(ev));
        rc = 0;
        for (int i = 0; res && i < res->cnt; i++)
            if (res->elems[i].err)
                rc = -1;
    }
    if (ev)
        rd_kafka_event_destroy(ev);
    rd_kafka_queue_destroy(q);
    return rc;
}

static int put_cb(const struct changelog_entry *e, void *user)
{
    struct store_err err;
    return store_put(user, &e->key, e->transfer_id, e->entry_json, e->entry_len,
                     &err) == STORE_OK
               ? 0
               : 1;
}

int ru_changelog_diff(const char *src, const char *cl, const char *group,
                      int n_parts, const struct model *m, const int64_t *want,
                      int loud)
{
    struct changelog_restore_conf conf = {.brokers =
                                              test_env("EDR_KAFKA_BROKERS"),
                                          .source_topic = src,
                                          .changelog_topic = cl,
                                          .group_id = group,
                                          .timeout_ms = 20000};
    struct changelog_restore_result r = {0};
    struct store_err err;
    char errstr[512];
    struct store *st = mem_store_open(&err);
    if (!st)
        return -1;
    int bad = -1;
    if (changelog_restore(&conf, put_cb, st, &r, errstr, sizeof(errstr)) ==
        CHANGELOG_OK) {
        bad = model_verify_store(st, m, loud);
        for (size_t i = 0; i < r.n_positions; i++)
            if (r.positions[i].next_offset != want[r.positions[i].partition]) {
                if (loud)
                    fprintf(stderr,
                            "\n  partition %d at %" PRId64 ", want %" PRId64,
                            (int)r.positions[i].partition,
                            r.positions[i].next_offset,
                            want[r.positions[i].partition]);
                bad++;
            }
        bad += r.n_positions != (size_t)n_parts;
        if (r.invalid)
            bad++;
        changelog_restore_result_clear(&r);
    } else if (loud) {
        fprintf(stderr, "\n  restore: %s", errstr);
    }
    store_close(st);
    return bad;
}

int ru_worker_run(struct ru_worker *w, const char *name, const char *store,
                  const char *path, const char *topic, const char *dlq,
                  const char *group, const char *extra1, const char *extra2)
{
    return ru_worker_run_args(w, name, store, path, topic, dlq, group, extra1,
                              extra2, NULL);
}

int ru_worker_run_args(struct ru_worker *w, const char *name, const char *store,
                       const char *path, const char *topic, const char *dlq,
                       const char *group, const char *extra1,
                       const char *extra2, const char *const *args)
{
    char e[10][320];
    snprintf(w->log, sizeof(w->log), "restore_%s_%d.log", name, (int)getpid());
    snprintf(w->http, sizeof(w->http), "127.0.0.1:%d", ops_free_port());
    snprintf(w->prefix, sizeof(w->prefix), "%s_%s", group, name);
    snprintf(e[0], sizeof(e[0]), "EDR_STORE=%s", store);
    snprintf(e[1], sizeof(e[1]), "EDR_FILE_PATH=%s", path ? path : "x.json");
    snprintf(e[2], sizeof(e[2]), "EDR_TOPIC=%s", topic);
    snprintf(e[3], sizeof(e[3]), "EDR_DLQ_TOPIC=%s", dlq);
    snprintf(e[4], sizeof(e[4]), "EDR_GROUP_ID=%s", group);
    snprintf(e[5], sizeof(e[5]), "EDR_HTTP_ADDR=%s", w->http);
    snprintf(e[6], sizeof(e[6]), "EDR_RPC_PREFIX=%s", w->prefix);
    snprintf(e[7], sizeof(e[7]), "EDR_WORKER_ID=%s", name);
    snprintf(e[8], sizeof(e[8]), "EDR_READY_MAX_LAG=0");
    const char *env[12] = {e[0], e[1], e[2], e[3], e[4],
                           e[5], e[6], e[7], e[8], NULL};
    int n = 9;
    if (extra1)
        env[n++] = extra1;
    if (extra2)
        env[n++] = extra2;
    env[n] = NULL;
    const char *bin = getenv("EDR_WORKER_BIN");
    w->pid = test_spawn(bin && *bin ? bin : "../edr-worker", args, env, w->log);
    return w->pid > 0 ? 0 : -1;
}

int ru_wait_log(const char *log, const char *what, int seconds)
{
    int64_t deadline = edr_clock_ms() + seconds * 1000;
    for (;;) { /* looks once even with seconds == 0 */
        FILE *f = fopen(log, "r");
        char line[4096];
        int found = 0;
        while (f && !found && fgets(line, sizeof(line), f))
            found = strstr(line, what) != NULL;
        if (f)
            fclose(f);
        if (found)
            return 0;
        if (edr_clock_ms() >= deadline)
            return -1;
        edr_sleep_ms(100);
    }
}

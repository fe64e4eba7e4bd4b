/* restore_util.h: what the changelog restore tests (test_restore,
 * test_restore_gap) share: producing model events, deleting a topic's
 * history, reading the changelog back against the model, and running
 * edr-worker processes.
 *
 * Part of the edr_test_support library. Blocking; one test thread. The
 * broker list comes from EDR_KAFKA_BROKERS. */
#ifndef EDR_TEST_RESTORE_UTIL_H
#define EDR_TEST_RESTORE_UTIL_H

#include "tests/support/ingest_model.h"

#include <librdkafka/rdkafka.h>
#include <stdint.h>
#include <sys/types.h>

/* An idempotent producer whose delivery reports go to model_dr_cb. */
rd_kafka_t *ru_producer_new(const char *brokers);

/* Produces value with the connection key of model key k (or raw_key when
 * k < 0) and the optional header x-test; s (may be NULL) gets the
 * delivery. 0 or -1. */
int ru_produce(rd_kafka_t *rk, const char *topic, const struct model *m, int k,
               const char *raw_key, const void *val, size_t len,
               const char *xtest, struct sent *s);

/* Produces n model events (delay_ms between them), then flushes. 0/-1. */
int ru_produce_events(rd_kafka_t *rk, const char *topic, struct model *m, int n,
                      int delay_ms);

/* High watermark of topic/p, or -1. */
int64_t ru_high_watermark(rd_kafka_t *rk, const char *topic, int32_t p);

/* Deletes every record of partitions 0..n_parts-1 below before[p]. 0/-1. */
int ru_delete_records(rd_kafka_t *rk, const char *topic, int n_parts,
                      const int64_t *before);

/* Restores the changelog cl of src (ownership group "<group>.changelog")
 * into a memory store: the number of differences with the model and with
 * the positions want[0..n_parts) (-1 when the read failed). */
int ru_changelog_diff(const char *src, const char *cl, const char *group,
                      int n_parts, const struct model *m, const int64_t *want,
                      int loud);

struct ru_worker {
    pid_t pid;
    char log[256];
    char http[64];
    char prefix[96];
};

/* Starts an edr-worker `name` (log restore_<name>_<pid>.log, a free HTTP
 * port, RPC prefix <group>_<name>) with the store (path for file), the
 * topics and group, EDR_READY_MAX_LAG=0 and up to two extra "NAME=value"
 * settings (may be NULL). 0, or -1. */
int ru_worker_run(struct ru_worker *w, const char *name, const char *store,
                  const char *path, const char *topic, const char *dlq,
                  const char *group, const char *extra1, const char *extra2);

/* ru_worker_run with command-line args (NULL-terminated, or NULL), e.g.
 * "-X", "session.timeout.ms=6000". */
int ru_worker_run_args(struct ru_worker *w, const char *name, const char *store,
                       const char *path, const char *topic, const char *dlq,
                       const char *group, const char *extra1,
                       const char *extra2, const char *const *args);

/* Waits up to seconds (looks once with 0) until the log file holds a line
 * with `what`. 0, or -1. */
int ru_wait_log(const char *log, const char *what, int seconds);

#endif

/* metrics.h: the worker's counters, gauges and histograms, exported in
 * Prometheus text format by worker/http.c (/metrics).
 *
 * Every function is cheap (atomics or a short mutex) and callable from any
 * thread; before metrics_init() they still count. */
#ifndef EDR_WORKER_METRICS_H
#define EDR_WORKER_METRICS_H

#include "schemas/event.h"

#include <stddef.h>
#include <stdint.h>

/* store_name: "memory", "file" or "postgres"; worker_id for build info. */
void metrics_init(const char *store_name, const char *worker_id);

/* n events of type t applied to the store. */
void metrics_events_applied(enum event_type t, uint64_t n);
/* One event set aside to the dead-letter topic, by reason class. */
void metrics_event_dead_lettered(enum event_error reason);
/* One store batch of n events applied in `seconds`. */
void metrics_batch_applied(size_t n_events, double seconds);
/* One lookup answered: op ("get_connection", ... or "invalid"), status
 * ("ok", "not_found", "error"), round time inside the worker. */
void metrics_lookup(const char *op, const char *status, double seconds);
/* Consumer lag of one partition (high watermark - next offset). A
 * negative lag forgets the partition (revoked, or lag unknown). */
void metrics_consumer_lag(int32_t partition, int64_t lag);
/* Entries in the store now. Set by ingest (worker/ingest.c) after each
 * applied batch; ping (worker/rpc_ops.c) answers from it and never
 * scans the store. */
void metrics_store_entries(uint64_t n);
/* The last value given to metrics_store_entries (0 before any). */
uint64_t metrics_get_store_entries(void);
/* One lookup request dropped without a reply, by reason:
 * "reply_to_refused" (reply_to lacks <prefix>:reply:, or names a key that
 * is not a list), "unreadable" (malformed, no reply_to), "expired" (past
 * its deadline); anything else counts as "other". */
void metrics_lookup_dropped(const char *reason);
/* The count of metrics_lookup_dropped(reason) so far (for tests). */
uint64_t metrics_get_lookups_dropped(const char *reason);
/* One EDC callback answered (schemas/README.md §6), by outcome:
 * "expired" (200, edr.expired published), "not_found" (200, no connection
 * holds the transfer id), "ignored" (204), "bad_request" (400),
 * "unauthorized" (401); anything else counts as "unavailable" (503). */
void metrics_callback(const char *outcome);
/* The count of metrics_callback(outcome) so far (for tests). */
uint64_t metrics_get_callbacks(const char *outcome);
/* component: "store", "kafka", "redis". An outage began / a retry. */
void metrics_outage(const char *component);
void metrics_retry(const char *component);

/* Readiness inputs, read by /readyz. set_kafka_assigned(0) also forgets
 * every partition's lag (the assignment is gone). */
void metrics_set_store_ok(int ok);
void metrics_set_kafka_assigned(int assigned);
void metrics_set_redis_connected(int connected);

/* 1 while ingest restores the state from the changelog
 * (worker/ingest_restore.c): /readyz says not ready and lookups answer
 * `unavailable`. */
void metrics_set_restoring(int on);
int metrics_get_restoring(void);
/* The source topic's retention settings read at start (-1: unlimited). */
void metrics_source_retention(int64_t ms, int64_t bytes);

/* Snapshot of the readiness inputs, for /readyz. lag_sum sums the lag of
 * every partition currently reported (n_partitions of them). */
struct metrics_readiness {
    int restoring; /* restoring from the changelog: not ready */
    int store_ok;
    int kafka_assigned;
    int redis_connected;
    int64_t lag_sum;
    size_t n_partitions;
};
void metrics_get_readiness(struct metrics_readiness *r);

/* Appends the Prometheus text exposition to a malloc'd string (*out,
 * *len). Returns 0, -1 on allocation failure. */
int metrics_render(char **out, size_t *len);

/* A family rendered by another module (worker/rpc_gaps.c: state gaps),
 * appended by metrics_render after its own: the hook appends to the
 * malloc'd *buf of length *len (realloc), 0 or -1 when out of memory. Any
 * thread; NULL removes it. */
typedef int (*metrics_render_hook)(char **buf, size_t *len);
void metrics_set_render_hook(metrics_render_hook hook);

#endif

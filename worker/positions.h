/* positions.h: the Kafka positions this worker has applied, for
 * read-your-writes lookups (schemas/README.md §2, v2 min_positions) and
 * for lookups waiting for a match (wait_ms).
 *
 * One table per process (like the metrics registry): ingest reports every
 * applied batch's next offsets (positions_applied), and responder threads
 * wait on its condition variable for a position or for any apply at all,
 * without polling. A store shared by several workers (PostgreSQL) is not
 * covered by this table alone: there the responder reads the store's
 * offsets table (worker/rpc_ops.c). Every function is thread-safe. */
#ifndef EDR_WORKER_POSITIONS_H
#define EDR_WORKER_POSITIONS_H

#include "stores/store.h"

#include <stddef.h>
#include <stdint.h>

/* Ingest, after a batch was applied: offs[i].next_offset is the next
 * offset to consume in offs[i].partition (only forward moves are kept).
 * Wakes every waiter. Never fails: a partition that cannot be recorded
 * for lack of memory only makes waiters for it wait longer. */
void positions_applied(const struct store_offset *offs, size_t n);

/* The count of positions_applied calls so far: read it before looking
 * something up, then positions_wait_change(gen, ...) sleeps until the
 * next apply. */
uint64_t positions_generation(void);

/* Sleeps until positions_generation() != gen or the monotonic clock
 * (edr_clock_ms) reaches until_ms. 1 when it changed, 0 on time-out. */
int positions_wait_change(uint64_t gen, int64_t until_ms);

/* The next offset recorded for partition, or -1 when none. */
int64_t positions_next(int32_t partition);

/* Wakes every waiter now (shutdown): they re-check and see the stop. */
void positions_wake_all(void);

/* Forgets every position (tests). */
void positions_reset(void);

#endif

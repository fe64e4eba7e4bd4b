/* state_gaps.h: the table of state gaps of the source topic
 * (schemas/README.md §4 "State gaps").
 *
 * A gap is a range [from, to) of offsets of EDR_TOPIC in one partition that
 * the state needs but that retention deleted before this worker applied
 * them (and no changelog covered them). The Kafka loop records a gap when
 * it finds its next needed offset below the partition's log start; the
 * lookup responder, /readyz and /metrics read the table to refuse answers
 * that depend on that partition, report not ready, and export
 * edr_state_gap_offsets{partition}. With EDR_ACCEPT_GAP the gap is
 * recorded as accepted: it is reported once (the caller logs it at error
 * level), then the partition counts as complete again.
 *
 * Threads: every function may be called from any thread at the same time
 * (one mutex). The table only holds memory: _new/_free. */
#ifndef EDR_WORKER_STATE_GAPS_H
#define EDR_WORKER_STATE_GAPS_H

#include <stddef.h>
#include <stdint.h>

struct state_gaps;

/* An empty table, or NULL when out of memory. */
struct state_gaps *state_gaps_new(void);
/* Frees the table; NULL is fine. No other thread may still use it. */
void state_gaps_free(struct state_gaps *g);

/* Checks partition p before the loop consumes it: the state needs
 * offsets from needed_next_offset on and the log starts at log_start.
 * Returns the gap size, log_start - needed_next_offset, when positive, and
 * 0 otherwise. The partition becomes known (it is exported with 0 from
 * now on). With a gap:
 *   accept == 0: the gap is recorded and the partition counts as
 *     incomplete until state_gaps_clear(); a later check of the same
 *     partition replaces the range (the caller keeps its position, so the
 *     range is normally the same).
 *   accept != 0: nothing stays recorded (the operator accepted the loss;
 *     the caller logs [*from, *to) at error level and continues from
 *     log_start); the partition counts the gap in
 *     state_gaps_accepted_total() only.
 * Without a gap an earlier recorded gap of p is cleared (the state no
 * longer needs the lost range, e.g. after a restore).
 * from and to (either may be NULL) receive the range when the result is > 0.
 * Returns -1 when p < 0, needed_next_offset < 0 or log_start < 0, or out
 * of memory (nothing changes). */
int64_t state_gaps_check(struct state_gaps *g, int32_t p,
                         int64_t needed_next_offset, int64_t log_start,
                         int accept, int64_t *from, int64_t *to);

/* Forgets the recorded gap of p (the partition stays known, exported as
 * 0): e.g. after restoring it from a changelog. Unknown p: nothing. */
void state_gaps_clear(struct state_gaps *g, int32_t p);

/* 1 when any partition has a recorded (unaccepted) gap, else 0. */
int state_gaps_any(struct state_gaps *g);

/* 1 and the range in *from and *to when p has a recorded gap; 0 (outputs
 * untouched) otherwise. */
int state_gaps_partition(struct state_gaps *g, int32_t p, int64_t *from,
                         int64_t *to);

/* Total offsets accepted as lost (EDR_ACCEPT_GAP) since _new. */
int64_t state_gaps_accepted_total(struct state_gaps *g);

/* Writes one sentence naming every recorded gap, in partition order, to
 * buf (n bytes, always NUL-terminated when n > 0), e.g.
 *   partition 3 is missing offsets 0-41 (deleted by retention before this
 *   worker applied them)
 * several joined by "; ". The range is inclusive, as operators read it.
 * Empty string when there is no gap. The text is plain (no quotes or
 * backslashes), so it may be embedded as a JSON string or a lookup error
 * reason as it is. Returns the length the full text needs (like
 * snprintf): >= n means it was truncated. */
size_t state_gaps_describe(struct state_gaps *g, char *buf, size_t n);

/* Same, for the partitions in ps[0..n_ps) only: the reason of a lookup
 * that depends on those partitions. Empty when none of them has a gap. */
size_t state_gaps_describe_partitions(struct state_gaps *g, const int32_t *ps,
                                      size_t n_ps, char *buf, size_t n);

/* Appends the Prometheus family edr_state_gap_offsets (HELP, TYPE, and one
 * sample `edr_state_gap_offsets{partition="p"} n` per known partition,
 * 0 when it has no gap) to the malloc'd text *buf of length *len (*buf
 * may be NULL with *len 0; it is grown with realloc). Returns 0, or -1
 * when out of memory (*buf and *len unchanged). */
int state_gaps_prometheus(struct state_gaps *g, char **buf, size_t *len);

#endif

/* backoff.h: capped backoff with decorrelated jitter for retries of a
 * store, the dead-letter producer or a connection.
 *
 * Many workers retry one PostgreSQL (or one broker) after the same outage:
 * without jitter they would all knock at 100 ms, 200 ms, 400 ms ... in
 * step. Each delay is drawn uniformly from [min_ms, 3 x the previous
 * delay], capped at max_ms ("decorrelated jitter"), so retries spread out
 * while the delays still grow about exponentially. A plain value type:
 * one per retry loop, no threads, no sleeping. */
#ifndef EDR_WORKER_BACKOFF_H
#define EDR_WORKER_BACKOFF_H

#include <stdint.h>

struct backoff {
    unsigned min_ms;
    unsigned max_ms;
    unsigned prev_ms; /* the last delay returned (min_ms before the first) */
    unsigned attempts;
    uint64_t rng; /* xorshift64* state, never 0 */
};

/* Starts a retry sequence; the seed differs per process and per call
 * (pid, clock, a counter), so workers started together do not draw the
 * same delays. */
void backoff_init(struct backoff *b, unsigned min_ms, unsigned max_ms);
/* backoff_init with a given seed: for tests, which need a repeatable
 * sequence. */
void backoff_init_seeded(struct backoff *b, unsigned min_ms, unsigned max_ms,
                         uint64_t seed);
/* Returns the delay before the next attempt, in [min_ms, max_ms], and
 * counts the attempt. */
unsigned backoff_next(struct backoff *b);
/* After a success: the next failure starts from min_ms again. */
void backoff_reset(struct backoff *b);

#endif

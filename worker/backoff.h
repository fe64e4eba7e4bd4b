/* backoff.h: capped exponential backoff for retries of a store, the
 * dead-letter producer or a connection (100 ms, 200 ms, ... up to a cap).
 * A plain value type: one per retry loop, no threads, no clock. */
#ifndef EDR_WORKER_BACKOFF_H
#define EDR_WORKER_BACKOFF_H

struct backoff {
    unsigned min_ms;
    unsigned max_ms;
    unsigned next_ms; /* the delay backoff_next() returns next */
    unsigned attempts;
};

void backoff_init(struct backoff *b, unsigned min_ms, unsigned max_ms);
/* Returns the delay before the next attempt and doubles the following
 * one, never above max_ms. */
unsigned backoff_next(struct backoff *b);
/* After a success: the next failure starts from min_ms again. */
void backoff_reset(struct backoff *b);

#endif

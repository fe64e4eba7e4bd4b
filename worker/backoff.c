/* backoff.c: see backoff.h. No jitter: a worker retries alone against its
 * own store connection, so there is no herd to spread out. */
#include "worker/backoff.h"

void backoff_init(struct backoff *b, unsigned min_ms, unsigned max_ms)
{
    b->min_ms = min_ms ? min_ms : 1;
    b->max_ms = max_ms < b->min_ms ? b->min_ms : max_ms;
    b->next_ms = b->min_ms;
    b->attempts = 0;
}

unsigned backoff_next(struct backoff *b)
{
    unsigned d = b->next_ms;
    b->next_ms = d >= b->max_ms / 2 ? b->max_ms : d * 2;
    b->attempts++;
    return d;
}

void backoff_reset(struct backoff *b)
{
    b->next_ms = b->min_ms;
    b->attempts = 0;
}

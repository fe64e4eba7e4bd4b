/* backoff.c: see backoff.h. */
#include "worker/backoff.h"

#include "base/clock.h"

#include <stdatomic.h>
#include <unistd.h>

static atomic_uint_fast64_t seed_counter;

void backoff_init_seeded(struct backoff *b, unsigned min_ms, unsigned max_ms,
                         uint64_t seed)
{
    b->min_ms = min_ms ? min_ms : 1;
    b->max_ms = max_ms < b->min_ms ? b->min_ms : max_ms;
    b->prev_ms = b->min_ms;
    b->attempts = 0;
    /* splitmix64 of the seed: nearby seeds give unrelated states. */
    uint64_t z = seed + 0x9e3779b97f4a7c15ull;
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    z ^= z >> 31;
    b->rng = z ? z : 1;
}

void backoff_init(struct backoff *b, unsigned min_ms, unsigned max_ms)
{
    uint64_t n = atomic_fetch_add(&seed_counter, 1);
    uint64_t seed = (uint64_t)getpid() << 32 ^ (uint64_t)edr_clock_ms() ^
                    n * 0x2545f4914f6cdd1dull;
    backoff_init_seeded(b, min_ms, max_ms, seed);
}

static uint64_t next_random(struct backoff *b)
{
    uint64_t x = b->rng;
    x ^= x >> 12;
    x ^= x << 25;
    x ^= x >> 27;
    b->rng = x;
    return x * 0x2545f4914f6cdd1dull;
}

unsigned backoff_next(struct backoff *b)
{
    uint64_t hi = (uint64_t)b->prev_ms * 3;
    if (hi > b->max_ms)
        hi = b->max_ms;
    uint64_t span = hi - b->min_ms + 1;
    unsigned d = b->min_ms + (unsigned)(next_random(b) % span);
    b->prev_ms = d;
    b->attempts++;
    return d;
}

void backoff_reset(struct backoff *b)
{
    b->prev_ms = b->min_ms;
    b->attempts = 0;
}

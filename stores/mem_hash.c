/* mem_hash.c: the memory table's hash function and its slots
 * (mem_table_int.h).
 *
 * Linear probing with the 64-bit hash kept in the slot, so a probe touches
 * an entry only on a likely hit; deletion shifts followers back (no
 * tombstones), so lookups never slow down under churn. Max load 0.8. */
#include "stores/mem_table_int.h"

#include <string.h>

/* ---- hashing ---------------------------------------------------------- */

static inline uint64_t mt_mix(uint64_t a, uint64_t b)
{
    __uint128_t r = (__uint128_t)a * b;
    return (uint64_t)r ^ (uint64_t)(r >> 64);
}

/* wyhash-style: 16 bytes per multiply; the length is mixed in, which
 * separates the fields as well as a separator byte would. */
static uint64_t mt_hash_bytes(uint64_t h, const char *s, size_t n)
{
    const uint64_t k1 = 0xa0761d6478bd642full, k2 = 0xe7037ed1a0b428dbull;
    const size_t len = n;
    uint64_t a = 0, b = 0;
    while (n > 16) {
        memcpy(&a, s, 8);
        memcpy(&b, s + 8, 8);
        h = mt_mix(a ^ k1, b ^ h);
        s += 16;
        n -= 16;
    }
    if (n >= 8) {
        memcpy(&a, s, 8);
        memcpy(&b, s + n - 8, 8);
    } else if (n >= 4) {
        uint32_t x, y;
        memcpy(&x, s, 4);
        memcpy(&y, s + n - 4, 4);
        a = x;
        b = y;
    } else if (n > 0) {
        const unsigned char *u = (const unsigned char *)s;
        a = (uint64_t)u[0] << 16 | (uint64_t)u[n >> 1] << 8 | u[n - 1];
        b = 0;
    } else {
        a = b = 0;
    }
    return mt_mix(a ^ k1 ^ len, b ^ h ^ k2);
}

uint64_t mt_hash_key(uint64_t seed, const char *const f[4], const size_t len[4])
{
    uint64_t h = seed;
    for (int i = 0; i < 4; i++)
        h = mt_hash_bytes(h, f[i], len[i]);
    return h;
}

uint64_t mt_hash_str(uint64_t seed, const char *s, size_t n)
{
    return mt_hash_bytes(seed, s, n);
}

/* ---- slots ------------------------------------------------------------ */

size_t mt_find(const struct mem_slot *slots, size_t cap, uint64_t hash,
               const char *const f[4], const size_t len[4])
{
    size_t mask = cap - 1;
    for (size_t i = hash & mask;; i = (i + 1) & mask) {
        const struct mem_slot *s = &slots[i];
        if (!s->e)
            return SIZE_MAX;
        if (s->hash == hash && mt_entry_matches(s->e, hash, f, len))
            return i;
    }
}

void mt_insert_new(struct mem_slot *slots, size_t cap, struct mem_entry *e)
{
    size_t mask = cap - 1;
    size_t i = e->hash & mask;
    while (slots[i].e)
        i = (i + 1) & mask;
    slots[i].hash = e->hash;
    slots[i].e = e;
}

/* Backward-shift deletion: keeps every follower reachable from its home
 * slot without tombstones. */
void mt_remove_at(struct mem_slot *slots, size_t cap, size_t i)
{
    size_t mask = cap - 1;
    size_t j = i;
    for (;;) {
        j = (j + 1) & mask;
        if (!slots[j].e)
            break;
        size_t home = slots[j].hash & mask;
        /* Leave slots[j] where it is if its home lies cyclically in
         * (i, j]; otherwise it may move into the hole at i. */
        int stays =
            (i <= j) ? (home > i && home <= j) : (home > i || home <= j);
        if (!stays) {
            slots[i] = slots[j];
            i = j;
        }
    }
    slots[i].e = NULL;
    slots[i].hash = 0;
}

int mt_need_grow(size_t cap, size_t n)
{
    return n * 5 > cap * 4; /* load > 0.8 */
}

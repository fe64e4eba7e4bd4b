/* dup_members.c: see dup_members.h. */
#include "schemas/dup_members.h"

#include <string.h>

void dup_members_init(struct dup_members *t, struct arena *a)
{
    t->arena = a;
    memset(t->inline_slots, 0, sizeof(t->inline_slots));
    t->slots = t->inline_slots;
    t->cap = DUP_MEMBERS_INLINE;
    t->used = 0;
}

/* Member names are short: mix them a word at a time (FNV-1a byte by byte
 * was the decoder's hottest loop). Not for hostile collision resistance:
 * a collision only costs a probe and a memcmp. */
static uint64_t key_hash(const unsigned char *k, size_t n, uint32_t serial)
{
    const uint64_t mul = UINT64_C(0x9e3779b97f4a7c15);
    const unsigned char *end = k + n;
    uint64_t h = (serial + n) * mul, w = 0;
    uint32_t a, b;

    /* Whole loads only (the last ones may overlap): assembling a tail
     * byte by byte stalls on store forwarding. */
    if (n >= 8) {
        for (; end - k > 8; k += 8) {
            memcpy(&w, k, 8);
            h = (h ^ w) * mul;
            h ^= h >> 29;
        }
        memcpy(&w, end - 8, 8);
    } else if (n >= 4) {
        memcpy(&a, k, 4);
        memcpy(&b, end - 4, 4);
        w = a | (uint64_t)b << 32;
    } else if (n > 0) {
        w = (uint64_t)k[0] | (uint64_t)k[n / 2] << 8 | (uint64_t)k[n - 1] << 16;
    }
    h = (h ^ w) * mul;
    h ^= h >> 32;
    return h * UINT64_C(0xd6e8feb86659fd93);
}

static int grow(struct dup_members *t)
{
    size_t cap = t->cap * 2;
    struct dup_slot *s = arena_alloc(t->arena, cap * sizeof(*s));
    if (!s)
        return -1;
    memset(s, 0, cap * sizeof(*s));
    for (size_t i = 0; i < t->cap; i++) {
        struct dup_slot *o = &t->slots[i];
        if (!o->key)
            continue;
        size_t j = o->hash & (cap - 1);
        while (s[j].key)
            j = (j + 1) & (cap - 1);
        s[j] = *o;
    }
    t->slots = s;
    t->cap = cap;
    return 0;
}

int dup_members_insert(struct dup_members *t, const char *k, size_t n,
                       uint32_t serial)
{
    if ((t->used + 1) * 2 > t->cap && grow(t) != 0)
        return -1;
    uint64_t h = key_hash((const unsigned char *)k, n, serial);
    size_t j = h & (t->cap - 1);
    for (;; j = (j + 1) & (t->cap - 1)) {
        struct dup_slot *sl = &t->slots[j];
        if (!sl->key) {
            sl->key = k;
            sl->hash = h;
            sl->serial = serial;
            sl->len = (uint32_t)n;
            t->used++;
            return 1;
        }
        if (sl->hash == h && sl->serial == serial && sl->len == n &&
            memcmp(sl->key, k, n) == 0)
            return 0;
    }
}

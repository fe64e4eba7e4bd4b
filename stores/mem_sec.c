/* mem_sec.c: the memory table's secondary indexes (mem_table_int.h):
 * entries by transfer id and by decoded assetId, for get_by_transfer_id
 * and the exact filters of count and list.
 *
 * Each is an open-addressing table of entry pointers keyed by a seeded
 * hash of the string, linear probing and backward-shift deletion as the
 * main slots (mem_hash.c), so a value that several entries hold simply
 * has several slots. Like the main slots they grow in prepare (a copy of
 * the pointers, the live table untouched) and change only in commit,
 * under the write lock, without allocating. */
#include "stores/mem_table_int.h"

#include <stdlib.h>
#include <string.h>

int mt_sec_reserve(const struct mem_sec *s, size_t n_add, struct mem_sec *grown)
{
    *grown = (struct mem_sec){0};
    if (s->cap && !mt_need_grow(s->cap, s->count + n_add))
        return 0;
    size_t cap = s->cap ? s->cap : MT_MIN_CAP;
    while (mt_need_grow(cap, s->count + n_add))
        cap *= 2;
    struct mem_slot *slots = calloc(cap, sizeof(*slots));
    if (!slots)
        return -1;
    size_t mask = cap - 1;
    for (size_t i = 0; i < s->cap; i++) {
        if (!s->slots[i].e)
            continue;
        size_t j = s->slots[i].hash & mask;
        while (slots[j].e)
            j = (j + 1) & mask;
        slots[j] = s->slots[i];
    }
    grown->slots = slots;
    grown->cap = cap;
    grown->count = s->count;
    return 0;
}

void *mt_sec_swap(struct mem_sec *s, struct mem_sec *grown)
{
    if (!grown->slots)
        return NULL;
    void *old = s->slots;
    *s = *grown;
    *grown = (struct mem_sec){0};
    return old;
}

void mt_sec_add(struct mem_sec *s, uint64_t hash, struct mem_entry *e)
{
    size_t i = mt_sec_first(s, hash);
    while (s->slots[i].e)
        i = mt_sec_next(s, i);
    s->slots[i].hash = hash;
    s->slots[i].e = e;
    s->count++;
}

void mt_sec_del(struct mem_sec *s, uint64_t hash, const struct mem_entry *e)
{
    if (!s->cap)
        return;
    for (size_t i = mt_sec_first(s, hash); s->slots[i].e;
         i = mt_sec_next(s, i)) {
        if (s->slots[i].e == e) {
            mt_remove_at(s->slots, s->cap, i);
            s->count--;
            return;
        }
    }
}

void mt_sec_link(struct mem_table *t, struct mem_entry *e)
{
    mt_sec_add(&t->by_tid,
               mt_hash_str(t->seed, mem_entry_field(e, 4), e->len[4]), e);
    if (e->has_asset)
        mt_sec_add(&t->by_asset,
                   mt_hash_str(t->seed, mem_entry_field(e, 6), e->asset_len),
                   e);
}

void mt_sec_unlink(struct mem_table *t, const struct mem_entry *e)
{
    mt_sec_del(&t->by_tid,
               mt_hash_str(t->seed, mem_entry_field(e, 4), e->len[4]), e);
    if (e->has_asset)
        mt_sec_del(&t->by_asset,
                   mt_hash_str(t->seed, mem_entry_field(e, 6), e->asset_len),
                   e);
}

/* How many slots of s hold e, probing from its hash (so a slot that
 * lost its probe chain is not counted). */
static size_t mt_sec_holds(const struct mem_sec *s, uint64_t hash,
                           const struct mem_entry *e)
{
    size_t n = 0;
    if (!s->cap)
        return 0;
    for (size_t i = mt_sec_first(s, hash); s->slots[i].e; i = mt_sec_next(s, i))
        n += s->slots[i].e == e && s->slots[i].hash == hash;
    return n;
}

int mem_table_sec_check(const struct mem_table *t)
{
    size_t with_asset = 0;
    for (size_t i = 0; i < t->cap; i++) {
        const struct mem_entry *e = t->slots[i].e;
        if (!e)
            continue;
        uint64_t h = mt_hash_str(t->seed, mem_entry_field(e, 4), e->len[4]);
        if (mt_sec_holds(&t->by_tid, h, e) != 1)
            return -1;
        if (e->has_asset) {
            with_asset++;
            h = mt_hash_str(t->seed, mem_entry_field(e, 6), e->asset_len);
            if (mt_sec_holds(&t->by_asset, h, e) != 1)
                return -1;
        }
    }
    return t->by_tid.count == t->count && t->by_asset.count == with_asset ? 0
                                                                          : -1;
}

/* dup_members.h: duplicate member names, for every object of one JSON
 * document at once.
 *
 * The event decoder (schemas/event_decode.c) numbers each object it opens
 * (its serial) and records every member name with it; one open-addressing
 * table serves all objects, so a huge object costs O(members), not
 * O(members^2), and a small event needs no allocation (the first
 * DUP_MEMBERS_INLINE slots live in the struct). Memory beyond that comes
 * from an arena. Not thread-safe: one table per decode. */
#ifndef EDR_SCHEMAS_DUP_MEMBERS_H
#define EDR_SCHEMAS_DUP_MEMBERS_H

#include "schemas/arena.h"

#include <stddef.h>
#include <stdint.h>

#define DUP_MEMBERS_INLINE 64 /* a power of two */

struct dup_slot {
    const char *key; /* NULL: empty */
    uint64_t hash;
    uint32_t serial;
    uint32_t len;
};

struct dup_members {
    struct arena *arena;
    struct dup_slot *slots;
    size_t cap, used;
    struct dup_slot inline_slots[DUP_MEMBERS_INLINE];
};

/* Makes *t empty; larger tables come from arena a (borrowed). */
void dup_members_init(struct dup_members *t, struct arena *a);

/* Records name k[0..n) of the object `serial`. The name is borrowed and
 * must stay valid as long as t. Returns 1 when it is new, 0 when that
 * object already has a member of that name, -1 when out of memory (t is
 * unchanged). */
int dup_members_insert(struct dup_members *t, const char *k, size_t n,
                       uint32_t serial);

#endif

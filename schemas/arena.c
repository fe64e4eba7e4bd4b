/* arena.c: see arena.h. free is a no-op (yajl's frees cost nothing):
 * everything goes at once in arena_release. */
#include "schemas/arena.h"

#include <stdlib.h>
#include <string.h>

struct arena_block {
    struct arena_block *next;
    size_t cap;
    _Alignas(ARENA_ALIGN) unsigned char data[];
};

static size_t arena_round(size_t n)
{
    return (n + ARENA_ALIGN - 1) & ~(size_t)(ARENA_ALIGN - 1);
}

void arena_init(struct arena *a)
{
    a->base = a->first;
    a->cap = sizeof(a->first);
    a->used = 0;
    a->last = NULL;
    a->spill = NULL;
}

void *arena_alloc_block(struct arena *a, size_t n)
{
    size_t need = ARENA_ALIGN + arena_round(n);

    if (need < n)
        return NULL; /* wrapped around */
    if (a->cap - a->used < need) {
        size_t cap = a->cap * 2;
        if (cap < need)
            cap = need;
        if (cap > ((size_t)-1 - sizeof(struct arena_block)) / 2)
            return NULL;
        struct arena_block *b = malloc(sizeof(*b) + cap);
        if (!b)
            return NULL;
        b->next = a->spill;
        b->cap = cap;
        a->spill = b;
        a->base = b->data;
        a->cap = cap;
        a->used = 0;
    }
    unsigned char *p = a->base + a->used + ARENA_ALIGN;
    memcpy(p - sizeof(size_t), &n, sizeof(n));
    a->used += need;
    a->last = p;
    return p;
}

void *arena_realloc(struct arena *a, void *ptr, size_t n)
{
    unsigned char *p = ptr;
    size_t old;

    if (!p)
        return arena_alloc(a, n);
    memcpy(&old, p - sizeof(size_t), sizeof(old));
    if (n <= old)
        return p;
    if (p == a->last) {
        size_t start = (size_t)(p - a->base) - ARENA_ALIGN;
        size_t need = ARENA_ALIGN + arena_round(n);
        if (need >= n && a->cap - start >= need) {
            memcpy(p - sizeof(size_t), &n, sizeof(n));
            a->used = start + need;
            return p;
        }
    }
    void *q = arena_alloc(a, n);
    if (q)
        memcpy(q, p, old);
    return q;
}

void arena_release(struct arena *a)
{
    while (a->spill) {
        struct arena_block *b = a->spill;
        a->spill = b->next;
        free(b);
    }
}

/* arena.h: bump allocation for one decode call, freed in one go.
 *
 * The event decoder (schemas/event_decode.c) puts all its scratch memory
 * here, yajl's own included (through yajl_alloc_funcs): the first
 * ARENA_INLINE bytes live inside struct arena itself, which the caller
 * keeps on its stack, so a typical event makes no heap allocation at all;
 * beyond that, blocks of doubling size are malloc'd and arena_release
 * frees them. Not thread-safe: one arena per call. */
#ifndef EDR_SCHEMAS_ARENA_H
#define EDR_SCHEMAS_ARENA_H

#include <stddef.h>
#include <string.h>

#define ARENA_INLINE 16384
#define ARENA_ALIGN 16

struct arena_block;

struct arena {
    unsigned char *base; /* current block */
    size_t cap, used;
    unsigned char *last;       /* most recent allocation: grows in place */
    struct arena_block *spill; /* malloc'd blocks, freed by arena_release */
    _Alignas(ARENA_ALIGN) unsigned char first[ARENA_INLINE];
};

/* Makes *a empty; it must not be moved while in use. */
void arena_init(struct arena *a);

/* The slow path of arena_alloc: a new block. */
void *arena_alloc_block(struct arena *a, size_t n);

/* n bytes aligned to ARENA_ALIGN, valid until arena_release; NULL when
 * malloc fails or n is absurd (the arena stays usable). Inline: the
 * decoder allocates for most keys and strings, and the bump is a few
 * instructions. Every allocation is preceded by a header holding its
 * size, so realloc knows how much to copy. */
static inline void *arena_alloc(struct arena *a, size_t n)
{
    size_t need =
        ARENA_ALIGN + ((n + ARENA_ALIGN - 1) & ~(size_t)(ARENA_ALIGN - 1));
    if (need < n || a->cap - a->used < need)
        return arena_alloc_block(a, n);
    unsigned char *p = a->base + a->used + ARENA_ALIGN;
    memcpy(p - sizeof(size_t), &n, sizeof(n));
    a->used += need;
    a->last = p;
    return p;
}

/* Grows ptr (from arena_alloc/arena_realloc, or NULL) to n bytes, in place
 * when it is the most recent allocation; else copies. NULL when out of
 * memory (ptr stays valid). */
void *arena_realloc(struct arena *a, void *ptr, size_t n);

/* Frees every block; *a may be arena_init'ed again. */
void arena_release(struct arena *a);

#endif

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

/* n bytes aligned to ARENA_ALIGN, valid until arena_release; NULL when
 * malloc fails or n is absurd (the arena stays usable). */
void *arena_alloc(struct arena *a, size_t n);

/* Grows ptr (from arena_alloc/arena_realloc, or NULL) to n bytes, in place
 * when it is the most recent allocation; else copies. NULL when out of
 * memory (ptr stays valid). */
void *arena_realloc(struct arena *a, void *ptr, size_t n);

/* Frees every block; *a may be arena_init'ed again. */
void arena_release(struct arena *a);

#endif

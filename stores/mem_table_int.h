/* mem_table_int.h: what the memory table's files share (mem_table.h is
 * the public side).
 *
 *   mem_hash.c    key hashing and the open-addressing slots
 *   mem_entry.c   one stored entry: layout, key match, connection key
 *   mem_table.c   lifecycle and writes: prepare, commit, abort, clear
 *   mem_index.c   the ordered index: a skip list by connection key
 *   mem_read.c    point lookups, offsets
 *   mem_list.c    list() and count(): chunked walks of the index
 *
 * Not for use outside stores/mem_*.c. */
#ifndef EDR_STORES_MEM_TABLE_INT_H
#define EDR_STORES_MEM_TABLE_INT_H

#include "stores/mem_table.h"

#include <stddef.h>
#include <stdint.h>
#include <string.h>

#define MT_MIN_CAP 1024
#define MT_MAX_FIELD (UINT32_MAX / 4)

/* ---- mem_hash.c --------------------------------------------------------- */
uint64_t mt_hash_key(uint64_t seed, const char *const f[4],
                     const size_t len[4]);
/* Index of the slot holding the key, or SIZE_MAX. */
size_t mt_find(const struct mem_slot *slots, size_t cap, uint64_t hash,
               const char *const f[4], const size_t len[4]);
/* Puts e into the first free slot of its probe sequence (e is new). */
void mt_insert_new(struct mem_slot *slots, size_t cap, struct mem_entry *e);
/* Empties slot i (backward-shift deletion). */
void mt_remove_at(struct mem_slot *slots, size_t cap, size_t i);
/* 1 when n entries need more than cap slots (load > 0.8). */
int mt_need_grow(size_t cap, size_t n);

/* ---- mem_entry.c -------------------------------------------------------- */
/* A new entry with its connection key computed and room for height
 * index links (not linked anywhere yet); NULL when out of memory. */
struct mem_entry *mt_entry_new(uint64_t hash, const char *const f[4],
                               const size_t len[4], const char *tid,
                               size_t tid_len, const char *json,
                               size_t json_len, unsigned height);
/* Frees e (NULL is ok). */
void mt_entry_free(struct mem_entry *e);
/* Orders connection keys as memcmp does, the first 8 bytes as one load. */
static inline int mt_ck_cmp(const unsigned char *a, const unsigned char *b)
{
    uint64_t x, y;
    memcpy(&x, a, 8);
    memcpy(&y, b, 8);
    if (x != y) {
        x = __builtin_bswap64(x);
        y = __builtin_bswap64(y);
        return x < y ? -1 : 1;
    }
    return memcmp(a + 8, b + 8, 24);
}
int mt_entry_matches(const struct mem_entry *e, uint64_t hash,
                     const char *const f[4], const size_t len[4]);
void mt_key_fields(const struct edr_key *k, const char *f[4], size_t len[4]);

/* ---- mem_index.c -------------------------------------------------------- */
/* A random height for a new entry (p = 1/4 per level). Writer only. */
unsigned mt_index_height(struct mem_table *t);
/* Links e (not in the index) / unlinks e (in it). Write lock held. */
void mt_index_insert(struct mem_table *t, struct mem_entry *e);
void mt_index_remove(struct mem_table *t, struct mem_entry *e);
/* The first entry whose ck is greater than after (NULL: the first of
 * all), adding the entries it compared to *visited. Read lock held. */
struct mem_entry *mt_index_seek(const struct mem_table *t,
                                const unsigned char *after, uint64_t *visited);

/* ---- mem_list.c --------------------------------------------------------- */
/* Tells the counts in progress that e was added (+1) or removed (-1).
 * Write lock held. */
void mt_scans_note(struct mem_table *t, const struct mem_entry *e, int delta);

/* ---- mem_read.c --------------------------------------------------------- */
/* Copies e's keys and transfer id (and JSON if with_json) into r; -1 on
 * out of memory (r then holds what was copied: store_record_clear it). */
int mt_copy_record(const struct mem_entry *e, int with_json,
                   struct store_record *r);

/* ---- mem_table.c -------------------------------------------------------- */
ptrdiff_t mt_off_find(const struct mem_offset *offs, size_t n,
                      const char *topic, int32_t partition);

#endif

/* mem_table_int.h: what the memory table's files share (mem_table.h is
 * the public side).
 *
 *   mem_hash.c    key hashing and the open-addressing slots
 *   mem_entry.c   one stored entry: layout, key match, connection key
 *   mem_table.c   lifecycle and writes: prepare, commit, abort, clear
 *   mem_index.c   the ordered index: a B+tree by connection key
 *   mem_sec.c     secondary indexes: entries by transfer id and assetId
 *   mem_read.c    point lookups, offsets
 *   mem_list.c    list() and count(): chunked walks of the index
 *
 * Not for use outside stores/mem_*.c. */
#ifndef EDR_STORES_MEM_TABLE_INT_H
#define EDR_STORES_MEM_TABLE_INT_H

#include "stores/mem_table.h"

#include <stddef.h>
#include <stdint.h>

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
/* A new entry with its connection key (ck when the caller has it, e.g.
 * from the entry it replaces; else computed) and its decoded string
 * assetId; NULL when out of memory. */
struct mem_entry *mt_entry_new(uint64_t hash, const char *const f[4],
                               const size_t len[4], const char *tid,
                               size_t tid_len, const char *json,
                               size_t json_len, const unsigned char *ck);
/* Frees e (NULL is ok). */
void mt_entry_free(struct mem_entry *e);
int mt_entry_matches(const struct mem_entry *e, uint64_t hash,
                     const char *const f[4], const size_t len[4]);
void mt_key_fields(const struct edr_key *k, const char *f[4], size_t len[4]);

/* ---- mem_index.c -------------------------------------------------------- */
/* Makes sure commit can index n_puts new entries without allocating
 * (writer mutex held); -1 when out of memory, the table unchanged. */
int mt_index_reserve(struct mem_table *t, size_t n_puts);
/* Indexes e / replaces old by e (same key) / unindexes e. Write lock. */
void mt_index_insert(struct mem_table *t, struct mem_entry *e);
void mt_index_replace(struct mem_table *t, struct mem_entry *old,
                      struct mem_entry *e);
void mt_index_remove(struct mem_table *t, struct mem_entry *e);
void mt_index_destroy(struct mem_table *t);

/* A position in the index; leaf NULL at the end. Valid while the read
 * lock (or the writer mutex) is held. */
struct mem_iter {
    struct mem_index_node *leaf;
    unsigned i;
};
/* To the first entry with key > after (NULL: the first of all), or with
 * key >= ck; adds the nodes it read to *visited. Read lock held. */
void mt_index_seek(const struct mem_table *t, const unsigned char *after,
                   struct mem_iter *it, uint64_t *visited);
void mt_index_seek_ge(const struct mem_table *t, const unsigned char *ck,
                      struct mem_iter *it, uint64_t *visited);
struct mem_entry *mt_iter_entry(const struct mem_iter *it); /* NULL: end */
void mt_iter_next(struct mem_iter *it);

/* ---- mem_sec.c ---------------------------------------------------------- */
/* The hash a secondary index files a string under. */
uint64_t mt_hash_str(uint64_t seed, const char *s, size_t n);
/* Makes sure s can take n_add more entries without allocating: *grown is
 * a bigger copy to swap in at commit, or left empty when s has room. -1
 * when out of memory. Writer mutex held. */
int mt_sec_reserve(const struct mem_sec *s, size_t n_add,
                   struct mem_sec *grown);
/* Swaps in grown (when it has slots); returns the old slots to free after
 * the write lock is released. Write lock held. */
void *mt_sec_swap(struct mem_sec *s, struct mem_sec *grown);
/* Adds / removes e under hash. Write lock held; add never allocates. */
void mt_sec_add(struct mem_sec *s, uint64_t hash, struct mem_entry *e);
void mt_sec_del(struct mem_sec *s, uint64_t hash, const struct mem_entry *e);
/* Adds / removes e in both secondary indexes of t. Write lock held. */
void mt_sec_link(struct mem_table *t, struct mem_entry *e);
void mt_sec_unlink(struct mem_table *t, const struct mem_entry *e);
/* Slot positions for the entries filed under hash: start at
 * mt_sec_first, go on with mt_sec_next while the slot is not empty. */
static inline size_t mt_sec_first(const struct mem_sec *s, uint64_t hash)
{
    return hash & (s->cap - 1);
}
static inline size_t mt_sec_next(const struct mem_sec *s, size_t i)
{
    return (i + 1) & (s->cap - 1);
}

/* ---- mem_list.c --------------------------------------------------------- */
/* Tells the counts in progress that e was added (+1) or removed (-1).
 * Write lock held. */
void mt_scans_note(struct mem_table *t, const struct mem_entry *e, int delta);
/* 1 when e passes every member of f (NULL: all). */
int mt_filter_match(const struct mem_entry *e, const struct store_filter *f);

/* ---- mem_read.c --------------------------------------------------------- */
/* Copies e's keys and transfer id (and JSON if with_json) into r; -1 on
 * out of memory (r then holds what was copied: store_record_clear it). */
int mt_copy_record(const struct mem_entry *e, int with_json,
                   struct store_record *r);

/* ---- mem_table.c -------------------------------------------------------- */
ptrdiff_t mt_off_find(const struct mem_offset *offs, size_t n,
                      const char *topic, int32_t partition);

#endif

/* mem_table.h: the in-memory state shared by the memory and file stores.
 *
 * One open-addressing hash table keyed by the four key strings (no nested
 * maps) for lookups, an ordered index (a B+tree by connection key,
 * mem_index.c) for list() and count(), two secondary indexes (transfer
 * id, assetId: mem_sec.c) for get_by_transfer_id and the exact filters,
 * plus the Kafka offsets per (topic, partition). Every entry is one allocation
 * holding its four keys, transfer id and JSON. Readers take a read lock; the
 * single writer takes a writer mutex for the whole write and the write lock
 * only to link or unlink prepared entries, so readers are blocked for
 * microseconds, never during allocation or I/O.
 *
 * Writes go in two steps so a durable store can persist between them:
 * mem_table_prepare() validates a batch and allocates everything it will
 * need (state untouched), mem_table_commit() applies it and cannot fail,
 * mem_table_abort() drops it. The caller holds the writer mutex
 * (mem_table_writer_lock) across prepare, persist and commit; while it
 * does, it may read the table without the read lock (it is the only one
 * who changes it). */
#ifndef EDR_STORES_MEM_TABLE_H
#define EDR_STORES_MEM_TABLE_H

#include "stores/store.h"

#include <pthread.h>
#include <stddef.h>
#include <stdint.h>

/* The ordered index's depth can reach log16(entries) + 2. */
#define MEM_INDEX_MAX_DEPTH 16

/* One stored entry: header +
 * "cpid\0addr\0query\0policy\0tid\0json\0" and, when the entry has a
 * string assetId (a top-level member of its JSON), the decoded assetId and
 * a NUL after the JSON. */
struct mem_entry {
    uint64_t hash;
    uint32_t len[5]; /* counter_party_id, address, query, policy, tid */
    uint32_t json_len;
    uint32_t asset_len;   /* bytes of the decoded assetId */
    uint32_t has_asset;   /* 1: the entry has a string assetId */
    unsigned char ck[32]; /* the raw SHA-256 connection key */
    char data[];
};

struct mem_index_node; /* mem_index.c */

/* A count() in progress (mem_list.c): the writer corrects it for changes
 * behind its position, so the result is exact although the scan lets the
 * writer in between chunks. */
struct mem_scan {
    const struct store_filter *filter;
    unsigned char pos[32]; /* entries with ck <= pos are counted */
    int started;           /* pos is set */
    int64_t delta;         /* writer's corrections */
    uint64_t writes_seen;  /* changes committed while the scan ran */
    struct mem_scan *next;
};

struct mem_slot {
    uint64_t hash;
    struct mem_entry *e; /* NULL: empty */
};

/* A secondary index: entries by the hash of one of their strings (the
 * transfer id, the assetId), open addressing with linear probing as the
 * main slots; a value held by several entries has several slots. Changed
 * with the main slots, in the same commit. */
struct mem_sec {
    struct mem_slot *slots; /* NULL until the first entry */
    size_t cap;             /* power of two, or 0 */
    size_t count;
};

struct mem_offset {
    char *topic;
    int32_t partition;
    int64_t next_offset;
};

struct mem_table {
    pthread_rwlock_t lock;    /* readers vs. commit */
    pthread_mutex_t write_mu; /* serialises writers */
    uint64_t seed;
    struct mem_slot *slots;
    size_t cap; /* power of two */
    size_t count;
    struct mem_offset *offs;
    size_t n_offs, cap_offs;
    /* The ordered index, changed under the write lock only, like the
     * slots, from nodes that prepare reserved in the pool. */
    struct mem_index_node *root;
    unsigned depth;
    /* Free nodes, kept up to pool_want: the largest worst case a batch
     * reserved (n_puts * (depth + 3 + n_puts / 256) nodes of 1.3 KiB;
     * about 5 MiB for batches of 500 at a million entries). */
    struct mem_index_node *pool;
    size_t n_pool, pool_want;
    /* Secondary indexes for get_by_transfer_id and the transfer id and
     * asset id filters of count and list (mem_sec.c). */
    struct mem_sec by_tid, by_asset;
    /* Counts in progress. Linked and unlinked under the read lock plus
     * scan_mu; the writer walks them under the write lock. */
    struct mem_scan *scans;
    pthread_mutex_t scan_mu;
};

/* What a prepared batch needs; opaque to callers, lives on their stack. */
#define MEM_PREP_INLINE 4
struct mem_prep {
    struct mem_entry **nodes;   /* per op: the new entry (PUT) or NULL */
    struct mem_entry **garbage; /* filled by commit, freed after unlock */
    size_t n_ops, n_garbage;
    struct mem_slot *new_slots; /* grown table, swapped in by commit */
    size_t new_cap;
    struct mem_sec new_tid, new_asset; /* grown secondary indexes */
    struct mem_offset *new_offs;       /* grown offsets array, or NULL */
    size_t new_cap_offs;
    char **topics; /* one strdup per offset slot the batch adds */
    size_t n_topics;
    struct mem_entry *inline_nodes[MEM_PREP_INLINE];
    struct mem_entry *inline_garbage[MEM_PREP_INLINE];
    void *old_slots_to_free;
    void *old_offs_to_free;
    void *old_sec_to_free[2];
};

int mem_table_init(struct mem_table *t, struct store_err *err);
void mem_table_destroy(struct mem_table *t);

void mem_table_writer_lock(struct mem_table *t);
void mem_table_writer_unlock(struct mem_table *t);

/* Validates b (PUT: non-NULL keys, non-empty transfer id and entry;
 * DELETE: non-NULL keys; offsets: a topic) and allocates what commit
 * needs. STORE_INVALID or STORE_TRANSIENT (out of memory) with the table
 * untouched. Writer mutex held. */
int mem_table_prepare(struct mem_table *t, const struct store_batch *b,
                      struct mem_prep *p, struct store_err *err);
/* Applies the prepared batch b; sets b->changed. Never fails. Writer
 * mutex held; takes the write lock itself. Frees p's leftovers. */
void mem_table_commit(struct mem_table *t, struct store_batch *b,
                      struct mem_prep *p);
/* Drops a prepared batch that will not be committed. */
void mem_table_abort(struct mem_prep *p);

/* clear_party in two steps, as apply: collect (writer mutex held, may
 * fail with TRANSIENT on OOM) the matching entries into *victims, then
 * remove them (cannot fail) and free them. */
int mem_table_clear_collect(struct mem_table *t, const char *substring,
                            struct mem_entry ***victims, size_t *n,
                            struct store_err *err);
void mem_table_clear_commit(struct mem_table *t, struct mem_entry **victims,
                            size_t n);

/* Readers (any thread): the store.h operations. */
int mem_table_get(struct mem_table *t, const struct edr_key *k,
                  struct store_record *out, struct store_err *err);
int mem_table_get_transfer_id(struct mem_table *t, const struct edr_key *k,
                              char **out, struct store_err *err);
/* count(): with a substring, a scan of the index in chunks (the read lock
 * is released every MEM_SCAN_CHUNK entries, so writers and lookups get
 * in), corrected for the writes committed meanwhile: the result is the
 * exact count at the moment the scan ends. */
int mem_table_count(struct mem_table *t, const char *substring, uint64_t *out,
                    struct store_err *err);
/* list(): seeks the cursor in the index (O(log n)) and walks it; with a
 * substring the walk is chunked as count's. Each item was stored when it
 * was read; a page is not a snapshot (no list page ever was). */
int mem_table_list(struct mem_table *t, const char *substring,
                   const char *cursor, size_t limit, struct store_list *out,
                   struct store_err *err);

/* What one count or list call cost, for tests (complexity without
 * timing) and benchmarks. */
struct mem_scan_stats {
    uint64_t visited;     /* index entries touched, seeks included */
    uint64_t relocks;     /* times the read lock was let go mid-call */
    uint64_t writes_seen; /* (count) changes committed during the call */
};
#define MEM_SCAN_CHUNK 1024
int mem_table_count_ex(struct mem_table *t, const char *substring,
                       uint64_t *out, struct mem_scan_stats *stats,
                       struct store_err *err);
int mem_table_list_ex(struct mem_table *t, const char *substring,
                      const char *cursor, size_t limit, struct store_list *out,
                      struct mem_scan_stats *stats, struct store_err *err);
/* The same with every filter of store.h (NULL: all). An exact transfer
 * id or asset id is looked up in its secondary index (the read lock held
 * for the entries that hold that value); otherwise a chunked walk of the
 * ordered index as above. */
int mem_table_count_filter(struct mem_table *t, const struct store_filter *f,
                           uint64_t *out, struct mem_scan_stats *stats,
                           struct store_err *err);
int mem_table_list_filter(struct mem_table *t, const struct store_filter *f,
                          const char *cursor, size_t limit,
                          struct store_list *out, struct mem_scan_stats *stats,
                          struct store_err *err);
/* get_by_transfer_id (store.h): the entry with that transfer id and the
 * smallest connection key, with its JSON and asset id. */
int mem_table_get_by_transfer_id(struct mem_table *t, const char *transfer_id,
                                 struct store_record *out,
                                 struct store_err *err);

/* Checks the index against the table (tests): 0 when it holds exactly
 * t->count entries in ascending key order; *n how many it holds. Writer
 * mutex held. */
int mem_table_index_check(const struct mem_table *t, size_t *n);
/* Checks the secondary indexes (tests): 0 when each holds every entry
 * exactly once (by_asset: those with an assetId) and nothing else.
 * Writer mutex held. */
int mem_table_sec_check(const struct mem_table *t);
int mem_table_load_offsets(struct mem_table *t, const char *topic,
                           struct store_offset **out, size_t *n,
                           struct store_err *err);

/* Field i of e: 0..3 the key fields, 4 the transfer id, 5 the JSON, 6
 * the decoded assetId (only when e->has_asset). */
const char *mem_entry_field(const struct mem_entry *e, int i);

#endif

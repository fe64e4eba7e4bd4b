/* store.h: the one interface every EDR store implements.
 *
 * A store maps the four key fields of a connection (schemas/edr_key.h) to
 * one entry: the EDR as compact JSON object text plus its transfer process
 * id. Backends: memory (mem_store.c), file (file_store.c), PostgreSQL
 * (pg_store.c). Each is a struct whose first member is `struct store`, and
 * `ops` points at the backend's table of functions, as hiredis swaps
 * transports with redisContextFuncs.
 *
 * Threads: one writer thread calls apply(); any number of other threads
 * may call the read functions (get, get_transfer_id, count, list) at the
 * same time. clear_party counts as a write. close() only after every
 * other thread has stopped using the store.
 *
 * Errors: every function returns a status below and, when it is negative,
 * fills the caller's struct store_err. Every write is all-or-nothing: on
 * any error the store is exactly as before the call. */
#ifndef EDR_STORES_STORE_H
#define EDR_STORES_STORE_H

#include "schemas/edr_key.h"

#include <stddef.h>
#include <stdint.h>

enum store_status {
    STORE_OK = 0,
    STORE_NOT_FOUND = 1,  /* lookup or delete found nothing at that key */
    STORE_INVALID = -1,   /* input rejected, state unchanged: don't retry */
    STORE_TRANSIENT = -2, /* server gone, disk full: back off and retry */
    STORE_FATAL = -3,     /* store unusable (corrupt, misconfigured) */
    /* Offsets fenced: another writer advanced a partition past the
     * batch's first_offset (struct store_offset); nothing applied. The
     * writer lost that partition (a zombie after a group rebalance): it
     * must drop that partition's pending work and re-read the offsets,
     * never retry the batch as is. */
    STORE_CONFLICT = -4,
    /* The server rejected the configured credentials (PostgreSQL SQLSTATE
     * class 28, or a password it asked for is missing): an invalid
     * setting, the worker exits 2. Only an open returns it; a store that
     * was open reports a later rejection as STORE_TRANSIENT (credentials
     * being rotated). err->msg names no DSN, host or user. */
    STORE_AUTH = -5,
};

struct store_err {
    int status;    /* the negative status returned with it */
    char msg[256]; /* human-readable, never contains entry contents */
};

enum store_op_kind {
    STORE_OP_PUT,    /* insert or replace the entry at key */
    STORE_OP_DELETE, /* remove the entry at key (see transfer_id) */
};

/* One write. Strings are borrowed for the duration of apply(). */
struct store_op {
    enum store_op_kind kind;
    struct edr_key key;
    /* PUT: the entry's transferProcessId, required and non-empty.
     * DELETE: NULL deletes unconditionally; otherwise the entry is deleted
     * only if its stored transfer id equals this (a late expiry never
     * removes a newer EDR, schemas/README.md §1). */
    const char *transfer_id;
    /* PUT only: the entry, a JSON object as compact text, stored as given
     * (removing @type/@context/providerId is the handler's job). */
    const char *entry_json;
    size_t entry_len;
};

/* Kafka progress: the next offset to consume in one partition.
 *
 * Fencing: when first_offset >= 0, apply() fails with STORE_CONFLICT and
 * applies nothing if the stored next_offset of (topic, partition) is
 * greater than first_offset, i.e. another writer already applied events
 * past where this batch starts: a worker that lost the partition in a
 * consumer group rebalance cannot overwrite its new owner's work.
 * load_offsets() returns -1 there. */
struct store_offset {
    int32_t partition;
    int64_t next_offset;
    int64_t first_offset; /* offset of the batch's first message in this
                           * partition; -1: no fence */
};

/* A read's lower bound (schemas/README.md §2, min_positions): the state
 * must include the event at offset of partition, i.e. the offsets
 * recorded for the topic have next_offset > offset there. */
struct store_position {
    int32_t partition;
    int64_t offset;
};

/* A batch of writes applied together with the offsets they came from. */
struct store_batch {
    const struct store_op *ops;
    size_t n_ops;
    const char *topic; /* may be NULL when n_offsets == 0 */
    const struct store_offset *offsets;
    size_t n_offsets;
    size_t changed; /* out: how many ops changed the state */
};

/* A copy of one stored entry, owned by the caller: free with
 * store_record_clear(). In list results entry_json is NULL. */
struct store_record {
    char *counter_party_id;
    char *counter_party_address;
    char *query_checksum;
    char *policy_checksum;
    char *transfer_id;
    char *asset_id; /* the entry's string assetId, or NULL */
    char *entry_json;
    size_t entry_len;
};

/* One page of list results, owned by the caller: store_list_clear(). */
struct store_list {
    struct store_record *items;
    size_t n_items;
    /* The connection key of the last item when more may follow, else NULL.
     * Every store orders by connection key, so a cursor from one worker is
     * valid on any other. */
    char *next_cursor;
};

/* Which entries count() and list() cover (schemas/README.md §2, v2
 * filters): every member given must hold; NULL members (or a NULL filter)
 * match everything. Borrowed for the call. */
struct store_filter {
    const char *party_substring; /* counter_party_id contains it ("" = any) */
    const char *transfer_id;     /* the entry's transferProcessId, exact */
    const char *asset_id;        /* the entry's string assetId, exact */
    const char *asset_id_prefix; /* byte prefix of the string assetId */
};

/* A filter on counter_party_id alone, for callers and tests. */
#define STORE_FILTER_PARTY(s)                                                  \
    (&(const struct store_filter){.party_substring = (s)})

/* 1 when f asks only for a party substring (or nothing): what v1 stores
 * supported. */
int store_filter_party_only(const struct store_filter *f);

struct store;

/* What a backend is, for the worker's Kafka loop: ingest reads these
 * instead of the backend's name, so a new backend needs no edit there. */
struct store_caps {
    /* The state is shared by every worker (one table): workers split the
     * partitions in a consumer group. 0: each worker holds the whole
     * state and reads every partition itself. */
    unsigned shared : 1;
    /* The state does not survive a restart: saved offsets are ignored
     * and the log is replayed from its start (or restored, §4). */
    unsigned volatile_state : 1;
    /* count() is O(1), cheap enough to refresh the gauge every batch. */
    unsigned cheap_count : 1;
};

struct store_ops {
    const char *name; /* "memory", "file" or "postgres" */
    struct store_caps caps;

    /* Applies every op of b and records its offsets, all or nothing. */
    int (*apply)(struct store *st, struct store_batch *b,
                 struct store_err *err);
    /* Copies the entry at k into *out; STORE_NOT_FOUND when absent. */
    int (*get)(struct store *st, const struct edr_key *k,
               struct store_record *out, struct store_err *err);
    /* *out = malloc'd copy of the entry's transfer id, or NOT_FOUND. */
    int (*get_transfer_id)(struct store *st, const struct edr_key *k,
                           char **out, struct store_err *err);
    /* Exact number of entries that match f (NULL counts all). */
    int (*count)(struct store *st, const struct store_filter *f, uint64_t *out,
                 struct store_err *err);
    /* Up to limit entries with connection key > cursor (NULL: from the
     * start) that match f (NULL: all), ascending by connection key. limit
     * is 1..1000. Items carry asset_id when the entry has a string
     * assetId. */
    int (*list)(struct store *st, const struct store_filter *f,
                const char *cursor, size_t limit, struct store_list *out,
                struct store_err *err);
    /* The entry whose transferProcessId is transfer_id; when several
     * connections hold it, the one with the smallest connection key.
     * STORE_NOT_FOUND when none. NULL in a backend without it. */
    int (*get_by_transfer_id)(struct store *st, const char *transfer_id,
                              struct store_record *out, struct store_err *err);
    /* Removes every entry whose counter_party_id contains substring
     * (non-empty); *removed = how many entries went. */
    int (*clear_party)(struct store *st, const char *substring,
                       uint64_t *removed, struct store_err *err);
    /* *out = malloc'd array of the offsets last applied for topic (n = 0
     * when none); the worker resumes from them. */
    int (*load_offsets)(struct store *st, const char *topic,
                        struct store_offset **out, size_t *n,
                        struct store_err *err);
    /* Optional (NULL: the caller checks load_offsets, then calls get):
     * get, once the offsets recorded for topic cover every position of
     * need (n_need >= 1), both read together so the entry is at least as
     * recent as those offsets; for a remote store one round trip instead
     * of two. *reached = 0, *out empty and STORE_OK when they do not
     * cover them yet; else *reached = 1 and the result is get's. */
    int (*get_after)(struct store *st, const char *topic,
                     const struct store_position *need, size_t n_need,
                     const struct edr_key *k, struct store_record *out,
                     int *reached, struct store_err *err);
    /* Optional, for shared stores (NULL: the caller just polls): sleeps
     * until the store hears of a batch applied by any worker after *gen
     * was taken, or until until_ms (edr_clock_ms's clock); sets *gen to
     * the current count. 1: something was applied (a hint only: re-read
     * the state); 0: time-out (until_ms <= now just takes *gen); -1: the
     * store cannot tell now (not listening): poll. Any thread. */
    int (*wait_applied)(struct store *st, uint64_t *gen, int64_t until_ms);
    /* Optional (NULL: use count): a cheap, possibly stale number of all
     * entries for gauges and ping, where count() would scan (PostgreSQL).
     * Never for replies that promise an exact count. */
    int (*estimate)(struct store *st, uint64_t *out, struct store_err *err);
    /* Persists what must be persisted and frees everything. NULL is ok. */
    void (*close)(struct store *st);
};

struct store {
    const struct store_ops *ops;
};

/* Backends. Each returns NULL and fills err on failure. */
struct store *mem_store_open(struct store_err *err);
/* path: the store file; its folder is created (0700) if absent. */
struct store *file_store_open(const char *path, struct store_err *err);
/* table: validated as an SQL identifier; tables created if absent. */
struct store *pg_store_open(const char *dsn, const char *table,
                            struct store_err *err);

/* Convenience wrappers (store.c): one-op batches without offsets. */
int store_put(struct store *st, const struct edr_key *k,
              const char *transfer_id, const char *entry_json, size_t entry_len,
              struct store_err *err);
/* STORE_OK when an entry was removed, STORE_NOT_FOUND when none was. */
int store_delete(struct store *st, const struct edr_key *k,
                 const char *if_transfer_id, struct store_err *err);
void store_close(struct store *st);

void store_record_clear(struct store_record *r);
void store_list_clear(struct store_list *l);

/* Fills err and returns status; for backends. */
int store_fail(struct store_err *err, int status, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

#endif

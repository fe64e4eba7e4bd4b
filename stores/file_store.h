/* file_store.h: tuning and inspection of the file store, beyond store.h.
 *
 * Files, for a store at PATH (file_store_open in store.h):
 *   PATH          the snapshot: one JSON document (entries, offsets, seq)
 *   PATH.journal  batches since the snapshot, one framed JSON record each
 *   PATH.lock     held with flock() while a process has the store open
 *   PATH.tmp      a snapshot being written (renamed over PATH when done)
 *
 * At open, a torn journal tail (an incomplete last frame with nothing
 * valid after it: what a crash mid-append leaves) is cut off; any other
 * bad frame, a snapshot that fails its checksum and a read() error refuse
 * the open with STORE_FATAL naming the file and byte offset, and leave
 * the files as they are (file_journal.c). Running out of memory while
 * loading is STORE_TRANSIENT.
 *
 * Compaction rewrites the snapshot once the journal outgrows
 * max(the snapshot, compact_min), so its cost per batch stays bounded by a
 * constant times the batch's own size, however many entries are stored. */
#ifndef EDR_STORES_FILE_STORE_H
#define EDR_STORES_FILE_STORE_H

#include "stores/store.h"

#include <stddef.h>
#include <stdint.h>

/* 0 when path can name a file store's file; -1 with a message naming
 * EDR_FILE_PATH in errbuf (n bytes) when it cannot (empty, or ending in
 * '/'), an invalid setting (exit 2). Never touches the file system; the
 * worker's configuration calls it, and file_store_open() returns
 * STORE_INVALID for such a path. Any thread. */
int file_store_check_path(const char *path, char *errbuf, size_t n);

#define FILE_STORE_COMPACT_MIN_DEFAULT (64ull * 1024 * 1024)

/* Journal size below which no compaction happens (default 64 MiB);
 * 0 compacts after every write (tests). st must be a file store; writer
 * thread only. In test builds (EDR_TEST_HOOKS defined: the
 * edr-worker-test binary and the test libraries) file_store_open() takes
 * its initial value from the environment variable EDR_FILE_COMPACT_MIN
 * (bytes) when set, so the fault-tolerance suite (tests/fault/) can make a
 * worker compact often; release builds do not contain that hook. */
void file_store_set_compact_min(struct store *st, uint64_t bytes);

struct file_store_stats {
    uint64_t seq;            /* journal records applied so far */
    uint64_t journal_bytes;  /* current journal length */
    uint64_t snapshot_bytes; /* size of the last snapshot written/read */
    uint64_t compactions;    /* snapshots written by this process */
};

/* Writer thread only. */
void file_store_get_stats(struct store *st, struct file_store_stats *out);

#endif

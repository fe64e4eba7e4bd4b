/* changelog_restore.h: rebuilds the state of a memory/file worker from the
 * changelog topic (schemas/README.md §4 "The changelog").
 *
 * Reads every partition of EDR_CHANGELOG_TOPIC from its beginning with
 * isolation.level=read_committed, keeps the latest record per key (a
 * later record replaces an earlier one, a tombstone removes it), then
 * hands each live entry to the caller's callback, which puts it into its
 * (empty) store. Returns, per source partition, the position the restored
 * state reflects: the offsets committed for the ownership group
 * "<EDR_GROUP_ID>.changelog" in the writers' transactions
 * (worker/changelog.h). The caller continues EDR_TOPIC from there.
 *
 * Consistency: the committed offsets are read FIRST (read_committed: a
 * pending transactional commit is waited for), then the high watermark of
 * every changelog partition, and the changelog is read until the
 * read_committed end passes that watermark. So every transaction whose
 * offsets were read is in the restored state: the state is at or past the
 * returned position, never behind it (replaying from an earlier position
 * is harmless: applying events again leaves the same state).
 *
 * Memory: the latest record of every key is held until the end (what the
 * live entries cost, plus not-yet-compacted tombstones).
 *
 * Threads: any one thread; the callback runs on it. Blocking, bounded by
 * timeout_ms overall. No logging. */
#ifndef EDR_WORKER_CHANGELOG_RESTORE_H
#define EDR_WORKER_CHANGELOG_RESTORE_H

#include "schemas/edr_key.h"
#include "stores/store.h"
#include "worker/changelog.h"

#include <stddef.h>
#include <stdint.h>

/* Settings; borrowed for the call. */
struct changelog_restore_conf {
    const char *brokers;
    const char *source_topic;    /* EDR_TOPIC */
    const char *changelog_topic; /* EDR_CHANGELOG_TOPIC */
    const char *group_id;        /* EDR_GROUP_ID (ownership group is
                                  * "<group_id>.changelog") */
    char *const *kafka_props;    /* -X "name=value", or NULL */
    size_t n_kafka_props;
    int timeout_ms; /* whole restore; 0: 120000 */
    /* Optional: called once, after the changelog was read and before any
     * entry is handed to the callback, with the positions the restored
     * state will reflect (as in the result) and the callback's user.
     * Nonzero declines: nothing is handed over, CHANGELOG_STOPPED. */
    int (*check)(const struct store_offset *positions, size_t n, void *user);
};

/* One live entry, borrowed for the callback's duration. */
struct changelog_entry {
    int32_t partition; /* changelog (= source) partition */
    const char *connection_key;
    struct edr_key key;
    const char *transfer_id;
    const char *entry_json;
    size_t entry_len;
};

/* Return 0 to go on; anything else stops the restore (CHANGELOG_STOPPED). */
typedef int (*changelog_restore_cb)(const struct changelog_entry *e,
                                    void *user);

struct changelog_restore_result {
    /* malloc'd, one per source partition in partition order: next_offset
     * = where to continue EDR_TOPIC, first_offset = -1. It is the offset
     * committed for the ownership group; when the group has none (its
     * offsets expired) the highest CHANGELOG_HEADER_POSITION of the
     * partition's records (worker/changelog.h); else 0 (nothing was ever
     * written: replay from the start). */
    struct store_offset *positions;
    size_t n_positions;
    uint64_t records;      /* changelog records read */
    uint64_t live;         /* entries handed to the callback */
    uint64_t invalid;      /* records skipped: not a changelog record (bad key
                            * or value); the caller logs the count */
    uint64_t from_headers; /* positions taken from record headers because
                            * the group had no committed offset: the
                            * caller logs a warning */
};

/* Runs the restore. CHANGELOG_OK with *out filled (free with
 * changelog_restore_result_clear); CHANGELOG_TRANSIENT when the broker
 * did not answer or the end was not reached within timeout_ms;
 * CHANGELOG_FATAL on a bad setting, out of memory, or changelog and source
 * partition counts that differ; CHANGELOG_STOPPED when the callback said
 * so. On any error *out is empty. */
int changelog_restore(const struct changelog_restore_conf *conf,
                      changelog_restore_cb cb, void *user,
                      struct changelog_restore_result *out, char *errstr,
                      size_t n);

void changelog_restore_result_clear(struct changelog_restore_result *r);

#endif

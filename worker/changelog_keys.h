/* changelog_keys.h: the connection keys a batch (or a catch-up) touched,
 * whose current state goes to the changelog: collected, then sorted by
 * connection key and deduplicated, so each key's state is written once
 * (all changes of a key land in one partition). */
#ifndef EDR_WORKER_CHANGELOG_KEYS_H
#define EDR_WORKER_CHANGELOG_KEYS_H

#include "schemas/edr_key.h"

#include <stddef.h>
#include <stdint.h>

/* One key to write: its four fields (owned copies when own) and the
 * connection key that sorts and deduplicates them. */
struct cl_key {
    char ck[EDR_CONNECTION_KEY_LEN + 1];
    int32_t partition;
    struct edr_key key;
    int own;
};

struct cl_keys {
    struct cl_key *v;
    size_t n, cap;
};

/* Frees what ks holds and empties it. */
void cl_keys_clear(struct cl_keys *ks);

/* Adds k (its fields copied when own, else borrowed); -1 when out of
 * memory (ks stays valid for cl_keys_clear). */
int cl_keys_add(struct cl_keys *ks, int32_t partition, const struct edr_key *k,
                int own);

/* Sorts by connection key and removes duplicates. */
void cl_keys_unique(struct cl_keys *ks);

#endif

/* changelog_keys.c: see changelog_keys.h. */
#include "worker/changelog_keys.h"

#include <stdlib.h>
#include <string.h>

/* Frees e's copies of its four fields, when it owns them. */
static void key_free(struct cl_key *e)
{
    if (!e->own)
        return;
    free((char *)e->key.counter_party_id);
    free((char *)e->key.counter_party_address);
    free((char *)e->key.query_checksum);
    free((char *)e->key.policy_checksum);
}

void cl_keys_clear(struct cl_keys *ks)
{
    for (size_t i = 0; i < ks->n; i++)
        key_free(&ks->v[i]);
    free(ks->v);
    memset(ks, 0, sizeof(*ks));
}

int cl_keys_add(struct cl_keys *ks, int32_t partition, const struct edr_key *k,
                int own)
{
    if (ks->n == ks->cap) {
        size_t cap = ks->cap ? ks->cap * 2 : 64;
        struct cl_key *v = realloc(ks->v, cap * sizeof(*v));
        if (!v)
            return -1;
        ks->v = v;
        ks->cap = cap;
    }
    struct cl_key *e = &ks->v[ks->n];
    memset(e, 0, sizeof(*e));
    e->partition = partition;
    edr_connection_key(k, e->ck);
    if (own) {
        e->own = 1;
        e->key.counter_party_id = strdup(k->counter_party_id);
        e->key.counter_party_address = strdup(k->counter_party_address);
        e->key.query_checksum = strdup(k->query_checksum);
        e->key.policy_checksum = strdup(k->policy_checksum);
        ks->n++;
        if (!e->key.counter_party_id || !e->key.counter_party_address ||
            !e->key.query_checksum || !e->key.policy_checksum)
            return -1; /* counted, so cl_keys_clear frees the others */
        return 0;
    }
    e->key = *k;
    ks->n++;
    return 0;
}

static int cl_key_cmp(const void *a, const void *b)
{
    const struct cl_key *x = a, *y = b;
    return strcmp(x->ck, y->ck);
}

void cl_keys_unique(struct cl_keys *ks)
{
    if (ks->n < 2)
        return;
    qsort(ks->v, ks->n, sizeof(*ks->v), cl_key_cmp);
    size_t o = 1;
    for (size_t i = 1; i < ks->n; i++) {
        if (strcmp(ks->v[i].ck, ks->v[o - 1].ck) == 0) {
            key_free(&ks->v[i]); /* a duplicate's copies go now */
            continue;
        }
        ks->v[o++] = ks->v[i];
    }
    ks->n = o;
}

/* mem_read.c: the memory table's point lookups and offsets
 * (mem_table.h). Readers take the read lock only while they copy. */
#include "stores/mem_table_int.h"

#include <stdlib.h>
#include <string.h>

static char *mt_dup(const char *s, size_t n)
{
    char *d = malloc(n + 1);
    if (d) {
        memcpy(d, s, n);
        d[n] = '\0';
    }
    return d;
}

int mt_copy_record(const struct mem_entry *e, int with_json,
                   struct store_record *r)
{
    const char *p = e->data;
    char **dst[5] = {&r->counter_party_id, &r->counter_party_address,
                     &r->query_checksum, &r->policy_checksum, &r->transfer_id};
    for (int i = 0; i < 5; i++) {
        if (!(*dst[i] = mt_dup(p, e->len[i])))
            return -1;
        p += e->len[i] + 1;
    }
    if (with_json) {
        if (!(r->entry_json = mt_dup(p, e->json_len)))
            return -1;
        r->entry_len = e->json_len;
    }
    if (e->has_asset &&
        !(r->asset_id = mt_dup(mem_entry_field(e, 6), e->asset_len)))
        return -1;
    return 0;
}

static int mt_check_key(const struct edr_key *k, struct store_err *err)
{
    if (!k || !k->counter_party_id || !k->counter_party_address ||
        !k->query_checksum || !k->policy_checksum)
        return store_fail(err, STORE_INVALID, "missing key field");
    return STORE_OK;
}

int mem_table_get(struct mem_table *t, const struct edr_key *k,
                  struct store_record *out, struct store_err *err)
{
    const char *f[4];
    size_t len[4];
    int rc = mt_check_key(k, err);
    *out = (struct store_record){0};
    if (rc != STORE_OK)
        return rc;
    mt_key_fields(k, f, len);
    uint64_t h = mt_hash_key(t->seed, f, len);

    pthread_rwlock_rdlock(&t->lock);
    size_t at = mt_find(t->slots, t->cap, h, f, len);
    if (at == SIZE_MAX)
        rc = STORE_NOT_FOUND;
    else if (mt_copy_record(t->slots[at].e, 1, out) != 0)
        rc = STORE_TRANSIENT;
    pthread_rwlock_unlock(&t->lock);
    if (rc == STORE_TRANSIENT) {
        store_record_clear(out);
        return store_fail(err, rc, "out of memory");
    }
    return rc;
}

int mem_table_get_transfer_id(struct mem_table *t, const struct edr_key *k,
                              char **out, struct store_err *err)
{
    const char *f[4];
    size_t len[4];
    int rc = mt_check_key(k, err);
    *out = NULL;
    if (rc != STORE_OK)
        return rc;
    mt_key_fields(k, f, len);
    uint64_t h = mt_hash_key(t->seed, f, len);

    pthread_rwlock_rdlock(&t->lock);
    size_t at = mt_find(t->slots, t->cap, h, f, len);
    if (at == SIZE_MAX) {
        rc = STORE_NOT_FOUND;
    } else {
        const struct mem_entry *e = t->slots[at].e;
        if (!(*out = mt_dup(mem_entry_field(e, 4), e->len[4])))
            rc = STORE_TRANSIENT;
    }
    pthread_rwlock_unlock(&t->lock);
    if (rc == STORE_TRANSIENT)
        return store_fail(err, rc, "out of memory");
    return rc;
}

int mem_table_get_by_transfer_id(struct mem_table *t, const char *transfer_id,
                                 struct store_record *out,
                                 struct store_err *err)
{
    int rc = STORE_NOT_FOUND;
    *out = (struct store_record){0};
    if (!transfer_id)
        return store_fail(err, STORE_INVALID, "missing transfer id");
    size_t n = strlen(transfer_id);
    uint64_t h = mt_hash_str(t->seed, transfer_id, n);

    pthread_rwlock_rdlock(&t->lock);
    const struct mem_sec *s = &t->by_tid;
    const struct mem_entry *best = NULL;
    for (size_t i = s->cap ? mt_sec_first(s, h) : 0; s->cap && s->slots[i].e;
         i = mt_sec_next(s, i)) {
        const struct mem_entry *e = s->slots[i].e;
        if (s->slots[i].hash != h || e->len[4] != n ||
            memcmp(mem_entry_field(e, 4), transfer_id, n) != 0)
            continue;
        if (!best || memcmp(e->ck, best->ck, 32) < 0)
            best = e;
    }
    if (best)
        rc = mt_copy_record(best, 1, out) == 0 ? STORE_OK : STORE_TRANSIENT;
    pthread_rwlock_unlock(&t->lock);
    if (rc == STORE_TRANSIENT) {
        store_record_clear(out);
        return store_fail(err, rc, "out of memory");
    }
    return rc;
}

int mem_table_load_offsets(struct mem_table *t, const char *topic,
                           struct store_offset **out, size_t *n,
                           struct store_err *err)
{
    int rc = STORE_OK;
    *out = NULL;
    *n = 0;
    if (!topic)
        return store_fail(err, STORE_INVALID, "load_offsets: no topic");
    pthread_rwlock_rdlock(&t->lock);
    size_t cnt = 0;
    for (size_t i = 0; i < t->n_offs; i++)
        cnt += strcmp(t->offs[i].topic, topic) == 0;
    if (cnt > 0) {
        struct store_offset *o = malloc(cnt * sizeof(*o));
        if (o) {
            size_t j = 0;
            for (size_t i = 0; i < t->n_offs; i++)
                if (strcmp(t->offs[i].topic, topic) == 0)
                    o[j++] = (struct store_offset){t->offs[i].partition,
                                                   t->offs[i].next_offset, -1};
            *out = o;
            *n = cnt;
        } else {
            rc = STORE_TRANSIENT;
        }
    }
    pthread_rwlock_unlock(&t->lock);
    if (rc != STORE_OK)
        return store_fail(err, rc, "out of memory");
    return STORE_OK;
}

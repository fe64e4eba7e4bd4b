/* mem_table.c: see mem_table.h. The table's lifecycle and its writes:
 * prepare (validate, fence, allocate everything), commit (link under the
 * write lock, cannot fail), abort, and clear_party's two steps. The other
 * files are listed in mem_table_int.h. */
#define _GNU_SOURCE /* pthread_rwlockattr_setkind_np: writer preference */
#include "stores/mem_table_int.h"

#include <errno.h>
#include <inttypes.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <time.h>

/* ---- lifecycle -------------------------------------------------------- */

int mem_table_init(struct mem_table *t, struct store_err *err)
{
    memset(t, 0, sizeof(*t));
    pthread_rwlockattr_t attr;
    pthread_rwlockattr_init(&attr);
    /* A responder thread doing lookups back to back must not starve the
     * Kafka writer. */
    pthread_rwlockattr_setkind_np(&attr,
                                  PTHREAD_RWLOCK_PREFER_WRITER_NONRECURSIVE_NP);
    int rc = pthread_rwlock_init(&t->lock, &attr);
    pthread_rwlockattr_destroy(&attr);
    if (rc != 0)
        return store_fail(err, STORE_FATAL, "rwlock init: %s", strerror(rc));
    pthread_mutex_init(&t->write_mu, NULL);
    pthread_mutex_init(&t->scan_mu, NULL);
    /* A per-table seed: keys come from other programs, so make collision
     * flooding impractical. */
    if (getrandom(&t->seed, sizeof(t->seed), GRND_NONBLOCK) !=
        (ssize_t)sizeof(t->seed))
        t->seed = (uint64_t)time(NULL) ^ (uint64_t)(uintptr_t)t;
    t->cap = MT_MIN_CAP;
    t->slots = calloc(t->cap, sizeof(*t->slots));
    if (!t->slots) {
        pthread_rwlock_destroy(&t->lock);
        pthread_mutex_destroy(&t->write_mu);
        pthread_mutex_destroy(&t->scan_mu);
        return store_fail(err, STORE_TRANSIENT, "out of memory");
    }
    return STORE_OK;
}

void mem_table_destroy(struct mem_table *t)
{
    if (!t->slots)
        return;
    for (size_t i = 0; i < t->cap; i++)
        mt_entry_free(t->slots[i].e);
    free(t->slots);
    free(t->by_tid.slots);
    free(t->by_asset.slots);
    mt_index_destroy(t);
    for (size_t i = 0; i < t->n_offs; i++)
        free(t->offs[i].topic);
    free(t->offs);
    pthread_rwlock_destroy(&t->lock);
    pthread_mutex_destroy(&t->write_mu);
    pthread_mutex_destroy(&t->scan_mu);
    memset(t, 0, sizeof(*t));
}

void mem_table_writer_lock(struct mem_table *t)
{
    pthread_mutex_lock(&t->write_mu);
}

void mem_table_writer_unlock(struct mem_table *t)
{
    pthread_mutex_unlock(&t->write_mu);
}

/* ---- writes ----------------------------------------------------------- */

ptrdiff_t mt_off_find(const struct mem_offset *offs, size_t n,
                      const char *topic, int32_t partition)
{
    for (size_t i = 0; i < n; i++)
        if (offs[i].partition == partition && strcmp(offs[i].topic, topic) == 0)
            return (ptrdiff_t)i;
    return -1;
}

static int mt_validate(const struct store_batch *b, size_t *n_puts,
                       struct store_err *err)
{
    *n_puts = 0;
    if (b->n_ops > 0 && !b->ops)
        return store_fail(err, STORE_INVALID, "batch: ops is NULL");
    if (b->n_offsets > 0 && (!b->offsets || !b->topic))
        return store_fail(err, STORE_INVALID, "batch: offsets without a topic");
    for (size_t i = 0; i < b->n_ops; i++) {
        const struct store_op *op = &b->ops[i];
        const struct edr_key *k = &op->key;
        if (!k->counter_party_id || !k->counter_party_address ||
            !k->query_checksum || !k->policy_checksum)
            return store_fail(err, STORE_INVALID, "op %zu: missing key field",
                              i);
        if (op->kind == STORE_OP_PUT) {
            if (!op->transfer_id || !op->transfer_id[0])
                return store_fail(err, STORE_INVALID,
                                  "op %zu: put without transfer id", i);
            if (!op->entry_json || op->entry_len == 0)
                return store_fail(err, STORE_INVALID,
                                  "op %zu: put without entry", i);
            if (op->entry_len > MT_MAX_FIELD)
                return store_fail(err, STORE_INVALID, "op %zu: entry too large",
                                  i);
            (*n_puts)++;
        } else if (op->kind != STORE_OP_DELETE) {
            return store_fail(err, STORE_INVALID, "op %zu: unknown kind", i);
        }
    }
    return STORE_OK;
}

/* The offset fence (store.h, struct store_offset): one writer owns this
 * table, so it only trips when a caller replays work behind its own
 * progress, but every backend keeps the same contract. Writer lock held,
 * so t->offs cannot change underneath. */
static int mt_fence(const struct mem_table *t, const struct store_batch *b,
                    struct store_err *err)
{
    for (size_t i = 0; i < b->n_offsets; i++) {
        const struct store_offset *o = &b->offsets[i];
        if (o->first_offset < 0)
            continue;
        ptrdiff_t at = mt_off_find(t->offs, t->n_offs, b->topic, o->partition);
        if (at >= 0 && t->offs[at].next_offset > o->first_offset)
            return store_fail(err, STORE_CONFLICT,
                              "offsets fenced: partition %" PRId32
                              " is at %" PRId64 ", past this batch's first "
                              "offset %" PRId64,
                              o->partition, t->offs[at].next_offset,
                              o->first_offset);
    }
    return STORE_OK;
}

int mem_table_prepare(struct mem_table *t, const struct store_batch *b,
                      struct mem_prep *p, struct store_err *err)
{
    size_t n_puts, n_assets = 0;
    memset(p, 0, sizeof(*p));
    int rc = mt_validate(b, &n_puts, err);
    if (rc != STORE_OK)
        return rc;
    if ((rc = mt_fence(t, b, err)) != STORE_OK)
        return rc;

    p->n_ops = b->n_ops;
    if (b->n_ops <= MEM_PREP_INLINE) {
        p->nodes = p->inline_nodes;
        p->garbage = p->inline_garbage;
    } else {
        p->nodes = calloc(b->n_ops, sizeof(*p->nodes));
        p->garbage = malloc(b->n_ops * sizeof(*p->garbage));
        if (!p->nodes || !p->garbage)
            goto oom;
    }
    for (size_t i = 0; i < b->n_ops; i++) {
        const struct store_op *op = &b->ops[i];
        p->nodes[i] = NULL;
        if (op->kind != STORE_OP_PUT)
            continue;
        const char *f[4];
        size_t len[4];
        mt_key_fields(&op->key, f, len);
        size_t tid_len = strlen(op->transfer_id);
        if (len[0] + len[1] + len[2] + len[3] + tid_len > MT_MAX_FIELD) {
            mem_table_abort(p);
            return store_fail(err, STORE_INVALID, "op %zu: key too large", i);
        }
        uint64_t h = mt_hash_key(t->seed, f, len);
        /* The writer mutex is held: the slots can be read unlocked. */
        size_t at = mt_find(t->slots, t->cap, h, f, len);
        p->nodes[i] = mt_entry_new(h, f, len, op->transfer_id, tid_len,
                                   op->entry_json, op->entry_len,
                                   at != SIZE_MAX ? t->slots[at].e->ck : NULL);
        if (!p->nodes[i])
            goto oom;
        n_assets += p->nodes[i]->has_asset;
    }

    /* The secondary indexes, as the slots below: room for every put. */
    if (n_puts > 0 &&
        (mt_sec_reserve(&t->by_tid, n_puts, &p->new_tid) != 0 ||
         mt_sec_reserve(&t->by_asset, n_assets, &p->new_asset) != 0))
        goto oom;

    /* Index nodes too: commit takes them from the pool. */
    if (n_puts > 0 && mt_index_reserve(t, n_puts) != 0)
        goto oom;

    /* Grow now so commit never allocates: room for every put as new. */
    if (mt_need_grow(t->cap, t->count + n_puts)) {
        size_t cap = t->cap;
        while (mt_need_grow(cap, t->count + n_puts))
            cap *= 2;
        p->new_slots = calloc(cap, sizeof(*p->new_slots));
        if (!p->new_slots)
            goto oom;
        p->new_cap = cap;
        for (size_t i = 0; i < t->cap; i++)
            if (t->slots[i].e)
                mt_insert_new(p->new_slots, cap, t->slots[i].e);
    }

    /* Offsets: one new record per (topic, partition) not seen before. */
    size_t missing = 0;
    for (size_t i = 0; i < b->n_offsets; i++) {
        int32_t part = b->offsets[i].partition;
        if (mt_off_find(t->offs, t->n_offs, b->topic, part) >= 0)
            continue;
        int dup = 0;
        for (size_t j = 0; j < i && !dup; j++)
            dup = b->offsets[j].partition == part;
        missing += !dup;
    }
    if (missing > 0) {
        p->topics = calloc(missing, sizeof(*p->topics));
        if (!p->topics)
            goto oom;
        p->n_topics = missing;
        for (size_t i = 0; i < missing; i++)
            if (!(p->topics[i] = strdup(b->topic)))
                goto oom;
        if (t->n_offs + missing > t->cap_offs) {
            size_t cap = t->cap_offs ? t->cap_offs * 2 : 16;
            while (cap < t->n_offs + missing)
                cap *= 2;
            p->new_offs = malloc(cap * sizeof(*p->new_offs));
            if (!p->new_offs)
                goto oom;
            p->new_cap_offs = cap;
        }
    }
    return STORE_OK;

oom:
    mem_table_abort(p);
    return store_fail(err, STORE_TRANSIENT, "out of memory");
}

static void mt_prep_free(struct mem_prep *p)
{
    if (p->nodes && p->nodes != p->inline_nodes)
        free(p->nodes);
    if (p->garbage && p->garbage != p->inline_garbage)
        free(p->garbage);
    if (p->topics) {
        for (size_t i = 0; i < p->n_topics; i++)
            free(p->topics[i]);
        free(p->topics);
    }
    free(p->old_slots_to_free);
    free(p->old_offs_to_free);
    free(p->old_sec_to_free[0]);
    free(p->old_sec_to_free[1]);
    memset(p, 0, sizeof(*p));
}

void mem_table_abort(struct mem_prep *p)
{
    if (p->nodes)
        for (size_t i = 0; i < p->n_ops; i++)
            mt_entry_free(p->nodes[i]);
    free(p->new_slots);
    free(p->new_offs);
    free(p->new_tid.slots);
    free(p->new_asset.slots);
    mt_prep_free(p);
}

void mem_table_commit(struct mem_table *t, struct store_batch *b,
                      struct mem_prep *p)
{
    size_t changed = 0, used_topics = 0;

    pthread_rwlock_wrlock(&t->lock);
    if (p->new_slots) {
        p->old_slots_to_free = t->slots;
        t->slots = p->new_slots;
        t->cap = p->new_cap;
        p->new_slots = NULL;
    }
    p->old_sec_to_free[0] = mt_sec_swap(&t->by_tid, &p->new_tid);
    p->old_sec_to_free[1] = mt_sec_swap(&t->by_asset, &p->new_asset);
    for (size_t i = 0; i < b->n_ops; i++) {
        const struct store_op *op = &b->ops[i];
        const char *f[4];
        size_t len[4];
        if (op->kind == STORE_OP_PUT) {
            struct mem_entry *e = p->nodes[i];
            p->nodes[i] = NULL; /* now owned by the table */
            const char *q = e->data;
            for (int j = 0; j < 4; j++) {
                f[j] = q;
                len[j] = e->len[j];
                q += len[j] + 1;
            }
            size_t at = mt_find(t->slots, t->cap, e->hash, f, len);
            if (at != SIZE_MAX) {
                /* Same key, same connection key: the ordered index keeps
                 * its place; the transfer id or asset id may change, so
                 * the secondary indexes and filtered counts follow. */
                struct mem_entry *old = t->slots[at].e;
                mt_index_replace(t, old, e);
                mt_sec_unlink(t, old);
                mt_sec_link(t, e);
                mt_scans_note(t, old, -1);
                mt_scans_note(t, e, +1);
                p->garbage[p->n_garbage++] = old;
                t->slots[at].e = e;
            } else {
                mt_insert_new(t->slots, t->cap, e);
                mt_index_insert(t, e);
                mt_sec_link(t, e);
                t->count++;
                mt_scans_note(t, e, +1);
            }
            changed++;
        } else {
            mt_key_fields(&op->key, f, len);
            uint64_t h = mt_hash_key(t->seed, f, len);
            size_t at = mt_find(t->slots, t->cap, h, f, len);
            if (at == SIZE_MAX)
                continue;
            struct mem_entry *e = t->slots[at].e;
            if (op->transfer_id &&
                strcmp(op->transfer_id, mem_entry_field(e, 4)) != 0)
                continue;
            mt_remove_at(t->slots, t->cap, at);
            mt_index_remove(t, e);
            mt_sec_unlink(t, e);
            mt_scans_note(t, e, -1);
            t->count--;
            p->garbage[p->n_garbage++] = e;
            changed++;
        }
    }
    if (p->new_offs) {
        if (t->n_offs)
            memcpy(p->new_offs, t->offs, t->n_offs * sizeof(*t->offs));
        p->old_offs_to_free = t->offs;
        t->offs = p->new_offs;
        t->cap_offs = p->new_cap_offs;
        p->new_offs = NULL;
    }
    for (size_t i = 0; i < b->n_offsets; i++) {
        const struct store_offset *o = &b->offsets[i];
        ptrdiff_t at = mt_off_find(t->offs, t->n_offs, b->topic, o->partition);
        if (at < 0) {
            at = (ptrdiff_t)t->n_offs++;
            t->offs[at].topic = p->topics[used_topics];
            p->topics[used_topics++] = NULL;
            t->offs[at].partition = o->partition;
        }
        t->offs[at].next_offset = o->next_offset;
    }
    pthread_rwlock_unlock(&t->lock);

    b->changed = changed;
    for (size_t i = 0; i < p->n_garbage; i++)
        mt_entry_free(p->garbage[i]);
    mt_prep_free(p);
}

int mem_table_clear_collect(struct mem_table *t, const char *substring,
                            struct mem_entry ***victims, size_t *n,
                            struct store_err *err)
{
    struct mem_entry **v = NULL;
    size_t cnt = 0, cap = 0;
    *victims = NULL;
    *n = 0;
    if (!substring || !substring[0])
        return store_fail(err, STORE_INVALID, "clear: empty substring");
    for (size_t i = 0; i < t->cap; i++) {
        struct mem_entry *e = t->slots[i].e;
        if (!e || !strstr(e->data, substring))
            continue;
        if (cnt == cap) {
            size_t ncap = cap ? cap * 2 : 64;
            struct mem_entry **nv = realloc(v, ncap * sizeof(*v));
            if (!nv) {
                free(v);
                return store_fail(err, STORE_TRANSIENT, "out of memory");
            }
            v = nv;
            cap = ncap;
        }
        v[cnt++] = e;
    }
    *victims = v;
    *n = cnt;
    return STORE_OK;
}

void mem_table_clear_commit(struct mem_table *t, struct mem_entry **victims,
                            size_t n)
{
    pthread_rwlock_wrlock(&t->lock);
    for (size_t k = 0; k < n; k++) {
        size_t mask = t->cap - 1;
        size_t i = victims[k]->hash & mask;
        while (t->slots[i].e != victims[k])
            i = (i + 1) & mask;
        mt_remove_at(t->slots, t->cap, i);
        mt_index_remove(t, victims[k]);
        mt_sec_unlink(t, victims[k]);
        mt_scans_note(t, victims[k], -1);
        t->count--;
    }
    pthread_rwlock_unlock(&t->lock);
    for (size_t k = 0; k < n; k++)
        mt_entry_free(victims[k]);
    free(victims);
}

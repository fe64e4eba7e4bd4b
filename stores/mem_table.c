/* mem_table.c: see mem_table.h.
 *
 * Linear probing with the 64-bit hash kept in the slot, so a probe touches
 * an entry only on a likely hit; deletion shifts followers back (no
 * tombstones), so lookups never slow down under churn. Max load 0.8.
 *
 * The connection key (SHA-256) is computed lazily by list() and cached in
 * the entry: this SHA-256 costs ~1.3 us per key here, more than the whole
 * budget of a put at 1,000,000 puts/s, and only list() needs it. The cache
 * is written by whichever reader gets there first (an atomic state byte
 * makes that race-free), so each entry is hashed at most once. */
#define _GNU_SOURCE /* pthread_rwlockattr_setkind_np: writer preference */
#include "stores/mem_table.h"

#include "schemas/sha256.h"

#include <errno.h>
#include <inttypes.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <time.h>

#define MT_MIN_CAP 1024
#define MT_MAX_FIELD (UINT32_MAX / 4)

/* ---- hashing ---------------------------------------------------------- */

static inline uint64_t mt_mix(uint64_t a, uint64_t b)
{
    __uint128_t r = (__uint128_t)a * b;
    return (uint64_t)r ^ (uint64_t)(r >> 64);
}

/* wyhash-style: 16 bytes per multiply; the length is mixed in, which
 * separates the fields as well as a separator byte would. */
static uint64_t mt_hash_bytes(uint64_t h, const char *s, size_t n)
{
    const uint64_t k1 = 0xa0761d6478bd642full, k2 = 0xe7037ed1a0b428dbull;
    const size_t len = n;
    uint64_t a = 0, b = 0;
    while (n > 16) {
        memcpy(&a, s, 8);
        memcpy(&b, s + 8, 8);
        h = mt_mix(a ^ k1, b ^ h);
        s += 16;
        n -= 16;
    }
    if (n >= 8) {
        memcpy(&a, s, 8);
        memcpy(&b, s + n - 8, 8);
    } else if (n >= 4) {
        uint32_t x, y;
        memcpy(&x, s, 4);
        memcpy(&y, s + n - 4, 4);
        a = x;
        b = y;
    } else if (n > 0) {
        const unsigned char *u = (const unsigned char *)s;
        a = (uint64_t)u[0] << 16 | (uint64_t)u[n >> 1] << 8 | u[n - 1];
        b = 0;
    } else {
        a = b = 0;
    }
    return mt_mix(a ^ k1 ^ len, b ^ h ^ k2);
}

static uint64_t mt_hash_key(uint64_t seed, const char *const f[4],
                            const size_t len[4])
{
    uint64_t h = seed;
    for (int i = 0; i < 4; i++)
        h = mt_hash_bytes(h, f[i], len[i]);
    return h;
}

/* ---- entries ---------------------------------------------------------- */

const char *mem_entry_field(const struct mem_entry *e, int i)
{
    const char *p = e->data;
    for (int j = 0; j < i; j++)
        p += e->len[j] + 1;
    return p;
}

static struct mem_entry *mt_entry_new(uint64_t hash, const char *const f[4],
                                      const size_t len[4], const char *tid,
                                      size_t tid_len, const char *json,
                                      size_t json_len)
{
    size_t total = sizeof(struct mem_entry) + len[0] + len[1] + len[2] +
                   len[3] + tid_len + json_len + 6;
    struct mem_entry *e = malloc(total);
    if (!e)
        return NULL;
    e->hash = hash;
    char *p = e->data;
    for (int i = 0; i < 4; i++) {
        e->len[i] = (uint32_t)len[i];
        memcpy(p, f[i], len[i]);
        p[len[i]] = '\0';
        p += len[i] + 1;
    }
    e->len[4] = (uint32_t)tid_len;
    memcpy(p, tid, tid_len);
    p[tid_len] = '\0';
    p += tid_len + 1;
    e->json_len = (uint32_t)json_len;
    memcpy(p, json, json_len);
    p[json_len] = '\0';
    atomic_init(&e->ck_state, 0);
    return e;
}

/* The raw connection key of e (schemas/README.md §1), cached in e. */
static void mt_entry_ck(struct mem_entry *e, unsigned char out[32])
{
    if (atomic_load_explicit(&e->ck_state, memory_order_acquire) == 2) {
        memcpy(out, e->ck, 32);
        return;
    }
    const unsigned char sep = 0x1F;
    struct sha256 s;
    sha256_init(&s);
    const char *p = e->data;
    for (int i = 0; i < 4; i++) {
        if (i > 0)
            sha256_update(&s, &sep, 1);
        sha256_update(&s, p, e->len[i]);
        p += e->len[i] + 1;
    }
    sha256_final(&s, out);
    unsigned char expect = 0;
    if (atomic_compare_exchange_strong(&e->ck_state, &expect, 1)) {
        memcpy(e->ck, out, 32);
        atomic_store_explicit(&e->ck_state, 2, memory_order_release);
    }
}

static int mt_entry_matches(const struct mem_entry *e, uint64_t hash,
                            const char *const f[4], const size_t len[4])
{
    if (e->hash != hash)
        return 0;
    const char *p = e->data;
    for (int i = 0; i < 4; i++) {
        if (e->len[i] != len[i] || memcmp(p, f[i], len[i]) != 0)
            return 0;
        p += len[i] + 1;
    }
    return 1;
}

static void mt_key_fields(const struct edr_key *k, const char *f[4],
                          size_t len[4])
{
    f[0] = k->counter_party_id;
    f[1] = k->counter_party_address;
    f[2] = k->query_checksum;
    f[3] = k->policy_checksum;
    for (int i = 0; i < 4; i++)
        len[i] = strlen(f[i]);
}

/* ---- slots ------------------------------------------------------------ */

/* Index of the slot holding the key, or SIZE_MAX. */
static size_t mt_find(const struct mem_slot *slots, size_t cap, uint64_t hash,
                      const char *const f[4], const size_t len[4])
{
    size_t mask = cap - 1;
    for (size_t i = hash & mask;; i = (i + 1) & mask) {
        const struct mem_slot *s = &slots[i];
        if (!s->e)
            return SIZE_MAX;
        if (s->hash == hash && mt_entry_matches(s->e, hash, f, len))
            return i;
    }
}

static void mt_insert_new(struct mem_slot *slots, size_t cap,
                          struct mem_entry *e)
{
    size_t mask = cap - 1;
    size_t i = e->hash & mask;
    while (slots[i].e)
        i = (i + 1) & mask;
    slots[i].hash = e->hash;
    slots[i].e = e;
}

/* Backward-shift deletion: keeps every follower reachable from its home
 * slot without tombstones. */
static void mt_remove_at(struct mem_slot *slots, size_t cap, size_t i)
{
    size_t mask = cap - 1;
    size_t j = i;
    for (;;) {
        j = (j + 1) & mask;
        if (!slots[j].e)
            break;
        size_t home = slots[j].hash & mask;
        /* Leave slots[j] where it is if its home lies cyclically in
         * (i, j]; otherwise it may move into the hole at i. */
        int stays =
            (i <= j) ? (home > i && home <= j) : (home > i || home <= j);
        if (!stays) {
            slots[i] = slots[j];
            i = j;
        }
    }
    slots[i].e = NULL;
    slots[i].hash = 0;
}

static int mt_need_grow(size_t cap, size_t n)
{
    return n * 5 > cap * 4; /* load > 0.8 */
}

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
        return store_fail(err, STORE_FATAL, "out of memory");
    }
    return STORE_OK;
}

void mem_table_destroy(struct mem_table *t)
{
    if (!t->slots)
        return;
    for (size_t i = 0; i < t->cap; i++)
        free(t->slots[i].e);
    free(t->slots);
    for (size_t i = 0; i < t->n_offs; i++)
        free(t->offs[i].topic);
    free(t->offs);
    pthread_rwlock_destroy(&t->lock);
    pthread_mutex_destroy(&t->write_mu);
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

static ptrdiff_t mt_off_find(const struct mem_offset *offs, size_t n,
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
    size_t n_puts;
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
        p->nodes[i] =
            mt_entry_new(mt_hash_key(t->seed, f, len), f, len, op->transfer_id,
                         tid_len, op->entry_json, op->entry_len);
        if (!p->nodes[i])
            goto oom;
    }

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
    memset(p, 0, sizeof(*p));
}

void mem_table_abort(struct mem_prep *p)
{
    if (p->nodes)
        for (size_t i = 0; i < p->n_ops; i++)
            free(p->nodes[i]);
    free(p->new_slots);
    free(p->new_offs);
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
                p->garbage[p->n_garbage++] = t->slots[at].e;
                t->slots[at].e = e;
            } else {
                mt_insert_new(t->slots, t->cap, e);
                t->count++;
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
        free(p->garbage[i]);
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
        t->count--;
    }
    pthread_rwlock_unlock(&t->lock);
    for (size_t k = 0; k < n; k++)
        free(victims[k]);
    free(victims);
}

/* ---- reads ------------------------------------------------------------ */

static char *mt_dup(const char *s, size_t n)
{
    char *d = malloc(n + 1);
    if (d) {
        memcpy(d, s, n);
        d[n] = '\0';
    }
    return d;
}

/* Copies e's keys and transfer id (and JSON if with_json) into r. */
static int mt_copy_record(const struct mem_entry *e, int with_json,
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

int mem_table_count(struct mem_table *t, const char *substring, uint64_t *out,
                    struct store_err *err)
{
    (void)err;
    uint64_t n = 0;
    pthread_rwlock_rdlock(&t->lock);
    if (!substring || !substring[0]) {
        n = t->count;
    } else {
        for (size_t i = 0; i < t->cap; i++) {
            const struct mem_entry *e = t->slots[i].e;
            if (e && strstr(e->data, substring))
                n++;
        }
    }
    pthread_rwlock_unlock(&t->lock);
    *out = n;
    return STORE_OK;
}

struct mt_pick {
    unsigned char ck[32];
    struct mem_entry *e;
};

static int mt_pick_cmp(const struct mt_pick *a, const struct mt_pick *b)
{
    return memcmp(a->ck, b->ck, 32);
}

/* Max-heap of the smallest keys seen so far. */
static void mt_heap_sift_down(struct mt_pick *h, size_t n, size_t i)
{
    for (;;) {
        size_t l = 2 * i + 1, r = l + 1, m = i;
        if (l < n && mt_pick_cmp(&h[l], &h[m]) > 0)
            m = l;
        if (r < n && mt_pick_cmp(&h[r], &h[m]) > 0)
            m = r;
        if (m == i)
            return;
        struct mt_pick tmp = h[i];
        h[i] = h[m];
        h[m] = tmp;
        i = m;
    }
}

static void mt_heap_push(struct mt_pick *h, size_t n, struct mt_pick x)
{
    size_t i = n;
    h[i] = x;
    while (i > 0) {
        size_t up = (i - 1) / 2;
        if (mt_pick_cmp(&h[up], &h[i]) >= 0)
            break;
        struct mt_pick tmp = h[i];
        h[i] = h[up];
        h[up] = tmp;
        i = up;
    }
}

static int mt_hexval(char c)
{
    if (c >= '0' && c <= '9')
        return c - '0';
    if (c >= 'a' && c <= 'f')
        return c - 'a' + 10;
    return -1;
}

static void mt_hex(const unsigned char ck[32], char out[65])
{
    static const char hex[] = "0123456789abcdef";
    for (int i = 0; i < 32; i++) {
        out[2 * i] = hex[ck[i] >> 4];
        out[2 * i + 1] = hex[ck[i] & 15];
    }
    out[64] = '\0';
}

int mem_table_list(struct mem_table *t, const char *substring,
                   const char *cursor, size_t limit, struct store_list *out,
                   struct store_err *err)
{
    unsigned char after[32];
    struct mt_pick *heap = NULL;
    size_t n = 0;
    int rc = STORE_OK;

    *out = (struct store_list){0};
    if (limit < 1 || limit > 1000)
        return store_fail(err, STORE_INVALID, "limit must be 1..1000");
    if (cursor) {
        if (strlen(cursor) != 64)
            return store_fail(err, STORE_INVALID, "malformed cursor");
        for (int i = 0; i < 32; i++) {
            int hi = mt_hexval(cursor[2 * i]),
                lo = mt_hexval(cursor[2 * i + 1]);
            if (hi < 0 || lo < 0)
                return store_fail(err, STORE_INVALID, "malformed cursor");
            after[i] = (unsigned char)(hi << 4 | lo);
        }
    }
    /* One more than asked, to know whether another page follows. */
    heap = malloc((limit + 1) * sizeof(*heap));
    if (!heap)
        return store_fail(err, STORE_TRANSIENT, "out of memory");

    pthread_rwlock_rdlock(&t->lock);
    for (size_t i = 0; i < t->cap; i++) {
        struct mem_entry *e = t->slots[i].e;
        if (!e)
            continue;
        if (substring && substring[0] && !strstr(e->data, substring))
            continue;
        struct mt_pick x = {.e = e};
        mt_entry_ck(e, x.ck);
        if (cursor && memcmp(x.ck, after, 32) <= 0)
            continue;
        if (n < limit + 1) {
            mt_heap_push(heap, n++, x);
        } else if (mt_pick_cmp(&x, &heap[0]) < 0) {
            heap[0] = x;
            mt_heap_sift_down(heap, n, 0);
        }
    }
    /* Heap sort in place: ascending. */
    for (size_t m = n; m > 1; m--) {
        struct mt_pick tmp = heap[0];
        heap[0] = heap[m - 1];
        heap[m - 1] = tmp;
        mt_heap_sift_down(heap, m - 1, 0);
    }
    size_t take = n > limit ? limit : n;
    if (take > 0) {
        out->items = calloc(take, sizeof(*out->items));
        if (!out->items)
            rc = STORE_TRANSIENT;
    }
    for (size_t i = 0; rc == STORE_OK && i < take; i++) {
        if (mt_copy_record(heap[i].e, 0, &out->items[i]) != 0)
            rc = STORE_TRANSIENT;
        out->n_items = i + 1;
    }
    pthread_rwlock_unlock(&t->lock);

    if (rc == STORE_OK && n > limit) {
        out->next_cursor = malloc(65);
        if (out->next_cursor)
            mt_hex(heap[limit - 1].ck, out->next_cursor);
        else
            rc = STORE_TRANSIENT;
    }
    free(heap);
    if (rc != STORE_OK) {
        store_list_clear(out);
        return store_fail(err, rc, "out of memory");
    }
    return STORE_OK;
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

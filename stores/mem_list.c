/* mem_list.c: list() and count() of the memory table (mem_table.h), as
 * walks of the ordered index (mem_index.c).
 *
 * Neither holds the read lock across the table. A walk lets go of it
 * every MEM_SCAN_CHUNK entries and seeks back to where it was (by
 * connection key, so entries added or removed meanwhile do not derail
 * it): the writer and lookups wait at most one chunk. A list page
 * without a filter visits only its own entries. A count registers itself
 * (struct mem_scan) and the writer corrects it for every entry it adds
 * or removes at or before the scan's position, so the count is exact for
 * the state at the moment the scan ends; replacing an entry never
 * changes a count (same key, same counter_party_id). */
#include "stores/mem_table_int.h"

#include "base/hex.h"

#include <stdlib.h>
#include <string.h>

int mt_filter_match(const struct mem_entry *e, const struct store_filter *f)
{
    if (!f)
        return 1;
    /* data starts with the NUL-terminated counter_party_id */
    if (f->party_substring && f->party_substring[0] &&
        !strstr(e->data, f->party_substring))
        return 0;
    if (f->transfer_id && strcmp(mem_entry_field(e, 4), f->transfer_id) != 0)
        return 0;
    if (f->asset_id || f->asset_id_prefix) {
        if (!e->has_asset)
            return 0;
        const char *a = mem_entry_field(e, 6);
        if (f->asset_id && (strlen(f->asset_id) != e->asset_len ||
                            memcmp(a, f->asset_id, e->asset_len) != 0))
            return 0;
        if (f->asset_id_prefix) {
            size_t n = strlen(f->asset_id_prefix);
            if (n > e->asset_len || memcmp(a, f->asset_id_prefix, n) != 0)
                return 0;
        }
    }
    return 1;
}

/* 1 when f lets every entry through. */
static int mt_filter_all(const struct store_filter *f)
{
    return !f || (store_filter_party_only(f) &&
                  (!f->party_substring || !f->party_substring[0]));
}

/* The secondary index and value that an exact member of f selects (the
 * transfer id first: it is the more selective), or NULL. */
static const struct mem_sec *mt_filter_sec(const struct mem_table *t,
                                           const struct store_filter *f,
                                           uint64_t *h)
{
    if (f && f->transfer_id) {
        *h = mt_hash_str(t->seed, f->transfer_id, strlen(f->transfer_id));
        return &t->by_tid;
    }
    if (f && f->asset_id) {
        *h = mt_hash_str(t->seed, f->asset_id, strlen(f->asset_id));
        return &t->by_asset;
    }
    return NULL;
}

void mt_scans_note(struct mem_table *t, const struct mem_entry *e, int delta)
{
    for (struct mem_scan *s = t->scans; s; s = s->next) {
        if (!s->started)
            continue;
        s->writes_seen++;
        if (memcmp(e->ck, s->pos, 32) <= 0 && mt_filter_match(e, s->filter))
            s->delta += delta;
    }
}

static void mt_scan_link(struct mem_table *t, struct mem_scan *s, int on)
{
    pthread_mutex_lock(&t->scan_mu);
    if (on) {
        s->next = t->scans;
        t->scans = s;
    } else {
        struct mem_scan **pp = &t->scans;
        while (*pp != s)
            pp = &(*pp)->next;
        *pp = s->next;
    }
    pthread_mutex_unlock(&t->scan_mu);
}

int mem_table_count_filter(struct mem_table *t, const struct store_filter *f,
                           uint64_t *out, struct mem_scan_stats *stats,
                           struct store_err *err)
{
    struct mem_scan_stats local = {0};
    struct mem_scan s = {.filter = f};
    uint64_t n = 0, h = 0;
    (void)err;
    if (!stats)
        stats = &local;
    *stats = (struct mem_scan_stats){0};
    pthread_rwlock_rdlock(&t->lock);
    if (mt_filter_all(f)) {
        *out = t->count;
        pthread_rwlock_unlock(&t->lock);
        return STORE_OK;
    }
    const struct mem_sec *sec = mt_filter_sec(t, f, &h);
    if (sec) {
        /* Exact under one read lock: the entries that hold the value. */
        for (size_t i = sec->cap ? mt_sec_first(sec, h) : 0;
             sec->cap && sec->slots[i].e; i = mt_sec_next(sec, i)) {
            stats->visited++;
            if (sec->slots[i].hash == h && mt_filter_match(sec->slots[i].e, f))
                n++;
        }
        pthread_rwlock_unlock(&t->lock);
        *out = n;
        return STORE_OK;
    }
    mt_scan_link(t, &s, 1);
    struct mem_iter it;
    const struct mem_entry *e, *prev = NULL;
    size_t chunk = 0;
    mt_index_seek(t, NULL, &it, &stats->visited);
    while ((e = mt_iter_entry(&it))) {
        if (chunk == MEM_SCAN_CHUNK) {
            memcpy(s.pos, prev->ck, 32);
            s.started = 1;
            pthread_rwlock_unlock(&t->lock);
            stats->relocks++;
            pthread_rwlock_rdlock(&t->lock);
            mt_index_seek(t, s.pos, &it, &stats->visited);
            chunk = 0;
            continue;
        }
        chunk++;
        stats->visited++;
        n += mt_filter_match(e, f) ? 1 : 0;
        prev = e;
        mt_iter_next(&it);
    }
    mt_scan_link(t, &s, 0);
    stats->writes_seen = s.writes_seen;
    pthread_rwlock_unlock(&t->lock);
    *out = (uint64_t)((int64_t)n + s.delta);
    return STORE_OK;
}

int mem_table_count_ex(struct mem_table *t, const char *substring,
                       uint64_t *out, struct mem_scan_stats *stats,
                       struct store_err *err)
{
    return mem_table_count_filter(t, STORE_FILTER_PARTY(substring), out, stats,
                                  err);
}

int mem_table_count(struct mem_table *t, const char *substring, uint64_t *out,
                    struct store_err *err)
{
    return mem_table_count_ex(t, substring, out, NULL, err);
}

static int mt_ck_cmp(const void *a, const void *b)
{
    const struct mem_entry *x = *(const struct mem_entry *const *)a;
    const struct mem_entry *y = *(const struct mem_entry *const *)b;
    return memcmp(x->ck, y->ck, 32);
}

/* list() through a secondary index: the entries that hold the value,
 * after the cursor, sorted by connection key. Read lock held. Returns
 * STORE_OK or STORE_TRANSIENT; *n items copied, *more, *last. */
static int mt_list_sec(const struct mem_sec *sec, uint64_t h,
                       const struct store_filter *f, const unsigned char *after,
                       size_t limit, struct store_list *out, size_t *n,
                       int *more, unsigned char last[32],
                       struct mem_scan_stats *stats)
{
    const struct mem_entry **v = NULL;
    size_t cnt = 0, cap = 0;
    for (size_t i = sec->cap ? mt_sec_first(sec, h) : 0;
         sec->cap && sec->slots[i].e; i = mt_sec_next(sec, i)) {
        const struct mem_entry *e = sec->slots[i].e;
        stats->visited++;
        if (sec->slots[i].hash != h || !mt_filter_match(e, f) ||
            (after && memcmp(e->ck, after, 32) <= 0))
            continue;
        if (cnt == cap) {
            size_t ncap = cap ? cap * 2 : 16;
            const struct mem_entry **nv = realloc(v, ncap * sizeof(*v));
            if (!nv) {
                free(v);
                return STORE_TRANSIENT;
            }
            v = nv;
            cap = ncap;
        }
        v[cnt++] = e;
    }
    if (cnt > 1)
        qsort(v, cnt, sizeof(*v), mt_ck_cmp);
    *more = cnt > limit;
    *n = 0;
    for (size_t i = 0; i < cnt && i < limit; i++) {
        if (mt_copy_record(v[i], 0, &out->items[i]) != 0) {
            out->n_items = i + 1; /* the partial copy, for clearing */
            free(v);
            return STORE_TRANSIENT;
        }
        memcpy(last, v[i]->ck, 32);
        (*n)++;
    }
    free(v);
    return STORE_OK;
}

int mem_table_list_filter(struct mem_table *t, const struct store_filter *f,
                          const char *cursor, size_t limit,
                          struct store_list *out, struct mem_scan_stats *stats,
                          struct store_err *err)
{
    struct mem_scan_stats local = {0};
    unsigned char after[32], last[32];
    size_t n = 0;
    int more = 0, rc = STORE_OK;

    *out = (struct store_list){0};
    if (!stats)
        stats = &local;
    *stats = (struct mem_scan_stats){0};
    if (limit < 1 || limit > 1000)
        return store_fail(err, STORE_INVALID, "limit must be 1..1000");
    if (cursor) {
        if (strlen(cursor) != 64)
            return store_fail(err, STORE_INVALID, "malformed cursor");
        for (int i = 0; i < 32; i++) {
            int hi = edr_hex_digit(cursor[2 * i], EDR_HEX_LOWER_ONLY),
                lo = edr_hex_digit(cursor[2 * i + 1], EDR_HEX_LOWER_ONLY);
            if (hi < 0 || lo < 0)
                return store_fail(err, STORE_INVALID, "malformed cursor");
            after[i] = (unsigned char)(hi << 4 | lo);
        }
    }
    out->items = calloc(limit, sizeof(*out->items));
    if (!out->items)
        return store_fail(err, STORE_TRANSIENT, "out of memory");

    pthread_rwlock_rdlock(&t->lock);
    struct mem_iter it;
    const struct mem_entry *e, *prev = NULL;
    size_t chunk = 0;
    uint64_t h = 0;
    const struct mem_sec *sec = mt_filter_sec(t, f, &h);
    if (sec) {
        rc = mt_list_sec(sec, h, f, cursor ? after : NULL, limit, out, &n,
                         &more, last, stats);
        it.leaf = NULL; /* no walk */
        it.i = 0;
    } else {
        mt_index_seek(t, cursor ? after : NULL, &it, &stats->visited);
    }
    while ((e = mt_iter_entry(&it))) {
        if (chunk == MEM_SCAN_CHUNK) { /* only with a filter */
            memcpy(after, prev->ck, 32);
            pthread_rwlock_unlock(&t->lock);
            stats->relocks++;
            pthread_rwlock_rdlock(&t->lock);
            mt_index_seek(t, after, &it, &stats->visited);
            chunk = 0;
            continue;
        }
        chunk++;
        stats->visited++;
        if (mt_filter_match(e, f)) {
            if (n == limit) {
                more = 1;
                break;
            }
            if (mt_copy_record(e, 0, &out->items[n]) != 0) {
                out->n_items = n + 1; /* the partial copy, for clearing */
                rc = STORE_TRANSIENT;
                break;
            }
            memcpy(last, e->ck, 32);
            n++;
        }
        prev = e;
        mt_iter_next(&it);
    }
    pthread_rwlock_unlock(&t->lock);

    if (rc == STORE_OK) {
        out->n_items = n;
        if (n == 0) {
            free(out->items);
            out->items = NULL;
        }
        if (more) {
            out->next_cursor = malloc(65);
            if (out->next_cursor)
                edr_hex_encode(out->next_cursor, last, 32);
            else
                rc = STORE_TRANSIENT;
        }
    }
    if (rc != STORE_OK) {
        store_list_clear(out);
        return store_fail(err, rc, "out of memory");
    }
    return STORE_OK;
}

int mem_table_list_ex(struct mem_table *t, const char *substring,
                      const char *cursor, size_t limit, struct store_list *out,
                      struct mem_scan_stats *stats, struct store_err *err)
{
    return mem_table_list_filter(t, STORE_FILTER_PARTY(substring), cursor,
                                 limit, out, stats, err);
}

int mem_table_list(struct mem_table *t, const char *substring,
                   const char *cursor, size_t limit, struct store_list *out,
                   struct store_err *err)
{
    return mem_table_list_ex(t, substring, cursor, limit, out, NULL, err);
}

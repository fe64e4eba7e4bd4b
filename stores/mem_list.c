/* mem_list.c: list() of the memory table: one page of entries in
 * connection-key order (mem_table.h). */
#include "stores/mem_table_int.h"

#include <stdlib.h>
#include <string.h>

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

/* mem_index.c: the memory table's ordered index (mem_table_int.h), a skip
 * list by connection key, as Redis orders its sorted sets.
 *
 * list() seeks a cursor in O(log n) and walks forward, so a page costs
 * the same at 10 thousand entries as at 10 million. The links live inside
 * each entry's one allocation (mem_entry.c), so keeping the index costs a
 * write no allocation and a commit cannot fail. Only the writer changes
 * it, under the table's write lock; readers walk it under the read lock. */
#include "stores/mem_table_int.h"

#include <string.h>

unsigned mt_index_height(struct mem_table *t)
{
    /* xorshift64: quality is irrelevant here, only the 1/4 per level. */
    uint64_t x = t->rng;
    x ^= x << 13;
    x ^= x >> 7;
    x ^= x << 17;
    t->rng = x;
    unsigned h = 1;
    while (h < MEM_INDEX_LEVELS && (x & 3) == 0) {
        h++;
        x >>= 2;
    }
    return h;
}

/* update[l]: the link array whose level-l link is the last one before
 * ck (the head's or an entry's). */
static void mt_index_path(struct mem_table *t, const unsigned char *ck,
                          struct mem_entry **update[MEM_INDEX_LEVELS])
{
    struct mem_entry **fwd = t->head;
    for (int l = MEM_INDEX_LEVELS - 1; l >= 0; l--) {
        while (fwd[l] && mt_ck_cmp(fwd[l]->ck, ck) < 0)
            fwd = fwd[l]->next;
        update[l] = fwd;
    }
}

void mt_index_insert(struct mem_table *t, struct mem_entry *e)
{
    struct mem_entry **update[MEM_INDEX_LEVELS];
    mt_index_path(t, e->ck, update);
    for (unsigned l = 0; l < e->height; l++) {
        e->next[l] = update[l][l];
        update[l][l] = e;
    }
}

void mt_index_remove(struct mem_table *t, struct mem_entry *e)
{
    struct mem_entry **update[MEM_INDEX_LEVELS];
    mt_index_path(t, e->ck, update);
    for (unsigned l = 0; l < e->height; l++) {
        /* With equal keys (a SHA-256 collision) e may come later. */
        struct mem_entry **fwd = update[l];
        while (fwd[l] && fwd[l] != e && mt_ck_cmp(fwd[l]->ck, e->ck) == 0)
            fwd = fwd[l]->next;
        if (fwd[l] == e)
            fwd[l] = e->next[l];
    }
}

struct mem_entry *mt_index_seek(const struct mem_table *t,
                                const unsigned char *after, uint64_t *visited)
{
    if (!after)
        return t->head[0];
    struct mem_entry *const *fwd = t->head;
    uint64_t n = 0;
    for (int l = MEM_INDEX_LEVELS - 1; l >= 0; l--) {
        while (fwd[l] && (n++, mt_ck_cmp(fwd[l]->ck, after) <= 0))
            fwd = fwd[l]->next;
    }
    *visited += n;
    return fwd[0];
}

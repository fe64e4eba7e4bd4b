/* mem_index.c: the memory table's ordered index (mem_table_int.h), a
 * B+tree of entry pointers by connection key, as SQLite keeps its
 * indexes.
 *
 * list() seeks a cursor in O(log n) and walks the leaves, so a page costs
 * the same at 10 thousand entries as at 10 million; a B+tree rather than
 * a skip list because a step reads one node of adjacent keys instead of a
 * cache miss per entry (a put pays the index once). Leaves hold up to
 * MI_B entry pointers with the first 8 bytes of each key beside them, so
 * a search rarely touches an entry; inner nodes hold copies of their
 * children's lower bounds. Only the writer changes the tree, under the
 * table's write lock; readers walk it under the read lock. A commit cannot
 * fail, so prepare reserves (mt_index_reserve) every node a batch could
 * need; commit takes them from the table's pool. Nodes are not merged
 * when they run low, only freed when empty. */
#include "stores/mem_table_int.h"

#include <stdlib.h>
#include <string.h>

#define MI_B 32

struct mem_index_node {
    unsigned n;                         /* entries (leaf) or children (inner) */
    unsigned leaf;                      /* 1: a leaf */
    struct mem_index_node *prev, *next; /* leaves, in key order; pool */
    union {
        struct {
            uint64_t pfx[MI_B]; /* mt_pfx of each entry's key */
            struct mem_entry *e[MI_B];
        } l;
        struct {
            unsigned char key[MI_B][32]; /* child i holds keys >= key[i];
                                          * key[0] is not used */
            struct mem_index_node *child[MI_B];
        } in;
    } u;
};

static uint64_t mt_pfx(const unsigned char *ck)
{
    uint64_t x;
    memcpy(&x, ck, 8);
    return __builtin_bswap64(x);
}

/* Leaf entry i against key (ck, p = its prefix), as memcmp. */
static int mi_cmp(const struct mem_index_node *lf, unsigned i,
                  const unsigned char *ck, uint64_t p)
{
    if (lf->u.l.pfx[i] != p)
        return lf->u.l.pfx[i] < p ? -1 : 1;
    return memcmp(lf->u.l.e[i]->ck, ck, 32);
}

/* First i in leaf with key >= ck (upper = 0) or key > ck (upper = 1). */
static unsigned mi_leaf_find(const struct mem_index_node *lf,
                             const unsigned char *ck, int upper)
{
    uint64_t p = mt_pfx(ck);
    unsigned lo = 0, hi = lf->n;
    while (lo < hi) {
        unsigned mid = (lo + hi) / 2;
        int c = mi_cmp(lf, mid, ck, p);
        if (c < 0 || (upper && c == 0))
            lo = mid + 1;
        else
            hi = mid;
    }
    return lo;
}

/* The child of inner node nd that holds ck: the last whose bound <= ck. */
static unsigned mi_inner_pick(const struct mem_index_node *nd,
                              const unsigned char *ck)
{
    unsigned lo = 1, hi = nd->n; /* first i >= 1 with key[i] > ck */
    while (lo < hi) {
        unsigned mid = (lo + hi) / 2;
        if (memcmp(nd->u.in.key[mid], ck, 32) <= 0)
            lo = mid + 1;
        else
            hi = mid;
    }
    return lo - 1;
}

/* ---- the node pool -------------------------------------------------- */

static struct mem_index_node *mi_take(struct mem_table *t)
{
    struct mem_index_node *nd = t->pool;
    /* mt_index_reserve() guaranteed it. */
    t->pool = nd->next;
    t->n_pool--;
    memset(nd, 0, offsetof(struct mem_index_node, u));
    return nd;
}

static void mi_give(struct mem_table *t, struct mem_index_node *nd)
{
    if (t->n_pool >= t->pool_want) {
        free(nd);
        return;
    }
    nd->next = t->pool;
    t->pool = nd;
    t->n_pool++;
}

int mt_index_reserve(struct mem_table *t, size_t n_puts)
{
    /* Worst case: every put splits its whole path and adds a root. The
     * root can split again only after about (MI_B/2)^2 more puts, so the
     * depth grows by at most 1 + n_puts/256 during the batch. */
    size_t want = n_puts * (t->depth + 3 + n_puts / 256);
    if (want > t->pool_want)
        t->pool_want = want;
    while (t->n_pool < want) {
        struct mem_index_node *nd = malloc(sizeof(*nd));
        if (!nd)
            return -1; /* what was reserved stays in the pool */
        nd->next = t->pool;
        t->pool = nd;
        t->n_pool++;
    }
    return 0;
}

static void mi_free_tree(struct mem_index_node *nd)
{
    if (!nd)
        return;
    if (!nd->leaf)
        for (unsigned i = 0; i < nd->n; i++)
            mi_free_tree(nd->u.in.child[i]);
    free(nd);
}

void mt_index_destroy(struct mem_table *t)
{
    mi_free_tree(t->root);
    while (t->pool) {
        struct mem_index_node *nd = t->pool;
        t->pool = nd->next;
        free(nd);
    }
    t->root = NULL;
    t->n_pool = 0;
}

/* ---- writes --------------------------------------------------------- */

static void mi_leaf_put(struct mem_index_node *lf, unsigned at,
                        struct mem_entry *e)
{
    memmove(&lf->u.l.pfx[at + 1], &lf->u.l.pfx[at],
            (lf->n - at) * sizeof(lf->u.l.pfx[0]));
    memmove(&lf->u.l.e[at + 1], &lf->u.l.e[at],
            (lf->n - at) * sizeof(lf->u.l.e[0]));
    lf->u.l.pfx[at] = mt_pfx(e->ck);
    lf->u.l.e[at] = e;
    lf->n++;
}

static void mi_inner_put(struct mem_index_node *nd, unsigned at,
                         const unsigned char *key, struct mem_index_node *c)
{
    memmove(nd->u.in.key[at + 1], nd->u.in.key[at], (nd->n - at) * 32);
    memmove(&nd->u.in.child[at + 1], &nd->u.in.child[at],
            (nd->n - at) * sizeof(nd->u.in.child[0]));
    memcpy(nd->u.in.key[at], key, 32);
    nd->u.in.child[at] = c;
    nd->n++;
}

void mt_index_insert(struct mem_table *t, struct mem_entry *e)
{
    struct mem_index_node *path[MEM_INDEX_MAX_DEPTH];
    unsigned idx[MEM_INDEX_MAX_DEPTH], d = 0;
    if (!t->root) {
        t->root = mi_take(t);
        t->root->leaf = 1;
        t->depth = 1;
    }
    struct mem_index_node *nd = t->root;
    while (!nd->leaf) {
        path[d] = nd;
        idx[d] = mi_inner_pick(nd, e->ck);
        nd = nd->u.in.child[idx[d++]];
    }
    unsigned at = mi_leaf_find(nd, e->ck, 0);
    if (nd->n < MI_B) {
        mi_leaf_put(nd, at, e);
        return;
    }
    /* Split the leaf: the upper half moves to a new right neighbour. */
    const unsigned m = MI_B / 2;
    struct mem_index_node *r = mi_take(t);
    r->leaf = 1;
    r->n = MI_B - m;
    memcpy(r->u.l.pfx, &nd->u.l.pfx[m], r->n * sizeof(r->u.l.pfx[0]));
    memcpy(r->u.l.e, &nd->u.l.e[m], r->n * sizeof(r->u.l.e[0]));
    nd->n = m;
    r->next = nd->next;
    r->prev = nd;
    if (nd->next)
        nd->next->prev = r;
    nd->next = r;
    if (at <= m)
        mi_leaf_put(nd, at, e);
    else
        mi_leaf_put(r, at - m, e);
    unsigned char sep[32];
    memcpy(sep, r->u.l.e[0]->ck, 32);
    struct mem_index_node *add = r;
    /* Add (sep, add) to the parents, splitting those that are full. */
    while (d > 0) {
        struct mem_index_node *p = path[--d];
        unsigned pos = idx[d] + 1;
        if (p->n < MI_B) {
            mi_inner_put(p, pos, sep, add);
            return;
        }
        struct mem_index_node *q = mi_take(t);
        q->n = MI_B - m;
        memcpy(q->u.in.key, p->u.in.key[m], q->n * 32);
        memcpy(q->u.in.child, &p->u.in.child[m],
               q->n * sizeof(q->u.in.child[0]));
        p->n = m;
        if (pos <= m)
            mi_inner_put(p, pos, sep, add);
        else
            mi_inner_put(q, pos - m, sep, add);
        memcpy(sep, q->u.in.key[0], 32);
        add = q;
    }
    /* The root split: a new root above both halves. */
    struct mem_index_node *root = mi_take(t);
    root->n = 2;
    root->u.in.child[0] = t->root;
    root->u.in.child[1] = add;
    memcpy(root->u.in.key[1], sep, 32);
    t->root = root;
    t->depth++;
}

void mt_index_replace(struct mem_table *t, struct mem_entry *old,
                      struct mem_entry *e)
{
    struct mem_iter it;
    uint64_t visited = 0;
    mt_index_seek_ge(t, old->ck, &it, &visited);
    while (it.leaf && it.leaf->u.l.e[it.i] != old)
        mt_iter_next(&it);
    if (it.leaf)
        it.leaf->u.l.e[it.i] = e; /* same key: same place */
}

void mt_index_remove(struct mem_table *t, struct mem_entry *e)
{
    struct mem_index_node *path[MEM_INDEX_MAX_DEPTH];
    unsigned idx[MEM_INDEX_MAX_DEPTH], d = 0;
    struct mem_index_node *nd = t->root;
    if (!nd)
        return;
    while (!nd->leaf) {
        path[d] = nd;
        idx[d] = mi_inner_pick(nd, e->ck);
        nd = nd->u.in.child[idx[d++]];
    }
    unsigned at = mi_leaf_find(nd, e->ck, 0);
    while (at < nd->n && nd->u.l.e[at] != e)
        at++; /* equal keys (a SHA-256 collision) */
    if (at == nd->n)
        return;
    nd->n--;
    memmove(&nd->u.l.pfx[at], &nd->u.l.pfx[at + 1],
            (nd->n - at) * sizeof(nd->u.l.pfx[0]));
    memmove(&nd->u.l.e[at], &nd->u.l.e[at + 1],
            (nd->n - at) * sizeof(nd->u.l.e[0]));
    if (nd->n > 0)
        return;
    /* An empty leaf leaves the list and its parent, and so on up. */
    if (nd->prev)
        nd->prev->next = nd->next;
    if (nd->next)
        nd->next->prev = nd->prev;
    mi_give(t, nd);
    while (d > 0) {
        struct mem_index_node *p = path[--d];
        unsigned i = idx[d];
        p->n--;
        memmove(p->u.in.key[i], p->u.in.key[i + 1], (p->n - i) * 32);
        memmove(&p->u.in.child[i], &p->u.in.child[i + 1],
                (p->n - i) * sizeof(p->u.in.child[0]));
        if (p->n > 0)
            break;
        mi_give(t, p);
        if (d == 0)
            t->root = NULL;
    }
    if (d == 0 && t->root == nd)
        t->root = NULL;
    if (!t->root) {
        t->depth = 0;
        return;
    }
    while (!t->root->leaf && t->root->n == 1) {
        struct mem_index_node *old = t->root;
        t->root = old->u.in.child[0];
        mi_give(t, old);
        t->depth--;
    }
}

/* ---- reads ---------------------------------------------------------- */

static void mi_seek(const struct mem_table *t, const unsigned char *ck,
                    int upper, struct mem_iter *it, uint64_t *visited)
{
    const struct mem_index_node *nd = t->root;
    it->leaf = NULL;
    it->i = 0;
    if (!nd)
        return;
    while (!nd->leaf) {
        (*visited)++;
        nd = nd->u.in.child[ck ? mi_inner_pick(nd, ck) : 0];
    }
    (*visited)++;
    it->leaf = (struct mem_index_node *)nd;
    it->i = ck ? mi_leaf_find(nd, ck, upper) : 0;
    if (it->i == nd->n) { /* past this leaf: the next one's first */
        it->leaf = nd->next;
        it->i = 0;
    }
}

void mt_index_seek(const struct mem_table *t, const unsigned char *after,
                   struct mem_iter *it, uint64_t *visited)
{
    mi_seek(t, after, 1, it, visited);
}

void mt_index_seek_ge(const struct mem_table *t, const unsigned char *ck,
                      struct mem_iter *it, uint64_t *visited)
{
    mi_seek(t, ck, 0, it, visited);
}

struct mem_entry *mt_iter_entry(const struct mem_iter *it)
{
    return it->leaf ? it->leaf->u.l.e[it->i] : NULL;
}

void mt_iter_next(struct mem_iter *it)
{
    if (!it->leaf)
        return;
    if (++it->i == it->leaf->n) {
        it->leaf = it->leaf->next;
        it->i = 0;
    }
}

int mem_table_index_check(const struct mem_table *t, size_t *n_out)
{
    /* Walks the leaves: ascending keys, prefixes right, no empty leaf. */
    const struct mem_index_node *nd = t->root;
    size_t n = 0;
    const struct mem_entry *prev = NULL;
    if (n_out)
        *n_out = 0;
    if (!nd)
        return t->count == 0 ? 0 : -1;
    while (!nd->leaf)
        nd = nd->u.in.child[0];
    if (nd->prev)
        return -1;
    for (; nd; nd = nd->next) {
        if (nd->n == 0 || (nd->next && nd->next->prev != nd))
            return -1;
        for (unsigned i = 0; i < nd->n; i++) {
            const struct mem_entry *e = nd->u.l.e[i];
            if (nd->u.l.pfx[i] != mt_pfx(e->ck))
                return -1;
            if (prev && memcmp(prev->ck, e->ck, 32) >= 0)
                return -1;
            prev = e;
            n++;
        }
    }
    if (n_out)
        *n_out = n;
    return n == t->count ? 0 : -1;
}

/* test_mem_index.c: the memory table's ordered index, list() and count().
 *
 * - The index always holds exactly the stored entries, ascending by
 *   connection key, through puts, replacements, deletes and clears.
 * - A list page costs what the page holds, not what the table holds:
 *   measured as index entries visited (mem_scan_stats), never by time.
 * - list() and count() never hold the read lock across the table: a
 *   writer commits between pages and inside one count, and still every
 *   page is ordered and complete and every count exact. */
#include "stores/mem_table.h"
#include "stores/store.h"
#include "tests/support/cunit_main.h"

#include <CUnit/CUnit.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

static int mi_apply(struct mem_table *t, struct store_batch *b)
{
    struct mem_prep p;
    struct store_err err;
    mem_table_writer_lock(t);
    int rc = mem_table_prepare(t, b, &p, &err);
    if (rc == STORE_OK)
        mem_table_commit(t, b, &p);
    mem_table_writer_unlock(t);
    return rc;
}

struct mi_key {
    char cpid[48], q[32], tid[32], json[64];
};

/* Key i of family fam ("STABLE", "MATCH", "CHURN"...): the family is in
 * counter_party_id, which the substring filters look at. */
static void mi_op(struct mi_key *kb, const char *fam, long i,
                  enum store_op_kind kind, struct store_op *op)
{
    snprintf(kb->cpid, sizeof(kb->cpid), "BPNL-%s-%ld", fam, i % 13);
    snprintf(kb->q, sizeof(kb->q), "q%ld", i);
    snprintf(kb->tid, sizeof(kb->tid), "tp-%ld", i);
    int n = snprintf(kb->json, sizeof(kb->json), "{\"v\":%ld}", i);
    *op = (struct store_op){
        .kind = kind,
        .key = {kb->cpid, "https://p.example.com", kb->q, "pol"},
        .transfer_id = kind == STORE_OP_PUT ? kb->tid : NULL,
        .entry_json = kb->json,
        .entry_len = (size_t)n};
}

static void mi_put_many(struct mem_table *t, const char *fam, long from,
                        long to)
{
    enum { B = 256 };
    struct mi_key kb[B];
    struct store_op ops[B];
    for (long i = from; i < to;) {
        size_t n = 0;
        for (; n < B && i < to; n++, i++)
            mi_op(&kb[n], fam, i, STORE_OP_PUT, &ops[n]);
        struct store_batch b = {.ops = ops, .n_ops = n};
        CU_ASSERT_EQUAL_FATAL(mi_apply(t, &b), STORE_OK);
    }
}

/* The index holds exactly the stored entries, ascending. */
static void mi_check_index(struct mem_table *t)
{
    size_t n = 0;
    CU_ASSERT_EQUAL(mem_table_index_check(t, &n), 0);
    CU_ASSERT_EQUAL(n, t->count);
    /* Listed through every page, the index gives each stored entry once
     * (ascending cursors, every item found by key, as many as stored). */
    size_t listed = 0, not_found = 0, bad_order = 0;
    char *cursor = NULL;
    for (;;) {
        struct store_list l;
        struct store_err err;
        CU_ASSERT_EQUAL_FATAL(mem_table_list(t, NULL, cursor, 1000, &l, &err),
                              STORE_OK);
        for (size_t i = 0; i < l.n_items; i++) {
            struct store_record *it = &l.items[i], r;
            struct edr_key k = {it->counter_party_id, it->counter_party_address,
                                it->query_checksum, it->policy_checksum};
            not_found += mem_table_get(t, &k, &r, &err) != STORE_OK;
            store_record_clear(&r);
            listed++;
        }
        if (cursor && l.next_cursor && strcmp(l.next_cursor, cursor) <= 0)
            bad_order++;
        free(cursor);
        cursor = l.next_cursor ? strdup(l.next_cursor) : NULL;
        store_list_clear(&l);
        if (!cursor)
            break;
    }
    CU_ASSERT_EQUAL(listed, t->count);
    CU_ASSERT_EQUAL(not_found, 0);
    CU_ASSERT_EQUAL(bad_order, 0);
}

static uint64_t mi_brute_count(struct mem_table *t, const char *sub)
{
    uint64_t n = 0;
    for (size_t i = 0; i < t->cap; i++)
        n += t->slots[i].e && strstr(t->slots[i].e->data, sub);
    return n;
}

static void test_index_follows_writes(void)
{
    struct mem_table t;
    struct store_err err;
    CU_ASSERT_EQUAL_FATAL(mem_table_init(&t, &err), STORE_OK);
    mi_put_many(&t, "A", 0, 3000);
    mi_put_many(&t, "B", 0, 2000);
    mi_check_index(&t);
    mi_put_many(&t, "A", 1000, 4000); /* 2000 replaced, 1000 new */
    mi_check_index(&t);
    struct mi_key kb[64];
    struct store_op ops[64];
    for (long i = 0; i < 3000; i += 64) {
        size_t n = 0;
        for (; n < 64; n++)
            mi_op(&kb[n], "A", i + (long)n, STORE_OP_DELETE, &ops[n]);
        struct store_batch b = {.ops = ops, .n_ops = n};
        CU_ASSERT_EQUAL(mi_apply(&t, &b), STORE_OK);
    }
    mi_check_index(&t);
    struct mem_entry **victims;
    size_t nv;
    mem_table_writer_lock(&t);
    CU_ASSERT_EQUAL(
        mem_table_clear_collect(&t, "BPNL-B-1", &victims, &nv, &err), STORE_OK);
    mem_table_clear_commit(&t, victims, nv);
    mem_table_writer_unlock(&t);
    CU_ASSERT(nv > 0);
    mi_check_index(&t);
    const char *subs[] = {"BPNL-A", "BPNL-B-", "-1", "nothing", "BPNL"};
    for (int i = 0; i < 5; i++) {
        uint64_t c = 0;
        CU_ASSERT_EQUAL(mem_table_count(&t, subs[i], &c, &err), STORE_OK);
        CU_ASSERT_EQUAL(c, mi_brute_count(&t, subs[i]));
    }
    /* Deleting nearly everything empties leaves and inner nodes (they are
     * freed, the root shrinks); deleting the rest empties the tree. */
    mi_put_many(&t, "C", 0, 20000);
    mi_check_index(&t);
    for (int party = 0; party < 13; party++) {
        char sub[32];
        snprintf(sub, sizeof(sub), "BPNL-C-%d", party);
        if (party == 12)
            continue; /* keeps a few hundred C entries */
        mem_table_writer_lock(&t);
        CU_ASSERT_EQUAL(mem_table_clear_collect(&t, sub, &victims, &nv, &err),
                        STORE_OK);
        mem_table_clear_commit(&t, victims, nv);
        mem_table_writer_unlock(&t);
        mi_check_index(&t);
    }
    mem_table_writer_lock(&t);
    CU_ASSERT_EQUAL(mem_table_clear_collect(&t, "BPNL", &victims, &nv, &err),
                    STORE_OK);
    mem_table_clear_commit(&t, victims, nv);
    mem_table_writer_unlock(&t);
    CU_ASSERT_EQUAL(t.count, 0);
    CU_ASSERT_PTR_NULL(t.root);
    mi_check_index(&t);
    mi_put_many(&t, "D", 0, 3000);
    mi_check_index(&t);
    uint64_t c = 0;
    CU_ASSERT_EQUAL(mem_table_count(&t, "BPNL-D", &c, &err), STORE_OK);
    CU_ASSERT_EQUAL(c, 3000);
    mem_table_destroy(&t);
}

/* Index entries visited by a page of 100 from 20 cursors spread over the
 * table (each cursor is an entry's own key). */
static uint64_t mi_page_cost(struct mem_table *t, const char *sub)
{
    uint64_t total = 0;
    size_t step = t->cap / 20, done = 0;
    for (size_t i = 0; i < t->cap && done < 20; i += step) {
        size_t j = i;
        while (!t->slots[j].e)
            j = (j + 1) % t->cap;
        char cur[65];
        for (int k = 0; k < 32; k++)
            snprintf(cur + 2 * k, 3, "%02x", t->slots[j].e->ck[k]);
        struct store_list l;
        struct mem_scan_stats st;
        struct store_err err;
        CU_ASSERT_EQUAL(mem_table_list_ex(t, sub, cur, 100, &l, &st, &err),
                        STORE_OK);
        CU_ASSERT(l.n_items > 0);
        total += st.visited;
        store_list_clear(&l);
        done++;
    }
    return total / done;
}

static void test_page_cost_independent_of_size(void)
{
    struct mem_table small, big;
    struct store_err err;
    CU_ASSERT_EQUAL_FATAL(mem_table_init(&small, &err), STORE_OK);
    CU_ASSERT_EQUAL_FATAL(mem_table_init(&big, &err), STORE_OK);
    mi_put_many(&small, "S", 0, 10000);
    mi_put_many(&big, "S", 0, 200000);
    uint64_t cs = mi_page_cost(&small, NULL), cb = mi_page_cost(&big, NULL);
    uint64_t fs = mi_page_cost(&small, "BPNL-S"),
             fb = mi_page_cost(&big, "BPNL-S");
    printf("\n    page of 100: %llu entries visited at 10k, %llu at 200k "
           "(filtered: %llu, %llu)",
           (unsigned long long)cs, (unsigned long long)cb,
           (unsigned long long)fs, (unsigned long long)fb);
    /* A full scan would visit 10,000 and 200,000: the page visits its
     * own 101 entries plus a seek of O(log n) nodes. */
    CU_ASSERT(cs >= 50); /* a page near the end holds fewer */
    CU_ASSERT(cb < 2 * cs);
    CU_ASSERT(cb < 1000);
    CU_ASSERT(fb < 2 * fs);
    mem_table_destroy(&small);
    mem_table_destroy(&big);
}

/* ---- a concurrent writer ---------------------------------------------- */

#define MI_STABLE 60000
#define MI_POOL 500 /* MATCH keys the writer keeps present */

struct mi_writer {
    struct mem_table *t;
    atomic_int stop;
    atomic_ulong batches;
};

/* Each batch: delete MATCH key i, put MATCH key i + MI_POOL (a new key,
 * anywhere in key order), put/replace an OTHER key. The number of MATCH
 * entries never changes at a commit. */
static void *mi_writer_main(void *arg)
{
    struct mi_writer *w = arg;
    for (long i = 0; !atomic_load(&w->stop); i++) {
        struct mi_key kb[3];
        struct store_op ops[3];
        mi_op(&kb[0], "MATCH", i, STORE_OP_DELETE, &ops[0]);
        mi_op(&kb[1], "MATCH", i + MI_POOL, STORE_OP_PUT, &ops[1]);
        mi_op(&kb[2], "OTHER", i % 5000, STORE_OP_PUT, &ops[2]);
        struct store_batch b = {.ops = ops, .n_ops = 3};
        if (mi_apply(w->t, &b) != STORE_OK)
            break;
        atomic_fetch_add(&w->batches, 1);
    }
    return NULL;
}

static double mi_now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

/* Waits (deadline 10 s) until the writer has committed past `since`. */
static int mi_wait_writer(struct mi_writer *w, unsigned long since)
{
    double end = mi_now() + 10;
    while (atomic_load(&w->batches) <= since)
        if (mi_now() > end)
            return 0;
    return 1;
}

static void mi_setup(struct mem_table *t, struct mi_writer *w, pthread_t *th)
{
    struct store_err err;
    CU_ASSERT_EQUAL_FATAL(mem_table_init(t, &err), STORE_OK);
    mi_put_many(t, "STABLE", 0, MI_STABLE);
    mi_put_many(t, "MATCH", 0, MI_POOL);
    w->t = t;
    atomic_init(&w->stop, 0);
    atomic_init(&w->batches, 0);
    CU_ASSERT_EQUAL_FATAL(pthread_create(th, NULL, mi_writer_main, w), 0);
}

static void mi_teardown(struct mem_table *t, struct mi_writer *w, pthread_t th)
{
    atomic_store(&w->stop, 1);
    pthread_join(th, NULL);
    mi_check_index(t);
    mem_table_destroy(t);
}

/* Every page ascending, every STABLE entry exactly once, and the writer
 * commits between pages. */
static void test_list_with_writer(void)
{
    struct mem_table t;
    struct mi_writer w;
    pthread_t th;
    mi_setup(&t, &w, &th);
    for (int filtered = 0; filtered < 2; filtered++) {
        const char *sub = filtered ? "STABLE" : NULL;
        unsigned char *seen = calloc(MI_STABLE, 1);
        char *cursor = NULL, prev[65] = "";
        size_t pages = 0, bad_order = 0, dups = 0, stalled = 0;
        for (;;) {
            unsigned long before = atomic_load(&w.batches);
            struct store_list l;
            struct store_err err;
            CU_ASSERT_EQUAL_FATAL(
                mem_table_list(&t, sub, cursor, 1000, &l, &err), STORE_OK);
            pages++;
            for (size_t i = 0; i < l.n_items; i++) {
                const char *q = l.items[i].query_checksum;
                if (strstr(l.items[i].counter_party_id, "STABLE")) {
                    long k = atol(q + 1);
                    if (seen[k]++)
                        dups++;
                }
            }
            if (l.next_cursor && strcmp(l.next_cursor, prev) <= 0)
                bad_order++;
            free(cursor);
            cursor = l.next_cursor ? strdup(l.next_cursor) : NULL;
            if (cursor)
                snprintf(prev, sizeof(prev), "%s", cursor);
            store_list_clear(&l);
            if (!cursor)
                break;
            stalled += !mi_wait_writer(&w, before);
        }
        size_t missing = 0;
        for (long k = 0; k < MI_STABLE; k++)
            missing += !seen[k];
        CU_ASSERT_EQUAL(missing, 0);
        CU_ASSERT_EQUAL(dups, 0);
        CU_ASSERT_EQUAL(bad_order, 0);
        CU_ASSERT_EQUAL(stalled, 0);
        CU_ASSERT(pages >= MI_STABLE / 1000);
        free(seen);
    }
    mi_teardown(&t, &w, th);
}

/* count("MATCH") is always exactly MI_POOL, including counts during which
 * the writer committed (which a scan holding the lock throughout could
 * not see, and a plain chunked scan would miscount). */
static void test_count_exact_with_writer(void)
{
    struct mem_table t;
    struct mi_writer w;
    pthread_t th;
    mi_setup(&t, &w, &th);
    size_t counts = 0, wrong = 0, interleaved = 0;
    double end = mi_now() + 30;
    while (interleaved < 20 && mi_now() < end) {
        uint64_t c = 0;
        struct mem_scan_stats st;
        struct store_err err;
        CU_ASSERT_EQUAL(mem_table_count_ex(&t, "MATCH", &c, &st, &err),
                        STORE_OK);
        counts++;
        if (c != MI_POOL) {
            wrong++;
            fprintf(stderr, "count %llu, want %d (%llu writes during)\n",
                    (unsigned long long)c, MI_POOL,
                    (unsigned long long)st.writes_seen);
        }
        CU_ASSERT(st.relocks >= MI_STABLE / MEM_SCAN_CHUNK);
        interleaved += st.writes_seen > 0;
    }
    printf("\n    %zu counts, %zu with writes committed during the scan",
           counts, interleaved);
    CU_ASSERT_EQUAL(wrong, 0);
    CU_ASSERT(interleaved >= 20);
    mi_teardown(&t, &w, th);
}

static void register_index(void)
{
    CU_pSuite s = CU_add_suite("mem_index", NULL, NULL);
    CU_add_test(s, "index = stored entries, ascending, through all writes",
                test_index_follows_writes);
    CU_add_test(s, "page cost at 10k vs 200k entries (entries visited)",
                test_page_cost_independent_of_size);
    CU_add_test(s, "list pages while a writer applies: complete, ordered",
                test_list_with_writer);
    CU_add_test(s, "count while a writer applies: exact, lock let go",
                test_count_exact_with_writer);
}

int main(void)
{
    static const cunit_register_fn regs[] = {register_index, NULL};
    return cunit_main(regs);
}

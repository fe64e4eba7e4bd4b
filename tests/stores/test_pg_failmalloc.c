/* test_pg_failmalloc.c: allocation failures on the PostgreSQL store's apply
 * path, SQLite's way (tests/support/failmalloc.h).
 *
 * For N = 1, 2, 3 ... the Nth allocation made during apply() fails, until
 * an apply makes fewer than N allocations. Each failed apply must return
 * STORE_TRANSIENT (out of memory is worth a retry, never an abort) and
 * leave the table exactly as before; a successful one exactly as after.
 * Both batch paths are covered: the pipeline (puts, a conditional delete,
 * an entry jsonb needs rewritten) and COPY (a large put-only batch). A
 * failure that dropped the writer makes the next apply reconnect, so the
 * reconnect's allocations are covered too. The reads (get, list,
 * load_offsets) get the same loop: TRANSIENT and nothing handed out.
 *
 * Integration test: needs EDR_PG_DSN (scripts/services.sh env). */
#include "stores/pg_store.h"
#include "stores/store.h"
#include "tests/support/cunit_main.h"
#include "tests/support/failmalloc.h"

#include <CUnit/CUnit.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

enum { MAX_KEYS = 100 };

static const char *dsn;
static char run_id[32];

/* One round's batch: every key gets transfer id "tp-<round>-<i>". */
struct fm_batch {
    char party[MAX_KEYS][32];
    char tid[MAX_KEYS][32];
    char prev_tid[MAX_KEYS][32];
    char json[MAX_KEYS][96];
    struct store_op ops[MAX_KEYS + 1];
    struct store_offset off;
    struct store_batch b;
};

static struct edr_key key_at(struct fm_batch *fb, int i)
{
    return (struct edr_key){fb->party[i], "https://fm", "q", "p"};
}

/* n_keys puts; with del, key 0 is first deleted if it still holds the
 * previous round's transfer id (the pipeline path), else the batch is
 * put-only (COPY when n_keys >= 64). Every third entry carries \u0000,
 * which jsonb refuses and the store rewrites for that column. */
static void fm_make(struct fm_batch *fb, int n_keys, int round, int del)
{
    size_t n = 0;
    for (int i = 0; i < n_keys; i++) {
        snprintf(fb->party[i], sizeof(fb->party[i]), "BPNLFM%04d", i);
        snprintf(fb->tid[i], sizeof(fb->tid[i]), "tp-%d-%d", round, i);
        snprintf(fb->prev_tid[i], sizeof(fb->prev_tid[i]), "tp-%d-%d",
                 round - 1, i);
        snprintf(fb->json[i], sizeof(fb->json[i]),
                 "{\"transferProcessId\":\"%s\",\"x\":\"%s\"}", fb->tid[i],
                 i % 3 == 0 ? "a\\u0000b" : "plain");
    }
    if (del)
        fb->ops[n++] = (struct store_op){.kind = STORE_OP_DELETE,
                                         .key = key_at(fb, 0),
                                         .transfer_id = fb->prev_tid[0]};
    for (int i = 0; i < n_keys; i++)
        fb->ops[n++] = (struct store_op){.kind = STORE_OP_PUT,
                                         .key = key_at(fb, i),
                                         .transfer_id = fb->tid[i],
                                         .entry_json = fb->json[i],
                                         .entry_len = strlen(fb->json[i])};
    fb->off = (struct store_offset){2, 100 + round, -1};
    fb->b = (struct store_batch){.ops = fb->ops,
                                 .n_ops = n,
                                 .topic = "fm",
                                 .offsets = &fb->off,
                                 .n_offsets = 1};
}

/* 1 when the table holds exactly what round's batch leaves. */
static int fm_state_is(struct store *st, int n_keys, int round)
{
    static struct fm_batch want;
    struct store_err err = {0};
    uint64_t n = 0;
    fm_make(&want, n_keys, round, 0);
    if (st->ops->count(st, NULL, &n, &err) != STORE_OK || n != (uint64_t)n_keys)
        return 0;
    for (int i = 0; i < n_keys; i++) {
        struct store_record r = {0};
        struct edr_key k = key_at(&want, i);
        int ok = st->ops->get(st, &k, &r, &err) == STORE_OK &&
                 !strcmp(r.transfer_id, want.tid[i]) &&
                 !strcmp(r.entry_json, want.json[i]);
        store_record_clear(&r);
        if (!ok)
            return 0;
    }
    struct store_offset *got = NULL;
    size_t n_got = 0;
    int ok = st->ops->load_offsets(st, "fm", &got, &n_got, &err) == STORE_OK &&
             n_got == 1 && got[0].next_offset == 100 + round;
    free(got);
    return ok;
}

/* The loop; returns how many N it ran (the last one fired nothing). */
static unsigned long fm_loop(const char *what, int n_keys, int del)
{
    static struct fm_batch fb;
    char table[64];
    struct store_err err = {0};
    snprintf(table, sizeof(table), "edr_t_%s_fm_%s", run_id, what);
    struct store *st = pg_store_open(dsn, table, &err);
    CU_ASSERT_PTR_NOT_NULL_FATAL(st);

    int round = 0;
    fm_make(&fb, n_keys, round, 0);
    CU_ASSERT_EQUAL_FATAL(st->ops->apply(st, &fb.b, &err), STORE_OK);
    CU_ASSERT_TRUE_FATAL(fm_state_is(st, n_keys, round));

    unsigned long n, failures = 0;
    for (n = 1; n < 10000; n++) {
        fm_make(&fb, n_keys, round + 1, del);
        err = (struct store_err){0};
        failmalloc_arm(n);
        int rc = st->ops->apply(st, &fb.b, &err);
        unsigned long fired = failmalloc_fired();
        failmalloc_disarm();
        if (rc == STORE_OK) {
            round++;
            CU_ASSERT_EQUAL(fb.b.changed, fb.b.n_ops);
        } else {
            failures++;
            CU_ASSERT_EQUAL(rc, STORE_TRANSIENT);
            CU_ASSERT_EQUAL(err.status, STORE_TRANSIENT);
            CU_ASSERT_PTR_NOT_NULL(strstr(err.msg, "out of memory"));
        }
        CU_ASSERT_TRUE(fm_state_is(st, n_keys, round));
        if (!fired)
            break;
        CU_ASSERT_NOT_EQUAL(rc, STORE_OK); /* no allocation is optional */
    }
    fprintf(stderr, "(%s: N = 1..%lu, %lu failed applies) ", what, n, failures);
    CU_ASSERT_TRUE(failures >= 2); /* the loop reached the store's code */
    store_close(st);
    CU_ASSERT_EQUAL(pg_store_drop(dsn, table, &err), STORE_OK);
    return n;
}

static void test_pipeline(void)
{
    fm_loop("pipe", 4, 1);
}

static void test_copy(void)
{
    fm_loop("copy", MAX_KEYS, 0);
}

/* The reads (get, list, load_offsets, get_after) copy what they return:
 * each allocation may fail, and then the call is TRANSIENT with nothing
 * handed out. */
static void test_reads(void)
{
    static struct fm_batch fb;
    char table[64];
    struct store_err err = {0};
    snprintf(table, sizeof(table), "edr_t_%s_fm_read", run_id);
    struct store *st = pg_store_open(dsn, table, &err);
    CU_ASSERT_PTR_NOT_NULL_FATAL(st);
    fm_make(&fb, 20, 1, 0);
    CU_ASSERT_EQUAL_FATAL(st->ops->apply(st, &fb.b, &err), STORE_OK);
    struct edr_key k = key_at(&fb, 3);
    /* get_after's bound: the one offset the batch recorded */
    struct store_offset *had = NULL;
    size_t n_had = 0;
    CU_ASSERT_EQUAL_FATAL(st->ops->load_offsets(st, "fm", &had, &n_had, &err),
                          STORE_OK);
    CU_ASSERT_EQUAL_FATAL(n_had, 1);
    const struct store_position need = {had[0].partition,
                                        had[0].next_offset - 1};
    free(had);

    unsigned long n, total = 0;
    for (int op = 0; op < 4; op++) {
        for (n = 1; n < 1000; n++) {
            struct store_record r = {0};
            struct store_list l = {0};
            struct store_offset *offs = NULL;
            size_t n_offs = 0;
            int rc, reached = 0;
            failmalloc_arm(n);
            if (op == 0)
                rc = st->ops->get(st, &k, &r, &err);
            else if (op == 1)
                rc = st->ops->list(st, STORE_FILTER_PARTY("BPNLFM"), NULL, 15,
                                   &l, &err);
            else if (op == 2)
                rc = st->ops->load_offsets(st, "fm", &offs, &n_offs, &err);
            else
                rc = st->ops->get_after(st, "fm", &need, 1, &k, &r, &reached,
                                        &err);
            unsigned long fired = failmalloc_fired();
            failmalloc_disarm();
            if (rc == STORE_OK) {
                CU_ASSERT(op != 0 || !strcmp(r.transfer_id, fb.tid[3]));
                CU_ASSERT(op != 1 || (l.n_items == 15 && l.next_cursor));
                CU_ASSERT(op != 2 || (n_offs == 1 && offs));
                CU_ASSERT(op != 3 ||
                          (reached == 1 && !strcmp(r.transfer_id, fb.tid[3])));
            } else {
                CU_ASSERT_EQUAL(rc, STORE_TRANSIENT);
                CU_ASSERT_PTR_NULL(r.transfer_id);
                CU_ASSERT_PTR_NULL(r.entry_json);
                CU_ASSERT_PTR_NULL(l.items);
                CU_ASSERT_EQUAL(l.n_items, 0);
                CU_ASSERT_PTR_NULL(offs);
            }
            store_record_clear(&r);
            store_list_clear(&l);
            free(offs);
            if (!fired)
                break;
            CU_ASSERT_NOT_EQUAL(rc, STORE_OK);
        }
        total += n;
    }
    fprintf(stderr, "(reads: %lu N in all) ", total);
    store_close(st);
    CU_ASSERT_EQUAL(pg_store_drop(dsn, table, &err), STORE_OK);
}

static void test_no_dsn(void)
{
    CU_FAIL("EDR_PG_DSN is not set: eval \"$(scripts/services.sh env)\"");
}

static void register_suites(void)
{
    CU_pSuite s = CU_add_suite("postgres/failmalloc", NULL, NULL);
    if (!dsn) {
        CU_add_test(s, "EDR_PG_DSN is set", test_no_dsn);
        return;
    }
    CU_add_test(s, "apply via pipeline: OOM at each allocation", test_pipeline);
    CU_add_test(s, "apply via COPY: OOM at each allocation", test_copy);
    CU_add_test(s, "get, list, load_offsets, get_after: OOM at each allocation",
                test_reads);
}

int main(void)
{
    static const cunit_register_fn regs[] = {register_suites, NULL};
    dsn = test_env("EDR_PG_DSN");
    snprintf(run_id, sizeof(run_id), "%ld_%ld", (long)getpid(),
             (long)time(NULL) % 100000000);
    return cunit_main(regs);
}

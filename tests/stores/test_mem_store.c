/* test_mem_store.c: the store contract suite against the memory store,
 * plus what only the memory store promises. */
#include "stores/mem_table.h"
#include "stores/store.h"
#include "tests/stores/store_contract.h"
#include "tests/support/cunit_main.h"

#include <CUnit/CUnit.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static struct store *mem_open_fresh(void *ctx)
{
    struct store_err err = {0};
    (void)ctx;
    struct store *st = mem_store_open(&err);
    if (!st)
        fprintf(stderr, "mem_store_open: %s\n", err.msg);
    return st;
}

static const struct store_contract_backend mem_backend = {
    .name = "memory",
    .open_fresh = mem_open_fresh,
    .reopen = NULL,
};

/* Growth and shrinking by deletion keep every entry reachable: exercises
 * the table's resize and backward-shift deletion far past one page. */
static void test_many_entries(void)
{
    struct store_err err = {0};
    struct store *st = mem_store_open(&err);
    CU_ASSERT_PTR_NOT_NULL_FATAL(st);
    CU_ASSERT_STRING_EQUAL(st->ops->name, "memory");
    enum { N = 20000 };
    char cpid[32], q[32], tid[32], json[64];
    for (int i = 0; i < N; i++) {
        snprintf(cpid, sizeof(cpid), "BPNL%012d", i % 97);
        snprintf(q, sizeof(q), "q%d", i);
        snprintf(tid, sizeof(tid), "tp-%d", i);
        int n =
            snprintf(json, sizeof(json), "{\"transferProcessId\":\"%s\"}", tid);
        struct edr_key k = {cpid, "https://p.example.com", q, "p"};
        CU_ASSERT_EQUAL_FATAL(store_put(st, &k, tid, json, (size_t)n, &err),
                              STORE_OK);
    }
    uint64_t cnt = 0;
    st->ops->count(st, NULL, &cnt, &err);
    CU_ASSERT_EQUAL(cnt, N);
    for (int i = 0; i < N; i += 2) {
        snprintf(cpid, sizeof(cpid), "BPNL%012d", i % 97);
        snprintf(q, sizeof(q), "q%d", i);
        struct edr_key k = {cpid, "https://p.example.com", q, "p"};
        CU_ASSERT_EQUAL(store_delete(st, &k, NULL, &err), STORE_OK);
    }
    int bad = 0;
    for (int i = 0; i < N; i++) {
        char *got = NULL;
        snprintf(cpid, sizeof(cpid), "BPNL%012d", i % 97);
        snprintf(q, sizeof(q), "q%d", i);
        snprintf(tid, sizeof(tid), "tp-%d", i);
        struct edr_key k = {cpid, "https://p.example.com", q, "p"};
        int rc = st->ops->get_transfer_id(st, &k, &got, &err);
        if (i % 2 ? (rc != STORE_OK || strcmp(got, tid) != 0)
                  : rc != STORE_NOT_FOUND)
            bad++;
        free(got);
    }
    CU_ASSERT_EQUAL(bad, 0);
    st->ops->count(st, NULL, &cnt, &err);
    CU_ASSERT_EQUAL(cnt, N / 2);
    uint64_t removed = 0;
    CU_ASSERT_EQUAL(
        st->ops->clear_party(st, "BPNL000000000001", &removed, &err), STORE_OK);
    st->ops->count(st, NULL, &cnt, &err);
    CU_ASSERT_EQUAL(cnt, N / 2 - removed);
    CU_ASSERT(removed > 0);
    st->ops->count(st, STORE_FILTER_PARTY("BPNL000000000001"), &cnt, &err);
    CU_ASSERT_EQUAL(cnt, 0);
    store_close(st);
}

static void test_invalid_inputs(void)
{
    struct store_err err = {0};
    struct store *st = mem_store_open(&err);
    CU_ASSERT_PTR_NOT_NULL_FATAL(st);
    struct store_list l = {0};
    CU_ASSERT_EQUAL(st->ops->list(st, NULL, "zz", 10, &l, &err), STORE_INVALID);
    CU_ASSERT_EQUAL(st->ops->list(st, NULL,
                                  "0123456789abcdef0123456789abcdef0123456789"
                                  "abcdef0123456789abcdeX",
                                  10, &l, &err),
                    STORE_INVALID);
    uint64_t removed;
    CU_ASSERT_EQUAL(st->ops->clear_party(st, "", &removed, &err),
                    STORE_INVALID);
    struct edr_key k = {"a", NULL, "c", "d"};
    struct store_record r;
    CU_ASSERT_EQUAL(st->ops->get(st, &k, &r, &err), STORE_INVALID);
    store_close(st);
    store_close(NULL);
}

static void register_mem(void)
{
    store_contract_register(&mem_backend);
    CU_pSuite s = CU_add_suite("mem_store", NULL, NULL);
    CU_add_test(s, "20,000 entries, half deleted", test_many_entries);
    CU_add_test(s, "invalid inputs", test_invalid_inputs);
}

int main(void)
{
    static const cunit_register_fn regs[] = {register_mem, NULL};
    return cunit_main(regs);
}

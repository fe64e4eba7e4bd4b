/* store_contract.c: the behaviour suite of store_contract.h.
 *
 * Every test opens a fresh store through the backend's open_fresh(),
 * drives it only through struct store_ops and closes it, so the same
 * assertions hold for memory, file and PostgreSQL. State comparisons use a
 * "snapshot": every entry (found by paging list()) with its full JSON,
 * sorted, plus the exact count and the offsets of the suite's topics. */
#include "tests/stores/store_contract.h"

#include <CUnit/CUnit.h>
#include <pthread.h>
#include <sched.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#define SC_TOPIC "edr.events.contract"
#define SC_TOPIC2 "edr.events.contract2"
#define SC_MAX_BACKENDS 8

/* The backend of the suite being run: set by that suite's init. */
static const struct store_contract_backend *sc_b;
static const struct store_contract_backend *sc_registered[SC_MAX_BACKENDS];

/* ---- helpers ---------------------------------------------------------- */

struct sc_key {
    char cpid[1100];
    char addr[1100];
    char query[1100];
    char policy[1100];
    struct edr_key k;
};

static void sc_key_make(struct sc_key *sk, const char *cpid, int i)
{
    snprintf(sk->cpid, sizeof(sk->cpid), "%s", cpid);
    snprintf(sk->addr, sizeof(sk->addr),
             "https://provider-%d.example.com/api/v1/dsp", i % 7);
    snprintf(sk->query, sizeof(sk->query),
             "%016x8ea2a8b0c1d2e3f405162738495a6b7c8d9eafb0c1d2e3f4", i);
    snprintf(sk->policy, sizeof(sk->policy),
             "61ae1234567890abcdef1234567890abcdef1234567890ab%016x", i);
    sk->k = (struct edr_key){sk->cpid, sk->addr, sk->query, sk->policy};
}

static void sc_key_num(struct sc_key *sk, int i)
{
    char cpid[64];
    snprintf(cpid, sizeof(cpid), "BPNL%012d", i);
    sc_key_make(sk, cpid, i);
}

/* A compact EDR entry as the handler stores it. */
static int sc_entry(char *buf, size_t size, const char *tid, int version)
{
    return snprintf(buf, size,
                    "{\"@id\":\"%s\",\"assetId\":\"asset-1\","
                    "\"agreementId\":\"agreement-1\",\"transferProcessId\":"
                    "\"%s\",\"createdAt\":%d}",
                    tid, tid, 1700000000 + version);
}

static struct store *sc_open(void)
{
    struct store *st = sc_b->open_fresh(sc_b->ctx);
    CU_ASSERT_PTR_NOT_NULL_FATAL(st);
    return st;
}

static struct store *sc_reopen(struct store *old)
{
    store_close(old);
    struct store *st = sc_b->reopen(sc_b->ctx);
    CU_ASSERT_PTR_NOT_NULL_FATAL(st);
    return st;
}

static int sc_put(struct store *st, const struct edr_key *k, const char *tid,
                  int version)
{
    char json[512];
    struct store_err err = {0};
    int n = sc_entry(json, sizeof(json), tid, version);
    int rc = store_put(st, k, tid, json, (size_t)n, &err);
    if (rc != STORE_OK)
        fprintf(stderr, "put: %s\n", err.msg);
    return rc;
}

static uint64_t sc_count(struct store *st, const char *sub)
{
    struct store_err err = {0};
    uint64_t n = UINT64_MAX;
    CU_ASSERT_EQUAL(st->ops->count(st, STORE_FILTER_PARTY(sub), &n, &err),
                    STORE_OK);
    return n;
}

/* Entry JSON at k, malloc'd, or NULL when absent. */
static char *sc_get_json(struct store *st, const struct edr_key *k)
{
    struct store_record r = {0};
    struct store_err err = {0};
    int rc = st->ops->get(st, k, &r, &err);
    CU_ASSERT(rc == STORE_OK || rc == STORE_NOT_FOUND);
    if (rc != STORE_OK)
        return NULL;
    char *j = r.entry_json;
    r.entry_json = NULL;
    store_record_clear(&r);
    return j;
}

/* ---- snapshots -------------------------------------------------------- */

struct sc_snap {
    char **lines; /* sorted "keys\x1ftid\x1fjson" */
    size_t n;
    uint64_t count;
    char offsets[512]; /* both topics' offsets, sorted by partition */
    int ok;
};

static int sc_strcmp(const void *a, const void *b)
{
    return strcmp(*(char *const *)a, *(char *const *)b);
}

static int sc_off_cmp(const void *a, const void *b)
{
    const struct store_offset *x = a, *y = b;
    return (x->partition > y->partition) - (x->partition < y->partition);
}

static void sc_offsets_text(struct store *st, char *buf, size_t size, int *ok)
{
    const char *topics[2] = {SC_TOPIC, SC_TOPIC2};
    size_t used = 0;
    buf[0] = '\0';
    for (int t = 0; t < 2; t++) {
        struct store_offset *o = NULL;
        size_t n = 0;
        struct store_err err = {0};
        if (st->ops->load_offsets(st, topics[t], &o, &n, &err) != STORE_OK) {
            *ok = 0;
            continue;
        }
        if (n)
            qsort(o, n, sizeof(*o), sc_off_cmp);
        for (size_t i = 0; i < n && used < size; i++)
            used +=
                (size_t)snprintf(buf + used, size - used, "%d:%d=%lld;", t,
                                 o[i].partition, (long long)o[i].next_offset);
        free(o);
    }
}

static void sc_snap_take(struct store *st, struct sc_snap *s)
{
    char *cursor = NULL;
    size_t cap = 0;
    memset(s, 0, sizeof(*s));
    s->ok = 1;
    for (;;) {
        struct store_list l = {0};
        struct store_err err = {0};
        if (st->ops->list(st, NULL, cursor, 1000, &l, &err) != STORE_OK) {
            s->ok = 0;
            break;
        }
        for (size_t i = 0; i < l.n_items; i++) {
            struct store_record *r = &l.items[i];
            struct edr_key k = {r->counter_party_id, r->counter_party_address,
                                r->query_checksum, r->policy_checksum};
            char *json = sc_get_json(st, &k);
            size_t len =
                strlen(r->counter_party_id) + strlen(r->counter_party_address) +
                strlen(r->query_checksum) + strlen(r->policy_checksum) +
                strlen(r->transfer_id) + (json ? strlen(json) : 6) + 8;
            char *line = malloc(len);
            snprintf(line, len, "%s\x1f%s\x1f%s\x1f%s\x1f%s\x1f%s",
                     r->counter_party_id, r->counter_party_address,
                     r->query_checksum, r->policy_checksum, r->transfer_id,
                     json ? json : "(gone)");
            free(json);
            if (s->n == cap) {
                cap = cap ? cap * 2 : 64;
                s->lines = realloc(s->lines, cap * sizeof(*s->lines));
            }
            s->lines[s->n++] = line;
        }
        free(cursor);
        cursor = l.next_cursor;
        l.next_cursor = NULL;
        store_list_clear(&l);
        if (!cursor)
            break;
    }
    free(cursor);
    if (s->n)
        qsort(s->lines, s->n, sizeof(*s->lines), sc_strcmp);
    s->count = sc_count(st, NULL);
    sc_offsets_text(st, s->offsets, sizeof(s->offsets), &s->ok);
}

static int sc_snap_equal(const struct sc_snap *a, const struct sc_snap *b)
{
    if (!a->ok || !b->ok || a->n != b->n || a->count != b->count ||
        strcmp(a->offsets, b->offsets) != 0)
        return 0;
    for (size_t i = 0; i < a->n; i++)
        if (strcmp(a->lines[i], b->lines[i]) != 0)
            return 0;
    return 1;
}

static void sc_snap_free(struct sc_snap *s)
{
    for (size_t i = 0; i < s->n; i++)
        free(s->lines[i]);
    free(s->lines);
    memset(s, 0, sizeof(*s));
}

/* ---- tests ------------------------------------------------------------ */

static void test_put_get(void)
{
    struct store *st = sc_open();
    struct sc_key a;
    struct store_record r = {0};
    struct store_err err = {0};
    char *tid = NULL;
    sc_key_num(&a, 1);

    CU_ASSERT_EQUAL(st->ops->get(st, &a.k, &r, &err), STORE_NOT_FOUND);
    CU_ASSERT_EQUAL(st->ops->get_transfer_id(st, &a.k, &tid, &err),
                    STORE_NOT_FOUND);
    CU_ASSERT_EQUAL(sc_count(st, NULL), 0);

    CU_ASSERT_EQUAL(sc_put(st, &a.k, "tp-1", 1), STORE_OK);
    CU_ASSERT_EQUAL_FATAL(st->ops->get(st, &a.k, &r, &err), STORE_OK);
    char want[512];
    int n = sc_entry(want, sizeof(want), "tp-1", 1);
    CU_ASSERT_EQUAL(r.entry_len, (size_t)n);
    CU_ASSERT_STRING_EQUAL(r.entry_json, want);
    CU_ASSERT_STRING_EQUAL(r.transfer_id, "tp-1");
    CU_ASSERT_STRING_EQUAL(r.counter_party_id, a.cpid);
    CU_ASSERT_STRING_EQUAL(r.counter_party_address, a.addr);
    CU_ASSERT_STRING_EQUAL(r.query_checksum, a.query);
    CU_ASSERT_STRING_EQUAL(r.policy_checksum, a.policy);
    store_record_clear(&r);
    CU_ASSERT_EQUAL(st->ops->get_transfer_id(st, &a.k, &tid, &err), STORE_OK);
    CU_ASSERT_STRING_EQUAL(tid, "tp-1");
    free(tid);
    CU_ASSERT_EQUAL(sc_count(st, NULL), 1);
    CU_ASSERT_EQUAL(sc_count(st, ""), 1);
    store_close(st);
}

static void test_replace_counted_once(void)
{
    struct store *st = sc_open();
    struct sc_key a, b;
    struct store_err err = {0};
    char *tid = NULL;
    sc_key_num(&a, 1);
    sc_key_num(&b, 2);
    CU_ASSERT_EQUAL(sc_put(st, &a.k, "tp-1", 1), STORE_OK);
    CU_ASSERT_EQUAL(sc_put(st, &a.k, "tp-2", 2), STORE_OK);
    CU_ASSERT_EQUAL(sc_put(st, &a.k, "tp-2", 3), STORE_OK);
    CU_ASSERT_EQUAL(sc_count(st, NULL), 1);
    CU_ASSERT_EQUAL(sc_put(st, &b.k, "tp-3", 1), STORE_OK);
    CU_ASSERT_EQUAL(sc_count(st, NULL), 2);
    CU_ASSERT_EQUAL(st->ops->get_transfer_id(st, &a.k, &tid, &err), STORE_OK);
    CU_ASSERT_STRING_EQUAL(tid, "tp-2");
    free(tid);
    char *json = sc_get_json(st, &a.k);
    char want[512];
    sc_entry(want, sizeof(want), "tp-2", 3);
    CU_ASSERT_PTR_NOT_NULL_FATAL(json);
    CU_ASSERT_STRING_EQUAL(json, want);
    free(json);
    store_close(st);
}

static void test_delete_twice(void)
{
    struct store *st = sc_open();
    struct sc_key a, b;
    struct store_err err = {0};
    sc_key_num(&a, 1);
    sc_key_num(&b, 2);
    CU_ASSERT_EQUAL(sc_put(st, &a.k, "tp-1", 1), STORE_OK);
    CU_ASSERT_EQUAL(sc_put(st, &b.k, "tp-2", 1), STORE_OK);
    CU_ASSERT_EQUAL(store_delete(st, &a.k, NULL, &err), STORE_OK);
    CU_ASSERT_EQUAL(store_delete(st, &a.k, NULL, &err), STORE_NOT_FOUND);
    CU_ASSERT_PTR_NULL(sc_get_json(st, &a.k));
    CU_ASSERT_EQUAL(sc_count(st, NULL), 1);
    char *json = sc_get_json(st, &b.k);
    CU_ASSERT_PTR_NOT_NULL(json);
    free(json);
    /* A deleted entry can come back. */
    CU_ASSERT_EQUAL(sc_put(st, &a.k, "tp-3", 1), STORE_OK);
    CU_ASSERT_EQUAL(sc_count(st, NULL), 2);
    store_close(st);
}

static void test_delete_if_transfer_id(void)
{
    struct store *st = sc_open();
    struct sc_key a;
    struct store_err err = {0};
    char *tid = NULL;
    sc_key_num(&a, 1);
    CU_ASSERT_EQUAL(sc_put(st, &a.k, "tp-new", 2), STORE_OK);
    /* A late expiry of the older EDR never removes the newer one. */
    CU_ASSERT_EQUAL(store_delete(st, &a.k, "tp-old", &err), STORE_NOT_FOUND);
    CU_ASSERT_EQUAL(sc_count(st, NULL), 1);
    CU_ASSERT_EQUAL(st->ops->get_transfer_id(st, &a.k, &tid, &err), STORE_OK);
    CU_ASSERT_STRING_EQUAL(tid, "tp-new");
    free(tid);
    CU_ASSERT_EQUAL(store_delete(st, &a.k, "tp-new", &err), STORE_OK);
    CU_ASSERT_EQUAL(sc_count(st, NULL), 0);
    CU_ASSERT_EQUAL(store_delete(st, &a.k, "tp-new", &err), STORE_NOT_FOUND);
    store_close(st);
}

static void test_batch_changed(void)
{
    struct store *st = sc_open();
    struct sc_key a, b, c;
    struct store_err err = {0};
    char ja[256];
    sc_key_num(&a, 1);
    sc_key_num(&b, 2);
    sc_key_num(&c, 3);
    int na = sc_entry(ja, sizeof(ja), "tp-a", 1);
    CU_ASSERT_EQUAL(sc_put(st, &b.k, "tp-b", 1), STORE_OK);
    struct store_op ops[] = {
        {STORE_OP_PUT, a.k, "tp-a", ja, (size_t)na},
        {STORE_OP_DELETE, b.k, "tp-other", NULL, 0}, /* mismatch: no */
        {STORE_OP_DELETE, c.k, NULL, NULL, 0},       /* absent: no */
        {STORE_OP_DELETE, b.k, "tp-b", NULL, 0},     /* yes */
        {STORE_OP_DELETE, a.k, NULL, NULL, 0},       /* put above: yes */
    };
    struct store_batch batch = {.ops = ops, .n_ops = 5};
    CU_ASSERT_EQUAL(st->ops->apply(st, &batch, &err), STORE_OK);
    CU_ASSERT_EQUAL(batch.changed, 3);
    CU_ASSERT_EQUAL(sc_count(st, NULL), 0);
    /* An empty batch is fine. */
    struct store_batch empty = {0};
    CU_ASSERT_EQUAL(st->ops->apply(st, &empty, &err), STORE_OK);
    CU_ASSERT_EQUAL(empty.changed, 0);
    store_close(st);
}

static void test_substring_count_clear(void)
{
    struct store *st = sc_open();
    struct sc_key k[5];
    struct store_err err = {0};
    uint64_t removed = 99;
    sc_key_make(&k[0], "BPNL000000000065", 1);
    sc_key_make(&k[1], "did:web:wallet.example.com:BPNL000000000065", 2);
    sc_key_make(&k[2], "BPNL000000000099", 3);
    sc_key_make(&k[3], "did:web:wallet.example.com:BPNL000000000099", 4);
    sc_key_make(&k[4], "BPNL000000000065", 5); /* same party, other conn */
    for (int i = 0; i < 5; i++) {
        char tid[32];
        snprintf(tid, sizeof(tid), "tp-%d", i);
        CU_ASSERT_EQUAL(sc_put(st, &k[i].k, tid, i), STORE_OK);
    }
    CU_ASSERT_EQUAL(sc_count(st, NULL), 5);
    CU_ASSERT_EQUAL(sc_count(st, "BPNL000000000065"), 3);
    CU_ASSERT_EQUAL(sc_count(st, "did:web:wallet.example.com:"), 2);
    CU_ASSERT_EQUAL(sc_count(st, "BPNL"), 5);
    CU_ASSERT_EQUAL(sc_count(st, "nobody"), 0);
    /* A BPN clears both the bare-BPN and the DID-keyed entries. */
    CU_ASSERT_EQUAL(
        st->ops->clear_party(st, "BPNL000000000065", &removed, &err), STORE_OK);
    CU_ASSERT_EQUAL(removed, 3);
    CU_ASSERT_EQUAL(
        st->ops->clear_party(st, "BPNL000000000065", &removed, &err), STORE_OK);
    CU_ASSERT_EQUAL(removed, 0);
    CU_ASSERT_EQUAL(sc_count(st, NULL), 2);
    CU_ASSERT_EQUAL(sc_count(st, "BPNL000000000065"), 0);
    CU_ASSERT_PTR_NULL(sc_get_json(st, &k[1].k));
    char *json = sc_get_json(st, &k[3].k);
    CU_ASSERT_PTR_NOT_NULL(json);
    free(json);
    /* A DID clears only the DID-keyed entry. */
    CU_ASSERT_EQUAL(
        st->ops->clear_party(st, "did:web:wallet.example.com:BPNL000000000099",
                             &removed, &err),
        STORE_OK);
    CU_ASSERT_EQUAL(removed, 1);
    CU_ASSERT_EQUAL(sc_count(st, NULL), 1);
    CU_ASSERT_EQUAL(sc_count(st, "BPNL000000000099"), 1);
    store_close(st);
}

static void test_keeps_given_json(void)
{
    struct store *st = sc_open();
    struct sc_key a;
    struct store_err err = {0};
    sc_key_num(&a, 1);
    /* Removing these is the handler's job; the store keeps what it gets. */
    const char *json =
        "{\"@type\":\"EndpointDataReferenceEntry\",\"@context\":{\"@vocab\":"
        "\"https://w3id.org/edc/v0.0.1/ns/\"},\"providerId\":"
        "\"BPNL000000000065\",\"@id\":\"tp-1\",\"transferProcessId\":"
        "\"tp-1\",\"note\":\"caf\xc3\xa9 \\\"q\\\" \\u00e9\",\"n\":[1,2.5,"
        "-3e2,true,false,null]}";
    CU_ASSERT_EQUAL(store_put(st, &a.k, "tp-1", json, strlen(json), &err),
                    STORE_OK);
    char *got = sc_get_json(st, &a.k);
    CU_ASSERT_PTR_NOT_NULL_FATAL(got);
    CU_ASSERT_STRING_EQUAL(got, json);
    free(got);
    if (sc_b->reopen) {
        st = sc_reopen(st);
        got = sc_get_json(st, &a.k);
        CU_ASSERT_PTR_NOT_NULL_FATAL(got);
        CU_ASSERT_STRING_EQUAL(got, json);
        free(got);
    }
    store_close(st);
}

static void test_returned_copy(void)
{
    struct store *st = sc_open();
    struct sc_key a;
    struct store_record r = {0};
    struct store_err err = {0};
    char *tid = NULL;
    sc_key_num(&a, 1);
    CU_ASSERT_EQUAL(sc_put(st, &a.k, "tp-1", 1), STORE_OK);
    CU_ASSERT_EQUAL_FATAL(st->ops->get(st, &a.k, &r, &err), STORE_OK);
    char want[512];
    sc_entry(want, sizeof(want), "tp-1", 1);
    memset(r.entry_json, 'X', r.entry_len);
    r.transfer_id[0] = 'X';
    r.counter_party_id[0] = 'X';
    store_record_clear(&r);
    CU_ASSERT_EQUAL(st->ops->get_transfer_id(st, &a.k, &tid, &err), STORE_OK);
    tid[0] = 'X';
    free(tid);
    struct store_list l = {0};
    CU_ASSERT_EQUAL_FATAL(st->ops->list(st, NULL, NULL, 10, &l, &err),
                          STORE_OK);
    CU_ASSERT_EQUAL_FATAL(l.n_items, 1);
    l.items[0].transfer_id[0] = 'X';
    l.items[0].counter_party_id[0] = 'X';
    store_list_clear(&l);

    char *got = sc_get_json(st, &a.k);
    CU_ASSERT_PTR_NOT_NULL_FATAL(got);
    CU_ASSERT_STRING_EQUAL(got, want);
    free(got);
    CU_ASSERT_EQUAL(st->ops->get_transfer_id(st, &a.k, &tid, &err), STORE_OK);
    CU_ASSERT_STRING_EQUAL(tid, "tp-1");
    free(tid);
    store_close(st);
}

static void test_unicode_and_long_keys(void)
{
    struct store *st = sc_open();
    struct sc_key u, l1, l2, s1, s2;
    struct store_err err = {0};
    sc_key_make(&u, "did:web:w\xc3\xa4llet.example.com:BPNL\xf0\x9f\x99\x82",
                1);
    snprintf(u.addr, sizeof(u.addr), "https://\xe6\x97\xa5\xe6\x9c\xac.jp/dsp");
    /* Four 1 KiB keys (the contract's maximum), and a second connection
     * that differs only in the very last byte. */
    sc_key_num(&l1, 2);
    memset(l1.cpid, 'c', 1024);
    memset(l1.addr, 'a', 1024);
    memset(l1.query, 'q', 1024);
    memset(l1.policy, 'p', 1024);
    l1.cpid[1024] = l1.addr[1024] = l1.query[1024] = l1.policy[1024] = '\0';
    l2 = l1;
    l2.k = (struct edr_key){l2.cpid, l2.addr, l2.query, l2.policy};
    l2.policy[1023] = 'P';
    /* Field boundaries matter: ("ab","c") is not ("a","bc"). */
    sc_key_num(&s1, 3);
    sc_key_num(&s2, 3);
    strcpy(s1.cpid, "ab");
    strcpy(s1.addr, "c");
    strcpy(s2.cpid, "a");
    strcpy(s2.addr, "bc");

    CU_ASSERT_EQUAL(sc_put(st, &u.k, "tp-\xc3\xbc", 1), STORE_OK);
    CU_ASSERT_EQUAL(sc_put(st, &l1.k, "tp-l1", 1), STORE_OK);
    CU_ASSERT_EQUAL(sc_put(st, &l2.k, "tp-l2", 1), STORE_OK);
    CU_ASSERT_EQUAL(sc_put(st, &s1.k, "tp-s1", 1), STORE_OK);
    CU_ASSERT_EQUAL(sc_put(st, &s2.k, "tp-s2", 1), STORE_OK);
    CU_ASSERT_EQUAL(sc_count(st, NULL), 5);
    CU_ASSERT_EQUAL(sc_count(st, "BPNL\xf0\x9f\x99\x82"), 1);
    for (int pass = 0; pass < 2; pass++) {
        struct sc_key *ks[] = {&u, &l1, &l2, &s1, &s2};
        const char *tids[] = {"tp-\xc3\xbc", "tp-l1", "tp-l2", "tp-s1",
                              "tp-s2"};
        for (int i = 0; i < 5; i++) {
            struct store_record r = {0};
            CU_ASSERT_EQUAL_FATAL(st->ops->get(st, &ks[i]->k, &r, &err),
                                  STORE_OK);
            CU_ASSERT_STRING_EQUAL(r.transfer_id, tids[i]);
            CU_ASSERT_STRING_EQUAL(r.counter_party_id, ks[i]->cpid);
            CU_ASSERT_STRING_EQUAL(r.counter_party_address, ks[i]->addr);
            CU_ASSERT_STRING_EQUAL(r.policy_checksum, ks[i]->policy);
            store_record_clear(&r);
        }
        struct store_list l = {0};
        CU_ASSERT_EQUAL(st->ops->list(st, STORE_FILTER_PARTY("\xc3\xa4llet"),
                                      NULL, 10, &l, &err),
                        STORE_OK);
        CU_ASSERT_EQUAL(l.n_items, 1);
        if (l.n_items == 1)
            CU_ASSERT_STRING_EQUAL(l.items[0].counter_party_address, u.addr);
        store_list_clear(&l);
        if (!sc_b->reopen)
            break;
        st = sc_reopen(st);
    }
    CU_ASSERT_EQUAL(store_delete(st, &l1.k, NULL, &err), STORE_OK);
    char *json = sc_get_json(st, &l2.k);
    CU_ASSERT_PTR_NOT_NULL(json);
    free(json);
    CU_ASSERT_EQUAL(sc_count(st, NULL), 4);
    store_close(st);
}

#define SC_LIST_N 230

static void test_list_paging(void)
{
    struct store *st = sc_open();
    struct store_err err = {0};
    static struct sc_key ks[SC_LIST_N];
    static char cks[SC_LIST_N][EDR_CONNECTION_KEY_LEN + 1];
    int seen[SC_LIST_N] = {0};
    int n_match = 0;
    for (int i = 0; i < SC_LIST_N; i++) {
        char cpid[64], tid[32];
        /* Every third entry belongs to party 65 (BPN or DID form). */
        if (i % 3 == 0)
            snprintf(cpid, sizeof(cpid), "%sBPNL000000000065",
                     i % 2 ? "did:web:wallet.example.com:" : "");
        else
            snprintf(cpid, sizeof(cpid), "BPNL%012d", 1000 + i);
        n_match += i % 3 == 0;
        sc_key_make(&ks[i], cpid, i);
        edr_connection_key(&ks[i].k, cks[i]);
        snprintf(tid, sizeof(tid), "tp-%d", i);
        CU_ASSERT_EQUAL_FATAL(sc_put(st, &ks[i].k, tid, i), STORE_OK);
    }
    for (int pass = 0; pass < 2; pass++) {
        const char *sub = pass ? "BPNL000000000065" : NULL;
        char *cursor = NULL;
        char last[EDR_CONNECTION_KEY_LEN + 1] = "";
        int total = 0, pages = 0;
        memset(seen, 0, sizeof(seen));
        for (;;) {
            struct store_list l = {0};
            CU_ASSERT_EQUAL_FATAL(
                st->ops->list(st, STORE_FILTER_PARTY(sub), cursor, 7, &l, &err),
                STORE_OK);
            CU_ASSERT(l.n_items <= 7);
            pages++;
            for (size_t j = 0; j < l.n_items; j++) {
                struct store_record *r = &l.items[j];
                struct edr_key k = {r->counter_party_id,
                                    r->counter_party_address, r->query_checksum,
                                    r->policy_checksum};
                char ck[EDR_CONNECTION_KEY_LEN + 1];
                edr_connection_key(&k, ck);
                CU_ASSERT(strcmp(ck, last) > 0); /* ascending */
                strcpy(last, ck);
                CU_ASSERT_PTR_NULL(r->entry_json);
                CU_ASSERT_PTR_NOT_NULL(r->transfer_id);
                int idx = -1;
                sscanf(r->transfer_id, "tp-%d", &idx);
                CU_ASSERT_FATAL(idx >= 0 && idx < SC_LIST_N);
                CU_ASSERT_STRING_EQUAL(ck, cks[idx]);
                seen[idx]++;
                total++;
                if (sub)
                    CU_ASSERT(strstr(r->counter_party_id, sub) != NULL);
            }
            free(cursor);
            cursor = l.next_cursor;
            l.next_cursor = NULL;
            if (cursor) {
                CU_ASSERT_EQUAL(l.n_items, 7);
                CU_ASSERT_STRING_EQUAL(cursor, last); /* key of last item */
            }
            store_list_clear(&l);
            if (!cursor || pages > SC_LIST_N)
                break;
        }
        free(cursor);
        CU_ASSERT_EQUAL(total, sub ? n_match : SC_LIST_N);
        for (int i = 0; i < SC_LIST_N; i++)
            CU_ASSERT_EQUAL(seen[i], (!sub || i % 3 == 0) ? 1 : 0);
    }
    /* Exactly one full page: no next cursor when nothing follows. */
    struct store_list l = {0};
    CU_ASSERT_EQUAL(st->ops->list(st, STORE_FILTER_PARTY("BPNL000000000065"),
                                  NULL, (size_t)n_match, &l, &err),
                    STORE_OK);
    CU_ASSERT_EQUAL(l.n_items, (size_t)n_match);
    CU_ASSERT_PTR_NULL(l.next_cursor);
    store_list_clear(&l);
    CU_ASSERT_EQUAL(
        st->ops->list(st, STORE_FILTER_PARTY("nobody"), NULL, 10, &l, &err),
        STORE_OK);
    CU_ASSERT_EQUAL(l.n_items, 0);
    CU_ASSERT_PTR_NULL(l.next_cursor);
    store_list_clear(&l);
    CU_ASSERT_EQUAL(st->ops->list(st, NULL, NULL, 0, &l, &err), STORE_INVALID);
    CU_ASSERT_EQUAL(st->ops->list(st, NULL, NULL, 1001, &l, &err),
                    STORE_INVALID);
    store_close(st);
}

/* ---- v2: get_by_transfer_id and the filters --------------------------- */

static int sc_put_json(struct store *st, const struct edr_key *k,
                       const char *tid, const char *json)
{
    struct store_err err = {0};
    int rc = store_put(st, k, tid, json, strlen(json), &err);
    if (rc != STORE_OK)
        fprintf(stderr, "put: %s\n", err.msg);
    return rc;
}

/* The record get_by_transfer_id gives for tid: 0 when it is the entry at
 * want (all fields), -1 when another or none. */
static int sc_by_tid_is(struct store *st, const char *tid,
                        const struct sc_key *want, const char *want_json)
{
    struct store_record r = {0};
    struct store_err err = {0};
    int rc = st->ops->get_by_transfer_id(st, tid, &r, &err);
    CU_ASSERT_EQUAL(rc, STORE_OK);
    if (rc != STORE_OK)
        return -1;
    int ok = !strcmp(r.counter_party_id, want->cpid) &&
             !strcmp(r.counter_party_address, want->addr) &&
             !strcmp(r.query_checksum, want->query) &&
             !strcmp(r.policy_checksum, want->policy) &&
             !strcmp(r.transfer_id, tid) && r.entry_json &&
             r.entry_len == strlen(want_json) &&
             !strcmp(r.entry_json, want_json);
    store_record_clear(&r);
    return ok ? 0 : -1;
}

static void test_get_by_transfer_id(void)
{
    struct store *st = sc_open();
    struct store_record r = {0};
    struct store_err err = {0};
    static struct sc_key ks[6];
    char cks[6][EDR_CONNECTION_KEY_LEN + 1];
    char json[6][256];
    CU_ASSERT_PTR_NOT_NULL_FATAL(st->ops->get_by_transfer_id);
    CU_ASSERT_EQUAL(st->ops->get_by_transfer_id(st, "tp-x", &r, &err),
                    STORE_NOT_FOUND);
    CU_ASSERT_PTR_NULL(r.entry_json);

    for (int i = 0; i < 6; i++) {
        sc_key_num(&ks[i], 700 + i);
        edr_connection_key(&ks[i].k, cks[i]);
    }
    /* One holder: every field, the asset id and the JSON come back. */
    snprintf(json[0], sizeof(json[0]),
             "{\"assetId\":\"asset-one\",\"transferProcessId\":\"tp-one\"}");
    CU_ASSERT_EQUAL_FATAL(sc_put_json(st, &ks[0].k, "tp-one", json[0]),
                          STORE_OK);
    CU_ASSERT_EQUAL_FATAL(st->ops->get_by_transfer_id(st, "tp-one", &r, &err),
                          STORE_OK);
    CU_ASSERT_STRING_EQUAL(r.counter_party_id, ks[0].cpid);
    CU_ASSERT_STRING_EQUAL(r.counter_party_address, ks[0].addr);
    CU_ASSERT_STRING_EQUAL(r.query_checksum, ks[0].query);
    CU_ASSERT_STRING_EQUAL(r.policy_checksum, ks[0].policy);
    CU_ASSERT_STRING_EQUAL(r.transfer_id, "tp-one");
    CU_ASSERT_PTR_NOT_NULL_FATAL(r.asset_id);
    CU_ASSERT_STRING_EQUAL(r.asset_id, "asset-one");
    CU_ASSERT_STRING_EQUAL(r.entry_json, json[0]);
    CU_ASSERT_EQUAL(r.entry_len, strlen(json[0]));
    store_record_clear(&r);
    CU_ASSERT_EQUAL(st->ops->get_by_transfer_id(st, "tp-on", &r, &err),
                    STORE_NOT_FOUND);
    CU_ASSERT_EQUAL(st->ops->get_by_transfer_id(st, "tp-one-", &r, &err),
                    STORE_NOT_FOUND);

    /* Five connections share a transfer id: the smallest key wins. */
    int order[5] = {1, 2, 3, 4, 5};
    for (int a = 0; a < 5; a++) /* sort by connection key */
        for (int b = a + 1; b < 5; b++)
            if (strcmp(cks[order[b]], cks[order[a]]) < 0) {
                int t = order[a];
                order[a] = order[b];
                order[b] = t;
            }
    for (int i = 1; i < 6; i++) {
        snprintf(json[i], sizeof(json[i]),
                 "{\"transferProcessId\":\"tp-shared\",\"n\":%d}", i);
        CU_ASSERT_EQUAL_FATAL(sc_put_json(st, &ks[i].k, "tp-shared", json[i]),
                              STORE_OK);
    }
    int m = order[0];
    CU_ASSERT_EQUAL(sc_by_tid_is(st, "tp-shared", &ks[m], json[m]), 0);
    CU_ASSERT_EQUAL_FATAL(
        st->ops->get_by_transfer_id(st, "tp-shared", &r, &err), STORE_OK);
    CU_ASSERT_PTR_NULL(r.asset_id); /* that entry has no assetId */
    store_record_clear(&r);

    /* The smallest is deleted: the next one answers. */
    CU_ASSERT_EQUAL(store_delete(st, &ks[m].k, NULL, &err), STORE_OK);
    m = order[1];
    CU_ASSERT_EQUAL(sc_by_tid_is(st, "tp-shared", &ks[m], json[m]), 0);
    /* It is renewed under a new transfer id: it moves there. */
    snprintf(json[m], sizeof(json[m]),
             "{\"transferProcessId\":\"tp-renewed\",\"n\":%d}", m);
    CU_ASSERT_EQUAL(sc_put_json(st, &ks[m].k, "tp-renewed", json[m]), STORE_OK);
    CU_ASSERT_EQUAL(sc_by_tid_is(st, "tp-renewed", &ks[m], json[m]), 0);
    m = order[2];
    CU_ASSERT_EQUAL(sc_by_tid_is(st, "tp-shared", &ks[m], json[m]), 0);
    /* Renewed in place with the same transfer id: the new JSON. */
    snprintf(json[m], sizeof(json[m]),
             "{\"transferProcessId\":\"tp-shared\",\"n\":%d,\"v\":2}", m);
    CU_ASSERT_EQUAL(sc_put_json(st, &ks[m].k, "tp-shared", json[m]), STORE_OK);
    CU_ASSERT_EQUAL(sc_by_tid_is(st, "tp-shared", &ks[m], json[m]), 0);
    if (sc_b->reopen) {
        st = sc_reopen(st);
        CU_ASSERT_EQUAL(sc_by_tid_is(st, "tp-shared", &ks[m], json[m]), 0);
        CU_ASSERT_EQUAL(sc_by_tid_is(st, "tp-one", &ks[0], json[0]), 0);
    }
    /* Everyone with it gone: not found. */
    for (int j = 2; j < 5; j++)
        CU_ASSERT_EQUAL(store_delete(st, &ks[order[j]].k, "tp-shared", &err),
                        STORE_OK);
    CU_ASSERT_EQUAL(st->ops->get_by_transfer_id(st, "tp-shared", &r, &err),
                    STORE_NOT_FOUND);
    uint64_t removed = 0;
    CU_ASSERT_EQUAL(st->ops->clear_party(st, ks[order[1]].cpid, &removed, &err),
                    STORE_OK);
    CU_ASSERT_EQUAL(removed, 1);
    CU_ASSERT_EQUAL(st->ops->get_by_transfer_id(st, "tp-renewed", &r, &err),
                    STORE_NOT_FOUND);
    CU_ASSERT_EQUAL(sc_by_tid_is(st, "tp-one", &ks[0], json[0]), 0);
    store_close(st);
}

/* The filter fixture: SC_F_N entries whose party, transfer id and
 * assetId vary with i, and a model of which ones each filter keeps. */
#define SC_F_N 60
struct sc_ffix {
    struct sc_key ks[SC_F_N];
    char cks[SC_F_N][EDR_CONNECTION_KEY_LEN + 1];
    char tid[SC_F_N][16];
    const char *asset[SC_F_N]; /* the decoded string assetId or NULL */
    int gone[SC_F_N];          /* deleted */
};

static const char *sc_f_json(int kind, const char *tid, char *buf, size_t n)
{
    /* 0, 1: plain; 2: escapes (decoded "asset-été"); 3: assetId only
     * nested; 4: a number; 5: another case. */
    static const char *const pre[6] = {"\"assetId\":\"asset-alpha-1\",",
                                       "\"assetId\":\"asset-alpha_2%\",",
                                       "",
                                       "\"x\":{\"assetId\":\"asset-alpha-1\"},",
                                       "\"assetId\":42,",
                                       ""};
    static const char *const post[6] = {
        "",
        "",
        ",\"assetId\":\"asset-\\u00e9t\\u00e9\"",
        ",\"y\":[\"assetId\",{\"assetId\":\"asset-alpha-1\"}]",
        "",
        ",\"assetId\":\"Asset-alpha-caps\""};
    snprintf(buf, n, "{%s\"@id\":\"%s\",\"transferProcessId\":\"%s\"%s}",
             pre[kind], tid, tid, post[kind]);
    return buf;
}

static void sc_f_fill(struct store *st, struct sc_ffix *fx)
{
    static const char *const assets[6] = {"asset-alpha-1",
                                          "asset-alpha_2%",
                                          "asset-\xc3\xa9t\xc3\xa9",
                                          NULL,
                                          NULL,
                                          "Asset-alpha-caps"};
    for (int i = 0; i < SC_F_N; i++) {
        char cpid[64], json[512];
        if (i % 3 == 0)
            snprintf(cpid, sizeof(cpid), "%sBPNL000000000065",
                     i % 2 ? "did:web:wallet.example.com:" : "");
        else
            snprintf(cpid, sizeof(cpid), "BPNL%012d", 2000 + i);
        sc_key_make(&fx->ks[i], cpid, 3000 + i);
        edr_connection_key(&fx->ks[i].k, fx->cks[i]);
        snprintf(fx->tid[i], sizeof(fx->tid[i]), "tp-%d", i % 10);
        fx->asset[i] = assets[i % 6];
        sc_f_json(i % 6, fx->tid[i], json, sizeof(json));
        CU_ASSERT_EQUAL_FATAL(sc_put_json(st, &fx->ks[i].k, fx->tid[i], json),
                              STORE_OK);
    }
}

static int sc_f_model(const struct sc_ffix *fx, int i,
                      const struct store_filter *f)
{
    if (f->party_substring && !strstr(fx->ks[i].cpid, f->party_substring))
        return 0;
    if (f->transfer_id && strcmp(fx->tid[i], f->transfer_id) != 0)
        return 0;
    if ((f->asset_id || f->asset_id_prefix) && !fx->asset[i])
        return 0;
    if (f->asset_id && strcmp(fx->asset[i], f->asset_id) != 0)
        return 0;
    if (f->asset_id_prefix && strncmp(fx->asset[i], f->asset_id_prefix,
                                      strlen(f->asset_id_prefix)) != 0)
        return 0;
    return 1;
}

/* count and list (pages of `page`) of f against the model; returns how
 * many entries matched. */
static int sc_f_check(struct store *st, const struct sc_ffix *fx,
                      const struct store_filter *f, size_t page)
{
    struct store_err err = {0};
    int want[SC_F_N], n_want = 0;
    for (int i = 0; i < SC_F_N; i++)
        if (!fx->gone[i] && sc_f_model(fx, i, f))
            want[n_want++] = i;
    for (int a = 0; a < n_want; a++) /* by connection key */
        for (int b = a + 1; b < n_want; b++)
            if (strcmp(fx->cks[want[b]], fx->cks[want[a]]) < 0) {
                int t = want[a];
                want[a] = want[b];
                want[b] = t;
            }
    uint64_t c = UINT64_MAX;
    int crc = st->ops->count(st, f, &c, &err);
    CU_ASSERT_EQUAL(crc, STORE_OK);
    if (crc != STORE_OK)
        fprintf(stderr, "count: %s\n", err.msg);
    CU_ASSERT_EQUAL(c, (uint64_t)n_want);
    if (c != (uint64_t)n_want)
        fprintf(stderr, "filter {%s,%s,%s,%s}: count %llu, want %d\n",
                f->party_substring ? f->party_substring : "-",
                f->transfer_id ? f->transfer_id : "-",
                f->asset_id ? f->asset_id : "-",
                f->asset_id_prefix ? f->asset_id_prefix : "-",
                (unsigned long long)c, n_want);
    char *cursor = NULL;
    int got = 0, pages = 0;
    for (;;) {
        struct store_list l = {0};
        int rc = st->ops->list(st, f, cursor, page, &l, &err);
        CU_ASSERT_EQUAL_FATAL(rc, STORE_OK);
        CU_ASSERT(l.n_items <= page);
        for (size_t j = 0; j < l.n_items; j++) {
            const struct store_record *r = &l.items[j];
            struct edr_key k = {r->counter_party_id, r->counter_party_address,
                                r->query_checksum, r->policy_checksum};
            char ck[EDR_CONNECTION_KEY_LEN + 1];
            edr_connection_key(&k, ck);
            CU_ASSERT_FATAL(got < n_want);
            int i = want[got++];
            CU_ASSERT_STRING_EQUAL(ck, fx->cks[i]);
            CU_ASSERT_STRING_EQUAL(r->transfer_id, fx->tid[i]);
            CU_ASSERT_PTR_NULL(r->entry_json);
            if (fx->asset[i]) {
                CU_ASSERT_PTR_NOT_NULL(r->asset_id);
                if (r->asset_id)
                    CU_ASSERT_STRING_EQUAL(r->asset_id, fx->asset[i]);
            } else {
                CU_ASSERT_PTR_NULL(r->asset_id);
            }
        }
        free(cursor);
        cursor = l.next_cursor;
        l.next_cursor = NULL;
        if (cursor) {
            CU_ASSERT_EQUAL(l.n_items, page);
        }
        store_list_clear(&l);
        if (!cursor || ++pages > SC_F_N)
            break;
    }
    free(cursor);
    CU_ASSERT_EQUAL(got, n_want);
    return n_want;
}

static void test_filters(void)
{
    static struct sc_ffix fx;
    struct store *st = sc_open();
    memset(&fx, 0, sizeof(fx)); /* static: the last suite left it changed */
    sc_f_fill(st, &fx);
    static const struct store_filter fs[] = {
        {0},
        {.party_substring = "BPNL000000000065"},
        {.transfer_id = "tp-3"},
        {.transfer_id = "tp-"},
        {.transfer_id = "nope"},
        {.asset_id = "asset-alpha-1"},
        {.asset_id = "asset-alpha"},
        {.asset_id = "42"},
        {.asset_id = "asset-\xc3\xa9t\xc3\xa9"},
        {.asset_id = "asset-alpha_2%"},
        {.asset_id_prefix = "asset-alpha"},
        {.asset_id_prefix = "asset-"},
        {.asset_id_prefix = ""},
        {.asset_id_prefix = "asset-alpha_"},
        {.asset_id_prefix = "asset-alpha%"},
        {.asset_id_prefix = "asset-alpha-1x"},
        {.asset_id_prefix = "asset-\xc3"},
        {.asset_id_prefix = "ASSET"},
        {.party_substring = "BPNL000000000065", .asset_id_prefix = "asset-"},
        {.party_substring = "65", .transfer_id = "tp-0"},
        {.transfer_id = "tp-3", .asset_id = "asset-alpha_2%"},
        {.transfer_id = "tp-2", .asset_id_prefix = "asset-"},
        {.asset_id = "asset-alpha-1", .asset_id_prefix = "asset-alpha"},
        {.asset_id = "asset-alpha-1", .asset_id_prefix = "asset-beta"},
        {.party_substring = "BPNL000000000065",
         .transfer_id = "tp-6",
         .asset_id = "asset-alpha-1",
         .asset_id_prefix = "asset-a"},
    };
    int n[sizeof(fs) / sizeof(fs[0])];
    for (size_t i = 0; i < sizeof(fs) / sizeof(fs[0]); i++)
        n[i] = sc_f_check(st, &fx, &fs[i], i % 2 ? 4 : 1000);
    /* The fixture is what the model says it is (the filters bite). */
    CU_ASSERT_EQUAL(n[0], SC_F_N);
    CU_ASSERT_EQUAL(n[1], SC_F_N / 3);
    CU_ASSERT_EQUAL(n[2], 6);
    CU_ASSERT_EQUAL(n[3], 0);
    CU_ASSERT_EQUAL(n[5], 10);
    CU_ASSERT_EQUAL(n[6], 0);
    CU_ASSERT_EQUAL(n[7], 0);
    CU_ASSERT_EQUAL(n[8], 10);
    CU_ASSERT_EQUAL(n[10], 20);
    CU_ASSERT_EQUAL(n[12], 40);
    CU_ASSERT_EQUAL(n[13], 10);
    CU_ASSERT_EQUAL(n[14], 0);
    CU_ASSERT_EQUAL(n[17], 0);
    CU_ASSERT(n[18] > 0 && n[18] < n[1]);
    CU_ASSERT_EQUAL(n[20], 2);
    CU_ASSERT_EQUAL(n[24], 2); /* 6 and 36 */

    /* Writes move entries in and out of every filter. */
    struct store_err err = {0};
    char json[512];
    fx.asset[5] = "asset-alpha-1"; /* was Asset-alpha-caps, tp-5 */
    snprintf(fx.tid[5], sizeof(fx.tid[5]), "tp-3");
    sc_f_json(0, fx.tid[5], json, sizeof(json));
    CU_ASSERT_EQUAL(sc_put_json(st, &fx.ks[5].k, fx.tid[5], json), STORE_OK);
    fx.asset[12] = NULL; /* was asset-alpha-1: now a number */
    sc_f_json(4, fx.tid[12], json, sizeof(json));
    CU_ASSERT_EQUAL(sc_put_json(st, &fx.ks[12].k, fx.tid[12], json), STORE_OK);
    CU_ASSERT_EQUAL(store_delete(st, &fx.ks[13].k, NULL, &err), STORE_OK);
    fx.gone[13] = 1;
    CU_ASSERT_EQUAL(sc_f_check(st, &fx, &fs[2], 2), 6);  /* 5 in, 13 out */
    CU_ASSERT_EQUAL(sc_f_check(st, &fx, &fs[5], 3), 10); /* 5 in, 12 out */
    CU_ASSERT_EQUAL(sc_f_check(st, &fx, &fs[20], 1), 1);
    sc_f_check(st, &fx, &fs[10], 4);
    sc_f_check(st, &fx, &fs[12], 1000);
    if (sc_b->reopen) {
        st = sc_reopen(st);
        for (size_t i = 0; i < sizeof(fs) / sizeof(fs[0]); i++)
            sc_f_check(st, &fx, &fs[i], 7);
    }
    store_close(st);
}

static void test_offsets_roundtrip(void)
{
    struct store *st = sc_open();
    struct store_err err = {0};
    struct store_offset *o = NULL;
    size_t n = 99;
    CU_ASSERT_EQUAL(st->ops->load_offsets(st, SC_TOPIC, &o, &n, &err),
                    STORE_OK);
    CU_ASSERT_EQUAL(n, 0);
    free(o);

    struct sc_key a;
    char ja[256];
    sc_key_num(&a, 1);
    int na = sc_entry(ja, sizeof(ja), "tp-1", 1);
    struct store_op put = {STORE_OP_PUT, a.k, "tp-1", ja, (size_t)na};
    struct store_offset o1[] = {{0, 10, -1}, {1, 20, -1}};
    struct store_batch b1 = {.ops = &put,
                             .n_ops = 1,
                             .topic = SC_TOPIC,
                             .offsets = o1,
                             .n_offsets = 2};
    CU_ASSERT_EQUAL(st->ops->apply(st, &b1, &err), STORE_OK);
    /* Offsets only, no ops: e.g. a run of rejected events. */
    struct store_offset o2[] = {{1, 25, -1}, {2, 5, -1}};
    struct store_batch b2 = {.topic = SC_TOPIC, .offsets = o2, .n_offsets = 2};
    CU_ASSERT_EQUAL(st->ops->apply(st, &b2, &err), STORE_OK);
    struct store_offset o3[] = {{0, 7, -1}};
    struct store_batch b3 = {.topic = SC_TOPIC2, .offsets = o3, .n_offsets = 1};
    CU_ASSERT_EQUAL(st->ops->apply(st, &b3, &err), STORE_OK);

    for (int pass = 0; pass < 2; pass++) {
        CU_ASSERT_EQUAL(st->ops->load_offsets(st, SC_TOPIC, &o, &n, &err),
                        STORE_OK);
        CU_ASSERT_EQUAL_FATAL(n, 3);
        qsort(o, n, sizeof(*o), sc_off_cmp);
        CU_ASSERT(o[0].partition == 0 && o[0].next_offset == 10);
        CU_ASSERT(o[1].partition == 1 && o[1].next_offset == 25);
        CU_ASSERT(o[2].partition == 2 && o[2].next_offset == 5);
        free(o);
        CU_ASSERT_EQUAL(st->ops->load_offsets(st, SC_TOPIC2, &o, &n, &err),
                        STORE_OK);
        CU_ASSERT_EQUAL_FATAL(n, 1);
        CU_ASSERT(o[0].partition == 0 && o[0].next_offset == 7);
        free(o);
        CU_ASSERT_EQUAL(
            st->ops->load_offsets(st, "edr.events.other", &o, &n, &err),
            STORE_OK);
        CU_ASSERT_EQUAL(n, 0);
        free(o);
        if (!sc_b->reopen)
            break;
        st = sc_reopen(st);
    }
    store_close(st);
}

/* Loads SC_TOPIC's offset of partition 0 (-1 when none). */
static int64_t sc_p0_offset(struct store *st)
{
    struct store_err err = {0};
    struct store_offset *o = NULL;
    size_t n = 0;
    int64_t got = -1;
    CU_ASSERT_EQUAL(st->ops->load_offsets(st, SC_TOPIC, &o, &n, &err),
                    STORE_OK);
    for (size_t i = 0; i < n; i++)
        if (o[i].partition == 0)
            got = o[i].next_offset;
    free(o);
    return got;
}

/* The offset fence (store.h): a batch starting behind the stored offset
 * of one of its partitions applies nothing and reports STORE_CONFLICT. */
static void test_offset_fence(void)
{
    struct store *st = sc_open();
    struct store_err err = {0};
    struct sc_key a, b;
    char ja[256], jb[256], jc[256];
    sc_key_num(&a, 1);
    sc_key_num(&b, 2);
    int na = sc_entry(ja, sizeof(ja), "tp-1", 1);
    int nb = sc_entry(jb, sizeof(jb), "tp-2", 2);
    int nc = sc_entry(jc, sizeof(jc), "tp-3", 3);

    struct store_op put_a = {STORE_OP_PUT, a.k, "tp-1", ja, (size_t)na};
    struct store_offset o1[] = {{0, 10, 0}};
    struct store_batch b1 = {.ops = &put_a,
                             .n_ops = 1,
                             .topic = SC_TOPIC,
                             .offsets = o1,
                             .n_offsets = 1};
    CU_ASSERT_EQUAL(st->ops->apply(st, &b1, &err), STORE_OK);
    CU_ASSERT_EQUAL(sc_p0_offset(st), 10);

    /* A stale writer: starts at 5, the store is at 10. Its replacement of
     * a, its new b and its partition 1 offset must all stay out. */
    struct store_op stale[2] = {
        {STORE_OP_PUT, a.k, "tp-3", jc, (size_t)nc},
        {STORE_OP_PUT, b.k, "tp-2", jb, (size_t)nb},
    };
    struct store_offset o2[] = {{1, 40, 30}, {0, 12, 5}};
    struct store_batch b2 = {.ops = stale,
                             .n_ops = 2,
                             .topic = SC_TOPIC,
                             .offsets = o2,
                             .n_offsets = 2};
    memset(&err, 0, sizeof(err));
    CU_ASSERT_EQUAL(st->ops->apply(st, &b2, &err), STORE_CONFLICT);
    CU_ASSERT_EQUAL(err.status, STORE_CONFLICT);
    CU_ASSERT_PTR_NOT_NULL(strstr(err.msg, "0"));
    for (int pass = 0; pass < 2; pass++) {
        char *tid = NULL;
        CU_ASSERT_EQUAL(st->ops->get_transfer_id(st, &a.k, &tid, &err),
                        STORE_OK);
        CU_ASSERT_STRING_EQUAL(tid ? tid : "", "tp-1");
        free(tid);
        CU_ASSERT_EQUAL(st->ops->get_transfer_id(st, &b.k, &tid, &err),
                        STORE_NOT_FOUND);
        CU_ASSERT_EQUAL(sc_count(st, NULL), 1);
        CU_ASSERT_EQUAL(sc_p0_offset(st), 10);
        struct store_offset *o = NULL;
        size_t n = 0;
        CU_ASSERT_EQUAL(st->ops->load_offsets(st, SC_TOPIC, &o, &n, &err),
                        STORE_OK);
        CU_ASSERT_EQUAL(n, 1); /* partition 1 was not recorded either */
        for (size_t i = 0; i < n; i++)
            CU_ASSERT_EQUAL(o[i].first_offset, -1);
        free(o);
        if (!sc_b->reopen)
            break;
        st = sc_reopen(st);
    }

    /* Starting exactly where the store is: applies. */
    struct store_offset o3[] = {{0, 15, 10}};
    struct store_batch b3 = {.ops = &stale[1],
                             .n_ops = 1,
                             .topic = SC_TOPIC,
                             .offsets = o3,
                             .n_offsets = 1};
    CU_ASSERT_EQUAL(st->ops->apply(st, &b3, &err), STORE_OK);
    CU_ASSERT_EQUAL(sc_p0_offset(st), 15);
    CU_ASSERT_EQUAL(sc_count(st, NULL), 2);

    /* -1: no fence, even behind the store (offsets only). */
    struct store_offset o4[] = {{0, 3, -1}};
    struct store_batch b4 = {.topic = SC_TOPIC, .offsets = o4, .n_offsets = 1};
    CU_ASSERT_EQUAL(st->ops->apply(st, &b4, &err), STORE_OK);
    CU_ASSERT_EQUAL(sc_p0_offset(st), 3);
    store_close(st);
}

/* A baseline state used by the all-or-nothing tests. */
static void sc_baseline(struct store *st)
{
    /* store_op borrows its strings: keep them alive past the loop. */
    static struct sc_key k[3];
    struct store_err err = {0};
    char json[3][256];
    char tid[3][32];
    struct store_op ops[3];
    for (int i = 0; i < 3; i++) {
        sc_key_num(&k[i], i);
        snprintf(tid[i], sizeof(tid[i]), "tp-base-%d", i);
        int n = sc_entry(json[i], sizeof(json[i]), tid[i], i);
        ops[i] =
            (struct store_op){STORE_OP_PUT, k[i].k, tid[i], json[i], (size_t)n};
    }
    struct store_offset off[] = {{0, 100, -1}, {1, 200, -1}};
    struct store_batch b = {.ops = ops,
                            .n_ops = 3,
                            .topic = SC_TOPIC,
                            .offsets = off,
                            .n_offsets = 2};
    CU_ASSERT_EQUAL(st->ops->apply(st, &b, &err), STORE_OK);
}

/* The batch the fault loop and the invalid test apply on the baseline:
 * a new entry, a replacement, a delete and a conditional delete, with an
 * update of one offset and a new one. */
struct sc_batch {
    struct sc_key k[4];
    char json[3][256];
    struct store_op ops[5];
    struct store_offset off[2];
    struct store_batch b;
};

static void sc_batch_make(struct sc_batch *sb)
{
    sc_key_num(&sb->k[0], 10); /* new */
    sc_key_num(&sb->k[1], 1);  /* replaces base 1 */
    sc_key_num(&sb->k[2], 2);  /* deletes base 2 */
    sc_key_num(&sb->k[3], 0);  /* conditional delete of base 0: matches */
    int n0 = sc_entry(sb->json[0], sizeof(sb->json[0]), "tp-new-10", 10);
    int n1 = sc_entry(sb->json[1], sizeof(sb->json[1]), "tp-new-1", 11);
    int n2 = sc_entry(sb->json[2], sizeof(sb->json[2]), "tp-new-11", 12);
    sb->ops[0] = (struct store_op){STORE_OP_PUT, sb->k[0].k, "tp-new-10",
                                   sb->json[0], (size_t)n0};
    sb->ops[1] = (struct store_op){STORE_OP_PUT, sb->k[1].k, "tp-new-1",
                                   sb->json[1], (size_t)n1};
    sb->ops[2] = (struct store_op){STORE_OP_DELETE, sb->k[2].k, NULL, NULL, 0};
    sb->ops[3] =
        (struct store_op){STORE_OP_DELETE, sb->k[3].k, "tp-base-0", NULL, 0};
    /* Replaces the new entry again within the same batch. */
    sb->ops[4] = (struct store_op){STORE_OP_PUT, sb->k[0].k, "tp-new-11",
                                   sb->json[2], (size_t)n2};
    sb->off[0] = (struct store_offset){1, 260, -1};
    sb->off[1] = (struct store_offset){2, 5, -1};
    sb->b = (struct store_batch){.ops = sb->ops,
                                 .n_ops = 5,
                                 .topic = SC_TOPIC,
                                 .offsets = sb->off,
                                 .n_offsets = 2};
}

static void test_batch_invalid_midway(void)
{
    struct store *st = sc_open();
    struct store_err err = {0};
    struct sc_snap before, after;
    static struct sc_batch sb;
    sc_baseline(st);
    sc_snap_take(st, &before);
    CU_ASSERT_EQUAL(before.count, 3);

    sc_batch_make(&sb);
    /* Each invalid op in the middle (position 2) sinks the whole batch. */
    for (int bad = 0; bad < 3; bad++) {
        struct store_op ops[5];
        memcpy(ops, sb.ops, sizeof(ops));
        ops[2] = sb.ops[0];
        if (bad == 0)
            ops[2].transfer_id = "";
        else if (bad == 1)
            ops[2].transfer_id = NULL;
        else
            ops[2].entry_json = NULL, ops[2].entry_len = 0;
        struct store_batch b = sb.b;
        b.ops = ops;
        err = (struct store_err){0};
        CU_ASSERT_EQUAL(st->ops->apply(st, &b, &err), STORE_INVALID);
        CU_ASSERT_EQUAL(err.status, STORE_INVALID);
        CU_ASSERT(err.msg[0] != '\0');
        sc_snap_take(st, &after);
        CU_ASSERT(sc_snap_equal(&before, &after));
        sc_snap_free(&after);
    }
    /* Offsets without a topic. */
    struct store_batch b = sb.b;
    b.topic = NULL;
    CU_ASSERT_EQUAL(st->ops->apply(st, &b, &err), STORE_INVALID);
    sc_snap_take(st, &after);
    CU_ASSERT(sc_snap_equal(&before, &after));
    sc_snap_free(&after);
    if (sc_b->reopen) {
        st = sc_reopen(st);
        sc_snap_take(st, &after);
        CU_ASSERT(sc_snap_equal(&before, &after));
        sc_snap_free(&after);
    }
    /* The valid batch still applies, and again is idempotent. */
    CU_ASSERT_EQUAL(st->ops->apply(st, &sb.b, &err), STORE_OK);
    CU_ASSERT_EQUAL(sc_count(st, NULL), 2);
    sc_snap_take(st, &after);
    CU_ASSERT_EQUAL(st->ops->apply(st, &sb.b, &err), STORE_OK);
    struct sc_snap again;
    sc_snap_take(st, &again);
    CU_ASSERT(sc_snap_equal(&after, &again));
    sc_snap_free(&again);
    sc_snap_free(&after);
    sc_snap_free(&before);
    store_close(st);
}

static void test_reopen_sees_everything(void)
{
    if (!sc_b->reopen) {
        CU_PASS("backend is not durable");
        return;
    }
    struct store *st = sc_open();
    struct store_err err = {0};
    uint64_t removed = 0;
    for (int i = 0; i < 300; i++) {
        struct sc_key k;
        char tid[32];
        sc_key_num(&k, i);
        snprintf(tid, sizeof(tid), "tp-%d", i);
        CU_ASSERT_EQUAL(sc_put(st, &k.k, tid, i), STORE_OK);
    }
    for (int i = 0; i < 300; i += 5) {
        struct sc_key k;
        sc_key_num(&k, i);
        CU_ASSERT_EQUAL(store_delete(st, &k.k, NULL, &err), STORE_OK);
    }
    CU_ASSERT_EQUAL(st->ops->clear_party(st, "BPNL00000000001", &removed, &err),
                    STORE_OK);
    CU_ASSERT_EQUAL(removed, 8); /* 10..19 less 10 and 15 */
    sc_baseline(st);
    struct sc_snap before, after;
    sc_snap_take(st, &before);
    CU_ASSERT_EQUAL(before.count, 300 - 60 - 8 + 1); /* base 0 is back */
    st = sc_reopen(st);
    sc_snap_take(st, &after);
    CU_ASSERT(sc_snap_equal(&before, &after));
    sc_snap_free(&after);
    /* And a second reopen after more writes on the reopened store. */
    struct sc_key k;
    sc_key_num(&k, 5000);
    CU_ASSERT_EQUAL(sc_put(st, &k.k, "tp-5000", 1), STORE_OK);
    sc_snap_free(&before);
    sc_snap_take(st, &before);
    st = sc_reopen(st);
    sc_snap_take(st, &after);
    CU_ASSERT(sc_snap_equal(&before, &after));
    sc_snap_free(&after);
    sc_snap_free(&before);
    store_close(st);
}

/* ---- concurrent readers ---------------------------------------------- */

#define SC_CONC_KEYS 64
#define SC_CONC_ROUNDS 150

struct sc_conc {
    struct store *st;
    struct sc_key keys[SC_CONC_KEYS];
    atomic_int stop;
    int bad;    /* inconsistent results seen by readers */
    long reads; /* successful gets */
    int errors; /* reader calls that failed */
};

/* Every entry is self-describing: its JSON names its transfer id, and the
 * transfer id names its key, so a torn read would show. */
static void *sc_reader(void *arg)
{
    struct sc_conc *c = arg;
    unsigned seed = 12345;
    while (!atomic_load(&c->stop)) {
        seed = seed * 1103515245u + 12345u;
        int i = (int)((seed >> 8) % SC_CONC_KEYS);
        struct store_record r = {0};
        struct store_err err = {0};
        int rc = c->st->ops->get(c->st, &c->keys[i].k, &r, &err);
        if (rc == STORE_OK) {
            char want[64];
            snprintf(want, sizeof(want), "tp-%d-", i);
            char quoted[96];
            snprintf(quoted, sizeof(quoted), "\"transferProcessId\":\"%s\"",
                     r.transfer_id);
            if (strncmp(r.transfer_id, want, strlen(want)) != 0 ||
                !strstr(r.entry_json, quoted) ||
                strcmp(r.counter_party_id, c->keys[i].cpid) != 0 ||
                strlen(r.entry_json) != r.entry_len)
                __atomic_add_fetch(&c->bad, 1, __ATOMIC_RELAXED);
            __atomic_add_fetch(&c->reads, 1, __ATOMIC_RELAXED);
        } else if (rc != STORE_NOT_FOUND) {
            __atomic_add_fetch(&c->errors, 1, __ATOMIC_RELAXED);
        }
        store_record_clear(&r);
        uint64_t n = 0;
        if (c->st->ops->count(c->st, NULL, &n, &err) != STORE_OK ||
            n > SC_CONC_KEYS)
            __atomic_add_fetch(&c->bad, 1, __ATOMIC_RELAXED);
        if ((seed & 63) == 0) {
            struct store_list l = {0};
            if (c->st->ops->list(c->st, NULL, NULL, 20, &l, &err) != STORE_OK)
                __atomic_add_fetch(&c->errors, 1, __ATOMIC_RELAXED);
            store_list_clear(&l);
        }
    }
    return NULL;
}

static void test_concurrent_readers(void)
{
    static struct sc_conc c;
    pthread_t th[2];
    memset(&c, 0, sizeof(c));
    c.st = sc_open();
    for (int i = 0; i < SC_CONC_KEYS; i++)
        sc_key_num(&c.keys[i], i);
    for (int t = 0; t < 2; t++)
        CU_ASSERT_EQUAL_FATAL(pthread_create(&th[t], NULL, sc_reader, &c), 0);
    /* At least SC_CONC_ROUNDS batches, and on until the readers have
     * really overlapped with the writes (a fast store would otherwise be
     * done before the threads start), for at most 10 s: under valgrind,
     * which runs one thread at a time, readers get few turns and each
     * file-store batch is an fsync. */
    struct timespec t0, t1;
    clock_gettime(CLOCK_MONOTONIC, &t0);
    for (int round = 0;; round++) {
        clock_gettime(CLOCK_MONOTONIC, &t1);
        if (round >= SC_CONC_ROUNDS &&
            (__atomic_load_n(&c.reads, __ATOMIC_RELAXED) >= 500 ||
             t1.tv_sec - t0.tv_sec >= 10))
            break;
        struct store_op ops[SC_CONC_KEYS / 4];
        char tids[SC_CONC_KEYS / 4][48];
        char json[SC_CONC_KEYS / 4][256];
        struct store_err err = {0};
        for (int j = 0; j < SC_CONC_KEYS / 4; j++) {
            int i = (round * 7 + j * 5) % SC_CONC_KEYS;
            snprintf(tids[j], sizeof(tids[j]), "tp-%d-%d", i, round);
            int n = sc_entry(json[j], sizeof(json[j]), tids[j], round);
            if ((round + j) % 5 == 0)
                ops[j] = (struct store_op){STORE_OP_DELETE, c.keys[i].k, NULL,
                                           NULL, 0};
            else
                ops[j] = (struct store_op){STORE_OP_PUT, c.keys[i].k, tids[j],
                                           json[j], (size_t)n};
        }
        struct store_offset off = {0, round + 1, -1};
        struct store_batch b = {.ops = ops,
                                .n_ops = SC_CONC_KEYS / 4,
                                .topic = SC_TOPIC,
                                .offsets = &off,
                                .n_offsets = 1};
        CU_ASSERT_EQUAL(c.st->ops->apply(c.st, &b, &err), STORE_OK);
        sched_yield(); /* let the readers in between batches */
    }
    atomic_store(&c.stop, 1);
    for (int t = 0; t < 2; t++)
        pthread_join(th[t], NULL);
    CU_ASSERT_EQUAL(c.bad, 0);
    CU_ASSERT_EQUAL(c.errors, 0);
    CU_ASSERT(c.reads > 0);
    store_close(c.st);
}

/* ---- fault loop ------------------------------------------------------- */

/* Whether the fault armed at nth has fired (fault.h keeps no such flag):
 * if it has not, its countdown is still 1..nth, so one of nth further
 * calls would fail. Disarms. */
static int sc_fault_fired(enum fault_point p, unsigned nth)
{
    int fired = 1;
    for (unsigned i = 0; i < nth; i++)
        if (fault_hit(p)) {
            fired = 0;
            break;
        }
    fault_disarm_all();
    return fired;
}

static const char *sc_fault_name(enum fault_point p)
{
    static const char *names[] = {"write", "fsync", "rename", "query"};
    return (unsigned)p < FAULT_POINTS ? names[p] : "?";
}

static void test_fault_loop(void)
{
    static struct sc_batch sb;
    struct sc_snap before, after, got;
    struct store_err err = {0};
    if (sc_b->n_faults == 0) {
        CU_PASS("backend has no fault points");
        return;
    }
    sc_batch_make(&sb);

    /* Reference run: the exact before and after states. */
    struct store *st = sc_open();
    sc_baseline(st);
    sc_snap_take(st, &before);
    CU_ASSERT_EQUAL_FATAL(st->ops->apply(st, &sb.b, &err), STORE_OK);
    sc_snap_take(st, &after);
    store_close(st);
    CU_ASSERT_FATAL(!sc_snap_equal(&before, &after));

    for (size_t f = 0; f < sc_b->n_faults; f++) {
        enum fault_point p = sc_b->faults[f];
        unsigned nth;
        int completed = 0, failures = 0;
        for (nth = 1; nth <= 2000 && !completed; nth++) {
            st = sc_open();
            sc_baseline(st);
            err = (struct store_err){0};
            fault_arm(p, nth, 0);
            int rc = st->ops->apply(st, &sb.b, &err);
            completed = !sc_fault_fired(p, nth);
            failures += rc != STORE_OK;
            if (rc != STORE_OK && rc != STORE_TRANSIENT)
                fprintf(stderr, "fault %s #%u: status %d: %s\n",
                        sc_fault_name(p), nth, rc, err.msg);
            CU_ASSERT(rc == STORE_OK || rc == STORE_TRANSIENT);
            sc_snap_take(st, &got);
            /* Exactly before on failure, exactly after on success. */
            int ok = sc_snap_equal(&got, rc == STORE_OK ? &after : &before);
            if (!ok)
                fprintf(stderr,
                        "fault %s #%u: state is neither before nor "
                        "after (rc %d)\n",
                        sc_fault_name(p), nth, rc);
            CU_ASSERT(ok);
            sc_snap_free(&got);
            if (sc_b->reopen) {
                st = sc_reopen(st);
                sc_snap_take(st, &got);
                ok = rc == STORE_OK ? sc_snap_equal(&got, &after)
                                    : (sc_snap_equal(&got, &before) ||
                                       sc_snap_equal(&got, &after));
                if (!ok)
                    fprintf(stderr,
                            "fault %s #%u: reopened state is "
                            "neither before nor after\n",
                            sc_fault_name(p), nth);
                CU_ASSERT(ok);
                sc_snap_free(&got);
            }
            /* The store still works: the retry lands exactly after. */
            CU_ASSERT_EQUAL(st->ops->apply(st, &sb.b, &err), STORE_OK);
            sc_snap_take(st, &got);
            CU_ASSERT(sc_snap_equal(&got, &after));
            sc_snap_free(&got);
            if (sc_b->reopen) {
                st = sc_reopen(st);
                sc_snap_take(st, &got);
                CU_ASSERT(sc_snap_equal(&got, &after));
                sc_snap_free(&got);
            }
            store_close(st);
        }
        fault_disarm_all();
        fprintf(stderr, "  fault %s: %u calls, %d failed batches\n",
                sc_fault_name(p), nth - 2, failures);
        CU_ASSERT(completed);

        /* A fault that stays (a full disk): every try fails cleanly until
         * it clears. */
        st = sc_open();
        sc_baseline(st);
        fault_arm(p, 1, 1);
        int rc1 = st->ops->apply(st, &sb.b, &err);
        int rc2 = rc1 == STORE_OK ? STORE_OK : st->ops->apply(st, &sb.b, &err);
        fault_disarm_all();
        sc_snap_take(st, &got);
        CU_ASSERT(sc_snap_equal(&got, rc2 == STORE_OK ? &after : &before));
        sc_snap_free(&got);
        CU_ASSERT_EQUAL(st->ops->apply(st, &sb.b, &err), STORE_OK);
        sc_snap_take(st, &got);
        CU_ASSERT(sc_snap_equal(&got, &after));
        sc_snap_free(&got);
        store_close(st);
    }
    sc_snap_free(&before);
    sc_snap_free(&after);
}

/* ---- registration ----------------------------------------------------- */

#define SC_INIT(i)                                                             \
    static int sc_init_##i(void)                                               \
    {                                                                          \
        sc_b = sc_registered[i];                                               \
        return 0;                                                              \
    }
SC_INIT(0)
SC_INIT(1)
SC_INIT(2)
SC_INIT(3)
SC_INIT(4)
SC_INIT(5)
SC_INIT(6)
SC_INIT(7)

static int (*const sc_inits[SC_MAX_BACKENDS])(void) = {
    sc_init_0, sc_init_1, sc_init_2, sc_init_3,
    sc_init_4, sc_init_5, sc_init_6, sc_init_7};

void store_contract_register(const struct store_contract_backend *b)
{
    static size_t n_registered;
    char name[128];
    if (n_registered == SC_MAX_BACKENDS) {
        fprintf(stderr, "store_contract: too many backends\n");
        return;
    }
    sc_registered[n_registered] = b;
    snprintf(name, sizeof(name), "contract/%s", b->name);
    CU_pSuite s = CU_add_suite(name, sc_inits[n_registered], NULL);
    n_registered++;
    CU_add_test(s, "put and get", test_put_get);
    CU_add_test(s, "a replaced entry is counted once",
                test_replace_counted_once);
    CU_add_test(s, "second delete reports not found", test_delete_twice);
    CU_add_test(s, "delete only if the transfer id matches",
                test_delete_if_transfer_id);
    CU_add_test(s, "batch reports what changed", test_batch_changed);
    CU_add_test(s, "substring count and clear (BPN and DID)",
                test_substring_count_clear);
    CU_add_test(s, "keeps @type/@context/providerId as given",
                test_keeps_given_json);
    CU_add_test(s, "returned records are copies", test_returned_copy);
    CU_add_test(s, "unicode and 1 KiB keys", test_unicode_and_long_keys);
    CU_add_test(s, "list paging in connection-key order", test_list_paging);
    CU_add_test(s, "get_by_transfer_id: smallest key, delete, renew",
                test_get_by_transfer_id);
    CU_add_test(s, "filters: party, transfer id, asset id, prefix",
                test_filters);
    CU_add_test(s, "offsets round-trip per topic", test_offsets_roundtrip);
    CU_add_test(s, "offset fence: a stale batch applies nothing",
                test_offset_fence);
    CU_add_test(s, "invalid op midway leaves no trace",
                test_batch_invalid_midway);
    CU_add_test(s, "reopen sees everything", test_reopen_sees_everything);
    CU_add_test(s, "concurrent readers during writes", test_concurrent_readers);
    CU_add_test(s, "fault loop: exactly before or after", test_fault_loop);
}

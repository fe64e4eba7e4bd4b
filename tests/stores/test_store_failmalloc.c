/* test_store_failmalloc.c: allocation failures in the stores' writes and
 * in the file store's open, SQLite's test_malloc way.
 *
 * For N = 1, 2, 3 ... the Nth allocation fails (tests/support/failmalloc.h)
 * until an operation completes without a failure firing. Each time the
 * call must either succeed or return STORE_TRANSIENT ("out of memory" is
 * worth a retry, never an abort), and the whole state (every entry with
 * its JSON, every offset) must be exactly the state before the call or
 * exactly the state after it. For the file store the durable state is
 * checked as well: reopened, it equals what memory holds. */
#include "stores/file_store.h"
#include "stores/mem_table.h"
#include "stores/store.h"
#include "tests/support/cunit_main.h"
#include "tests/support/failmalloc.h"

#include <CUnit/CUnit.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#define FM_TOPIC "edr.events"
#define FM_BASE 818 /* a batch of 4 puts grows the 1024-slot table */
#define FM_PARTS 16 /* fills the first offsets array: one more grows it */

static char fm_root[256];

/* ---- state dumps ------------------------------------------------------ */

/* A growable string, built with failmalloc disarmed. */
struct fm_str {
    char *p;
    size_t len, cap;
};

static void fm_add(struct fm_str *s, const char *p, size_t n)
{
    if (s->len + n + 1 > s->cap) {
        size_t cap = s->cap ? s->cap * 2 : 4096;
        while (cap < s->len + n + 1)
            cap *= 2;
        s->p = realloc(s->p, cap);
        CU_ASSERT_PTR_NOT_NULL_FATAL(s->p);
        s->cap = cap;
    }
    memcpy(s->p + s->len, p, n);
    s->len += n;
    s->p[s->len] = '\0';
}

static void fm_adds(struct fm_str *s, const char *p)
{
    fm_add(s, p, strlen(p));
}

static int fm_cmp_str(const void *a, const void *b)
{
    return strcmp(*(char *const *)a, *(char *const *)b);
}

/* Joins lines sorted, so dumps compare independently of table order. */
static char *fm_join_sorted(char **lines, size_t n)
{
    struct fm_str s = {0};
    qsort(lines, n, sizeof(*lines), fm_cmp_str);
    fm_adds(&s, "");
    for (size_t i = 0; i < n; i++) {
        fm_adds(&s, lines[i]);
        fm_adds(&s, "\n");
        free(lines[i]);
    }
    free(lines);
    return s.p;
}

static char *fm_line(const char *const f[7])
{
    struct fm_str s = {0};
    for (int i = 0; i < 7; i++) {
        fm_adds(&s, f[i] ? f[i] : "(none)");
        fm_adds(&s, i < 6 ? "|" : "");
    }
    return s.p;
}

/* Everything a mem_table holds, read directly (writer's view). */
static char *fm_dump_table(struct mem_table *t)
{
    char **lines = calloc(t->count + t->n_offs + 1, sizeof(*lines));
    size_t n = 0, seen = 0;
    CU_ASSERT_PTR_NOT_NULL_FATAL(lines);
    for (size_t i = 0; i < t->cap; i++) {
        const struct mem_entry *e = t->slots[i].e;
        if (!e)
            continue;
        const char *f[7];
        for (int j = 0; j < 6; j++)
            f[j] = mem_entry_field(e, j);
        f[6] = e->has_asset ? mem_entry_field(e, 6) : NULL;
        lines[n++] = fm_line(f);
        seen++;
        /* Reachable by lookup (the probe chains survived). */
        struct edr_key k = {f[0], f[1], f[2], f[3]};
        struct store_record r;
        struct store_err err;
        CU_ASSERT_EQUAL(mem_table_get(t, &k, &r, &err), STORE_OK);
        store_record_clear(&r);
    }
    CU_ASSERT_EQUAL(seen, t->count);
    /* The ordered and secondary indexes hold exactly the table. */
    CU_ASSERT_EQUAL(mem_table_index_check(t, NULL), 0);
    CU_ASSERT_EQUAL(mem_table_sec_check(t), 0);
    for (size_t i = 0; i < t->n_offs; i++) {
        char buf[256];
        snprintf(buf, sizeof(buf), "~%s/%d=%lld", t->offs[i].topic,
                 (int)t->offs[i].partition, (long long)t->offs[i].next_offset);
        lines[n++] = strdup(buf);
    }
    return fm_join_sorted(lines, n);
}

/* Everything a store holds, through its interface: every list page, each
 * entry's JSON by get(), count(), the offsets of FM_TOPIC. */
static char *fm_dump_store(struct store *st)
{
    struct store_err err;
    char **lines = NULL;
    size_t n = 0, cap = 0;
    char *cursor = NULL;
    for (;;) {
        struct store_list l;
        CU_ASSERT_EQUAL_FATAL(st->ops->list(st, NULL, cursor, 1000, &l, &err),
                              STORE_OK);
        for (size_t i = 0; i < l.n_items; i++) {
            struct store_record *it = &l.items[i], r;
            struct edr_key k = {it->counter_party_id, it->counter_party_address,
                                it->query_checksum, it->policy_checksum};
            CU_ASSERT_EQUAL_FATAL(st->ops->get(st, &k, &r, &err), STORE_OK);
            const char *f[7] = {r.counter_party_id, r.counter_party_address,
                                r.query_checksum,   r.policy_checksum,
                                r.transfer_id,      r.entry_json,
                                it->asset_id};
            /* The transfer id and asset id indexes find it too. */
            struct store_record br;
            CU_ASSERT_EQUAL(
                st->ops->get_by_transfer_id(st, r.transfer_id, &br, &err),
                STORE_OK);
            CU_ASSERT(br.query_checksum &&
                      !strcmp(br.query_checksum, r.query_checksum));
            store_record_clear(&br);
            uint64_t na = 0;
            struct store_filter af = {.transfer_id = r.transfer_id,
                                      .asset_id = it->asset_id};
            CU_ASSERT_EQUAL(st->ops->count(st, &af, &na, &err), STORE_OK);
            CU_ASSERT_EQUAL(na, 1);
            if (n == cap) {
                cap = cap ? cap * 2 : 1024;
                lines = realloc(lines, (cap + 1) * sizeof(*lines));
                CU_ASSERT_PTR_NOT_NULL_FATAL(lines);
            }
            lines[n++] = fm_line(f);
            store_record_clear(&r);
        }
        free(cursor);
        cursor = l.next_cursor ? strdup(l.next_cursor) : NULL;
        store_list_clear(&l);
        if (!cursor)
            break;
    }
    uint64_t cnt = 0;
    CU_ASSERT_EQUAL(st->ops->count(st, NULL, &cnt, &err), STORE_OK);
    CU_ASSERT_EQUAL(cnt, n);
    struct store_offset *o = NULL;
    size_t no = 0;
    CU_ASSERT_EQUAL_FATAL(st->ops->load_offsets(st, FM_TOPIC, &o, &no, &err),
                          STORE_OK);
    lines = realloc(lines, (n + no + 1) * sizeof(*lines));
    CU_ASSERT_PTR_NOT_NULL_FATAL(lines);
    for (size_t i = 0; i < no; i++) {
        char buf[128];
        snprintf(buf, sizeof(buf), "~" FM_TOPIC "/%d=%lld", (int)o[i].partition,
                 (long long)o[i].next_offset);
        lines[n++] = strdup(buf);
    }
    free(o);
    return fm_join_sorted(lines, n);
}

/* ---- batches ---------------------------------------------------------- */

struct fm_keybuf {
    char cpid[32], q[32], tid[48], json[96];
};

static void fm_key(struct fm_keybuf *kb, int i, int version,
                   struct store_op *op)
{
    snprintf(kb->cpid, sizeof(kb->cpid), "BPNL%012d", i % 7);
    snprintf(kb->q, sizeof(kb->q), "q%d", i);
    snprintf(kb->tid, sizeof(kb->tid), "tp-%d-%d", i, version);
    /* Every entry has an assetId: the asset index grows with the table. */
    int n = snprintf(kb->json, sizeof(kb->json),
                     "{\"transferProcessId\":\"%s\",\"assetId\":\"a-%d\","
                     "\"v\":%d}",
                     kb->tid, (i + version) % 13, version);
    op->key =
        (struct edr_key){kb->cpid, "https://p.example.com/dsp", kb->q, "pol"};
    op->transfer_id = kb->tid;
    op->entry_json = kb->json;
    op->entry_len = (size_t)n;
}

/* The batch under test: 2 new puts, 2 replacements (4 puts: the table
 * grows), a delete, a conditional delete that does not match, a delete
 * of nothing, and offsets for one known and one new partition (the
 * offsets array grows and a topic is copied). */
static struct fm_keybuf fm_kb[8];
static struct store_op fm_ops[8];
static struct store_offset fm_offs[2];

static void fm_op(int n, int i, int version, enum store_op_kind kind)
{
    fm_key(&fm_kb[n], i, version, &fm_ops[n]);
    fm_ops[n].kind = kind;
}

static struct store_batch fm_big_batch(void)
{
    fm_op(0, FM_BASE + 1, 1, STORE_OP_PUT);
    fm_op(1, FM_BASE + 2, 1, STORE_OP_PUT);
    fm_op(2, 3, 2, STORE_OP_PUT);
    fm_op(3, 4, 2, STORE_OP_PUT);
    fm_op(4, 5, 1, STORE_OP_DELETE);
    fm_ops[4].transfer_id = NULL;
    fm_op(5, 6, 9, STORE_OP_DELETE);            /* tid tp-6-9: no match, kept */
    fm_op(6, FM_BASE + 50, 1, STORE_OP_DELETE); /* absent */
    fm_offs[0] = (struct store_offset){3, 5000, -1};
    fm_offs[1] = (struct store_offset){FM_PARTS, 7, -1};
    return (struct store_batch){.ops = fm_ops,
                                .n_ops = 7,
                                .topic = FM_TOPIC,
                                .offsets = fm_offs,
                                .n_offsets = 2};
}

/* A small batch (inline prep arrays): one replacement, one new put. */
static struct store_batch fm_small_batch(void)
{
    fm_op(0, 7, 3, STORE_OP_PUT);
    fm_op(1, FM_BASE + 9, 1, STORE_OP_PUT);
    fm_offs[0] = (struct store_offset){2, 6000, -1};
    return (struct store_batch){.ops = fm_ops,
                                .n_ops = 2,
                                .topic = FM_TOPIC,
                                .offsets = fm_offs,
                                .n_offsets = 1};
}

/* The starting state: FM_BASE entries, FM_PARTS partitions. */
static void fm_fill(struct store *st, struct mem_table *t)
{
    struct store_err err;
    for (int i = 0; i < FM_BASE; i++) {
        struct fm_keybuf kb;
        struct store_op op = {.kind = STORE_OP_PUT};
        fm_key(&kb, i, 1, &op);
        struct store_offset o = {i % FM_PARTS, i + 1, -1};
        struct store_batch b = {&op, 1, FM_TOPIC, &o, 1, 0};
        if (st) {
            CU_ASSERT_EQUAL_FATAL(st->ops->apply(st, &b, &err), STORE_OK);
        } else {
            struct mem_prep p;
            CU_ASSERT_EQUAL_FATAL(mem_table_prepare(t, &b, &p, &err), STORE_OK);
            mem_table_commit(t, &b, &p);
        }
    }
}

/* ---- the loops -------------------------------------------------------- */

/* Result of one run of an operation under allocation failure. */
static void fm_check(int rc, const struct store_err *err, const char *now,
                     const char *before, const char *after, unsigned long n)
{
    if (rc == STORE_OK) {
        CU_ASSERT_STRING_EQUAL(now, after);
    } else {
        CU_ASSERT_EQUAL(rc, STORE_TRANSIENT);
        CU_ASSERT_EQUAL(err->status, STORE_TRANSIENT);
        CU_ASSERT_STRING_EQUAL(now, before);
    }
    if (rc != STORE_OK && rc != STORE_TRANSIENT)
        fprintf(stderr, "N=%lu: rc %d (%s)\n", n, rc, err->msg);
}

static unsigned long fm_covered[8]; /* how many N each loop ran, for logs */

static void fm_report(const char *what, unsigned long n)
{
    printf("\n    %s: N = 1..%lu", what, n);
}

static void test_mem_table_apply(void)
{
    for (int which = 0; which < 2; which++) {
        struct mem_table t;
        struct mem_prep p;
        struct store_err err = {0};
        /* The reference run, without failures. */
        CU_ASSERT_EQUAL_FATAL(mem_table_init(&t, &err), STORE_OK);
        fm_fill(NULL, &t);
        char *before = fm_dump_table(&t);
        struct store_batch b = which ? fm_small_batch() : fm_big_batch();
        CU_ASSERT_EQUAL_FATAL(mem_table_prepare(&t, &b, &p, &err), STORE_OK);
        mem_table_commit(&t, &b, &p);
        char *after = fm_dump_table(&t);
        mem_table_destroy(&t);
        CU_ASSERT_STRING_NOT_EQUAL(after, before);

        unsigned long n;
        for (n = 1;; n++) {
            CU_ASSERT_EQUAL_FATAL(mem_table_init(&t, &err), STORE_OK);
            fm_fill(NULL, &t);
            b = which ? fm_small_batch() : fm_big_batch();
            failmalloc_arm(n);
            int rc = mem_table_prepare(&t, &b, &p, &err);
            if (rc == STORE_OK)
                mem_table_commit(&t, &b, &p);
            unsigned long fired = failmalloc_fired();
            failmalloc_disarm();
            char *now = fm_dump_table(&t);
            fm_check(rc, &err, now, before, after, n);
            free(now);
            mem_table_destroy(&t);
            if (!fired)
                break;
        }
        CU_ASSERT(n > 3); /* the batch allocates: the loop really ran */
        fm_covered[which] = n;
        fm_report(which ? "mem_table small batch" : "mem_table big batch", n);
        free(before);
        free(after);
    }
}

/* The memory store's apply and clear_party, on one store for all N. */
static void test_mem_store_apply(void)
{
    struct store_err err = {0};
    struct store *ref = mem_store_open(&err);
    CU_ASSERT_PTR_NOT_NULL_FATAL(ref);
    fm_fill(ref, NULL);
    char *before = fm_dump_store(ref);
    struct store_batch b = fm_big_batch();
    CU_ASSERT_EQUAL_FATAL(ref->ops->apply(ref, &b, &err), STORE_OK);
    char *after = fm_dump_store(ref);
    store_close(ref);

    unsigned long n;
    for (n = 1;; n++) {
        struct store *st = mem_store_open(&err);
        CU_ASSERT_PTR_NOT_NULL_FATAL(st);
        fm_fill(st, NULL);
        b = fm_big_batch();
        failmalloc_arm(n);
        int rc = st->ops->apply(st, &b, &err);
        unsigned long fired = failmalloc_fired();
        failmalloc_disarm();
        char *now = fm_dump_store(st);
        fm_check(rc, &err, now, before, after, n);
        free(now);
        store_close(st);
        if (!fired)
            break;
    }
    CU_ASSERT(n > 3);
    fm_report("mem_store apply", n);

    /* clear_party of one party (of 7) on the filled store. */
    ref = mem_store_open(&err);
    fm_fill(ref, NULL);
    char *cbefore = fm_dump_store(ref);
    uint64_t removed = 0, want = 0;
    CU_ASSERT_EQUAL(ref->ops->clear_party(ref, "BPNL000000000003", &want, &err),
                    STORE_OK);
    char *cafter = fm_dump_store(ref);
    store_close(ref);
    CU_ASSERT(want > 0);
    for (n = 1;; n++) {
        struct store *st = mem_store_open(&err);
        fm_fill(st, NULL);
        failmalloc_arm(n);
        int rc = st->ops->clear_party(st, "BPNL000000000003", &removed, &err);
        unsigned long fired = failmalloc_fired();
        failmalloc_disarm();
        char *now = fm_dump_store(st);
        fm_check(rc, &err, now, cbefore, cafter, n);
        CU_ASSERT_EQUAL(removed, rc == STORE_OK ? want : 0);
        free(now);
        store_close(st);
        if (!fired)
            break;
    }
    fm_report("mem_store clear_party", n);
    free(before);
    free(after);
    free(cbefore);
    free(cafter);
}

/* ---- file store ------------------------------------------------------- */

static void fm_path(char *out, size_t n, const char *name)
{
    snprintf(out, n, "%s/%s", fm_root, name);
}

static void fm_wipe(const char *path)
{
    const char *suffix[] = {"", ".journal", ".tmp", ".lock"};
    char p[600];
    for (int i = 0; i < 4; i++) {
        snprintf(p, sizeof(p), "%s%s", path, suffix[i]);
        unlink(p);
    }
}

static struct store *fm_open(const char *path)
{
    struct store_err err = {0};
    struct store *st = file_store_open(path, &err);
    if (!st)
        fprintf(stderr, "file_store_open(%s): %s\n", path, err.msg);
    return st;
}

/* The whole contents of a file, or NULL when it does not exist. */
static char *fm_slurp(const char *p, size_t *len)
{
    FILE *f = fopen(p, "rb");
    struct fm_str s = {0};
    char buf[65536];
    size_t r;
    *len = 0;
    if (!f)
        return NULL;
    fm_adds(&s, "");
    while ((r = fread(buf, 1, sizeof(buf), f)) > 0)
        fm_add(&s, buf, r);
    fclose(f);
    *len = s.len;
    return s.p;
}

/* Copies the store files of from (snapshot, journal) to to. */
static void fm_copy_store(const char *from, const char *to)
{
    const char *suffix[] = {"", ".journal"};
    for (int i = 0; i < 2; i++) {
        char src[600], dst[600];
        size_t len;
        snprintf(src, sizeof(src), "%s%s", from, suffix[i]);
        snprintf(dst, sizeof(dst), "%s%s", to, suffix[i]);
        char *data = fm_slurp(src, &len);
        CU_ASSERT_PTR_NOT_NULL_FATAL(data);
        FILE *f = fopen(dst, "wb");
        CU_ASSERT_PTR_NOT_NULL_FATAL(f);
        CU_ASSERT(fwrite(data, 1, len, f) == len);
        fclose(f);
        free(data);
    }
}

/* The operation a file store loop runs: 0 apply, 1 clear_party. */
static int fm_file_op(struct store *st, int op, struct store_err *err)
{
    uint64_t removed = 0;
    if (op == 0) {
        struct store_batch b = fm_big_batch();
        return st->ops->apply(st, &b, err);
    }
    int rc = st->ops->clear_party(st, "BPNL000000000002", &removed, err);
    CU_ASSERT(rc == STORE_OK ? removed > 0 : removed == 0);
    return rc;
}

/* apply and clear_party, with compaction after every write (so its
 * allocations fail too) or at the default threshold. Every N starts from
 * a copy of the same files; after the call, what memory holds must be
 * the before- or after-state, and reopening must find the same. */
static void test_file_store_apply(void)
{
    char tmpl[512], path[512];
    struct store_err err = {0};
    fm_path(tmpl, sizeof(tmpl), "template.json");
    fm_path(path, sizeof(path), "apply.json");
    fm_wipe(tmpl);
    struct store *st = fm_open(tmpl);
    CU_ASSERT_PTR_NOT_NULL_FATAL(st);
    fm_fill(st, NULL);
    store_close(st);
    static const char *names[2][2] = {
        {"file_store apply", "file_store clear_party"},
        {"file_store apply (compact every write)",
         "file_store clear_party (compact every write)"}};
    for (int compact = 0; compact < 2; compact++) {
        for (int op = 0; op < 2; op++) {
            /* Reference run. */
            fm_wipe(path);
            fm_copy_store(tmpl, path);
            st = fm_open(path);
            CU_ASSERT_PTR_NOT_NULL_FATAL(st);
            char *before = fm_dump_store(st);
            CU_ASSERT_EQUAL_FATAL(fm_file_op(st, op, &err), STORE_OK);
            char *after = fm_dump_store(st);
            store_close(st);
            CU_ASSERT_STRING_NOT_EQUAL(after, before);
            unsigned long n;
            for (n = 1;; n++) {
                fm_wipe(path);
                fm_copy_store(tmpl, path);
                st = fm_open(path);
                CU_ASSERT_PTR_NOT_NULL_FATAL(st);
                if (compact)
                    file_store_set_compact_min(st, 0);
                failmalloc_arm(n);
                int rc = fm_file_op(st, op, &err);
                unsigned long fired = failmalloc_fired();
                failmalloc_disarm();
                char *now = fm_dump_store(st);
                fm_check(rc, &err, now, before, after, n);
                /* What is on disk is what memory holds, and the store
                 * still takes writes. */
                store_close(st);
                st = fm_open(path);
                CU_ASSERT_PTR_NOT_NULL_FATAL(st);
                char *disk = fm_dump_store(st);
                CU_ASSERT_STRING_EQUAL(disk, now);
                free(disk);
                free(now);
                store_close(st);
                if (!fired)
                    break;
            }
            CU_ASSERT(n > 2);
            fm_report(names[compact][op], n);
            fm_covered[2 + compact * 2 + op] = n;
            free(before);
            free(after);
        }
    }
}

/* open() of a store with a snapshot and a journal (puts, deletes,
 * offsets, a clear_party record): fails cleanly or loads everything, and
 * a failed open changes no file. */
static void test_file_store_open(void)
{
    char path[512], jpath[600];
    struct store_err err = {0};
    fm_path(path, sizeof(path), "open.json");
    snprintf(jpath, sizeof(jpath), "%s.journal", path);
    fm_wipe(path);
    struct store *st = fm_open(path);
    CU_ASSERT_PTR_NOT_NULL_FATAL(st);
    fm_fill(st, NULL);
    file_store_set_compact_min(st, 0);
    struct store_batch b = fm_small_batch();
    CU_ASSERT_EQUAL_FATAL(st->ops->apply(st, &b, &err), STORE_OK);
    file_store_set_compact_min(st, FILE_STORE_COMPACT_MIN_DEFAULT);
    b = fm_big_batch();
    CU_ASSERT_EQUAL_FATAL(st->ops->apply(st, &b, &err), STORE_OK);
    uint64_t removed;
    CU_ASSERT_EQUAL_FATAL(
        st->ops->clear_party(st, "BPNL000000000001", &removed, &err), STORE_OK);
    b = fm_small_batch();
    CU_ASSERT_EQUAL_FATAL(st->ops->apply(st, &b, &err), STORE_OK);
    char *want = fm_dump_store(st);
    store_close(st);
    size_t snap_len, j_len, len;
    char *snap = fm_slurp(path, &snap_len), *journal = fm_slurp(jpath, &j_len);
    CU_ASSERT_PTR_NOT_NULL_FATAL(snap);
    CU_ASSERT_PTR_NOT_NULL_FATAL(journal);
    CU_ASSERT(j_len > 0);

    unsigned long n;
    for (n = 1;; n++) {
        failmalloc_arm(n);
        st = file_store_open(path, &err);
        unsigned long fired = failmalloc_fired();
        failmalloc_disarm();
        if (st) {
            char *now = fm_dump_store(st);
            CU_ASSERT_STRING_EQUAL(now, want);
            free(now);
            store_close(st);
        } else {
            CU_ASSERT_EQUAL(err.status, STORE_TRANSIENT);
            if (err.status != STORE_TRANSIENT)
                fprintf(stderr, "N=%lu: %s\n", n, err.msg);
        }
        char *s2 = fm_slurp(path, &len);
        CU_ASSERT(s2 && len == snap_len && memcmp(s2, snap, len) == 0);
        free(s2);
        s2 = fm_slurp(jpath, &len);
        CU_ASSERT(s2 && len == j_len && memcmp(s2, journal, len) == 0);
        free(s2);
        if (!fired)
            break;
    }
    CU_ASSERT(n > 3);
    fm_report("file_store open", n);
    fm_covered[6] = n;
    free(snap);
    free(journal);
    free(want);
}

static void register_failmalloc(void)
{
    CU_pSuite s = CU_add_suite("store_failmalloc", NULL, NULL);
    CU_add_test(s, "mem_table prepare/commit: Nth allocation fails",
                test_mem_table_apply);
    CU_add_test(s, "mem_store apply and clear_party: Nth allocation fails",
                test_mem_store_apply);
    CU_add_test(s, "file_store apply and clear_party: Nth allocation fails",
                test_file_store_apply);
    CU_add_test(s, "file_store open: Nth allocation fails, files unchanged",
                test_file_store_open);
}

int main(void)
{
    static const cunit_register_fn regs[] = {register_failmalloc, NULL};
    snprintf(fm_root, sizeof(fm_root), "/tmp/edr-failmalloc-test-XXXXXX");
    if (!mkdtemp(fm_root)) {
        perror("mkdtemp");
        return 1;
    }
    int rc = cunit_main(regs);
    char cmd[300];
    snprintf(cmd, sizeof(cmd), "rm -rf '%s'", fm_root);
    if (system(cmd) != 0)
        fprintf(stderr, "could not remove %s\n", fm_root);
    return rc;
}

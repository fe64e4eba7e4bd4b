/* test_file_store.c: the store contract suite against the file store
 * (twice: default compaction, and compaction after every write so the
 * fault loop also fails snapshot writes, fsyncs and renames), plus what
 * only the file store promises: torn journal tails, corrupt snapshots,
 * the lock, file modes, compaction, and a SIGKILL crash test. */
#define _GNU_SOURCE /* nftw flags */
#include "stores/file_store.h"
#include "stores/store.h"
#include "tests/stores/store_contract.h"
#include "tests/support/cunit_main.h"

#include <CUnit/CUnit.h>
#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

static char tf_root[256]; /* per-run temporary folder */

static int tf_rm_one(const char *p, const struct stat *sb, int flag,
                     struct FTW *ftw)
{
    (void)sb, (void)flag, (void)ftw;
    return remove(p);
}

static void tf_rm_rf(const char *dir)
{
    nftw(dir, tf_rm_one, 16, FTW_DEPTH | FTW_PHYS);
}

static void tf_path(char *out, size_t size, const char *name)
{
    snprintf(out, size, "%s/%s", tf_root, name);
}

/* Removes the store files at path (a fresh store). */
static void tf_wipe(const char *path)
{
    const char *suffix[] = {"", ".journal", ".tmp", ".lock"};
    char p[512];
    for (int i = 0; i < 4; i++) {
        snprintf(p, sizeof(p), "%s%s", path, suffix[i]);
        unlink(p);
    }
}

static struct store *tf_open(const char *path)
{
    struct store_err err = {0};
    struct store *st = file_store_open(path, &err);
    if (!st)
        fprintf(stderr, "file_store_open(%s): %s\n", path, err.msg);
    return st;
}

/* ---- contract backends ----------------------------------------------- */

struct tf_ctx {
    const char *name;
    uint64_t compact_min; /* 0: after every write */
    int set;
};

static struct store *tf_reopen(void *ctx)
{
    struct tf_ctx *c = ctx;
    char path[512];
    tf_path(path, sizeof(path), c->name);
    struct store *st = tf_open(path);
    if (st && c->set)
        file_store_set_compact_min(st, c->compact_min);
    return st;
}

static struct store *tf_open_fresh(void *ctx)
{
    struct tf_ctx *c = ctx;
    char path[512];
    tf_path(path, sizeof(path), c->name);
    tf_wipe(path);
    return tf_reopen(ctx);
}

static const enum fault_point tf_faults[] = {FAULT_WRITE, FAULT_FSYNC,
                                             FAULT_RENAME};
static struct tf_ctx tf_ctx_default = {"contract.json", 0, 0};
static struct tf_ctx tf_ctx_compact = {"contract-compact.json", 0, 1};

static const struct store_contract_backend tf_backend_default = {
    .name = "file",
    .open_fresh = tf_open_fresh,
    .reopen = tf_reopen,
    .ctx = &tf_ctx_default,
    .faults = tf_faults,
    .n_faults = 3,
};

static const struct store_contract_backend tf_backend_compact = {
    .name = "file-compact-every-write",
    .open_fresh = tf_open_fresh,
    .reopen = tf_reopen,
    .ctx = &tf_ctx_compact,
    .faults = tf_faults,
    .n_faults = 3,
};

/* ---- helpers ---------------------------------------------------------- */

static int tf_put(struct store *st, int i, int version)
{
    char cpid[32], q[32], tid[48], json[128];
    struct store_err err = {0};
    snprintf(cpid, sizeof(cpid), "BPNL%012d", i);
    snprintf(q, sizeof(q), "q%d", i);
    snprintf(tid, sizeof(tid), "tp-%d-%d", i, version);
    int n = snprintf(json, sizeof(json),
                     "{\"transferProcessId\":\"%s\",\"v\":%d}", tid, version);
    struct edr_key k = {cpid, "https://p.example.com/dsp", q, "pol"};
    return store_put(st, &k, tid, json, (size_t)n, &err);
}

/* Transfer id at key i, or "" when absent. */
static void tf_tid(struct store *st, int i, char *out, size_t size)
{
    char cpid[32], q[32], *tid = NULL;
    struct store_err err = {0};
    snprintf(cpid, sizeof(cpid), "BPNL%012d", i);
    snprintf(q, sizeof(q), "q%d", i);
    struct edr_key k = {cpid, "https://p.example.com/dsp", q, "pol"};
    out[0] = '\0';
    if (st->ops->get_transfer_id(st, &k, &tid, &err) == STORE_OK)
        snprintf(out, size, "%s", tid);
    free(tid);
}

static uint64_t tf_count(struct store *st)
{
    uint64_t n = 0;
    struct store_err err = {0};
    st->ops->count(st, NULL, &n, &err);
    return n;
}

static off_t tf_size(const char *p)
{
    struct stat sb;
    return stat(p, &sb) == 0 ? sb.st_size : -1;
}

static void tf_append(const char *p, const char *data, size_t n)
{
    int fd = open(p, O_WRONLY | O_APPEND);
    CU_ASSERT_FATAL(fd >= 0);
    CU_ASSERT(write(fd, data, n) == (ssize_t)n);
    close(fd);
}

/* ---- tests ------------------------------------------------------------ */

static void test_torn_tail(void)
{
    char path[512], jpath[600], tid[64];
    tf_path(path, sizeof(path), "torn.json");
    snprintf(jpath, sizeof(jpath), "%s.journal", path);
    tf_wipe(path);
    struct store *st = tf_open(path);
    CU_ASSERT_PTR_NOT_NULL_FATAL(st);
    for (int i = 0; i < 10; i++)
        CU_ASSERT_EQUAL(tf_put(st, i, 1), STORE_OK);
    store_close(st);
    off_t good = tf_size(jpath);
    CU_ASSERT(good > 0);

    /* Three kinds of torn append: a partial header, a header whose payload
     * never made it, and a full-length frame with garbage (CRC fails). */
    const char *tails[] = {"0000", "00000400 12345678\n{\"seq\":11,\"op",
                           "00000005 00000000\n{xyz}\n"};
    for (int t = 0; t < 3; t++) {
        tf_append(jpath, tails[t], strlen(tails[t]));
        st = tf_open(path);
        CU_ASSERT_PTR_NOT_NULL_FATAL(st);
        CU_ASSERT_EQUAL(tf_count(st), 10 + (uint64_t)t);
        CU_ASSERT_EQUAL(tf_size(jpath), good); /* cut off at open */
        CU_ASSERT_EQUAL(tf_put(st, 100 + t, 1), STORE_OK);
        store_close(st);
        good = tf_size(jpath);
        st = tf_open(path);
        CU_ASSERT_PTR_NOT_NULL_FATAL(st);
        CU_ASSERT_EQUAL(tf_count(st), 11 + (uint64_t)t);
        tf_tid(st, 100 + t, tid, sizeof(tid));
        CU_ASSERT_STRING_EQUAL(tid, t == 0   ? "tp-100-1"
                                    : t == 1 ? "tp-101-1"
                                             : "tp-102-1");
        store_close(st);
    }
}

static void test_corrupt_journal_middle(void)
{
    char path[512], jpath[600];
    struct store_err err = {0};
    tf_path(path, sizeof(path), "midcorrupt.json");
    snprintf(jpath, sizeof(jpath), "%s.journal", path);
    tf_wipe(path);
    struct store *st = tf_open(path);
    CU_ASSERT_PTR_NOT_NULL_FATAL(st);
    for (int i = 0; i < 3; i++)
        CU_ASSERT_EQUAL(tf_put(st, i, 1), STORE_OK);
    store_close(st);
    /* Flip a byte in the first record's payload: later records exist, so
     * this is not a torn tail and must not be silently dropped. */
    int fd = open(jpath, O_RDWR);
    CU_ASSERT_FATAL(fd >= 0);
    char c;
    CU_ASSERT(pread(fd, &c, 1, 30) == 1);
    c ^= 0x01;
    CU_ASSERT(pwrite(fd, &c, 1, 30) == 1);
    close(fd);
    st = file_store_open(path, &err);
    CU_ASSERT_PTR_NULL(st);
    CU_ASSERT_EQUAL(err.status, STORE_FATAL);
    CU_ASSERT(strstr(err.msg, "corrupt") != NULL);
    store_close(st);
}

static void test_corrupt_snapshot(void)
{
    char path[512];
    tf_path(path, sizeof(path), "badsnap.json");
    for (int kind = 0; kind < 4; kind++) {
        struct store_err err = {0};
        tf_wipe(path);
        struct store *st = tf_open(path);
        CU_ASSERT_PTR_NOT_NULL_FATAL(st);
        file_store_set_compact_min(st, 0);
        for (int i = 0; i < 5; i++)
            CU_ASSERT_EQUAL(tf_put(st, i, 1), STORE_OK);
        store_close(st);
        off_t size = tf_size(path);
        CU_ASSERT_FATAL(size > 100);
        if (kind == 0) { /* a flipped bit inside an entry */
            int fd = open(path, O_RDWR);
            char c;
            CU_ASSERT(pread(fd, &c, 1, size / 2) == 1);
            c ^= 0x04;
            CU_ASSERT(pwrite(fd, &c, 1, size / 2) == 1);
            close(fd);
        } else if (kind == 1) { /* cut in half */
            CU_ASSERT(truncate(path, size / 2) == 0);
        } else if (kind == 2) { /* emptied */
            CU_ASSERT(truncate(path, 0) == 0);
        } else { /* valid JSON, but not ours */
            FILE *f = fopen(path, "w");
            fputs("{}\n", f);
            fclose(f);
        }
        st = file_store_open(path, &err);
        CU_ASSERT_PTR_NULL(st);
        CU_ASSERT_EQUAL(err.status, STORE_FATAL);
        CU_ASSERT(strstr(err.msg, "corrupt") != NULL);
        CU_ASSERT(strstr(err.msg, path) != NULL);
        if (kind == 0)
            fprintf(stderr, "  (message: %s)\n", err.msg);
        store_close(st);
    }
}

/* File scope, so the forked child's copy is still reachable when it exits
 * (valgrind would call the stack-only copy lost). */
static struct store *volatile lock_test_store;

static void test_lock(void)
{
    char path[512];
    struct store_err err = {0};
    tf_path(path, sizeof(path), "locked.json");
    tf_wipe(path);
    struct store *st = lock_test_store = tf_open(path);
    CU_ASSERT_PTR_NOT_NULL_FATAL(st);
    CU_ASSERT_EQUAL(tf_put(st, 1, 1), STORE_OK);
    /* Another process. */
    pid_t pid = fork();
    CU_ASSERT_FATAL(pid >= 0);
    if (pid == 0) {
        struct store_err e2 = {0};
        struct store *other = file_store_open(path, &e2);
        _exit(other == NULL && e2.status == STORE_FATAL &&
                      strstr(e2.msg, "in use by another process")
                  ? 0
                  : 1);
    }
    int status = 0;
    waitpid(pid, &status, 0);
    CU_ASSERT(WIFEXITED(status) && WEXITSTATUS(status) == 0);
    /* The same process opening it twice is refused as well. */
    struct store *again = file_store_open(path, &err);
    CU_ASSERT_PTR_NULL(again);
    CU_ASSERT_EQUAL(err.status, STORE_FATAL);
    CU_ASSERT(strstr(err.msg, "in use") != NULL);
    store_close(again);
    store_close(st);
    /* Released on close. */
    st = tf_open(path);
    CU_ASSERT_PTR_NOT_NULL(st);
    CU_ASSERT_EQUAL(tf_count(st), 1);
    store_close(st);
}

static void test_modes_and_folder(void)
{
    char path[600], sub[512], p[700];
    struct stat sb;
    tf_path(sub, sizeof(sub), "new/nested");
    snprintf(path, sizeof(path), "%s/store.json", sub);
    mode_t old = umask(0);
    struct store *st = tf_open(path);
    umask(old);
    CU_ASSERT_PTR_NOT_NULL_FATAL(st);
    CU_ASSERT_EQUAL(tf_put(st, 1, 1), STORE_OK);
    CU_ASSERT_EQUAL(stat(sub, &sb), 0);
    CU_ASSERT_EQUAL(sb.st_mode & 0777, 0700);
    tf_path(p, sizeof(p), "new");
    CU_ASSERT_EQUAL(stat(p, &sb), 0);
    CU_ASSERT_EQUAL(sb.st_mode & 0777, 0700);
    const char *suffix[] = {"", ".journal", ".lock"};
    for (int i = 0; i < 3; i++) {
        snprintf(p, sizeof(p), "%s%s", path, suffix[i]);
        CU_ASSERT_EQUAL(stat(p, &sb), 0);
        CU_ASSERT_EQUAL(sb.st_mode & 0777, 0600);
    }
    /* The snapshot is a JSON document of ours from the first open on. */
    FILE *f = fopen(path, "r");
    char head[64] = "";
    CU_ASSERT_PTR_NOT_NULL_FATAL(f);
    CU_ASSERT_PTR_NOT_NULL(fgets(head, sizeof(head), f));
    fclose(f);
    CU_ASSERT(strncmp(head, "{\"format\":\"edr-file-store\"", 26) == 0);
    store_close(st);

    /* A bare file name (no folder) works: the SDK's never saved. */
    char cwd[512];
    CU_ASSERT_PTR_NOT_NULL_FATAL(getcwd(cwd, sizeof(cwd)));
    CU_ASSERT_EQUAL_FATAL(chdir(sub), 0);
    st = tf_open("bare.json");
    CU_ASSERT_PTR_NOT_NULL(st);
    if (st) {
        CU_ASSERT_EQUAL(tf_put(st, 2, 1), STORE_OK);
        store_close(st);
        st = tf_open("bare.json");
        CU_ASSERT_PTR_NOT_NULL(st);
        if (st)
            CU_ASSERT_EQUAL(tf_count(st), 1);
        store_close(st);
    }
    CU_ASSERT_EQUAL(chdir(cwd), 0);
}

static void test_not_json_rejected(void)
{
    char path[512];
    struct store_err err = {0};
    tf_path(path, sizeof(path), "notjson.json");
    tf_wipe(path);
    struct store *st = tf_open(path);
    CU_ASSERT_PTR_NOT_NULL_FATAL(st);
    struct edr_key k = {"a", "b", "c", "d"};
    const char *bad[] = {"{\"a\":", "[1]", "{\"a\":1} x", "{\"a\":tru}",
                         "{\"a\":\"\x01\"}"};
    for (int i = 0; i < 5; i++)
        CU_ASSERT_EQUAL(store_put(st, &k, "tp", bad[i], strlen(bad[i]), &err),
                        STORE_INVALID);
    CU_ASSERT_EQUAL(tf_count(st), 0);
    const char *good = " {\"a\":{\"b\":[1,-2.5e3,\"\\u00e9\\n\",null]}} ";
    CU_ASSERT_EQUAL(store_put(st, &k, "tp", good, strlen(good), &err),
                    STORE_OK);
    store_close(st);
}

static void test_compaction(void)
{
    char path[512], jpath[600], tid[64];
    struct file_store_stats s0, s1;
    tf_path(path, sizeof(path), "compact.json");
    snprintf(jpath, sizeof(jpath), "%s.journal", path);
    tf_wipe(path);
    struct store *st = tf_open(path);
    CU_ASSERT_PTR_NOT_NULL_FATAL(st);
    file_store_set_compact_min(st, 16 * 1024);
    file_store_get_stats(st, &s0);
    for (int v = 1; v <= 20; v++)
        for (int i = 0; i < 50; i++)
            CU_ASSERT_EQUAL(tf_put(st, i, v), STORE_OK);
    file_store_get_stats(st, &s1);
    CU_ASSERT(s1.compactions > s0.compactions + 5);
    /* Bounded: the journal never outgrows max(snapshot, 16 KiB) by more
     * than one record. */
    CU_ASSERT(s1.journal_bytes < 20 * 1024 + s1.snapshot_bytes);
    CU_ASSERT_EQUAL(s1.seq, 1000);
    fprintf(stderr, "  (%llu compactions, journal %llu B, snapshot %llu B)\n",
            (unsigned long long)s1.compactions,
            (unsigned long long)s1.journal_bytes,
            (unsigned long long)s1.snapshot_bytes);
    store_close(st);
    st = tf_open(path);
    CU_ASSERT_PTR_NOT_NULL_FATAL(st);
    CU_ASSERT_EQUAL(tf_count(st), 50);
    for (int i = 0; i < 50; i++) {
        char want[64];
        tf_tid(st, i, tid, sizeof(tid));
        snprintf(want, sizeof(want), "tp-%d-20", i);
        CU_ASSERT_STRING_EQUAL(tid, want);
    }
    file_store_get_stats(st, &s0);
    CU_ASSERT_EQUAL(s0.seq, 1000);
    store_close(st);
}

/* ---- crash test ------------------------------------------------------- */

#define CR_KEYS 60
#define CR_TOPIC "edr.events.crash"

/* What batch b does to key slots, so parent and child agree. */
static void cr_batch_ops(int b, int puts[12], int *n_puts, int *del)
{
    *n_puts = 12;
    for (int j = 0; j < 12; j++)
        puts[j] = (b * 7 + j * 5) % CR_KEYS;
    *del = b % 3 == 0 ? (b * 11 + 1) % CR_KEYS : -1;
}

static void cr_model(int upto, int ver[CR_KEYS])
{
    memset(ver, 0, CR_KEYS * sizeof(int));
    for (int b = 1; b <= upto; b++) {
        int puts[12], n, del;
        cr_batch_ops(b, puts, &n, &del);
        for (int j = 0; j < n; j++)
            ver[puts[j]] = b;
        if (del >= 0)
            ver[del] = 0;
    }
}

static int cr_apply(struct store *st, int b)
{
    static char cpid[13][32], q[13][32], tid[13][48], json[13][700];
    struct store_op ops[13];
    int puts[12], n, del, k = 0;
    cr_batch_ops(b, puts, &n, &del);
    for (int j = 0; j <= n; j++) {
        int key = j < n ? puts[j] : del;
        if (key < 0)
            break;
        snprintf(cpid[j], sizeof(cpid[j]), "BPNL%012d", key);
        snprintf(q[j], sizeof(q[j]), "q%d", key);
        struct edr_key ek = {cpid[j], "https://p.example.com/dsp", q[j], "pol"};
        if (j < n) {
            snprintf(tid[j], sizeof(tid[j]), "tp-%d-%d", key, b);
            int len = snprintf(json[j], sizeof(json[j]),
                               "{\"transferProcessId\":\"%s\",\"pad\":\"%0500d"
                               "\"}",
                               tid[j], b);
            ops[k++] = (struct store_op){STORE_OP_PUT, ek, tid[j], json[j],
                                         (size_t)len};
        } else {
            ops[k++] = (struct store_op){STORE_OP_DELETE, ek, NULL, NULL, 0};
        }
    }
    struct store_offset off = {0, b, -1};
    struct store_batch batch = {.ops = ops,
                                .n_ops = (size_t)k,
                                .topic = CR_TOPIC,
                                .offsets = &off,
                                .n_offsets = 1};
    struct store_err err = {0};
    return st->ops->apply(st, &batch, &err);
}

static int cr_applied(struct store *st)
{
    struct store_offset *o = NULL;
    size_t n = 0;
    struct store_err err = {0};
    int b = 0;
    if (st->ops->load_offsets(st, CR_TOPIC, &o, &n, &err) == STORE_OK && n)
        b = (int)o[0].next_offset;
    free(o);
    return b;
}

static void cr_child(const char *path, int wfd)
{
    struct store_err err = {0};
    struct store *st = NULL;
    /* The parent may still be closing its handle: retry the lock. */
    for (int i = 0; i < 200 && !st; i++) {
        st = file_store_open(path, &err);
        if (!st)
            usleep(5000);
    }
    if (!st)
        _exit(3);
    file_store_set_compact_min(st, 64 * 1024); /* crash mid-compaction too */
    for (int b = cr_applied(st) + 1; b < 1000000; b++) {
        if (cr_apply(st, b) != STORE_OK)
            _exit(4);
        if (write(wfd, &b, sizeof(b)) != (ssize_t)sizeof(b))
            _exit(5);
    }
    _exit(0);
}

static void test_crash(void)
{
    char path[512];
    unsigned seed = (unsigned)time(NULL) ^ (unsigned)getpid();
    tf_path(path, sizeof(path), "crash.json");
    tf_wipe(path);
    fprintf(stderr, "  (crash seed %u)\n", seed);
    int last_applied = 0;
    for (int round = 0; round < 8; round++) {
        int pfd[2];
        CU_ASSERT_FATAL(pipe(pfd) == 0);
        pid_t pid = fork();
        CU_ASSERT_FATAL(pid >= 0);
        if (pid == 0) {
            close(pfd[0]);
            cr_child(path, pfd[1]);
        }
        close(pfd[1]);
        /* Let it get going, then kill it at a random moment. */
        usleep(20000 + (unsigned)(rand_r(&seed) % 150000));
        kill(pid, SIGKILL);
        int status;
        waitpid(pid, &status, 0);
        CU_ASSERT(WIFSIGNALED(status));
        int b, acked = 0;
        while (read(pfd[0], &b, sizeof(b)) == (ssize_t)sizeof(b))
            acked = b;
        close(pfd[0]);

        struct store *st = tf_open(path);
        CU_ASSERT_PTR_NOT_NULL_FATAL(st);
        int applied = cr_applied(st);
        /* Every acknowledged batch survived; the state is exactly the
         * prefix of batches 1..applied. */
        CU_ASSERT(applied >= acked);
        CU_ASSERT(applied >= last_applied);
        int ver[CR_KEYS], want_n = 0, bad = 0;
        cr_model(applied, ver);
        for (int i = 0; i < CR_KEYS; i++) {
            char tid[64], want[64] = "";
            if (ver[i]) {
                snprintf(want, sizeof(want), "tp-%d-%d", i, ver[i]);
                want_n++;
            }
            tf_tid(st, i, tid, sizeof(tid));
            bad += strcmp(tid, want) != 0;
        }
        CU_ASSERT_EQUAL(bad, 0);
        CU_ASSERT_EQUAL(tf_count(st), (uint64_t)want_n);
        fprintf(stderr, "  (round %d: acked %d, recovered %d)\n", round, acked,
                applied);
        last_applied = applied;
        store_close(st);
    }
    CU_ASSERT(last_applied > 0);
}

static void register_file(void)
{
    store_contract_register(&tf_backend_default);
    store_contract_register(&tf_backend_compact);
    CU_pSuite s = CU_add_suite("file_store", NULL, NULL);
    CU_add_test(s, "torn journal tail is discarded", test_torn_tail);
    CU_add_test(s, "corrupt journal middle is fatal",
                test_corrupt_journal_middle);
    CU_add_test(s, "corrupt snapshot is fatal with a clear error",
                test_corrupt_snapshot);
    CU_add_test(s, "a second opener gets a lock error", test_lock);
    CU_add_test(s, "mode 0600, folder created 0700, bare name",
                test_modes_and_folder);
    CU_add_test(s, "entry that is not a JSON object is rejected",
                test_not_json_rejected);
    CU_add_test(s, "compaction happens and survives reopen", test_compaction);
    CU_add_test(s, "SIGKILL at random moments loses no acked batch",
                test_crash);
}

int main(void)
{
    static const cunit_register_fn regs[] = {register_file, NULL};
    snprintf(tf_root, sizeof(tf_root), "/tmp/edr-file-store-test-XXXXXX");
    if (!mkdtemp(tf_root)) {
        perror("mkdtemp");
        return 1;
    }
    int rc = cunit_main(regs);
    tf_rm_rf(tf_root);
    return rc;
}

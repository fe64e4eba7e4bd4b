/* test_file_recovery.c: what the file store does with damaged or
 * unreadable files, and the durability of the folders it creates.
 *
 * - A bad frame in the journal that is not a torn tail (an incomplete
 *   last frame with nothing valid after it) refuses the open with
 *   STORE_FATAL naming the file and byte offset, and leaves the file
 *   byte-identical; a genuine torn tail is cut off at open.
 * - A read() error while loading refuses the open too (never "a shorter
 *   file"). This program interposes read() (it defines the symbol, so the
 *   store's calls resolve here) to fail on one file's inode.
 * - Folders the store creates are fsynced with their parents: fsync() is
 *   interposed the same way to record which folders were synced.
 * - file_store_check_path() rejects a path ending in '/'. */
#define _GNU_SOURCE /* syscall */
#include "stores/file_store.h"
#include "stores/store.h"
#include "tests/support/cunit_main.h"

#include <CUnit/CUnit.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <unistd.h>

static char fr_root[256];

/* ---- interposed system calls ------------------------------------------ */

static dev_t fr_fail_dev;
static ino_t fr_fail_ino; /* 0: read() behaves */
static int fr_reads;      /* reads of that file since armed */

ssize_t read(int fd, void *buf, size_t n)
{
    struct stat sb;
    if (fr_fail_ino && fstat(fd, &sb) == 0 && sb.st_ino == fr_fail_ino &&
        sb.st_dev == fr_fail_dev) {
        /* A short first read, then the disk fails. */
        if (fr_reads++ > 0) {
            errno = EIO;
            return -1;
        }
        if (n > 40)
            n = 40;
    }
    return syscall(SYS_read, fd, buf, n);
}

#define FR_MAX_SYNCED 64
static struct stat fr_synced[FR_MAX_SYNCED]; /* folders fsync()ed */
static int fr_n_synced;

int fsync(int fd)
{
    struct stat sb;
    if (fstat(fd, &sb) == 0 && S_ISDIR(sb.st_mode) &&
        fr_n_synced < FR_MAX_SYNCED)
        fr_synced[fr_n_synced++] = sb;
    return (int)syscall(SYS_fsync, fd);
}

static int fr_was_synced(const char *dir)
{
    struct stat sb;
    if (stat(dir, &sb) != 0)
        return 0;
    for (int i = 0; i < fr_n_synced; i++)
        if (fr_synced[i].st_ino == sb.st_ino &&
            fr_synced[i].st_dev == sb.st_dev)
            return 1;
    return 0;
}

/* ---- helpers ---------------------------------------------------------- */

static void fr_path(char *out, size_t size, const char *name)
{
    snprintf(out, size, "%s/%s", fr_root, name);
}

static void fr_wipe(const char *path)
{
    const char *suffix[] = {"", ".journal", ".tmp", ".lock"};
    char p[600];
    for (int i = 0; i < 4; i++) {
        snprintf(p, sizeof(p), "%s%s", path, suffix[i]);
        unlink(p);
    }
}

static int fr_put(struct store *st, int i)
{
    char cpid[32], q[32], tid[48], json[128];
    struct store_err err = {0};
    snprintf(cpid, sizeof(cpid), "BPNL%012d", i);
    snprintf(q, sizeof(q), "q%d", i);
    snprintf(tid, sizeof(tid), "tp-%d", i);
    int n = snprintf(json, sizeof(json), "{\"transferProcessId\":\"%s\"}", tid);
    struct edr_key k = {cpid, "https://p.example.com/dsp", q, "pol"};
    return store_put(st, &k, tid, json, (size_t)n, &err);
}

static uint64_t fr_count(struct store *st)
{
    uint64_t n = 0;
    struct store_err err;
    CU_ASSERT_EQUAL(st->ops->count(st, NULL, &n, &err), STORE_OK);
    return n;
}

/* A store of three entries, one journal frame each (the snapshot, written
 * at the first open, is empty). *frames gets each frame's offset and the
 * journal's length. */
static void fr_make3(const char *path, long frames[4])
{
    char jpath[600];
    struct stat sb;
    snprintf(jpath, sizeof(jpath), "%s.journal", path);
    fr_wipe(path);
    struct store_err err = {0};
    struct store *st = file_store_open(path, &err);
    CU_ASSERT_PTR_NOT_NULL_FATAL(st);
    for (int i = 0; i < 3; i++) {
        CU_ASSERT_FATAL(stat(jpath, &sb) == 0);
        frames[i] = (long)sb.st_size;
        CU_ASSERT_EQUAL_FATAL(fr_put(st, i), STORE_OK);
    }
    store_close(st);
    CU_ASSERT_FATAL(stat(jpath, &sb) == 0);
    frames[3] = (long)sb.st_size;
    CU_ASSERT_EQUAL(frames[0], 0);
}

static char *fr_slurp(const char *p, size_t *len)
{
    FILE *f = fopen(p, "rb");
    *len = 0;
    if (!f)
        return NULL;
    char *buf = malloc(1 << 20);
    CU_ASSERT_PTR_NOT_NULL_FATAL(buf);
    *len = fread(buf, 1, 1 << 20, f);
    fclose(f);
    return buf;
}

static void fr_poke(const char *p, long off, char c)
{
    int fd = open(p, O_RDWR);
    CU_ASSERT_FATAL(fd >= 0);
    CU_ASSERT(pwrite(fd, &c, 1, off) == 1);
    close(fd);
}

static char fr_peek(const char *p, long off)
{
    char c = 0;
    int fd = open(p, O_RDONLY);
    CU_ASSERT_FATAL(fd >= 0);
    CU_ASSERT(pread(fd, &c, 1, off) == 1);
    close(fd);
    return c;
}

/* ---- tests ------------------------------------------------------------ */

/* One corrupt byte in a frame header, not in the last frame: the open is
 * refused with the file and offset named, and nothing is cut off. */
static void test_corrupt_header_refused(void)
{
    char path[512], jpath[600], want[700];
    long fr[4];
    fr_path(path, sizeof(path), "hdr.json");
    snprintf(jpath, sizeof(jpath), "%s.journal", path);
    /* Which byte of which frame, and what it becomes: a length digit made
     * non-hex, a length digit changed (the frame seems to run past the
     * end, hiding the valid frame after it), a CRC digit changed, the
     * header's newline, in the first or second of three frames. */
    static const struct {
        int frame, at;
        char to;
    } cases[] = {{1, 0, 'x'},  {1, 2, '9'}, {0, 12, 'f'},
                 {1, 17, ' '}, {0, 7, 'Z'}, {1, 8, '0'}};
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        fr_make3(path, fr);
        long off = fr[cases[i].frame] + cases[i].at;
        char to = cases[i].to;
        if (fr_peek(jpath, off) == to)
            to = to == '9' ? '8' : '9';
        fr_poke(jpath, off, to);
        size_t len0, len1;
        char *before = fr_slurp(jpath, &len0);
        struct store_err err = {0};
        struct store *st = file_store_open(path, &err);
        CU_ASSERT_PTR_NULL(st);
        CU_ASSERT_EQUAL(err.status, STORE_FATAL);
        snprintf(want, sizeof(want), "journal %s is corrupt at byte %ld", jpath,
                 fr[cases[i].frame]);
        CU_ASSERT_PTR_NOT_NULL(strstr(err.msg, want));
        if (!strstr(err.msg, want))
            fprintf(stderr, "case %zu: %s\n", i, err.msg);
        store_close(st);
        char *after = fr_slurp(jpath, &len1);
        CU_ASSERT_EQUAL(len1, len0);
        CU_ASSERT(len0 == len1 && memcmp(before, after, len0) == 0);
        free(before);
        free(after);
    }
}

/* A genuine torn tail: the last frame cut short (in its payload, in its
 * header) or followed by zeros; the store opens with every complete
 * frame and cuts the rest off. */
static void test_torn_tail_opens(void)
{
    char path[512], jpath[600];
    long fr[4];
    struct stat sb;
    fr_path(path, sizeof(path), "torn.json");
    snprintf(jpath, sizeof(jpath), "%s.journal", path);
    for (int kind = 0; kind < 3; kind++) {
        fr_make3(path, fr);
        uint64_t want = 3;
        long keep = fr[3];
        if (kind == 0) {
            CU_ASSERT(truncate(jpath, fr[3] - 5) == 0); /* in the payload */
            want = 2, keep = fr[2];
        } else if (kind == 1) {
            CU_ASSERT(truncate(jpath, fr[2] + 10) == 0); /* in the header */
            want = 2, keep = fr[2];
        } else {
            CU_ASSERT(truncate(jpath, fr[3] + 4096) == 0); /* zeros */
        }
        struct store_err err = {0};
        struct store *st = file_store_open(path, &err);
        CU_ASSERT_PTR_NOT_NULL_FATAL(st);
        CU_ASSERT_EQUAL(fr_count(st), want);
        CU_ASSERT(stat(jpath, &sb) == 0 && sb.st_size == keep);
        CU_ASSERT_EQUAL(fr_put(st, 10), STORE_OK);
        store_close(st);
        st = file_store_open(path, &err);
        CU_ASSERT_PTR_NOT_NULL_FATAL(st);
        CU_ASSERT_EQUAL(fr_count(st), want + 1);
        store_close(st);
    }
}

/* A torn-looking last frame with a valid frame after it is corruption
 * too (the old rule only checked what followed a bad checksum). */
static void test_bad_payload_then_valid(void)
{
    char path[512], jpath[600];
    long fr[4];
    fr_path(path, sizeof(path), "payload.json");
    snprintf(jpath, sizeof(jpath), "%s.journal", path);
    fr_make3(path, fr);
    fr_poke(jpath, fr[1] + 30, '#');
    struct store_err err = {0};
    struct store *st = file_store_open(path, &err);
    CU_ASSERT_PTR_NULL(st);
    CU_ASSERT_EQUAL(err.status, STORE_FATAL);
    CU_ASSERT_PTR_NOT_NULL(strstr(err.msg, "corrupt at byte"));
    store_close(st);
}

static void fr_arm_read_failure(const char *p)
{
    struct stat sb;
    CU_ASSERT_FATAL(stat(p, &sb) == 0);
    fr_fail_dev = sb.st_dev;
    fr_fail_ino = sb.st_ino;
    fr_reads = 0;
}

/* read() fails part way through the journal (or the snapshot): the open
 * is refused, nothing is cut off, and once the disk reads again the
 * store opens with everything. */
static void test_read_error_refused(void)
{
    char path[512], jpath[600];
    long fr[4];
    struct stat sb;
    fr_path(path, sizeof(path), "readerr.json");
    snprintf(jpath, sizeof(jpath), "%s.journal", path);
    for (int which = 0; which < 2; which++) {
        fr_make3(path, fr);
        if (which == 1) { /* move the entries into the snapshot */
            struct store_err err = {0};
            struct store *st = file_store_open(path, &err);
            CU_ASSERT_PTR_NOT_NULL_FATAL(st);
            file_store_set_compact_min(st, 0);
            CU_ASSERT_EQUAL(fr_put(st, 3), STORE_OK);
            store_close(st);
        }
        const char *bad = which ? path : jpath;
        size_t len0, len1;
        char *before = fr_slurp(bad, &len0);
        CU_ASSERT(len0 > 40);
        fr_arm_read_failure(bad);
        struct store_err err = {0};
        struct store *st = file_store_open(path, &err);
        int reads = fr_reads;
        fr_fail_ino = 0;
        CU_ASSERT(reads >= 2); /* the failure really fired */
        CU_ASSERT_PTR_NULL(st);
        CU_ASSERT_EQUAL(err.status, STORE_FATAL);
        CU_ASSERT_PTR_NOT_NULL(strstr(err.msg, bad));
        CU_ASSERT_PTR_NOT_NULL(strstr(err.msg, "at byte 40"));
        store_close(st);
        char *after = fr_slurp(bad, &len1);
        CU_ASSERT(len0 == len1 && memcmp(before, after, len0) == 0);
        CU_ASSERT(stat(jpath, &sb) == 0 && sb.st_size == (which ? 0 : fr[3]));
        free(before);
        free(after);
        st = file_store_open(path, &err);
        CU_ASSERT_PTR_NOT_NULL_FATAL(st);
        CU_ASSERT_EQUAL(fr_count(st), which ? 4u : 3u);
        store_close(st);
    }
}

/* Folders created for the store are fsynced, and so is the folder that
 * holds the first one created. */
static void test_created_folders_fsynced(void)
{
    char top[512], mid[600], leaf[700], path[800];
    fr_path(top, sizeof(top), "made");
    snprintf(mid, sizeof(mid), "%s/a", top);
    snprintf(leaf, sizeof(leaf), "%s/b", mid);
    snprintf(path, sizeof(path), "%s/store.json", leaf);
    CU_ASSERT_EQUAL_FATAL(mkdir(top, 0700), 0); /* exists: not created */
    fr_n_synced = 0;
    struct store_err err = {0};
    struct store *st = file_store_open(path, &err);
    CU_ASSERT_PTR_NOT_NULL_FATAL(st);
    CU_ASSERT(fr_was_synced(top));  /* holds the new "a" */
    CU_ASSERT(fr_was_synced(mid));  /* new, holds the new "b" */
    CU_ASSERT(fr_was_synced(leaf)); /* new, holds the store's files */
    store_close(st);
}

static void test_check_path(void)
{
    char msg[200] = "";
    CU_ASSERT_EQUAL(
        file_store_check_path("/var/lib/edr/store.json", msg, sizeof(msg)), 0);
    CU_ASSERT_EQUAL(file_store_check_path("store.json", msg, sizeof(msg)), 0);
    CU_ASSERT_EQUAL(file_store_check_path("/var/lib/edr/", msg, sizeof(msg)),
                    -1);
    CU_ASSERT_PTR_NOT_NULL(strstr(msg, "EDR_FILE_PATH"));
    CU_ASSERT_PTR_NOT_NULL(strstr(msg, "'/'"));
    msg[0] = '\0';
    CU_ASSERT_EQUAL(file_store_check_path("", msg, sizeof(msg)), -1);
    CU_ASSERT_PTR_NOT_NULL(strstr(msg, "EDR_FILE_PATH"));
    CU_ASSERT_EQUAL(file_store_check_path(NULL, NULL, 0), -1);
    CU_ASSERT_EQUAL(file_store_check_path("/", msg, 4), -1); /* truncated */
    CU_ASSERT_EQUAL(strlen(msg), 3);

    /* open() agrees: an invalid setting, not a fatal store error. */
    char dir[512];
    fr_path(dir, sizeof(dir), "folder/");
    struct store_err err = {0};
    struct store *st = file_store_open(dir, &err);
    CU_ASSERT_PTR_NULL(st);
    CU_ASSERT_EQUAL(err.status, STORE_INVALID);
    CU_ASSERT_PTR_NOT_NULL(strstr(err.msg, "EDR_FILE_PATH"));
    store_close(st);
}

static void register_recovery(void)
{
    CU_pSuite s = CU_add_suite("file_recovery", NULL, NULL);
    CU_add_test(s, "corrupt frame header mid-journal: refused, file unchanged",
                test_corrupt_header_refused);
    CU_add_test(s, "torn last frame: opens with every complete frame",
                test_torn_tail_opens);
    CU_add_test(s, "bad payload with a valid frame after it: refused",
                test_bad_payload_then_valid);
    CU_add_test(s, "read() error while loading: refused, file unchanged",
                test_read_error_refused);
    CU_add_test(s, "created folders and their parent are fsynced",
                test_created_folders_fsynced);
    CU_add_test(s, "file_store_check_path: a path ending in '/'",
                test_check_path);
}

int main(void)
{
    static const cunit_register_fn regs[] = {register_recovery, NULL};
    snprintf(fr_root, sizeof(fr_root), "/tmp/edr-file-recovery-XXXXXX");
    if (!mkdtemp(fr_root)) {
        perror("mkdtemp");
        return 1;
    }
    int rc = cunit_main(regs);
    char cmd[300];
    snprintf(cmd, sizeof(cmd), "rm -rf '%s'", fr_root);
    if (system(cmd) != 0)
        fprintf(stderr, "could not remove %s\n", fr_root);
    return rc;
}

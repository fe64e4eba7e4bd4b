/* file_store.c: the "file" store: durable JSON on disk (file_store.h).
 *
 * State lives in a mem_table; every write goes to the journal first
 * (file_journal.c) and is applied in memory only once durable, and the
 * journal is folded into the snapshot (file_snapshot.c) once it outgrows
 * it. This file is the store_ops table, open and close; file_store_int.h
 * lists the other files. */
#include "stores/file_store.h"

#include "stores/file_store_int.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <unistd.h>

static struct file_store *fs_of(struct store *st)
{
    return (struct file_store *)st;
}
/* ---- store_ops ---------------------------------------------------------- */

static int fs_apply(struct store *st, struct store_batch *b,
                    struct store_err *err)
{
    struct file_store *fs = fs_of(st);
    struct mem_prep p;
    mem_table_writer_lock(&fs->t);
    int rc = mem_table_prepare(&fs->t, b, &p, err);
    if (rc != STORE_OK)
        goto out;
    if (b->n_ops == 0 && b->n_offsets == 0) {
        mem_table_commit(&fs->t, b, &p);
        goto out;
    }
    rc = fs_encode_batch(fs, b, err);
    if (rc == STORE_OK)
        rc = fs_journal_append(fs, err);
    if (rc != STORE_OK) {
        mem_table_abort(&p);
        goto out;
    }
    mem_table_commit(&fs->t, b, &p);
    fs_maybe_compact(fs);
out:
    mem_table_writer_unlock(&fs->t);
    return rc;
}

static int fs_clear_party(struct store *st, const char *substring,
                          uint64_t *removed, struct store_err *err)
{
    struct file_store *fs = fs_of(st);
    struct mem_entry **victims = NULL;
    size_t n = 0;
    *removed = 0;
    mem_table_writer_lock(&fs->t);
    int rc = mem_table_clear_collect(&fs->t, substring, &victims, &n, err);
    if (rc != STORE_OK || n == 0)
        goto out;
    fs_frame_begin(fs, fs->seq + 1);
    fj_lit(&fs->buf, ",\"clear_party\":");
    fj_str(&fs->buf, substring, strlen(substring));
    rc = fs_frame_end(fs, err);
    if (rc == STORE_OK)
        rc = fs_journal_append(fs, err);
    if (rc != STORE_OK) {
        free(victims);
        goto out;
    }
    mem_table_clear_commit(&fs->t, victims, n);
    *removed = n;
    fs_maybe_compact(fs);
out:
    mem_table_writer_unlock(&fs->t);
    return rc;
}

static int fs_get(struct store *st, const struct edr_key *k,
                  struct store_record *out, struct store_err *err)
{
    return mem_table_get(&fs_of(st)->t, k, out, err);
}

static int fs_get_transfer_id(struct store *st, const struct edr_key *k,
                              char **out, struct store_err *err)
{
    return mem_table_get_transfer_id(&fs_of(st)->t, k, out, err);
}

static int fs_count(struct store *st, const struct store_filter *f,
                    uint64_t *out, struct store_err *err)
{
    return mem_table_count_filter(&fs_of(st)->t, f, out, NULL, err);
}

static int fs_list(struct store *st, const struct store_filter *f,
                   const char *cursor, size_t limit, struct store_list *out,
                   struct store_err *err)
{
    return mem_table_list_filter(&fs_of(st)->t, f, cursor, limit, out, NULL,
                                 err);
}

static int fs_get_by_transfer_id(struct store *st, const char *transfer_id,
                                 struct store_record *out,
                                 struct store_err *err)
{
    return mem_table_get_by_transfer_id(&fs_of(st)->t, transfer_id, out, err);
}

static int fs_load_offsets(struct store *st, const char *topic,
                           struct store_offset **out, size_t *n,
                           struct store_err *err)
{
    return mem_table_load_offsets(&fs_of(st)->t, topic, out, n, err);
}

static void fs_free(struct file_store *fs)
{
    if (fs->journal_fd >= 0)
        close(fs->journal_fd);
    if (fs->lock_fd >= 0)
        close(fs->lock_fd); /* releases the flock */
    mem_table_destroy(&fs->t);
    fj_buf_free(&fs->buf);
    free(fs->path);
    free(fs->journal_path);
    free(fs->tmp_path);
    free(fs->lock_path);
    free(fs->dir);
    free(fs);
}

/* Every batch is durable when apply() returns, so closing only releases
 * the files; the journal is replayed at the next open. */
static void fs_close(struct store *st)
{
    if (st)
        fs_free(fs_of(st));
}

static const struct store_ops file_store_ops = {
    .name = "file",
    .caps = {.cheap_count = 1},
    .apply = fs_apply,
    .get = fs_get,
    .get_transfer_id = fs_get_transfer_id,
    .count = fs_count,
    .list = fs_list,
    .get_by_transfer_id = fs_get_by_transfer_id,
    .clear_party = fs_clear_party,
    .load_offsets = fs_load_offsets,
    .close = fs_close,
};

static char *fs_cat(const char *a, const char *b)
{
    size_t la = strlen(a), lb = strlen(b);
    char *s = malloc(la + lb + 1);
    if (s) {
        memcpy(s, a, la);
        memcpy(s + la, b, lb + 1);
    }
    return s;
}

#ifdef EDR_TEST_HOOKS
/* EDR_FILE_COMPACT_MIN (bytes, decimal): the fault-tolerance suite
 * (tests/fault/) sets it small so a worker compacts often enough to be
 * killed mid-compaction. Unset or empty keeps the default. */
static int fs_compact_min_from_env(uint64_t *out, struct store_err *err)
{
    const char *v = getenv("EDR_FILE_COMPACT_MIN");
    if (!v || !v[0])
        return STORE_OK;
    char *end;
    errno = 0;
    unsigned long long n = strtoull(v, &end, 10);
    if (errno || *end || v[0] < '0' || v[0] > '9')
        return store_fail(err, STORE_INVALID,
                          "EDR_FILE_COMPACT_MIN: \"%.32s\" is not a byte count",
                          v);
    *out = n;
    return STORE_OK;
}
#endif /* EDR_TEST_HOOKS */

int file_store_check_path(const char *path, char *errbuf, size_t n)
{
    const char *why = NULL;
    if (!path || !path[0])
        why = "is empty";
    else if (path[strlen(path) - 1] == '/')
        why = "ends with '/': it names a folder, not the store's file";
    if (!why)
        return 0;
    if (errbuf && n > 0)
        snprintf(errbuf, n, "EDR_FILE_PATH (--file-path) %s", why);
    return -1;
}

struct store *file_store_open(const char *path, struct store_err *err)
{
    struct file_store *fs = NULL;
    int rc;
    char why[200];
    if (file_store_check_path(path, why, sizeof(why)) != 0) {
        store_fail(err, STORE_INVALID, "%s", why);
        return NULL;
    }
    fs = calloc(1, sizeof(*fs));
    if (!fs)
        goto oom;
    fs->lock_fd = fs->journal_fd = -1;
    fs->base.ops = &file_store_ops;
    fs->compact_min = FILE_STORE_COMPACT_MIN_DEFAULT;
#ifdef EDR_TEST_HOOKS
    if (fs_compact_min_from_env(&fs->compact_min, err) != STORE_OK) {
        free(fs);
        return NULL;
    }
#endif
    fs->compact_always = fs->compact_min == 0;
    if (mem_table_init(&fs->t, err) != STORE_OK) {
        free(fs);
        return NULL;
    }
    fs->path = strdup(path);
    fs->journal_path = fs_cat(path, ".journal");
    fs->tmp_path = fs_cat(path, ".tmp");
    fs->lock_path = fs_cat(path, ".lock");
    const char *slash = strrchr(path, '/');
    fs->dir = slash == path ? strdup("/")
              : slash       ? strndup(path, (size_t)(slash - path))
                            : strdup("."); /* a bare file name */
    if (!fs->path || !fs->journal_path || !fs->tmp_path || !fs->lock_path ||
        !fs->dir)
        goto oom;

    if (fs_mkdirs(fs->dir) != 0) {
        store_fail(err, errno == ENOMEM ? STORE_TRANSIENT : STORE_FATAL,
                   "file store: cannot create folder %s: %s", fs->dir,
                   strerror(errno));
        goto fail;
    }
    fs->lock_fd = open(fs->lock_path, O_RDWR | O_CREAT | O_CLOEXEC, 0600);
    if (fs->lock_fd < 0) {
        store_fail(err, STORE_FATAL, "file store: cannot open %s: %s",
                   fs->lock_path, strerror(errno));
        goto fail;
    }
    if (flock(fs->lock_fd, LOCK_EX | LOCK_NB) != 0) {
        if (errno == EWOULDBLOCK)
            store_fail(err, STORE_FATAL,
                       "file store %s is in use by another process (lock %s "
                       "is held); only one may open it",
                       path, fs->lock_path);
        else
            store_fail(err, STORE_FATAL, "file store: flock %s: %s",
                       fs->lock_path, strerror(errno));
        goto fail;
    }
    unlink(fs->tmp_path); /* a compaction a crash interrupted */

    rc = fs_load_snapshot(fs, err);
    int have_snapshot = rc == STORE_OK;
    if (rc != STORE_OK && rc != STORE_NOT_FOUND)
        goto fail;
    if (fs_load_journal(fs, err) != STORE_OK)
        goto fail;

    struct stat sb;
    int created = stat(fs->journal_path, &sb) != 0;
    fs->journal_fd = open(fs->journal_path, O_RDWR | O_CREAT | O_CLOEXEC, 0600);
    if (fs->journal_fd < 0) {
        store_fail(err, STORE_FATAL, "file store: cannot open %s: %s",
                   fs->journal_path, strerror(errno));
        goto fail;
    }
    if (fs_journal_repair(fs, err) != STORE_OK ||
        (created && fs_fsync_dir(fs->dir) != 0 &&
         store_fail(err, STORE_TRANSIENT, "fsync %s: %s", fs->dir,
                    strerror(errno))))
        goto fail;
    fs->compact_at = fs->compact_min > fs->snapshot_bytes ? fs->compact_min
                                                          : fs->snapshot_bytes;
    /* The store's file exists from the first open on. */
    if (!have_snapshot && fs_compact(fs, err) != STORE_OK)
        goto fail;
    return &fs->base;

oom:
    store_fail(err, STORE_TRANSIENT, "file store: out of memory");
fail:
    if (fs)
        fs_free(fs);
    return NULL;
}

void file_store_set_compact_min(struct store *st, uint64_t bytes)
{
    struct file_store *fs = fs_of(st);
    mem_table_writer_lock(&fs->t);
    fs->compact_always = bytes == 0;
    fs->compact_min = bytes;
    fs->compact_at = bytes > fs->snapshot_bytes ? bytes : fs->snapshot_bytes;
    mem_table_writer_unlock(&fs->t);
}

void file_store_get_stats(struct store *st, struct file_store_stats *out)
{
    struct file_store *fs = fs_of(st);
    mem_table_writer_lock(&fs->t);
    out->seq = fs->seq;
    out->journal_bytes = fs->journal_end;
    out->snapshot_bytes = fs->snapshot_bytes;
    out->compactions = fs->compactions;
    mem_table_writer_unlock(&fs->t);
}

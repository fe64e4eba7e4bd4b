/* file_snapshot.c: the file store's snapshot (file_store_int.h).
 *
 * Compaction (as Redis rewrites its AOF) writes the whole state to
 * PATH.tmp, fsyncs it, renames it over PATH, fsyncs the folder and then
 * empties the journal. The snapshot ends with a CRC-32 of every byte
 * before it; a snapshot that fails it is corruption (STORE_FATAL), never a
 * reason to start empty. Nothing is ever rewritten in place. */
#include "stores/fault.h"
#include "stores/file_store_int.h"

#include "base/hex.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

struct fs_snap_writer {
    int fd;
    struct fj_buf b;
    uint32_t crc;
    uint64_t total;
};

static int fs_snap_flush(struct fs_snap_writer *w)
{
    if (w->b.oom) {
        errno = ENOMEM;
        return -1;
    }
    w->crc = fj_crc32(w->crc, w->b.p, w->b.len);
    if (fs_write_all(w->fd, w->b.p, w->b.len, -1) != 0)
        return -1;
    w->total += w->b.len;
    w->b.len = 0;
    return 0;
}

/* Writes the whole state to PATH.tmp, then renames it over PATH. Writer
 * mutex held (so the table can be read without the read lock). On failure
 * the journal is untouched and the store stays consistent. */
int fs_compact(struct file_store *fs, struct store_err *err)
{
    struct mem_table *t = &fs->t;
    struct fs_snap_writer w = {.fd = -1};
    const char *step = "open";
    int renamed = 0;

    w.fd = open(fs->tmp_path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
    if (w.fd < 0)
        goto fail;
    step = "write";
    fj_lit(&w.b, "{\"format\":\"" FS_FORMAT "\",\"version\":1,\"seq\":");
    fj_u64(&w.b, fs->seq);
    fj_lit(&w.b, ",\n\"offsets\":[");
    for (size_t i = 0; i < t->n_offs; i++) {
        fj_lit(&w.b, i ? ",\n{\"topic\":" : "\n{\"topic\":");
        fj_str(&w.b, t->offs[i].topic, strlen(t->offs[i].topic));
        fj_lit(&w.b, ",\"partition\":");
        fj_i64(&w.b, t->offs[i].partition);
        fj_lit(&w.b, ",\"next_offset\":");
        fj_i64(&w.b, t->offs[i].next_offset);
        fj_lit(&w.b, "}");
    }
    fj_lit(&w.b, "],\n\"entries\":[");
    size_t n = 0;
    for (size_t i = 0; i < t->cap; i++) {
        const struct mem_entry *e = t->slots[i].e;
        if (!e)
            continue;
        struct edr_key k = {mem_entry_field(e, 0), mem_entry_field(e, 1),
                            mem_entry_field(e, 2), mem_entry_field(e, 3)};
        fj_lit(&w.b, n++ ? ",\n{" : "\n{");
        fs_enc_put(&w.b, &k, mem_entry_field(e, 4), e->len[4],
                   mem_entry_field(e, 5), e->json_len);
        fj_lit(&w.b, "}");
        if (w.b.len >= FS_FLUSH_AT && fs_snap_flush(&w) != 0)
            goto fail;
    }
    fj_lit(&w.b, "],\n\"entry_count\":");
    fj_u64(&w.b, n);
    fj_lit(&w.b, ",");
    if (fs_snap_flush(&w) != 0)
        goto fail;
    /* The checksum covers every byte before its own member. */
    char tail[40];
    int tn = snprintf(tail, sizeof(tail), "\"crc32\":\"%08x\"}\n", w.crc);
    if (fs_write_all(w.fd, tail, (size_t)tn, -1) != 0)
        goto fail;
    w.total += (uint64_t)tn;
    step = "fsync";
    if (fs_fsync(w.fd, 0) != 0)
        goto fail;
    close(w.fd);
    w.fd = -1;
    step = "rename";
    if (fault_hit(FAULT_RENAME)) {
        errno = EIO;
        goto fail;
    }
    if (rename(fs->tmp_path, fs->path) != 0)
        goto fail;
    renamed = 1;
    step = "fsync folder";
    if (fs_fsync_dir(fs->dir) != 0)
        goto fail;
    /* The snapshot is durable: the journal's records are all in it. If
     * emptying it fails, its records are skipped by seq at start-up. */
    fs->snapshot_bytes = w.total;
    fs->compactions++;
    if (ftruncate(fs->journal_fd, 0) == 0) {
        fs->journal_end = 0;
        fs->journal_dirty = 0;
        if (fs_fsync(fs->journal_fd, 0) != 0)
            fs->journal_dirty = 1; /* repaired before the next append */
    }
    fs->compact_at = fs->journal_end + (fs->compact_min > fs->snapshot_bytes
                                            ? fs->compact_min
                                            : fs->snapshot_bytes);
    fj_buf_free(&w.b);
    return STORE_OK;

fail:;
    int e = errno;
    if (w.fd >= 0)
        close(w.fd);
    if (!renamed)
        unlink(fs->tmp_path);
    fj_buf_free(&w.b);
    /* Back off: try again once the journal has grown as much again. */
    fs->compact_at = fs->journal_end + (fs->compact_min > fs->snapshot_bytes
                                            ? fs->compact_min
                                            : fs->snapshot_bytes);
    return store_fail(err, STORE_TRANSIENT, "compaction of %s: %s: %s",
                      fs->path, step, strerror(e));
}

void fs_maybe_compact(struct file_store *fs)
{
    if (fs->compact_always || fs->journal_end >= fs->compact_at)
        fs_compact(fs, NULL); /* the batch is durable either way */
}

/* ---- loading ------------------------------------------------------------ */

int fs_load_snapshot(struct file_store *fs, struct store_err *err)
{
    char *buf = NULL, *key, *val;
    size_t len, n_entries = 0, klen;
    int64_t v;
    int have_crc = 0, have_count = 0;
    struct fs_ops o = {0};
    struct store_err aerr = {0}; /* of replaying what was parsed */
    int rc = fs_read_file(fs->path, &buf, &len);
    if (rc == 1)
        return STORE_NOT_FOUND;
    if (rc != 0)
        return store_fail(err, errno == ENOMEM ? STORE_TRANSIENT : STORE_FATAL,
                          "cannot read snapshot %s (at byte %zu): %s", fs->path,
                          len, strerror(errno));
    fs->snapshot_bytes = len;
    struct fj_reader r = {.p = buf, .end = buf + len, .base = buf};
    uint64_t seq = 0;
    /* The file ends with "crc32":"xxxxxxxx"}\n, the checksum of every byte
     * before it; checked first, as parsing decodes strings in place. */
    static const char tag[] = "\"crc32\":\"";
    const size_t tail = sizeof(tag) - 1 + 8 + 3;
    uint64_t want;
    if (len < tail || memcmp(buf + len - tail, tag, sizeof(tag) - 1) != 0 ||
        memcmp(buf + len - 3, "\"}\n", 3) != 0 ||
        edr_hex_parse(buf + len - 11, 8, EDR_HEX_LOWER_ONLY, &want) != 0) {
        r.p = buf + len;
        r.err = "no checksum at its end: truncated?";
        goto corrupt;
    }
    if (fj_crc32(0, buf, len - tail) != want) {
        r.err = "checksum mismatch";
        goto corrupt;
    }
    if (fj_expect(&r, '{') != 0)
        goto corrupt;
    do {
        if (fj_string(&r, &key, &klen) != 0 || fj_expect(&r, ':') != 0)
            goto corrupt;
        if (fs_key_is(key, "format")) {
            if (fj_string(&r, &val, &klen) != 0)
                goto corrupt;
            if (!fs_key_is(val, FS_FORMAT)) {
                r.err = "not an edr-worker file store";
                goto corrupt;
            }
        } else if (fs_key_is(key, "version")) {
            if (fj_int64(&r, &v) != 0)
                goto corrupt;
            if (v != FS_VERSION) {
                r.err = "unsupported version";
                goto corrupt;
            }
        } else if (fs_key_is(key, "seq")) {
            if (fj_int64(&r, &v) != 0)
                goto corrupt;
            seq = (uint64_t)v;
        } else if (fs_key_is(key, "offsets")) {
            if (fj_expect(&r, '[') != 0)
                goto corrupt;
            if (fj_peek(&r) != ']') {
                do {
                    char *topic = NULL;
                    if (fs_parse_offset(&r, &o, &topic) != 0)
                        goto corrupt;
                    if (!topic) {
                        r.err = "offset without topic";
                        goto corrupt;
                    }
                    if (fs_apply_parsed(fs, &o, topic, &aerr) != STORE_OK)
                        goto apply_failed;
                } while (fj_peek(&r) == ',' && (r.p++, 1));
            }
            if (fj_expect(&r, ']') != 0)
                goto corrupt;
        } else if (fs_key_is(key, "entries")) {
            if (fj_expect(&r, '[') != 0)
                goto corrupt;
            if (fj_peek(&r) != ']') {
                do {
                    if (fs_ops_push(&o) != 0) {
                        r.err = fs_oom;
                        goto corrupt;
                    }
                    if (fs_parse_op(&r, &o.v[o.n - 1]) != 0)
                        goto corrupt;
                    n_entries++;
                    if (o.n == 256 && /* bounds the index nodes reserved */
                        fs_apply_parsed(fs, &o, NULL, &aerr) != STORE_OK)
                        goto apply_failed;
                } while (fj_peek(&r) == ',' && (r.p++, 1));
            }
            if (fj_expect(&r, ']') != 0)
                goto corrupt;
            if (o.n && fs_apply_parsed(fs, &o, NULL, &aerr) != STORE_OK)
                goto apply_failed;
        } else if (fs_key_is(key, "entry_count")) {
            if (fj_int64(&r, &v) != 0)
                goto corrupt;
            if ((uint64_t)v != n_entries) {
                r.err = "entry_count does not match the entries";
                goto corrupt;
            }
            have_count = 1;
        } else if (fs_key_is(key, "crc32")) {
            if (fj_string(&r, &val, &klen) != 0)
                goto corrupt;
            have_crc = 1; /* verified above */
        } else {
            const char *s;
            if (fj_value(&r, &s, &klen) != 0)
                goto corrupt;
        }
    } while (fj_peek(&r) == ',' && (r.p++, 1));
    if (fj_expect(&r, '}') != 0)
        goto corrupt;
    if (fj_peek(&r) != -1) {
        r.err = "data after the end";
        goto corrupt;
    }
    if (!have_crc || !have_count) {
        r.err = "incomplete (no entry_count or crc32)";
        goto corrupt;
    }
    fs->seq = seq;
    free(o.v);
    free(o.offs);
    free(buf);
    return STORE_OK;

apply_failed:
    r.err = aerr.status == STORE_TRANSIENT ? fs_oom : aerr.msg;
corrupt:
    if (r.err == fs_oom)
        rc = store_fail(err, STORE_TRANSIENT, "loading snapshot %s: %s",
                        fs->path, fs_oom);
    else
        rc =
            store_fail(err, STORE_FATAL,
                       "snapshot %s is corrupt at byte %zu (%s); refusing to "
                       "start with an empty store: restore it from a backup or "
                       "move it away",
                       fs->path, fj_pos(&r), r.err ? r.err : "invalid");
    free(o.v);
    free(o.offs);
    free(buf);
    return rc;
}

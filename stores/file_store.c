/* file_store.c: the "file" store: durable JSON on disk (file_store.h).
 *
 * State lives in a mem_table; every write is first appended to the journal
 * as one framed record and made durable with one fdatasync, and only then
 * applied in memory, so a failed write leaves memory untouched and a crash
 * loses no acknowledged batch. Frame: "LLLLLLLL CCCCCCCC\n" (hex payload
 * length and CRC-32 of the payload), the JSON payload, "\n". A frame that
 * runs past the end of the file or fails its CRC as the last frame is a
 * torn append: it is discarded and cut off at start-up. A bad frame with
 * more data after it is corruption and stops the store (STORE_FATAL).
 *
 * Compaction (as Redis rewrites its AOF) writes the whole state to
 * PATH.tmp, fsyncs it, renames it over PATH, fsyncs the folder and then
 * empties the journal. Every record carries a sequence number and the
 * snapshot the last one it contains, so records a crash left behind
 * between rename and truncation are recognised and skipped. Nothing is
 * ever rewritten in place.
 *
 * Before every real write, fsync and rename, fault_hit() may make the call
 * fail (ENOSPC / EIO), to test these paths. */
#include "stores/file_store.h"

#include "stores/fault.h"
#include "stores/file_json.h"
#include "stores/mem_table.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <unistd.h>
#ifdef __SSE2__
#include <emmintrin.h>
#endif

#define FS_FRAME_HDR 18 /* "%08x %08x\n" */
#define FS_FLUSH_AT (1u << 20)
#define FS_FORMAT "edr-file-store"
#define FS_VERSION 1

struct file_store {
    struct store base; /* first */
    struct mem_table t;
    char *path, *journal_path, *tmp_path, *lock_path, *dir;
    int lock_fd, journal_fd;
    uint64_t seq;         /* last record applied */
    uint64_t journal_end; /* bytes of valid journal */
    uint64_t snapshot_bytes;
    uint64_t compact_min;
    uint64_t compact_at; /* journal size that triggers the next compaction */
    int compact_always;
    int journal_dirty; /* a failed append may have left bytes past the end */
    uint64_t compactions;
    struct fj_buf buf; /* the record being written, reused */
};

static struct file_store *fs_of(struct store *st)
{
    return (struct file_store *)st;
}

/* ---- small I/O helpers -------------------------------------------------- */

/* Writes all of p (at off, or at the file position when off < 0). */
static int fs_write_all(int fd, const char *p, size_t n, int64_t off)
{
    while (n > 0) {
        ssize_t w;
        if (fault_hit(FAULT_WRITE)) {
            errno = ENOSPC;
            return -1;
        }
        w = off >= 0 ? pwrite(fd, p, n, (off_t)off) : write(fd, p, n);
        if (w < 0) {
            if (errno == EINTR)
                continue;
            return -1;
        }
        p += w;
        n -= (size_t)w;
        if (off >= 0)
            off += w;
    }
    return 0;
}

static int fs_fsync(int fd, int data_only)
{
    if (fault_hit(FAULT_FSYNC)) {
        errno = EIO;
        return -1;
    }
    return data_only ? fdatasync(fd) : fsync(fd);
}

static int fs_fsync_dir(const char *dir)
{
    int fd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (fd < 0)
        return -1;
    int rc = fs_fsync(fd, 0);
    int saved = errno;
    close(fd);
    errno = saved;
    return rc;
}

/* mkdir -p with 0700 for what it creates. */
static int fs_mkdirs(const char *dir)
{
    char *d = strdup(dir);
    if (!d)
        return -1;
    for (char *p = d + 1;; p++) {
        if (*p == '/' || *p == '\0') {
            char c = *p;
            *p = '\0';
            if (mkdir(d, 0700) != 0 && errno != EEXIST) {
                free(d);
                return -1;
            }
            *p = c;
            if (c == '\0')
                break;
        }
    }
    free(d);
    return 0;
}

/* Reads a whole file; 1 when it does not exist. */
static int fs_read_file(const char *path, char **out, size_t *len)
{
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    struct stat sb;
    *out = NULL;
    *len = 0;
    if (fd < 0)
        return errno == ENOENT ? 1 : -1;
    if (fstat(fd, &sb) != 0) {
        close(fd);
        return -1;
    }
    size_t cap = (size_t)sb.st_size, n = 0;
    char *buf = malloc(cap + 1);
    if (!buf) {
        close(fd);
        errno = ENOMEM;
        return -1;
    }
    while (n < cap) {
        ssize_t r = read(fd, buf + n, cap - n);
        if (r < 0 && errno == EINTR)
            continue;
        if (r <= 0)
            break;
        n += (size_t)r;
    }
    close(fd);
    buf[n] = '\0';
    *out = buf;
    *len = n;
    return 0;
}

/* ---- encoding ----------------------------------------------------------- */

/* 1 when s[0..n) holds a byte text_json_escape would escape: '"', '\\'
 * or one below 0x20 (the file store writes bytes >= 0x80 verbatim). */
static int fs_needs_escape(const char *s, size_t n)
{
    const unsigned char *p = (const unsigned char *)s, *end = p + n;
#ifdef __SSE2__
    const __m128i quote = _mm_set1_epi8('"'), bs = _mm_set1_epi8('\\');
    const __m128i ctl = _mm_set1_epi8(0x1f);
    for (; end - p >= 16; p += 16) {
        __m128i v = _mm_loadu_si128((const __m128i *)p);
        __m128i m = _mm_or_si128(
            _mm_or_si128(_mm_cmpeq_epi8(v, quote), _mm_cmpeq_epi8(v, bs)),
            _mm_cmpeq_epi8(_mm_min_epu8(v, ctl), v)); /* v <= 0x1f */
        if (_mm_movemask_epi8(m))
            return 1;
    }
#endif
    for (; p < end; p++)
        if (*p == '"' || *p == '\\' || *p < 0x20)
            return 1;
    return 0;
}

/* fj_str, with the common case (nothing to escape: keys, ids) copied in
 * one piece instead of escaped byte by byte; the output is the same. */
static void fs_str(struct fj_buf *b, const char *s, size_t n)
{
    if (fs_needs_escape(s, n)) {
        fj_str(b, s, n);
        return;
    }
    fj_raw(b, "\"", 1);
    fj_raw(b, s, n);
    fj_raw(b, "\"", 1);
}

static void fs_enc_key(struct fj_buf *b, const struct edr_key *k)
{
    fj_lit(b, "\"counter_party_id\":");
    fs_str(b, k->counter_party_id, strlen(k->counter_party_id));
    fj_lit(b, ",\"counter_party_address\":");
    fs_str(b, k->counter_party_address, strlen(k->counter_party_address));
    fj_lit(b, ",\"query_checksum\":");
    fs_str(b, k->query_checksum, strlen(k->query_checksum));
    fj_lit(b, ",\"policy_checksum\":");
    fs_str(b, k->policy_checksum, strlen(k->policy_checksum));
}

static void fs_enc_put(struct fj_buf *b, const struct edr_key *k,
                       const char *tid, size_t tid_len, const char *json,
                       size_t json_len)
{
    fs_enc_key(b, k);
    fj_lit(b, ",\"transfer_process_id\":");
    fs_str(b, tid, tid_len);
    fj_lit(b, ",\"edr\":");
    fj_raw(b, json, json_len);
}

/* Starts a frame in fs->buf; fs_frame_end fills in its header. */
static void fs_frame_begin(struct file_store *fs, uint64_t seq)
{
    fs->buf.len = 0;
    fs->buf.oom = 0;
    fj_raw(&fs->buf, "00000000 00000000\n", FS_FRAME_HDR);
    fj_lit(&fs->buf, "{\"seq\":");
    fj_u64(&fs->buf, seq);
}

static int fs_frame_end(struct file_store *fs, struct store_err *err)
{
    fj_lit(&fs->buf, "}\n");
    if (fs->buf.oom)
        return store_fail(err, STORE_TRANSIENT, "out of memory");
    size_t plen = fs->buf.len - FS_FRAME_HDR - 1;
    if (plen > 0xFFFFFFFFu)
        return store_fail(err, STORE_INVALID,
                          "batch too large for one journal record");
    uint32_t crc = fj_crc32(0, fs->buf.p + FS_FRAME_HDR, plen);
    char hdr[FS_FRAME_HDR + 1];
    snprintf(hdr, sizeof(hdr), "%08x %08x\n", (unsigned)plen, crc);
    memcpy(fs->buf.p, hdr, FS_FRAME_HDR);
    return STORE_OK;
}

static int fs_encode_batch(struct file_store *fs, const struct store_batch *b,
                           struct store_err *err)
{
    struct fj_buf *o = &fs->buf;
    fs_frame_begin(fs, fs->seq + 1);
    fj_lit(o, ",\"ops\":[");
    for (size_t i = 0; i < b->n_ops; i++) {
        const struct store_op *op = &b->ops[i];
        if (i)
            fj_lit(o, ",");
        if (op->kind == STORE_OP_PUT) {
            /* Embedded verbatim, so it must be JSON or the file would not
             * read back. */
            if (!fj_is_object(op->entry_json, op->entry_len))
                return store_fail(err, STORE_INVALID,
                                  "op %zu: entry is not a JSON object", i);
            fj_lit(o, "{\"op\":\"put\",");
            fs_enc_put(o, &op->key, op->transfer_id, strlen(op->transfer_id),
                       op->entry_json, op->entry_len);
        } else {
            fj_lit(o, "{\"op\":\"delete\",");
            fs_enc_key(o, &op->key);
            if (op->transfer_id) {
                fj_lit(o, ",\"if_transfer_id\":");
                fj_str(o, op->transfer_id, strlen(op->transfer_id));
            }
        }
        fj_lit(o, "}");
    }
    fj_lit(o, "]");
    if (b->n_offsets > 0) {
        fj_lit(o, ",\"topic\":");
        fj_str(o, b->topic, strlen(b->topic));
        fj_lit(o, ",\"offsets\":[");
        for (size_t i = 0; i < b->n_offsets; i++) {
            fj_lit(o, i ? ",{\"partition\":" : "{\"partition\":");
            fj_i64(o, b->offsets[i].partition);
            fj_lit(o, ",\"next_offset\":");
            fj_i64(o, b->offsets[i].next_offset);
            fj_lit(o, "}");
        }
        fj_lit(o, "]");
    }
    return fs_frame_end(fs, err);
}

/* ---- journal ------------------------------------------------------------ */

/* Cuts off whatever a failed append left past journal_end. */
static int fs_journal_repair(struct file_store *fs, struct store_err *err)
{
    if (!fs->journal_dirty)
        return STORE_OK;
    if (ftruncate(fs->journal_fd, (off_t)fs->journal_end) != 0 ||
        fs_fsync(fs->journal_fd, 0) != 0)
        return store_fail(err, STORE_TRANSIENT, "journal %s: %s",
                          fs->journal_path, strerror(errno));
    fs->journal_dirty = 0;
    return STORE_OK;
}

/* Appends fs->buf as one record and makes it durable. */
static int fs_journal_append(struct file_store *fs, struct store_err *err)
{
    int rc = fs_journal_repair(fs, err);
    if (rc != STORE_OK)
        return rc;
    if (fs_write_all(fs->journal_fd, fs->buf.p, fs->buf.len,
                     (int64_t)fs->journal_end) != 0 ||
        fs_fsync(fs->journal_fd, 1) != 0) {
        int e = errno;
        fs->journal_dirty = 1;
        fs_journal_repair(fs, NULL); /* best effort now; retried later */
        return store_fail(err, STORE_TRANSIENT, "journal %s: %s",
                          fs->journal_path, strerror(e));
    }
    fs->journal_end += fs->buf.len;
    fs->seq++;
    return STORE_OK;
}

/* ---- snapshot ----------------------------------------------------------- */

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
static int fs_compact(struct file_store *fs, struct store_err *err)
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

static void fs_maybe_compact(struct file_store *fs)
{
    if (fs->compact_always || fs->journal_end >= fs->compact_at)
        fs_compact(fs, NULL); /* the batch is durable either way */
}

/* ---- loading ------------------------------------------------------------ */

/* Ops parsed from a record, pointing into the file buffer. */
struct fs_ops {
    struct store_op *v;
    size_t n, cap;
    struct store_offset *offs;
    size_t n_offs, cap_offs;
};

static int fs_ops_push(struct fs_ops *o)
{
    if (o->n == o->cap) {
        size_t cap = o->cap ? o->cap * 2 : 256;
        struct store_op *v = realloc(o->v, cap * sizeof(*v));
        if (!v)
            return -1;
        o->v = v;
        o->cap = cap;
    }
    memset(&o->v[o->n++], 0, sizeof(*o->v));
    return 0;
}

static int fs_key_is(const char *k, const char *want)
{
    return strcmp(k, want) == 0;
}

/* Parses one {"op":..., keys, transfer id, "edr": {...}} object. */
static int fs_parse_op(struct fj_reader *r, struct store_op *op)
{
    char *key, *val;
    size_t len;
    op->kind = STORE_OP_PUT;
    if (fj_expect(r, '{') != 0)
        return -1;
    if (fj_peek(r) == '}') {
        r->err = "empty entry";
        return -1;
    }
    do {
        if (fj_string(r, &key, &len) != 0 || fj_expect(r, ':') != 0)
            return -1;
        if (fs_key_is(key, "edr")) {
            if (fj_value(r, &op->entry_json, &op->entry_len) != 0)
                return -1;
            continue;
        }
        if (fj_peek(r) != '"') {
            const char *s;
            if (fj_value(r, &s, &len) != 0) /* unknown member: skip */
                return -1;
            continue;
        }
        if (fj_string(r, &val, &len) != 0)
            return -1;
        if (fs_key_is(key, "op")) {
            if (fs_key_is(val, "delete"))
                op->kind = STORE_OP_DELETE;
            else if (!fs_key_is(val, "put")) {
                r->err = "unknown op";
                return -1;
            }
        } else if (fs_key_is(key, "counter_party_id")) {
            op->key.counter_party_id = val;
        } else if (fs_key_is(key, "counter_party_address")) {
            op->key.counter_party_address = val;
        } else if (fs_key_is(key, "query_checksum")) {
            op->key.query_checksum = val;
        } else if (fs_key_is(key, "policy_checksum")) {
            op->key.policy_checksum = val;
        } else if (fs_key_is(key, "transfer_process_id") ||
                   fs_key_is(key, "if_transfer_id")) {
            op->transfer_id = val;
        }
    } while (fj_peek(r) == ',' && (r->p++, 1));
    return fj_expect(r, '}');
}

/* Applies parsed ops (and offsets) through the same path as apply(). */
static int fs_apply_parsed(struct file_store *fs, struct fs_ops *o,
                           const char *topic, struct store_err *err)
{
    struct store_batch b = {.ops = o->v,
                            .n_ops = o->n,
                            .topic = topic,
                            .offsets = o->offs,
                            .n_offsets = o->n_offs};
    struct mem_prep p;
    int rc = mem_table_prepare(&fs->t, &b, &p, err);
    if (rc != STORE_OK)
        return rc;
    mem_table_commit(&fs->t, &b, &p);
    o->n = 0;
    o->n_offs = 0;
    return STORE_OK;
}

static int fs_parse_offset(struct fj_reader *r, struct fs_ops *o, char **topic)
{
    char *key;
    size_t len;
    int64_t v;
    if (o->n_offs == o->cap_offs) {
        size_t cap = o->cap_offs ? o->cap_offs * 2 : 16;
        struct store_offset *n = realloc(o->offs, cap * sizeof(*n));
        if (!n) {
            r->err = "out of memory";
            return -1;
        }
        o->offs = n;
        o->cap_offs = cap;
    }
    struct store_offset *so = &o->offs[o->n_offs++];
    so->first_offset = -1; /* replaying the journal: already fenced */
    if (fj_expect(r, '{') != 0)
        return -1;
    do {
        if (fj_string(r, &key, &len) != 0 || fj_expect(r, ':') != 0)
            return -1;
        if (fs_key_is(key, "topic")) {
            if (fj_string(r, topic, &len) != 0)
                return -1;
        } else if (fs_key_is(key, "partition") ||
                   fs_key_is(key, "next_offset")) {
            if (fj_int64(r, &v) != 0)
                return -1;
            if (key[0] == 'p')
                so->partition = (int32_t)v;
            else
                so->next_offset = v;
        } else {
            const char *s;
            if (fj_value(r, &s, &len) != 0)
                return -1;
        }
    } while (fj_peek(r) == ',' && (r->p++, 1));
    return fj_expect(r, '}');
}

static int fs_hex32(const char *p, uint32_t *out)
{
    uint32_t v = 0;
    for (int i = 0; i < 8; i++) {
        char c = p[i];
        int d = c >= '0' && c <= '9'   ? c - '0'
                : c >= 'a' && c <= 'f' ? c - 'a' + 10
                                       : -1;
        if (d < 0)
            return -1;
        v = v << 4 | (uint32_t)d;
    }
    *out = v;
    return 0;
}

static int fs_load_snapshot(struct file_store *fs, struct store_err *err)
{
    char *buf = NULL, *key, *val;
    size_t len, n_entries = 0, klen;
    int64_t v;
    int have_crc = 0, have_count = 0;
    struct fs_ops o = {0};
    int rc = fs_read_file(fs->path, &buf, &len);
    if (rc == 1)
        return STORE_NOT_FOUND;
    if (rc != 0)
        return store_fail(err, STORE_FATAL, "cannot read snapshot %s: %s",
                          fs->path, strerror(errno));
    fs->snapshot_bytes = len;
    struct fj_reader r = {.p = buf, .end = buf + len, .base = buf};
    uint64_t seq = 0;
    /* The file ends with "crc32":"xxxxxxxx"}\n, the checksum of every byte
     * before it; checked first, as parsing decodes strings in place. */
    static const char tag[] = "\"crc32\":\"";
    const size_t tail = sizeof(tag) - 1 + 8 + 3;
    uint32_t want;
    if (len < tail || memcmp(buf + len - tail, tag, sizeof(tag) - 1) != 0 ||
        memcmp(buf + len - 3, "\"}\n", 3) != 0 ||
        fs_hex32(buf + len - 11, &want) != 0) {
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
                    if (fs_apply_parsed(fs, &o, topic, err) != STORE_OK)
                        goto corrupt;
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
                        r.err = "out of memory";
                        goto corrupt;
                    }
                    if (fs_parse_op(&r, &o.v[o.n - 1]) != 0)
                        goto corrupt;
                    n_entries++;
                    if (o.n == 4096 &&
                        fs_apply_parsed(fs, &o, NULL, err) != STORE_OK)
                        goto corrupt;
                } while (fj_peek(&r) == ',' && (r.p++, 1));
            }
            if (fj_expect(&r, ']') != 0)
                goto corrupt;
            if (o.n && fs_apply_parsed(fs, &o, NULL, err) != STORE_OK)
                goto corrupt;
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

corrupt:
    rc = store_fail(err, STORE_FATAL,
                    "snapshot %s is corrupt at byte %zu (%s); refusing to "
                    "start with an empty store: restore it from a backup or "
                    "move it away",
                    fs->path, fj_pos(&r),
                    r.err ? r.err : (err ? err->msg : "invalid"));
    free(o.v);
    free(o.offs);
    free(buf);
    return rc;
}

/* Parses and applies one journal payload (NUL-terminated in place). */
static int fs_replay_record(struct file_store *fs, char *p, size_t len,
                            struct fs_ops *o, struct store_err *err)
{
    struct fj_reader r = {.p = p, .end = p + len, .base = p};
    char *key, *topic = NULL, *clear = NULL;
    size_t klen;
    int64_t seq = -1;
    int has_ops = 0;
    o->n = o->n_offs = 0;
    if (fj_expect(&r, '{') != 0)
        goto bad;
    do {
        if (fj_string(&r, &key, &klen) != 0 || fj_expect(&r, ':') != 0)
            goto bad;
        if (fs_key_is(key, "seq")) {
            if (fj_int64(&r, &seq) != 0)
                goto bad;
        } else if (fs_key_is(key, "ops")) {
            has_ops = 1;
            if (fj_expect(&r, '[') != 0)
                goto bad;
            if (fj_peek(&r) != ']') {
                do {
                    if (fs_ops_push(o) != 0 ||
                        fs_parse_op(&r, &o->v[o->n - 1]) != 0)
                        goto bad;
                } while (fj_peek(&r) == ',' && (r.p++, 1));
            }
            if (fj_expect(&r, ']') != 0)
                goto bad;
        } else if (fs_key_is(key, "topic")) {
            if (fj_string(&r, &topic, &klen) != 0)
                goto bad;
        } else if (fs_key_is(key, "offsets")) {
            if (fj_expect(&r, '[') != 0)
                goto bad;
            if (fj_peek(&r) != ']') {
                do {
                    if (fs_parse_offset(&r, o, &topic) != 0)
                        goto bad;
                } while (fj_peek(&r) == ',' && (r.p++, 1));
            }
            if (fj_expect(&r, ']') != 0)
                goto bad;
        } else if (fs_key_is(key, "clear_party")) {
            if (fj_string(&r, &clear, &klen) != 0)
                goto bad;
        } else {
            const char *s;
            if (fj_value(&r, &s, &klen) != 0)
                goto bad;
        }
    } while (fj_peek(&r) == ',' && (r.p++, 1));
    if (fj_expect(&r, '}') != 0)
        goto bad;
    if (seq < 0 || (!has_ops && !clear)) {
        r.err = "record without seq or content";
        goto bad;
    }
    if ((uint64_t)seq <= fs->seq)
        return STORE_OK; /* already in the snapshot */
    if ((uint64_t)seq != fs->seq + 1)
        return store_fail(err, STORE_FATAL,
                          "journal %s does not follow its snapshot: record "
                          "%lld after %llu",
                          fs->journal_path, (long long)seq,
                          (unsigned long long)fs->seq);
    if (clear) {
        struct mem_entry **victims;
        size_t n;
        if (mem_table_clear_collect(&fs->t, clear, &victims, &n, err) !=
            STORE_OK)
            return store_fail(err, STORE_FATAL, "journal replay: %s",
                              err ? err->msg : "");
        mem_table_clear_commit(&fs->t, victims, n);
    } else if (fs_apply_parsed(fs, o, topic, err) != STORE_OK) {
        return store_fail(err, STORE_FATAL, "journal %s: bad record %lld",
                          fs->journal_path, (long long)seq);
    }
    fs->seq = (uint64_t)seq;
    return STORE_OK;

bad:
    return store_fail(err, STORE_FATAL,
                      "journal %s: record %lld is malformed at byte %zu (%s)",
                      fs->journal_path, (long long)seq, fj_pos(&r),
                      r.err ? r.err : "invalid");
}

/* Replays the journal; cuts a torn tail off. */
static int fs_load_journal(struct file_store *fs, struct store_err *err)
{
    char *buf = NULL;
    size_t len, pos = 0;
    struct fs_ops o = {0};
    int rc = fs_read_file(fs->journal_path, &buf, &len);
    if (rc == 1)
        return STORE_OK;
    if (rc != 0)
        return store_fail(err, STORE_FATAL, "cannot read journal %s: %s",
                          fs->journal_path, strerror(errno));
    rc = STORE_OK;
    while (pos < len) {
        uint32_t plen, crc;
        char *h = buf + pos;
        if (len - pos < FS_FRAME_HDR || fs_hex32(h, &plen) != 0 ||
            h[8] != ' ' || fs_hex32(h + 9, &crc) != 0 || h[17] != '\n')
            break; /* torn header */
        size_t frame = FS_FRAME_HDR + (size_t)plen + 1;
        if (frame > len - pos)
            break; /* torn payload */
        char *payload = h + FS_FRAME_HDR;
        if (payload[plen] != '\n' || fj_crc32(0, payload, plen) != crc) {
            if (pos + frame == len)
                break; /* the last append, torn */
            rc = store_fail(err, STORE_FATAL,
                            "journal %s is corrupt at byte %zu (checksum "
                            "mismatch with more records after it)",
                            fs->journal_path, pos);
            goto out;
        }
        payload[plen] = '\0';
        rc = fs_replay_record(fs, payload, plen, &o, err);
        if (rc != STORE_OK)
            goto out;
        pos += frame;
    }
    fs->journal_end = pos;
    if (pos < len)
        fs->journal_dirty = 1; /* cut off by fs_journal_repair at open */
out:
    free(o.v);
    free(o.offs);
    free(buf);
    return rc;
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

static int fs_count(struct store *st, const char *substring, uint64_t *out,
                    struct store_err *err)
{
    return mem_table_count(&fs_of(st)->t, substring, out, err);
}

static int fs_list(struct store *st, const char *substring, const char *cursor,
                   size_t limit, struct store_list *out, struct store_err *err)
{
    return mem_table_list(&fs_of(st)->t, substring, cursor, limit, out, err);
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

struct store *file_store_open(const char *path, struct store_err *err)
{
    struct file_store *fs = NULL;
    int rc;
    if (!path || !path[0] || path[strlen(path) - 1] == '/') {
        store_fail(err, STORE_FATAL, "file store: no file path given");
        return NULL;
    }
    fs = calloc(1, sizeof(*fs));
    if (!fs)
        goto oom;
    fs->lock_fd = fs->journal_fd = -1;
    fs->base.ops = &file_store_ops;
    fs->compact_min = FILE_STORE_COMPACT_MIN_DEFAULT;
    if (fs_compact_min_from_env(&fs->compact_min, err) != STORE_OK) {
        free(fs);
        return NULL;
    }
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
        store_fail(err, STORE_FATAL, "file store: cannot create folder %s: %s",
                   fs->dir, strerror(errno));
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
    store_fail(err, STORE_FATAL, "out of memory");
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

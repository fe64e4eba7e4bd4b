/* file_journal.c: the file store's journal (file_store_int.h).
 *
 * Every write is first appended as one framed record and made durable with
 * one fdatasync, and only then applied in memory, so a failed write leaves
 * memory untouched and a crash loses no acknowledged batch. Frame:
 * "LLLLLLLL CCCCCCCC\n" (hex payload length and CRC-32 of the payload), the
 * JSON payload, "\n". Every record carries a sequence number; the snapshot
 * holds the last one it contains, so records a crash left behind between
 * a compaction's rename and truncation are recognised and skipped. */
#include "stores/file_store_int.h"

#include "base/hex.h"
#include "schemas/json_scan.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

void fs_frame_begin(struct file_store *fs, uint64_t seq)
{
    fs->buf.len = 0;
    fs->buf.oom = 0;
    fj_raw(&fs->buf, "00000000 00000000\n", FS_FRAME_HDR);
    fj_lit(&fs->buf, "{\"seq\":");
    fj_u64(&fs->buf, seq);
}

int fs_frame_end(struct file_store *fs, struct store_err *err)
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

int fs_encode_batch(struct file_store *fs, const struct store_batch *b,
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
            if (!json_is_object(op->entry_json, op->entry_len))
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
int fs_journal_repair(struct file_store *fs, struct store_err *err)
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
int fs_journal_append(struct file_store *fs, struct store_err *err)
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

/* ---- replay ------------------------------------------------------------- */

/* Parses and applies one journal payload (NUL-terminated in place). */
static int fs_replay_record(struct file_store *fs, char *p, size_t len,
                            struct fs_ops *o, struct store_err *err)
{
    struct fj_reader r = {.p = p, .end = p + len, .base = p};
    char *key, *topic = NULL, *clear = NULL;
    size_t klen;
    int64_t seq = -1;
    int has_ops = 0;
    struct store_err aerr = {0}; /* of replaying the parsed record */
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
                    if (fs_ops_push(o) != 0) {
                        r.err = fs_oom;
                        goto bad;
                    }
                    if (fs_parse_op(&r, &o->v[o->n - 1]) != 0)
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
        if (mem_table_clear_collect(&fs->t, clear, &victims, &n, &aerr) !=
            STORE_OK)
            goto apply_failed;
        mem_table_clear_commit(&fs->t, victims, n);
    } else if (fs_apply_parsed(fs, o, topic, &aerr) != STORE_OK) {
        goto apply_failed;
    }
    fs->seq = (uint64_t)seq;
    return STORE_OK;

apply_failed:
    if (aerr.status == STORE_TRANSIENT)
        return store_fail(err, STORE_TRANSIENT, "replaying journal %s: %s",
                          fs->journal_path, aerr.msg);
    return store_fail(err, STORE_FATAL, "journal %s: bad record %lld (%s)",
                      fs->journal_path, (long long)seq, aerr.msg);

bad:
    if (r.err == fs_oom)
        return store_fail(err, STORE_TRANSIENT, "replaying journal %s: %s",
                          fs->journal_path, fs_oom);
    return store_fail(err, STORE_FATAL,
                      "journal %s: record %lld is malformed at byte %zu (%s)",
                      fs->journal_path, (long long)seq, fj_pos(&r),
                      r.err ? r.err : "invalid");
}

/* The frame at buf[pos..len): 0 when it is whole and its checksum holds
 * (*frame its length), 1 when its header is well-formed but the frame
 * runs past the end (*frame what the header says), -1 otherwise. */
static int fs_frame_check(const char *buf, size_t len, size_t pos,
                          size_t *frame)
{
    uint64_t plen, crc;
    const char *h = buf + pos;
    if (len - pos < FS_FRAME_HDR || h[8] != ' ' || h[17] != '\n' ||
        edr_hex_parse(h, 8, EDR_HEX_LOWER_ONLY, &plen) != 0 ||
        edr_hex_parse(h + 9, 8, EDR_HEX_LOWER_ONLY, &crc) != 0)
        return -1;
    *frame = FS_FRAME_HDR + (size_t)plen + 1;
    if (*frame > len - pos)
        return 1;
    const char *payload = h + FS_FRAME_HDR;
    if (payload[plen] != '\n' || fj_crc32(0, payload, plen) != crc)
        return -1;
    return 0;
}

/* Why the bad frame at pos is not a torn tail, or NULL when it is one.
 *
 * One append is in flight at a time, and it is the last thing in the
 * file, so a crash can only leave an incomplete last frame: fewer bytes
 * than a header, a header whose frame runs past the end, a frame that
 * ends exactly at the end whose bytes did not all reach the disk (its
 * checksum fails), or zeros where the file was extended but not
 * written. Any of those with a valid frame anywhere after it, or any
 * other damage, is corruption. */
static const char *fs_not_torn(const char *buf, size_t len, size_t pos)
{
    size_t frame = 0, f2;
    int st = fs_frame_check(buf, len, pos, &frame);
    for (size_t q = pos + 1; q + FS_FRAME_HDR <= len; q++)
        if (buf[q - 1] == '\n' && fs_frame_check(buf, len, q, &f2) == 0)
            return "a bad frame with valid records after it";
    if (len - pos < FS_FRAME_HDR || st == 1)
        return NULL; /* header or payload cut short */
    if (st == -1 && frame > 0 && pos + frame == len)
        return NULL; /* a whole last frame whose bytes did not land */
    for (size_t q = pos; q < len; q++)
        if (buf[q] != '\0')
            return frame > 0 ? "checksum mismatch before the end"
                             : "malformed frame header";
    return NULL; /* zeros: extended but never written */
}

/* Replays the journal. A torn tail (fs_not_torn) is cut off at open; any
 * other bad frame refuses the open with STORE_FATAL naming the file and
 * offset, and leaves the file as it is. */
int fs_load_journal(struct file_store *fs, struct store_err *err)
{
    char *buf = NULL;
    size_t len, pos = 0;
    struct fs_ops o = {0};
    int rc = fs_read_file(fs->journal_path, &buf, &len);
    if (rc == 1)
        return STORE_OK;
    if (rc != 0)
        return store_fail(err, errno == ENOMEM ? STORE_TRANSIENT : STORE_FATAL,
                          "cannot read journal %s (at byte %zu): %s",
                          fs->journal_path, len, strerror(errno));
    rc = STORE_OK;
    while (pos < len) {
        size_t frame;
        if (fs_frame_check(buf, len, pos, &frame) != 0) {
            const char *why = fs_not_torn(buf, len, pos);
            if (!why)
                break; /* the last append, torn */
            rc = store_fail(err, STORE_FATAL,
                            "journal %s is corrupt at byte %zu (%s); "
                            "refusing to open it: restore it from a backup "
                            "or move it away",
                            fs->journal_path, pos, why);
            goto out;
        }
        char *payload = buf + pos + FS_FRAME_HDR;
        size_t plen = frame - FS_FRAME_HDR - 1;
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

/* file_store_int.h: what the file store's files share (file_store.h is
 * the public side).
 *
 *   file_store.c     the store_ops table, open and close
 *   file_io.c        write/fsync/read helpers (with the fault.h points)
 *   file_record.c    the JSON shape of one op or entry: encode and parse
 *   file_journal.c   journal frames: append, repair, replay at open
 *   file_snapshot.c  the snapshot: compaction writes it, open reads it
 *
 * Not for use outside stores/file_*.c. */
#ifndef EDR_STORES_FILE_STORE_INT_H
#define EDR_STORES_FILE_STORE_INT_H

#include "stores/file_json.h"
#include "stores/mem_table.h"
#include "stores/store.h"

#include <stddef.h>
#include <stdint.h>

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

/* ---- file_io.c ---------------------------------------------------------- */
/* Writes all of p (at off, or at the file position when off < 0). */
int fs_write_all(int fd, const char *p, size_t n, int64_t off);
int fs_fsync(int fd, int data_only);
int fs_fsync_dir(const char *dir);
/* mkdir -p with 0700 for what it creates; each folder it creates is
 * fsynced, and so is the folder holding it. */
int fs_mkdirs(const char *dir);
/* Reads a whole file; 1 when it does not exist. -1 with errno on any
 * error, *len then the offset at which a read() failed. */
int fs_read_file(const char *path, char **out, size_t *len);

/* ---- file_record.c ------------------------------------------------------ */
void fs_str(struct fj_buf *b, const char *s, size_t n);
void fs_enc_key(struct fj_buf *b, const struct edr_key *k);
void fs_enc_put(struct fj_buf *b, const struct edr_key *k, const char *tid,
                size_t tid_len, const char *json, size_t json_len);

/* Ops parsed from a record, pointing into the file buffer. */
struct fs_ops {
    struct store_op *v;
    size_t n, cap;
    struct store_offset *offs;
    size_t n_offs, cap_offs;
};

int fs_ops_push(struct fs_ops *o);
int fs_key_is(const char *k, const char *want);
/* Parses one {"op":..., keys, transfer id, "edr": {...}} object. */
int fs_parse_op(struct fj_reader *r, struct store_op *op);
int fs_parse_offset(struct fj_reader *r, struct fs_ops *o, char **topic);
/* Applies parsed ops (and offsets) through the same path as apply(). */
int fs_apply_parsed(struct file_store *fs, struct fs_ops *o, const char *topic,
                    struct store_err *err);
/* The reader's err when parsing stopped for want of memory (a reason to
 * retry the open, not corruption): compared by address. */
extern const char fs_oom[];

/* ---- file_journal.c ----------------------------------------------------- */
/* Starts a frame in fs->buf; fs_frame_end fills in its header. */
void fs_frame_begin(struct file_store *fs, uint64_t seq);
int fs_frame_end(struct file_store *fs, struct store_err *err);
int fs_encode_batch(struct file_store *fs, const struct store_batch *b,
                    struct store_err *err);
/* Cuts off whatever a failed append left past journal_end. */
int fs_journal_repair(struct file_store *fs, struct store_err *err);
/* Appends fs->buf as one record and makes it durable. */
int fs_journal_append(struct file_store *fs, struct store_err *err);
/* Replays the journal; cuts a torn tail off. */
int fs_load_journal(struct file_store *fs, struct store_err *err);

/* ---- file_snapshot.c ---------------------------------------------------- */
/* Writes the whole state to PATH.tmp, then renames it over PATH. Writer
 * mutex held. On failure the journal is untouched. */
int fs_compact(struct file_store *fs, struct store_err *err);
void fs_maybe_compact(struct file_store *fs);
/* STORE_NOT_FOUND when there is no snapshot yet. */
int fs_load_snapshot(struct file_store *fs, struct store_err *err);

#endif

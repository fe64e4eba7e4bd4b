/* file_json.h: the small JSON writer, reader and CRC-32 the file store
 * needs for its own snapshot and journal formats.
 *
 * Not a general JSON library (schemas/ owns event parsing with yajl): the
 * writer emits exactly the shapes file_store.c writes, and the reader is a
 * strict cursor that decodes strings in place in a buffer the caller owns
 * (a decoded string is never longer than its escaped form, so the NUL fits
 * where the closing quote was). fj_skip() validates any value, which is
 * how a stored entry is checked to be one JSON object before it is
 * embedded verbatim. Bytes >= 0x80 pass through unchanged both ways, so
 * any C string round-trips exactly. */
#ifndef EDR_STORES_FILE_JSON_H
#define EDR_STORES_FILE_JSON_H

#include <stddef.h>
#include <stdint.h>

/* ---- CRC-32 (IEEE, as zlib's crc32) ---------------------------------- */
uint32_t fj_crc32(uint32_t crc, const void *buf, size_t len);

/* ---- writer ------------------------------------------------------------ */
struct fj_buf {
    char *p;
    size_t len, cap;
    int oom; /* set when an append could not grow the buffer */
};

void fj_buf_free(struct fj_buf *b);
void fj_raw(struct fj_buf *b, const char *s, size_t n);
void fj_lit(struct fj_buf *b, const char *s); /* fj_raw of a C string */
void fj_str(struct fj_buf *b, const char *s, size_t n); /* quoted */
void fj_i64(struct fj_buf *b, int64_t v);
void fj_u64(struct fj_buf *b, uint64_t v);

/* ---- validation ------------------------------------------------------- */
/* json_is_object (schemas/json_scan.h), the project's one check; kept
 * only for worker/changelog.c until it calls json_is_object itself. */
int fj_is_object(const char *p, size_t n);

/* ---- reader ----------------------------------------------------------- */
struct fj_reader {
    char *p; /* cursor, inside a buffer the reader may rewrite */
    char *end;
    const char *base; /* for error positions */
    const char *err;  /* static reason after a failure */
};

/* Each returns 0 on success, -1 with r->err set. */
int fj_expect(struct fj_reader *r, char c); /* skips whitespace first */
/* The next non-space character without consuming it, or -1 at end. */
int fj_peek(struct fj_reader *r);
/* Decodes a string in place: *out is NUL-terminated, *len its length. */
int fj_string(struct fj_reader *r, char **out, size_t *len);
int fj_int64(struct fj_reader *r, int64_t *out);
/* Skips one value, returning its text span (validated, not decoded). */
int fj_value(struct fj_reader *r, const char **start, size_t *len);
/* Byte offset of the cursor, for messages. */
size_t fj_pos(const struct fj_reader *r);

#endif

/* reply.h: encoding and decoding of lookup replies (schemas/README.md §2).
 *
 *   {"id": "c0ffee-1", "status": "ok", "result": ...}
 *   {"id": "c0ffee-1", "status": "error", "error": "reason",
 *    "code": "bad_request", "result": null}
 *
 * Replies are written with a small JSON writer rather than yajl_gen,
 * because a get_connection result is the stored entry, already compact
 * JSON text, spliced in verbatim. Every string the writer emits is escaped
 * and made valid UTF-8, so the output is always valid JSON as long as the
 * raw text spliced in is (reply_is_json_object checks that). The decoder
 * is for clients (edrctl, tests, benchmarks). */
#ifndef EDR_SCHEMAS_REPLY_H
#define EDR_SCHEMAS_REPLY_H

#include <stddef.h>
#include <stdint.h>

/* A growing text buffer; zero-initialised is a valid empty buffer. After
 * an allocation failure `oom` is set and further writes are ignored. */
struct reply_buf {
    char *data; /* NUL-terminated once anything was written */
    size_t len;
    size_t cap;
    int oom;
};

void reply_buf_free(struct reply_buf *b);
/* Empties b, keeping its memory. */
void reply_buf_reset(struct reply_buf *b);

/* Appends n bytes as they are (caller guarantees they are JSON). */
void reply_raw(struct reply_buf *b, const char *s, size_t n);
/* Appends n bytes as a JSON string: quotes, escapes, and U+FFFD for every
 * byte that is not part of valid UTF-8. */
void reply_str(struct reply_buf *b, const char *s, size_t n);
/* reply_str of a C string; NULL writes null. */
void reply_cstr(struct reply_buf *b, const char *s);
void reply_u64(struct reply_buf *b, uint64_t v);
void reply_i64(struct reply_buf *b, int64_t v);

/* Starts a reply: {"id":<id, or null when NULL>,"status":"<status>",
 * "result": — the caller then writes the result value and calls
 * reply_end(). status: "ok" or "not_found". */
void reply_begin(struct reply_buf *b, const char *id, const char *status);
/* Closes the reply. 0, or -1 when memory ran out somewhere. */
int reply_end(struct reply_buf *b);

/* The error codes of schemas/README.md §2 (v2). */
#define REPLY_CODE_BAD_REQUEST "bad_request"
#define REPLY_CODE_UNAVAILABLE "unavailable"
#define REPLY_CODE_STATE_INCOMPLETE "state_incomplete"
#define REPLY_CODE_TIMEOUT "timeout"
#define REPLY_CODE_INTERNAL "internal"

/* A whole error reply (b is reset first). id may be NULL; code is one of
 * the REPLY_CODE_* (NULL writes "internal"). The reason goes to any
 * client: it must hold no server address, user name, SQL or path. 0 or
 * -1. */
int reply_error(struct reply_buf *b, const char *id, const char *code,
                const char *reason);

/* 1 when n bytes at s are exactly one JSON object (valid UTF-8). */
int reply_is_json_object(const char *s, size_t n);

/* A decoded reply; owned strings, reply_msg_clear() frees. */
enum reply_status { REPLY_OK, REPLY_NOT_FOUND, REPLY_ERROR };
struct reply_msg {
    enum reply_status status;
    char *id;          /* NULL when null */
    char *error;       /* status error: the reason, else NULL */
    char *code;        /* status error: the code, NULL when absent (v1) */
    char *result_json; /* the result re-serialised compactly ("null" when
                          absent) */
    size_t result_len;
};

/* Decodes one reply. 0, or -1 with the reason in errstr. Any thread. */
int reply_decode(struct reply_msg *m, const void *buf, size_t len, char *errstr,
                 size_t errstr_size);
void reply_msg_clear(struct reply_msg *m);

#endif

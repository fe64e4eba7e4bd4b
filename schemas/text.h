/* text.h: byte-level text helpers every layer may use (schemas/ is the
 * bottom layer): escaping a JSON string's contents and reading a hex
 * digit. The reply writer (schemas/reply.c), the file store's writer
 * (stores/file_json.c) and the Redis URL parser (worker/redis_url.c)
 * share them, so an escape is written the same way everywhere. */
#ifndef EDR_SCHEMAS_TEXT_H
#define EDR_SCHEMAS_TEXT_H

#include <stddef.h>

/* The most bytes text_json_escape writes for n input bytes. */
#define TEXT_JSON_ESCAPE_MAX(n) ((n)*6)

enum text_high_bytes {
    /* Bytes >= 0x80 pass unchanged, valid UTF-8 or not: any C string
     * round-trips exactly (the file store's own formats). */
    TEXT_HIGH_VERBATIM,
    /* Valid UTF-8 passes; every byte that is not part of a valid
     * sequence becomes \ufffd (replies other programs parse). */
    TEXT_HIGH_UTF8,
};

/* Writes the escaped contents of s[0..n) (no quotes) at out, which has
 * room for TEXT_JSON_ESCAPE_MAX(n) bytes, and returns how many it wrote.
 * '"', '\\', \n, \r and \t get their short escapes, the other bytes below
 * 0x20 \u00xx (lower-case hex); no NUL is appended. */
size_t text_json_escape(char *out, const char *s, size_t n,
                        enum text_high_bytes high);

/* Value of one hex digit (either case), or -1. Kept for the callers in
 * stores/ and worker/; new code calls edr_hex_digit (base/hex.h). */
int text_hex_digit(char c);

#endif

/* utf8.h: the one UTF-8 validator of the project (RFC 3629, strict: no
 * overlong forms, no surrogates, nothing above U+10FFFF).
 *
 * The event decoder's scanner (schemas/json_scan.c) and text_json_escape
 * (schemas/text.c) step through text one character at a time with
 * utf8_char_len; the request decoder checks a whole buffer with
 * utf8_valid. Pure functions, any thread. */
#ifndef EDR_SCHEMAS_UTF8_H
#define EDR_SCHEMAS_UTF8_H

#include <stddef.h>

/* Length (1 to 4) of the valid UTF-8 sequence that starts at p, which has
 * avail > 0 readable bytes, or 0 when the bytes there are not one. Inline:
 * the scanners call it for every non-ASCII character. */
static inline size_t utf8_char_len(const unsigned char *p, size_t avail)
{
    unsigned c = p[0];
    unsigned lo_min = 0x80, lo_max = 0xBF;
    size_t k;

    if (c < 0x80)
        return 1;
    if (c >= 0xC2 && c <= 0xDF) {
        k = 1;
    } else if (c >= 0xE0 && c <= 0xEF) {
        k = 2;
        if (c == 0xE0)
            lo_min = 0xA0; /* overlong */
        else if (c == 0xED)
            lo_max = 0x9F; /* surrogates */
    } else if (c >= 0xF0 && c <= 0xF4) {
        k = 3;
        if (c == 0xF0)
            lo_min = 0x90; /* overlong */
        else if (c == 0xF4)
            lo_max = 0x8F; /* above U+10FFFF */
    } else {
        return 0;
    }
    if (avail <= k || p[1] < lo_min || p[1] > lo_max)
        return 0;
    for (size_t j = 2; j <= k; j++)
        if ((p[j] & 0xC0) != 0x80)
            return 0;
    return k + 1;
}

/* 1 when the len bytes at s are valid UTF-8; else 0 and *bad_at (when not
 * NULL) is the offset of the first byte that does not start a valid
 * sequence. */
int utf8_valid(const void *s, size_t len, size_t *bad_at);

#endif

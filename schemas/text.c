/* text.c: see text.h. */
#include "schemas/text.h"

#include "schemas/request.h"

#include <string.h>

/* 1 for the ASCII bytes that must be escaped inside a JSON string. */
static const unsigned char text_esc[128] = {
    1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1,
    1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 0, 0, 1, ['\\'] = 1};

/* Length of the valid UTF-8 sequence starting at p (at most avail bytes),
 * or 0 when it is not one. */
static size_t text_utf8_seq(const unsigned char *p, size_t avail)
{
    size_t bad;
    size_t n = p[0] >= 0xF0 ? 4 : p[0] >= 0xE0 ? 3 : 2;
    if (n > avail)
        return 0;
    return request_utf8_valid(p, n, &bad) ? n : 0;
}

size_t text_json_escape(char *out, const char *s, size_t n,
                        enum text_high_bytes high)
{
    static const char hex[] = "0123456789abcdef";
    const unsigned char *p = (const unsigned char *)s;
    char *o = out;
    size_t run = 0; /* start of the bytes not yet copied */
    size_t i = 0;

    /* Unescaped runs are copied in one piece: most text has no escapes. */
    while (i < n) {
        unsigned char c = p[i];
        if (c >= 0x80) {
            size_t k =
                high == TEXT_HIGH_VERBATIM ? 1 : text_utf8_seq(p + i, n - i);
            if (k) {
                i += k;
                continue;
            }
        } else if (!text_esc[c]) {
            i++;
            continue;
        }
        memcpy(o, s + run, i - run);
        o += i - run;
        i++;
        run = i;
        switch (c) {
        case '"':
            memcpy(o, "\\\"", 2);
            o += 2;
            break;
        case '\\':
            memcpy(o, "\\\\", 2);
            o += 2;
            break;
        case '\n':
            memcpy(o, "\\n", 2);
            o += 2;
            break;
        case '\r':
            memcpy(o, "\\r", 2);
            o += 2;
            break;
        case '\t':
            memcpy(o, "\\t", 2);
            o += 2;
            break;
        default:
            if (c >= 0x80) { /* not part of valid UTF-8 */
                memcpy(o, "\\ufffd", 6);
            } else {
                memcpy(o, "\\u00", 4);
                o[4] = hex[c >> 4];
                o[5] = hex[c & 15];
            }
            o += 6;
        }
    }
    if (n > run) /* s may be NULL when n is 0 */
        memcpy(o, s + run, n - run);
    o += n - run;
    return (size_t)(o - out);
}

int text_hex_digit(char c)
{
    if (c >= '0' && c <= '9')
        return c - '0';
    if (c >= 'a' && c <= 'f')
        return c - 'a' + 10;
    if (c >= 'A' && c <= 'F')
        return c - 'A' + 10;
    return -1;
}

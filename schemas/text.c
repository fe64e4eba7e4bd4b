/* text.c: see text.h. */
#include "schemas/text.h"

#include "base/hex.h"
#include "schemas/utf8.h"

#include <string.h>

/* 1 for the ASCII bytes that must be escaped inside a JSON string. */
static const unsigned char text_esc[128] = {
    1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1,
    1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 0, 0, 1, ['\\'] = 1};

size_t text_json_escape(char *out, const char *s, size_t n,
                        enum text_high_bytes high)
{
    const unsigned char *p = (const unsigned char *)s;
    char *o = out;
    size_t run = 0; /* start of the bytes not yet copied */
    size_t i = 0;

    /* Unescaped runs are copied in one piece: most text has no escapes. */
    while (i < n) {
        unsigned char c = p[i];
        if (c >= 0x80) {
            size_t k =
                high == TEXT_HIGH_VERBATIM ? 1 : utf8_char_len(p + i, n - i);
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
                o[4] = edr_hex_char(c >> 4);
                o[5] = edr_hex_char(c);
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
    return edr_hex_digit((unsigned char)c, EDR_HEX_ANY_CASE);
}

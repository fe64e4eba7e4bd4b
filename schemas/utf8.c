/* utf8.c: see utf8.h. */
#include "schemas/utf8.h"

#include <stdint.h>
#include <string.h>

int utf8_valid(const void *s, size_t len, size_t *bad_at)
{
    const unsigned char *p = s;
    size_t i = 0;

    while (i < len) {
        /* ASCII eight bytes a step: most text is ASCII. */
        uint64_t w;
        if (len - i >= 8) {
            memcpy(&w, p + i, 8);
            if (!(w & UINT64_C(0x8080808080808080))) {
                i += 8;
                continue;
            }
        }
        size_t k = utf8_char_len(p + i, len - i);
        if (!k) {
            if (bad_at)
                *bad_at = i;
            return 0;
        }
        i += k;
    }
    return 1;
}

/* hex.c: see hex.h. */
#include "base/hex.h"

int edr_hex_digit(int c, enum edr_hex_case cs)
{
    if (c >= '0' && c <= '9')
        return c - '0';
    if (c >= 'a' && c <= 'f')
        return c - 'a' + 10;
    if (cs == EDR_HEX_ANY_CASE && c >= 'A' && c <= 'F')
        return c - 'A' + 10;
    return -1;
}

int edr_hex_parse(const char *s, size_t n, enum edr_hex_case cs, uint64_t *out)
{
    uint64_t v = 0;
    if (n > 16)
        return -1;
    for (size_t i = 0; i < n; i++) {
        int d = edr_hex_digit((unsigned char)s[i], cs);
        if (d < 0)
            return -1;
        v = v << 4 | (uint64_t)d;
    }
    *out = v;
    return 0;
}

char edr_hex_char(unsigned v)
{
    return "0123456789abcdef"[v & 15];
}

void edr_hex_encode(char *out, const void *in, size_t n)
{
    const unsigned char *p = in;
    for (size_t i = 0; i < n; i++) {
        out[2 * i] = edr_hex_char(p[i] >> 4);
        out[2 * i + 1] = edr_hex_char(p[i]);
    }
    out[2 * n] = '\0';
}

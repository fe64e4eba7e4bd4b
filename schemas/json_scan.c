/* json_scan.c: see json_scan.h. */
#include "schemas/json_scan.h"

#include "base/hex.h"
#include "schemas/utf8.h"

#include <stdbool.h>
#include <stdint.h>
#include <string.h>
#ifdef __SSE2__
#include <emmintrin.h>
#endif

#define ONES UINT64_C(0x0101010101010101)
#define HIGHS UINT64_C(0x8080808080808080)

static int hex4(const unsigned char *s, unsigned *out)
{
    uint64_t v;
    if (edr_hex_parse((const char *)s, 4, EDR_HEX_ANY_CASE, &v) != 0)
        return -1;
    *out = (unsigned)v;
    return 0;
}

/* Checks the escape at s[i] (a backslash); returns how many bytes it
 * covers, or 0 with *r set. */
static size_t scan_escape(const unsigned char *s, size_t n, size_t i,
                          enum json_scan_result *r)
{
    unsigned cp, lo;
    if (n - i >= 6 && s[i + 1] == 'u' && hex4(s + i + 2, &cp) == 0) {
        if (cp == 0) {
            *r = JSON_SCAN_NUL;
            return 0;
        }
        if (cp >= 0xDC00 && cp <= 0xDFFF) {
            *r = JSON_SCAN_SURROGATE;
            return 0;
        }
        if (cp >= 0xD800 && cp <= 0xDBFF) {
            if (n - i < 12 || s[i + 6] != '\\' || s[i + 7] != 'u' ||
                hex4(s + i + 8, &lo) != 0 || lo < 0xDC00 || lo > 0xDFFF) {
                *r = JSON_SCAN_SURROGATE;
                return 0;
            }
            return 12;
        }
        return 6;
    }
    if (n - i >= 2 && s[i + 1] < 0x80)
        return 2; /* \" or \\: the next byte is not a delimiter */
    return 1;
}

enum json_scan_result json_scan_text(const unsigned char *s, size_t n,
                                     size_t *at)
{
    const uint64_t backslashes = ONES * '\\';
    enum json_scan_result r = JSON_SCAN_OK;
    size_t i = 0;

    while (i < n) {
        /* Fast path: ASCII without a backslash, 16 then 8 bytes a step. */
#ifdef __SSE2__
        const __m128i bs = _mm_set1_epi8('\\');
        while (n - i >= 16) {
            __m128i v = _mm_loadu_si128((const __m128i *)(s + i));
            if (_mm_movemask_epi8(_mm_or_si128(v, _mm_cmpeq_epi8(v, bs))))
                break;
            i += 16;
        }
#endif
        while (n - i >= 8) {
            uint64_t w, x;
            memcpy(&w, s + i, 8);
            x = w ^ backslashes;
            if (((w | ((x - ONES) & ~x)) & HIGHS) != 0)
                break;
            i += 8;
        }
        if (i >= n)
            break;
        size_t k;
        if (s[i] == '\\') {
            k = scan_escape(s, n, i, &r);
        } else {
            k = utf8_char_len(s + i, n - i);
            r = JSON_SCAN_UTF8;
        }
        if (!k) {
            *at = i;
            return r;
        }
        i += k;
    }
    return JSON_SCAN_OK;
}

/* ---- json_is_object ---------------------------------------------------- */

static const unsigned char *skip_ws(const unsigned char *p,
                                    const unsigned char *end)
{
    while (p < end && (*p == ' ' || *p == '\t' || *p == '\n' || *p == '\r'))
        p++;
    return p;
}

/* p at the opening quote; returns the byte after the closing one, or NULL. */
static const unsigned char *skip_string(const unsigned char *p,
                                        const unsigned char *end)
{
    for (p++; p < end;) {
        unsigned c = *p;
        if (c == '"')
            return p + 1;
        if (c < 0x20)
            return NULL;
        if (c == '\\') {
            if (end - p < 2)
                return NULL;
            c = p[1];
            if (c == 'u') {
                uint64_t v;
                if (end - p < 6 || edr_hex_parse((const char *)p + 2, 4,
                                                 EDR_HEX_ANY_CASE, &v) != 0)
                    return NULL;
                p += 6;
            } else if (strchr("\"\\/bfnrt", (int)c) && c) {
                p += 2;
            } else {
                return NULL;
            }
            continue;
        }
        size_t k = utf8_char_len(p, (size_t)(end - p));
        if (!k)
            return NULL;
        p += k;
    }
    return NULL;
}

static const unsigned char *skip_digits(const unsigned char *p,
                                        const unsigned char *end)
{
    const unsigned char *q = p;
    while (q < end && *q >= '0' && *q <= '9')
        q++;
    return q > p ? q : NULL;
}

static const unsigned char *skip_number(const unsigned char *p,
                                        const unsigned char *end)
{
    if (p < end && *p == '-')
        p++;
    if (p < end && *p == '0')
        p++;
    else if (!(p = skip_digits(p, end)))
        return NULL;
    if (p < end && *p == '.' && !(p = skip_digits(p + 1, end)))
        return NULL;
    if (p < end && (*p == 'e' || *p == 'E')) {
        p++;
        if (p < end && (*p == '+' || *p == '-'))
            p++;
        if (!(p = skip_digits(p, end)))
            return NULL;
    }
    return p;
}

static const unsigned char *
skip_literal(const unsigned char *p, const unsigned char *end, const char *lit)
{
    size_t n = strlen(lit);
    if ((size_t)(end - p) < n || memcmp(p, lit, n) != 0)
        return NULL;
    return p + n;
}

int json_is_object(const char *s, size_t n)
{
    const unsigned char *p = (const unsigned char *)s, *end = p + n;
    unsigned char open[JSON_SCAN_MAX_DEPTH]; /* '{' or '[' per level */
    size_t depth = 0;
    bool want_key = false; /* the next token is a member name */

    p = skip_ws(p, end);
    if (p == end || *p != '{')
        return 0;
    for (;;) {
        /* A value (or, in an object, a member name) starts at p. */
        p = skip_ws(p, end);
        if (p == end)
            return 0;
        if (want_key) {
            if (*p != '"' || !(p = skip_string(p, end)))
                return 0;
            p = skip_ws(p, end);
            if (p == end || *p != ':')
                return 0;
            p = skip_ws(p + 1, end);
            if (p == end)
                return 0;
            want_key = false;
        }
        if (*p == '{' || *p == '[') {
            if (depth == JSON_SCAN_MAX_DEPTH)
                return 0;
            unsigned char c = *p;
            open[depth++] = c;
            p = skip_ws(p + 1, end);
            if (p < end && *p == (c == '{' ? '}' : ']')) {
                depth--;
                p++;
            } else {
                want_key = c == '{';
                continue;
            }
        } else if (*p == '"') {
            p = skip_string(p, end);
        } else if (*p == 't') {
            p = skip_literal(p, end, "true");
        } else if (*p == 'f') {
            p = skip_literal(p, end, "false");
        } else if (*p == 'n') {
            p = skip_literal(p, end, "null");
        } else {
            p = skip_number(p, end);
        }
        if (!p)
            return 0;
        /* After a value: a separator, closing brackets, or the end. */
        for (;;) {
            p = skip_ws(p, end);
            if (depth == 0)
                return p == end;
            if (p == end)
                return 0;
            unsigned char c = open[depth - 1];
            if (*p == ',') {
                p++;
                want_key = c == '{';
                break;
            }
            if (*p != (c == '{' ? '}' : ']'))
                return 0;
            depth--;
            p++;
        }
    }
}

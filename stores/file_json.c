/* file_json.c: see file_json.h. */
#include "stores/file_json.h"

#include "schemas/json_scan.h"
#include "schemas/text.h"

#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* ---- CRC-32, slice-by-8 ------------------------------------------------ */

static uint32_t fj_crc_tab[8][256];
static pthread_once_t fj_crc_once = PTHREAD_ONCE_INIT;

static void fj_crc_init(void)
{
    for (uint32_t i = 0; i < 256; i++) {
        uint32_t c = i;
        for (int k = 0; k < 8; k++)
            c = c & 1 ? 0xEDB88320u ^ (c >> 1) : c >> 1;
        fj_crc_tab[0][i] = c;
    }
    for (uint32_t i = 0; i < 256; i++)
        for (int t = 1; t < 8; t++)
            fj_crc_tab[t][i] = (fj_crc_tab[t - 1][i] >> 8) ^
                               fj_crc_tab[0][fj_crc_tab[t - 1][i] & 0xFF];
}

uint32_t fj_crc32(uint32_t crc, const void *buf, size_t len)
{
    const unsigned char *p = buf;
    pthread_once(&fj_crc_once, fj_crc_init);
    crc = ~crc;
    while (len >= 8) {
        uint32_t a, b;
        memcpy(&a, p, 4);
        memcpy(&b, p + 4, 4);
        a ^= crc; /* little-endian hosts (x86-64, arm64) */
        crc = fj_crc_tab[7][a & 0xFF] ^ fj_crc_tab[6][(a >> 8) & 0xFF] ^
              fj_crc_tab[5][(a >> 16) & 0xFF] ^ fj_crc_tab[4][a >> 24] ^
              fj_crc_tab[3][b & 0xFF] ^ fj_crc_tab[2][(b >> 8) & 0xFF] ^
              fj_crc_tab[1][(b >> 16) & 0xFF] ^ fj_crc_tab[0][b >> 24];
        p += 8;
        len -= 8;
    }
    while (len--)
        crc = fj_crc_tab[0][(crc ^ *p++) & 0xFF] ^ (crc >> 8);
    return ~crc;
}

/* ---- writer ------------------------------------------------------------ */

void fj_buf_free(struct fj_buf *b)
{
    free(b->p);
    *b = (struct fj_buf){0};
}

static int fj_reserve(struct fj_buf *b, size_t n)
{
    if (b->oom)
        return -1;
    if (b->len + n <= b->cap)
        return 0;
    size_t cap = b->cap ? b->cap : 4096;
    while (cap < b->len + n)
        cap *= 2;
    char *p = realloc(b->p, cap);
    if (!p) {
        b->oom = 1;
        return -1;
    }
    b->p = p;
    b->cap = cap;
    return 0;
}

void fj_raw(struct fj_buf *b, const char *s, size_t n)
{
    if (fj_reserve(b, n) != 0)
        return;
    memcpy(b->p + b->len, s, n);
    b->len += n;
}

void fj_lit(struct fj_buf *b, const char *s)
{
    fj_raw(b, s, strlen(s));
}

void fj_str(struct fj_buf *b, const char *s, size_t n)
{
    /* Worst case \u00XX per byte plus quotes. */
    if (fj_reserve(b, TEXT_JSON_ESCAPE_MAX(n) + 2) != 0)
        return;
    char *o = b->p + b->len;
    *o++ = '"';
    o += text_json_escape(o, s, n, TEXT_HIGH_VERBATIM);
    *o++ = '"';
    b->len = (size_t)(o - b->p);
}

void fj_i64(struct fj_buf *b, int64_t v)
{
    char tmp[24];
    int n = snprintf(tmp, sizeof(tmp), "%lld", (long long)v);
    fj_raw(b, tmp, (size_t)n);
}

void fj_u64(struct fj_buf *b, uint64_t v)
{
    char tmp[24];
    int n = snprintf(tmp, sizeof(tmp), "%llu", (unsigned long long)v);
    fj_raw(b, tmp, (size_t)n);
}

/* ---- validation -------------------------------------------------------- */

#define FJ_MAX_DEPTH 512

static const char *fj_skip_ws(const char *p, const char *end)
{
    while (p < end && (*p == ' ' || *p == '\t' || *p == '\n' || *p == '\r'))
        p++;
    return p;
}

/* p at the opening quote; returns past the closing quote or NULL. */
static const char *fj_skip_string(const char *p, const char *end)
{
    p++;
    while (p < end) {
        unsigned char c = (unsigned char)*p;
        if (c == '"')
            return p + 1;
        if (c < 0x20)
            return NULL;
        if (c == '\\') {
            if (++p >= end)
                return NULL;
            switch (*p) {
            case '"':
            case '\\':
            case '/':
            case 'b':
            case 'f':
            case 'n':
            case 'r':
            case 't':
                break;
            case 'u':
                if (end - p < 5)
                    return NULL;
                for (int i = 1; i <= 4; i++)
                    if (text_hex_digit(p[i]) < 0)
                        return NULL;
                p += 4;
                break;
            default:
                return NULL;
            }
        }
        p++;
    }
    return NULL;
}

static int fj_digit(const char *p, const char *end)
{
    return p < end && *p >= '0' && *p <= '9';
}

static const char *fj_skip_number(const char *p, const char *end)
{
    if (p < end && *p == '-')
        p++;
    if (!fj_digit(p, end))
        return NULL;
    if (*p == '0')
        p++;
    else
        while (fj_digit(p, end))
            p++;
    if (p < end && *p == '.') {
        p++;
        if (!fj_digit(p, end))
            return NULL;
        while (fj_digit(p, end))
            p++;
    }
    if (p < end && (*p == 'e' || *p == 'E')) {
        p++;
        if (p < end && (*p == '+' || *p == '-'))
            p++;
        if (!fj_digit(p, end))
            return NULL;
        while (fj_digit(p, end))
            p++;
    }
    return p;
}

static const char *fj_skip(const char *p, const char *end, int depth)
{
    p = fj_skip_ws(p, end);
    if (p >= end || depth > FJ_MAX_DEPTH)
        return NULL;
    switch (*p) {
    case '"':
        return fj_skip_string(p, end);
    case '{':
    case '[': {
        char close = *p == '{' ? '}' : ']';
        int obj = *p == '{';
        p = fj_skip_ws(p + 1, end);
        if (p < end && *p == close)
            return p + 1;
        for (;;) {
            if (obj) {
                p = fj_skip_ws(p, end);
                if (p >= end || *p != '"' || !(p = fj_skip_string(p, end)))
                    return NULL;
                p = fj_skip_ws(p, end);
                if (p >= end || *p != ':')
                    return NULL;
                p++;
            }
            if (!(p = fj_skip(p, end, depth + 1)))
                return NULL;
            p = fj_skip_ws(p, end);
            if (p >= end)
                return NULL;
            if (*p == close)
                return p + 1;
            if (*p != ',')
                return NULL;
            p++;
        }
    }
    case 't':
        return end - p >= 4 && memcmp(p, "true", 4) == 0 ? p + 4 : NULL;
    case 'f':
        return end - p >= 5 && memcmp(p, "false", 5) == 0 ? p + 5 : NULL;
    case 'n':
        return end - p >= 4 && memcmp(p, "null", 4) == 0 ? p + 4 : NULL;
    default:
        return fj_skip_number(p, end);
    }
}

int fj_is_object(const char *p, size_t n)
{
    return json_is_object(p, n);
}

/* ---- reader ------------------------------------------------------------ */

static int fj_fail(struct fj_reader *r, const char *why)
{
    r->err = why;
    return -1;
}

size_t fj_pos(const struct fj_reader *r)
{
    return (size_t)(r->p - r->base);
}

int fj_peek(struct fj_reader *r)
{
    r->p = (char *)fj_skip_ws(r->p, r->end);
    return r->p < r->end ? (unsigned char)*r->p : -1;
}

int fj_expect(struct fj_reader *r, char c)
{
    if (fj_peek(r) != (unsigned char)c) {
        static char msg[32];
        snprintf(msg, sizeof(msg), "expected '%c'", c);
        return fj_fail(r, msg);
    }
    r->p++;
    return 0;
}

static char *fj_put_utf8(char *o, unsigned cp)
{
    if (cp < 0x80) {
        *o++ = (char)cp;
    } else if (cp < 0x800) {
        *o++ = (char)(0xC0 | cp >> 6);
        *o++ = (char)(0x80 | (cp & 0x3F));
    } else if (cp < 0x10000) {
        *o++ = (char)(0xE0 | cp >> 12);
        *o++ = (char)(0x80 | ((cp >> 6) & 0x3F));
        *o++ = (char)(0x80 | (cp & 0x3F));
    } else {
        *o++ = (char)(0xF0 | cp >> 18);
        *o++ = (char)(0x80 | ((cp >> 12) & 0x3F));
        *o++ = (char)(0x80 | ((cp >> 6) & 0x3F));
        *o++ = (char)(0x80 | (cp & 0x3F));
    }
    return o;
}

static unsigned fj_u4(const char *p)
{
    return (unsigned)(text_hex_digit(p[0]) << 12 | text_hex_digit(p[1]) << 8 |
                      text_hex_digit(p[2]) << 4 | text_hex_digit(p[3]));
}

int fj_string(struct fj_reader *r, char **out, size_t *len)
{
    if (fj_peek(r) != '"')
        return fj_fail(r, "expected a string");
    const char *close = fj_skip_string(r->p, r->end);
    if (!close)
        return fj_fail(r, "malformed string");
    char *i = r->p + 1, *o = r->p + 1, *start = r->p + 1;
    const char *last = close - 1; /* the closing quote */
    while (i < last) {
        if (*i != '\\') {
            *o++ = *i++;
            continue;
        }
        i++;
        switch (*i) {
        case 'b':
            *o++ = '\b';
            break;
        case 'f':
            *o++ = '\f';
            break;
        case 'n':
            *o++ = '\n';
            break;
        case 'r':
            *o++ = '\r';
            break;
        case 't':
            *o++ = '\t';
            break;
        case 'u': {
            unsigned cp = fj_u4(i + 1);
            i += 4;
            if (cp >= 0xD800 && cp < 0xDC00 && last - i >= 7 && i[1] == '\\' &&
                i[2] == 'u') {
                unsigned lo = fj_u4(i + 3);
                if (lo >= 0xDC00 && lo < 0xE000) {
                    cp = 0x10000 + ((cp - 0xD800) << 10) + (lo - 0xDC00);
                    i += 6;
                }
            }
            if (cp == 0)
                return fj_fail(r, "NUL in string");
            o = fj_put_utf8(o, cp);
            break;
        }
        default: /* " \ / */
            *o++ = *i;
        }
        i++;
    }
    *o = '\0';
    *out = start;
    *len = (size_t)(o - start);
    r->p = (char *)close;
    return 0;
}

int fj_int64(struct fj_reader *r, int64_t *out)
{
    if (fj_peek(r) < 0)
        return fj_fail(r, "expected a number");
    const char *p = r->p;
    int neg = *p == '-';
    if (neg)
        p++;
    if (!fj_digit(p, r->end))
        return fj_fail(r, "expected an integer");
    uint64_t v = 0;
    while (fj_digit(p, r->end)) {
        uint64_t d = (uint64_t)(*p - '0');
        if (v > (UINT64_MAX - d) / 10)
            return fj_fail(r, "integer overflow");
        v = v * 10 + d;
        p++;
    }
    if (v > (uint64_t)INT64_MAX + (uint64_t)neg)
        return fj_fail(r, "integer overflow");
    *out = neg ? (int64_t)(0 - v) : (int64_t)v;
    r->p = (char *)p;
    return 0;
}

int fj_value(struct fj_reader *r, const char **start, size_t *len)
{
    if (fj_peek(r) < 0)
        return fj_fail(r, "expected a value");
    const char *q = fj_skip(r->p, r->end, 0);
    if (!q)
        return fj_fail(r, "malformed value");
    *start = r->p;
    *len = (size_t)(q - r->p);
    r->p = (char *)q;
    return 0;
}

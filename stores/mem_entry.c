/* mem_entry.c: one stored entry of the memory table (mem_table_int.h):
 * a single allocation holding its four keys, transfer id and JSON.
 *
 * The connection key (SHA-256, about 1.3 us) is computed here, when a put
 * is prepared and outside every lock: the ordered index needs it at
 * commit, and list and count must not pay it per entry visited. */
#include "stores/mem_table_int.h"

#include "base/hex.h"
#include "schemas/sha256.h"

#include <stdlib.h>
#include <string.h>

const char *mem_entry_field(const struct mem_entry *e, int i)
{
    const char *p = e->data;
    for (int j = 0; j < i && j < 5; j++)
        p += e->len[j] + 1;
    if (i == 6)
        p += e->json_len + 1;
    return p;
}

/* The raw connection key of the four fields (schemas/README.md §1). */
static void mt_entry_ck(struct mem_entry *e)
{
    const unsigned char sep = 0x1F;
    struct sha256 s;
    sha256_init(&s);
    const char *p = e->data;
    for (int i = 0; i < 4; i++) {
        if (i > 0)
            sha256_update(&s, &sep, 1);
        sha256_update(&s, p, e->len[i]);
        p += e->len[i] + 1;
    }
    sha256_final(&s, e->ck);
}

/* ---- the assetId of an entry ------------------------------------------ */

static const char *mt_ws(const char *p, const char *end)
{
    while (p < end && (*p == ' ' || *p == '\t' || *p == '\n' || *p == '\r'))
        p++;
    return p;
}

/* Past the string whose opening quote is at p, or NULL. */
static const char *mt_skip_str(const char *p, const char *end)
{
    for (p++; p < end; p++) {
        if (*p == '\\')
            p++;
        else if (*p == '"')
            return p + 1;
    }
    return NULL;
}

/* Past one value at p (containers by bracket depth), or NULL. */
static const char *mt_skip_value(const char *p, const char *end)
{
    int depth = 0;
    while (p < end) {
        char c = *p;
        if (c == '"') {
            if (!(p = mt_skip_str(p, end)))
                return NULL;
        } else if (c == '{' || c == '[') {
            depth++;
            p++;
        } else if (c == '}' || c == ']') {
            if (depth == 0)
                return p;
            depth--;
            p++;
        } else if (c == ',' && depth == 0) {
            return p;
        } else {
            p++;
        }
        if (depth == 0 && (c == '"' || c == '}' || c == ']'))
            return p;
    }
    return depth == 0 ? p : NULL;
}

/* Decodes the JSON string body s[0..n) (no quotes) into out (room for n
 * bytes); returns the decoded length, or -1 when it is malformed or holds
 * U+0000 (which no store keeps). */
static long mt_unescape(const char *s, size_t n, char *out)
{
    char *o = out;
    for (size_t i = 0; i < n; i++) {
        if (s[i] != '\\') {
            *o++ = s[i];
            continue;
        }
        if (++i == n)
            return -1;
        char c = s[i];
        static const char from[] = "\"\\/bfnrt", to[] = "\"\\/\b\f\n\r\t";
        const char *simple = c ? strchr(from, c) : NULL;
        if (simple) {
            *o++ = to[simple - from];
            continue;
        }
        uint64_t cp, lo;
        if (c != 'u' || n - i < 5 ||
            edr_hex_parse(s + i + 1, 4, EDR_HEX_ANY_CASE, &cp) != 0)
            return -1;
        i += 4;
        if (cp >= 0xD800 && cp <= 0xDBFF) {
            if (n - i < 7 || s[i + 1] != '\\' || s[i + 2] != 'u' ||
                edr_hex_parse(s + i + 3, 4, EDR_HEX_ANY_CASE, &lo) != 0 ||
                lo < 0xDC00 || lo > 0xDFFF)
                return -1;
            cp = 0x10000 + ((cp - 0xD800) << 10) + (lo - 0xDC00);
            i += 6;
        } else if ((cp >= 0xDC00 && cp <= 0xDFFF) || cp == 0) {
            return -1;
        }
        /* 6 escaped bytes (12 for a pair) never decode to more than 4. */
        if (cp < 0x80) {
            *o++ = (char)cp;
        } else if (cp < 0x800) {
            *o++ = (char)(0xC0 | cp >> 6);
            *o++ = (char)(0x80 | (cp & 0x3F));
        } else if (cp < 0x10000) {
            *o++ = (char)(0xE0 | cp >> 12);
            *o++ = (char)(0x80 | (cp >> 6 & 0x3F));
            *o++ = (char)(0x80 | (cp & 0x3F));
        } else {
            *o++ = (char)(0xF0 | cp >> 18);
            *o++ = (char)(0x80 | (cp >> 12 & 0x3F));
            *o++ = (char)(0x80 | (cp >> 6 & 0x3F));
            *o++ = (char)(0x80 | (cp & 0x3F));
        }
    }
    return (long)(o - out);
}

/* The body of the top-level "assetId" member's value when it is a string
 * (the last one, as jsonb keeps it): *body, *n; 0 when there is none or
 * the text is not an object. Keys are compared as written: an escaped
 * spelling of "assetId" is not it (jsonb would decode it; no producer
 * writes one). */
static int mt_asset_span(const char *p, size_t len, const char **body,
                         size_t *n)
{
    const char *end = p + len, *q;
    int found = 0;
    p = mt_ws(p, end);
    if (p == end || *p != '{')
        return 0;
    p = mt_ws(p + 1, end);
    if (p < end && *p == '}')
        return 0;
    while (p < end && *p == '"') {
        const char *k = p + 1;
        if (!(q = mt_skip_str(p, end)))
            return 0;
        int is_asset = q - 1 - k == 7 && memcmp(k, "assetId", 7) == 0;
        p = mt_ws(q, end);
        if (p == end || *p != ':')
            return 0;
        p = mt_ws(p + 1, end);
        if (p == end)
            return 0;
        if (*p == '"') {
            if (!(q = mt_skip_str(p, end)))
                return 0;
            if (is_asset) {
                *body = p + 1;
                *n = (size_t)(q - 1 - (p + 1));
                found = 1;
            }
        } else {
            if (!(q = mt_skip_value(p, end)))
                return 0;
            if (is_asset)
                found = 0; /* a later non-string value replaces it */
        }
        p = mt_ws(q, end);
        if (p < end && *p == ',')
            p = mt_ws(p + 1, end);
        else
            break;
    }
    return found;
}

struct mem_entry *mt_entry_new(uint64_t hash, const char *const f[4],
                               const size_t len[4], const char *tid,
                               size_t tid_len, const char *json,
                               size_t json_len, const unsigned char *ck)
{
    const char *asset = NULL;
    size_t asset_raw = 0;
    int has_asset = mt_asset_span(json, json_len, &asset, &asset_raw);
    size_t total = sizeof(struct mem_entry) + len[0] + len[1] + len[2] +
                   len[3] + tid_len + json_len + 6 +
                   (has_asset ? asset_raw + 1 : 0);
    struct mem_entry *e = malloc(total);
    if (!e)
        return NULL;
    e->hash = hash;
    char *p = e->data;
    for (int i = 0; i < 4; i++) {
        e->len[i] = (uint32_t)len[i];
        memcpy(p, f[i], len[i]);
        p[len[i]] = '\0';
        p += len[i] + 1;
    }
    e->len[4] = (uint32_t)tid_len;
    memcpy(p, tid, tid_len);
    p[tid_len] = '\0';
    p += tid_len + 1;
    e->json_len = (uint32_t)json_len;
    memcpy(p, json, json_len);
    p[json_len] = '\0';
    p += json_len + 1;
    e->has_asset = 0;
    e->asset_len = 0;
    if (has_asset) {
        long n = mt_unescape(asset, asset_raw, p);
        if (n >= 0) {
            p[n] = '\0';
            e->has_asset = 1;
            e->asset_len = (uint32_t)n;
        }
    }
    /* A replacement has the key of the entry it replaces: its connection
     * key is copied, not hashed again (SHA-256 is most of a put). */
    if (ck)
        memcpy(e->ck, ck, 32);
    else
        mt_entry_ck(e);
    return e;
}

void mt_entry_free(struct mem_entry *e)
{
    free(e);
}

int mt_entry_matches(const struct mem_entry *e, uint64_t hash,
                     const char *const f[4], const size_t len[4])
{
    if (e->hash != hash)
        return 0;
    const char *p = e->data;
    for (int i = 0; i < 4; i++) {
        if (e->len[i] != len[i] || memcmp(p, f[i], len[i]) != 0)
            return 0;
        p += len[i] + 1;
    }
    return 1;
}

void mt_key_fields(const struct edr_key *k, const char *f[4], size_t len[4])
{
    f[0] = k->counter_party_id;
    f[1] = k->counter_party_address;
    f[2] = k->query_checksum;
    f[3] = k->policy_checksum;
    for (int i = 0; i < 4; i++)
        len[i] = strlen(f[i]);
}

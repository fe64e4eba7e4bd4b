/* event.c: see event.h. Decodes one CloudEvents 1.0 JSON event of
 * schemas/README.md §1 with yajl's streaming parser.
 *
 * Three passes over the bytes, all bounded by len (the input is not
 * NUL-terminated): a size check, our own UTF-8 and \u-escape scan (yajl's
 * check cannot say at which byte it failed), then one yajl_parse with
 * callbacks. The callbacks validate members as they stream by and write
 * data.edr straight into a yajl_gen, so no tree is ever built. Members may
 * arrive in any order, so rules that depend on `type` are settled at the end.
 * All scratch memory (yajl's own included) comes from one arena per call that
 * starts on the stack; what struct event hands back is one malloc'd block
 * (pack_event).
 *
 * Member paths in error messages are dotted from the top level, with
 * [i] for array elements: "data.edr.transferProcessId", "data.edr.x[2].y".
 * The top-level value itself is called "top level". */
#include "schemas/event.h"

#include <yajl/yajl_gen.h>
#include <yajl/yajl_parse.h>

#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#ifdef __SSE2__
#include <emmintrin.h>
#endif

/* Deeper nesting than this is rejected. The contract sets no limit, but
 * stores and lookups walk entries recursively and yajl_gen stops at 128;
 * EDC's EDR entries are a few levels deep. Documented in schemas/README. */
#define EVENT_MAX_DEPTH 64

/* ------------------------------------------------------------------ */
/* Arena: bump allocation for yajl and our scratch, freed in one go.   */

#define ARENA_INLINE 16384
#define ARENA_ALIGN 16

struct arena_block {
    struct arena_block *next;
    size_t cap;
    _Alignas(ARENA_ALIGN) unsigned char data[];
};

struct arena {
    unsigned char *base; /* current block */
    size_t cap, used;
    unsigned char *last;       /* most recent allocation: grows in place */
    struct arena_block *spill; /* malloc'd blocks, freed by arena_release */
    _Alignas(ARENA_ALIGN) unsigned char first[ARENA_INLINE];
};

static size_t arena_round(size_t n)
{
    return (n + ARENA_ALIGN - 1) & ~(size_t)(ARENA_ALIGN - 1);
}

static void arena_init(struct arena *a)
{
    a->base = a->first;
    a->cap = sizeof(a->first);
    a->used = 0;
    a->last = NULL;
    a->spill = NULL;
}

/* Every allocation is preceded by a header holding its size, so realloc
 * knows how much to copy. yajl does not check for NULL, so running out of
 * memory aborts, as it would inside yajl with the default allocator. */
static void *arena_alloc(void *ctx, size_t n)
{
    struct arena *a = ctx;
    size_t need = ARENA_ALIGN + arena_round(n);

    if (need < n)
        abort();
    if (a->cap - a->used < need) {
        size_t cap = a->cap * 2;
        if (cap < need)
            cap = need;
        struct arena_block *b = malloc(sizeof(*b) + cap);
        if (!b)
            abort();
        b->next = a->spill;
        b->cap = cap;
        a->spill = b;
        a->base = b->data;
        a->cap = cap;
        a->used = 0;
    }
    unsigned char *p = a->base + a->used + ARENA_ALIGN;
    memcpy(p - sizeof(size_t), &n, sizeof(n));
    a->used += need;
    a->last = p;
    return p;
}

static void *arena_realloc(void *ctx, void *ptr, size_t n)
{
    struct arena *a = ctx;
    unsigned char *p = ptr;
    size_t old;

    if (!p)
        return arena_alloc(ctx, n);
    memcpy(&old, p - sizeof(size_t), sizeof(old));
    if (n <= old)
        return p;
    if (p == a->last) {
        size_t start = (size_t)(p - a->base) - ARENA_ALIGN;
        size_t need = ARENA_ALIGN + arena_round(n);
        if (need >= n && a->cap - start >= need) {
            memcpy(p - sizeof(size_t), &n, sizeof(n));
            a->used = start + need;
            return p;
        }
    }
    void *q = arena_alloc(ctx, n);
    memcpy(q, p, old);
    return q;
}

static void arena_free(void *ctx, void *ptr)
{
    (void)ctx;
    (void)ptr; /* everything goes at once in arena_release */
}

static void arena_release(struct arena *a)
{
    while (a->spill) {
        struct arena_block *b = a->spill;
        a->spill = b->next;
        free(b);
    }
}

/* ------------------------------------------------------------------ */
/* UTF-8 and \u escapes, checked before yajl sees the text.            */

#define ONES UINT64_C(0x0101010101010101)
#define HIGHS UINT64_C(0x8080808080808080)

static int hex4(const unsigned char *s, unsigned *out)
{
    unsigned v = 0;
    for (int i = 0; i < 4; i++) {
        unsigned c = s[i];
        if (c >= '0' && c <= '9')
            c -= '0';
        else if ((c | 0x20) >= 'a' && (c | 0x20) <= 'f')
            c = (c | 0x20) - 'a' + 10;
        else
            return -1;
        v = v << 4 | c;
    }
    *out = v;
    return 0;
}

enum scan_result { SCAN_OK, SCAN_UTF8, SCAN_SURROGATE, SCAN_NUL };

/* Checks that s[0..n) is strict UTF-8 (no overlongs, no surrogates,
 * nothing above U+10FFFF) and that no \u escape encodes U+0000 or an
 * unpaired surrogate: yajl would turn those into bytes that are not
 * UTF-8 or into C strings that end early. A backslash is only legal JSON
 * inside a string, so escapes are found without tracking strings; text
 * that is not JSON is left for yajl to report. *at = offending byte. */
static enum scan_result scan_text(const unsigned char *s, size_t n, size_t *at)
{
    const uint64_t backslashes = ONES * '\\';
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
        unsigned c = s[i];
        if (c < 0x80) {
            if (c != '\\') {
                i++;
                continue;
            }
            unsigned cp, lo;
            if (n - i >= 6 && s[i + 1] == 'u' && hex4(s + i + 2, &cp) == 0) {
                *at = i;
                if (cp == 0)
                    return SCAN_NUL;
                if (cp >= 0xDC00 && cp <= 0xDFFF)
                    return SCAN_SURROGATE;
                if (cp >= 0xD800 && cp <= 0xDBFF) {
                    if (n - i < 12 || s[i + 6] != '\\' || s[i + 7] != 'u' ||
                        hex4(s + i + 8, &lo) != 0 || lo < 0xDC00 || lo > 0xDFFF)
                        return SCAN_SURROGATE;
                    i += 12;
                } else {
                    i += 6;
                }
            } else if (n - i >= 2 && s[i + 1] < 0x80) {
                i += 2; /* \" or \\: the next byte is not a delimiter */
            } else {
                i++;
            }
            continue;
        }
        size_t k;
        unsigned lo_min = 0x80, lo_max = 0xBF;
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
            *at = i;
            return SCAN_UTF8;
        }
        if (n - i <= k || s[i + 1] < lo_min || s[i + 1] > lo_max) {
            *at = i;
            return SCAN_UTF8;
        }
        for (size_t j = 2; j <= k; j++) {
            if ((s[i + j] & 0xC0) != 0x80) {
                *at = i;
                return SCAN_UTF8;
            }
        }
        i += k + 1;
    }
    return SCAN_OK;
}

/* ------------------------------------------------------------------ */
/* RFC 3339 date-time (section 5.6), strict: T and Z in either case.   */

static int digits(const char *s, size_t n, int *out)
{
    int v = 0;
    for (size_t i = 0; i < n; i++) {
        if (s[i] < '0' || s[i] > '9')
            return -1;
        v = v * 10 + (s[i] - '0');
    }
    *out = v;
    return 0;
}

static bool rfc3339_valid(const char *s, size_t n)
{
    static const int mdays[] = {31, 29, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31};
    int y, mo, d, h, mi, sec, oh, om;
    size_t i;

    /* 2025-01-31T12:34:56 is 19 bytes, then [.frac] and Z or +hh:mm. */
    if (n < 20 || digits(s, 4, &y) || s[4] != '-' || digits(s + 5, 2, &mo) ||
        s[7] != '-' || digits(s + 8, 2, &d) || (s[10] != 'T' && s[10] != 't') ||
        digits(s + 11, 2, &h) || s[13] != ':' || digits(s + 14, 2, &mi) ||
        s[16] != ':' || digits(s + 17, 2, &sec))
        return false;
    if (mo < 1 || mo > 12 || d < 1 || d > mdays[mo - 1] || h > 23 || mi > 59 ||
        sec > 60)
        return false;
    if (mo == 2 && d == 29 && !(y % 4 == 0 && (y % 100 != 0 || y % 400 == 0)))
        return false;
    i = 19;
    if (s[i] == '.') {
        size_t start = ++i;
        while (i < n && s[i] >= '0' && s[i] <= '9')
            i++;
        if (i == start)
            return false;
    }
    if (i < n && (s[i] == 'Z' || s[i] == 'z'))
        return i + 1 == n;
    if (n - i != 6 || (s[i] != '+' && s[i] != '-') ||
        digits(s + i + 1, 2, &oh) || s[i + 3] != ':' ||
        digits(s + i + 4, 2, &om))
        return false;
    return oh <= 23 && om <= 59;
}

/* ------------------------------------------------------------------ */
/* The streaming decoder.                                              */

enum role {
    ROLE_ENVELOPE,  /* the top-level object */
    ROLE_DATA,      /* data */
    ROLE_EDR,       /* data.edr: copied to the entry minus three members */
    ROLE_EDR_INNER, /* anything inside data.edr: copied as is */
};

enum member {
    M_OTHER, /* ignored, or copied inside data.edr */
    M_SPECVERSION,
    M_ID,
    M_SOURCE,
    M_TYPE,
    M_TIME,
    M_SUBJECT,
    M_DATACONTENTTYPE,
    M_DATA,
    M_COUNTER_PARTY_ID,
    M_COUNTER_PARTY_ADDRESS,
    M_QUERY_CHECKSUM,
    M_POLICY_CHECKSUM,
    M_EDR,
    M_TRANSFER_PROCESS_ID,
    M_EDR_DROPPED,  /* @type, @context, providerId of data.edr */
    M_EDR_TRANSFER, /* data.edr.transferProcessId */
    M_COUNT
};

/* Members of the contract seen so far, as bits of struct decoder.seen:
 * for "missing" at the end and as their own duplicate check. */
#define SEEN(m) (1u << (m))
_Static_assert(M_COUNT <= 32, "decoder.seen has 32 bits");

struct frame {
    const char *key; /* maps: name of the member being read (for paths) */
    size_t key_len;
    size_t count; /* arrays: elements begun so far */
    uint32_t serial;
    bool is_array;
    unsigned char role;
    unsigned char member;
};

struct dup_slot {
    const char *key; /* NULL: empty */
    uint64_t hash;
    uint32_t serial;
    uint32_t len;
};

#define DUP_INLINE 64

enum edr_state {
    EDR_ABSENT,
    EDR_COPYING, /* being written to gen */
    EDR_DONE,    /* complete in gen */
    EDR_IGNORED, /* skipped because type is edr.expired */
    EDR_BROKEN,  /* broke a rule before type was known: edr_err */
};

struct decoder {
    struct event *ev;
    const unsigned char *buf;
    size_t len;
    char *errstr;
    size_t errstr_size;
    enum event_error err;

    struct frame frames[EVENT_MAX_DEPTH + 1]; /* [1] is the top level */
    int depth;
    size_t skip; /* > 0: inside an ignored container, this many deep */
    uint32_t serial;
    unsigned seen;

    enum edr_state edr;
    char edr_err[128];
    char *edr_transfer_id;  /* data.edr.transferProcessId */
    char *data_transfer_id; /* data.transfer_process_id */
    bool data_transfer_bad; /* ... present but not a string */
    yajl_gen gen;           /* the entry: data.edr re-serialized */

    struct dup_slot *dups;
    size_t dup_cap, dup_used;
    struct arena arena;
    yajl_alloc_funcs afs;
    struct dup_slot dup_inline[DUP_INLINE];
};

static int failv(struct decoder *d, enum event_error e, const char *fmt,
                 va_list ap) __attribute__((format(printf, 3, 0)));

static int failv(struct decoder *d, enum event_error e, const char *fmt,
                 va_list ap)
{
    d->err = e;
    if (d->errstr && d->errstr_size)
        vsnprintf(d->errstr, d->errstr_size, fmt, ap);
    return 0; /* what a yajl callback returns to stop the parse */
}

static int fail(struct decoder *d, enum event_error e, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

static int fail(struct decoder *d, enum event_error e, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    failv(d, e, fmt, ap);
    va_end(ap);
    return 0;
}

/* Appends s[0..n) to out (of size cap, at *pos) with bytes that could
 * confuse a log reader escaped; truncates with "...". */
static void put_text(char *out, size_t cap, size_t *pos, const char *s,
                     size_t n, size_t max)
{
    static const char hex[] = "0123456789abcdef";
    for (size_t i = 0; i < n; i++) {
        unsigned char c = (unsigned char)s[i];
        if (i == max) {
            for (int k = 0; k < 3 && *pos + 1 < cap; k++)
                out[(*pos)++] = '.';
            break;
        }
        if (c >= 0x20 && c < 0x7f && c != '\\' && c != '\'') {
            if (*pos + 1 < cap)
                out[(*pos)++] = (char)c;
        } else if (*pos + 4 < cap) {
            out[(*pos)++] = '\\';
            out[(*pos)++] = 'x';
            out[(*pos)++] = hex[c >> 4];
            out[(*pos)++] = hex[c & 15];
        }
    }
    if (cap)
        out[*pos < cap ? *pos : cap - 1] = '\0';
}

/* Writes the path of the member or element currently read at depth
 * d->depth into out: "data.edr.list[3].name". */
static void render_path(const struct decoder *d, char *out, size_t cap)
{
    size_t pos = 0;
    if (cap)
        out[0] = '\0';
    for (int i = 1; i <= d->depth; i++) {
        const struct frame *f = &d->frames[i];
        if (f->is_array) {
            char idx[24];
            int m = snprintf(idx, sizeof(idx), "[%zu]",
                             f->count ? f->count - 1 : 0);
            put_text(out, cap, &pos, idx, (size_t)m, sizeof(idx));
        } else {
            if (i > 1)
                put_text(out, cap, &pos, ".", 1, 1);
            put_text(out, cap, &pos, f->key, f->key_len, 64);
        }
    }
}

/* A NUL-terminated copy in the arena: strings of the event live there
 * until pack_event moves them all into one malloc'd block. */
static char *copy_str(struct decoder *d, const unsigned char *s, size_t n)
{
    char *p = arena_alloc(&d->arena, n + 1);
    memcpy(p, s, n);
    p[n] = '\0';
    return p;
}

static bool is_type_known(const struct decoder *d)
{
    return d->ev->type != 0;
}

/* data.edr broke a rule (msg names it). If the type is known to need the
 * EDR, that rejects the event now; if the type is not known yet, the
 * verdict waits for the end, and the rest of data.edr is skipped:
 * `open_inside` containers are open below data (counting one being
 * opened right now). */
static int edr_broken(struct decoder *d, const char *msg, size_t open_inside)
{
    if (is_type_known(d))
        return fail(d, EVENT_ERR_SCHEMA, "%s", msg);
    d->edr = EDR_BROKEN;
    snprintf(d->edr_err, sizeof(d->edr_err), "%s", msg);
    while (d->depth > 2)
        d->depth--;
    d->skip = open_inside;
    return 1;
}

static size_t edr_open_below_data(const struct decoder *d)
{
    return (size_t)(d->depth - 2);
}

static bool gen_ok(yajl_gen_status s)
{
    return s == yajl_gen_status_ok;
}

static int gen_failed(struct decoder *d)
{
    return fail(d, EVENT_ERR_SCHEMA, "data.edr: cannot be re-serialized");
}

/* ---- the entry -------------------------------------- */

static int out_begin(struct decoder *d)
{
    d->gen = yajl_gen_alloc(&d->afs);
    if (!d->gen)
        return gen_failed(d);
    return gen_ok(yajl_gen_map_open(d->gen)) ? 1 : gen_failed(d);
}

static int out_open(struct decoder *d, bool is_array)
{
    yajl_gen_status gs =
        is_array ? yajl_gen_array_open(d->gen) : yajl_gen_map_open(d->gen);
    return gen_ok(gs) ? 1 : gen_failed(d);
}

static int out_close(struct decoder *d, bool is_array)
{
    yajl_gen_status gs =
        is_array ? yajl_gen_array_close(d->gen) : yajl_gen_map_close(d->gen);
    return gen_ok(gs) ? 1 : gen_failed(d);
}

static int out_key(struct decoder *d, const unsigned char *k, size_t n)
{
    return gen_ok(yajl_gen_string(d->gen, k, n)) ? 1 : gen_failed(d);
}

static void out_result(struct decoder *d, const unsigned char **out,
                       size_t *len)
{
    yajl_gen_get_buf(d->gen, out, len);
}

/* Validates a required non-empty key string of data and keeps it. */
static int take_key_field(struct decoder *d, char **dst, const char *name,
                          const unsigned char *s, size_t n)
{
    if (!s || n == 0)
        return fail(d, EVENT_ERR_SCHEMA, "data.%s: must be a non-empty string",
                    name);
    if (n > EDR_KEY_FIELD_MAX)
        return fail(d, EVENT_ERR_SCHEMA, "data.%s: longer than %d bytes", name,
                    EDR_KEY_FIELD_MAX);
    *dst = copy_str(d, s, n);
    return 1;
}

static int take_type(struct decoder *d, const unsigned char *s, size_t n)
{
    static const struct {
        const char *name;
        enum event_type type;
    } types[] = {{"edr.negotiated", EVENT_NEGOTIATED},
                 {"edr.renewed", EVENT_RENEWED},
                 {"edr.expired", EVENT_EXPIRED}};
    char shown[96];
    size_t pos = 0;

    if (!s)
        return fail(d, EVENT_ERR_SCHEMA, "type: must be a string");
    for (size_t i = 0; i < sizeof(types) / sizeof(types[0]); i++) {
        if (strlen(types[i].name) == n && memcmp(types[i].name, s, n) == 0) {
            d->ev->type = types[i].type;
            break;
        }
    }
    if (!d->ev->type) {
        put_text(shown, sizeof(shown), &pos, (const char *)s, n, 64);
        return fail(d, EVENT_ERR_SCHEMA, "type: unknown value '%s'", shown);
    }
    /* Now that the type is known, settle what was waiting for it. */
    if (d->ev->type != EVENT_EXPIRED) {
        if (d->data_transfer_id || d->data_transfer_bad)
            return fail(d, EVENT_ERR_SCHEMA,
                        "data.transfer_process_id: only allowed for "
                        "edr.expired");
        if (d->edr == EDR_BROKEN)
            return fail(d, EVENT_ERR_SCHEMA, "%s", d->edr_err);
    } else if (d->data_transfer_bad) {
        return fail(d, EVENT_ERR_SCHEMA,
                    "data.transfer_process_id: must be a string");
    }
    return 1;
}

static int take_transfer_process_id(struct decoder *d, const unsigned char *s,
                                    size_t n)
{
    if (is_type_known(d) && d->ev->type != EVENT_EXPIRED)
        return fail(d, EVENT_ERR_SCHEMA,
                    "data.transfer_process_id: only allowed for edr.expired");
    if (!s) {
        if (is_type_known(d))
            return fail(d, EVENT_ERR_SCHEMA,
                        "data.transfer_process_id: must be a string");
        d->data_transfer_bad = true;
        return 1;
    }
    d->data_transfer_id = copy_str(d, s, n);
    return 1;
}

/* A scalar arrived where an object is required, or (s == NULL) a value
 * that is not a string where a string is; s/n is a string value. */
static int envelope_value(struct decoder *d, unsigned member,
                          const unsigned char *s, size_t n)
{
    struct event *ev = d->ev;

    switch (member) {
    case M_SPECVERSION:
        if (!s || n != 3 || memcmp(s, "1.0", 3) != 0)
            return fail(d, EVENT_ERR_SCHEMA, "specversion: must be \"1.0\"");
        return 1;
    case M_ID:
    case M_SOURCE: {
        const char *name = member == M_ID ? "id" : "source";
        if (!s || n == 0)
            return fail(d, EVENT_ERR_SCHEMA, "%s: must be a non-empty string",
                        name);
        *(member == M_ID ? &ev->id : &ev->source) = copy_str(d, s, n);
        return 1;
    }
    case M_TYPE:
        return take_type(d, s, n);
    case M_TIME:
        if (!s || !rfc3339_valid((const char *)s, n))
            return fail(d, EVENT_ERR_SCHEMA,
                        "time: must be an RFC 3339 date-time");
        return 1;
    case M_SUBJECT:
        if (!s)
            return fail(d, EVENT_ERR_SCHEMA, "subject: must be a string");
        ev->subject = copy_str(d, s, n);
        return 1;
    case M_DATACONTENTTYPE:
        if (!s || n != 16 || memcmp(s, "application/json", 16) != 0)
            return fail(d, EVENT_ERR_SCHEMA,
                        "datacontenttype: must be application/json");
        return 1;
    case M_DATA:
        return fail(d, EVENT_ERR_SCHEMA, "data: must be an object");
    default:
        return 1; /* extension attribute: ignored */
    }
}

static int data_value(struct decoder *d, unsigned member,
                      const unsigned char *s, size_t n)
{
    struct event *ev = d->ev;

    switch (member) {
    case M_COUNTER_PARTY_ID:
        return take_key_field(d, &ev->counter_party_id, "counter_party_id", s,
                              n);
    case M_COUNTER_PARTY_ADDRESS:
        return take_key_field(d, &ev->counter_party_address,
                              "counter_party_address", s, n);
    case M_QUERY_CHECKSUM:
        return take_key_field(d, &ev->query_checksum, "query_checksum", s, n);
    case M_POLICY_CHECKSUM:
        return take_key_field(d, &ev->policy_checksum, "policy_checksum", s, n);
    case M_EDR:
        if (is_type_known(d) && ev->type == EVENT_EXPIRED)
            return 1;
        return edr_broken(d, "data.edr: must be an object", 0);
    case M_TRANSFER_PROCESS_ID:
        return take_transfer_process_id(d, s, n);
    default:
        return 1;
    }
}

/* Bookkeeping common to every value: depth 0 means the top level. */
static int value_start(struct decoder *d)
{
    if (d->depth == 0)
        return fail(d, EVENT_ERR_SCHEMA, "top level: must be a JSON object");
    struct frame *f = &d->frames[d->depth];
    if (f->is_array)
        f->count++;
    return 1;
}

static bool in_input(const struct decoder *d, const unsigned char *p, size_t n)
{
    uintptr_t b = (uintptr_t)d->buf, q = (uintptr_t)p;
    return q >= b && q <= b + d->len && n <= b + d->len - q;
}

/* A string value yajl handed over in place had no escapes in the input,
 * so it holds no quote, backslash or control character (scan_text and
 * yajl's lexer checked), and its quoted form in the input is already
 * compact JSON. yajl_gen_number writes any token verbatim with the right
 * separators; giving it the quoted text saves re-escaping byte by byte,
 * which is most of the work for large EDRs. Escaped strings (decoded into
 * yajl's buffer) go through yajl_gen_string. */
static yajl_gen_status gen_string_value(struct decoder *d,
                                        const unsigned char *s, size_t n)
{
    if (in_input(d, s, n) && s > d->buf && s + n < d->buf + d->len &&
        s[-1] == '"' && s[n] == '"')
        return yajl_gen_number(d->gen, (const char *)s - 1, n + 2);
    return yajl_gen_string(d->gen, s, n);
}

/* kind: 'n' null, 'b' boolean, '#' number, 's' string. */
static int on_scalar(struct decoder *d, char kind, const unsigned char *s,
                     size_t n)
{
    if (d->skip)
        return 1;
    if (!value_start(d))
        return 0;
    struct frame *f = &d->frames[d->depth];
    const unsigned char *str = kind == 's' ? s : NULL;

    switch (f->role) {
    case ROLE_ENVELOPE:
        return envelope_value(d, f->member, str, n);
    case ROLE_DATA:
        return data_value(d, f->member, str, n);
    case ROLE_EDR:
        if (f->member == M_EDR_DROPPED)
            return 1;
        if (f->member == M_EDR_TRANSFER) {
            if (!str || n == 0)
                return edr_broken(d,
                                  "data.edr.transferProcessId: must be a "
                                  "non-empty string",
                                  edr_open_below_data(d));
            d->edr_transfer_id = copy_str(d, s, n);
        }
        break;
    default:
        break;
    }
    /* Inside data.edr: copy the value. */
    yajl_gen_status gs;
    switch (kind) {
    case 'n':
        gs = yajl_gen_null(d->gen);
        break;
    case 'b':
        gs = yajl_gen_bool(d->gen, n != 0);
        break;
    case '#':
        gs = yajl_gen_number(d->gen, (const char *)s, n);
        break;
    default:
        gs = gen_string_value(d, s, n);
        break;
    }
    return gen_ok(gs) ? 1 : gen_failed(d);
}

static int push(struct decoder *d, bool is_array, enum role role)
{
    if (d->depth >= EVENT_MAX_DEPTH)
        return fail(d, EVENT_ERR_SCHEMA, "nested deeper than %d levels",
                    EVENT_MAX_DEPTH);
    struct frame *f = &d->frames[++d->depth];
    f->key = NULL;
    f->key_len = 0;
    f->count = 0;
    f->serial = ++d->serial;
    f->is_array = is_array;
    f->role = (unsigned char)role;
    f->member = M_OTHER;
    return 1;
}

static int begin_skip(struct decoder *d)
{
    if ((size_t)d->depth + 1 > EVENT_MAX_DEPTH)
        return fail(d, EVENT_ERR_SCHEMA, "nested deeper than %d levels",
                    EVENT_MAX_DEPTH);
    d->skip = 1;
    return 1;
}

static int on_open(struct decoder *d, bool is_array)
{
    if (d->skip) {
        if ((size_t)d->depth + d->skip + 1 > EVENT_MAX_DEPTH)
            return fail(d, EVENT_ERR_SCHEMA, "nested deeper than %d levels",
                        EVENT_MAX_DEPTH);
        d->skip++;
        return 1;
    }
    if (d->depth == 0) {
        if (is_array)
            return fail(d, EVENT_ERR_SCHEMA,
                        "top level: must be a JSON object");
        return push(d, false, ROLE_ENVELOPE);
    }
    value_start(d);
    struct frame *f = &d->frames[d->depth];
    unsigned member = f->member;

    switch (f->role) {
    case ROLE_ENVELOPE:
        if (member == M_OTHER)
            return begin_skip(d);
        if (member == M_DATA && !is_array)
            return push(d, false, ROLE_DATA);
        return envelope_value(d, member, NULL, 0);
    case ROLE_DATA:
        if (member == M_OTHER)
            return begin_skip(d);
        if (member == M_EDR) {
            if (is_type_known(d) && d->ev->type == EVENT_EXPIRED) {
                d->edr = EDR_IGNORED;
                return begin_skip(d);
            }
            if (is_array)
                return edr_broken(d, "data.edr: must be an object", 1);
            if (!push(d, false, ROLE_EDR))
                return 0;
            d->edr = EDR_COPYING;
            return out_begin(d);
        }
        if (member == M_TRANSFER_PROCESS_ID) {
            if (!take_transfer_process_id(d, NULL, 0))
                return 0;
            return begin_skip(d);
        }
        return data_value(d, member, NULL, 0);
    case ROLE_EDR:
        if (member == M_EDR_DROPPED)
            return begin_skip(d);
        if (member == M_EDR_TRANSFER)
            return edr_broken(d,
                              "data.edr.transferProcessId: must be a "
                              "non-empty string",
                              edr_open_below_data(d) + 1);
        break;
    default:
        break;
    }
    if (!push(d, is_array, ROLE_EDR_INNER))
        return 0;
    return out_open(d, is_array);
}

static int on_close(struct decoder *d, bool is_array)
{
    (void)is_array; /* yajl guarantees matching brackets */
    if (d->skip) {
        d->skip--;
        return 1;
    }
    struct frame *f = &d->frames[d->depth];
    if (f->role == ROLE_EDR || f->role == ROLE_EDR_INNER) {
        if (!out_close(d, f->is_array))
            return 0;
        if (f->role == ROLE_EDR)
            d->edr = EDR_DONE;
    }
    d->depth--;
    return 1;
}

/* Member names are short: mix them a word at a time (FNV-1a byte by byte
 * was the decoder's hottest loop). Not for hostile collision resistance:
 * a collision only costs a probe and a memcmp. */
static uint64_t key_hash(const unsigned char *k, size_t n, uint32_t serial)
{
    const uint64_t mul = UINT64_C(0x9e3779b97f4a7c15);
    const unsigned char *end = k + n;
    uint64_t h = (serial + n) * mul, w = 0;
    uint32_t a, b;

    /* Whole loads only (the last ones may overlap): assembling a tail
     * byte by byte stalls on store forwarding. */
    if (n >= 8) {
        for (; end - k > 8; k += 8) {
            memcpy(&w, k, 8);
            h = (h ^ w) * mul;
            h ^= h >> 29;
        }
        memcpy(&w, end - 8, 8);
    } else if (n >= 4) {
        memcpy(&a, k, 4);
        memcpy(&b, end - 4, 4);
        w = a | (uint64_t)b << 32;
    } else if (n > 0) {
        w = (uint64_t)k[0] | (uint64_t)k[n / 2] << 8 | (uint64_t)k[n - 1] << 16;
    }
    h = (h ^ w) * mul;
    h ^= h >> 32;
    return h * UINT64_C(0xd6e8feb86659fd93);
}

/* Records key k of the object `serial`; returns false if it was already
 * there. One open-addressing table for every object of the event, so a
 * huge object costs O(members), not O(members^2). */
static bool dup_insert(struct decoder *d, const char *k, size_t n,
                       uint32_t serial)
{
    if ((d->dup_used + 1) * 2 > d->dup_cap) {
        size_t cap = d->dup_cap * 2;
        struct dup_slot *t = arena_alloc(&d->arena, cap * sizeof(*t));
        memset(t, 0, cap * sizeof(*t));
        for (size_t i = 0; i < d->dup_cap; i++) {
            struct dup_slot *o = &d->dups[i];
            if (!o->key)
                continue;
            size_t j = o->hash & (cap - 1);
            while (t[j].key)
                j = (j + 1) & (cap - 1);
            t[j] = *o;
        }
        d->dups = t;
        d->dup_cap = cap;
    }
    uint64_t h = key_hash((const unsigned char *)k, n, serial);
    size_t j = h & (d->dup_cap - 1);
    for (;; j = (j + 1) & (d->dup_cap - 1)) {
        struct dup_slot *sl = &d->dups[j];
        if (!sl->key) {
            sl->key = k;
            sl->hash = h;
            sl->serial = serial;
            sl->len = (uint32_t)n;
            d->dup_used++;
            return true;
        }
        if (sl->hash == h && sl->serial == serial && sl->len == n &&
            memcmp(sl->key, k, n) == 0)
            return false;
    }
}

#define KEY_IS(lit) (n == sizeof(lit) - 1 && memcmp(k, lit, n) == 0)

static unsigned envelope_member(const char *k, size_t n)
{
    switch (n) {
    case 2:
        return KEY_IS("id") ? M_ID : M_OTHER;
    case 4:
        if (KEY_IS("type"))
            return M_TYPE;
        if (KEY_IS("time"))
            return M_TIME;
        return KEY_IS("data") ? M_DATA : M_OTHER;
    case 6:
        return KEY_IS("source") ? M_SOURCE : M_OTHER;
    case 7:
        return KEY_IS("subject") ? M_SUBJECT : M_OTHER;
    case 11:
        return KEY_IS("specversion") ? M_SPECVERSION : M_OTHER;
    case 15:
        return KEY_IS("datacontenttype") ? M_DATACONTENTTYPE : M_OTHER;
    default:
        return M_OTHER;
    }
}

static unsigned data_member(const char *k, size_t n)
{
    if (KEY_IS("counter_party_id"))
        return M_COUNTER_PARTY_ID;
    if (KEY_IS("counter_party_address"))
        return M_COUNTER_PARTY_ADDRESS;
    if (KEY_IS("query_checksum"))
        return M_QUERY_CHECKSUM;
    if (KEY_IS("policy_checksum"))
        return M_POLICY_CHECKSUM;
    if (KEY_IS("edr"))
        return M_EDR;
    if (KEY_IS("transfer_process_id"))
        return M_TRANSFER_PROCESS_ID;
    return M_OTHER;
}

static unsigned edr_member(const char *k, size_t n)
{
    if (KEY_IS("transferProcessId"))
        return M_EDR_TRANSFER;
    if (KEY_IS("@type") || KEY_IS("@context") || KEY_IS("providerId"))
        return M_EDR_DROPPED;
    return M_OTHER;
}

static int duplicate(struct decoder *d)
{
    const struct frame *f = &d->frames[d->depth];
    char path[160];

    render_path(d, path, sizeof(path));
    if (f->role == ROLE_EDR || f->role == ROLE_EDR_INNER) {
        char msg[sizeof(d->edr_err)];
        snprintf(msg, sizeof(msg), "%.*s: duplicate member",
                 (int)(sizeof(msg) - 20), path);
        return edr_broken(d, msg, edr_open_below_data(d));
    }
    return fail(d, EVENT_ERR_SCHEMA, "%s: duplicate member", path);
}

static int on_key(struct decoder *d, const unsigned char *key, size_t n)
{
    if (d->skip)
        return 1;
    struct frame *f = &d->frames[d->depth];
    const char *k = (const char *)key;

    /* A key without escapes points into the input, which outlives the
     * parse; one with escapes sits in a buffer yajl reuses: copy it. */
    if (!in_input(d, key, n)) {
        char *c = arena_alloc(&d->arena, n ? n : 1);
        memcpy(c, key, n);
        k = c;
    }
    f->key = k;
    f->key_len = n;
    switch (f->role) {
    case ROLE_ENVELOPE:
    case ROLE_DATA:
        f->member =
            (unsigned char)(f->role == ROLE_ENVELOPE ? envelope_member(k, n)
                                                     : data_member(k, n));
        /* A member of the contract is its own duplicate check. */
        if (f->member != M_OTHER) {
            if (d->seen & SEEN(f->member))
                return duplicate(d);
            d->seen |= SEEN(f->member);
        } else if (!dup_insert(d, k, n, f->serial)) {
            return duplicate(d);
        }
        return 1;
    case ROLE_EDR:
        f->member = (unsigned char)edr_member(k, n);
        break;
    default:
        break;
    }
    if (!dup_insert(d, k, n, f->serial))
        return duplicate(d);
    if (f->member == M_EDR_DROPPED)
        return 1;
    return out_key(d, key, n);
}

/* yajl callbacks */
static int cb_null(void *ctx)
{
    return on_scalar(ctx, 'n', NULL, 0);
}
static int cb_boolean(void *ctx, int b)
{
    return on_scalar(ctx, 'b', NULL, b != 0);
}
static int cb_number(void *ctx, const char *s, size_t n)
{
    return on_scalar(ctx, '#', (const unsigned char *)s, n);
}
static int cb_string(void *ctx, const unsigned char *s, size_t n)
{
    return on_scalar(ctx, 's', s, n);
}
static int cb_start_map(void *ctx)
{
    return on_open(ctx, false);
}
static int cb_map_key(void *ctx, const unsigned char *k, size_t n)
{
    return on_key(ctx, k, n);
}
static int cb_end_map(void *ctx)
{
    return on_close(ctx, false);
}
static int cb_start_array(void *ctx)
{
    return on_open(ctx, true);
}
static int cb_end_array(void *ctx)
{
    return on_close(ctx, true);
}

static const yajl_callbacks callbacks = {
    cb_null,    cb_boolean,     NULL,         NULL,
    cb_number,  cb_string,      cb_start_map, cb_map_key,
    cb_end_map, cb_start_array, cb_end_array};

/* Moves the event's strings (in the arena so far) and the entry into one
 * malloc'd block that ev->id heads, which event_clear frees: one
 * allocation per event instead of one per string. No string holds a NUL
 * (scan_text rejects \u0000; JSON has no raw control characters). */
static void pack_event(struct decoder *d, const unsigned char *entry,
                       size_t entry_len)
{
    struct event *ev = d->ev;
    char **f[] = {&ev->id,
                  &ev->source,
                  &ev->subject,
                  &ev->counter_party_id,
                  &ev->counter_party_address,
                  &ev->query_checksum,
                  &ev->policy_checksum,
                  &ev->transfer_id};
    size_t n = sizeof(f) / sizeof(f[0]), len[sizeof(f) / sizeof(f[0])];
    size_t total = entry ? entry_len + 1 : 0;

    for (size_t i = 0; i < n; i++) {
        len[i] = *f[i] ? strlen(*f[i]) + 1 : 0;
        total += len[i];
    }
    char *b = malloc(total), *o = b;
    if (!b)
        abort(); /* see arena_alloc */
    for (size_t i = 0; i < n; i++) {
        if (*f[i]) {
            memcpy(o, *f[i], len[i]);
            *f[i] = o;
            o += len[i];
        }
    }
    if (entry) {
        memcpy(o, entry, entry_len);
        o[entry_len] = '\0';
        ev->entry_json = o;
        ev->entry_len = entry_len;
    }
}

/* The rules that need the whole event, in the contract's order. */
static int finish(struct decoder *d)
{
    static const struct {
        unsigned member;
        const char *name;
    } required[] = {
        {M_SPECVERSION, "specversion"},
        {M_ID, "id"},
        {M_SOURCE, "source"},
        {M_TYPE, "type"},
        {M_DATA, "data"},
        {M_COUNTER_PARTY_ID, "data.counter_party_id"},
        {M_COUNTER_PARTY_ADDRESS, "data.counter_party_address"},
        {M_QUERY_CHECKSUM, "data.query_checksum"},
        {M_POLICY_CHECKSUM, "data.policy_checksum"},
    };
    struct event *ev = d->ev;

    for (size_t i = 0; i < sizeof(required) / sizeof(required[0]); i++) {
        if (!(d->seen & SEEN(required[i].member)))
            return fail(d, EVENT_ERR_SCHEMA, "%s: missing", required[i].name);
    }
    if (ev->type == EVENT_EXPIRED) {
        ev->transfer_id = d->data_transfer_id;
        pack_event(d, NULL, 0);
        return 1;
    }
    /* take_type already rejected a broken edr or transfer_process_id that
     * came before the type; these are the ones after it. */
    if (d->edr == EDR_ABSENT)
        return fail(d, EVENT_ERR_SCHEMA, "data.edr: missing");
    if (d->edr != EDR_DONE)
        return fail(d, EVENT_ERR_SCHEMA, "%s", d->edr_err);
    if (!d->edr_transfer_id)
        return fail(d, EVENT_ERR_SCHEMA, "data.edr.transferProcessId: missing");
    const unsigned char *out;
    size_t out_len;
    out_result(d, &out, &out_len);
    ev->transfer_id = d->edr_transfer_id;
    pack_event(d, out, out_len);
    return 1;
}

static void json_error(struct decoder *d, yajl_handle h, bool at_end)
{
    size_t at = at_end ? d->len : yajl_get_bytes_consumed(h);
    unsigned char *msg = yajl_get_error(h, 0, d->buf, d->len);
    char *text = (char *)msg;
    size_t n;

    if (text && strncmp(text, "parse error: ", 13) == 0)
        text += 13;
    n = text ? strlen(text) : 0;
    while (n && (text[n - 1] == '\n' || text[n - 1] == ' '))
        n--;
    fail(d, EVENT_ERR_JSON, "invalid JSON at byte %zu: %.*s", at, (int)n,
         text ? text : "");
    if (msg)
        yajl_free_error(h, msg);
}

/* Per-parse state of the decoder (everything but the input and errstr). */
static void decoder_begin(struct decoder *d)
{
    d->depth = 0;
    d->skip = 0;
    d->serial = 0;
    d->seen = 0;
    d->edr = EDR_ABSENT;
    d->edr_err[0] = '\0';
    d->edr_transfer_id = NULL;
    d->data_transfer_id = NULL;
    d->data_transfer_bad = false;
    d->gen = NULL;
    memset(d->dup_inline, 0, sizeof(d->dup_inline));
    d->dups = d->dup_inline;
    d->dup_cap = DUP_INLINE;
    d->dup_used = 0;
    arena_init(&d->arena);
    d->afs.malloc = arena_alloc;
    d->afs.realloc = arena_realloc;
    d->afs.free = arena_free;
    d->afs.ctx = &d->arena;
}

static void decoder_end(struct decoder *d)
{
    if (d->gen)
        yajl_gen_free(d->gen);
    d->gen = NULL;
    d->edr_transfer_id = NULL; /* in the arena */
    d->data_transfer_id = NULL;
    arena_release(&d->arena);
}

enum event_error event_decode(struct event *ev, const void *buf, size_t len,
                              char *errstr, size_t errstr_size)
{
    struct decoder dstack;
    struct decoder *d = &dstack;
    yajl_handle h = NULL;
    size_t at = 0;

    memset(ev, 0, sizeof(*ev));
    if (errstr && errstr_size)
        errstr[0] = '\0';
    d->ev = ev;
    d->buf = buf;
    d->len = len;
    d->errstr = errstr;
    d->errstr_size = errstr_size;
    d->err = EVENT_OK;

    if (len > EVENT_MAX_BYTES) {
        fail(d, EVENT_ERR_SIZE, "event larger than 1 MiB");
        return EVENT_ERR_SIZE;
    }
    switch (scan_text(buf, len, &at)) {
    case SCAN_OK:
        break;
    case SCAN_UTF8:
        fail(d, EVENT_ERR_UTF8, "not valid UTF-8 at byte %zu", at);
        return EVENT_ERR_UTF8;
    case SCAN_SURROGATE:
        fail(d, EVENT_ERR_UTF8,
             "not valid UTF-8 at byte %zu: \\u escape of an unpaired "
             "surrogate",
             at);
        return EVENT_ERR_UTF8;
    case SCAN_NUL:
        fail(d, EVENT_ERR_SCHEMA,
             "\\u0000 at byte %zu: U+0000 is not allowed in strings", at);
        return EVENT_ERR_SCHEMA;
    }

    decoder_begin(d);
    h = yajl_alloc(&callbacks, &d->afs, d);
    if (!h) {
        fail(d, EVENT_ERR_JSON, "cannot allocate a JSON parser");
        goto done;
    }
    /* scan_text has checked every byte already. */
    yajl_config(h, yajl_dont_validate_strings, 1);
    yajl_status st = yajl_parse(h, buf, len);
    bool at_end = false;
    if (st == yajl_status_ok) {
        st = yajl_complete_parse(h);
        at_end = true; /* yajl's offset is now into its own last chunk */
    }
    if (st == yajl_status_error)
        json_error(d, h, at_end);
    else if (st == yajl_status_ok && !finish(d) && d->err == EVENT_OK)
        d->err = EVENT_ERR_SCHEMA;
    else if (st == yajl_status_client_canceled && d->err == EVENT_OK)
        fail(d, EVENT_ERR_SCHEMA, "decoder stopped without a reason");
    /* Otherwise client_canceled: a callback has filled d->err. */

done:
    if (h)
        yajl_free(h);
    if (d->err != EVENT_OK)
        memset(ev, 0, sizeof(*ev)); /* its strings were in the arena */
    decoder_end(d);
    return d->err;
}

void event_clear(struct event *ev)
{
    if (!ev)
        return;
    free(ev->id); /* the block of every string (pack_event) */
    memset(ev, 0, sizeof(*ev));
}

struct edr_key event_key(const struct event *ev)
{
    struct edr_key k = {ev->counter_party_id, ev->counter_party_address,
                        ev->query_checksum, ev->policy_checksum};
    return k;
}

const char *event_type_name(enum event_type t)
{
    switch (t) {
    case EVENT_NEGOTIATED:
        return "edr.negotiated";
    case EVENT_RENEWED:
        return "edr.renewed";
    case EVENT_EXPIRED:
        return "edr.expired";
    }
    return NULL;
}

const char *event_error_class(enum event_error e)
{
    switch (e) {
    case EVENT_OK:
        return "ok";
    case EVENT_ERR_SIZE:
        return "size";
    case EVENT_ERR_UTF8:
        return "utf8";
    case EVENT_ERR_JSON:
        return "json";
    case EVENT_ERR_SCHEMA:
        return "schema";
    }
    return "unknown";
}

/* event_decode.c: event_decode() (see event.h), a streaming decoder over
 * yajl's parser.
 *
 * Three passes over the bytes, all bounded by len (the input is not
 * NUL-terminated): a size check, json_scan_text (UTF-8 and \u escapes),
 * then one yajl_parse with callbacks. The callbacks validate members as
 * they stream by (event_rules.c) and write data.edr straight into a
 * yajl_gen (event_edr.c), so no tree is ever built. Members may arrive in
 * any order, so rules that depend on `type` are settled at the end.
 *
 * Memory: all scratch (yajl's own included) comes from one arena per call
 * that starts on the stack; what struct event hands back is one malloc'd
 * block. yajl cannot report a failed allocation (it writes to whatever its
 * allocator returns), so running out of memory longjmps from dec_alloc
 * back to parse(): everything yajl and we hold is in the arena, released
 * at once, so nothing leaks and the result is EVENT_ERR_NOMEM. */
#include "schemas/event_decoder.h"

#include "schemas/json_scan.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

void *dec_alloc(struct decoder *d, size_t n)
{
    void *p = arena_alloc(&d->arena, n);
    if (!p)
        longjmp(*d->oom, 1);
    return p;
}

char *dec_copy_str(struct decoder *d, const unsigned char *s, size_t n)
{
    char *p = dec_alloc(d, n + 1);
    memcpy(p, s, n);
    p[n] = '\0';
    return p;
}

/* yajl's allocator: the arena, with the same no-NULL promise. */
static void *yajl_arena_malloc(void *ctx, size_t n)
{
    return dec_alloc(ctx, n);
}

static void *yajl_arena_realloc(void *ctx, void *ptr, size_t n)
{
    struct decoder *d = ctx;
    void *p = arena_realloc(&d->arena, ptr, n);
    if (!p)
        longjmp(*d->oom, 1);
    return p;
}

static void yajl_arena_free(void *ctx, void *ptr)
{
    (void)ctx;
    (void)ptr; /* everything goes at once in arena_release */
}

/* Bookkeeping common to every value: depth 0 means the top level. */
static int value_start(struct decoder *d)
{
    if (d->depth == 0)
        return dec_fail(d, EVENT_ERR_SCHEMA,
                        "top level: must be a JSON object");
    struct frame *f = &d->frames[d->depth];
    if (f->is_array)
        f->count++;
    return 1;
}

static int nul_fail(struct decoder *d)
{
    return dec_fail(d, EVENT_ERR_SCHEMA,
                    "\\u0000 at byte %zu: U+0000 is not allowed in strings",
                    d->nul_at);
}

static bool is_key_field(unsigned member)
{
    return member >= M_COUNTER_PARTY_ID && member <= M_POLICY_CHECKSUM;
}

/* kind: 'n' null, 'b' boolean, '#' number, 's' string. */
static int on_scalar(struct decoder *d, char kind, const unsigned char *s,
                     size_t n)
{
    /* Only when the input has a \u0000 at all: which string holds it. A
     * key field says so under its own name (take_key_field). */
    if (d->has_nul && kind == 's' && memchr(s, 0, n) &&
        (d->skip || d->depth == 0 || d->frames[d->depth].role != ROLE_DATA ||
         !is_key_field(d->frames[d->depth].member)))
        return nul_fail(d);
    if (d->skip)
        return 1;
    if (!value_start(d))
        return 0;
    struct frame *f = &d->frames[d->depth];
    const unsigned char *str = kind == 's' ? s : NULL;

    switch (f->role) {
    case ROLE_ENVELOPE:
        return dec_envelope_value(d, f->member, str, n);
    case ROLE_DATA:
        return dec_data_value(d, f->member, str, n);
    case ROLE_EDR:
        if (f->member == M_EDR_TRANSFER) {
            if (!str || n == 0)
                return dec_edr_broken(d,
                                      "data.edr.transferProcessId: must be a "
                                      "non-empty string",
                                      dec_edr_open_below_data(d));
            d->edr_transfer_id = dec_copy_str(d, s, n);
        }
        break;
    default:
        break;
    }
    /* Inside data.edr: copy the value. */
    return edr_out_scalar(d, kind, s, n);
}

static int depth_exceeded(struct decoder *d)
{
    return dec_fail(d, EVENT_ERR_SCHEMA, "nested deeper than %d levels",
                    EVENT_MAX_DEPTH);
}

static int push(struct decoder *d, bool is_array, enum role role)
{
    if (d->depth >= EVENT_MAX_DEPTH)
        return depth_exceeded(d);
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
        return depth_exceeded(d);
    d->skip = 1;
    return 1;
}

static int on_open(struct decoder *d, bool is_array)
{
    if (d->skip) {
        if ((size_t)d->depth + d->skip + 1 > EVENT_MAX_DEPTH)
            return depth_exceeded(d);
        d->skip++;
        return 1;
    }
    if (d->depth == 0) {
        if (is_array)
            return dec_fail(d, EVENT_ERR_SCHEMA,
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
        return dec_envelope_value(d, member, NULL, 0);
    case ROLE_DATA:
        if (member == M_OTHER)
            return begin_skip(d);
        if (member == M_EDR) {
            if (dec_type_known(d) && d->ev->type == EVENT_EXPIRED) {
                d->edr = EDR_IGNORED;
                return begin_skip(d);
            }
            if (is_array)
                return dec_edr_broken(d, "data.edr: must be an object", 1);
            if (!push(d, false, ROLE_EDR))
                return 0;
            d->edr = EDR_COPYING;
            return edr_out_begin(d);
        }
        if (member == M_TRANSFER_PROCESS_ID) {
            if (!dec_take_transfer_process_id(d, NULL, 0))
                return 0;
            return begin_skip(d);
        }
        return dec_data_value(d, member, NULL, 0);
    case ROLE_EDR:
        if (member == M_EDR_TRANSFER)
            return dec_edr_broken(d,
                                  "data.edr.transferProcessId: must be a "
                                  "non-empty string",
                                  dec_edr_open_below_data(d) + 1);
        break;
    default:
        break;
    }
    if (!push(d, is_array, ROLE_EDR_INNER))
        return 0;
    return edr_out_open(d, is_array);
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
        if (!edr_out_close(d, f->is_array, f->role == ROLE_EDR))
            return 0;
        if (f->role == ROLE_EDR)
            d->edr = EDR_DONE;
    }
    d->depth--;
    return 1;
}

static int duplicate(struct decoder *d)
{
    const struct frame *f = &d->frames[d->depth];
    char path[160];

    dec_render_path(d, path, sizeof(path));
    if (f->role == ROLE_EDR || f->role == ROLE_EDR_INNER) {
        char msg[sizeof(d->edr_err)];
        snprintf(msg, sizeof(msg), "%.*s: duplicate member",
                 (int)(sizeof(msg) - 20), path);
        return dec_edr_broken(d, msg, dec_edr_open_below_data(d));
    }
    return dec_fail(d, EVENT_ERR_SCHEMA, "%s: duplicate member", path);
}

/* Records member name k of the current object; 0 when it is a repeat. */
static int dup_check(struct decoder *d, const char *k, size_t n,
                     uint32_t serial)
{
    int r = dup_members_insert(&d->dups, k, n, serial);
    if (r < 0)
        longjmp(*d->oom, 1);
    return r;
}

static int on_key(struct decoder *d, const unsigned char *key, size_t n)
{
    if (d->has_nul && memchr(key, 0, n))
        return nul_fail(d);
    if (d->skip)
        return 1;
    struct frame *f = &d->frames[d->depth];
    const char *k = (const char *)key;

    /* A key without escapes points into the input, which outlives the
     * parse; one with escapes sits in a buffer yajl reuses: copy it. */
    if (!dec_in_input(d, key, n)) {
        char *c = dec_alloc(d, n ? n : 1);
        memcpy(c, key, n);
        k = c;
    }
    f->key = k;
    f->key_len = n;
    switch (f->role) {
    case ROLE_ENVELOPE:
    case ROLE_DATA:
        f->member =
            (unsigned char)(f->role == ROLE_ENVELOPE ? dec_envelope_member(k, n)
                                                     : dec_data_member(k, n));
        /* A member of the contract is its own duplicate check. */
        if (f->member != M_OTHER) {
            if (d->seen & SEEN(f->member))
                return duplicate(d);
            d->seen |= SEEN(f->member);
        } else if (!dup_check(d, k, n, f->serial)) {
            return duplicate(d);
        }
        return 1;
    case ROLE_EDR:
        f->member = (unsigned char)dec_edr_member(k, n);
        break;
    default:
        break;
    }
    if (!dup_check(d, k, n, f->serial))
        return duplicate(d);
    return edr_out_key(d, key, n, f->role == ROLE_EDR);
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

static int out_of_memory(struct decoder *d)
{
    return dec_fail(d, EVENT_ERR_NOMEM, "out of memory decoding the event");
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
            return dec_fail(d, EVENT_ERR_SCHEMA, "%s: missing",
                            required[i].name);
    }
    if (ev->type == EVENT_EXPIRED) {
        ev->transfer_id = d->data_transfer_id;
        return edr_pack_event(d, false) == 0 ? 1 : out_of_memory(d);
    }
    /* take_type already rejected a broken edr or transfer_process_id that
     * came before the type; these are the ones after it. */
    if (d->edr == EDR_ABSENT)
        return dec_fail(d, EVENT_ERR_SCHEMA, "data.edr: missing");
    if (d->edr != EDR_DONE)
        return dec_fail(d, EVENT_ERR_SCHEMA, "%s", d->edr_err);
    if (!d->edr_transfer_id)
        return dec_fail(d, EVENT_ERR_SCHEMA,
                        "data.edr.transferProcessId: missing");
    ev->transfer_id = d->edr_transfer_id;
    return edr_pack_event(d, true) == 0 ? 1 : out_of_memory(d);
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
    dec_fail(d, EVENT_ERR_JSON, "invalid JSON at byte %zu: %.*s", at, (int)n,
             text ? text : "");
    if (msg)
        yajl_free_error(h, msg);
}

/* The yajl pass, in its own function so that none of its locals live
 * across the setjmp in parse(). */
static void parse_body(struct decoder *d)
{
    yajl_handle h = yajl_alloc(&callbacks, &d->afs, d);
    /* json_scan_text has checked every byte already. */
    yajl_config(h, yajl_dont_validate_strings, 1);
    yajl_status st = yajl_parse(h, d->buf, d->len);
    bool at_end = false;
    if (st == yajl_status_ok) {
        st = yajl_complete_parse(h);
        at_end = true; /* yajl's offset is now into its own last chunk */
    }
    if (st == yajl_status_error)
        json_error(d, h, at_end);
    else if (st == yajl_status_ok && d->has_nul)
        nul_fail(d); /* not reached: the \u0000 was in some string */
    else if (st == yajl_status_ok && !finish(d) && d->err == EVENT_OK)
        d->err = EVENT_ERR_SCHEMA;
    else if (st == yajl_status_client_canceled && d->err == EVENT_OK)
        dec_fail(d, EVENT_ERR_SCHEMA, "decoder stopped without a reason");
    /* Otherwise client_canceled: a callback has filled d->err. */
    if (d->gen)
        yajl_gen_free(d->gen);
    d->gen = NULL;
    yajl_free(h);
}

/* Returns with d->err set. On out of memory (the longjmp from dec_alloc)
 * nothing of yajl's is freed one by one: it is all in the arena. */
static void parse(struct decoder *d)
{
    jmp_buf oom;

    d->oom = &oom;
    if (setjmp(oom)) {
        d->gen = NULL;
        out_of_memory(d);
        return;
    }
    parse_body(d);
}

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
    d->members = NULL;
    d->n_members = d->members_cap = 0;
    arena_init(&d->arena);
    dup_members_init(&d->dups, &d->arena);
    d->afs.malloc = yajl_arena_malloc;
    d->afs.realloc = yajl_arena_realloc;
    d->afs.free = yajl_arena_free;
    d->afs.ctx = d;
}

enum event_error event_decode(struct event *ev, const void *buf, size_t len,
                              char *errstr, size_t errstr_size)
{
    struct decoder dstack;
    struct decoder *d = &dstack;
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
    d->has_nul = false;
    d->nul_at = 0;

    if (len > EVENT_MAX_BYTES) {
        dec_fail(d, EVENT_ERR_SIZE, "event larger than 1 MiB");
        return EVENT_ERR_SIZE;
    }
    switch (json_scan_text(buf, len, &at)) {
    case JSON_SCAN_OK:
        break;
    case JSON_SCAN_UTF8:
        dec_fail(d, EVENT_ERR_UTF8, "not valid UTF-8 at byte %zu", at);
        return EVENT_ERR_UTF8;
    case JSON_SCAN_SURROGATE:
        dec_fail(d, EVENT_ERR_UTF8,
                 "not valid UTF-8 at byte %zu: \\u escape of an unpaired "
                 "surrogate",
                 at);
        return EVENT_ERR_UTF8;
    case JSON_SCAN_NUL:
        /* Which string holds it is known only when parsing: parse() says. */
        d->has_nul = true;
        d->nul_at = at;
        break;
    }

    decoder_begin(d);
    parse(d);
    if (d->err != EVENT_OK) {
        free(ev->mem); /* NULL unless the error came after packing */
        memset(ev, 0, sizeof(*ev)); /* its strings were in the arena */
    }
    arena_release(&d->arena);
    return d->err;
}

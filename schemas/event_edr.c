/* event_edr.c: data.edr as the decoder hands it back (see event.h):
 * re-serialized compactly with a yajl_gen as its values stream by, with
 * the span of each top-level member recorded, so a handler can drop
 * members without parsing again. At the end the event's strings (in the
 * arena so far) and this text move into one malloc'd block that struct
 * event owns: one allocation per event instead of one per string. */
#include "schemas/event_decoder.h"

#include <stdalign.h>
#include <stddef.h>
#include <stdlib.h>
#include <string.h>

static bool gen_ok(yajl_gen_status s)
{
    return s == yajl_gen_status_ok;
}

static int gen_failed(struct decoder *d)
{
    return dec_fail(d, EVENT_ERR_SCHEMA, "data.edr: cannot be re-serialized");
}

static size_t gen_len(const struct decoder *d)
{
    const unsigned char *buf;
    size_t len;
    yajl_gen_get_buf(d->gen, &buf, &len);
    return len;
}

int edr_out_begin(struct decoder *d)
{
    d->gen = yajl_gen_alloc(&d->afs);
    if (!d->gen)
        return gen_failed(d);
    return gen_ok(yajl_gen_map_open(d->gen)) ? 1 : gen_failed(d);
}

int edr_out_open(struct decoder *d, bool is_array)
{
    yajl_gen_status gs =
        is_array ? yajl_gen_array_open(d->gen) : yajl_gen_map_open(d->gen);
    return gen_ok(gs) ? 1 : gen_failed(d);
}

/* The member being written ends where the gen's text ends now. */
static void end_member(struct decoder *d)
{
    if (d->n_members) {
        struct event_member *m = &d->members[d->n_members - 1];
        m->len = gen_len(d) - m->off;
    }
}

int edr_out_close(struct decoder *d, bool is_array, bool top)
{
    if (top)
        end_member(d);
    yajl_gen_status gs =
        is_array ? yajl_gen_array_close(d->gen) : yajl_gen_map_close(d->gen);
    return gen_ok(gs) ? 1 : gen_failed(d);
}

int edr_out_key(struct decoder *d, const unsigned char *k, size_t n, bool top)
{
    struct event_member *m = NULL;
    if (top) {
        size_t len = gen_len(d);
        if (d->n_members)
            d->members[d->n_members - 1].len =
                len - d->members[d->n_members - 1].off;
        if (d->n_members == d->members_cap) {
            size_t cap = d->members_cap ? d->members_cap * 2 : 16;
            struct event_member *a = dec_alloc(d, cap * sizeof(*a));
            if (d->n_members)
                memcpy(a, d->members, d->n_members * sizeof(*a));
            d->members = a;
            d->members_cap = cap;
        }
        m = &d->members[d->n_members++];
        /* yajl_gen writes a comma before every member but the first. */
        m->off = len + (d->n_members > 1);
        m->name_off = m->off + 1;
        m->len = 0;
    }
    if (!gen_ok(yajl_gen_string(d->gen, k, n)))
        return gen_failed(d);
    /* A name read in place had no escapes, so yajl_gen wrote it as is
     * (it escapes only quotes, backslashes and control characters). */
    if (m)
        m->name_len = dec_in_input(d, k, n) ? n : gen_len(d) - m->off - 2;
    return 1;
}

/* A string value yajl handed over in place had no escapes in the input,
 * so it holds no quote, backslash or control character (json_scan_text
 * and yajl's lexer checked), and its quoted form in the input is already
 * compact JSON. yajl_gen_number writes any token verbatim with the right
 * separators; giving it the quoted text saves re-escaping byte by byte,
 * which is most of the work for large EDRs. Escaped strings (decoded into
 * yajl's buffer) go through yajl_gen_string. */
static yajl_gen_status gen_string_value(struct decoder *d,
                                        const unsigned char *s, size_t n)
{
    if (dec_in_input(d, s, n) && s > d->buf && s + n < d->buf + d->len &&
        s[-1] == '"' && s[n] == '"')
        return yajl_gen_number(d->gen, (const char *)s - 1, n + 2);
    return yajl_gen_string(d->gen, s, n);
}

int edr_out_scalar(struct decoder *d, char kind, const unsigned char *s,
                   size_t n)
{
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

/* No string holds a NUL (json_scan_text rejects \u0000; JSON has no raw
 * control characters), so strlen gives their lengths. */
int edr_pack_event(struct decoder *d, bool with_edr)
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
    const unsigned char *edr = NULL;
    size_t edr_len = 0;
    size_t members = with_edr ? d->n_members * sizeof(struct event_member) : 0;
    size_t total = members;

    _Static_assert(alignof(struct event_member) <= alignof(max_align_t),
                   "members head the malloc'd block");
    if (with_edr) {
        yajl_gen_get_buf(d->gen, &edr, &edr_len);
        total += 2 * (edr_len + 1); /* the text and the scratch room */
    }
    for (size_t i = 0; i < n; i++) {
        len[i] = *f[i] ? strlen(*f[i]) + 1 : 0;
        total += len[i];
    }
    char *b = malloc(total ? total : 1), *o = b;
    if (!b)
        return -1;
    if (with_edr) {
        ev->edr_members = (struct event_member *)(void *)o;
        ev->n_edr_members = d->n_members;
        if (members)
            memcpy(o, d->members, members);
        o += members;
    }
    for (size_t i = 0; i < n; i++) {
        if (*f[i]) {
            memcpy(o, *f[i], len[i]);
            *f[i] = o;
            o += len[i];
        }
    }
    if (with_edr) {
        memcpy(o, edr, edr_len);
        o[edr_len] = '\0';
        ev->edr_json = o;
        ev->edr_len = edr_len;
        ev->scratch = o + edr_len + 1;
    }
    ev->mem = b;
    return 0;
}

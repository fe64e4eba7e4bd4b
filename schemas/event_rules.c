/* event_rules.c: what each member of an event must be (schemas/README.md
 * §1 and Appendix A), and the reasons given when one is not. The
 * streaming traversal (event_decode.c) calls these as values arrive;
 * members may come in any order, so rules that depend on `type` wait for
 * it (take_type settles them). */
#include "schemas/event_decoder.h"

#include "base/hex.h"
#include "schemas/rfc3339.h"

#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

int dec_fail(struct decoder *d, enum event_error e, const char *fmt, ...)
{
    va_list ap;
    d->err = e;
    if (d->errstr && d->errstr_size) {
        va_start(ap, fmt);
        vsnprintf(d->errstr, d->errstr_size, fmt, ap);
        va_end(ap);
    }
    return 0; /* what a yajl callback returns to stop the parse */
}

void dec_put_text(char *out, size_t cap, size_t *pos, const char *s, size_t n,
                  size_t max)
{
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
            out[(*pos)++] = edr_hex_char(c >> 4);
            out[(*pos)++] = edr_hex_char(c);
        }
    }
    if (cap)
        out[*pos < cap ? *pos : cap - 1] = '\0';
}

void dec_render_path(const struct decoder *d, char *out, size_t cap)
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
            dec_put_text(out, cap, &pos, idx, (size_t)m, sizeof(idx));
        } else {
            if (i > 1)
                dec_put_text(out, cap, &pos, ".", 1, 1);
            dec_put_text(out, cap, &pos, f->key, f->key_len, 64);
        }
    }
}

bool dec_type_known(const struct decoder *d)
{
    return d->ev->type != 0;
}

/* data.edr broke a rule (msg names it). If the type is known to need the
 * EDR, that rejects the event now; if the type is not known yet, the
 * verdict waits for the end, and the rest of data.edr is skipped:
 * `open_inside` containers are open below data (counting one being
 * opened right now). */
int dec_edr_broken(struct decoder *d, const char *msg, size_t open_inside)
{
    if (dec_type_known(d))
        return dec_fail(d, EVENT_ERR_SCHEMA, "%s", msg);
    d->edr = EDR_BROKEN;
    snprintf(d->edr_err, sizeof(d->edr_err), "%s", msg);
    while (d->depth > 2)
        d->depth--;
    d->skip = open_inside;
    return 1;
}

size_t dec_edr_open_below_data(const struct decoder *d)
{
    return (size_t)(d->depth - 2);
}

#define KEY_IS(lit) (n == sizeof(lit) - 1 && memcmp(k, lit, n) == 0)

unsigned dec_envelope_member(const char *k, size_t n)
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

unsigned dec_data_member(const char *k, size_t n)
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

unsigned dec_edr_member(const char *k, size_t n)
{
    return KEY_IS("transferProcessId") ? M_EDR_TRANSFER : M_OTHER;
}

/* Offset of the first byte below 0x20 or equal to 0x7F in s[0..n), or n.
 * Eight bytes a step: key fields are checked in every event. */
static size_t control_char_at(const unsigned char *s, size_t n)
{
    const uint64_t ones = UINT64_C(0x0101010101010101);
    const uint64_t highs = UINT64_C(0x8080808080808080);
    size_t i = 0;

    for (; n - i >= 8; i += 8) {
        uint64_t w, del;
        memcpy(&w, s + i, 8);
        del = w ^ (ones * 0x7F);
        /* A byte < 0x20 (high bit clear), or a 0x7F (del byte zero). */
        if ((((w - ones * 0x20) & ~w) | ((del - ones) & ~del)) & highs)
            break;
    }
    for (; i < n; i++)
        if (s[i] < 0x20 || s[i] == 0x7F)
            return i;
    return n;
}

/* Validates a required non-empty key string of data and keeps it. */
static int take_key_field(struct decoder *d, char **dst, const char *name,
                          const unsigned char *s, size_t n)
{
    if (!s || n == 0)
        return dec_fail(d, EVENT_ERR_SCHEMA,
                        "data.%s: must be a non-empty string", name);
    if (n > EDR_KEY_FIELD_MAX)
        return dec_fail(d, EVENT_ERR_SCHEMA, "data.%s: longer than %d bytes",
                        name, EDR_KEY_FIELD_MAX);
    /* (v2) The record key joins the four with 0x1F: a control character
     * in one could make two connections one. */
    size_t bad = control_char_at(s, n);
    if (bad < n)
        return dec_fail(d, EVENT_ERR_SCHEMA,
                        "data.%s: contains a control character (U+%04X "
                        "at byte %zu of the value)",
                        name, (unsigned)s[bad], bad);
    *dst = dec_copy_str(d, s, n);
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
        return dec_fail(d, EVENT_ERR_SCHEMA, "type: must be a string");
    for (size_t i = 0; i < sizeof(types) / sizeof(types[0]); i++) {
        if (strlen(types[i].name) == n && memcmp(types[i].name, s, n) == 0) {
            d->ev->type = types[i].type;
            break;
        }
    }
    if (!d->ev->type) {
        dec_put_text(shown, sizeof(shown), &pos, (const char *)s, n, 64);
        return dec_fail(d, EVENT_ERR_SCHEMA, "type: unknown value '%s'", shown);
    }
    /* Now that the type is known, settle what was waiting for it. */
    if (d->ev->type != EVENT_EXPIRED) {
        if (d->data_transfer_id || d->data_transfer_bad)
            return dec_fail(d, EVENT_ERR_SCHEMA,
                            "data.transfer_process_id: only allowed for "
                            "edr.expired");
        if (d->edr == EDR_BROKEN)
            return dec_fail(d, EVENT_ERR_SCHEMA, "%s", d->edr_err);
    } else if (d->data_transfer_bad) {
        return dec_fail(d, EVENT_ERR_SCHEMA,
                        "data.transfer_process_id: must be a string");
    }
    return 1;
}

int dec_take_transfer_process_id(struct decoder *d, const unsigned char *s,
                                 size_t n)
{
    if (dec_type_known(d) && d->ev->type != EVENT_EXPIRED)
        return dec_fail(d, EVENT_ERR_SCHEMA,
                        "data.transfer_process_id: only allowed for "
                        "edr.expired");
    if (!s) {
        if (dec_type_known(d))
            return dec_fail(d, EVENT_ERR_SCHEMA,
                            "data.transfer_process_id: must be a string");
        d->data_transfer_bad = true;
        return 1;
    }
    d->data_transfer_id = dec_copy_str(d, s, n);
    return 1;
}

int dec_envelope_value(struct decoder *d, unsigned member,
                       const unsigned char *s, size_t n)
{
    struct event *ev = d->ev;

    switch (member) {
    case M_SPECVERSION:
        if (!s || n != 3 || memcmp(s, "1.0", 3) != 0)
            return dec_fail(d, EVENT_ERR_SCHEMA,
                            "specversion: must be \"1.0\"");
        return 1;
    case M_ID:
    case M_SOURCE: {
        const char *name = member == M_ID ? "id" : "source";
        if (!s || n == 0)
            return dec_fail(d, EVENT_ERR_SCHEMA,
                            "%s: must be a non-empty string", name);
        *(member == M_ID ? &ev->id : &ev->source) = dec_copy_str(d, s, n);
        return 1;
    }
    case M_TYPE:
        return take_type(d, s, n);
    case M_TIME:
        if (!s || !rfc3339_valid((const char *)s, n))
            return dec_fail(d, EVENT_ERR_SCHEMA,
                            "time: must be an RFC 3339 date-time");
        return 1;
    case M_SUBJECT:
        if (!s)
            return dec_fail(d, EVENT_ERR_SCHEMA, "subject: must be a string");
        ev->subject = dec_copy_str(d, s, n);
        return 1;
    case M_DATACONTENTTYPE:
        if (!s || n != 16 || memcmp(s, "application/json", 16) != 0)
            return dec_fail(d, EVENT_ERR_SCHEMA,
                            "datacontenttype: must be application/json");
        return 1;
    case M_DATA:
        return dec_fail(d, EVENT_ERR_SCHEMA, "data: must be an object");
    default:
        return 1; /* extension attribute: ignored */
    }
}

int dec_data_value(struct decoder *d, unsigned member, const unsigned char *s,
                   size_t n)
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
        if (dec_type_known(d) && ev->type == EVENT_EXPIRED)
            return 1;
        return dec_edr_broken(d, "data.edr: must be an object", 0);
    case M_TRANSFER_PROCESS_ID:
        return dec_take_transfer_process_id(d, s, n);
    default:
        return 1;
    }
}

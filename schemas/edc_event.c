/* edc_event.c: see edc_event.h. One pass of yajl's streaming parser; the
 * callbacks track the nesting depth and copy only the four members the
 * worker uses, noting for each whether it was absent, a good value, a
 * value of the wrong kind, or given twice. The rules run after the pass,
 * so the reason names the first failing member in a fixed order,
 * wherever the members sit in the body. */
#include "schemas/edc_event.h"

#include "schemas/json_error.h"
#include "schemas/json_scan.h"

#include <yajl/yajl_parse.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

enum field_state { F_ABSENT = 0, F_SET, F_BAD, F_DUP };

struct field {
    enum field_state state;
    char *str;
};

/* The members read; top level first, then payload's. */
enum member {
    M_ID,
    M_TYPE,
    M_PAYLOAD,
    M_TRANSFER_ID, /* payload.transferProcessId */
    M_PARTY,       /* payload.type */
    M_N,
    M_OTHER = M_N,
};

struct decoder {
    int depth;      /* containers open */
    int started;    /* the top-level value was seen */
    int is_object;  /* ... and it is an object */
    int in_payload; /* payload's object is the container open at depth 2 */
    int nomem;
    enum member key; /* the member whose value comes next */
    struct field f[M_N];
};

enum value_kind { V_STRING, V_MAP, V_OTHER };

static enum member top_member(const unsigned char *s, size_t len)
{
    if (len == 2 && memcmp(s, "id", 2) == 0)
        return M_ID;
    if (len == 4 && memcmp(s, "type", 4) == 0)
        return M_TYPE;
    if (len == 7 && memcmp(s, "payload", 7) == 0)
        return M_PAYLOAD;
    return M_OTHER;
}

static enum member payload_member(const unsigned char *s, size_t len)
{
    if (len == 17 && memcmp(s, "transferProcessId", 17) == 0)
        return M_TRANSFER_ID;
    if (len == 4 && memcmp(s, "type", 4) == 0)
        return M_PARTY;
    return M_OTHER;
}

/* A value seen at the current depth (before a container it opens is
 * counted). 0 stops the parse (out of memory). */
static int on_value(struct decoder *d, enum value_kind kind,
                    const unsigned char *s, size_t len)
{
    if (!d->started) {
        d->started = 1;
        d->is_object = kind == V_MAP;
        return 1;
    }
    int member_value =
        (d->depth == 1 && d->is_object) || (d->depth == 2 && d->in_payload);
    if (!member_value || d->key == M_OTHER)
        return 1;
    struct field *f = &d->f[d->key];
    d->key = M_OTHER;
    if (f->state != F_ABSENT) {
        f->state = F_DUP;
        return 1;
    }
    enum value_kind want = &d->f[M_PAYLOAD] == f ? V_MAP : V_STRING;
    if (kind != want) {
        f->state = F_BAD;
        return 1;
    }
    f->state = F_SET;
    if (kind == V_MAP)
        return 1;
    if (!(f->str = malloc(len + 1))) {
        d->nomem = 1;
        return 0;
    }
    memcpy(f->str, s, len);
    f->str[len] = '\0';
    return 1;
}

static int cb_null(void *ctx)
{
    return on_value(ctx, V_OTHER, NULL, 0);
}

static int cb_boolean(void *ctx, int b)
{
    (void)b;
    return on_value(ctx, V_OTHER, NULL, 0);
}

static int cb_number(void *ctx, const char *s, size_t len)
{
    (void)s;
    (void)len;
    return on_value(ctx, V_OTHER, NULL, 0);
}

static int cb_string(void *ctx, const unsigned char *s, size_t len)
{
    return on_value(ctx, V_STRING, s, len);
}

static int cb_start_map(void *ctx)
{
    struct decoder *d = ctx;
    /* the payload object opens when payload's value is a first map */
    int opens_payload = d->depth == 1 && d->is_object && d->key == M_PAYLOAD &&
                        d->f[M_PAYLOAD].state == F_ABSENT;
    if (!on_value(d, V_MAP, NULL, 0))
        return 0;
    d->depth++;
    if (opens_payload)
        d->in_payload = 1;
    d->key = M_OTHER;
    return 1;
}

static int cb_start_array(void *ctx)
{
    struct decoder *d = ctx;
    if (!on_value(d, V_OTHER, NULL, 0))
        return 0;
    d->depth++;
    return 1;
}

static int cb_end(void *ctx)
{
    struct decoder *d = ctx;
    d->depth--;
    if (d->depth <= 1)
        d->in_payload = 0;
    d->key = M_OTHER;
    return 1;
}

static int cb_map_key(void *ctx, const unsigned char *s, size_t len)
{
    struct decoder *d = ctx;
    if (d->depth == 1 && d->is_object)
        d->key = top_member(s, len);
    else if (d->depth == 2 && d->in_payload)
        d->key = payload_member(s, len);
    else
        d->key = M_OTHER;
    return 1;
}

static const yajl_callbacks edc_callbacks = {
    cb_null,      cb_boolean, NULL,   NULL,           cb_number, cb_string,
    cb_start_map, cb_map_key, cb_end, cb_start_array, cb_end,
};

/* The rule of one member: 0 when it holds, else -1 with the reason. A
 * string member that must be non-empty is bad when empty. */
static int check_member(const struct field *f, const char *name,
                        const char *what, int nonempty, char *errstr,
                        size_t errstr_size)
{
    const char *why = NULL;
    if (f->state == F_ABSENT)
        why = "missing";
    else if (f->state == F_DUP)
        why = "given more than once";
    else if (f->state == F_BAD || (nonempty && f->str && !f->str[0]))
        why = what;
    if (!why)
        return 0;
    snprintf(errstr, errstr_size, "%s: %s", name, why);
    return -1;
}

static int check_rules(const struct decoder *d, char *errstr,
                       size_t errstr_size)
{
    if (!d->is_object) {
        snprintf(errstr, errstr_size, "body: not a JSON object");
        return -1;
    }
    if (check_member(&d->f[M_ID], "id", "not a non-empty string", 1, errstr,
                     errstr_size) ||
        check_member(&d->f[M_TYPE], "type", "not a string", 0, errstr,
                     errstr_size) ||
        check_member(&d->f[M_PAYLOAD], "payload", "not an object", 0, errstr,
                     errstr_size) ||
        check_member(&d->f[M_TRANSFER_ID], "payload.transferProcessId",
                     "not a non-empty string", 1, errstr, errstr_size))
        return -1;
    if (d->f[M_PARTY].state == F_DUP) {
        snprintf(errstr, errstr_size, "payload.type: given more than once");
        return -1;
    }
    return 0;
}

static enum edc_party party_of(const struct field *f)
{
    if (f->state != F_SET)
        return EDC_PARTY_OTHER;
    if (strcmp(f->str, "CONSUMER") == 0)
        return EDC_PARTY_CONSUMER;
    if (strcmp(f->str, "PROVIDER") == 0)
        return EDC_PARTY_PROVIDER;
    return EDC_PARTY_OTHER;
}

int edc_event_decode(struct edc_event *ev, const void *buf, size_t len,
                     char *errstr, size_t errstr_size)
{
    struct decoder d;
    yajl_handle h = NULL;
    size_t at = 0;
    int rc = EDC_EVENT_INVALID;

    memset(ev, 0, sizeof(*ev));
    memset(&d, 0, sizeof(d));
    d.key = M_OTHER;
    if (errstr_size)
        errstr[0] = '\0';
    if (len > EDC_EVENT_MAX_BYTES) {
        snprintf(errstr, errstr_size, "body: larger than %d bytes",
                 EDC_EVENT_MAX_BYTES);
        return EDC_EVENT_INVALID;
    }
    if (len == 0) {
        snprintf(errstr, errstr_size, "body: empty");
        return EDC_EVENT_INVALID;
    }
    switch (json_scan_text(buf, len, &at)) {
    case JSON_SCAN_OK:
        break;
    case JSON_SCAN_UTF8:
        snprintf(errstr, errstr_size, "body: invalid UTF-8 at byte %zu", at);
        return EDC_EVENT_INVALID;
    case JSON_SCAN_SURROGATE:
        snprintf(errstr, errstr_size,
                 "body: \\u escape of an unpaired surrogate at byte %zu", at);
        return EDC_EVENT_INVALID;
    case JSON_SCAN_NUL:
        snprintf(errstr, errstr_size, "body: \\u0000 at byte %zu", at);
        return EDC_EVENT_INVALID;
    }

    if (!(h = yajl_alloc(&edc_callbacks, NULL, &d))) {
        rc = EDC_EVENT_NOMEM;
        snprintf(errstr, errstr_size, "out of memory");
        goto out;
    }
    yajl_status st = yajl_parse(h, buf, len);
    if (st == yajl_status_ok)
        st = yajl_complete_parse(h);
    if (d.nomem) {
        rc = EDC_EVENT_NOMEM;
        snprintf(errstr, errstr_size, "out of memory");
    } else if (st != yajl_status_ok) {
        json_syntax_error(h, "body", errstr, errstr_size);
    } else if (check_rules(&d, errstr, errstr_size) == 0) {
        ev->id = d.f[M_ID].str;
        ev->type = d.f[M_TYPE].str;
        ev->transfer_process_id = d.f[M_TRANSFER_ID].str;
        ev->party = party_of(&d.f[M_PARTY]);
        d.f[M_ID].str = d.f[M_TYPE].str = d.f[M_TRANSFER_ID].str = NULL;
        rc = EDC_EVENT_OK;
    }

out:
    if (h)
        yajl_free(h);
    for (int i = 0; i < M_N; i++)
        free(d.f[i].str);
    return rc;
}

void edc_event_clear(struct edc_event *ev)
{
    if (!ev)
        return;
    free(ev->id);
    free(ev->type);
    free(ev->transfer_process_id);
    memset(ev, 0, sizeof(*ev));
}

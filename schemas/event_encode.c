/* event_encode.c: see event_encode.h. yajl_gen writes the envelope; the
 * caller's data.edr text is replayed through yajl's parser into the same
 * generator, which both checks it and compacts it. */
#include "schemas/event_encode.h"

#include <yajl/yajl_gen.h>
#include <yajl/yajl_parse.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

/* Parser callbacks that forward each token to a generator (g may be NULL
 * for a pass that only looks), remembering the top-level member
 * transferProcessId of the object. */
struct replay {
    yajl_gen g;
    int depth;
    int first;      /* no token seen yet */
    int not_object; /* the top-level value is not an object */
    int at_tp_key;  /* the last top-level key was transferProcessId */
    char *transfer_id;
};

static int replay_begin(struct replay *r, int is_map)
{
    if (r->first && !is_map)
        r->not_object = 1;
    r->first = 0;
    return !r->not_object;
}

static int on_null(void *ctx)
{
    struct replay *r = ctx;
    r->at_tp_key = 0;
    return replay_begin(r, 0) && (!r->g || yajl_gen_null(r->g) == 0);
}

static int on_boolean(void *ctx, int b)
{
    struct replay *r = ctx;
    r->at_tp_key = 0;
    return replay_begin(r, 0) && (!r->g || yajl_gen_bool(r->g, b) == 0);
}

static int on_number(void *ctx, const char *s, size_t len)
{
    struct replay *r = ctx;
    r->at_tp_key = 0;
    return replay_begin(r, 0) && (!r->g || yajl_gen_number(r->g, s, len) == 0);
}

static int on_string(void *ctx, const unsigned char *s, size_t len)
{
    struct replay *r = ctx;
    if (!replay_begin(r, 0))
        return 0;
    if (r->at_tp_key && r->depth == 1 && !r->transfer_id) {
        r->transfer_id = malloc(len + 1);
        if (!r->transfer_id)
            return 0;
        memcpy(r->transfer_id, s, len);
        r->transfer_id[len] = '\0';
    }
    r->at_tp_key = 0;
    return !r->g || yajl_gen_string(r->g, s, len) == 0;
}

static int on_start_map(void *ctx)
{
    struct replay *r = ctx;
    r->at_tp_key = 0;
    r->depth++;
    return replay_begin(r, 1) && (!r->g || yajl_gen_map_open(r->g) == 0);
}

static int on_map_key(void *ctx, const unsigned char *s, size_t len)
{
    struct replay *r = ctx;
    r->at_tp_key =
        r->depth == 1 && len == 17 && memcmp(s, "transferProcessId", 17) == 0;
    return !r->g || yajl_gen_string(r->g, s, len) == 0;
}

static int on_end_map(void *ctx)
{
    struct replay *r = ctx;
    r->depth--;
    return !r->g || yajl_gen_map_close(r->g) == 0;
}

static int on_start_array(void *ctx)
{
    struct replay *r = ctx;
    r->at_tp_key = 0;
    r->depth++;
    return replay_begin(r, 0) && (!r->g || yajl_gen_array_open(r->g) == 0);
}

static int on_end_array(void *ctx)
{
    struct replay *r = ctx;
    r->depth--;
    return !r->g || yajl_gen_array_close(r->g) == 0;
}

static const yajl_callbacks replay_callbacks = {
    on_null,    on_boolean,     NULL,         NULL,
    on_number,  on_string,      on_start_map, on_map_key,
    on_end_map, on_start_array, on_end_array,
};

/* Parses text into g (NULL: check only). 0, or -1 with errstr. */
static int replay_json(const char *text, size_t len, yajl_gen g,
                       char **transfer_id, char *errstr, size_t errstr_size)
{
    struct replay r = {.g = g, .first = 1};
    yajl_handle h = yajl_alloc(&replay_callbacks, NULL, &r);
    int rc = -1;
    if (!h) {
        snprintf(errstr, errstr_size, "out of memory");
        goto out;
    }
    yajl_status st = yajl_parse(h, (const unsigned char *)text, len);
    if (st == yajl_status_ok)
        st = yajl_complete_parse(h);
    if (r.not_object || (st == yajl_status_ok && r.first)) {
        snprintf(errstr, errstr_size, "--edr: not a JSON object");
        goto out;
    }
    if (st != yajl_status_ok) {
        snprintf(errstr, errstr_size, "--edr: not valid JSON");
        goto out;
    }
    if (transfer_id) {
        *transfer_id = r.transfer_id;
        r.transfer_id = NULL;
    }
    rc = 0;
out:
    free(r.transfer_id);
    if (h)
        yajl_free(h);
    return rc;
}

int event_new_id(char out[EVENT_ID_LEN + 1])
{
    unsigned char b[16];
    FILE *f = fopen("/dev/urandom", "rb");
    if (!f)
        return -1;
    size_t n = fread(b, 1, sizeof(b), f);
    fclose(f);
    if (n != sizeof(b))
        return -1;
    b[6] = (unsigned char)((b[6] & 0x0f) | 0x40); /* version 4 */
    b[8] = (unsigned char)((b[8] & 0x3f) | 0x80); /* RFC 4122 variant */
    snprintf(out, EVENT_ID_LEN + 1,
             "%02x%02x%02x%02x-%02x%02x-%02x%02x-%02x%02x-%02x%02x%02x%02x%02x"
             "%02x",
             b[0], b[1], b[2], b[3], b[4], b[5], b[6], b[7], b[8], b[9], b[10],
             b[11], b[12], b[13], b[14], b[15]);
    return 0;
}

void event_time_now(char out[EVENT_TIME_LEN + 1])
{
    struct timespec ts;
    struct tm tm;
    char stamp[32];
    clock_gettime(CLOCK_REALTIME, &ts);
    gmtime_r(&ts.tv_sec, &tm);
    strftime(stamp, sizeof(stamp), "%Y-%m-%dT%H:%M:%S", &tm);
    int ms = (int)((unsigned long)ts.tv_nsec / 1000000UL % 1000UL);
    snprintf(out, EVENT_TIME_LEN + 1, "%.19s.%03dZ", stamp, ms);
}

static int gen_str(yajl_gen g, const char *s)
{
    return yajl_gen_string(g, (const unsigned char *)s, strlen(s)) ==
                   yajl_gen_status_ok
               ? 0
               : -1;
}

static int gen_member(yajl_gen g, const char *name, const char *value)
{
    return gen_str(g, name) || gen_str(g, value) ? -1 : 0;
}

int event_encode(const struct event_spec *spec, char **out, size_t *out_len,
                 char *errstr, size_t errstr_size)
{
    yajl_gen g = NULL;
    char *tp_from_edr = NULL;
    char id[EVENT_ID_LEN + 1], now[EVENT_TIME_LEN + 1];
    int rc = -1;
    const char *type = event_type_name(spec->type);
    int is_put = spec->type == EVENT_NEGOTIATED || spec->type == EVENT_RENEWED;

    *out = NULL;
    *out_len = 0;
    if (!type) {
        snprintf(errstr, errstr_size, "type: not an EDR event type");
        goto out;
    }
    /* First pass: check data.edr and learn its transferProcessId, which
     * becomes the subject before data.edr is written. */
    if (is_put && spec->edr_json &&
        replay_json(spec->edr_json, spec->edr_len, NULL, &tp_from_edr, errstr,
                    errstr_size) != 0)
        goto out;
    if (!spec->id && event_new_id(id) != 0) {
        snprintf(errstr, errstr_size, "cannot read /dev/urandom");
        goto out;
    }
    if (!spec->time)
        event_time_now(now);
    const char *subject = spec->subject;
    if (!subject)
        subject = is_put && tp_from_edr ? tp_from_edr : spec->transfer_id;

    if (!(g = yajl_gen_alloc(NULL)))
        goto nomem;
    if (yajl_gen_map_open(g) || gen_member(g, "specversion", "1.0") ||
        gen_member(g, "id", spec->id ? spec->id : id) ||
        gen_member(g, "source", spec->source ? spec->source : "") ||
        gen_member(g, "type", type) ||
        gen_member(g, "time", spec->time ? spec->time : now) ||
        (subject && gen_member(g, "subject", subject)) ||
        gen_member(g, "datacontenttype", "application/json") ||
        gen_str(g, "data") || yajl_gen_map_open(g) ||
        gen_member(g, "counter_party_id", spec->key.counter_party_id) ||
        gen_member(g, "counter_party_address",
                   spec->key.counter_party_address) ||
        gen_member(g, "query_checksum", spec->key.query_checksum) ||
        gen_member(g, "policy_checksum", spec->key.policy_checksum))
        goto nomem;
    if (is_put && spec->edr_json) {
        if (gen_str(g, "edr") || replay_json(spec->edr_json, spec->edr_len, g,
                                             NULL, errstr, errstr_size) != 0)
            goto out;
    } else if (is_put && spec->transfer_id) {
        if (gen_str(g, "edr") || yajl_gen_map_open(g) ||
            gen_member(g, "transferProcessId", spec->transfer_id) ||
            yajl_gen_map_close(g))
            goto nomem;
    } else if (!is_put && spec->transfer_id) {
        if (gen_member(g, "transfer_process_id", spec->transfer_id))
            goto nomem;
    }
    if (yajl_gen_map_close(g) || yajl_gen_map_close(g))
        goto nomem;

    const unsigned char *buf;
    size_t len;
    yajl_gen_get_buf(g, &buf, &len);
    if (!(*out = malloc(len + 1)))
        goto nomem;
    memcpy(*out, buf, len);
    (*out)[len] = '\0';
    *out_len = len;
    rc = 0;
    goto out;

nomem:
    snprintf(errstr, errstr_size,
             "cannot encode the event (out of memory "
             "or a key field missing)");
out:
    free(tp_from_edr);
    if (g)
        yajl_gen_free(g);
    return rc;
}

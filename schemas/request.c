/* request.c: see request.h. One pass of yajl's streaming parser fills a
 * table of members (value or the reason it is bad); the rules that depend
 * on the op run after the pass, because `args` may come before `op`.
 * Schema errors never stop the pass, so `reply_to` is found wherever it
 * sits in the object. */
#include "schemas/request.h"
#include "schemas/request_decoder.h"

#include "schemas/json_error.h"
#include "schemas/utf8.h"

#include <yajl/yajl_parse.h>

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

const char *const request_top_names[T_N] = {"id", "reply_to", "op", "args",
                                            "deadline_ms"};
const char *const request_arg_names[A_N] = {"counter_party_id",
                                            "counter_party_address",
                                            "query_checksum",
                                            "policy_checksum",
                                            "counter_party_id_substring",
                                            "limit",
                                            "cursor",
                                            "transfer_process_id",
                                            "asset_id",
                                            "asset_id_prefix",
                                            "wait_ms",
                                            "min_positions"};

static const char *const op_names[] = {
    "invalid",          "get_connection", "get_connection_transfer_id", "count",
    "list_connections", "ping",           "get_by_transfer_id"};

const char *request_op_name(enum request_op op)
{
    if ((int)op < 0 || (size_t)op >= sizeof(op_names) / sizeof(op_names[0]))
        return op_names[0];
    return op_names[op];
}

const char *request_error_class(enum request_error e)
{
    switch (e) {
    case REQUEST_OK:
        return "ok";
    case REQUEST_ERR_SIZE:
        return "size";
    case REQUEST_ERR_UTF8:
        return "utf8";
    case REQUEST_ERR_JSON:
        return "json";
    case REQUEST_ERR_SCHEMA:
        return "schema";
    }
    return "schema";
}

int request_utf8_valid(const void *s, size_t len, size_t *bad_at)
{
    return utf8_valid(s, len, bad_at);
}

static void field_bad(struct field *f, const char *why)
{
    free(f->str);
    f->str = NULL;
    f->state = F_BAD;
    f->why = why;
}

/* Static "not a string (got an array)" style reasons, one per kind. */
static const char *not_string(enum value_kind k)
{
    switch (k) {
    case V_NULL:
        return "not a string (null)";
    case V_BOOL:
        return "not a string (a boolean)";
    case V_INT:
    case V_DOUBLE:
        return "not a string (a number)";
    case V_MAP:
        return "not a string (an object)";
    case V_ARRAY:
        return "not a string (an array)";
    case V_STRING:
        break;
    }
    return "not a string";
}

/* Copies a string value into f when it meets the limits. */
static void field_string(struct decoder *d, struct field *f, enum value_kind k,
                         const unsigned char *s, size_t len, size_t max,
                         int allow_empty)
{
    if (k != V_STRING) {
        field_bad(f, not_string(k));
        return;
    }
    if (len > max) {
        field_bad(f, max == REQUEST_ID_MAX         ? "longer than 256 bytes"
                     : max == REQUEST_REPLY_TO_MAX ? "longer than 512 bytes"
                                                   : "longer than 1024 bytes");
        return;
    }
    if (len == 0 && !allow_empty) {
        field_bad(f, "empty");
        return;
    }
    if (memchr(s, '\0', len)) {
        field_bad(f, "contains a NUL character");
        return;
    }
    char *copy = malloc(len + 1);
    if (!copy) {
        d->oom = 1;
        field_bad(f, "out of memory");
        return;
    }
    memcpy(copy, s, len);
    copy[len] = '\0';
    f->str = copy;
    f->state = F_SET;
}

static int is_cursor(const unsigned char *s, size_t len)
{
    if (len != EDR_CONNECTION_KEY_LEN)
        return 0;
    for (size_t i = 0; i < len; i++)
        if (!((s[i] >= '0' && s[i] <= '9') || (s[i] >= 'a' && s[i] <= 'f')))
            return 0;
    return 1;
}

static void top_value(struct decoder *d, enum value_kind k,
                      const unsigned char *s, size_t len, long long num,
                      double dbl)
{
    if (d->top_key == T_OTHER)
        return;
    struct field *f = &d->top[d->top_key];
    if (f->state != F_ABSENT) {
        /* keep the first id/reply_to so an error reply can still go out */
        if (d->top_key != T_ID && d->top_key != T_REPLY_TO)
            field_bad(f, "duplicate member");
        else if (f->state == F_SET)
            f->why = "duplicate member"; /* reported, value kept */
        else
            field_bad(f, "duplicate member");
        return;
    }
    switch (d->top_key) {
    case T_ID:
        field_string(d, f, k, s, len, REQUEST_ID_MAX, 1);
        break;
    case T_REPLY_TO:
        field_string(d, f, k, s, len, REQUEST_REPLY_TO_MAX, 0);
        break;
    case T_OP:
        if (k != V_STRING) {
            field_bad(f, not_string(k));
            break;
        }
        f->state = F_BAD;
        f->why = "unknown operation (expected get_connection, "
                 "get_connection_transfer_id, get_by_transfer_id, count, "
                 "list_connections or ping)";
        for (size_t i = 1; i < sizeof(op_names) / sizeof(op_names[0]); i++) {
            if (strlen(op_names[i]) == len &&
                memcmp(op_names[i], s, len) == 0) {
                f->state = F_SET;
                f->why = NULL;
                d->op = (enum request_op)i;
            }
        }
        break;
    case T_ARGS:
        if (k == V_MAP) {
            f->state = F_SET;
            d->args_open = 1;
        } else if (k == V_NULL) {
            f->state = F_NULL;
        } else {
            field_bad(f, k == V_ARRAY    ? "not an object (an array)"
                         : k == V_STRING ? "not an object (a string)"
                                         : "not an object");
        }
        break;
    case T_DEADLINE:
        if (k == V_INT) {
            f->state = F_SET;
            f->num = num;
        } else if (k == V_DOUBLE && isfinite(dbl) && fabs(dbl) < 9.0e15) {
            /* a client computing now()*1000 in floating point */
            f->state = F_SET;
            f->num = (long long)dbl;
        } else if (k == V_NULL) {
            f->state = F_NULL;
        } else if (k == V_DOUBLE) {
            field_bad(f, "out of range");
        } else {
            field_bad(f, k == V_STRING ? "not a number (a string)"
                                       : "not a number");
        }
        break;
    default:
        break;
    }
}

static void arg_value(struct decoder *d, enum value_kind k,
                      const unsigned char *s, size_t len, long long num)
{
    if (d->arg_key == A_OTHER)
        return;
    struct field *f = &d->arg[d->arg_key];
    if (f->state != F_ABSENT) {
        field_bad(f, "duplicate member");
        return;
    }
    switch (d->arg_key) {
    case A_CPID:
    case A_ADDR:
    case A_QUERY:
    case A_POLICY:
        field_string(d, f, k, s, len, EDR_KEY_FIELD_MAX, 0);
        break;
    case A_SUBSTR:
        if (k == V_NULL)
            f->state = F_NULL;
        else
            field_string(d, f, k, s, len, EDR_KEY_FIELD_MAX, 1);
        break;
    case A_LIMIT:
        if (k == V_NULL) {
            f->state = F_NULL;
        } else if (k != V_INT) {
            field_bad(f, k == V_DOUBLE ? "not an integer"
                                       : "not an integer (expected 1..1000)");
        } else if (num < 1 || num > REQUEST_LIMIT_MAX) {
            field_bad(f, "out of range (expected 1..1000)");
        } else {
            f->state = F_SET;
            f->num = num;
        }
        break;
    case A_TRANSFER_ID:
    case A_ASSET_ID:
    case A_ASSET_PREFIX:
        if (k == V_NULL)
            f->state = F_NULL;
        else
            field_string(d, f, k, s, len, EDR_KEY_FIELD_MAX,
                         d->arg_key == A_ASSET_PREFIX);
        break;
    case A_WAIT:
        if (k == V_NULL) {
            f->state = F_NULL;
        } else if (k != V_INT) {
            field_bad(f, "not an integer (expected 0..30000)");
        } else if (num < 0 || num > REQUEST_WAIT_MAX_MS) {
            field_bad(f, "out of range (expected 0..30000)");
        } else {
            f->state = F_SET;
            f->num = num;
        }
        break;
    case A_POSITIONS:
        if (k == V_MAP) {
            f->state = F_SET;
            d->pos_open = 1;
        } else if (k == V_NULL) {
            f->state = F_NULL;
        } else {
            field_bad(f, "not an object of partitions to offsets");
        }
        break;
    case A_CURSOR:
        if (k == V_NULL || (k == V_STRING && len == 0))
            f->state = F_NULL;
        else if (k != V_STRING)
            field_bad(f, not_string(k));
        else if (!is_cursor(s, len))
            field_bad(f, "not a cursor returned by list_connections");
        else
            field_string(d, f, k, s, len, EDR_CONNECTION_KEY_LEN, 0);
        break;
    default:
        break;
    }
}

/* A partition key of min_positions: canonical decimal, 0..INT32_MAX;
 * -1 otherwise. */
static long long partition_key(const unsigned char *s, size_t len)
{
    long long v = 0;
    if (len == 0 || len > 10 || (len > 1 && s[0] == '0'))
        return -1;
    for (size_t i = 0; i < len; i++) {
        if (s[i] < '0' || s[i] > '9')
            return -1;
        v = v * 10 + (s[i] - '0');
    }
    return v > INT32_MAX ? -1 : v;
}

/* One value inside args.min_positions: an offset >= 0. */
static void pos_value(struct decoder *d, enum value_kind k, long long num)
{
    struct field *f = &d->arg[A_POSITIONS];
    if (f->state == F_BAD)
        return;
    if (d->pos_key < 0) {
        field_bad(f, "a key is not a decimal partition number");
        return;
    }
    if (k != V_INT || num < 0) {
        field_bad(f, "an offset is not a non-negative integer");
        return;
    }
    for (size_t i = 0; i < d->n_pos; i++) {
        if (d->pos[i].partition == (int32_t)d->pos_key) {
            field_bad(f, "duplicate partition");
            return;
        }
    }
    if (d->n_pos == REQUEST_POSITIONS_MAX) {
        field_bad(f, "more than 1024 partitions");
        return;
    }
    if (d->n_pos == d->pos_cap) {
        size_t cap = d->pos_cap ? d->pos_cap * 2 : 8;
        void *p = realloc(d->pos, cap * sizeof(*d->pos));
        if (!p) {
            d->oom = 1;
            field_bad(f, "out of memory");
            return;
        }
        d->pos = p;
        d->pos_cap = cap;
    }
    d->pos[d->n_pos].partition = (int32_t)d->pos_key;
    d->pos[d->n_pos].offset = num;
    d->n_pos++;
}

/* Routes one value (scalar or container start) by where it sits. */
static void on_value(struct decoder *d, enum value_kind k,
                     const unsigned char *s, size_t len, long long num,
                     double dbl)
{
    if (d->depth == 0) {
        d->is_object = (k == V_MAP);
    } else if (d->depth == 1 && d->is_object) {
        top_value(d, k, s, len, num, dbl);
    } else if (d->depth == 2 && d->args_open) {
        arg_value(d, k, s, len, num);
    } else if (d->depth == 3 && d->pos_open) {
        pos_value(d, k, num);
    }
}

static int cb_null(void *ctx)
{
    on_value(ctx, V_NULL, NULL, 0, 0, 0);
    return 1;
}

static int cb_boolean(void *ctx, int b)
{
    (void)b;
    on_value(ctx, V_BOOL, NULL, 0, 0, 0);
    return 1;
}

static int cb_integer(void *ctx, long long v)
{
    on_value(ctx, V_INT, NULL, 0, v, 0);
    return 1;
}

static int cb_double(void *ctx, double v)
{
    on_value(ctx, V_DOUBLE, NULL, 0, 0, v);
    return 1;
}

static int cb_string(void *ctx, const unsigned char *s, size_t len)
{
    on_value(ctx, V_STRING, s, len, 0, 0);
    return 1;
}

static int cb_start_map(void *ctx)
{
    struct decoder *d = ctx;
    on_value(d, V_MAP, NULL, 0, 0, 0);
    d->depth++;
    return 1;
}

static int cb_start_array(void *ctx)
{
    struct decoder *d = ctx;
    on_value(d, V_ARRAY, NULL, 0, 0, 0);
    d->depth++;
    return 1;
}

static int cb_end(void *ctx)
{
    struct decoder *d = ctx;
    d->depth--;
    /* back at depth 1: the member that was open (maybe args) is closed;
     * containers nested inside args end at depth 2 and keep it open */
    if (d->depth == 1)
        d->args_open = 0;
    if (d->depth == 2)
        d->pos_open = 0;
    return 1;
}

static int cb_map_key(void *ctx, const unsigned char *s, size_t len)
{
    struct decoder *d = ctx;
    if (d->depth == 1 && d->is_object) {
        d->top_key = T_OTHER;
        for (int i = 0; i < T_N; i++)
            if (strlen(request_top_names[i]) == len &&
                memcmp(request_top_names[i], s, len) == 0)
                d->top_key = i;
    } else if (d->depth == 2 && d->args_open) {
        d->arg_key = A_OTHER;
        for (int i = 0; i < A_N; i++)
            if (strlen(request_arg_names[i]) == len &&
                memcmp(request_arg_names[i], s, len) == 0)
                d->arg_key = i;
    } else if (d->depth == 3 && d->pos_open) {
        d->pos_key = partition_key(s, len);
    }
    return 1;
}

static const yajl_callbacks request_callbacks = {
    cb_null,      cb_boolean, cb_integer, cb_double,      NULL,   cb_string,
    cb_start_map, cb_map_key, cb_end,     cb_start_array, cb_end,
};

static char *take(struct field *f)
{
    char *s = f->str;
    f->str = NULL;
    return s;
}

static void decoder_free(struct decoder *d)
{
    for (int i = 0; i < T_N; i++)
        free(d->top[i].str);
    for (int i = 0; i < A_N; i++)
        free(d->arg[i].str);
    free(d->pos);
}

static int position_cmp(const void *a, const void *b)
{
    const struct request_position *x = a, *y = b;
    return (x->partition > y->partition) - (x->partition < y->partition);
}

enum request_error request_decode(struct request *req, const void *buf,
                                  size_t len, char *errstr, size_t errstr_size)
{
    struct decoder d;
    enum request_error rc = REQUEST_OK;
    size_t bad_at = 0;
    size_t parse_len = len > REQUEST_MAX_BYTES ? REQUEST_MAX_BYTES : len;
    yajl_handle h = NULL;

    memset(req, 0, sizeof(*req));
    memset(&d, 0, sizeof(d));
    if (errstr_size)
        errstr[0] = '\0';
    if (len == 0) {
        snprintf(errstr, errstr_size, "request: empty");
        return REQUEST_ERR_SIZE;
    }

    h = yajl_alloc(&request_callbacks, NULL, &d);
    if (!h) {
        snprintf(errstr, errstr_size, "request: out of memory");
        rc = REQUEST_ERR_SCHEMA;
        goto out;
    }
    yajl_status st = yajl_parse(h, buf, parse_len);
    if (st == yajl_status_ok && len <= REQUEST_MAX_BYTES)
        st = yajl_complete_parse(h);

    /* The rules in order of precedence: size, UTF-8, syntax, schema. */
    if (len > REQUEST_MAX_BYTES) {
        snprintf(errstr, errstr_size, "request: larger than %d bytes",
                 REQUEST_MAX_BYTES);
        rc = REQUEST_ERR_SIZE;
    } else if (!utf8_valid(buf, len, &bad_at)) {
        snprintf(errstr, errstr_size, "request: invalid UTF-8 at byte %zu",
                 bad_at);
        rc = REQUEST_ERR_UTF8;
    } else if (st != yajl_status_ok) {
        json_syntax_error(h, "request", errstr, errstr_size);
        rc = REQUEST_ERR_JSON;
    } else {
        rc = request_check_schema(&d, errstr, errstr_size);
    }

    /* What survives an error: id and reply_to read intact. */
    if (d.is_object && d.top[T_ID].state == F_SET)
        req->id = take(&d.top[T_ID]);
    if (d.is_object && d.top[T_REPLY_TO].state == F_SET)
        req->reply_to = take(&d.top[T_REPLY_TO]);
    if (rc != REQUEST_OK)
        goto out;

    req->op = d.op;
    if (d.op == REQUEST_GET_CONNECTION || d.op == REQUEST_GET_TRANSFER_ID) {
        req->counter_party_id = take(&d.arg[A_CPID]);
        req->counter_party_address = take(&d.arg[A_ADDR]);
        req->query_checksum = take(&d.arg[A_QUERY]);
        req->policy_checksum = take(&d.arg[A_POLICY]);
    }
    if (d.op == REQUEST_COUNT || d.op == REQUEST_LIST) {
        req->substring = take(&d.arg[A_SUBSTR]);
        req->asset_id = take(&d.arg[A_ASSET_ID]);
        req->asset_id_prefix = take(&d.arg[A_ASSET_PREFIX]);
    }
    if (d.op == REQUEST_COUNT || d.op == REQUEST_LIST ||
        d.op == REQUEST_GET_BY_TRANSFER_ID)
        req->transfer_process_id = take(&d.arg[A_TRANSFER_ID]);
    if (d.op != REQUEST_PING && d.arg[A_WAIT].state == F_SET) {
        req->has_wait = 1;
        req->wait_ms = d.arg[A_WAIT].num;
    }
    if (d.op != REQUEST_PING && d.arg[A_POSITIONS].state == F_SET) {
        req->has_positions = 1;
        req->positions = d.pos;
        req->n_positions = d.n_pos;
        d.pos = NULL;
        if (req->n_positions > 1)
            qsort(req->positions, req->n_positions, sizeof(*req->positions),
                  position_cmp);
    }
    if (d.op == REQUEST_LIST) {
        req->cursor = take(&d.arg[A_CURSOR]);
        req->limit = d.arg[A_LIMIT].state == F_SET ? (size_t)d.arg[A_LIMIT].num
                                                   : REQUEST_LIMIT_DEFAULT;
    }
    if (d.top[T_DEADLINE].state == F_SET) {
        req->has_deadline = 1;
        req->deadline_ms = d.top[T_DEADLINE].num;
    }

out:
    if (h)
        yajl_free(h);
    decoder_free(&d);
    return rc;
}

void request_clear(struct request *req)
{
    if (!req)
        return;
    free(req->id);
    free(req->reply_to);
    free(req->counter_party_id);
    free(req->counter_party_address);
    free(req->query_checksum);
    free(req->policy_checksum);
    free(req->substring);
    free(req->cursor);
    free(req->transfer_process_id);
    free(req->asset_id);
    free(req->asset_id_prefix);
    free(req->positions);
    memset(req, 0, sizeof(*req));
}

int request_reply_to_allowed(const char *reply_to, const char *prefix)
{
    static const char mid[] = ":reply:";
    if (!reply_to || !prefix)
        return 0;
    size_t n = strlen(prefix);
    return strncmp(reply_to, prefix, n) == 0 &&
           strncmp(reply_to + n, mid, sizeof(mid) - 1) == 0;
}

struct edr_key request_key(const struct request *req)
{
    struct edr_key k = {req->counter_party_id, req->counter_party_address,
                        req->query_checksum, req->policy_checksum};
    return k;
}

/* reply.c: see reply.h. The writer grows one buffer per responder thread,
 * so steady-state replies allocate nothing. */
#include "schemas/reply.h"

#include "schemas/json_scan.h"
#include "schemas/request.h"
#include "schemas/text.h"

#include <yajl/yajl_gen.h>
#include <yajl/yajl_parse.h>
#include <yajl/yajl_tree.h>

#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

void reply_buf_free(struct reply_buf *b)
{
    if (!b)
        return;
    free(b->data);
    memset(b, 0, sizeof(*b));
}

void reply_buf_reset(struct reply_buf *b)
{
    b->len = 0;
    b->oom = 0;
    if (b->data)
        b->data[0] = '\0';
}

/* Makes room for n more bytes plus the NUL; 0 or -1 (oom set). */
static int reserve(struct reply_buf *b, size_t n)
{
    if (b->oom)
        return -1;
    if (b->len + n + 1 <= b->cap)
        return 0;
    size_t cap = b->cap ? b->cap : 256;
    while (cap < b->len + n + 1) {
        if (cap > SIZE_MAX / 2) {
            b->oom = 1;
            return -1;
        }
        cap *= 2;
    }
    char *p = realloc(b->data, cap);
    if (!p) {
        b->oom = 1;
        return -1;
    }
    b->data = p;
    b->cap = cap;
    return 0;
}

void reply_raw(struct reply_buf *b, const char *s, size_t n)
{
    if (reserve(b, n))
        return;
    memcpy(b->data + b->len, s, n);
    b->len += n;
    b->data[b->len] = '\0';
}

void reply_str(struct reply_buf *b, const char *s, size_t n)
{
    /* worst case: every byte becomes \ufffd (6 chars) */
    if (n > (SIZE_MAX - 2) / 6 || reserve(b, TEXT_JSON_ESCAPE_MAX(n) + 2))
        return;
    char *o = b->data + b->len;
    *o++ = '"';
    o += text_json_escape(o, s, n, TEXT_HIGH_UTF8);
    *o++ = '"';
    b->len = (size_t)(o - b->data);
    b->data[b->len] = '\0';
}

void reply_cstr(struct reply_buf *b, const char *s)
{
    if (s)
        reply_str(b, s, strlen(s));
    else
        reply_raw(b, "null", 4);
}

void reply_u64(struct reply_buf *b, uint64_t v)
{
    char num[32];
    int n = snprintf(num, sizeof(num), "%" PRIu64, v);
    reply_raw(b, num, (size_t)n);
}

void reply_i64(struct reply_buf *b, int64_t v)
{
    char num[32];
    int n = snprintf(num, sizeof(num), "%" PRId64, v);
    reply_raw(b, num, (size_t)n);
}

void reply_begin(struct reply_buf *b, const char *id, const char *status)
{
    reply_buf_reset(b);
    reply_raw(b, "{\"id\":", 6);
    reply_cstr(b, id);
    reply_raw(b, ",\"status\":", 10);
    reply_cstr(b, status);
    reply_raw(b, ",\"result\":", 10);
}

int reply_end(struct reply_buf *b)
{
    reply_raw(b, "}", 1);
    return b->oom ? -1 : 0;
}

int reply_error(struct reply_buf *b, const char *id, const char *code,
                const char *reason)
{
    reply_buf_reset(b);
    reply_raw(b, "{\"id\":", 6);
    reply_cstr(b, id);
    reply_raw(b, ",\"status\":\"error\",\"error\":", 26);
    reply_cstr(b, reason ? reason : "error");
    reply_raw(b, ",\"code\":", 8);
    reply_cstr(b, code ? code : REPLY_CODE_INTERNAL);
    reply_raw(b, ",\"result\":null}", 15);
    return b->oom ? -1 : 0;
}

int reply_is_json_object(const char *s, size_t n)
{
    return json_is_object(s, n);
}

/* Writes v with yajl_gen; numbers keep their original text. */
static int gen_value(yajl_gen g, const yajl_val v)
{
    yajl_gen_status s = yajl_gen_status_ok;
    if (!v)
        return yajl_gen_null(g) == yajl_gen_status_ok ? 0 : -1;
    switch (v->type) {
    case yajl_t_string:
        s = yajl_gen_string(g, (const unsigned char *)v->u.string,
                            strlen(v->u.string));
        break;
    case yajl_t_number:
        s = yajl_gen_number(g, v->u.number.r, strlen(v->u.number.r));
        break;
    case yajl_t_object:
        s = yajl_gen_map_open(g);
        for (size_t i = 0; s == yajl_gen_status_ok && i < v->u.object.len;
             i++) {
            const char *k = v->u.object.keys[i];
            s = yajl_gen_string(g, (const unsigned char *)k, strlen(k));
            if (s == yajl_gen_status_ok && gen_value(g, v->u.object.values[i]))
                return -1;
        }
        if (s == yajl_gen_status_ok)
            s = yajl_gen_map_close(g);
        break;
    case yajl_t_array:
        s = yajl_gen_array_open(g);
        for (size_t i = 0; s == yajl_gen_status_ok && i < v->u.array.len; i++)
            if (gen_value(g, v->u.array.values[i]))
                return -1;
        if (s == yajl_gen_status_ok)
            s = yajl_gen_array_close(g);
        break;
    case yajl_t_true:
        s = yajl_gen_bool(g, 1);
        break;
    case yajl_t_false:
        s = yajl_gen_bool(g, 0);
        break;
    default:
        s = yajl_gen_null(g);
        break;
    }
    return s == yajl_gen_status_ok ? 0 : -1;
}

static char *dup_string(yajl_val v)
{
    return YAJL_IS_STRING(v) ? strdup(v->u.string) : NULL;
}

int reply_decode(struct reply_msg *m, const void *buf, size_t len, char *errstr,
                 size_t errstr_size)
{
    int rc = -1;
    char *text = NULL;
    yajl_val root = NULL;
    yajl_gen g = NULL;
    char perr[128] = "";

    memset(m, 0, sizeof(*m));
    text = malloc(len + 1);
    if (!text) {
        snprintf(errstr, errstr_size, "reply: out of memory");
        goto out;
    }
    memcpy(text, buf, len);
    text[len] = '\0';
    root = yajl_tree_parse(text, perr, sizeof(perr));
    if (!root || !YAJL_IS_OBJECT(root)) {
        perr[strcspn(perr, "\n")] = '\0';
        snprintf(errstr, errstr_size, "reply: not a JSON object%s%s",
                 perr[0] ? ": " : "", perr);
        goto out;
    }
    const char *p_status[] = {"status", NULL};
    const char *p_id[] = {"id", NULL};
    const char *p_error[] = {"error", NULL};
    const char *p_code[] = {"code", NULL};
    const char *p_result[] = {"result", NULL};
    yajl_val status = yajl_tree_get(root, p_status, yajl_t_string);
    if (!status) {
        snprintf(errstr, errstr_size, "reply: status: missing");
        goto out;
    }
    const char *s = YAJL_GET_STRING(status);
    if (strcmp(s, "ok") == 0) {
        m->status = REPLY_OK;
    } else if (strcmp(s, "not_found") == 0) {
        m->status = REPLY_NOT_FOUND;
    } else if (strcmp(s, "error") == 0) {
        m->status = REPLY_ERROR;
    } else {
        snprintf(errstr, errstr_size, "reply: status: unknown");
        goto out;
    }
    m->id = dup_string(yajl_tree_get(root, p_id, yajl_t_any));
    if (m->status == REPLY_ERROR) {
        m->error = dup_string(yajl_tree_get(root, p_error, yajl_t_any));
        if (!m->error)
            m->error = strdup("(no reason given)");
        m->code = dup_string(yajl_tree_get(root, p_code, yajl_t_any));
    }
    g = yajl_gen_alloc(NULL);
    if (!g || gen_value(g, yajl_tree_get(root, p_result, yajl_t_any))) {
        snprintf(errstr, errstr_size, "reply: result: cannot re-encode");
        goto out;
    }
    const unsigned char *out;
    size_t out_len;
    yajl_gen_get_buf(g, &out, &out_len);
    m->result_json = malloc(out_len + 1);
    if (!m->result_json) {
        snprintf(errstr, errstr_size, "reply: out of memory");
        goto out;
    }
    memcpy(m->result_json, out, out_len);
    m->result_json[out_len] = '\0';
    m->result_len = out_len;
    rc = 0;
out:
    if (rc)
        reply_msg_clear(m);
    if (g)
        yajl_gen_free(g);
    yajl_tree_free(root);
    free(text);
    return rc;
}

void reply_msg_clear(struct reply_msg *m)
{
    if (!m)
        return;
    free(m->id);
    free(m->error);
    free(m->code);
    free(m->result_json);
    memset(m, 0, sizeof(*m));
}

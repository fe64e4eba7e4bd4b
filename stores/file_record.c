/* file_record.c: the JSON shape of one op or entry in the file store's
 * journal records and snapshot (file_store_int.h): its encoder, its strict
 * parser, and the replay of parsed ops into the memory table. */
#include "stores/file_store_int.h"

#include <stdlib.h>
#include <string.h>
#ifdef __SSE2__
#include <emmintrin.h>
#endif

/* 1 when s[0..n) holds a byte text_json_escape would escape: '"', '\\'
 * or one below 0x20 (the file store writes bytes >= 0x80 verbatim). */
static int fs_needs_escape(const char *s, size_t n)
{
    const unsigned char *p = (const unsigned char *)s, *end = p + n;
#ifdef __SSE2__
    const __m128i quote = _mm_set1_epi8('"'), bs = _mm_set1_epi8('\\');
    const __m128i ctl = _mm_set1_epi8(0x1f);
    for (; end - p >= 16; p += 16) {
        __m128i v = _mm_loadu_si128((const __m128i *)p);
        __m128i m = _mm_or_si128(
            _mm_or_si128(_mm_cmpeq_epi8(v, quote), _mm_cmpeq_epi8(v, bs)),
            _mm_cmpeq_epi8(_mm_min_epu8(v, ctl), v)); /* v <= 0x1f */
        if (_mm_movemask_epi8(m))
            return 1;
    }
#endif
    for (; p < end; p++)
        if (*p == '"' || *p == '\\' || *p < 0x20)
            return 1;
    return 0;
}

/* fj_str, with the common case (nothing to escape: keys, ids) copied in
 * one piece instead of escaped byte by byte; the output is the same. */
void fs_str(struct fj_buf *b, const char *s, size_t n)
{
    if (fs_needs_escape(s, n)) {
        fj_str(b, s, n);
        return;
    }
    fj_raw(b, "\"", 1);
    fj_raw(b, s, n);
    fj_raw(b, "\"", 1);
}

void fs_enc_key(struct fj_buf *b, const struct edr_key *k)
{
    fj_lit(b, "\"counter_party_id\":");
    fs_str(b, k->counter_party_id, strlen(k->counter_party_id));
    fj_lit(b, ",\"counter_party_address\":");
    fs_str(b, k->counter_party_address, strlen(k->counter_party_address));
    fj_lit(b, ",\"query_checksum\":");
    fs_str(b, k->query_checksum, strlen(k->query_checksum));
    fj_lit(b, ",\"policy_checksum\":");
    fs_str(b, k->policy_checksum, strlen(k->policy_checksum));
}

void fs_enc_put(struct fj_buf *b, const struct edr_key *k, const char *tid,
                size_t tid_len, const char *json, size_t json_len)
{
    fs_enc_key(b, k);
    fj_lit(b, ",\"transfer_process_id\":");
    fs_str(b, tid, tid_len);
    fj_lit(b, ",\"edr\":");
    fj_raw(b, json, json_len);
}

const char fs_oom[] = "out of memory";

int fs_ops_push(struct fs_ops *o)
{
    if (o->n == o->cap) {
        size_t cap = o->cap ? o->cap * 2 : 256;
        struct store_op *v = realloc(o->v, cap * sizeof(*v));
        if (!v)
            return -1;
        o->v = v;
        o->cap = cap;
    }
    memset(&o->v[o->n++], 0, sizeof(*o->v));
    return 0;
}

int fs_key_is(const char *k, const char *want)
{
    return strcmp(k, want) == 0;
}

/* Parses one {"op":..., keys, transfer id, "edr": {...}} object. */
int fs_parse_op(struct fj_reader *r, struct store_op *op)
{
    char *key, *val;
    size_t len;
    op->kind = STORE_OP_PUT;
    if (fj_expect(r, '{') != 0)
        return -1;
    if (fj_peek(r) == '}') {
        r->err = "empty entry";
        return -1;
    }
    do {
        if (fj_string(r, &key, &len) != 0 || fj_expect(r, ':') != 0)
            return -1;
        if (fs_key_is(key, "edr")) {
            if (fj_value(r, &op->entry_json, &op->entry_len) != 0)
                return -1;
            continue;
        }
        if (fj_peek(r) != '"') {
            const char *s;
            if (fj_value(r, &s, &len) != 0) /* unknown member: skip */
                return -1;
            continue;
        }
        if (fj_string(r, &val, &len) != 0)
            return -1;
        if (fs_key_is(key, "op")) {
            if (fs_key_is(val, "delete"))
                op->kind = STORE_OP_DELETE;
            else if (!fs_key_is(val, "put")) {
                r->err = "unknown op";
                return -1;
            }
        } else if (fs_key_is(key, "counter_party_id")) {
            op->key.counter_party_id = val;
        } else if (fs_key_is(key, "counter_party_address")) {
            op->key.counter_party_address = val;
        } else if (fs_key_is(key, "query_checksum")) {
            op->key.query_checksum = val;
        } else if (fs_key_is(key, "policy_checksum")) {
            op->key.policy_checksum = val;
        } else if (fs_key_is(key, "transfer_process_id") ||
                   fs_key_is(key, "if_transfer_id")) {
            op->transfer_id = val;
        }
    } while (fj_peek(r) == ',' && (r->p++, 1));
    return fj_expect(r, '}');
}

/* Applies parsed ops (and offsets) through the same path as apply(). */
int fs_apply_parsed(struct file_store *fs, struct fs_ops *o, const char *topic,
                    struct store_err *err)
{
    struct store_batch b = {.ops = o->v,
                            .n_ops = o->n,
                            .topic = topic,
                            .offsets = o->offs,
                            .n_offsets = o->n_offs};
    struct mem_prep p;
    int rc = mem_table_prepare(&fs->t, &b, &p, err);
    if (rc != STORE_OK)
        return rc;
    mem_table_commit(&fs->t, &b, &p);
    o->n = 0;
    o->n_offs = 0;
    return STORE_OK;
}

int fs_parse_offset(struct fj_reader *r, struct fs_ops *o, char **topic)
{
    char *key;
    size_t len;
    int64_t v;
    if (o->n_offs == o->cap_offs) {
        size_t cap = o->cap_offs ? o->cap_offs * 2 : 16;
        struct store_offset *n = realloc(o->offs, cap * sizeof(*n));
        if (!n) {
            r->err = fs_oom;
            return -1;
        }
        o->offs = n;
        o->cap_offs = cap;
    }
    struct store_offset *so = &o->offs[o->n_offs++];
    so->first_offset = -1; /* replaying the journal: already fenced */
    if (fj_expect(r, '{') != 0)
        return -1;
    do {
        if (fj_string(r, &key, &len) != 0 || fj_expect(r, ':') != 0)
            return -1;
        if (fs_key_is(key, "topic")) {
            if (fj_string(r, topic, &len) != 0)
                return -1;
        } else if (fs_key_is(key, "partition") ||
                   fs_key_is(key, "next_offset")) {
            if (fj_int64(r, &v) != 0)
                return -1;
            if (key[0] == 'p')
                so->partition = (int32_t)v;
            else
                so->next_offset = v;
        } else {
            const char *s;
            if (fj_value(r, &s, &len) != 0)
                return -1;
        }
    } while (fj_peek(r) == ',' && (r->p++, 1));
    return fj_expect(r, '}');
}

/* changelog_record.c: the changelog's record format (schemas/README.md §4,
 * "The changelog"): the value {"counter_party_id", "counter_party_address",
 * "query_checksum", "policy_checksum", "edr": stored entry} of a put, built
 * and read back with stores/file_json.h; a delete is a null value (a
 * tombstone). Used by the writer (changelog.c) and the restore
 * (changelog_restore.c); see changelog.h for the functions. */
#include "worker/changelog.h"

#include "base/errstr.h"
#include "stores/file_json.h"

#include <stdlib.h>
#include <string.h>

int changelog_value_encode(const struct changelog_change *ch, char **out,
                           size_t *len)
{
    struct fj_buf b = {0};
    const struct edr_key *k = &ch->key;

    if (!ch->entry_json || !fj_is_object(ch->entry_json, ch->entry_len))
        return -1;
    fj_lit(&b, "{\"counter_party_id\":");
    fj_str(&b, k->counter_party_id, strlen(k->counter_party_id));
    fj_lit(&b, ",\"counter_party_address\":");
    fj_str(&b, k->counter_party_address, strlen(k->counter_party_address));
    fj_lit(&b, ",\"query_checksum\":");
    fj_str(&b, k->query_checksum, strlen(k->query_checksum));
    fj_lit(&b, ",\"policy_checksum\":");
    fj_str(&b, k->policy_checksum, strlen(k->policy_checksum));
    fj_lit(&b, ",\"edr\":");
    fj_raw(&b, ch->entry_json, ch->entry_len);
    fj_lit(&b, "}");
    fj_raw(&b, "", 1); /* a C string too */
    if (b.oom) {
        fj_buf_free(&b);
        return -1;
    }
    *out = b.p;
    *len = b.len - 1;
    return 0;
}

/* The entry's top-level transferProcessId, malloc'd; NULL when absent,
 * not a non-empty string, or out of memory. */
static char *cl_transfer_id(const char *entry, size_t len)
{
    char *copy = malloc(len + 1), *id = NULL;
    struct fj_reader r;

    if (!copy)
        return NULL;
    memcpy(copy, entry, len);
    copy[len] = '\0';
    r = (struct fj_reader){.p = copy, .end = copy + len, .base = copy};
    if (fj_expect(&r, '{') || fj_peek(&r) == '}')
        goto done;
    for (;;) {
        char *name, *s;
        size_t nl, sl;
        const char *v;
        if (fj_string(&r, &name, &nl) || fj_expect(&r, ':'))
            goto done;
        if (strcmp(name, "transferProcessId") == 0) {
            if (fj_peek(&r) != '"' || fj_string(&r, &s, &sl) || sl == 0)
                goto done;
            free(id);
            id = strdup(s);
        } else if (fj_value(&r, &v, &sl)) {
            goto done;
        }
        if (fj_peek(&r) == ',') {
            r.p++;
            continue;
        }
        break;
    }

done:
    free(copy);
    return id;
}

int changelog_value_decode(char *buf, size_t len, const char *key,
                           size_t key_len, struct changelog_value *out,
                           char *errstr, size_t n)
{
    static const char *const names[] = {"counter_party_id",
                                        "counter_party_address",
                                        "query_checksum", "policy_checksum"};
    const char *fields[4] = {NULL, NULL, NULL, NULL};
    const char *edr = NULL;
    size_t edr_len = 0;
    struct fj_reader r = {.p = buf, .end = buf + len, .base = buf};
    char ck[EDR_CONNECTION_KEY_LEN + 1];

    memset(out, 0, sizeof(*out));
    if (fj_expect(&r, '{'))
        goto bad;
    while (fj_peek(&r) != '}') {
        char *name, *s;
        size_t nl, sl;
        if (fj_string(&r, &name, &nl) || fj_expect(&r, ':'))
            goto bad;
        int f = -1;
        for (int i = 0; i < 4; i++)
            if (strcmp(name, names[i]) == 0)
                f = i;
        if (f >= 0) {
            if (fj_string(&r, &s, &sl))
                goto bad;
            if (sl == 0 || strlen(s) != sl) {
                edr_errf(errstr, n, "%s is empty or holds a NUL", names[f]);
                return -1;
            }
            fields[f] = s;
        } else if (strcmp(name, "edr") == 0) {
            if (fj_value(&r, &edr, &edr_len))
                goto bad;
        } else {
            const char *v;
            if (fj_value(&r, &v, &sl))
                goto bad;
        }
        if (fj_peek(&r) == ',')
            r.p++;
        else if (fj_peek(&r) != '}')
            goto bad;
    }
    r.p++;
    if (fj_peek(&r) != -1)
        goto bad;
    for (int i = 0; i < 4; i++) {
        if (!fields[i]) {
            edr_errf(errstr, n, "no %s", names[i]);
            return -1;
        }
    }
    if (!edr || !fj_is_object(edr, edr_len)) {
        edr_errf(errstr, n, "edr is missing or not an object");
        return -1;
    }
    out->key = (struct edr_key){fields[0], fields[1], fields[2], fields[3]};
    edr_connection_key(&out->key, ck);
    if (key_len != EDR_CONNECTION_KEY_LEN || memcmp(ck, key, key_len) != 0) {
        edr_errf(errstr, n,
                 "record key is not the connection key of its value");
        return -1;
    }
    out->transfer_id = cl_transfer_id(edr, edr_len);
    if (!out->transfer_id) {
        edr_errf(errstr, n, "edr has no transferProcessId string");
        return -1;
    }
    out->entry_json = edr;
    out->entry_len = edr_len;
    return 0;

bad:
    edr_errf(errstr, n, "malformed value at byte %zu: %s", fj_pos(&r),
             r.err ? r.err : "unexpected input");
    return -1;
}

void changelog_value_clear(struct changelog_value *v)
{
    if (!v)
        return;
    free(v->transfer_id);
    v->transfer_id = NULL;
}

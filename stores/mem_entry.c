/* mem_entry.c: one stored entry of the memory table (mem_table_int.h):
 * a single allocation holding its four keys, transfer id and JSON.
 *
 * The connection key (SHA-256, about 1.3 us) is computed here, when a put
 * is prepared and outside every lock: the ordered index needs it at
 * commit, and list and count must not pay it per entry visited. */
#include "stores/mem_table_int.h"

#include "schemas/sha256.h"

#include <stdlib.h>
#include <string.h>

const char *mem_entry_field(const struct mem_entry *e, int i)
{
    const char *p = e->data;
    for (int j = 0; j < i; j++)
        p += e->len[j] + 1;
    return p;
}

/* The raw connection key of the four fields (schemas/README.md §1). */
static void mt_entry_ck(struct mem_entry *e)
{
    const unsigned char sep = 0x1F;
    struct sha256 s;
    sha256_init(&s);
    const char *p = e->data;
    for (int i = 0; i < 4; i++) {
        if (i > 0)
            sha256_update(&s, &sep, 1);
        sha256_update(&s, p, e->len[i]);
        p += e->len[i] + 1;
    }
    sha256_final(&s, e->ck);
}

struct mem_entry *mt_entry_new(uint64_t hash, const char *const f[4],
                               const size_t len[4], const char *tid,
                               size_t tid_len, const char *json,
                               size_t json_len)
{
    size_t total = sizeof(struct mem_entry) + len[0] + len[1] + len[2] +
                   len[3] + tid_len + json_len + 6;
    struct mem_entry *e = malloc(total);
    if (!e)
        return NULL;
    e->hash = hash;
    char *p = e->data;
    for (int i = 0; i < 4; i++) {
        e->len[i] = (uint32_t)len[i];
        memcpy(p, f[i], len[i]);
        p[len[i]] = '\0';
        p += len[i] + 1;
    }
    e->len[4] = (uint32_t)tid_len;
    memcpy(p, tid, tid_len);
    p[tid_len] = '\0';
    p += tid_len + 1;
    e->json_len = (uint32_t)json_len;
    memcpy(p, json, json_len);
    p[json_len] = '\0';
    mt_entry_ck(e);
    return e;
}

void mt_entry_free(struct mem_entry *e)
{
    free(e);
}

int mt_entry_matches(const struct mem_entry *e, uint64_t hash,
                     const char *const f[4], const size_t len[4])
{
    if (e->hash != hash)
        return 0;
    const char *p = e->data;
    for (int i = 0; i < 4; i++) {
        if (e->len[i] != len[i] || memcmp(p, f[i], len[i]) != 0)
            return 0;
        p += len[i] + 1;
    }
    return 1;
}

void mt_key_fields(const struct edr_key *k, const char *f[4], size_t len[4])
{
    f[0] = k->counter_party_id;
    f[1] = k->counter_party_address;
    f[2] = k->query_checksum;
    f[3] = k->policy_checksum;
    for (int i = 0; i < 4; i++)
        len[i] = strlen(f[i]);
}

/* changelog_restore.c: see changelog_restore.h. One consumer (group.id of
 * the ownership group, never subscribed, never committing) reads the
 * committed source offsets and the changelog; a producer handle, which
 * lists offsets read_uncommitted, gives the high watermarks. The latest
 * record per key is kept in an open-addressing table keyed by the
 * connection key (already a SHA-256, so its first hex digits hash). */
#include "worker/changelog_restore.h"
#include "base/errstr.h"

#include "base/clock.h"
#include "schemas/text.h"
#include "worker/config_parse.h"
#include "worker/topic_admin.h"

#include <librdkafka/rdkafka.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define CR_DEFAULT_TIMEOUT_MS 120000

/* ---- latest record per key --------------------------------------------- */

struct cr_slot {
    char key[EDR_CONNECTION_KEY_LEN + 1]; /* "" when the slot is free */
    int32_t partition;
    char *val; /* NULL: tombstone */
    size_t len;
};

struct cr_table {
    struct cr_slot *slots;
    size_t cap, used; /* cap a power of two */
};

static uint64_t cr_hash(const char *key)
{
    uint64_t h = 0;

    for (int i = 0; i < 16; i++)
        h = h << 4 | (uint64_t)text_hex_digit(key[i]);
    return h;
}

static struct cr_slot *cr_find(struct cr_table *t, const char *key)
{
    size_t i = (size_t)cr_hash(key) & (t->cap - 1);

    while (t->slots[i].key[0] && strcmp(t->slots[i].key, key) != 0)
        i = (i + 1) & (t->cap - 1);
    return &t->slots[i];
}

static int cr_grow(struct cr_table *t)
{
    struct cr_table nt = {.cap = t->cap ? t->cap * 2 : 1024};

    nt.slots = calloc(nt.cap, sizeof(*nt.slots));
    if (!nt.slots)
        return -1;
    for (size_t i = 0; i < t->cap; i++) {
        if (t->slots[i].key[0]) {
            *cr_find(&nt, t->slots[i].key) = t->slots[i];
            nt.used++;
        }
    }
    free(t->slots);
    *t = nt;
    return 0;
}

/* Records the latest value of key (val copied; NULL: tombstone). */
static int cr_put(struct cr_table *t, const char *key, int32_t p,
                  const void *val, size_t len)
{
    char *copy = NULL;

    if ((t->used + 1) * 10 > t->cap * 7 && cr_grow(t) != 0)
        return -1;
    if (val) {
        copy = malloc(len + 1);
        if (!copy)
            return -1;
        memcpy(copy, val, len);
        copy[len] = '\0';
    }
    struct cr_slot *s = cr_find(t, key);
    if (!s->key[0]) {
        memcpy(s->key, key, EDR_CONNECTION_KEY_LEN + 1);
        t->used++;
    }
    free(s->val);
    s->partition = p;
    s->val = copy;
    s->len = len;
    return 0;
}

static void cr_table_free(struct cr_table *t)
{
    for (size_t i = 0; i < t->cap; i++)
        free(t->slots[i].val);
    free(t->slots);
    t->slots = NULL;
    t->cap = t->used = 0;
}

/* 1 when [k, k+len) is a connection key: 64 lowercase hex digits. */
static int cr_is_key(const char *k, size_t len)
{
    if (!k || len != EDR_CONNECTION_KEY_LEN)
        return 0;
    for (size_t i = 0; i < len; i++)
        if (!((k[i] >= '0' && k[i] <= '9') || (k[i] >= 'a' && k[i] <= 'f')))
            return 0;
    return 1;
}

/* ---- clients ----------------------------------------------------------- */

static rd_kafka_t *cr_client(const struct changelog_restore_conf *c,
                             rd_kafka_type_t type, const char *const *fixed,
                             char *errstr, size_t n)
{
    char buf[512];
    rd_kafka_conf_t *conf = rd_kafka_conf_new();

    if (config_kafka_set(conf, "bootstrap.servers", c->brokers, errstr, n))
        goto fail;
    for (size_t i = 0; i < c->n_kafka_props; i++) {
        const char *prop = c->kafka_props[i];
        const char *eq = strchr(prop, '=');
        char name[256];
        if (!eq || (size_t)(eq - prop) >= sizeof(name)) {
            edr_errf(errstr, n, "changelog restore: bad -X property");
            goto fail;
        }
        memcpy(name, prop, (size_t)(eq - prop));
        name[eq - prop] = '\0';
        if (config_kafka_set(conf, name, eq + 1, errstr, n))
            goto fail;
    }
    for (; fixed && fixed[0]; fixed += 2)
        if (config_kafka_set(conf, fixed[0], fixed[1], errstr, n))
            goto fail;
    rd_kafka_t *rk = rd_kafka_new(type, conf, buf, sizeof(buf));
    if (!rk) {
        edr_errf(errstr, n, "changelog restore: kafka client: %s", buf);
        goto fail;
    }
    return rk; /* conf now owned by rk */

fail:
    rd_kafka_conf_destroy(conf);
    return NULL;
}

/* Raises *pos to the record's CHANGELOG_HEADER_POSITION, when present. */
static void cr_note_position(rd_kafka_message_t *m, int64_t *pos)
{
    rd_kafka_headers_t *hdrs = NULL;
    const void *v = NULL;
    size_t len = 0;
    char buf[24];

    if (rd_kafka_message_headers(m, &hdrs) || !hdrs ||
        rd_kafka_header_get_last(hdrs, CHANGELOG_HEADER_POSITION, &v, &len) ||
        !v || len == 0 || len >= sizeof(buf))
        return;
    memcpy(buf, v, len);
    buf[len] = '\0';
    char *end;
    long long o = strtoll(buf, &end, 10);
    if (*end == '\0' && o > *pos)
        *pos = o;
}

static int cr_remaining(int64_t deadline)
{
    int64_t r = deadline - edr_clock_ms();
    return r > 0 ? (int)r : 0;
}

void changelog_restore_result_clear(struct changelog_restore_result *r)
{
    if (!r)
        return;
    free(r->positions);
    memset(r, 0, sizeof(*r));
}

int changelog_restore(const struct changelog_restore_conf *c,
                      changelog_restore_cb cb, void *user,
                      struct changelog_restore_result *out, char *errstr,
                      size_t n)
{
    int timeout = c->timeout_ms > 0 ? c->timeout_ms : CR_DEFAULT_TIMEOUT_MS;
    int64_t deadline = edr_clock_ms() + timeout;
    rd_kafka_t *admin = NULL, *rk = NULL;
    rd_kafka_topic_partition_list_t *committed = NULL, *assign = NULL;
    struct cr_table t = {0};
    int64_t *high = NULL, *hpos = NULL;
    char *done = NULL;
    int src_parts = 0, cl_parts = 0, rf, rc = CHANGELOG_FATAL;
    char group[512];
    struct changelog_restore_result res = {0};

    memset(out, 0, sizeof(*out));
    if ((size_t)snprintf(group, sizeof(group), "%s.changelog", c->group_id) >=
        sizeof(group)) {
        edr_errf(errstr, n, "changelog restore: group id too long");
        return CHANGELOG_FATAL;
    }
    const char *const consumer_props[] = {"group.id",
                                          group,
                                          "enable.auto.commit",
                                          "false",
                                          "enable.auto.offset.store",
                                          "false",
                                          "isolation.level",
                                          "read_committed",
                                          "enable.partition.eof",
                                          "true",
                                          "auto.offset.reset",
                                          "earliest",
                                          NULL};
    admin = cr_client(c, RD_KAFKA_PRODUCER, NULL, errstr, n);
    rk = admin ? cr_client(c, RD_KAFKA_CONSUMER, consumer_props, errstr, n)
               : NULL;
    if (!rk)
        goto done;
    rd_kafka_poll_set_consumer(rk);

    /* Partition counts: one changelog partition per source partition. */
    int trc = topic_admin_partitions(admin, c->source_topic, &src_parts, &rf,
                                     errstr, n);
    if (trc == TOPIC_ADMIN_OK)
        trc = topic_admin_partitions(admin, c->changelog_topic, &cl_parts, &rf,
                                     errstr, n);
    if (trc != TOPIC_ADMIN_OK) {
        rc = trc == TOPIC_ADMIN_TRANSIENT ? CHANGELOG_TRANSIENT
                                          : CHANGELOG_FATAL;
        goto done;
    }
    if (src_parts != cl_parts || src_parts <= 0) {
        edr_errf(
            errstr, n,
            "EDR_CHANGELOG_TOPIC %s has %d partitions, EDR_TOPIC %s has %d",
            c->changelog_topic, cl_parts, c->source_topic, src_parts);
        goto done;
    }

    /* 1. The positions, first (see the header). */
    committed = rd_kafka_topic_partition_list_new(src_parts);
    for (int p = 0; p < src_parts; p++)
        rd_kafka_topic_partition_list_add(committed, c->source_topic, p);
    rd_kafka_resp_err_t err =
        rd_kafka_committed(rk, committed, cr_remaining(deadline));
    for (int i = 0; !err && i < committed->cnt; i++)
        err = committed->elems[i].err;
    if (err) {
        edr_errf(errstr, n, "changelog restore: committed offsets of %s: %s",
                 c->source_topic, rd_kafka_err2str(err));
        rc = CHANGELOG_TRANSIENT;
        goto done;
    }

    /* 2. Where each changelog partition's log ends now, uncommitted. */
    high = calloc((size_t)cl_parts, sizeof(*high));
    hpos = malloc((size_t)cl_parts * sizeof(*hpos));
    done = calloc((size_t)cl_parts, 1);
    assign = rd_kafka_topic_partition_list_new(cl_parts);
    if (!high || !hpos || !done) {
        edr_errf(errstr, n, "changelog restore: out of memory");
        goto done;
    }
    int left = 0;
    for (int p = 0; p < cl_parts; p++) {
        int64_t lo = 0;
        hpos[p] = -1;
        err =
            rd_kafka_query_watermark_offsets(admin, c->changelog_topic, p, &lo,
                                             &high[p], cr_remaining(deadline));
        if (err) {
            edr_errf(errstr, n, "changelog restore: end of %s [%d]: %s",
                     c->changelog_topic, p, rd_kafka_err2str(err));
            rc = CHANGELOG_TRANSIENT;
            goto done;
        }
        if (high[p] <= lo) {
            done[p] = 1; /* empty */
            continue;
        }
        rd_kafka_topic_partition_list_add(assign, c->changelog_topic, p)
            ->offset = RD_KAFKA_OFFSET_BEGINNING;
        left++;
    }

    /* 3. Read until the read_committed end of every partition has passed
     * its watermark: every transaction with records below it resolved. */
    if (left > 0 && (err = rd_kafka_assign(rk, assign)) != 0) {
        edr_errf(errstr, n, "changelog restore: assign %s: %s",
                 c->changelog_topic, rd_kafka_err2str(err));
        goto done;
    }
    const char *last_err = NULL;
    char last_buf[256];
    while (left > 0) {
        if (edr_clock_ms() >= deadline) {
            edr_errf(errstr, n,
                     "changelog restore: %d partition(s) of %s not read to "
                     "their end within %d ms%s%s",
                     left, c->changelog_topic, timeout, last_err ? ": " : "",
                     last_err ? last_err : "");
            rc = CHANGELOG_TRANSIENT;
            goto done;
        }
        rd_kafka_message_t *m = rd_kafka_consumer_poll(
            rk, cr_remaining(deadline) < 200 ? cr_remaining(deadline) : 200);
        if (!m)
            continue;
        int32_t p = m->partition;
        if (m->err == RD_KAFKA_RESP_ERR__PARTITION_EOF) {
            if (p >= 0 && p < cl_parts && !done[p] && m->offset >= high[p]) {
                done[p] = 1;
                left--;
            }
        } else if (m->err) {
            snprintf(last_buf, sizeof(last_buf), "%s",
                     rd_kafka_message_errstr(m));
            last_err = last_buf; /* librdkafka retries; report at timeout */
        } else if (p >= 0 && p < cl_parts) {
            res.records++;
            char key[EDR_CONNECTION_KEY_LEN + 1];
            if (!cr_is_key(m->key, m->key_len)) {
                res.invalid++;
            } else {
                cr_note_position(m, &hpos[p]);
                memcpy(key, m->key, EDR_CONNECTION_KEY_LEN);
                key[EDR_CONNECTION_KEY_LEN] = '\0';
                if (cr_put(&t, key, p, m->payload, m->len) != 0) {
                    rd_kafka_message_destroy(m);
                    edr_errf(errstr, n, "changelog restore: out of memory");
                    goto done;
                }
            }
        }
        rd_kafka_message_destroy(m);
    }

    /* 4. The positions; the caller may decline (conf->check). */
    res.positions = calloc((size_t)src_parts, sizeof(*res.positions));
    if (!res.positions) {
        edr_errf(errstr, n, "changelog restore: out of memory");
        goto done;
    }
    res.n_positions = (size_t)src_parts;
    for (int i = 0; i < committed->cnt; i++) {
        int32_t p = committed->elems[i].partition;
        int64_t o = committed->elems[i].offset;
        if (o < 0 && hpos[p] >= 0) {
            o = hpos[p]; /* the group's offsets expired: see the header */
            res.from_headers++;
        }
        res.positions[p] = (struct store_offset){
            .partition = p, .next_offset = o >= 0 ? o : 0, .first_offset = -1};
    }
    if (c->check && c->check(res.positions, res.n_positions, user) != 0) {
        edr_errf(errstr, n, "changelog restore: declined by the caller");
        rc = CHANGELOG_STOPPED;
        goto done;
    }

    /* 5. Hand the live entries over. */
    for (size_t i = 0; i < t.cap; i++) {
        struct cr_slot *s = &t.slots[i];
        struct changelog_value v;
        char why[128];
        if (!s->key[0] || !s->val)
            continue;
        if (changelog_value_decode(s->val, s->len, s->key,
                                   EDR_CONNECTION_KEY_LEN, &v, why,
                                   sizeof(why)) != 0) {
            res.invalid++;
            continue;
        }
        struct changelog_entry e = {
            .partition = s->partition,
            .connection_key = s->key,
            .key = v.key,
            .transfer_id = v.transfer_id,
            .entry_json = v.entry_json,
            .entry_len = v.entry_len,
        };
        int stop = cb(&e, user);
        changelog_value_clear(&v);
        if (stop) {
            edr_errf(errstr, n, "changelog restore: stopped by the caller");
            rc = CHANGELOG_STOPPED;
            goto done;
        }
        res.live++;
    }

    *out = res;
    res.positions = NULL;
    rc = CHANGELOG_OK;

done:
    free(res.positions);
    cr_table_free(&t);
    free(high);
    free(hpos);
    free(done);
    if (assign)
        rd_kafka_topic_partition_list_destroy(assign);
    if (committed)
        rd_kafka_topic_partition_list_destroy(committed);
    if (rk) {
        rd_kafka_consumer_close(rk);
        rd_kafka_destroy(rk);
    }
    if (admin)
        rd_kafka_destroy(admin);
    return rc;
}

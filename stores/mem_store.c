/* mem_store.c: the "memory" store: a mem_table behind struct store_ops.
 *
 * Nothing survives the process; the worker replays the Kafka log from the
 * beginning at start (schemas/README.md §4). */
#include "stores/mem_table.h"
#include "stores/store.h"

#include <stdlib.h>

struct mem_store {
    struct store base; /* first: a struct store * is a struct mem_store * */
    struct mem_table t;
};

static struct mem_table *ms_table(struct store *st)
{
    return &((struct mem_store *)st)->t;
}

static int ms_apply(struct store *st, struct store_batch *b,
                    struct store_err *err)
{
    struct mem_table *t = ms_table(st);
    struct mem_prep p;
    mem_table_writer_lock(t);
    int rc = mem_table_prepare(t, b, &p, err);
    if (rc == STORE_OK)
        mem_table_commit(t, b, &p);
    mem_table_writer_unlock(t);
    return rc;
}

static int ms_get(struct store *st, const struct edr_key *k,
                  struct store_record *out, struct store_err *err)
{
    return mem_table_get(ms_table(st), k, out, err);
}

static int ms_get_transfer_id(struct store *st, const struct edr_key *k,
                              char **out, struct store_err *err)
{
    return mem_table_get_transfer_id(ms_table(st), k, out, err);
}

static int ms_count(struct store *st, const struct store_filter *f,
                    uint64_t *out, struct store_err *err)
{
    return mem_table_count_filter(ms_table(st), f, out, NULL, err);
}

static int ms_list(struct store *st, const struct store_filter *f,
                   const char *cursor, size_t limit, struct store_list *out,
                   struct store_err *err)
{
    return mem_table_list_filter(ms_table(st), f, cursor, limit, out, NULL,
                                 err);
}

static int ms_get_by_transfer_id(struct store *st, const char *transfer_id,
                                 struct store_record *out,
                                 struct store_err *err)
{
    return mem_table_get_by_transfer_id(ms_table(st), transfer_id, out, err);
}

static int ms_clear_party(struct store *st, const char *substring,
                          uint64_t *removed, struct store_err *err)
{
    struct mem_table *t = ms_table(st);
    struct mem_entry **victims;
    size_t n = 0;
    *removed = 0;
    mem_table_writer_lock(t);
    int rc = mem_table_clear_collect(t, substring, &victims, &n, err);
    if (rc == STORE_OK)
        mem_table_clear_commit(t, victims, n);
    mem_table_writer_unlock(t);
    if (rc == STORE_OK)
        *removed = n;
    return rc;
}

static int ms_load_offsets(struct store *st, const char *topic,
                           struct store_offset **out, size_t *n,
                           struct store_err *err)
{
    return mem_table_load_offsets(ms_table(st), topic, out, n, err);
}

static void ms_close(struct store *st)
{
    if (!st)
        return;
    mem_table_destroy(ms_table(st));
    free(st);
}

static const struct store_ops mem_store_ops = {
    .name = "memory",
    .caps = {.volatile_state = 1, .cheap_count = 1},
    .apply = ms_apply,
    .get = ms_get,
    .get_transfer_id = ms_get_transfer_id,
    .count = ms_count,
    .list = ms_list,
    .get_by_transfer_id = ms_get_by_transfer_id,
    .clear_party = ms_clear_party,
    .load_offsets = ms_load_offsets,
    .close = ms_close,
};

struct store *mem_store_open(struct store_err *err)
{
    struct mem_store *ms = calloc(1, sizeof(*ms));
    if (!ms) {
        store_fail(err, STORE_TRANSIENT, "out of memory");
        return NULL;
    }
    if (mem_table_init(&ms->t, err) != STORE_OK) {
        free(ms);
        return NULL;
    }
    ms->base.ops = &mem_store_ops;
    return &ms->base;
}

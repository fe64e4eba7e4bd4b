/* store.c: backend-independent helpers of store.h. */
#include "stores/store.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>

int store_put(struct store *st, const struct edr_key *k,
              const char *transfer_id, const char *entry_json, size_t entry_len,
              struct store_err *err)
{
    struct store_op op = {.kind = STORE_OP_PUT,
                          .key = *k,
                          .transfer_id = transfer_id,
                          .entry_json = entry_json,
                          .entry_len = entry_len};
    struct store_batch b = {.ops = &op, .n_ops = 1};
    return st->ops->apply(st, &b, err);
}

int store_delete(struct store *st, const struct edr_key *k,
                 const char *if_transfer_id, struct store_err *err)
{
    struct store_op op = {
        .kind = STORE_OP_DELETE, .key = *k, .transfer_id = if_transfer_id};
    struct store_batch b = {.ops = &op, .n_ops = 1};
    int rc = st->ops->apply(st, &b, err);
    if (rc != STORE_OK)
        return rc;
    return b.changed ? STORE_OK : STORE_NOT_FOUND;
}

void store_close(struct store *st)
{
    if (st)
        st->ops->close(st);
}

int store_filter_party_only(const struct store_filter *f)
{
    return !f || (!f->transfer_id && !f->asset_id && !f->asset_id_prefix);
}

void store_record_clear(struct store_record *r)
{
    if (!r)
        return;
    free(r->counter_party_id);
    free(r->counter_party_address);
    free(r->query_checksum);
    free(r->policy_checksum);
    free(r->transfer_id);
    free(r->asset_id);
    free(r->entry_json);
    *r = (struct store_record){0};
}

void store_list_clear(struct store_list *l)
{
    if (!l)
        return;
    for (size_t i = 0; i < l->n_items; i++)
        store_record_clear(&l->items[i]);
    free(l->items);
    free(l->next_cursor);
    *l = (struct store_list){0};
}

int store_fail(struct store_err *err, int status, const char *fmt, ...)
{
    if (err) {
        va_list ap;
        va_start(ap, fmt);
        vsnprintf(err->msg, sizeof(err->msg), fmt, ap);
        va_end(ap);
        err->status = status;
    }
    return status;
}

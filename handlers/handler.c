/* handler.c: see handler.h. The whole decision table of schemas/README.md §1.
 */
#include "handlers/handler.h"

#include <string.h>

int handler_event_to_op(const struct event *ev, struct store_op *op)
{
    memset(op, 0, sizeof(*op));
    op->key = event_key(ev);
    switch (ev->type) {
    case EVENT_NEGOTIATED:
    case EVENT_RENEWED:
        /* A renewal of an unknown connection creates it: same as insert. */
        if (!ev->entry_json || !ev->transfer_id || !*ev->transfer_id)
            return -1;
        op->kind = STORE_OP_PUT;
        op->transfer_id = ev->transfer_id;
        op->entry_json = ev->entry_json;
        op->entry_len = ev->entry_len;
        return 0;
    case EVENT_EXPIRED:
        /* With a transfer id, a late expiry never removes a newer EDR. */
        op->kind = STORE_OP_DELETE;
        op->transfer_id = ev->transfer_id;
        return 0;
    }
    return -1;
}

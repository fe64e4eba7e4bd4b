/* handler.c: see handler.h. The whole decision table of schemas/README.md
 * §1 "Effects". */
#include "handlers/handler.h"

#include <string.h>

int handler_member_dropped(const char *name, size_t len)
{
    /* None of these names holds a character JSON escapes, so the escaped
     * form is the name itself. */
    static const struct {
        const char *s;
        size_t n;
    } dropped[] = {{"@type", 5}, {"@context", 8}, {"providerId", 10}};
    for (size_t i = 0; i < sizeof(dropped) / sizeof(dropped[0]); i++)
        if (len == dropped[i].n && memcmp(name, dropped[i].s, len) == 0)
            return 1;
    return 0;
}

/* The stored entry: ev->edr_json itself when no member is dropped (the
 * usual case for producers that strip already), else the kept members
 * copied into ev->scratch. */
static int make_entry(struct event *ev, const char **out, size_t *out_len)
{
    const char *edr = ev->edr_json;
    size_t i, n = ev->n_edr_members;

    for (i = 0; i < n; i++) {
        const struct event_member *m = &ev->edr_members[i];
        if (handler_member_dropped(edr + m->name_off, m->name_len))
            break;
    }
    if (i == n) {
        *out = edr;
        *out_len = ev->edr_len;
        return 0;
    }
    if (!ev->scratch)
        return -1;
    /* Kept members next to each other are one run of text: one copy. */
    char *o = ev->scratch;
    size_t run_off = 0, run_end = 0; /* run_end 0: no run open */
    *o++ = '{';
    for (i = 0; i <= n; i++) {
        const struct event_member *m = i < n ? &ev->edr_members[i] : NULL;
        if (m && !handler_member_dropped(edr + m->name_off, m->name_len)) {
            if (!run_end)
                run_off = m->off;
            run_end = m->off + m->len;
            continue;
        }
        if (run_end) {
            if (o > ev->scratch + 1)
                *o++ = ',';
            memcpy(o, edr + run_off, run_end - run_off);
            o += run_end - run_off;
            run_end = 0;
        }
    }
    *o++ = '}';
    *o = '\0';
    *out = ev->scratch;
    *out_len = (size_t)(o - ev->scratch);
    return 0;
}

int handler_event_to_op(struct event *ev, struct store_op *op)
{
    memset(op, 0, sizeof(*op));
    op->key = event_key(ev);
    switch (ev->type) {
    case EVENT_NEGOTIATED:
    case EVENT_RENEWED:
        /* A renewal of an unknown connection creates it: same as insert. */
        if (!ev->edr_json || !ev->transfer_id || !*ev->transfer_id)
            return -1;
        if (make_entry(ev, &op->entry_json, &op->entry_len) != 0)
            return -1;
        op->kind = STORE_OP_PUT;
        op->transfer_id = ev->transfer_id;
        return 0;
    case EVENT_EXPIRED:
        /* With a transfer id, a late expiry never removes a newer EDR. */
        op->kind = STORE_OP_DELETE;
        op->transfer_id = ev->transfer_id;
        return 0;
    }
    return -1;
}

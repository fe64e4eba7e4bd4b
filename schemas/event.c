/* event.c: the small helpers of event.h; the decoder itself is in
 * event_decode.c. */
#include "schemas/event.h"

#include <stdlib.h>
#include <string.h>

void event_clear(struct event *ev)
{
    if (!ev)
        return;
    free(ev->mem); /* the block of every string (event_edr.c) */
    memset(ev, 0, sizeof(*ev));
}

struct edr_key event_key(const struct event *ev)
{
    struct edr_key k = {ev->counter_party_id, ev->counter_party_address,
                        ev->query_checksum, ev->policy_checksum};
    return k;
}

const char *event_type_name(enum event_type t)
{
    switch (t) {
    case EVENT_NEGOTIATED:
        return "edr.negotiated";
    case EVENT_RENEWED:
        return "edr.renewed";
    case EVENT_EXPIRED:
        return "edr.expired";
    }
    return NULL;
}

const char *event_error_class(enum event_error e)
{
    switch (e) {
    case EVENT_OK:
        return "ok";
    case EVENT_ERR_SIZE:
        return "size";
    case EVENT_ERR_UTF8:
        return "utf8";
    case EVENT_ERR_JSON:
        return "json";
    case EVENT_ERR_SCHEMA:
        return "schema";
    case EVENT_ERR_NOMEM:
        return "nomem";
    }
    return "unknown";
}

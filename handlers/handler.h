/* handler.h: decides what a decoded event does to the store.
 *
 * Pure: no I/O, no clock, no globals, no allocation. The worker decodes
 * (schemas/), asks the handler for the operation, and applies it
 * (stores/). Every decision of schemas/README.md §1 "Effects" is made
 * here: which op an event becomes and what the stored entry is. */
#ifndef EDR_HANDLERS_HANDLER_H
#define EDR_HANDLERS_HANDLER_H

#include "schemas/event.h"
#include "stores/store.h"

/* Fills *op with the single store operation that ev requires:
 *   edr.negotiated, edr.renewed -> PUT (the stored entry, transfer_id)
 *   edr.expired with transfer_process_id -> DELETE if transfer id matches
 *   edr.expired without -> DELETE
 * The stored entry is data.edr without its top-level @type, @context and
 * providerId members; when it has any of them the entry is written into
 * ev->scratch (which is why ev is not const). op borrows ev's memory:
 * keep ev alive until the op is applied. Returns 0, or -1 when ev is not
 * a valid decoded event. Any thread (one ev per thread). */
int handler_event_to_op(struct event *ev, struct store_op *op);

/* 1 when the member name (as in struct event_member: JSON-escaped,
 * without quotes) is one the stored entry leaves out. */
int handler_member_dropped(const char *name, size_t len);

#endif

/* handler.h: decides what a decoded event does to the store.
 *
 * Pure: no I/O, no clock, no globals. The worker decodes (schemas/),
 * asks the handler for the operation, and applies it (stores/). */
#ifndef EDR_HANDLERS_HANDLER_H
#define EDR_HANDLERS_HANDLER_H

#include "schemas/event.h"
#include "stores/store.h"

/* Fills *op with the single store operation that ev requires:
 *   edr.negotiated, edr.renewed -> PUT (entry_json, transfer_id)
 *   edr.expired with transfer_process_id -> DELETE if transfer id matches
 *   edr.expired without -> DELETE
 * op borrows ev's strings: keep ev alive until the op is applied.
 * Returns 0, or -1 when ev is not a valid decoded event. */
int handler_event_to_op(const struct event *ev, struct store_op *op);

#endif

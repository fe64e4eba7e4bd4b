/* edc_expiry.h: decides what an EDC callback event does
 * (schemas/README.md §6).
 *
 * Pure: no I/O, no clock, no allocation. worker/edc_callback.c decodes the
 * body (schemas/edc_event.h), asks here whether it ends an EDR, looks the
 * connection up by transfer id (stores/), and publishes the edr.expired
 * event whose contents are decided here too. */
#ifndef EDR_HANDLERS_EDC_EXPIRY_H
#define EDR_HANDLERS_EDC_EXPIRY_H

#include "schemas/edc_event.h"
#include "schemas/event_encode.h"
#include "stores/store.h"

/* 1 when ev ends the consumer's EDR of its transfer: type
 * TransferProcessTerminated, TransferProcessSuspended or
 * TransferProcessCompleted, with payload.type CONSUMER. 0 for every other
 * event (the worker answers 204 and does nothing). */
int edc_expiry_applies(const struct edc_event *ev);

/* Fills *spec with the edr.expired event for the stored connection rec
 * that holds ev's transfer id: rec's four keys, transfer_process_id =
 * ev->transfer_process_id (so an EDR renewed meanwhile survives),
 * CloudEvents id = ev->id (a redelivered callback makes the same event),
 * the given source (urn:edr-worker:<worker id>) and subject the transfer
 * id. spec borrows ev, rec and source: keep them until it is encoded. */
void edc_expiry_event(const struct edc_event *ev,
                      const struct store_record *rec, const char *source,
                      struct event_spec *spec);

#endif

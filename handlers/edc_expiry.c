/* edc_expiry.c: see edc_expiry.h. */
#include "handlers/edc_expiry.h"

#include <string.h>

/* The TransferProcess event types after which the consumer's EDR is of no
 * more use (EDC's TransferProcessTerminated/Suspended/Completed). A
 * suspended transfer may resume: EDC then negotiates a new EDR, which
 * comes as a new edr.negotiated. */
static const char *const ending_types[] = {
    "TransferProcessTerminated",
    "TransferProcessSuspended",
    "TransferProcessCompleted",
};

int edc_expiry_applies(const struct edc_event *ev)
{
    if (!ev || !ev->type || ev->party != EDC_PARTY_CONSUMER)
        return 0;
    for (size_t i = 0; i < sizeof(ending_types) / sizeof(ending_types[0]); i++)
        if (strcmp(ev->type, ending_types[i]) == 0)
            return 1;
    return 0;
}

void edc_expiry_event(const struct edc_event *ev,
                      const struct store_record *rec, const char *source,
                      struct event_spec *spec)
{
    memset(spec, 0, sizeof(*spec));
    spec->type = EVENT_EXPIRED;
    spec->id = ev->id;
    spec->source = source;
    spec->subject = ev->transfer_process_id;
    spec->key.counter_party_id = rec->counter_party_id;
    spec->key.counter_party_address = rec->counter_party_address;
    spec->key.query_checksum = rec->query_checksum;
    spec->key.policy_checksum = rec->policy_checksum;
    spec->transfer_id = ev->transfer_process_id;
}

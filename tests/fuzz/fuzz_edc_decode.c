/* fuzz_edc_decode.c: libFuzzer target for edc_event_decode(), the code
 * that takes the body of POST /callbacks/edc (schemas/README.md §6), and
 * the expiry decision made from what it decoded.
 *
 * Besides "no crash, no overread, no leak, no UB" it checks what must
 * hold for every input: a rejected body has a reason; an accepted one has
 * a non-empty id and transfer id and a type, and only a CONSUMER event
 * can end an EDR. Violations abort(). fuzz_replay_main.c runs the same
 * function over the seed corpus (corpus/edc) in ctest. */
#include "handlers/edc_expiry.h"
#include "schemas/edc_event.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);
int fuzz_verdict(const uint8_t *data, size_t size, char *reason, size_t cap,
                 const char **err_class);

/* For the corpus replay: 1 when the body is accepted, else 0 with the
 * reason (its member is the part before ':'). */
int fuzz_verdict(const uint8_t *data, size_t size, char *reason, size_t cap,
                 const char **err_class)
{
    struct edc_event ev;
    int rc = edc_event_decode(&ev, data, size, reason, cap);
    *err_class = rc == EDC_EVENT_OK ? "ok" : "invalid";
    edc_event_clear(&ev);
    return rc == EDC_EVENT_OK;
}

static void check(int ok)
{
    if (!ok)
        abort();
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    struct edc_event ev;
    char err[256];
    err[0] = '\0';
    int rc = edc_event_decode(&ev, data, size, err, sizeof(err));
    if (rc == EDC_EVENT_OK) {
        check(ev.id && ev.id[0] && ev.type);
        check(ev.transfer_process_id && ev.transfer_process_id[0]);
        check(!edc_expiry_applies(&ev) || ev.party == EDC_PARTY_CONSUMER);
    } else {
        check(err[0] != '\0');
        check(!ev.id && !ev.type && !ev.transfer_process_id);
    }
    edc_event_clear(&ev);
    return 0;
}

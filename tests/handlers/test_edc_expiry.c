/* test_edc_expiry.c: which EDC callbacks end an EDR (handlers/
 * edc_expiry.h, schemas/README.md §6) as a table of type and
 * payload.type, and the edr.expired event made for a stored connection:
 * its keys, transfer id, id and source, checked through the encoder and
 * the worker's own event decoder. */
#include "handlers/edc_expiry.h"
#include "schemas/event.h"
#include "tests/support/cunit_main.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static void test_applies_table(void)
{
    static const struct {
        const char *type;
        enum edc_party party;
        int want;
    } cases[] = {
        {"TransferProcessTerminated", EDC_PARTY_CONSUMER, 1},
        {"TransferProcessSuspended", EDC_PARTY_CONSUMER, 1},
        {"TransferProcessCompleted", EDC_PARTY_CONSUMER, 1},
        {"TransferProcessTerminated", EDC_PARTY_PROVIDER, 0},
        {"TransferProcessCompleted", EDC_PARTY_PROVIDER, 0},
        {"TransferProcessTerminated", EDC_PARTY_OTHER, 0},
        {"TransferProcessStarted", EDC_PARTY_CONSUMER, 0},
        {"TransferProcessRequested", EDC_PARTY_CONSUMER, 0},
        {"TransferProcessInitiated", EDC_PARTY_CONSUMER, 0},
        {"ContractNegotiationFinalized", EDC_PARTY_CONSUMER, 0},
        {"transferprocessterminated", EDC_PARTY_CONSUMER, 0},
        {"TransferProcessTerminatedX", EDC_PARTY_CONSUMER, 0},
        {"", EDC_PARTY_CONSUMER, 0},
    };
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        struct edc_event ev = {.id = (char *)"e",
                               .type = (char *)cases[i].type,
                               .transfer_process_id = (char *)"tp",
                               .party = cases[i].party};
        int got = edc_expiry_applies(&ev);
        if (got != cases[i].want)
            fprintf(stderr, "\n  %s party %d: %d\n", cases[i].type,
                    (int)cases[i].party, got);
        CU_ASSERT_EQUAL(got, cases[i].want);
    }
    CU_ASSERT_EQUAL(edc_expiry_applies(NULL), 0);
}

static void test_expired_event(void)
{
    struct edc_event ev = {.id = (char *)"cb-42",
                           .type = (char *)"TransferProcessTerminated",
                           .transfer_process_id = (char *)"tp-7",
                           .party = EDC_PARTY_CONSUMER};
    struct store_record rec = {
        .counter_party_id = (char *)"BPNL0001",
        .counter_party_address = (char *)"https://p.example/api/dsp",
        .query_checksum = (char *)"q1",
        .policy_checksum = (char *)"p1",
        .transfer_id = (char *)"tp-7",
    };
    struct event_spec spec;
    edc_expiry_event(&ev, &rec, "urn:edr-worker:w1", &spec);
    CU_ASSERT_EQUAL(spec.type, EVENT_EXPIRED);
    CU_ASSERT_STRING_EQUAL(spec.id, "cb-42");
    CU_ASSERT_STRING_EQUAL(spec.source, "urn:edr-worker:w1");
    CU_ASSERT_STRING_EQUAL(spec.transfer_id, "tp-7");
    CU_ASSERT_PTR_NULL(spec.edr_json);

    char *json = NULL, err[256];
    size_t len = 0;
    CU_ASSERT_EQUAL_FATAL(event_encode(&spec, &json, &len, err, sizeof(err)),
                          0);
    struct event out;
    CU_ASSERT_EQUAL_FATAL(event_decode(&out, json, len, err, sizeof(err)),
                          EVENT_OK);
    CU_ASSERT_EQUAL(out.type, EVENT_EXPIRED);
    CU_ASSERT_STRING_EQUAL(out.id, "cb-42");
    CU_ASSERT_STRING_EQUAL(out.source, "urn:edr-worker:w1");
    CU_ASSERT_STRING_EQUAL(out.counter_party_id, "BPNL0001");
    CU_ASSERT_STRING_EQUAL(out.counter_party_address,
                           "https://p.example/api/dsp");
    CU_ASSERT_STRING_EQUAL(out.query_checksum, "q1");
    CU_ASSERT_STRING_EQUAL(out.policy_checksum, "p1");
    CU_ASSERT_STRING_EQUAL(out.transfer_id, "tp-7");
    CU_ASSERT_PTR_NOT_NULL(out.subject);
    if (out.subject)
        CU_ASSERT_STRING_EQUAL(out.subject, "tp-7");
    event_clear(&out);
    free(json);
}

static void register_suites(void)
{
    CU_pSuite s = CU_add_suite("edc_expiry", NULL, NULL);
    CU_add_test(s, "which callbacks end an EDR", test_applies_table);
    CU_add_test(s, "the edr.expired event", test_expired_event);
}

int main(void)
{
    static const cunit_register_fn regs[] = {register_suites, NULL};
    return cunit_main(regs);
}

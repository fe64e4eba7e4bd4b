/* test_edc_event.c: edc_event_decode (schemas/edc_event.h) on the EDC
 * callback envelope of schemas/README.md §6 with the payload keys of
 * EDC's TransferProcessEvent, and on bodies that are not such an event:
 * every rule gives its own reason (400), oversize and malformed text
 * included; what the decoder drops (a Started event's dataAddress with
 * its token) is never kept. */
#include "schemas/edc_event.h"
#include "tests/support/cunit_main.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* The contract's example, word for word. */
static const char contract_example[] =
    "{\"id\": \"5e1c...\", \"at\": 1796305164000, \"type\": "
    "\"TransferProcessTerminated\",\n"
    " \"payload\": {\"transferProcessId\": \"tp-1\", \"assetId\": "
    "\"asset-1\", \"type\": \"CONSUMER\",\n"
    "             \"contractId\": \"...\", \"protocol\": "
    "\"dataspace-protocol-http\",\n"
    "             \"callbackAddresses\": [], \"reason\": \"...\"}}";

static int decode(const char *json, struct edc_event *ev, char *err, size_t n)
{
    return edc_event_decode(ev, json, strlen(json), err, n);
}

static void test_contract_example(void)
{
    struct edc_event ev;
    char err[256];
    CU_ASSERT_EQUAL_FATAL(decode(contract_example, &ev, err, sizeof(err)),
                          EDC_EVENT_OK);
    CU_ASSERT_STRING_EQUAL(ev.id, "5e1c...");
    CU_ASSERT_STRING_EQUAL(ev.type, "TransferProcessTerminated");
    CU_ASSERT_STRING_EQUAL(ev.transfer_process_id, "tp-1");
    CU_ASSERT_EQUAL(ev.party, EDC_PARTY_CONSUMER);
    edc_event_clear(&ev);
    CU_ASSERT_PTR_NULL(ev.id);
    edc_event_clear(NULL);
}

/* A Started event as EDC sends it: nested objects and arrays in payload,
 * members in another order, the provider side. */
static void test_started_provider_nested(void)
{
    static const char body[] =
        "{\"payload\":{\"callbackAddresses\":[{\"uri\":\"http://w/callbacks/"
        "edc\",\"events\":[\"transfer.process\"],\"transactional\":false,"
        "\"authKey\":\"X-Api-Key\",\"authCodeId\":\"cb-secret\"}],"
        "\"dataAddress\":{\"type\":\"HttpData\",\"properties\":{"
        "\"authorization\":\"eyJhbGciOi.token\",\"type\":\"nested\"}},"
        "\"type\":\"PROVIDER\",\"transferProcessId\":\"tp-9\",\"assetId\":"
        "\"a\",\"contractId\":\"c\"},\"type\":\"TransferProcessStarted\","
        "\"at\":1796305164000,\"id\":\"ev-9\"}";
    struct edc_event ev;
    char err[256];
    CU_ASSERT_EQUAL_FATAL(decode(body, &ev, err, sizeof(err)), EDC_EVENT_OK);
    CU_ASSERT_STRING_EQUAL(ev.id, "ev-9");
    CU_ASSERT_STRING_EQUAL(ev.type, "TransferProcessStarted");
    CU_ASSERT_STRING_EQUAL(ev.transfer_process_id, "tp-9");
    /* the nested "type": "nested" is not payload.type */
    CU_ASSERT_EQUAL(ev.party, EDC_PARTY_PROVIDER);
    edc_event_clear(&ev);
}

static void test_party_values(void)
{
    static const struct {
        const char *payload_type; /* the raw JSON value, NULL: absent */
        enum edc_party want;
    } cases[] = {
        {"\"CONSUMER\"", EDC_PARTY_CONSUMER},
        {"\"PROVIDER\"", EDC_PARTY_PROVIDER},
        {"\"consumer\"", EDC_PARTY_OTHER}, /* EDC writes it upper case */
        {"7", EDC_PARTY_OTHER},
        {"null", EDC_PARTY_OTHER},
        {NULL, EDC_PARTY_OTHER},
    };
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        char body[256], err[256];
        struct edc_event ev;
        if (cases[i].payload_type)
            snprintf(body, sizeof(body),
                     "{\"id\":\"e\",\"type\":\"T\",\"payload\":{"
                     "\"transferProcessId\":\"tp\",\"type\":%s}}",
                     cases[i].payload_type);
        else
            snprintf(body, sizeof(body),
                     "{\"id\":\"e\",\"type\":\"T\",\"payload\":{"
                     "\"transferProcessId\":\"tp\"}}");
        CU_ASSERT_EQUAL_FATAL(decode(body, &ev, err, sizeof(err)),
                              EDC_EVENT_OK);
        if (ev.party != cases[i].want)
            fprintf(stderr, "\n  payload.type %s: party %d\n",
                    cases[i].payload_type ? cases[i].payload_type : "absent",
                    (int)ev.party);
        CU_ASSERT_EQUAL(ev.party, cases[i].want);
        edc_event_clear(&ev);
    }
}

/* Bodies that are not an EDC event, and the reason each gets. */
static void test_bad_bodies(void)
{
    static const struct {
        const char *body;
        const char *reason; /* a prefix of the expected errstr */
    } cases[] = {
        {"", "body: empty"},
        {"{\"id\":", "body: not well-formed JSON"},
        {"{bad", "body: not well-formed JSON"},
        {"{\"id\":\"e\"} trailing", "body: not well-formed JSON"},
        {"[1,2]", "body: not a JSON object"},
        {"\"text\"", "body: not a JSON object"},
        {"{\"id\":\"e\",\"type\":\"T\",\"payload\":{\"transferProcessId\":"
         "\"\\u0000\"}}",
         "body: \\u0000 at byte"},
        {"{\"id\":\"\\ud800\"}", "body: \\u escape of an unpaired surrogate"},
        {"{\"id\":\"\xff\"}", "body: invalid UTF-8 at byte 7"},
        {"{\"type\":\"T\",\"payload\":{\"transferProcessId\":\"tp\"}}",
         "id: missing"},
        {"{\"id\":\"\",\"type\":\"T\",\"payload\":{\"transferProcessId\":"
         "\"tp\"}}",
         "id: not a non-empty string"},
        {"{\"id\":5,\"type\":\"T\",\"payload\":{\"transferProcessId\":\"tp\"}"
         "}",
         "id: not a non-empty string"},
        {"{\"id\":\"e\",\"payload\":{\"transferProcessId\":\"tp\"}}",
         "type: missing"},
        {"{\"id\":\"e\",\"type\":[],\"payload\":{\"transferProcessId\":\"tp\""
         "}}",
         "type: not a string"},
        {"{\"id\":\"e\",\"type\":\"T\"}", "payload: missing"},
        {"{\"id\":\"e\",\"type\":\"T\",\"payload\":[{\"transferProcessId\":"
         "\"tp\"}]}",
         "payload: not an object"},
        {"{\"id\":\"e\",\"type\":\"T\",\"payload\":{}}",
         "payload.transferProcessId: missing"},
        {"{\"id\":\"e\",\"type\":\"T\",\"payload\":{\"transferProcessId\":\"\""
         "}}",
         "payload.transferProcessId: not a non-empty string"},
        {"{\"id\":\"e\",\"type\":\"T\",\"payload\":{\"transferProcessId\":{"
         "\"id\":\"tp\"}}}",
         "payload.transferProcessId: not a non-empty string"},
        /* only payload's own member counts, not one nested deeper or at
         * the top level */
        {"{\"id\":\"e\",\"type\":\"T\",\"transferProcessId\":\"tp\","
         "\"payload\":{\"x\":{\"transferProcessId\":\"tp\"}}}",
         "payload.transferProcessId: missing"},
        {"{\"id\":\"e\",\"id\":\"f\",\"type\":\"T\",\"payload\":{"
         "\"transferProcessId\":\"tp\"}}",
         "id: given more than once"},
        {"{\"id\":\"e\",\"type\":\"T\",\"payload\":{\"transferProcessId\":"
         "\"tp\",\"transferProcessId\":\"tp-2\"}}",
         "payload.transferProcessId: given more than once"},
        {"{\"id\":\"e\",\"type\":\"T\",\"payload\":{\"transferProcessId\":"
         "\"tp\"},\"payload\":{\"transferProcessId\":\"tp\"}}",
         "payload: given more than once"},
        {"{\"id\":\"e\",\"type\":\"T\",\"payload\":{\"transferProcessId\":"
         "\"tp\",\"type\":\"CONSUMER\",\"type\":\"PROVIDER\"}}",
         "payload.type: given more than once"},
    };
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        struct edc_event ev;
        char err[256];
        int rc = decode(cases[i].body, &ev, err, sizeof(err));
        int good = rc == EDC_EVENT_INVALID &&
                   strncmp(err, cases[i].reason, strlen(cases[i].reason)) == 0;
        if (!good)
            fprintf(stderr, "\n  case %zu: rc %d, reason \"%s\", want \"%s\"\n",
                    i, rc, err, cases[i].reason);
        CU_ASSERT_TRUE(good);
        CU_ASSERT_PTR_NULL(ev.id);
        CU_ASSERT_PTR_NULL(ev.transfer_process_id);
    }
}

/* A reason never quotes the body: a wrong member's value stays out. */
static void test_reason_quotes_nothing(void)
{
    static const char body[] =
        "{\"id\":\"e\",\"type\":\"T\",\"payload\":{\"transferProcessId\":"
        "{\"secret-token-xyz\":1}}}";
    struct edc_event ev;
    char err[256];
    CU_ASSERT_EQUAL(decode(body, &ev, err, sizeof(err)), EDC_EVENT_INVALID);
    CU_ASSERT_PTR_NULL(strstr(err, "secret-token-xyz"));
    static const char bad_json[] = "{\"id\":\"secret-token-xyz\" oops}";
    CU_ASSERT_EQUAL(decode(bad_json, &ev, err, sizeof(err)), EDC_EVENT_INVALID);
    CU_ASSERT_PTR_NULL(strstr(err, "secret-token-xyz"));
}

/* 1 MiB exactly is accepted, one byte more is not (and is not parsed). */
static void test_size_limit(void)
{
    static const char head[] =
        "{\"id\":\"e\",\"type\":\"T\",\"payload\":{\"transferProcessId\":"
        "\"tp\"},\"pad\":\"";
    size_t n = EDC_EVENT_MAX_BYTES;
    char *body = malloc(n + 2);
    CU_ASSERT_PTR_NOT_NULL_FATAL(body);
    memcpy(body, head, sizeof(head) - 1);
    memset(body + sizeof(head) - 1, 'x', n - (sizeof(head) - 1) - 2);
    memcpy(body + n - 2, "\"}", 2);
    body[n] = '\0';
    struct edc_event ev;
    char err[256];
    CU_ASSERT_EQUAL(edc_event_decode(&ev, body, n, err, sizeof(err)),
                    EDC_EVENT_OK);
    CU_ASSERT_STRING_EQUAL(ev.transfer_process_id, "tp");
    edc_event_clear(&ev);
    memcpy(body + n - 2, "x\"}", 3);
    CU_ASSERT_EQUAL(edc_event_decode(&ev, body, n + 1, err, sizeof(err)),
                    EDC_EVENT_INVALID);
    CU_ASSERT_STRING_EQUAL(err, "body: larger than 1048576 bytes");
    free(body);
}

/* Deep nesting inside payload is parsed, not a crash. */
static void test_deep_nesting(void)
{
    size_t depth = 5000;
    size_t n = depth * 2 + 128;
    char *body = malloc(n);
    CU_ASSERT_PTR_NOT_NULL_FATAL(body);
    size_t o = (size_t)snprintf(body, n,
                                "{\"id\":\"e\",\"type\":\"T\",\"payload\":{"
                                "\"transferProcessId\":\"tp\",\"x\":");
    for (size_t i = 0; i < depth; i++)
        body[o++] = '[';
    for (size_t i = 0; i < depth; i++)
        body[o++] = ']';
    memcpy(body + o, "}}", 3);
    struct edc_event ev;
    char err[256];
    CU_ASSERT_EQUAL(edc_event_decode(&ev, body, strlen(body), err, sizeof(err)),
                    EDC_EVENT_OK);
    edc_event_clear(&ev);
    free(body);
}

static void register_suites(void)
{
    CU_pSuite s = CU_add_suite("edc_event_decode", NULL, NULL);
    CU_add_test(s, "the contract's envelope", test_contract_example);
    CU_add_test(s, "a Started event with nested payload",
                test_started_provider_nested);
    CU_add_test(s, "payload.type values", test_party_values);
    CU_add_test(s, "bodies that are not an EDC event", test_bad_bodies);
    CU_add_test(s, "reasons quote nothing", test_reason_quotes_nothing);
    CU_add_test(s, "1 MiB limit", test_size_limit);
    CU_add_test(s, "deep nesting", test_deep_nesting);
}

int main(void)
{
    static const cunit_register_fn regs[] = {register_suites, NULL};
    return cunit_main(regs);
}

/* test_handler.c: handler_event_to_op() as a table: event JSON in, the
 * expected store operation out (schemas/README.md §1, "Effects"). */
#include "handlers/handler.h"
#include "tests/support/cunit_main.h"

#include <stdio.h>
#include <string.h>

#define KEYS                                                                   \
    "\"counter_party_id\":\"BPNL7\",\"counter_party_address\":\"https://a\","  \
    "\"query_checksum\":\"q7\",\"policy_checksum\":\"p7\""
#define ENV(t)                                                                 \
    "\"specversion\":\"1.0\",\"id\":\"e-1\",\"source\":\"urn:c\","             \
    "\"type\":\"" t "\""

struct handler_case {
    const char *name;
    const char *json;
    enum store_op_kind kind;
    const char *transfer_id; /* NULL: none (unconditional delete) */
    const char *entry;       /* PUT only */
};

static const struct handler_case cases[] = {
    {"negotiated puts the stripped entry",
     "{" ENV("edr.negotiated") ",\"data\":{" KEYS ",\"edr\":{\"@type\":"
                               "\"EndpointDataReferenceEntry\",\"providerId\":"
                               "\"BPNL7\","
                               "\"transferProcessId\":\"tp-1\",\"assetId\":\"a-"
                               "1\",\"@context\":"
                               "{\"@vocab\":\"https://w3id.org/edc/v0.0.1/ns/"
                               "\"}}}}",
     STORE_OP_PUT, "tp-1",
     "{\"transferProcessId\":\"tp-1\",\"assetId\":\"a-1\"}"},
    {"renewed puts too (creates an unknown connection)",
     "{" ENV("edr.renewed") ",\"data\":{" KEYS ",\"edr\":{"
                            "\"transferProcessId\":\"tp-2\",\"expiresAt\":"
                            "1738330000000}}}",
     STORE_OP_PUT, "tp-2",
     "{\"transferProcessId\":\"tp-2\",\"expiresAt\":1738330000000}"},
    {"type after data",
     "{\"data\":{\"edr\":{\"transferProcessId\":\"tp-3\"}," KEYS
     "}," ENV("edr.renewed") "}",
     STORE_OP_PUT, "tp-3", "{\"transferProcessId\":\"tp-3\"}"},
    /* The stored entry: compact, @type/@context/providerId dropped at the
     * top of edr only, everything else kept verbatim and in order. */
    {"dropped members anywhere at the top, kept below",
     "{" ENV("edr.negotiated") ",\"data\":{" KEYS
                               ",\"edr\" : { \"@type\" : \"EDR\", "
                               "\"providerId\" : \"BPNL\" , "
                               "\"transferProcessId\" : \"tp-2\", "
                               "\"@context\": {\"@vocab\": "
                               "\"https://w3id.org/edc/v0.0.1/ns/\", \"x\": "
                               "[1, 2]}, \"n\": "
                               "[1.50, -0, 1e400, "
                               "123456789012345678901234567890], \"o\": "
                               "{\"@type\": \"kept\", \"providerId\": null, "
                               "\"@context\": {}}, "
                               "\"b\": [true, false, null], \"e\": {}, \"a\": "
                               "[]}}}",
     STORE_OP_PUT, "tp-2",
     "{\"transferProcessId\":\"tp-2\",\"n\":[1.50,-0,1e400,"
     "123456789012345678901234567890],\"o\":{\"@type\":\"kept\","
     "\"providerId\":null,\"@context\":{}},\"b\":[true,false,null],"
     "\"e\":{},\"a\":[]}"},
    {"a dropped member in the middle, with a nested value",
     "{\"data\":{\"edr\":{\"transferProcessId\":\"t\",\"providerId\":"
     "{\"a\":[1,{\"b\":2}]},\"z\":1}," KEYS "}," ENV("edr.renewed") "}",
     STORE_OP_PUT, "t", "{\"transferProcessId\":\"t\",\"z\":1}"},
    {"a dropped member written with an escape is still dropped",
     "{" ENV("edr.negotiated") ",\"data\":{" KEYS
                               ",\"edr\":{\"\\u0040type\":\"x\","
                               "\"transferProcessId\":\"t\","
                               "\"provider\\u0049d\":1,\"@typ\":2,"
                               "\"providerid\":3}}}",
     STORE_OP_PUT, "t",
     "{\"transferProcessId\":\"t\",\"@typ\":2,\"providerid\":3}"},
    {"only dropped members besides the transfer id, last",
     "{" ENV("edr.negotiated") ",\"data\":{" KEYS
                               ",\"edr\":{\"transferProcessId\":\"t\",\"@"
                               "context\":[]}}}",
     STORE_OP_PUT, "t", "{\"transferProcessId\":\"t\"}"},
    {"expired with transfer id deletes only that EDR",
     "{" ENV("edr.expired") ",\"data\":{" KEYS
                            ",\"transfer_process_id\":\"tp-1\"}}",
     STORE_OP_DELETE, "tp-1", NULL},
    {"expired without transfer id deletes whatever is there",
     "{" ENV("edr.expired") ",\"data\":{" KEYS "}}", STORE_OP_DELETE, NULL,
     NULL},
    {"expired ignores an edr",
     "{" ENV("edr.expired") ",\"data\":{" KEYS
                            ",\"edr\":{\"transferProcessId\":\"tp-9\"}}}",
     STORE_OP_DELETE, NULL, NULL},
};

static void test_table(void)
{
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        const struct handler_case *c = &cases[i];
        struct event ev;
        struct store_op op;
        char err[256];

        enum event_error e =
            event_decode(&ev, c->json, strlen(c->json), err, sizeof(err));
        if (e != EVENT_OK)
            fprintf(stderr, "\n%s: rejected: %s\n", c->name, err);
        CU_ASSERT_EQUAL_FATAL(e, EVENT_OK);
        CU_ASSERT_EQUAL_FATAL(handler_event_to_op(&ev, &op), 0);
        CU_ASSERT_EQUAL(op.kind, c->kind);
        CU_ASSERT_STRING_EQUAL(op.key.counter_party_id, "BPNL7");
        CU_ASSERT_STRING_EQUAL(op.key.counter_party_address, "https://a");
        CU_ASSERT_STRING_EQUAL(op.key.query_checksum, "q7");
        CU_ASSERT_STRING_EQUAL(op.key.policy_checksum, "p7");
        if (c->transfer_id) {
            CU_ASSERT_PTR_NOT_NULL_FATAL(op.transfer_id);
            CU_ASSERT_STRING_EQUAL(op.transfer_id, c->transfer_id);
        } else {
            CU_ASSERT_PTR_NULL(op.transfer_id);
        }
        if (c->entry) {
            CU_ASSERT_PTR_NOT_NULL_FATAL(op.entry_json);
            CU_ASSERT_EQUAL(op.entry_len, strlen(c->entry));
            CU_ASSERT_NSTRING_EQUAL(op.entry_json, c->entry, op.entry_len);
        } else {
            CU_ASSERT_PTR_NULL(op.entry_json);
            CU_ASSERT_EQUAL(op.entry_len, 0);
        }
        /* The op borrows the event's strings. */
        CU_ASSERT_PTR_EQUAL(op.key.counter_party_id, ev.counter_party_id);
        event_clear(&ev);
    }
}

/* An event that did not come out of event_decode is refused. */
static void test_invalid(void)
{
    struct event ev;
    struct store_op op;
    char tp[] = "tp", entry[] = "{\"@type\":1}", k[] = "k";
    struct event_member m = {2, 5, 1, 9};

    memset(&ev, 0, sizeof(ev));
    CU_ASSERT_EQUAL(handler_event_to_op(&ev, &op), -1);
    ev.counter_party_id = ev.counter_party_address = k;
    ev.query_checksum = ev.policy_checksum = k;
    ev.type = EVENT_NEGOTIATED;
    CU_ASSERT_EQUAL(handler_event_to_op(&ev, &op), -1); /* no entry */
    ev.edr_json = entry;
    ev.edr_len = strlen(entry);
    CU_ASSERT_EQUAL(handler_event_to_op(&ev, &op), -1); /* no transfer id */
    ev.transfer_id = tp;
    CU_ASSERT_EQUAL(handler_event_to_op(&ev, &op), 0);
    CU_ASSERT_EQUAL(op.kind, STORE_OP_PUT);
    CU_ASSERT_PTR_EQUAL(op.entry_json, entry); /* no members: as it is */
    ev.edr_members = &m;
    ev.n_edr_members = 1;
    /* a member to drop but no room to write the entry */
    CU_ASSERT_EQUAL(handler_event_to_op(&ev, &op), -1);
    ev.type = EVENT_EXPIRED;
    CU_ASSERT_EQUAL(handler_event_to_op(&ev, &op), 0);
    CU_ASSERT_EQUAL(op.kind, STORE_OP_DELETE);
    CU_ASSERT_PTR_NULL(op.entry_json);
}

static void register_tests(void)
{
    CU_pSuite s = CU_add_suite("handler", NULL, NULL);
    CU_add_test(s, "event -> store op table", test_table);
    CU_add_test(s, "refuses an event not decoded", test_invalid);
}

int main(void)
{
    static const cunit_register_fn regs[] = {register_tests, NULL};
    return cunit_main(regs);
}

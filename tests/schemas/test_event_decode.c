/* test_event_decode.c: event_decode() against every rule of schemas/README.md
 * §1.
 *
 * Tables of input JSON and the expected error class and reason; the
 * schemas/examples/ event files (EDR_EXAMPLES_DIR, set by CMake) must
 * decode; inputs are copied into exact-size heap buffers without a NUL so
 * ASan and valgrind see any read past the end. */
#include "schemas/edr_key.h"
#include "schemas/event.h"
#include "tests/support/cunit_main.h"
#include "tests/support/proc_util.h"

#include <dirent.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#ifndef EDR_EXAMPLES_DIR
#error "EDR_EXAMPLES_DIR must name schemas/examples"
#endif

#define KEYS                                                                   \
    "\"counter_party_id\":\"BPNL1\",\"counter_party_address\":\"https://p\","  \
    "\"query_checksum\":\"q1\",\"policy_checksum\":\"p1\""
#define ENV_NO_TYPE                                                            \
    "\"specversion\":\"1.0\",\"id\":\"e-1\",\"source\":\"urn:c\""
#define ENV(t) ENV_NO_TYPE ",\"type\":\"" t "\""
#define EDR "\"edr\":{\"transferProcessId\":\"tp-1\"}"
#define NEG(data_extra)                                                        \
    "{" ENV("edr.negotiated") ",\"data\":{" KEYS data_extra "}}"
#define EXP(data_extra)                                                        \
    "{" ENV("edr.expired") ",\"data\":{" KEYS data_extra "}}"

/* Decodes len bytes from an exact-size heap copy (no terminator). */
static enum event_error decode_n(struct event *ev, const char *s, size_t len,
                                 char *err, size_t err_size)
{
    char *copy = malloc(len ? len : 1);
    CU_ASSERT_PTR_NOT_NULL_FATAL(copy);
    memcpy(copy, s, len);
    enum event_error e = event_decode(ev, copy, len, err, err_size);
    free(copy);
    return e;
}

static enum event_error decode(struct event *ev, const char *s, char *err,
                               size_t err_size)
{
    return decode_n(ev, s, strlen(s), err, err_size);
}

struct reject_case {
    const char *json;
    enum event_error err;
    const char *reason; /* expected substring of errstr */
};

static const struct reject_case reject_cases[] = {
    /* well-formedness */
    {"", EVENT_ERR_JSON, "invalid JSON at byte 0: premature EOF"},
    {"   ", EVENT_ERR_JSON, "premature EOF"},
    {"{\"id\":", EVENT_ERR_JSON, "invalid JSON at byte 6"},
    {NEG(",\"edr\":{\"transferProcessId\":\"tp\"}") " x", EVENT_ERR_JSON,
     "trailing garbage"},
    {NEG(",\"edr\":{\"transferProcessId\":\"tp\"}") "{}", EVENT_ERR_JSON,
     "trailing garbage"},
    {"{\"a\":1,}", EVENT_ERR_JSON, "invalid JSON"},
    {"{\"a\":tru}", EVENT_ERR_JSON, "invalid JSON"},
    {"{\"a\":\"x\ty\"}", EVENT_ERR_JSON, "invalid JSON"},
    {"{/* c */}", EVENT_ERR_JSON, "invalid JSON"},
    {"{\"a\":\"\\q\"}", EVENT_ERR_JSON, "invalid JSON"},
    {"{\"a\":01}", EVENT_ERR_JSON, "invalid JSON"},
    /* UTF-8, with the offset of the first bad byte */
    {"{\"id\":\"\xff\"}", EVENT_ERR_UTF8, "not valid UTF-8 at byte 7"},
    {"{\"id\":\"ok\xc3\"}", EVENT_ERR_UTF8, "not valid UTF-8 at byte 9"},
    {"{\"id\":\"\xc0\xaf\"}", EVENT_ERR_UTF8, "not valid UTF-8 at byte 7"},
    {"{\"id\":\"\xed\xa0\x80\"}", EVENT_ERR_UTF8, "not valid UTF-8 at byte 7"},
    {"{\"id\":\"\xf4\x90\x80\x80\"}", EVENT_ERR_UTF8,
     "not valid UTF-8 at byte 7"},
    {"{\"id\":\"\xe0\x80\x80\"}", EVENT_ERR_UTF8, "not valid UTF-8 at byte 7"},
    {"{\"idxxxxxxxxxxxxxxxxxxxxxx\":\"\x80\"}", EVENT_ERR_UTF8,
     "not valid UTF-8 at byte 29"},
    {"{\"id\":\"\\ud800\"}", EVENT_ERR_UTF8, "at byte 7: \\u escape"},
    {"{\"id\":\"\\udc00\\ud800\"}", EVENT_ERR_UTF8, "at byte 7"},
    {"{\"id\":\"\\ud800\\u0041\"}", EVENT_ERR_UTF8, "unpaired surrogate"},
    {"{\"id\":\"a\\u0000\"}", EVENT_ERR_SCHEMA, "\\u0000 at byte 8"},
    /* top level */
    {"[]", EVENT_ERR_SCHEMA, "top level: must be a JSON object"},
    {"\"edr\"", EVENT_ERR_SCHEMA, "top level: must be a JSON object"},
    {"42", EVENT_ERR_SCHEMA, "top level: must be a JSON object"},
    {"null", EVENT_ERR_SCHEMA, "top level: must be a JSON object"},
    /* specversion */
    {"{\"id\":\"e\",\"source\":\"s\",\"type\":\"edr.expired\",\"data\":{" KEYS
     "}}",
     EVENT_ERR_SCHEMA, "specversion: missing"},
    {"{\"specversion\":\"1.1\"}", EVENT_ERR_SCHEMA,
     "specversion: must be \"1.0\""},
    {"{\"specversion\":1.0}", EVENT_ERR_SCHEMA, "specversion: must be \"1.0\""},
    {"{\"specversion\":[\"1.0\"]}", EVENT_ERR_SCHEMA,
     "specversion: must be \"1.0\""},
    /* id, source */
    {"{\"specversion\":\"1.0\",\"source\":\"s\",\"type\":\"edr.expired\","
     "\"data\":{" KEYS "}}",
     EVENT_ERR_SCHEMA, "id: missing"},
    {"{\"id\":\"\"}", EVENT_ERR_SCHEMA, "id: must be a non-empty string"},
    {"{\"id\":7}", EVENT_ERR_SCHEMA, "id: must be a non-empty string"},
    {"{\"id\":null}", EVENT_ERR_SCHEMA, "id: must be a non-empty string"},
    {"{\"specversion\":\"1.0\",\"id\":\"e\",\"type\":\"edr.expired\","
     "\"data\":{" KEYS "}}",
     EVENT_ERR_SCHEMA, "source: missing"},
    {"{\"source\":\"\"}", EVENT_ERR_SCHEMA,
     "source: must be a non-empty string"},
    {"{\"source\":{}}", EVENT_ERR_SCHEMA, "source: must be a non-empty string"},
    /* type */
    {"{" ENV_NO_TYPE ",\"data\":{" KEYS "}}", EVENT_ERR_SCHEMA,
     "type: missing"},
    {"{\"type\":\"edr.foo\"}", EVENT_ERR_SCHEMA,
     "type: unknown value 'edr.foo'"},
    {"{\"type\":\"EDR.NEGOTIATED\"}", EVENT_ERR_SCHEMA, "type: unknown value"},
    {"{\"type\":\"edr.expired \"}", EVENT_ERR_SCHEMA, "type: unknown value"},
    {"{\"type\":\"x\\n'\"}", EVENT_ERR_SCHEMA,
     "type: unknown value 'x\\x0a\\x27'"},
    {"{\"type\":true}", EVENT_ERR_SCHEMA, "type: must be a string"},
    /* time */
    {"{\"time\":\"yesterday\"}", EVENT_ERR_SCHEMA,
     "time: must be an RFC 3339 date-time"},
    {"{\"time\":\"2025-01-31 12:00:00Z\"}", EVENT_ERR_SCHEMA, "time: must"},
    {"{\"time\":\"2025-01-31T12:00:00\"}", EVENT_ERR_SCHEMA, "time: must"},
    {"{\"time\":\"2025-02-29T12:00:00Z\"}", EVENT_ERR_SCHEMA, "time: must"},
    {"{\"time\":\"2025-13-01T12:00:00Z\"}", EVENT_ERR_SCHEMA, "time: must"},
    {"{\"time\":\"2025-04-31T12:00:00Z\"}", EVENT_ERR_SCHEMA, "time: must"},
    {"{\"time\":\"2025-01-31T24:00:00Z\"}", EVENT_ERR_SCHEMA, "time: must"},
    {"{\"time\":\"2025-01-31T12:00:00.Z\"}", EVENT_ERR_SCHEMA, "time: must"},
    {"{\"time\":\"2025-01-31T12:00:00+0100\"}", EVENT_ERR_SCHEMA, "time: must"},
    {"{\"time\":\"2025-01-31T12:00:00+01:00x\"}", EVENT_ERR_SCHEMA,
     "time: must"},
    {"{\"time\":\"2025-01-31T12:00:00Z \"}", EVENT_ERR_SCHEMA, "time: must"},
    {"{\"time\":1738326896}", EVENT_ERR_SCHEMA, "time: must"},
    /* subject, datacontenttype */
    {"{\"subject\":null}", EVENT_ERR_SCHEMA, "subject: must be a string"},
    {"{\"subject\":[]}", EVENT_ERR_SCHEMA, "subject: must be a string"},
    {"{\"datacontenttype\":\"text/plain\"}", EVENT_ERR_SCHEMA,
     "datacontenttype: must be application/json"},
    {"{\"datacontenttype\":\"application/json; charset=utf-8\"}",
     EVENT_ERR_SCHEMA, "datacontenttype: must be application/json"},
    {"{\"datacontenttype\":null}", EVENT_ERR_SCHEMA,
     "datacontenttype: must be application/json"},
    /* data */
    {"{" ENV("edr.expired") "}", EVENT_ERR_SCHEMA, "data: missing"},
    {"{" ENV("edr.expired") ",\"data_base64\":\"e30=\"}", EVENT_ERR_SCHEMA,
     "data: missing"},
    {"{\"data\":\"x\"}", EVENT_ERR_SCHEMA, "data: must be an object"},
    {"{\"data\":[]}", EVENT_ERR_SCHEMA, "data: must be an object"},
    {"{\"data\":null}", EVENT_ERR_SCHEMA, "data: must be an object"},
    /* the four key fields */
    {"{" ENV("edr.expired") ",\"data\":{\"counter_party_address\":\"a\","
                            "\"query_checksum\":\"q\",\"policy_checksum\":"
                            "\"p\"}}",
     EVENT_ERR_SCHEMA, "data.counter_party_id: missing"},
    {"{" ENV("edr.expired") ",\"data\":{\"counter_party_id\":\"c\","
                            "\"query_checksum\":\"q\",\"policy_checksum\":"
                            "\"p\"}}",
     EVENT_ERR_SCHEMA, "data.counter_party_address: missing"},
    {"{" ENV("edr.expired") ",\"data\":{\"counter_party_id\":\"c\","
                            "\"counter_party_address\":\"a\","
                            "\"policy_checksum\":\"p\"}}",
     EVENT_ERR_SCHEMA, "data.query_checksum: missing"},
    {"{" ENV("edr.expired") ",\"data\":{\"counter_party_id\":\"c\","
                            "\"counter_party_address\":\"a\","
                            "\"query_checksum\":\"q\"}}",
     EVENT_ERR_SCHEMA, "data.policy_checksum: missing"},
    {"{\"data\":{\"counter_party_id\":\"\"}}", EVENT_ERR_SCHEMA,
     "data.counter_party_id: must be a non-empty string"},
    {"{\"data\":{\"counter_party_address\":1}}", EVENT_ERR_SCHEMA,
     "data.counter_party_address: must be a non-empty string"},
    {"{\"data\":{\"query_checksum\":null}}", EVENT_ERR_SCHEMA,
     "data.query_checksum: must be a non-empty string"},
    {"{\"data\":{\"policy_checksum\":{\"a\":1}}}", EVENT_ERR_SCHEMA,
     "data.policy_checksum: must be a non-empty string"},
    /* edr */
    {NEG(""), EVENT_ERR_SCHEMA, "data.edr: missing"},
    {"{" ENV("edr.renewed") ",\"data\":{" KEYS "}}", EVENT_ERR_SCHEMA,
     "data.edr: missing"},
    {NEG(",\"edr\":null"), EVENT_ERR_SCHEMA, "data.edr: must be an object"},
    {NEG(",\"edr\":[]"), EVENT_ERR_SCHEMA, "data.edr: must be an object"},
    {NEG(",\"edr\":\"{}\""), EVENT_ERR_SCHEMA, "data.edr: must be an object"},
    {NEG(",\"edr\":{}"), EVENT_ERR_SCHEMA,
     "data.edr.transferProcessId: missing"},
    {NEG(",\"edr\":{\"a\":{\"transferProcessId\":\"tp\"}}"), EVENT_ERR_SCHEMA,
     "data.edr.transferProcessId: missing"},
    {NEG(",\"edr\":{\"transferProcessId\":\"\"}"), EVENT_ERR_SCHEMA,
     "data.edr.transferProcessId: must be a non-empty string"},
    {NEG(",\"edr\":{\"transferProcessId\":5}"), EVENT_ERR_SCHEMA,
     "data.edr.transferProcessId: must be a non-empty string"},
    {NEG(",\"edr\":{\"transferProcessId\":null}"), EVENT_ERR_SCHEMA,
     "data.edr.transferProcessId: must be a non-empty string"},
    {NEG(",\"edr\":{\"transferProcessId\":[\"tp\"]}"), EVENT_ERR_SCHEMA,
     "data.edr.transferProcessId: must be a non-empty string"},
    /* ... the same with type after data: settled at the end */
    {"{\"data\":{" KEYS ",\"edr\":[1,2]}," ENV("edr.negotiated") "}",
     EVENT_ERR_SCHEMA, "data.edr: must be an object"},
    {"{\"data\":{" KEYS
     ",\"edr\":{\"x\":[{\"transferProcessId\":{}}]}}," ENV("edr.renewed") "}",
     EVENT_ERR_SCHEMA, "data.edr.transferProcessId: missing"},
    {"{\"data\":{" KEYS
     ",\"edr\":{\"transferProcessId\":{\"a\":[1]},\"b\":2}}," ENV(
         "edr.renewed") "}",
     EVENT_ERR_SCHEMA, "data.edr.transferProcessId: must be a non-empty"},
    {"{\"data\":{" KEYS "}," ENV("edr.renewed") "}", EVENT_ERR_SCHEMA,
     "data.edr: missing"},
    /* transfer_process_id */
    {NEG(",\"transfer_process_id\":\"tp-1\"," EDR), EVENT_ERR_SCHEMA,
     "data.transfer_process_id: only allowed for edr.expired"},
    {"{\"data\":{" KEYS "," EDR
     ",\"transfer_process_id\":\"tp\"}," ENV("edr.renewed") "}",
     EVENT_ERR_SCHEMA,
     "data.transfer_process_id: only allowed for edr.expired"},
    {"{\"data\":{" KEYS "," EDR
     ",\"transfer_process_id\":{}}," ENV("edr.negotiated") "}",
     EVENT_ERR_SCHEMA,
     "data.transfer_process_id: only allowed for edr.expired"},
    {EXP(",\"transfer_process_id\":5"), EVENT_ERR_SCHEMA,
     "data.transfer_process_id: must be a string"},
    {EXP(",\"transfer_process_id\":null"), EVENT_ERR_SCHEMA,
     "data.transfer_process_id: must be a string"},
    {"{\"data\":{" KEYS
     ",\"transfer_process_id\":[\"tp\"]}," ENV("edr.expired") "}",
     EVENT_ERR_SCHEMA, "data.transfer_process_id: must be a string"},
    /* duplicate members, at every level that is kept */
    /* (v2) key fields: no control character, so the 0x1F join of the
     * record key cannot make two connections one */
    {"{\"data\":{\"counter_party_id\":\"a\\u001fb\"}}", EVENT_ERR_SCHEMA,
     "data.counter_party_id: contains a control character (U+001F at byte 1"},
    {"{\"data\":{\"counter_party_address\":\"x\x7fy\"}}", EVENT_ERR_SCHEMA,
     "data.counter_party_address: contains a control character (U+007F"},
    {"{\"data\":{\"query_checksum\":\"q\\u0000\"}}", EVENT_ERR_SCHEMA,
     "data.query_checksum: contains a control character (U+0000 at byte 1"},
    {"{\"data\":{\"policy_checksum\":\"\\n\"}}", EVENT_ERR_SCHEMA,
     "data.policy_checksum: contains a control character (U+000A at byte 0"},
    {"{\"data\":{\"policy_checksum\":\"p\\u007F\"}}", EVENT_ERR_SCHEMA,
     "data.policy_checksum: contains a control character (U+007F"},
    /* past the eight-byte steps, and in the tail after them */
    {"{\"data\":{\"counter_party_id\":\"0123456789abc\\u001f012345678\"}}",
     EVENT_ERR_SCHEMA,
     "data.counter_party_id: contains a control character "
     "(U+001F at byte 13 of"},
    {"{\"data\":{\"query_checksum\":\"abcdefgh\x7f\"}}", EVENT_ERR_SCHEMA,
     "(U+007F at byte 8 of"},
    {"{\"data\":{\"query_checksum\":\"abcdefg\x7f~~~~~~~~\"}}",
     EVENT_ERR_SCHEMA, "(U+007F at byte 7 of"},
    {"{\"data\":{\"policy_checksum\":\"\xc3\xa9~~~~~~\\u0001\"}}",
     EVENT_ERR_SCHEMA, "(U+0001 at byte 8 of"},
    {"{\"data\":{\"policy_checksum\":\"\\t\"}}", EVENT_ERR_SCHEMA,
     "data.policy_checksum: contains a control character (U+0009"},
    /* a \u0000 outside the key fields keeps its own reason, also before
     * and inside ignored members */
    {"{\"x\":[\"\\u0000\"],\"data\":{\"query_checksum\":\"q\\u0000\"}}",
     EVENT_ERR_SCHEMA, "\\u0000 at byte 7: U+0000 is not allowed"},
    {"{\"k\\u0000\":1}", EVENT_ERR_SCHEMA, "\\u0000 at byte 3: U+0000"},
    {EXP(",\"edr\":{\"a\":\"\\u0000\"}"), EVENT_ERR_SCHEMA,
     "U+0000 is not allowed in strings"},
    {"{\"specversion\":\"1.0\",\"specversion\":\"1.0\"}", EVENT_ERR_SCHEMA,
     "specversion: duplicate member"},
    {"{\"id\":\"a\",\"i\\u0064\":\"b\"}", EVENT_ERR_SCHEMA,
     "id: duplicate member"},
    {"{\"x-ext\":1,\"x-ext\":{}}", EVENT_ERR_SCHEMA, "x-ext: duplicate member"},
    {"{\"data\":{\"policy_checksum\":\"a\",\"policy_checksum\":\"a\"}}",
     EVENT_ERR_SCHEMA, "data.policy_checksum: duplicate member"},
    {"{\"data\":{\"edr\":{},\"edr\":{}}}", EVENT_ERR_SCHEMA,
     "data.edr: duplicate member"},
    {NEG(",\"edr\":{\"transferProcessId\":\"a\",\"transferProcessId\":\"b\"}"),
     EVENT_ERR_SCHEMA, "data.edr.transferProcessId: duplicate member"},
    {NEG(",\"edr\":{\"@type\":\"a\",\"@type\":\"b\",\"transferProcessId\":"
         "\"a\"}"),
     EVENT_ERR_SCHEMA, "data.edr.@type: duplicate member"},
    {NEG(",\"edr\":{\"transferProcessId\":\"a\",\"l\":[0,{\"k\":1,\"k\":2}]}"),
     EVENT_ERR_SCHEMA, "data.edr.l[1].k: duplicate member"},
    {"{\"data\":{" KEYS ",\"edr\":{\"transferProcessId\":\"a\",\"x\":{\"k\":"
     "1,\"k\":2}}}," ENV("edr.negotiated") "}",
     EVENT_ERR_SCHEMA, "data.edr.x.k: duplicate member"},
};

static void test_rejects(void)
{
    size_t n = sizeof(reject_cases) / sizeof(reject_cases[0]);
    for (size_t i = 0; i < n; i++) {
        const struct reject_case *c = &reject_cases[i];
        struct event ev;
        char err[256];
        enum event_error e = decode(&ev, c->json, err, sizeof(err));
        int ok = e == c->err && strstr(err, c->reason) != NULL;
        if (!ok)
            fprintf(stderr,
                    "\ncase %zu: %s\n  want %s \"%s\"\n  got  %s \"%s\"\n", i,
                    c->json, event_error_class(c->err), c->reason,
                    event_error_class(e), err);
        CU_ASSERT(ok);
        /* On error nothing is left to free. */
        CU_ASSERT_PTR_NULL(ev.id);
        CU_ASSERT_PTR_NULL(ev.counter_party_id);
        CU_ASSERT_PTR_NULL(ev.edr_json);
        CU_ASSERT_PTR_NULL(ev.mem);
        CU_ASSERT_PTR_NULL(ev.transfer_id);
    }
}

struct accept_case {
    const char *json;
    enum event_type type;
    const char *transfer_id; /* NULL: absent */
    const char *edr;         /* data.edr compact; NULL: none (expired) */
};

static const struct accept_case accept_cases[] = {
    {NEG("," EDR), EVENT_NEGOTIATED, "tp-1",
     "{\"transferProcessId\":\"tp-1\"}"},
    {"{" ENV("edr.renewed") ",\"data\":{" KEYS "," EDR "}}", EVENT_RENEWED,
     "tp-1", "{\"transferProcessId\":\"tp-1\"}"},
    {EXP(""), EVENT_EXPIRED, NULL, NULL},
    {EXP(",\"transfer_process_id\":\"tp-9\""), EVENT_EXPIRED, "tp-9", NULL},
    {EXP(",\"transfer_process_id\":\"\""), EVENT_EXPIRED, "", NULL},
    /* members in any order: type and envelope after data */
    {"{\"data\":{\"edr\":{\"transferProcessId\":\"t\"}," KEYS "},"
     "\"type\":\"edr.negotiated\",\"source\":\"s\",\"id\":\"i\","
     "\"specversion\":\"1.0\"}",
     EVENT_NEGOTIATED, "t", "{\"transferProcessId\":\"t\"}"},
    {"{\"data\":{\"transfer_process_id\":\"t\"," KEYS
     "}," ENV("edr.expired") "}",
     EVENT_EXPIRED, "t", NULL},
    /* edr on expired is ignored, whatever its shape and wherever */
    {EXP(",\"edr\":{\"transferProcessId\":\"x\"}"), EVENT_EXPIRED, NULL, NULL},
    {EXP(",\"edr\":[1,{\"a\":1,\"a\":2}]"), EVENT_EXPIRED, NULL, NULL},
    {EXP(",\"edr\":null,\"transfer_process_id\":\"t\""), EVENT_EXPIRED, "t",
     NULL},
    {"{\"data\":{" KEYS ",\"edr\":{\"a\":1,\"a\":2}}," ENV("edr.expired") "}",
     EVENT_EXPIRED, NULL, NULL},
    {"{\"data\":{" KEYS
     ",\"edr\":{\"transferProcessId\":7}}," ENV("edr.expired") "}",
     EVENT_EXPIRED, NULL, NULL},
    {"{\"data\":{" KEYS ",\"edr\":{}}," ENV("edr.expired") "}", EVENT_EXPIRED,
     NULL, NULL},
    /* optional attributes; extensions of any shape are ignored */
    {"{" ENV("edr.expired") ",\"time\":\"2024-02-29T23:59:60.123456+14:00\","
                            "\"subject\":\"\",\"datacontenttype\":"
                            "\"application/json\","
                            "\"x\":{\"x\":[1,{\"x\":null}],\"x\":2},\"y\":[],"
                            "\"z\":-1.5e-7,"
                            "\"w\":\"\\u00e9\\ud83d\\ude00\",\"data\":{" KEYS
                            ",\"extra\":{\"a\":[]}"
                            "}}",
     EVENT_EXPIRED, NULL, NULL},
    {"{" ENV("edr.expired") ",\"time\":\"2025-01-31t12:00:00z\",\"data\":{" KEYS
                            "}}",
     EVENT_EXPIRED, NULL, NULL},
    {"{" ENV("edr.expired") ",\"time\":\"2000-02-29T00:00:00-00:30\",\"data\":"
                            "{" KEYS "}}",
     EVENT_EXPIRED, NULL, NULL},
    {" \n\t{" ENV("edr.expired") ",\"data\":{" KEYS "}}\r\n ", EVENT_EXPIRED,
     NULL, NULL},
    /* data.edr: compact, every member kept verbatim and in order (what
     * the stored entry leaves out is the handler's decision) */
    {NEG(",\"edr\" : { \"@type\" : \"EDR\", \"providerId\" : \"BPNL\" , "
         "\"transferProcessId\" : \"tp-2\", \"@context\": {\"@vocab\": "
         "\"https://w3id.org/edc/v0.0.1/ns/\", \"x\": [1, 2]}, \"n\": "
         "[1.50, -0, 1e400, 123456789012345678901234567890], \"o\": "
         "{\"@type\": \"kept\", \"providerId\": null, \"@context\": {}}, "
         "\"b\": [true, false, null], \"e\": {}, \"a\": []}"),
     EVENT_NEGOTIATED, "tp-2",
     "{\"@type\":\"EDR\",\"providerId\":\"BPNL\",\"transferProcessId\":"
     "\"tp-2\",\"@context\":{\"@vocab\":\"https://w3id.org/edc/v0.0.1/ns/\","
     "\"x\":[1,2]},\"n\":[1.50,-0,1e400,"
     "123456789012345678901234567890],\"o\":{\"@type\":\"kept\","
     "\"providerId\":null,\"@context\":{}},\"b\":[true,false,null],"
     "\"e\":{},\"a\":[]}"},
    /* strings with escapes are re-escaped, plain ones copied; non-ASCII
     * stays raw UTF-8; a key with escapes counts under its decoded name */
    {NEG(",\"edr\":{\"transferProcessId\":\"t\\u00e9\\\"\",\"k\\u0065y\":"
         "\"a\\/b\\n\\u0001\\t\",\"\xc3\xa9\":\"\xf0\x9f\x98\x80\"}"),
     EVENT_NEGOTIATED, "t\xc3\xa9\"",
     "{\"transferProcessId\":\"t\xc3\xa9\\\"\",\"key\":\"a/b\\n\\u0001\\t\","
     "\"\xc3\xa9\":\"\xf0\x9f\x98\x80\"}"},
    {"{\"data\":{\"edr\":{\"transferProcessId\":\"t\",\"providerId\":"
     "{\"a\":[1,{\"b\":2}]},\"z\":1}," KEYS "}," ENV("edr.renewed") "}",
     EVENT_RENEWED, "t",
     "{\"transferProcessId\":\"t\",\"providerId\":{\"a\":[1,{\"b\":2}]},"
     "\"z\":1}"},
};

/* The member spans rebuild edr_json exactly, and each starts with its
 * quoted name and a colon. */
static void check_members(const struct event *ev)
{
    char *re = malloc(ev->edr_len + 1);
    size_t pos = 0;
    CU_ASSERT_PTR_NOT_NULL_FATAL(re);
    re[pos++] = '{';
    for (size_t i = 0; i < ev->n_edr_members; i++) {
        const struct event_member *m = &ev->edr_members[i];
        CU_ASSERT_FATAL(m->off + m->len <= ev->edr_len);
        CU_ASSERT_EQUAL(m->name_off, m->off + 1);
        CU_ASSERT_EQUAL(ev->edr_json[m->off], '"');
        CU_ASSERT_EQUAL(ev->edr_json[m->name_off + m->name_len], '"');
        CU_ASSERT_EQUAL(ev->edr_json[m->name_off + m->name_len + 1], ':');
        if (i)
            re[pos++] = ',';
        CU_ASSERT_FATAL(pos + m->len < ev->edr_len);
        memcpy(re + pos, ev->edr_json + m->off, m->len);
        pos += m->len;
    }
    re[pos++] = '}';
    CU_ASSERT_EQUAL(pos, ev->edr_len);
    CU_ASSERT(pos == ev->edr_len && memcmp(re, ev->edr_json, pos) == 0);
    free(re);
}

static void test_accepts(void)
{
    size_t n = sizeof(accept_cases) / sizeof(accept_cases[0]);
    for (size_t i = 0; i < n; i++) {
        const struct accept_case *c = &accept_cases[i];
        struct event ev;
        char err[256];
        enum event_error e = decode(&ev, c->json, err, sizeof(err));
        if (e != EVENT_OK)
            fprintf(stderr, "\ncase %zu: %s\n  rejected: %s\n", i, c->json,
                    err);
        CU_ASSERT_EQUAL_FATAL(e, EVENT_OK);
        CU_ASSERT_EQUAL(ev.type, c->type);
        if (c->transfer_id) {
            CU_ASSERT_PTR_NOT_NULL_FATAL(ev.transfer_id);
            CU_ASSERT_STRING_EQUAL(ev.transfer_id, c->transfer_id);
        } else {
            CU_ASSERT_PTR_NULL(ev.transfer_id);
        }
        if (c->edr) {
            CU_ASSERT_PTR_NOT_NULL_FATAL(ev.edr_json);
            if (strcmp(ev.edr_json, c->edr) != 0)
                fprintf(stderr, "\ncase %zu edr:\n  want %s\n  got  %s\n", i,
                        c->edr, ev.edr_json);
            CU_ASSERT_STRING_EQUAL(ev.edr_json, c->edr);
            CU_ASSERT_EQUAL(ev.edr_len, strlen(c->edr));
            CU_ASSERT_PTR_NOT_NULL(ev.scratch);
            check_members(&ev);
        } else {
            CU_ASSERT_PTR_NULL(ev.edr_json);
            CU_ASSERT_EQUAL(ev.edr_len, 0);
            CU_ASSERT_EQUAL(ev.n_edr_members, 0);
        }
        CU_ASSERT_PTR_NOT_NULL(ev.id);
        CU_ASSERT_PTR_NOT_NULL(ev.source);
        CU_ASSERT_PTR_NOT_NULL(ev.counter_party_id);
        CU_ASSERT_PTR_NOT_NULL(ev.counter_party_address);
        CU_ASSERT_PTR_NOT_NULL(ev.query_checksum);
        CU_ASSERT_PTR_NOT_NULL(ev.policy_checksum);
        event_clear(&ev);
        CU_ASSERT_PTR_NULL(ev.id);
    }
}

/* (v2) Two connections whose fields join to the same 0x1F-separated
 * text: neither is accepted, so they can never share a record key. */
static void test_key_join_collision(void)
{
    static const char *ev[] = {
        "{" ENV("edr.expired") ",\"data\":{\"counter_party_id\":\"a\\u001fb\","
                               "\"counter_party_address\":\"c\",\"query_"
                               "checksum\":\"q\","
                               "\"policy_checksum\":\"p\"}}",
        "{" ENV("edr.expired") ",\"data\":{\"counter_party_id\":\"a\","
                               "\"counter_party_address\":\"b\\u001fc\","
                               "\"query_checksum\":\"q\","
                               "\"policy_checksum\":\"p\"}}",
    };
    static const char *member[] = {"data.counter_party_id:",
                                   "data.counter_party_address:"};
    for (int i = 0; i < 2; i++) {
        struct event e;
        char err[256];
        CU_ASSERT_EQUAL(decode(&e, ev[i], err, sizeof(err)), EVENT_ERR_SCHEMA);
        CU_ASSERT_EQUAL(strncmp(err, member[i], strlen(member[i])), 0);
    }
    /* Control characters elsewhere are fine (escaped, as JSON wants). */
    const char *ok =
        "{" ENV("edr.negotiated") ",\"subject\":\"a\\u001fb\","
                                  "\"data\":{" KEYS
                                  ",\"edr\":{\"transferProcessId\":"
                                  "\"t\\n\",\"x\":\"\\u0001\\u007f\"}}}";
    struct event e;
    char err[256];
    CU_ASSERT_EQUAL_FATAL(decode(&e, ok, err, sizeof(err)), EVENT_OK);
    CU_ASSERT_STRING_EQUAL(e.subject, "a\x1f"
                                      "b");
    CU_ASSERT_STRING_EQUAL(
        e.edr_json, "{\"transferProcessId\":\"t\\n\",\"x\":\"\\u0001\x7f\"}");
    event_clear(&e);
}

static void test_fields(void)
{
    const char *json =
        "{\"specversion\":\"1.0\",\"id\":\"id-\\u00e9\",\"source\":\"urn:c\","
        "\"subject\":\"tp-1\",\"type\":\"edr.negotiated\",\"data\":{" KEYS
        "," EDR "}}";
    struct event ev;
    char err[128];

    CU_ASSERT_EQUAL_FATAL(decode(&ev, json, err, sizeof(err)), EVENT_OK);
    CU_ASSERT_STRING_EQUAL(ev.id, "id-\xc3\xa9");
    CU_ASSERT_STRING_EQUAL(ev.source, "urn:c");
    CU_ASSERT_STRING_EQUAL(ev.subject, "tp-1");
    struct edr_key k = event_key(&ev);
    CU_ASSERT_STRING_EQUAL(k.counter_party_id, "BPNL1");
    CU_ASSERT_STRING_EQUAL(k.counter_party_address, "https://p");
    CU_ASSERT_STRING_EQUAL(k.query_checksum, "q1");
    CU_ASSERT_STRING_EQUAL(k.policy_checksum, "p1");
    event_clear(&ev);
    event_clear(NULL);

    CU_ASSERT_STRING_EQUAL(event_type_name(EVENT_NEGOTIATED), "edr.negotiated");
    CU_ASSERT_STRING_EQUAL(event_type_name(EVENT_RENEWED), "edr.renewed");
    CU_ASSERT_STRING_EQUAL(event_type_name(EVENT_EXPIRED), "edr.expired");
    CU_ASSERT_PTR_NULL(event_type_name((enum event_type)0));
    CU_ASSERT_STRING_EQUAL(event_error_class(EVENT_ERR_SIZE), "size");
    CU_ASSERT_STRING_EQUAL(event_error_class(EVENT_ERR_UTF8), "utf8");
    CU_ASSERT_STRING_EQUAL(event_error_class(EVENT_ERR_JSON), "json");
    CU_ASSERT_STRING_EQUAL(event_error_class(EVENT_ERR_SCHEMA), "schema");
    CU_ASSERT_STRING_EQUAL(event_error_class(EVENT_ERR_NOMEM), "nomem");

    /* errstr may be absent or tiny */
    CU_ASSERT_EQUAL(event_decode(&ev, "[]", 2, NULL, 0), EVENT_ERR_SCHEMA);
    char tiny[4];
    CU_ASSERT_EQUAL(event_decode(&ev, "[]", 2, tiny, sizeof(tiny)),
                    EVENT_ERR_SCHEMA);
    CU_ASSERT_STRING_EQUAL(tiny, "top");
}

/* Key fields: 1024 bytes (not characters) is the limit. */
static void test_key_field_length(void)
{
    static const char *fields[] = {"counter_party_id", "counter_party_address",
                                   "query_checksum", "policy_checksum"};
    char *json = malloc(8192);
    CU_ASSERT_PTR_NOT_NULL_FATAL(json);

    for (int f = 0; f < 4; f++) {
        for (int variant = 0; variant < 3; variant++) {
            /* 0: 1024 ASCII bytes, ok; 1: 1025, too long; 2: 513 two-byte
             * characters = 1026 bytes but 513 characters, too long. */
            char val[1100];
            size_t vlen = 0;
            if (variant == 2) {
                for (int i = 0; i < 513; i++) {
                    val[vlen++] = '\xc3';
                    val[vlen++] = '\xa9';
                }
            } else {
                vlen = variant == 0 ? 1024 : 1025;
                memset(val, 'x', vlen);
            }
            val[vlen] = '\0';
            size_t pos = (size_t)snprintf(json, 8192,
                                          "{" ENV("edr.expired") ",\"data\":{");
            for (int g = 0; g < 4; g++)
                pos += (size_t)snprintf(json + pos, 8192 - pos,
                                        "%s\"%s\":\"%s\"", g ? "," : "",
                                        fields[g], g == f ? val : "k");
            snprintf(json + pos, 8192 - pos, "}}");

            struct event ev;
            char err[256], want[128];
            enum event_error e = decode(&ev, json, err, sizeof(err));
            if (variant == 0) {
                CU_ASSERT_EQUAL(e, EVENT_OK);
                event_clear(&ev);
            } else {
                snprintf(want, sizeof(want), "data.%s: longer than 1024 bytes",
                         fields[f]);
                CU_ASSERT_EQUAL(e, EVENT_ERR_SCHEMA);
                CU_ASSERT_STRING_EQUAL(err, want);
            }
        }
    }
    free(json);
}

/* Every prefix of a valid event is rejected, read from an exact-size
 * buffer: under ASan or valgrind any read past len fails the test. */
static void test_no_terminator(void)
{
    const char *json = NEG(",\"edr\":{\"@type\":\"x\",\"transferProcessId\":"
                           "\"tp-\\u00e9\",\"n\":[1,2.5,{\"k\":null}]}");
    size_t n = strlen(json);
    struct event ev;
    char err[256];

    CU_ASSERT_EQUAL(decode_n(&ev, json, n, err, sizeof(err)), EVENT_OK);
    event_clear(&ev);
    for (size_t len = 0; len < n; len++) {
        enum event_error e = decode_n(&ev, json, len, err, sizeof(err));
        CU_ASSERT(e == EVENT_ERR_JSON || e == EVENT_ERR_SCHEMA);
        CU_ASSERT_PTR_NULL(ev.id);
    }
    /* A number or literal running into the end of the buffer. */
    CU_ASSERT_EQUAL(decode_n(&ev, "{\"a\":12", 7, err, sizeof(err)),
                    EVENT_ERR_JSON);
    CU_ASSERT_EQUAL(decode_n(&ev, "{\"a\":tr", 7, err, sizeof(err)),
                    EVENT_ERR_JSON);
    CU_ASSERT_EQUAL(decode_n(&ev, "{\"a\":\"\\u00", 10, err, sizeof(err)),
                    EVENT_ERR_JSON);
    CU_ASSERT_EQUAL(decode_n(&ev, "{\"a\":\"\\ud83d", 12, err, sizeof(err)),
                    EVENT_ERR_UTF8);
    CU_ASSERT_EQUAL(decode_n(&ev, "{\"a\":\"\xe2\x82", 8, err, sizeof(err)),
                    EVENT_ERR_UTF8);
    CU_ASSERT_STRING_EQUAL(err, "not valid UTF-8 at byte 6");
}

/* An event of exactly `size` bytes whose edr carries a big string value,
 * plain or made of escapes. */
static char *big_event(size_t size, int escaped)
{
    const char *head = "{" ENV(
        "edr.negotiated") ",\"data\":{" KEYS
                          ",\"edr\":{\"transferProcessId\":\"tp\",\"big\":\"";
    const char *tail = "\"}}}";
    size_t hl = strlen(head), tl = strlen(tail);
    char *b = malloc(size);
    if (!b)
        return NULL;
    memcpy(b, head, hl);
    size_t i = hl;
    while (i < size - tl) {
        if (escaped && size - tl - i >= 6) {
            memcpy(b + i, "\\u00e9", 6);
            i += 6;
        } else {
            b[i++] = 'a';
        }
    }
    memcpy(b + size - tl, tail, tl);
    return b;
}

static void test_big_events(void)
{
    struct event ev;
    char err[256];

    for (int escaped = 0; escaped < 2; escaped++) {
        /* Just under the limit and at it: accepted. */
        for (size_t size = EVENT_MAX_BYTES - 1; size <= EVENT_MAX_BYTES;
             size++) {
            char *b = big_event(size, escaped);
            CU_ASSERT_PTR_NOT_NULL_FATAL(b);
            enum event_error e = event_decode(&ev, b, size, err, sizeof(err));
            CU_ASSERT_EQUAL(e, EVENT_OK);
            if (e == EVENT_OK) {
                CU_ASSERT(ev.edr_len > EVENT_MAX_BYTES / 4);
                CU_ASSERT_EQUAL(ev.edr_len, strlen(ev.edr_json));
                CU_ASSERT_EQUAL(ev.n_edr_members, 2);
                event_clear(&ev);
            }
            free(b);
        }

        /* One byte over: rejected before parsing. */
        char *b = big_event(EVENT_MAX_BYTES + 1, escaped);
        CU_ASSERT_PTR_NOT_NULL_FATAL(b);
        enum event_error e =
            event_decode(&ev, b, EVENT_MAX_BYTES + 1, err, sizeof(err));
        CU_ASSERT_EQUAL(e, EVENT_ERR_SIZE);
        CU_ASSERT_STRING_EQUAL(err, "event larger than 1 MiB");
        free(b);
    }
    /* The size rule comes first, even for garbage. */
    char *junk = calloc(1, EVENT_MAX_BYTES + 100);
    CU_ASSERT_PTR_NOT_NULL_FATAL(junk);
    CU_ASSERT_EQUAL(
        event_decode(&ev, junk, EVENT_MAX_BYTES + 100, err, sizeof(err)),
        EVENT_ERR_SIZE);
    free(junk);
}

/* Many members in one object (the duplicate table grows) and a
 * duplicate among them found at the end. */
static void test_many_members(void)
{
    size_t cap = 300000, pos;
    char *b = malloc(cap);
    struct event ev;
    char err[256];

    CU_ASSERT_PTR_NOT_NULL_FATAL(b);
    for (int dup = 0; dup < 2; dup++) {
        pos = (size_t)snprintf(
            b, cap,
            "{" ENV("edr.renewed") ",\"data\":{" KEYS
                                   ",\"edr\":{\"transferProcessId\":"
                                   "\"t\"");
        for (int i = 0; i < 20000; i++)
            pos += (size_t)snprintf(b + pos, cap - pos, ",\"k%d\":%d", i, i);
        if (dup)
            pos += (size_t)snprintf(b + pos, cap - pos, ",\"k19999\":0");
        pos += (size_t)snprintf(b + pos, cap - pos, "}}}");
        enum event_error e = decode_n(&ev, b, pos, err, sizeof(err));
        if (dup) {
            CU_ASSERT_EQUAL(e, EVENT_ERR_SCHEMA);
            CU_ASSERT_STRING_EQUAL(err, "data.edr.k19999: duplicate member");
        } else {
            CU_ASSERT_EQUAL(e, EVENT_OK);
            event_clear(&ev);
        }
    }
    free(b);
}

/* 64 levels in all is the limit: the top level, data, edr + 61 more;
 * ignored extension attributes count too (top level + 63). */
static void test_depth_limit(void)
{
    char b[512];
    struct event ev;
    char err[256];

    for (int extra = 63; extra <= 64; extra++) {
        size_t pos = (size_t)snprintf(b, sizeof(b),
                                      "{" ENV("edr.expired") ",\"data\":{" KEYS
                                                             "},\"ext\":");
        for (int i = 0; i < extra; i++)
            b[pos++] = '[';
        for (int i = 0; i < extra; i++)
            b[pos++] = ']';
        pos += (size_t)snprintf(b + pos, sizeof(b) - pos, "}");
        enum event_error e = decode_n(&ev, b, pos, err, sizeof(err));
        if (extra == 63) {
            CU_ASSERT_EQUAL(e, EVENT_OK);
            event_clear(&ev);
        } else {
            CU_ASSERT_EQUAL(e, EVENT_ERR_SCHEMA);
            CU_ASSERT_STRING_EQUAL(err, "nested deeper than 64 levels");
        }
    }

    for (int extra = 61; extra <= 62; extra++) {
        size_t pos = (size_t)snprintf(
            b, sizeof(b),
            "{" ENV("edr.renewed") ",\"data\":{" KEYS ",\"edr\":{"
                                   "\"transferProcessId\":\"t\",\"x\":");
        for (int i = 0; i < extra; i++)
            b[pos++] = '[';
        for (int i = 0; i < extra; i++)
            b[pos++] = ']';
        pos += (size_t)snprintf(b + pos, sizeof(b) - pos, "}}}");
        enum event_error e = decode_n(&ev, b, pos, err, sizeof(err));
        if (extra == 61) {
            CU_ASSERT_EQUAL(e, EVENT_OK);
            event_clear(&ev);
        } else {
            CU_ASSERT_EQUAL(e, EVENT_ERR_SCHEMA);
            CU_ASSERT_STRING_EQUAL(err, "nested deeper than 64 levels");
        }
    }
}

/* Every event example of schemas/ decodes; the typed ones decode to
 * their type, with consistent member spans. */
static void test_examples(void)
{
    DIR *dir = opendir(EDR_EXAMPLES_DIR);
    struct dirent *de;
    int seen = 0;

    CU_ASSERT_PTR_NOT_NULL_FATAL(dir);
    while ((de = readdir(dir)) != NULL) {
        if (strncmp(de->d_name, "event", 5) != 0)
            continue;
        char path[1024];
        size_t len = 0;
        snprintf(path, sizeof(path), "%s/%s", EDR_EXAMPLES_DIR, de->d_name);
        char *text = test_read_file(path, &len);
        CU_ASSERT_PTR_NOT_NULL_FATAL(text);
        struct event ev;
        char err[256];
        enum event_error e = decode_n(&ev, text, len, err, sizeof(err));
        if (e != EVENT_OK)
            fprintf(stderr, "\n%s: %s\n", path, err);
        CU_ASSERT_EQUAL(e, EVENT_OK);
        if (e == EVENT_OK) {
            if (strstr(de->d_name, "negotiated"))
                CU_ASSERT_EQUAL(ev.type, EVENT_NEGOTIATED);
            if (strstr(de->d_name, "renewed"))
                CU_ASSERT_EQUAL(ev.type, EVENT_RENEWED);
            if (strstr(de->d_name, "expired"))
                CU_ASSERT_EQUAL(ev.type, EVENT_EXPIRED);
            if (ev.edr_json) {
                check_members(&ev);
                CU_ASSERT_PTR_NOT_NULL(
                    strstr(ev.edr_json, "\"transferProcessId\""));
            }
            event_clear(&ev);
        }
        free(text);
        seen++;
    }
    closedir(dir);
    CU_ASSERT(seen >= 4);
}

/* The connection key of schemas/README.md §1, against vectors computed with
 * Python's hashlib:
 *   hashlib.sha256("\x1f".join(fields).encode()).hexdigest() */
static void test_connection_key(void)
{
    struct edr_key k = {
        "BPNL000000000065", "https://provider.example.com/api/v1/dsp",
        "8ea2b3c1f0d94e6a7b5c4d3e2f1a0b9c8d7e6f5a4b3c2d1e0f9a8b7c6d5e4f3a",
        "61ae4c2b9d8e7f6a5b4c3d2e1f0a9b8c7d6e5f4a3b2c1d0e9f8a7b6c5d4e3f2a"};
    struct edr_key u = {"BPNL\xc3\xbc\xe2\x82\xac", "https://x.example/dsp",
                        "q", "p"};
    char out[EDR_CONNECTION_KEY_LEN + 1];

    edr_connection_key(&k, out);
    CU_ASSERT_STRING_EQUAL(
        out,
        "cafa76787d6086dc6aec6b6974e1c34657862fef2cb0d8f9623341e4a32d30ba");
    edr_connection_key(&u, out);
    CU_ASSERT_STRING_EQUAL(
        out,
        "90d493074eec97957cc2d425340314fd5d323a45eab15416351e19d228b0a3aa");

    /* The decoded event of the example gives the same key. */
    char path[1024];
    size_t len = 0;
    struct event ev;
    char err[256];
    snprintf(path, sizeof(path), "%s/event-negotiated.json", EDR_EXAMPLES_DIR);
    char *text = test_read_file(path, &len);
    CU_ASSERT_PTR_NOT_NULL_FATAL(text);
    CU_ASSERT_EQUAL_FATAL(decode_n(&ev, text, len, err, sizeof(err)), EVENT_OK);
    struct edr_key ek = event_key(&ev);
    edr_connection_key(&ek, out);
    CU_ASSERT_STRING_EQUAL(
        out,
        "cafa76787d6086dc6aec6b6974e1c34657862fef2cb0d8f9623341e4a32d30ba");
    event_clear(&ev);
    free(text);
}

static void register_tests(void)
{
    CU_pSuite s = CU_add_suite("event_decode", NULL, NULL);
    CU_add_test(s, "(v2) key fields without control characters",
                test_key_join_collision);
    CU_add_test(s, "rejects every broken rule", test_rejects);
    CU_add_test(s, "accepts valid events", test_accepts);
    CU_add_test(s, "decoded fields and names", test_fields);
    CU_add_test(s, "key fields at most 1024 bytes", test_key_field_length);
    CU_add_test(s, "no read past len", test_no_terminator);
    CU_add_test(s, "1 MiB limit", test_big_events);
    CU_add_test(s, "many members, duplicate at the end", test_many_members);
    CU_add_test(s, "nesting limit", test_depth_limit);
    CU_add_test(s, "schemas/examples events decode", test_examples);
    CU_add_test(s, "connection key vectors", test_connection_key);
}

int main(void)
{
    static const cunit_register_fn regs[] = {register_tests, NULL};
    return cunit_main(regs);
}

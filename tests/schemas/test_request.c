/* test_request.c: schemas/request.c against every rule of schemas/README.md §2,
 * as a table of request text and expected outcome (error class, reason,
 * and whether id/reply_to survive for an error reply), plus the reply
 * writer (schemas/reply.c): every reply it builds parses back with
 * yajl_tree to the values that went in. */
#include "schemas/reply.h"
#include "schemas/request.h"
#include "tests/support/cunit_main.h"

#include <yajl/yajl_tree.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define KEYS                                                                   \
    "\"counter_party_id\":\"BPNL1\",\"counter_party_address\":\"https://p\","  \
    "\"query_checksum\":\"q\",\"policy_checksum\":\"p\""
#define HEAD "\"id\":\"r1\",\"reply_to\":\"edr:reply:c1\","

struct reject_case {
    const char *name;
    const char *text;
    size_t len; /* 0: strlen(text) */
    enum request_error want;
    const char *reason;   /* substring of errstr */
    const char *id;       /* expected salvaged id, NULL: none */
    const char *reply_to; /* expected salvaged reply_to, NULL: none */
};

static const struct reject_case rejects[] = {
    /* size */
    {"empty", "", 0, REQUEST_ERR_SIZE, "empty", NULL, NULL},
    /* syntax */
    {"not json", "hello", 0, REQUEST_ERR_JSON, "not well-formed", NULL, NULL},
    {"truncated after reply_to", "{" HEAD "\"op\":\"ping\"", 0,
     REQUEST_ERR_JSON, "not well-formed", "r1", "edr:reply:c1"},
    {"trailing garbage", "{" HEAD "\"op\":\"ping\"} x", 0, REQUEST_ERR_JSON,
     "not well-formed", "r1", "edr:reply:c1"},
    {"two values", "{" HEAD "\"op\":\"ping\"}{}", 0, REQUEST_ERR_JSON,
     "not well-formed", "r1", "edr:reply:c1"},
    {"comment", "{" HEAD "/* c */\"op\":\"ping\"}", 0, REQUEST_ERR_JSON,
     "not well-formed", "r1", "edr:reply:c1"},
    {"bad before reply_to", "{\"id\":\"r1\",\"op\":pong,\"reply_to\":\"x\"}", 0,
     REQUEST_ERR_JSON, "not well-formed", "r1", NULL},
    /* UTF-8 */
    {"invalid utf8 in arg",
     "{" HEAD "\"op\":\"count\",\"args\":{"
     "\"counter_party_id_substring\":\"\xff\"}}",
     0, REQUEST_ERR_UTF8, "invalid UTF-8 at byte", "r1", "edr:reply:c1"},
    {"overlong utf8", "{" HEAD "\"op\":\"ping\",\"x\":\"\xc0\xaf\"}", 0,
     REQUEST_ERR_UTF8, "invalid UTF-8", "r1", "edr:reply:c1"},
    {"surrogate utf8", "{" HEAD "\"op\":\"ping\",\"x\":\"\xed\xa0\x80\"}", 0,
     REQUEST_ERR_UTF8, "invalid UTF-8", "r1", "edr:reply:c1"},
    {"binary junk", "\x00\x01\x02\xfe\xff", 5, REQUEST_ERR_UTF8,
     "invalid UTF-8", NULL, NULL},
    /* top-level shape */
    {"array", "[1,2]", 0, REQUEST_ERR_SCHEMA, "not a JSON object", NULL, NULL},
    {"string", "\"x\"", 0, REQUEST_ERR_SCHEMA, "not a JSON object", NULL, NULL},
    {"number", "42", 0, REQUEST_ERR_SCHEMA, "not a JSON object", NULL, NULL},
    /* id */
    {"id missing", "{\"reply_to\":\"r\",\"op\":\"ping\"}", 0,
     REQUEST_ERR_SCHEMA, "id: missing", NULL, "r"},
    {"id number", "{\"id\":5,\"reply_to\":\"r\",\"op\":\"ping\"}", 0,
     REQUEST_ERR_SCHEMA, "id: not a string", NULL, "r"},
    {"id null", "{\"id\":null,\"reply_to\":\"r\",\"op\":\"ping\"}", 0,
     REQUEST_ERR_SCHEMA, "id: not a string (null)", NULL, "r"},
    {"id duplicate",
     "{\"id\":\"a\",\"id\":\"b\",\"reply_to\":\"r\","
     "\"op\":\"ping\"}",
     0, REQUEST_ERR_SCHEMA, "id: duplicate member", "a", "r"},
    {"id NUL", "{\"id\":\"a\\u0000b\",\"reply_to\":\"r\",\"op\":\"ping\"}", 0,
     REQUEST_ERR_SCHEMA, "id: contains a NUL", NULL, "r"},
    /* reply_to */
    {"reply_to missing", "{\"id\":\"a\",\"op\":\"ping\"}", 0,
     REQUEST_ERR_SCHEMA, "reply_to: missing", "a", NULL},
    {"reply_to empty", "{\"id\":\"a\",\"reply_to\":\"\",\"op\":\"ping\"}", 0,
     REQUEST_ERR_SCHEMA, "reply_to: empty", "a", NULL},
    {"reply_to array", "{\"id\":\"a\",\"reply_to\":[\"x\"],\"op\":\"ping\"}", 0,
     REQUEST_ERR_SCHEMA, "reply_to: not a string (an array)", "a", NULL},
    /* op */
    {"op missing", "{" HEAD "\"args\":{}}", 0, REQUEST_ERR_SCHEMA,
     "op: missing", "r1", "edr:reply:c1"},
    {"op unknown", "{" HEAD "\"op\":\"drop_table\"}", 0, REQUEST_ERR_SCHEMA,
     "op: unknown operation", "r1", "edr:reply:c1"},
    {"op case", "{" HEAD "\"op\":\"PING\"}", 0, REQUEST_ERR_SCHEMA,
     "op: unknown operation", "r1", "edr:reply:c1"},
    {"op prefix", "{" HEAD "\"op\":\"get_connection_\"}", 0, REQUEST_ERR_SCHEMA,
     "op: unknown operation", "r1", "edr:reply:c1"},
    {"op object", "{" HEAD "\"op\":{\"op\":\"ping\"}}", 0, REQUEST_ERR_SCHEMA,
     "op: not a string (an object)", "r1", "edr:reply:c1"},
    {"op duplicate", "{" HEAD "\"op\":\"ping\",\"op\":\"count\"}", 0,
     REQUEST_ERR_SCHEMA, "op: duplicate member", "r1", "edr:reply:c1"},
    /* deadline_ms */
    {"deadline string", "{" HEAD "\"op\":\"ping\",\"deadline_ms\":\"1\"}", 0,
     REQUEST_ERR_SCHEMA, "deadline_ms: not a number", "r1", "edr:reply:c1"},
    {"deadline huge double", "{" HEAD "\"op\":\"ping\",\"deadline_ms\":1e300}",
     0, REQUEST_ERR_SCHEMA, "deadline_ms: out of range", "r1", "edr:reply:c1"},
    /* args */
    {"args array", "{" HEAD "\"op\":\"count\",\"args\":[]}", 0,
     REQUEST_ERR_SCHEMA, "args: not an object (an array)", "r1",
     "edr:reply:c1"},
    {"get args missing", "{" HEAD "\"op\":\"get_connection\"}", 0,
     REQUEST_ERR_SCHEMA, "args: missing", "r1", "edr:reply:c1"},
    {"get args null", "{" HEAD "\"op\":\"get_connection\",\"args\":null}", 0,
     REQUEST_ERR_SCHEMA, "args: not an object (null)", "r1", "edr:reply:c1"},
    {"get cpid missing",
     "{" HEAD "\"op\":\"get_connection\",\"args\":{\"counter_party_address\":"
     "\"a\",\"query_checksum\":\"q\",\"policy_checksum\":\"p\"}}",
     0, REQUEST_ERR_SCHEMA, "args.counter_party_id: missing", "r1",
     "edr:reply:c1"},
    {"tid policy missing",
     "{" HEAD "\"op\":\"get_connection_transfer_id\",\"args\":{"
     "\"counter_party_id\":\"c\",\"counter_party_address\":\"a\","
     "\"query_checksum\":\"q\"}}",
     0, REQUEST_ERR_SCHEMA, "args.policy_checksum: missing", "r1",
     "edr:reply:c1"},
    {"get address empty",
     "{" HEAD "\"op\":\"get_connection\",\"args\":{\"counter_party_id\":\"c\","
     "\"counter_party_address\":\"\",\"query_checksum\":\"q\","
     "\"policy_checksum\":\"p\"}}",
     0, REQUEST_ERR_SCHEMA, "args.counter_party_address: empty", "r1",
     "edr:reply:c1"},
    {"get query number",
     "{" HEAD "\"op\":\"get_connection\",\"args\":{\"counter_party_id\":\"c\","
     "\"counter_party_address\":\"a\",\"query_checksum\":7,"
     "\"policy_checksum\":\"p\"}}",
     0, REQUEST_ERR_SCHEMA, "args.query_checksum: not a string", "r1",
     "edr:reply:c1"},
    {"get key duplicate",
     "{" HEAD "\"op\":\"get_connection\",\"args\":{" KEYS
     ",\"counter_party_id\":\"x\"}}",
     0, REQUEST_ERR_SCHEMA, "args.counter_party_id: duplicate", "r1",
     "edr:reply:c1"},
    {"get key nested object",
     "{" HEAD "\"op\":\"get_connection\",\"args\":{\"counter_party_id\":{"
     "\"a\":\"b\"},\"counter_party_address\":\"a\",\"query_checksum\":\"q\","
     "\"policy_checksum\":\"p\"}}",
     0, REQUEST_ERR_SCHEMA, "args.counter_party_id: not a string (an object)",
     "r1", "edr:reply:c1"},
    {"count substring number",
     "{" HEAD "\"op\":\"count\",\"args\":{\"counter_party_id_substring\":1}}",
     0, REQUEST_ERR_SCHEMA, "args.counter_party_id_substring: not a string",
     "r1", "edr:reply:c1"},
    {"list limit zero",
     "{" HEAD "\"op\":\"list_connections\",\"args\":{"
     "\"limit\":0}}",
     0, REQUEST_ERR_SCHEMA, "args.limit: out of range", "r1", "edr:reply:c1"},
    {"list limit 1001",
     "{" HEAD "\"op\":\"list_connections\",\"args\":{"
     "\"limit\":1001}}",
     0, REQUEST_ERR_SCHEMA, "args.limit: out of range", "r1", "edr:reply:c1"},
    {"list limit negative",
     "{" HEAD "\"op\":\"list_connections\",\"args\":{"
     "\"limit\":-5}}",
     0, REQUEST_ERR_SCHEMA, "args.limit: out of range", "r1", "edr:reply:c1"},
    {"list limit fraction",
     "{" HEAD "\"op\":\"list_connections\",\"args\":{"
     "\"limit\":2.5}}",
     0, REQUEST_ERR_SCHEMA, "args.limit: not an integer", "r1", "edr:reply:c1"},
    {"list limit string",
     "{" HEAD "\"op\":\"list_connections\",\"args\":{"
     "\"limit\":\"10\"}}",
     0, REQUEST_ERR_SCHEMA, "args.limit: not an integer", "r1", "edr:reply:c1"},
    {"list cursor junk",
     "{" HEAD "\"op\":\"list_connections\",\"args\":{"
     "\"cursor\":\"zzz\"}}",
     0, REQUEST_ERR_SCHEMA, "args.cursor: not a cursor", "r1", "edr:reply:c1"},
    {"list cursor upper hex",
     "{" HEAD "\"op\":\"list_connections\",\"args\":{\"cursor\":\""
     "ABCDEF0123456789ABCDEF0123456789ABCDEF0123456789ABCDEF0123456789\"}}",
     0, REQUEST_ERR_SCHEMA, "args.cursor: not a cursor", "r1", "edr:reply:c1"},
    {"list cursor number",
     "{" HEAD "\"op\":\"list_connections\",\"args\":{"
     "\"cursor\":5}}",
     0, REQUEST_ERR_SCHEMA, "args.cursor: not a string", "r1", "edr:reply:c1"},
    /* v2: get_by_transfer_id, wait_ms, min_positions, filters */
    {"by tid missing", "{" HEAD "\"op\":\"get_by_transfer_id\",\"args\":{}}", 0,
     REQUEST_ERR_SCHEMA, "args.transfer_process_id: missing", "r1",
     "edr:reply:c1"},
    {"by tid no args", "{" HEAD "\"op\":\"get_by_transfer_id\"}", 0,
     REQUEST_ERR_SCHEMA, "args: missing", "r1", "edr:reply:c1"},
    {"by tid number",
     "{" HEAD "\"op\":\"get_by_transfer_id\",\"args\":{"
     "\"transfer_process_id\":5}}",
     0, REQUEST_ERR_SCHEMA, "args.transfer_process_id: not a string", "r1",
     "edr:reply:c1"},
    {"by tid empty",
     "{" HEAD "\"op\":\"get_by_transfer_id\",\"args\":{"
     "\"transfer_process_id\":\"\"}}",
     0, REQUEST_ERR_SCHEMA, "args.transfer_process_id: empty", "r1",
     "edr:reply:c1"},
    {"wait_ms negative",
     "{" HEAD "\"op\":\"get_connection\",\"args\":{" KEYS ",\"wait_ms\":-1}}",
     0, REQUEST_ERR_SCHEMA, "args.wait_ms: out of range", "r1", "edr:reply:c1"},
    {"wait_ms too long",
     "{" HEAD "\"op\":\"get_connection\",\"args\":{" KEYS
     ",\"wait_ms\":30001}}",
     0, REQUEST_ERR_SCHEMA, "args.wait_ms: out of range", "r1", "edr:reply:c1"},
    {"wait_ms string",
     "{" HEAD "\"op\":\"get_connection\",\"args\":{" KEYS
     ",\"wait_ms\":\"5\"}}",
     0, REQUEST_ERR_SCHEMA, "args.wait_ms: not an integer", "r1",
     "edr:reply:c1"},
    {"wait_ms double", "{" HEAD "\"op\":\"count\",\"args\":{\"wait_ms\":1.5}}",
     0, REQUEST_ERR_SCHEMA, "args.wait_ms: not an integer", "r1",
     "edr:reply:c1"},
    {"positions array",
     "{" HEAD "\"op\":\"count\",\"args\":{\"min_positions\":[1]}}", 0,
     REQUEST_ERR_SCHEMA, "args.min_positions: not an object", "r1",
     "edr:reply:c1"},
    {"positions key not decimal",
     "{" HEAD "\"op\":\"count\",\"args\":{\"min_positions\":{\"a\":1}}}", 0,
     REQUEST_ERR_SCHEMA, "args.min_positions: a key is not a decimal", "r1",
     "edr:reply:c1"},
    {"positions key negative",
     "{" HEAD "\"op\":\"count\",\"args\":{\"min_positions\":{\"-1\":1}}}", 0,
     REQUEST_ERR_SCHEMA, "a key is not a decimal", "r1", "edr:reply:c1"},
    {"positions key leading zero",
     "{" HEAD "\"op\":\"count\",\"args\":{\"min_positions\":{\"01\":1}}}", 0,
     REQUEST_ERR_SCHEMA, "a key is not a decimal", "r1", "edr:reply:c1"},
    {"positions key too big",
     "{" HEAD
     "\"op\":\"count\",\"args\":{\"min_positions\":{\"2147483648\":1}}}",
     0, REQUEST_ERR_SCHEMA, "a key is not a decimal", "r1", "edr:reply:c1"},
    {"positions offset negative",
     "{" HEAD "\"op\":\"count\",\"args\":{\"min_positions\":{\"1\":-1}}}", 0,
     REQUEST_ERR_SCHEMA, "an offset is not a non-negative integer", "r1",
     "edr:reply:c1"},
    {"positions offset string",
     "{" HEAD "\"op\":\"count\",\"args\":{\"min_positions\":{\"1\":\"5\"}}}", 0,
     REQUEST_ERR_SCHEMA, "an offset is not a non-negative integer", "r1",
     "edr:reply:c1"},
    {"positions offset object",
     "{" HEAD
     "\"op\":\"count\",\"args\":{\"min_positions\":{\"1\":{\"2\":3}}}}",
     0, REQUEST_ERR_SCHEMA, "an offset is not a non-negative integer", "r1",
     "edr:reply:c1"},
    {"positions duplicate partition",
     "{" HEAD
     "\"op\":\"count\",\"args\":{\"min_positions\":{\"1\":2,\"1\":3}}}",
     0, REQUEST_ERR_SCHEMA, "duplicate partition", "r1", "edr:reply:c1"},
    {"positions duplicate member",
     "{" HEAD "\"op\":\"count\",\"args\":{\"min_positions\":{},"
     "\"min_positions\":{}}}",
     0, REQUEST_ERR_SCHEMA, "args.min_positions: duplicate member", "r1",
     "edr:reply:c1"},
    {"asset filter number",
     "{" HEAD "\"op\":\"list_connections\",\"args\":{\"asset_id\":1}}", 0,
     REQUEST_ERR_SCHEMA, "args.asset_id: not a string", "r1", "edr:reply:c1"},
    {"asset prefix array",
     "{" HEAD "\"op\":\"count\",\"args\":{\"asset_id_prefix\":[]}}", 0,
     REQUEST_ERR_SCHEMA, "args.asset_id_prefix: not a string", "r1",
     "edr:reply:c1"},
    {"tid filter empty",
     "{" HEAD "\"op\":\"count\",\"args\":{\"transfer_process_id\":\"\"}}", 0,
     REQUEST_ERR_SCHEMA, "args.transfer_process_id: empty", "r1",
     "edr:reply:c1"},
};

static char *repeat(char c, size_t n)
{
    char *s = malloc(n + 1);
    memset(s, c, n);
    s[n] = '\0';
    return s;
}

static void check_reject(const struct reject_case *tc)
{
    struct request req;
    char why[512];
    size_t len = tc->len ? tc->len : strlen(tc->text);
    enum request_error e =
        request_decode(&req, tc->text, len, why, sizeof(why));
    if (e != tc->want || !strstr(why, tc->reason))
        fprintf(stderr, "\n  case '%s': got %s '%s'\n", tc->name,
                request_error_class(e), why);
    CU_ASSERT_EQUAL(e, tc->want);
    CU_ASSERT_PTR_NOT_NULL(strstr(why, tc->reason));
    if (tc->id) {
        CU_ASSERT_PTR_NOT_NULL(req.id);
        if (req.id)
            CU_ASSERT_STRING_EQUAL(req.id, tc->id);
    } else {
        CU_ASSERT_PTR_NULL(req.id);
    }
    if (tc->reply_to) {
        CU_ASSERT_PTR_NOT_NULL(req.reply_to);
        if (req.reply_to)
            CU_ASSERT_STRING_EQUAL(req.reply_to, tc->reply_to);
    } else {
        CU_ASSERT_PTR_NULL(req.reply_to);
    }
    /* nothing but id/reply_to is left on error */
    CU_ASSERT_EQUAL(req.op, REQUEST_OP_NONE);
    CU_ASSERT_PTR_NULL(req.counter_party_id);
    CU_ASSERT_PTR_NULL(req.substring);
    CU_ASSERT_PTR_NULL(req.cursor);
    request_clear(&req);
}

static void test_rejects(void)
{
    for (size_t i = 0; i < sizeof(rejects) / sizeof(rejects[0]); i++)
        check_reject(&rejects[i]);
}

/* Length limits at exactly the limit (accepted) and one past (rejected). */
static void test_limits(void)
{
    struct {
        const char *member;
        size_t max;
    } lims[] = {{"id", REQUEST_ID_MAX},
                {"reply_to", REQUEST_REPLY_TO_MAX},
                {"counter_party_id", EDR_KEY_FIELD_MAX},
                {"policy_checksum", EDR_KEY_FIELD_MAX},
                {"counter_party_id_substring", EDR_KEY_FIELD_MAX}};
    for (size_t i = 0; i < sizeof(lims) / sizeof(lims[0]); i++) {
        for (size_t extra = 0; extra <= 1; extra++) {
            char *v = repeat('x', lims[i].max + extra);
            char *args_keys = NULL, *text = NULL;
            size_t cap = 4 * 1024 + 4 * lims[i].max;
            const char *m = lims[i].member;
            int is_top = strcmp(m, "id") == 0 || strcmp(m, "reply_to") == 0;
            int is_sub = strcmp(m, "counter_party_id_substring") == 0;
            args_keys = malloc(cap);
            text = malloc(cap);
            if (is_sub)
                snprintf(args_keys, cap, "\"%s\":\"%s\"", m, v);
            else
                snprintf(args_keys, cap,
                         "\"counter_party_id\":\"%s\","
                         "\"counter_party_address\":\"a\","
                         "\"query_checksum\":\"q\",\"policy_checksum\":\"%s\"",
                         strcmp(m, "counter_party_id") == 0 ? v : "c",
                         strcmp(m, "policy_checksum") == 0 ? v : "p");
            snprintf(text, cap,
                     "{\"id\":\"%s\",\"reply_to\":\"%s\",\"op\":\"%s\","
                     "\"args\":{%s}}",
                     strcmp(m, "id") == 0 ? v : "i",
                     strcmp(m, "reply_to") == 0 ? v : "r",
                     is_sub ? "count" : "get_connection", args_keys);
            struct request req;
            char why[256];
            enum request_error e =
                request_decode(&req, text, strlen(text), why, sizeof(why));
            if (extra == 0) {
                CU_ASSERT_EQUAL(e, REQUEST_OK);
            } else {
                char want[128];
                snprintf(want, sizeof(want), "%s%s: longer than %zu bytes",
                         is_top ? "" : "args.", m, lims[i].max);
                CU_ASSERT_EQUAL(e, REQUEST_ERR_SCHEMA);
                CU_ASSERT_STRING_EQUAL(why, want);
            }
            request_clear(&req);
            free(args_keys);
            free(text);
            free(v);
        }
    }
}

static void test_size(void)
{
    /* exactly 64 KiB of valid request is accepted (padding member) */
    const char *head = "{\"id\":\"big\",\"reply_to\":\"edr:reply:big\","
                       "\"op\":\"ping\",\"pad\":\"";
    size_t total = REQUEST_MAX_BYTES;
    char *text = malloc(total + 2);
    size_t hl = strlen(head);
    memcpy(text, head, hl);
    memset(text + hl, 'p', total - hl - 2);
    memcpy(text + total - 2, "\"}", 2);
    struct request req;
    char why[256];
    CU_ASSERT_EQUAL(request_decode(&req, text, total, why, sizeof(why)),
                    REQUEST_OK);
    request_clear(&req);

    /* one byte more: rejected, but id and reply_to still found so the
     * client hears why */
    free(text);
    total = REQUEST_MAX_BYTES + 1;
    text = malloc(total);
    memcpy(text, head, hl);
    memset(text + hl, 'p', total - hl - 2);
    memcpy(text + total - 2, "\"}", 2);
    CU_ASSERT_EQUAL(request_decode(&req, text, total, why, sizeof(why)),
                    REQUEST_ERR_SIZE);
    CU_ASSERT_STRING_EQUAL(why, "request: larger than 65536 bytes");
    CU_ASSERT_PTR_NOT_NULL(req.reply_to);
    CU_ASSERT_PTR_NOT_NULL(req.id);
    request_clear(&req);
    free(text);

    /* 1 MiB of junk: rejected, nothing salvaged */
    text = repeat('{', 1024 * 1024);
    CU_ASSERT_EQUAL(request_decode(&req, text, 1024 * 1024, why, sizeof(why)),
                    REQUEST_ERR_SIZE);
    CU_ASSERT_PTR_NULL(req.reply_to);
    request_clear(&req);
    free(text);

    /* deep nesting inside the limit is just JSON, not a crash */
    text = repeat('[', 60000);
    CU_ASSERT_EQUAL(request_decode(&req, text, 60000, why, sizeof(why)),
                    REQUEST_ERR_JSON);
    request_clear(&req);
    free(text);
}

static void test_accepts_v2(void)
{
    struct request req;
    char why[256];
    const char *by = "{" HEAD "\"op\":\"get_by_transfer_id\",\"args\":{"
                     "\"transfer_process_id\":\"tp-1\",\"wait_ms\":30000,"
                     "\"min_positions\":{\"7\":12,\"0\":0,\"2147483647\":"
                     "9007199254740993}}}";
    CU_ASSERT_EQUAL_FATAL(
        request_decode(&req, by, strlen(by), why, sizeof(why)), REQUEST_OK);
    CU_ASSERT_EQUAL(req.op, REQUEST_GET_BY_TRANSFER_ID);
    CU_ASSERT_STRING_EQUAL(request_op_name(req.op), "get_by_transfer_id");
    CU_ASSERT_STRING_EQUAL(req.transfer_process_id, "tp-1");
    CU_ASSERT_EQUAL(req.has_wait, 1);
    CU_ASSERT_EQUAL(req.wait_ms, 30000);
    CU_ASSERT_EQUAL(req.has_positions, 1);
    CU_ASSERT_EQUAL_FATAL(req.n_positions, 3);
    /* sorted by partition */
    CU_ASSERT_EQUAL(req.positions[0].partition, 0);
    CU_ASSERT_EQUAL(req.positions[0].offset, 0);
    CU_ASSERT_EQUAL(req.positions[1].partition, 7);
    CU_ASSERT_EQUAL(req.positions[1].offset, 12);
    CU_ASSERT_EQUAL(req.positions[2].partition, 2147483647);
    CU_ASSERT_EQUAL(req.positions[2].offset, 9007199254740993LL);
    request_clear(&req);

    const char *list = "{" HEAD "\"op\":\"list_connections\",\"args\":{"
                       "\"transfer_process_id\":\"tp-2\",\"asset_id\":\"a\","
                       "\"asset_id_prefix\":\"\",\"min_positions\":{},"
                       "\"wait_ms\":0,\"counter_party_id_substring\":\"B\"}}";
    CU_ASSERT_EQUAL_FATAL(
        request_decode(&req, list, strlen(list), why, sizeof(why)), REQUEST_OK);
    CU_ASSERT_STRING_EQUAL(req.transfer_process_id, "tp-2");
    CU_ASSERT_STRING_EQUAL(req.asset_id, "a");
    CU_ASSERT_STRING_EQUAL(req.asset_id_prefix, "");
    CU_ASSERT_STRING_EQUAL(req.substring, "B");
    CU_ASSERT_EQUAL(req.has_positions, 1);
    CU_ASSERT_EQUAL(req.n_positions, 0);
    CU_ASSERT_EQUAL(req.has_wait, 1);
    CU_ASSERT_EQUAL(req.wait_ms, 0);
    request_clear(&req);

    /* null members are absent; ping ignores the v2 args */
    const char *nul = "{" HEAD "\"op\":\"count\",\"args\":{\"asset_id\":null,"
                      "\"wait_ms\":null,\"min_positions\":null}}";
    CU_ASSERT_EQUAL_FATAL(
        request_decode(&req, nul, strlen(nul), why, sizeof(why)), REQUEST_OK);
    CU_ASSERT_PTR_NULL(req.asset_id);
    CU_ASSERT_EQUAL(req.has_wait, 0);
    CU_ASSERT_EQUAL(req.has_positions, 0);
    request_clear(&req);
    const char *ping = "{" HEAD "\"op\":\"ping\",\"args\":{\"wait_ms\":-5,"
                       "\"min_positions\":7}}";
    CU_ASSERT_EQUAL_FATAL(
        request_decode(&req, ping, strlen(ping), why, sizeof(why)), REQUEST_OK);
    CU_ASSERT_EQUAL(req.has_positions, 0);
    request_clear(&req);

    /* more than REQUEST_POSITIONS_MAX partitions */
    char big[40000];
    size_t o = (size_t)snprintf(big, sizeof(big),
                                "{" HEAD "\"op\":\"count\",\"args\":{"
                                "\"min_positions\":{");
    for (int i = 0; i <= REQUEST_POSITIONS_MAX; i++)
        o += (size_t)snprintf(big + o, sizeof(big) - o, "%s\"%d\":1",
                              i ? "," : "", i);
    snprintf(big + o, sizeof(big) - o, "}}}");
    CU_ASSERT_EQUAL(request_decode(&req, big, strlen(big), why, sizeof(why)),
                    REQUEST_ERR_SCHEMA);
    CU_ASSERT_PTR_NOT_NULL(strstr(why, "more than 1024 partitions"));
    request_clear(&req);
}

static void test_accepts(void)
{
    struct request req;
    char why[256];
    const char *get =
        "{\"id\":\"c0ffee-1\",\"reply_to\":\"edr:reply:client-7\","
        "\"op\":\"get_connection\",\"args\":{" KEYS ",\"extra\":[1,{}]},"
        "\"deadline_ms\":1795000000000,\"ext\":{\"op\":\"count\"}}";
    CU_ASSERT_EQUAL_FATAL(
        request_decode(&req, get, strlen(get), why, sizeof(why)), REQUEST_OK);
    CU_ASSERT_EQUAL(req.op, REQUEST_GET_CONNECTION);
    CU_ASSERT_STRING_EQUAL(req.id, "c0ffee-1");
    CU_ASSERT_STRING_EQUAL(req.reply_to, "edr:reply:client-7");
    CU_ASSERT_STRING_EQUAL(req.counter_party_id, "BPNL1");
    CU_ASSERT_STRING_EQUAL(req.counter_party_address, "https://p");
    CU_ASSERT_STRING_EQUAL(req.query_checksum, "q");
    CU_ASSERT_STRING_EQUAL(req.policy_checksum, "p");
    CU_ASSERT_EQUAL(req.has_deadline, 1);
    CU_ASSERT_EQUAL(req.deadline_ms, 1795000000000LL);
    struct edr_key k = request_key(&req);
    CU_ASSERT_STRING_EQUAL(k.policy_checksum, "p");
    request_clear(&req);

    /* args before op; escapes decoded */
    const char *tid = "{\"args\":{" KEYS "},\"op\":\"get_connection_transfer_"
                      "id\",\"id\":\"a\\\"b\",\"reply_to\":\"r\\u00e9\"}";
    CU_ASSERT_EQUAL_FATAL(
        request_decode(&req, tid, strlen(tid), why, sizeof(why)), REQUEST_OK);
    CU_ASSERT_EQUAL(req.op, REQUEST_GET_TRANSFER_ID);
    CU_ASSERT_STRING_EQUAL(req.id, "a\"b");
    CU_ASSERT_STRING_EQUAL(req.reply_to, "r\xc3\xa9");
    CU_ASSERT_EQUAL(req.has_deadline, 0);
    request_clear(&req);

    const char *count = "{" HEAD "\"op\":\"count\"}";
    CU_ASSERT_EQUAL_FATAL(
        request_decode(&req, count, strlen(count), why, sizeof(why)),
        REQUEST_OK);
    CU_ASSERT_EQUAL(req.op, REQUEST_COUNT);
    CU_ASSERT_PTR_NULL(req.substring);
    request_clear(&req);

    const char *count2 = "{" HEAD "\"op\":\"count\",\"args\":{"
                         "\"counter_party_id_substring\":\"BPNL\","
                         "\"limit\":\"ignored for count\"}}";
    CU_ASSERT_EQUAL_FATAL(
        request_decode(&req, count2, strlen(count2), why, sizeof(why)),
        REQUEST_OK);
    CU_ASSERT_STRING_EQUAL(req.substring, "BPNL");
    request_clear(&req);

    const char *list = "{" HEAD "\"op\":\"list_connections\",\"args\":null}";
    CU_ASSERT_EQUAL_FATAL(
        request_decode(&req, list, strlen(list), why, sizeof(why)), REQUEST_OK);
    CU_ASSERT_EQUAL(req.op, REQUEST_LIST);
    CU_ASSERT_EQUAL(req.limit, REQUEST_LIMIT_DEFAULT);
    CU_ASSERT_PTR_NULL(req.cursor);
    request_clear(&req);

    const char *list2 =
        "{" HEAD "\"op\":\"list_connections\",\"args\":{\"limit\":1000,"
        "\"counter_party_id_substring\":\"\",\"cursor\":\"0123456789abcdef"
        "0123456789abcdef0123456789abcdef0123456789abcdef\"},"
        "\"deadline_ms\":1795000000000.7}";
    CU_ASSERT_EQUAL_FATAL(
        request_decode(&req, list2, strlen(list2), why, sizeof(why)),
        REQUEST_OK);
    CU_ASSERT_EQUAL(req.limit, 1000);
    CU_ASSERT_STRING_EQUAL(req.substring, "");
    CU_ASSERT_STRING_EQUAL(req.cursor, "0123456789abcdef0123456789abcdef01234"
                                       "56789abcdef0123456789abcdef");
    CU_ASSERT_EQUAL(req.deadline_ms, 1795000000000LL);
    request_clear(&req);

    const char *list3 = "{" HEAD "\"op\":\"list_connections\",\"args\":{"
                        "\"limit\":1,\"cursor\":null}}";
    CU_ASSERT_EQUAL_FATAL(
        request_decode(&req, list3, strlen(list3), why, sizeof(why)),
        REQUEST_OK);
    CU_ASSERT_EQUAL(req.limit, 1);
    CU_ASSERT_PTR_NULL(req.cursor);
    request_clear(&req);

    const char *ping = "  {\"op\":\"ping\",\"reply_to\":\"r\",\"id\":\"\","
                       "\"deadline_ms\":null}\n";
    CU_ASSERT_EQUAL_FATAL(
        request_decode(&req, ping, strlen(ping), why, sizeof(why)), REQUEST_OK);
    CU_ASSERT_EQUAL(req.op, REQUEST_PING);
    CU_ASSERT_STRING_EQUAL(req.id, "");
    CU_ASSERT_EQUAL(req.has_deadline, 0);
    request_clear(&req);
}

static void test_names(void)
{
    CU_ASSERT_STRING_EQUAL(request_op_name(REQUEST_GET_CONNECTION),
                           "get_connection");
    CU_ASSERT_STRING_EQUAL(request_op_name(REQUEST_GET_TRANSFER_ID),
                           "get_connection_transfer_id");
    CU_ASSERT_STRING_EQUAL(request_op_name(REQUEST_LIST), "list_connections");
    CU_ASSERT_STRING_EQUAL(request_op_name(REQUEST_OP_NONE), "invalid");
    CU_ASSERT_STRING_EQUAL(request_op_name((enum request_op)99), "invalid");
    CU_ASSERT_STRING_EQUAL(request_error_class(REQUEST_ERR_UTF8), "utf8");
    request_clear(NULL);
}

/* ------------------------------------------------------------ replies */

static yajl_val parse_back(const struct reply_buf *b)
{
    char err[256] = "";
    yajl_val v = yajl_tree_parse(b->data, err, sizeof(err));
    if (!v)
        fprintf(stderr, "\n  reply does not parse (%s): %s\n", err, b->data);
    return v;
}

static const char *get_str(yajl_val root, const char *name)
{
    const char *path[] = {name, NULL};
    yajl_val v = yajl_tree_get(root, path, yajl_t_string);
    return v ? YAJL_GET_STRING(v) : NULL;
}

static void test_reply_envelope(void)
{
    struct reply_buf b = {0};
    const char *entry = "{\"transferProcessId\":\"tp-1\",\"n\":[1,2.5,"
                        "{\"x\":null}],\"s\":\"a\\\"b\"}";
    reply_begin(&b, "id-\"1\"\n", "ok");
    CU_ASSERT_TRUE(reply_is_json_object(entry, strlen(entry)));
    reply_raw(&b, entry, strlen(entry));
    CU_ASSERT_EQUAL(reply_end(&b), 0);
    yajl_val v = parse_back(&b);
    CU_ASSERT_PTR_NOT_NULL_FATAL(v);
    CU_ASSERT_STRING_EQUAL(get_str(v, "id"), "id-\"1\"\n");
    CU_ASSERT_STRING_EQUAL(get_str(v, "status"), "ok");
    const char *p_tp[] = {"result", "transferProcessId", NULL};
    yajl_val tp = yajl_tree_get(v, p_tp, yajl_t_string);
    CU_ASSERT_PTR_NOT_NULL(tp);
    if (tp)
        CU_ASSERT_STRING_EQUAL(YAJL_GET_STRING(tp), "tp-1");
    yajl_tree_free(v);

    /* reply_decode hands back the result re-serialised compactly */
    struct reply_msg m;
    char err[256];
    CU_ASSERT_EQUAL_FATAL(reply_decode(&m, b.data, b.len, err, sizeof(err)), 0);
    CU_ASSERT_EQUAL(m.status, REPLY_OK);
    CU_ASSERT_STRING_EQUAL(m.result_json, entry);
    CU_ASSERT_STRING_EQUAL(m.id, "id-\"1\"\n");
    reply_msg_clear(&m);

    /* not_found with a null id */
    reply_begin(&b, NULL, "not_found");
    reply_raw(&b, "{}", 2);
    reply_end(&b);
    CU_ASSERT_STRING_EQUAL(b.data, "{\"id\":null,\"status\":\"not_found\","
                                   "\"result\":{}}");
    CU_ASSERT_EQUAL_FATAL(reply_decode(&m, b.data, b.len, err, sizeof(err)), 0);
    CU_ASSERT_EQUAL(m.status, REPLY_NOT_FOUND);
    CU_ASSERT_STRING_EQUAL(m.result_json, "{}");
    CU_ASSERT_PTR_NULL(m.id);
    reply_msg_clear(&m);

    /* numbers and strings */
    reply_begin(&b, "x", "ok");
    reply_u64(&b, 18446744073709551615ULL);
    reply_end(&b);
    v = parse_back(&b);
    CU_ASSERT_PTR_NOT_NULL(v);
    yajl_tree_free(v);
    reply_begin(&b, "x", "ok");
    reply_i64(&b, -42);
    reply_end(&b);
    CU_ASSERT_STRING_EQUAL(b.data,
                           "{\"id\":\"x\",\"status\":\"ok\",\"result\":-42}");
    reply_buf_free(&b);
}

static void test_reply_error(void)
{
    struct reply_buf b = {0};
    /* every control byte, quotes, backslash, valid multibyte, and bytes
     * that are not UTF-8: the reply must still be valid JSON */
    char reason[300];
    size_t n = 0;
    for (int c = 1; c < 0x20; c++)
        reason[n++] = (char)c;
    static const char tail[] =
        "\"\\/\xc3\xa9\xf0\x9f\x98\x80\xff\xc3(\xed\xa0\x80z";
    memcpy(reason + n, tail, sizeof(tail) - 1);
    n += sizeof(tail) - 1;
    reason[n] = '\0';
    CU_ASSERT_EQUAL(reply_error(&b, "id-9", REPLY_CODE_UNAVAILABLE, reason), 0);
    yajl_val v = parse_back(&b);
    CU_ASSERT_PTR_NOT_NULL_FATAL(v);
    CU_ASSERT_STRING_EQUAL(get_str(v, "status"), "error");
    CU_ASSERT_STRING_EQUAL(get_str(v, "id"), "id-9");
    const char *e = get_str(v, "error");
    CU_ASSERT_PTR_NOT_NULL_FATAL(e);
    CU_ASSERT_EQUAL(e[0], 1);
    CU_ASSERT_PTR_NOT_NULL(strstr(e, "\"\\/\xc3\xa9\xf0\x9f\x98\x80"));
    /* each bad byte became U+FFFD */
    CU_ASSERT_PTR_NOT_NULL(strstr(e, "\xef\xbf\xbd\xef\xbf\xbd("));
    CU_ASSERT_EQUAL(e[strlen(e) - 1], 'z');
    const char *p_res[] = {"result", NULL};
    yajl_val res = yajl_tree_get(v, p_res, yajl_t_any);
    CU_ASSERT_TRUE(res != NULL && YAJL_IS_NULL(res));
    yajl_tree_free(v);

    struct reply_msg m;
    char err[256];
    CU_ASSERT_EQUAL_FATAL(reply_decode(&m, b.data, b.len, err, sizeof(err)), 0);
    CU_ASSERT_EQUAL(m.status, REPLY_ERROR);
    CU_ASSERT_PTR_NOT_NULL(m.error);
    CU_ASSERT_PTR_NOT_NULL_FATAL(m.code);
    CU_ASSERT_STRING_EQUAL(m.code, "unavailable");
    CU_ASSERT_STRING_EQUAL(m.result_json, "null");
    reply_msg_clear(&m);

    /* an error reply for a request whose id could not be read */
    CU_ASSERT_EQUAL(
        reply_error(&b, NULL, REPLY_CODE_BAD_REQUEST, "op: missing"), 0);
    CU_ASSERT_STRING_EQUAL(b.data, "{\"id\":null,\"status\":\"error\","
                                   "\"error\":\"op: missing\","
                                   "\"code\":\"bad_request\","
                                   "\"result\":null}");
    /* no code given: internal; a v1 reply without code decodes with NULL */
    CU_ASSERT_EQUAL(reply_error(&b, "i", NULL, "x"), 0);
    CU_ASSERT_PTR_NOT_NULL(strstr(b.data, "\"code\":\"internal\""));
    static const char v1[] = "{\"id\":\"i\",\"status\":\"error\","
                             "\"error\":\"x\",\"result\":null}";
    CU_ASSERT_EQUAL_FATAL(
        reply_decode(&m, v1, sizeof(v1) - 1, err, sizeof(err)), 0);
    CU_ASSERT_PTR_NULL(m.code);
    reply_msg_clear(&m);
    reply_buf_free(&b);
    reply_buf_free(NULL);
}

/* v2: only <prefix>:reply:* is ever answered. */
static void test_reply_to_prefix(void)
{
    CU_ASSERT_TRUE(request_reply_to_allowed("edr:reply:client-7", "edr"));
    CU_ASSERT_TRUE(request_reply_to_allowed("edr:reply:", "edr"));
    CU_ASSERT_TRUE(request_reply_to_allowed("a:b:reply:x", "a:b"));
    CU_ASSERT_FALSE(request_reply_to_allowed("edr:requests", "edr"));
    CU_ASSERT_FALSE(request_reply_to_allowed("edr:replyx", "edr"));
    CU_ASSERT_FALSE(request_reply_to_allowed("edr:reply", "edr"));
    CU_ASSERT_FALSE(request_reply_to_allowed("edrx:reply:a", "edr"));
    CU_ASSERT_FALSE(request_reply_to_allowed("other:reply:a", "edr"));
    CU_ASSERT_FALSE(request_reply_to_allowed("EDR:reply:a", "edr"));
    CU_ASSERT_FALSE(request_reply_to_allowed("", "edr"));
    CU_ASSERT_FALSE(request_reply_to_allowed(NULL, "edr"));
    CU_ASSERT_FALSE(request_reply_to_allowed("edr:reply:a", NULL));
}

static void test_reply_checks(void)
{
    CU_ASSERT_TRUE(reply_is_json_object("{}", 2));
    CU_ASSERT_TRUE(reply_is_json_object(" {\"a\":[]} ", 10));
    CU_ASSERT_FALSE(reply_is_json_object("[]", 2));
    CU_ASSERT_FALSE(reply_is_json_object("{\"a\":1", 6));
    CU_ASSERT_FALSE(reply_is_json_object("{}{}", 4));
    CU_ASSERT_FALSE(reply_is_json_object("{\"a\":\"\xff\"}", 9));
    CU_ASSERT_FALSE(reply_is_json_object("", 0));

    struct reply_msg m;
    char err[256];
    CU_ASSERT_EQUAL(reply_decode(&m, "nope", 4, err, sizeof(err)), -1);
    CU_ASSERT_EQUAL(
        reply_decode(&m, "{\"status\":\"maybe\"}", 18, err, sizeof(err)), -1);
    CU_ASSERT_EQUAL(reply_decode(&m, "{\"id\":\"x\"}", 10, err, sizeof(err)),
                    -1);
    CU_ASSERT_PTR_NOT_NULL(strstr(err, "status: missing"));
}

static void test_utf8(void)
{
    size_t at = 0;
    CU_ASSERT_TRUE(
        request_utf8_valid("a\xc3\xa9\xe2\x82\xac\xf4\x8f\xbf\xbf", 10, &at));
    CU_ASSERT_FALSE(request_utf8_valid("ab\xf4\x90\x80\x80", 6, &at));
    CU_ASSERT_EQUAL(at, 2);
    CU_ASSERT_FALSE(request_utf8_valid("\xe0\x80\x80", 3, &at)); /* overlong */
    CU_ASSERT_FALSE(request_utf8_valid("\xc3", 1, &at));         /* truncated */
    CU_ASSERT_FALSE(request_utf8_valid("\x80", 1, &at));
}

/* Random damage to valid requests (flips, cuts, inserted and deleted
 * bytes): the decoder never crashes or leaks (run under ASan/valgrind),
 * and its result always keeps the contract of request.h: accepted means
 * a known op with id and reply_to; rejected means nothing but maybe id
 * and reply_to, with a reason. */
static void test_mutations(void)
{
    static const char *const seeds[] = {
        "{\"id\":\"c0ffee-1\",\"reply_to\":\"edr:reply:client-7\",\"op\":"
        "\"get_connection\",\"args\":{" KEYS "},\"deadline_ms\":1795000000000}",
        "{" HEAD "\"op\":\"list_connections\",\"args\":{\"limit\":10,"
        "\"counter_party_id_substring\":\"BP\\u00e9\",\"cursor\":\"0123456789"
        "abcdef0123456789abcdef0123456789abcdef0123456789abcdef\"}}",
        "{" HEAD "\"op\":\"count\",\"args\":{\"counter_party_id_substring\":"
        "null},\"x\":[1,{\"y\":[true,false,null,-1.5e3]}]}",
        "{" HEAD "\"op\":\"ping\"}",
    };
    static const char alphabet[] = "{}[]\":,\\0123456789.eE+-tfnu \x00\x7f"
                                   "\xc3\xa9\xff";
    unsigned seed = 20261127;
    char buf[1024];
    int accepted = 0, rejected = 0;
    for (int iter = 0; iter < 100000; iter++) {
        const char *src = seeds[iter % 4];
        size_t len = strlen(src);
        memcpy(buf, src, len);
        int edits = 1 + (int)(rand_r(&seed) % 4);
        for (int e = 0; e < edits && len > 0; e++) {
            size_t at = (size_t)rand_r(&seed) % len;
            switch (rand_r(&seed) % 4) {
            case 0: /* replace */
                buf[at] =
                    alphabet[(size_t)rand_r(&seed) % (sizeof(alphabet) - 1)];
                break;
            case 1: /* cut */
                len = at;
                break;
            case 2: /* delete */
                memmove(buf + at, buf + at + 1, len - at - 1);
                len--;
                break;
            default: /* insert */
                if (len + 1 < sizeof(buf)) {
                    memmove(buf + at + 1, buf + at, len - at);
                    buf[at] = alphabet[(size_t)rand_r(&seed) %
                                       (sizeof(alphabet) - 1)];
                    len++;
                }
                break;
            }
        }
        struct request req;
        char why[256];
        enum request_error e = request_decode(&req, buf, len, why, sizeof(why));
        if (e == REQUEST_OK) {
            accepted++;
            CU_ASSERT_TRUE(req.op != REQUEST_OP_NONE && req.id && req.reply_to);
            if (req.op == REQUEST_GET_CONNECTION)
                CU_ASSERT_TRUE(req.counter_party_id && req.policy_checksum);
            if (req.op == REQUEST_LIST)
                CU_ASSERT_TRUE(req.limit >= 1 && req.limit <= 1000);
        } else {
            rejected++;
            CU_ASSERT_TRUE(req.op == REQUEST_OP_NONE && why[0] &&
                           !req.counter_party_id && !req.substring &&
                           !req.cursor);
        }
        request_clear(&req);
    }
    /* the mutations reach both outcomes */
    CU_ASSERT_TRUE(accepted > 1000);
    CU_ASSERT_TRUE(rejected > 1000);
}

static void register_suites(void)
{
    CU_pSuite s = CU_add_suite("request", NULL, NULL);
    CU_add_test(s, "rejects (table)", test_rejects);
    CU_add_test(s, "length limits", test_limits);
    CU_add_test(s, "size limit", test_size);
    CU_add_test(s, "accepts", test_accepts);
    CU_add_test(s, "accepts v2 args", test_accepts_v2);
    CU_add_test(s, "names", test_names);
    CU_add_test(s, "utf8", test_utf8);
    CU_add_test(s, "random mutations", test_mutations);
    CU_pSuite r = CU_add_suite("reply", NULL, NULL);
    CU_add_test(r, "envelope", test_reply_envelope);
    CU_add_test(r, "error form", test_reply_error);
    CU_add_test(r, "reply_to prefix rule", test_reply_to_prefix);
    CU_add_test(r, "checks and decode", test_reply_checks);
}

int main(void)
{
    static const cunit_register_fn regs[] = {register_suites, NULL};
    return cunit_main(regs);
}

/* test_scan.c: the byte-level helpers under the decoders: base/hex.h,
 * schemas/utf8.h and json_is_object (schemas/json_scan.h). */
#include "base/hex.h"
#include "schemas/json_scan.h"
#include "schemas/utf8.h"
#include "tests/support/cunit_main.h"

#include <string.h>

static void test_hex(void)
{
    uint64_t v = 7;
    char out[9];

    CU_ASSERT_EQUAL(edr_hex_digit('0', EDR_HEX_LOWER_ONLY), 0);
    CU_ASSERT_EQUAL(edr_hex_digit('f', EDR_HEX_LOWER_ONLY), 15);
    CU_ASSERT_EQUAL(edr_hex_digit('F', EDR_HEX_LOWER_ONLY), -1);
    CU_ASSERT_EQUAL(edr_hex_digit('F', EDR_HEX_ANY_CASE), 15);
    CU_ASSERT_EQUAL(edr_hex_digit('g', EDR_HEX_ANY_CASE), -1);
    CU_ASSERT_EQUAL(edr_hex_digit('/', EDR_HEX_ANY_CASE), -1);
    CU_ASSERT_EQUAL(edr_hex_parse("00E9", 4, EDR_HEX_ANY_CASE, &v), 0);
    CU_ASSERT_EQUAL(v, 0xE9);
    CU_ASSERT_EQUAL(edr_hex_parse("00E9", 4, EDR_HEX_LOWER_ONLY, &v), -1);
    CU_ASSERT_EQUAL(v, 0xE9); /* untouched on error */
    CU_ASSERT_EQUAL(edr_hex_parse("deadbeefx", 8, EDR_HEX_LOWER_ONLY, &v), 0);
    CU_ASSERT_EQUAL(v, 0xdeadbeef);
    CU_ASSERT_EQUAL(
        edr_hex_parse("00000000000000000", 17, EDR_HEX_ANY_CASE, &v), -1);
    edr_hex_encode(out, "\x01\xab\xff\x00", 4);
    CU_ASSERT_STRING_EQUAL(out, "01abff00");
    CU_ASSERT_EQUAL(edr_hex_char(0x1c), 'c');
}

static void test_utf8(void)
{
    size_t at = 99;
    CU_ASSERT_TRUE(utf8_valid("", 0, &at));
    CU_ASSERT_TRUE(
        utf8_valid("a\xc3\xa9\xe2\x82\xac\xf4\x8f\xbf\xbf", 10, &at));
    CU_ASSERT_FALSE(utf8_valid("ab\xf4\x90\x80\x80", 6, &at));
    CU_ASSERT_EQUAL(at, 2);
    CU_ASSERT_FALSE(utf8_valid("0123456789\xe0\x80\x80", 13, &at));
    CU_ASSERT_EQUAL(at, 10); /* after the 8-byte fast path */
    CU_ASSERT_FALSE(utf8_valid("\xed\xa0\x80", 3, NULL)); /* surrogate */
    CU_ASSERT_FALSE(utf8_valid("\xc3", 1, &at));
    CU_ASSERT_FALSE(utf8_valid("\xc0\xaf", 2, &at));
    CU_ASSERT_EQUAL(utf8_char_len((const unsigned char *)"\xf0\x9f\x98\x80", 4),
                    4);
    CU_ASSERT_EQUAL(utf8_char_len((const unsigned char *)"\xf0\x9f\x98\x80", 3),
                    0);
}

static void test_json_is_object(void)
{
    static const char *yes[] = {
        "{}",
        " {\"a\":[]} ",
        "\n{\"a\":{\"b\":[1,-0.5e+3,true,false,null,\"\\u00e9\\n\"]}}\t",
        "{\"\xc3\xa9\":\"\xf0\x9f\x98\x80\",\"k\":[[],[{}]]}",
    };
    static const char *no[] = {
        "",
        "[]",
        "{\"a\":1",
        "{}{}",
        "{\"a\":\"\xff\"}",
        "{\"a\"}",
        "{\"a\":1,}",
        "{,}",
        "{\"a\":01}",
        "{\"a\":1.}",
        "{a:1}",
        "{\"a\":tru}",
        "{\"a\":\"\\x\"}",
        "{\"a\":\"\\u12\"}",
        "{\"a\":[1,]}",
        "{\"a\":\"x\ty\"}",
        "{/*c*/}",
        "{\"a\":-}",
        "{\"a\":1 2}",
        "{\"a\":[1}",
    };
    for (size_t i = 0; i < sizeof(yes) / sizeof(yes[0]); i++)
        CU_ASSERT_TRUE(json_is_object(yes[i], strlen(yes[i])));
    for (size_t i = 0; i < sizeof(no) / sizeof(no[0]); i++) {
        if (json_is_object(no[i], strlen(no[i])))
            CU_FAIL(no[i]);
    }
    /* Not NUL-terminated: only n bytes count. */
    CU_ASSERT_TRUE(json_is_object("{}garbage", 2));
    CU_ASSERT_FALSE(json_is_object("{\"a\":1}", 6));

    /* The depth limit. */
    static char deep[2 * JSON_SCAN_MAX_DEPTH + 16];
    for (int extra = 0; extra < 2; extra++) {
        size_t d = JSON_SCAN_MAX_DEPTH - 1 + (size_t)extra, n = 0;
        deep[n++] = '{';
        memcpy(deep + n, "\"a\":", 4);
        n += 4;
        for (size_t i = 0; i < d; i++)
            deep[n++] = '[';
        for (size_t i = 0; i < d; i++)
            deep[n++] = ']';
        deep[n++] = '}';
        CU_ASSERT_EQUAL(json_is_object(deep, n), !extra);
    }
}

static void register_tests(void)
{
    CU_pSuite s = CU_add_suite("scan", NULL, NULL);
    CU_add_test(s, "base/hex", test_hex);
    CU_add_test(s, "utf8_valid, utf8_char_len", test_utf8);
    CU_add_test(s, "json_is_object", test_json_is_object);
}

int main(void)
{
    static const cunit_register_fn regs[] = {register_tests, NULL};
    return cunit_main(regs);
}

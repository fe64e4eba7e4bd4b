/* test_ct_equal.c: edr_ct_equal (base/ct_equal.h), the constant-time
 * compare of the EDC callback auth header: equal only when both bytes and
 * length agree, whatever the position of a difference; and every byte of
 * the presented value is read (a value that differs only in its last
 * byte, or is a prefix or an extension of the secret, is refused). */
#include "base/ct_equal.h"
#include "tests/support/cunit_main.h"

#include <string.h>

static int eq(const char *secret, const char *given)
{
    return edr_ct_equal(secret, strlen(secret), given,
                        given ? strlen(given) : 0);
}

static void test_equal(void)
{
    CU_ASSERT_EQUAL(eq("s3cret", "s3cret"), 1);
    CU_ASSERT_EQUAL(eq("a", "a"), 1);
    CU_ASSERT_EQUAL(eq("", ""), 1);
    /* bytes above 0x7f and NUL inside compare as bytes */
    CU_ASSERT_EQUAL(edr_ct_equal("a\0b\xff", 4, "a\0b\xff", 4), 1);
}

static void test_differences(void)
{
    static const char secret[] = "correct-horse-battery-staple";
    char v[sizeof(secret)];
    /* one flipped bit at every position */
    for (size_t i = 0; i + 1 < sizeof(secret); i++) {
        memcpy(v, secret, sizeof(secret));
        v[i] ^= 1;
        CU_ASSERT_EQUAL(eq(secret, v), 0);
    }
    CU_ASSERT_EQUAL(edr_ct_equal("a\0b", 3, "a\0c", 3), 0);
}

static void test_lengths(void)
{
    CU_ASSERT_EQUAL(eq("s3cret", "s3cre"), 0);   /* a prefix */
    CU_ASSERT_EQUAL(eq("s3cret", "s3crets"), 0); /* an extension */
    /* the secret repeated: the compare cycles through the secret, the
     * length still decides */
    CU_ASSERT_EQUAL(eq("ab", "abab"), 0);
    CU_ASSERT_EQUAL(eq("s3cret", ""), 0);
    CU_ASSERT_EQUAL(eq("", "x"), 0);
    CU_ASSERT_EQUAL(edr_ct_equal("s3cret", 6, NULL, 0), 0);
    CU_ASSERT_EQUAL(edr_ct_equal("", 0, NULL, 0), 1);
    /* lengths that differ only above the low byte (no truncation), the
     * bytes all matching the cycled secret */
    char many[257];
    memset(many, 'x', sizeof(many));
    CU_ASSERT_EQUAL(edr_ct_equal("x", 1, many, sizeof(many)), 0);
    CU_ASSERT_EQUAL(edr_ct_equal(many, 1, many, 1), 1);
}

static void register_suites(void)
{
    CU_pSuite s = CU_add_suite("edr_ct_equal", NULL, NULL);
    CU_add_test(s, "equal values", test_equal);
    CU_add_test(s, "a difference anywhere", test_differences);
    CU_add_test(s, "lengths", test_lengths);
}

int main(void)
{
    static const cunit_register_fn regs[] = {register_suites, NULL};
    return cunit_main(regs);
}

/* test_sha256.c: schemas/sha256.c against the FIPS 180-4 / NIST examples,
 * and the SHA-extension path against the portable one on every length
 * from 0 to 300 bytes, fed whole and in uneven pieces. */
#include "schemas/sha256.h"
#include "tests/support/cunit_main.h"

#include <stdio.h>
#include <string.h>

static void hex(const unsigned char d[32], char out[65])
{
    for (int i = 0; i < 32; i++)
        snprintf(out + 2 * i, 3, "%02x", d[i]);
}

static void digest(const void *p, size_t n, size_t piece, char out[65])
{
    struct sha256 s;
    unsigned char d[32];
    const unsigned char *b = p;
    sha256_init(&s);
    while (n > 0) {
        size_t k = piece && piece < n ? piece : n;
        sha256_update(&s, b, k);
        b += k;
        n -= k;
    }
    sha256_final(&s, d);
    hex(d, out);
}

static const struct {
    const char *msg;
    const char *want;
} vectors[] = {
    {"", "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"},
    {"abc", "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"},
    {"abcdbcdecdefdefgefghfghighijhijkijkljklmklmnlmnomnopnopq",
     "248d6a61d20638b8e5c026930c3e6039a33ce45964ff2167f6ecedd419db06c1"},
    {"abcdefghbcdefghicdefghijdefghijkefghijklfghijklmghijklmnhijklmnoijklmnop"
     "jklmnopqklmnopqrlmnopqrsmnopqrstnopqrstu",
     "cf5b16a778af8380036ce59e7b0492370b249b11e8f07a51afac45037afee9d1"},
};

static void check_vectors(void)
{
    char out[65];
    for (size_t i = 0; i < sizeof(vectors) / sizeof(vectors[0]); i++) {
        for (size_t piece = 0; piece < 8; piece += 3) {
            digest(vectors[i].msg, strlen(vectors[i].msg), piece, out);
            CU_ASSERT_STRING_EQUAL(out, vectors[i].want);
        }
    }
    /* one million 'a' (FIPS 180-4 example), in 1000-byte pieces */
    static char a[1000];
    memset(a, 'a', sizeof(a));
    struct sha256 s;
    unsigned char d[32];
    sha256_init(&s);
    for (int i = 0; i < 1000; i++)
        sha256_update(&s, a, sizeof(a));
    sha256_final(&s, d);
    hex(d, out);
    CU_ASSERT_STRING_EQUAL(
        out,
        "cdc76e5c9914fb9281a1c7e284d73e67f1809a48a497200e046d39ccc7112cd0");
}

static void test_portable(void)
{
    CU_ASSERT_EQUAL_FATAL(sha256_impl_force(0), 0);
    check_vectors();
}

static void test_hw(void)
{
    if (sha256_impl_force(1) != 0) {
        printf("(no SHA extensions on this CPU: skipped) ");
        return;
    }
    check_vectors();
    unsigned char buf[300];
    for (size_t i = 0; i < sizeof(buf); i++)
        buf[i] = (unsigned char)(i * 131 + 7);
    for (size_t n = 0; n <= sizeof(buf); n++) {
        for (size_t piece = 0; piece < 70; piece += 23) {
            char hw[65], sw[65];
            sha256_impl_force(1);
            digest(buf, n, piece, hw);
            sha256_impl_force(0);
            digest(buf, n, piece, sw);
            CU_ASSERT_STRING_EQUAL(hw, sw);
        }
    }
}

static void register_suites(void)
{
    CU_pSuite s = CU_add_suite("sha256", NULL, NULL);
    CU_add_test(s, "portable: NIST vectors", test_portable);
    CU_add_test(s, "SHA extensions: NIST vectors, equal to portable", test_hw);
}

int main(void)
{
    static const cunit_register_fn regs[] = {register_suites, NULL};
    return cunit_main(regs);
}

/* ct_equal.c: see ct_equal.h. The differences are OR-ed into one
 * accumulator read through volatile pointers, so the compiler can neither
 * stop at the first difference nor skip bytes. */
#include "base/ct_equal.h"

int edr_ct_equal(const void *secret, size_t secret_len, const void *given,
                 size_t given_len)
{
    const volatile unsigned char *s = secret;
    const volatile unsigned char *g = given;
    volatile unsigned char acc = 0;
    size_t j = 0;

    for (size_t i = 0; i < given_len; i++) {
        unsigned char sb = secret_len ? s[j] : 0;
        acc |= (unsigned char)(g[i] ^ sb);
        /* wraps without a data-dependent branch on the secret's bytes */
        j++;
        j &= (size_t)0 - (size_t)(j < secret_len);
    }
    /* a length difference makes the result 0 without a branch */
    size_t diff = (secret_len ^ given_len) | (size_t)acc;
    return diff == 0;
}

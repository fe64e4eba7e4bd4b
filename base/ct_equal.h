/* ct_equal.h: comparing a secret with a presented value in constant time.
 *
 * The EDC callback route (worker/edc_callback.c) checks its auth header
 * with it, so the time of a wrong guess says nothing about how many of its
 * bytes were right, nor about the secret's length. Pure function, any
 * thread. */
#ifndef EDR_BASE_CT_EQUAL_H
#define EDR_BASE_CT_EQUAL_H

#include <stddef.h>

/* 1 when given[0..given_len) equals secret[0..secret_len), else 0.
 * Every byte of given is compared (no early exit), each against a byte of
 * the secret (cycling through it), so the time depends on given_len only:
 * never on where the first difference is or on the secret's length.
 * given may be NULL when given_len is 0; an empty secret equals only an
 * empty value. */
int edr_ct_equal(const void *secret, size_t secret_len, const void *given,
                 size_t given_len);

#endif

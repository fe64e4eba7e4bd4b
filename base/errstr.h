/* errstr.h: filling a caller's error buffer (char *errstr, size_t n), the
 * convention of librdkafka's constructors that every layer follows.
 *
 * One copy of the helper that worker/topic_admin.c, worker/changelog*.c and
 * tests/support/kafka_util.c each wrote for themselves. Thread-safe. */
#ifndef EDR_BASE_ERRSTR_H
#define EDR_BASE_ERRSTR_H

#include <stddef.h>

/* printf into errstr (n bytes, always NUL-terminated, truncated when
 * longer). Does nothing when errstr is NULL or n is 0. */
void edr_errf(char *errstr, size_t n, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

#endif

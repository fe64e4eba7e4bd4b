/* failmalloc.c: see failmalloc.h. The __real_ symbols exist only in
 * programs linked with --wrap; this file is compiled into its own small
 * library that only those programs link, so others do not need them. */
#include "tests/support/failmalloc.h"

#include <errno.h>
#include <stdatomic.h>
#include <string.h>

void *__real_malloc(size_t n);
void *__real_calloc(size_t n, size_t m);
void *__real_realloc(void *p, size_t n);
void *__wrap_malloc(size_t n);
void *__wrap_calloc(size_t n, size_t m);
void *__wrap_realloc(void *p, size_t n);
char *__wrap_strdup(const char *s);
char *__wrap_strndup(const char *s, size_t n);

static atomic_ulong fail_at; /* 0: disarmed */
static atomic_int persistent;
static atomic_ulong made;
static atomic_ulong fired;

static void arm(unsigned long n, int keep)
{
    atomic_store(&fail_at, 0);
    atomic_store(&made, 0);
    atomic_store(&fired, 0);
    atomic_store(&persistent, keep);
    atomic_store(&fail_at, n);
}

void failmalloc_arm(unsigned long n)
{
    arm(n, 0);
}
void failmalloc_arm_persistent(unsigned long n)
{
    arm(n, 1);
}
void failmalloc_disarm(void)
{
    atomic_store(&fail_at, 0);
}
unsigned long failmalloc_fired(void)
{
    return atomic_load(&fired);
}
unsigned long failmalloc_count(void)
{
    return atomic_load(&made);
}

/* 1 when this allocation is to fail. */
static int should_fail(void)
{
    unsigned long at = atomic_load(&fail_at);
    if (at == 0)
        return 0;
    unsigned long k = atomic_fetch_add(&made, 1) + 1;
    if (k == at || (k > at && atomic_load(&persistent))) {
        atomic_fetch_add(&fired, 1);
        errno = ENOMEM;
        return 1;
    }
    return 0;
}

void *__wrap_malloc(size_t n)
{
    return should_fail() ? NULL : __real_malloc(n);
}

void *__wrap_calloc(size_t n, size_t m)
{
    return should_fail() ? NULL : __real_calloc(n, m);
}

void *__wrap_realloc(void *p, size_t n)
{
    return should_fail() ? NULL : __real_realloc(p, n);
}

char *__wrap_strdup(const char *s)
{
    size_t n = strlen(s) + 1;
    char *d = __wrap_malloc(n);
    if (d)
        memcpy(d, s, n);
    return d;
}

char *__wrap_strndup(const char *s, size_t n)
{
    size_t len = strnlen(s, n);
    char *d = __wrap_malloc(len + 1);
    if (d) {
        memcpy(d, s, len);
        d[len] = '\0';
    }
    return d;
}

/* tsan_thrd.c: C11 thrd_create through pthread_create, for the
 * ThreadSanitizer build only (EDR_TSAN, CMakeLists.txt).
 *
 * librdkafka starts its threads with glibc's thrd_create, which neither
 * GCC 12's nor clang 14's TSan runtime intercepts: such a thread is
 * unknown to TSan and its first malloc crashes (SEGV in the allocator
 * cache). Defined in every program of that build, this thrd_create wins
 * the symbol lookup and goes through the pthread_create TSan does see.
 * glibc's own thrd_join/thrd_exit work on the thread it makes: a C11
 * thread is a pthread there. */
#include <errno.h>
#include <pthread.h>
#include <stdint.h>
#include <stdlib.h>
#include <threads.h>

struct tsan_thrd_start {
    thrd_start_t func;
    void *arg;
};

static void *tsan_thrd_run(void *p)
{
    struct tsan_thrd_start s = *(struct tsan_thrd_start *)p;
    free(p);
    return (void *)(intptr_t)s.func(s.arg);
}

int thrd_create(thrd_t *thr, thrd_start_t func, void *arg)
{
    struct tsan_thrd_start *s = malloc(sizeof(*s));
    if (!s)
        return thrd_nomem;
    s->func = func;
    s->arg = arg;
    int rc = pthread_create(thr, NULL, tsan_thrd_run, s);
    if (rc == 0)
        return thrd_success;
    free(s);
    return rc == EAGAIN || rc == ENOMEM ? thrd_nomem : thrd_error;
}

/* tsan_thrd.c: C11 threads, mutexes and condition variables through
 * pthreads, for the ThreadSanitizer build only (EDR_TSAN, CMakeLists.txt).
 *
 * librdkafka starts its threads with glibc's thrd_create, which neither
 * GCC 12's nor clang 14's TSan runtime intercepts: such a thread is
 * unknown to TSan and its first malloc crashes (SEGV in the allocator
 * cache). Defined in every program of that build, this thrd_create wins
 * the symbol lookup and goes through the pthread_create TSan does see;
 * thrd_join and thrd_detach likewise, or TSan reports every joined thread
 * as leaked, and mtx_ and cnd_, or librdkafka's own locking is invisible
 * and every hand-over between its threads is reported as a race. (In glibc
 * a C11 thread is a pthread, mtx_t a pthread_mutex_t, cnd_t a
 * pthread_cond_t, of the same size.) */
#include <errno.h>
#include <pthread.h>
#include <stdint.h>
#include <stdlib.h>
#include <threads.h>

/* The C11 status of a pthread return code. */
static int c11(int rc)
{
    return rc == 0 ? thrd_success : thrd_error;
}

#define PMTX(m) ((pthread_mutex_t *)(m))
#define PCND(c) ((pthread_cond_t *)(c))

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

int thrd_join(thrd_t thr, int *res)
{
    void *r;
    if (pthread_join(thr, &r) != 0)
        return thrd_error;
    if (res)
        *res = (int)(intptr_t)r;
    return thrd_success;
}

int thrd_detach(thrd_t thr)
{
    return c11(pthread_detach(thr));
}

int mtx_init(mtx_t *m, int type)
{
    pthread_mutexattr_t a;
    int rc = pthread_mutexattr_init(&a);
    if (rc == 0 && (type & mtx_recursive))
        rc = pthread_mutexattr_settype(&a, PTHREAD_MUTEX_RECURSIVE);
    if (rc == 0)
        rc = pthread_mutex_init(PMTX(m), &a);
    pthread_mutexattr_destroy(&a);
    return c11(rc);
}

void mtx_destroy(mtx_t *m)
{
    pthread_mutex_destroy(PMTX(m));
}

int mtx_lock(mtx_t *m)
{
    return c11(pthread_mutex_lock(PMTX(m)));
}

int mtx_unlock(mtx_t *m)
{
    return c11(pthread_mutex_unlock(PMTX(m)));
}

int mtx_trylock(mtx_t *m)
{
    int rc = pthread_mutex_trylock(PMTX(m));
    return rc == EBUSY ? thrd_busy : c11(rc);
}

int cnd_init(cnd_t *c)
{
    return c11(pthread_cond_init(PCND(c), NULL));
}

void cnd_destroy(cnd_t *c)
{
    pthread_cond_destroy(PCND(c));
}

int cnd_signal(cnd_t *c)
{
    return c11(pthread_cond_signal(PCND(c)));
}

int cnd_broadcast(cnd_t *c)
{
    return c11(pthread_cond_broadcast(PCND(c)));
}

int cnd_wait(cnd_t *c, mtx_t *m)
{
    return c11(pthread_cond_wait(PCND(c), PMTX(m)));
}

int cnd_timedwait(cnd_t *restrict c, mtx_t *restrict m,
                  const struct timespec *restrict ts)
{
    int rc = pthread_cond_timedwait(PCND(c), PMTX(m), ts);
    return rc == ETIMEDOUT ? thrd_timedout : c11(rc);
}

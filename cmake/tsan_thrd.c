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
    return pthread_detach(thr) == 0 ? thrd_success : thrd_error;
}

int mtx_init(mtx_t *m, int type)
{
    pthread_mutexattr_t a;
    int rc = pthread_mutexattr_init(&a);
    if (rc == 0 && (type & mtx_recursive))
        rc = pthread_mutexattr_settype(&a, PTHREAD_MUTEX_RECURSIVE);
    if (rc == 0)
        rc = pthread_mutex_init((pthread_mutex_t *)m, &a);
    pthread_mutexattr_destroy(&a);
    return rc == 0 ? thrd_success : thrd_error;
}

void mtx_destroy(mtx_t *m)
{
    pthread_mutex_destroy((pthread_mutex_t *)m);
}

int mtx_lock(mtx_t *m)
{
    return pthread_mutex_lock((pthread_mutex_t *)m) == 0 ? thrd_success
                                                         : thrd_error;
}

int mtx_trylock(mtx_t *m)
{
    int rc = pthread_mutex_trylock((pthread_mutex_t *)m);
    return rc == 0 ? thrd_success : rc == EBUSY ? thrd_busy : thrd_error;
}

int mtx_unlock(mtx_t *m)
{
    return pthread_mutex_unlock((pthread_mutex_t *)m) == 0 ? thrd_success
                                                           : thrd_error;
}

int cnd_init(cnd_t *c)
{
    return pthread_cond_init((pthread_cond_t *)c, NULL) == 0 ? thrd_success
                                                             : thrd_error;
}

void cnd_destroy(cnd_t *c)
{
    pthread_cond_destroy((pthread_cond_t *)c);
}

int cnd_signal(cnd_t *c)
{
    return pthread_cond_signal((pthread_cond_t *)c) == 0 ? thrd_success
                                                         : thrd_error;
}

int cnd_broadcast(cnd_t *c)
{
    return pthread_cond_broadcast((pthread_cond_t *)c) == 0 ? thrd_success
                                                            : thrd_error;
}

int cnd_wait(cnd_t *c, mtx_t *m)
{
    return pthread_cond_wait((pthread_cond_t *)c, (pthread_mutex_t *)m) == 0
               ? thrd_success
               : thrd_error;
}

int cnd_timedwait(cnd_t *restrict c, mtx_t *restrict m,
                  const struct timespec *restrict ts)
{
    int rc =
        pthread_cond_timedwait((pthread_cond_t *)c, (pthread_mutex_t *)m, ts);
    return rc == 0           ? thrd_success
           : rc == ETIMEDOUT ? thrd_timedout
                             : thrd_error;
}

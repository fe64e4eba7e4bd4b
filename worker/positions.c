/* positions.c: see positions.h. A small array under one mutex: a worker
 * reads at most a few hundred partitions, and a batch updates each of
 * them once, so a linear scan beats a hash table here. */
#include "worker/positions.h"

#include "base/clock.h"

#include <errno.h>
#include <pthread.h>
#include <stdlib.h>
#include <time.h>

struct position {
    int32_t partition;
    int64_t next_offset;
};

static pthread_mutex_t lock = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t changed;
static pthread_once_t cond_once = PTHREAD_ONCE_INIT;
static struct position *table;
static size_t n_table, cap_table;
static uint64_t generation;

/* The condition variable waits on CLOCK_MONOTONIC, as edr_clock_ms
 * counts, so a wall-clock step never shortens or stretches a wait. */
static void cond_init(void)
{
    pthread_condattr_t a;
    pthread_condattr_init(&a);
    pthread_condattr_setclock(&a, CLOCK_MONOTONIC);
    pthread_cond_init(&changed, &a);
    pthread_condattr_destroy(&a);
}

static struct position *find(int32_t partition)
{
    for (size_t i = 0; i < n_table; i++)
        if (table[i].partition == partition)
            return &table[i];
    return NULL;
}

void positions_applied(const struct store_offset *offs, size_t n)
{
    pthread_once(&cond_once, cond_init);
    pthread_mutex_lock(&lock);
    for (size_t i = 0; i < n; i++) {
        struct position *p = find(offs[i].partition);
        if (!p) {
            if (n_table == cap_table) {
                size_t cap = cap_table ? cap_table * 2 : 16;
                struct position *t = realloc(table, cap * sizeof(*t));
                if (!t)
                    continue;
                table = t;
                cap_table = cap;
            }
            p = &table[n_table++];
            p->partition = offs[i].partition;
            p->next_offset = -1;
        }
        if (offs[i].next_offset > p->next_offset)
            p->next_offset = offs[i].next_offset;
    }
    generation++;
    pthread_cond_broadcast(&changed);
    pthread_mutex_unlock(&lock);
}

uint64_t positions_generation(void)
{
    pthread_mutex_lock(&lock);
    uint64_t g = generation;
    pthread_mutex_unlock(&lock);
    return g;
}

int positions_wait_change(uint64_t gen, int64_t until_ms)
{
    pthread_once(&cond_once, cond_init);
    pthread_mutex_lock(&lock);
    while (generation == gen) {
        int64_t left = until_ms - edr_clock_ms();
        if (left <= 0)
            break;
        struct timespec ts;
        clock_gettime(CLOCK_MONOTONIC, &ts);
        ts.tv_sec += left / 1000;
        ts.tv_nsec += (long)(left % 1000) * 1000000L;
        if (ts.tv_nsec >= 1000000000L) {
            ts.tv_sec++;
            ts.tv_nsec -= 1000000000L;
        }
        if (pthread_cond_timedwait(&changed, &lock, &ts) == ETIMEDOUT &&
            generation == gen)
            break;
    }
    int moved = generation != gen;
    pthread_mutex_unlock(&lock);
    return moved;
}

int64_t positions_next(int32_t partition)
{
    pthread_mutex_lock(&lock);
    const struct position *p = find(partition);
    int64_t v = p ? p->next_offset : -1;
    pthread_mutex_unlock(&lock);
    return v;
}

void positions_wake_all(void)
{
    pthread_once(&cond_once, cond_init);
    pthread_mutex_lock(&lock);
    generation++;
    pthread_cond_broadcast(&changed);
    pthread_mutex_unlock(&lock);
}

void positions_reset(void)
{
    pthread_mutex_lock(&lock);
    free(table);
    table = NULL;
    n_table = cap_table = 0;
    generation++;
    pthread_mutex_unlock(&lock);
}

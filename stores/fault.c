/* fault.c: see fault.h. Compiled empty into the release build. */
#include "stores/fault.h"

#ifdef EDR_TEST_HOOKS

#include <stdatomic.h>

struct fault_state {
    atomic_uint countdown; /* 0: disarmed; 1: the next call fails */
    atomic_int repeat;
    atomic_int tripped;
};

static struct fault_state faults[FAULT_POINTS];

void fault_arm(enum fault_point p, unsigned nth, int repeat)
{
    atomic_store(&faults[p].tripped, 0);
    atomic_store(&faults[p].repeat, repeat);
    atomic_store(&faults[p].countdown, nth);
}

void fault_disarm_all(void)
{
    for (int i = 0; i < FAULT_POINTS; i++)
        fault_arm((enum fault_point)i, 0, 0);
}

int fault_hit(enum fault_point p)
{
    struct fault_state *f = &faults[p];
    if (atomic_load_explicit(&f->tripped, memory_order_relaxed))
        return 1;
    unsigned n = atomic_load_explicit(&f->countdown, memory_order_relaxed);
    do {
        if (n == 0)
            return 0;
    } while (!atomic_compare_exchange_weak(&f->countdown, &n, n - 1));
    if (n != 1)
        return 0;
    if (atomic_load(&f->repeat))
        atomic_store(&f->tripped, 1);
    return 1;
}

#else

/* ISO C wants a translation unit to declare something. */
typedef int fault_release_build;

#endif

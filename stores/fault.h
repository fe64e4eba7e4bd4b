/* fault.h: fault injection for the stores' error paths, as SQLite's
 * test_vfs does: a test arms a point to fail at its Nth call and checks the
 * store is exactly before or exactly after the operation.
 *
 * Stores call fault_hit() just before each real write, fsync, rename or
 * query (and the changelog writer before each transaction); disarmed it costs
 * one relaxed atomic load. The worker can arm it from the environment
 * (worker/fault_env.h) for the fault-tolerance suite.
 *
 * A test hook, as SQLite's SQLITE_TEST: only the test build (compile
 * definition EDR_TEST_HOOKS, the *_testhooks libraries, edr-worker-test)
 * has it. In the release build fault_hit() is a constant 0 the compiler
 * removes, and fault_arm() does not exist. */
#ifndef EDR_STORES_FAULT_H
#define EDR_STORES_FAULT_H

enum fault_point {
    FAULT_WRITE,  /* file: write(2) */
    FAULT_FSYNC,  /* file: fsync(2) */
    FAULT_RENAME, /* file: rename(2) */
    FAULT_QUERY,  /* postgres: sending a query or pipeline */
    FAULT_TXN,    /* changelog: a transaction (the producer's fatal error) */
    FAULT_POINTS
};

#ifdef EDR_TEST_HOOKS

/* Arms point p to fail at its nth call from now (1 = next call), and, if
 * repeat is non-zero, every call after that too (a disk that stays full).
 * nth = 0 disarms. Any thread. */
void fault_arm(enum fault_point p, unsigned nth, int repeat);
void fault_disarm_all(void);

/* Returns 1 when this call at point p must fail (the caller then behaves
 * as if the system call failed with ENOSPC/EIO or the server went away). */
int fault_hit(enum fault_point p);

#else

static inline int fault_hit(enum fault_point p)
{
    (void)p;
    return 0;
}

#endif

#endif

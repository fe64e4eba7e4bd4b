/* fault.h: fault injection for the stores' error paths, as SQLite's
 * test_vfs does: a test arms a point to fail at its Nth call and checks the
 * store is exactly before or exactly after the operation.
 *
 * Stores call fault_hit() just before each real write, fsync, rename or
 * query; disarmed it costs one relaxed atomic load. The worker can arm it
 * from the environment (EDR_FAULT=point:nth) for the fault-tolerance
 * suite. */
#ifndef EDR_STORES_FAULT_H
#define EDR_STORES_FAULT_H

enum fault_point {
    FAULT_WRITE,  /* file: write(2) */
    FAULT_FSYNC,  /* file: fsync(2) */
    FAULT_RENAME, /* file: rename(2) */
    FAULT_QUERY,  /* postgres: sending a query or pipeline */
    FAULT_POINTS
};

/* Arms point p to fail at its nth call from now (1 = next call), and, if
 * repeat is non-zero, every call after that too (a disk that stays full).
 * nth = 0 disarms. Any thread. */
void fault_arm(enum fault_point p, unsigned nth, int repeat);
void fault_disarm_all(void);

/* Returns 1 when this call at point p must fail (the caller then behaves
 * as if the system call failed with ENOSPC/EIO or the server went away). */
int fault_hit(enum fault_point p);

#endif

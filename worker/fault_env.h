/* fault_env.h: arms the stores' fault injection (stores/fault.h) from the
 * environment, for the fault-tolerance suite (tests/fault/).
 *
 *   EDR_FAULT=point:nth   point is write, fsync, rename or query; the nth
 *                         call from start fails, and every call after it
 *                         (a disk that stays full, a server that stays
 *                         away), until the process gets SIGUSR2, which
 *                         disarms every point (space freed, server back).
 *
 * Unset: nothing is armed and SIGUSR2 keeps its default action. */
#ifndef EDR_WORKER_FAULT_ENV_H
#define EDR_WORKER_FAULT_ENV_H

#include <stddef.h>

/* Reads EDR_FAULT. Returns 0 (armed, or unset), or -1 with a message
 * naming the setting in errstr. Main thread, before other threads start. */
int fault_env_init(char *errstr, size_t errstr_size);

#endif

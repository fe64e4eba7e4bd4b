/* fault_env.h: arms the stores' fault injection (stores/fault.h) from the
 * environment, for the fault-tolerance suite (tests/fault/).
 *
 *   EDR_FAULT=point:nth   point is write, fsync, rename, query or txn; the nth
 *                         call from start fails, and every call after it
 *                         (a disk that stays full, a server that stays
 *                         away), until the process gets SIGUSR2, which
 *                         disarms every point (space freed, server back).
 *                         txn: the nth changelog transaction meets a fatal
 *                         producer error (once), as a broker restarted
 *                         mid-transaction can cause.
 *
 * Unset: nothing is armed and SIGUSR2 keeps its default action.
 *
 * A test hook: compiled only into the test build (EDR_TEST_HOOKS,
 * edr-worker-test); the release edr-worker has neither the variable nor
 * the signal handler. */
#ifndef EDR_WORKER_FAULT_ENV_H
#define EDR_WORKER_FAULT_ENV_H

#include <stddef.h>

#ifdef EDR_TEST_HOOKS

/* Reads EDR_FAULT. Returns 0 (armed, or unset), or -1 with a message
 * naming the setting in errstr. Main thread, before other threads start. */
int fault_env_init(char *errstr, size_t errstr_size);

#endif

#endif

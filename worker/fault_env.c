/* fault_env.c: see fault_env.h. Compiled empty into the release build. */
#include "worker/fault_env.h"

#ifdef EDR_TEST_HOOKS

#include "stores/fault.h"
#include "worker/log.h"

#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static void on_disarm_signal(int sig)
{
    (void)sig;
    fault_disarm_all(); /* lock-free atomic stores: async-signal-safe */
}

int fault_env_init(char *errstr, size_t errstr_size)
{
    static const char *const names[FAULT_POINTS] = {
        [FAULT_WRITE] = "write",   [FAULT_FSYNC] = "fsync",
        [FAULT_RENAME] = "rename", [FAULT_QUERY] = "query",
        [FAULT_TXN] = "txn",
    };
    const char *v = getenv("EDR_FAULT");
    if (!v || !v[0])
        return 0;
    const char *colon = strchr(v, ':');
    int point = -1;
    for (int i = 0; colon && i < FAULT_POINTS; i++)
        if (strlen(names[i]) == (size_t)(colon - v) &&
            strncmp(v, names[i], (size_t)(colon - v)) == 0)
            point = i;
    char *end = NULL;
    errno = 0;
    unsigned long nth = colon ? strtoul(colon + 1, &end, 10) : 0;
    if (point < 0 || errno || !end || *end || nth == 0 || nth > 0xffffffffu ||
        colon[1] < '0' || colon[1] > '9') {
        snprintf(errstr, errstr_size,
                 "invalid setting EDR_FAULT: \"%.64s\" is not "
                 "write|fsync|rename|query|txn:N (N >= 1)",
                 v);
        return -1;
    }
    struct sigaction sa;
    memset(&sa, 0, sizeof(sa));
    sa.sa_handler = on_disarm_signal;
    sigemptyset(&sa.sa_mask);
    sa.sa_flags = SA_RESTART;
    sigaction(SIGUSR2, &sa, NULL);
    /* A disk stays full; a producer's fatal error happens once (the writer
     * that replaces it must be able to work). */
    fault_arm((enum fault_point)point, (unsigned)nth, point != FAULT_TXN);
    log_warn("test build: EDR_FAULT=%s armed; SIGUSR2 disarms it", v);
    return 0;
}

#else

/* ISO C wants a translation unit to declare something. */
typedef int fault_env_release_build;

#endif

/* proc_util.c: see proc_util.h. */
#define _GNU_SOURCE /* posix_spawn_file_actions_addclosefrom_np */
#include "tests/support/proc_util.h"

#include "base/clock.h"

#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <spawn.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

extern char **environ;

/* Every child test_spawn started, so that none outlives its test program:
 * a test that fails before it stops its workers would otherwise leave
 * them running (holding ports, topics' groups, and the CI's flock). */
#define MAX_SPAWNED 256
static pid_t spawned[MAX_SPAWNED];
static size_t n_spawned;

/* At exit: each child still ours and alive is killed and reaped.
 * waitpid() only ever sees our own children, so a pid reaped elsewhere
 * (ECHILD) and reused by another process is never signalled. */
static void kill_leftovers(void)
{
    for (size_t i = 0; i < n_spawned; i++) {
        int st;
        if (waitpid(spawned[i], &st, WNOHANG) == 0) {
            fprintf(stderr,
                    "proc_util: pid %d still running at exit: "
                    "killed\n",
                    (int)spawned[i]);
            kill(spawned[i], SIGKILL);
            waitpid(spawned[i], &st, 0);
        }
    }
}

static void remember(pid_t pid)
{
    static int registered;
    if (!registered)
        registered = atexit(kill_leftovers) == 0;
    if (n_spawned < MAX_SPAWNED)
        spawned[n_spawned++] = pid;
}

int test_run_capture(const char *const *argv, char *out, size_t cap,
                     int timeout_ms)
{
    int fds[2];
    if (cap == 0 || pipe(fds) != 0)
        return -1;
    posix_spawn_file_actions_t fa;
    posix_spawn_file_actions_init(&fa);
    posix_spawn_file_actions_adddup2(&fa, fds[1], 1);
    posix_spawn_file_actions_adddup2(&fa, fds[1], 2);
    posix_spawn_file_actions_addclose(&fa, fds[0]);
    posix_spawn_file_actions_addclose(&fa, fds[1]);
    posix_spawn_file_actions_addclosefrom_np(&fa, 3);
    pid_t pid;
    int rc =
        posix_spawn(&pid, argv[0], &fa, NULL, (char *const *)argv, environ);
    posix_spawn_file_actions_destroy(&fa);
    close(fds[1]);
    if (rc != 0) {
        close(fds[0]);
        return -1;
    }
    int64_t end = edr_clock_ms() + timeout_ms;
    size_t n = 0;
    int timed_out = 0;
    for (;;) {
        int wait = -1;
        if (timeout_ms > 0) {
            int64_t left = end - edr_clock_ms();
            if (left <= 0) {
                timed_out = 1;
                kill(pid, SIGKILL);
                break;
            }
            wait = (int)left;
        }
        struct pollfd p = {fds[0], POLLIN, 0};
        int pr = poll(&p, 1, wait);
        if (pr <= 0)
            continue; /* EINTR or the deadline: checked above */
        char sink[512];
        /* Past cap, keep draining so the child never blocks on a full
         * pipe. */
        ssize_t r = n + 1 < cap ? read(fds[0], out + n, cap - 1 - n)
                                : read(fds[0], sink, sizeof(sink));
        if (r < 0 && errno == EINTR)
            continue;
        if (r <= 0)
            break;
        if (n + 1 < cap)
            n += (size_t)r;
    }
    out[n] = '\0';
    close(fds[0]);
    int st;
    while (waitpid(pid, &st, 0) < 0)
        if (errno != EINTR)
            return -1;
    if (timed_out)
        return -2;
    return WIFEXITED(st) ? WEXITSTATUS(st) : -1;
}

pid_t test_spawn(const char *bin, const char *const *args,
                 const char *const *env, const char *log_path)
{
    size_t n_env = 0, n_add = 0, n_args = 0;
    while (environ[n_env])
        n_env++;
    while (env && env[n_add])
        n_add++;
    while (args && args[n_args])
        n_args++;
    /* Ours first: getenv() returns the first match. */
    char **envp = calloc(n_env + n_add + 1, sizeof(*envp));
    char **argv = calloc(n_args + 2, sizeof(*argv));
    pid_t pid = -1;
    if (!envp || !argv) {
        fprintf(stderr, "spawn %s: out of memory\n", bin);
        goto done;
    }
    for (size_t i = 0; i < n_add; i++)
        envp[i] = (char *)env[i];
    for (size_t i = 0; i < n_env; i++)
        envp[n_add + i] = environ[i];
    argv[0] = (char *)bin;
    for (size_t i = 0; i < n_args; i++)
        argv[1 + i] = (char *)args[i];

    posix_spawn_file_actions_t fa;
    posix_spawn_file_actions_init(&fa);
    posix_spawn_file_actions_addopen(&fa, 1, log_path ? log_path : "/dev/null",
                                     O_WRONLY | O_CREAT | O_APPEND, 0600);
    posix_spawn_file_actions_adddup2(&fa, 1, 2);
    posix_spawn_file_actions_addclose(&fa, 0);
    /* Nothing else inherited: not the test's sockets, nor the lock file
     * `flock /tmp/edr-integ.lock ctest` holds, which a leftover child
     * would keep locked after the test is gone. */
    posix_spawn_file_actions_addclosefrom_np(&fa, 3);
    int rc = posix_spawn(&pid, bin, &fa, NULL, argv, envp);
    posix_spawn_file_actions_destroy(&fa);
    if (rc != 0) {
        fprintf(stderr, "spawn %s: %s\n", bin, strerror(rc));
        pid = -1;
    } else {
        remember(pid);
    }
done:
    free(envp);
    free(argv);
    return pid;
}

int test_wait_exit(pid_t pid, int timeout_ms)
{
    int64_t end = edr_clock_ms() + timeout_ms;
    for (;;) {
        int st;
        pid_t r = waitpid(pid, &st, WNOHANG);
        if (r == pid)
            return WIFEXITED(st) ? WEXITSTATUS(st) : 128 + WTERMSIG(st);
        if (r < 0 && errno != EINTR)
            return -1;
        if (edr_clock_ms() >= end)
            return -1;
        edr_sleep_ms(20);
    }
}

char *test_read_file(const char *path, size_t *len)
{
    FILE *f = fopen(path, "rb");
    char *b = NULL;
    long n;

    if (!f)
        return NULL;
    if (fseek(f, 0, SEEK_END) == 0 && (n = ftell(f)) >= 0 &&
        fseek(f, 0, SEEK_SET) == 0) {
        b = malloc((size_t)n + 1);
        if (b && fread(b, 1, (size_t)n, f) != (size_t)n) {
            free(b);
            b = NULL;
        }
        if (b) {
            b[n] = '\0';
            if (len)
                *len = (size_t)n;
        }
    }
    fclose(f);
    return b;
}

int test_log_count(const char *path, const char *a, const char *b)
{
    char line[1024];
    int found = 0;
    FILE *f = fopen(path, "r");
    while (f && fgets(line, sizeof(line), f))
        found += strstr(line, a) && (!b || strstr(line, b));
    if (f)
        fclose(f);
    return found;
}

int test_wait_log(const char *path, const char *a, const char *b, int n,
                  int timeout_ms)
{
    int64_t end = edr_clock_ms() + timeout_ms;
    for (;;) {
        if (test_log_count(path, a, b) >= n)
            return 0;
        if (edr_clock_ms() >= end)
            return -1;
        edr_sleep_ms(100);
    }
}

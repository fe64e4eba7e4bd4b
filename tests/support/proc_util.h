/* proc_util.h: child processes and files for tests: run a program and
 * capture its output, spawn one with extra environment and a log, wait for
 * its exit with a deadline, read a whole file, wait for a line in a log.
 *
 * Children inherit only stdin/stdout/stderr, and those test_spawn started
 * and nobody reaped are killed when the test program exits.
 *
 * Part of the edr_test_support library (ops_util.c starts edr-worker with
 * these). Blocking; call from one thread at a time (test_spawn reads
 * environ). */
#ifndef EDR_TEST_PROC_UTIL_H
#define EDR_TEST_PROC_UTIL_H

#include <stddef.h>
#include <sys/types.h>

/* Runs argv (argv[0] a path, NULL-terminated) with stdout and stderr into
 * out (cap bytes, always NUL-terminated; what does not fit is dropped).
 * timeout_ms <= 0 waits for ever; otherwise the child is killed once it
 * has run that long. Returns its exit status, -1 when it could not run or
 * died of a signal, -2 when it was killed for the deadline. */
int test_run_capture(const char *const *argv, char *out, size_t cap,
                     int timeout_ms);

/* Starts bin with args (the arguments after argv[0], NULL-terminated, or
 * NULL) and the current environment plus env ("NAME=value" strings,
 * NULL-terminated, or NULL; they win over inherited ones). stdin is
 * closed; stdout and stderr are appended to log_path (created 0600), or
 * go to /dev/null when log_path is NULL. Returns the pid, or -1 (with a
 * line on stderr). */
pid_t test_spawn(const char *bin, const char *const *args,
                 const char *const *env, const char *log_path);

/* Waits up to timeout_ms for pid to exit. Returns its exit code,
 * 128+signal when a signal killed it, or -1 on timeout (the child is left
 * running) or when pid is not a child of ours. */
int test_wait_exit(pid_t pid, int timeout_ms);

/* The whole file in a malloc'd buffer (NUL-terminated, *len without the
 * NUL; len may be NULL), or NULL. The caller frees it. */
char *test_read_file(const char *path, size_t *len);

/* Number of lines of the file at path that contain a and, when b is not
 * NULL, b too; 0 when the file cannot be read. Lines are cut at 1023
 * bytes. */
int test_log_count(const char *path, const char *a, const char *b);

/* Waits until test_log_count(path, a, b) >= n; 0, or -1 after
 * timeout_ms. */
int test_wait_log(const char *path, const char *a, const char *b, int n,
                  int timeout_ms);

#endif

/* ops_util.h: helpers for the operability integration tests: run
 * edr-worker processes, fetch their HTTP endpoints, read Prometheus
 * samples, and run a private PostgreSQL that a test may stop.
 *
 * Part of the edr_test_support library. Blocking; one test thread. */
#ifndef EDR_TEST_OPS_UTIL_H
#define EDR_TEST_OPS_UTIL_H

#include <stddef.h>
#include <sys/types.h>

/* A loopback TCP port that was free a moment ago; -1 on error. */
int ops_free_port(void);

/* `method` http://<addr><path> with HTTP/1.0 (addr "127.0.0.1:port"),
 * read until the server closes. Returns 0 with *status, the header block
 * (status line and headers, truncated to head_size; head may be NULL) and
 * a malloc'd *body (caller frees), or -1 when nothing answered. */
int ops_http_request(const char *addr, const char *method, const char *path,
                     int *status, char *head, size_t head_size, char **body);

/* ops_http_request with extra request headers (complete lines, each
 * ending in \r\n, or NULL) and, when req_body is not NULL, req_len bytes
 * of body sent with their Content-Length. */
int ops_http_send(const char *addr, const char *method, const char *path,
                  const char *headers, const char *req_body, size_t req_len,
                  int *status, char *head, size_t head_size, char **body);

/* ops_http_request with GET and no header block. */
int ops_http_get(const char *addr, const char *path, int *status, char **body);

/* Polls GET until it returns want_status; 0, or -1 after timeout_ms. */
int ops_wait_status(const char *addr, const char *path, int want_status,
                    int timeout_ms);

/* Value of the Prometheus sample whose "name{labels}" is exactly
 * `series`; -1 when absent. */
double ops_metric(const char *text, const char *series);

/* Sum of every sample whose series text starts with `prefix` (e.g.
 * "edr_consumer_lag{"); 0 when none. */
double ops_metric_sum(const char *text, const char *prefix);

/* Starts the edr-worker binary ($EDR_WORKER_BIN, default ../edr-worker
 * from the test's working directory build/tests) with the current
 * environment plus `env` ("NAME=value" strings, NULL-terminated), stdout
 * and stderr appended to log_path. Returns the pid, or -1. */
pid_t ops_worker_start(const char *const *env, const char *log_path);

/* SIGTERM, then waits up to timeout_ms (SIGKILL after). Returns the exit
 * code, 128+signal when it died of a signal, -1 when it had to be killed
 * or was not ours. */
int ops_worker_stop(pid_t pid, int timeout_ms);

/* A private PostgreSQL cluster (trust auth, user postgres) in a fresh
 * directory, run as the OS user $EDR_PG_OS_USER with the binaries in
 * $EDR_PG_BIN (scripts/services.sh env). */
struct ops_pg {
    char dir[256];
    int port;
};
/* initdb + start. 0, or -1 with errstr. */
int ops_pg_create(struct ops_pg *pg, int port, char *errstr, size_t n);
/* pg_ctl start / stop -m fast (waiting). 0 or -1. */
int ops_pg_start(const struct ops_pg *pg);
int ops_pg_stop(const struct ops_pg *pg);
/* Stops it if running and removes its directory. */
void ops_pg_destroy(struct ops_pg *pg);

/* Prints the last `lines` lines of a log file to stderr (for failures). */
void ops_dump_log(const char *path, int lines);

#endif

/* ops_util.c: see ops_util.h. */
#include "tests/support/ops_util.h"

#include "base/clock.h"
#include "tests/support/proc_util.h"

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <signal.h>
#include <spawn.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

extern char **environ;

int ops_free_port(void)
{
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in sa = {.sin_family = AF_INET};
    sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    socklen_t sl = sizeof(sa);
    int port = -1;
    if (fd >= 0 && bind(fd, (struct sockaddr *)&sa, sizeof(sa)) == 0 &&
        getsockname(fd, (struct sockaddr *)&sa, &sl) == 0)
        port = ntohs(sa.sin_port);
    if (fd >= 0)
        close(fd);
    return port;
}

int ops_http_request(const char *addr, const char *method, const char *path,
                     int *status, char *head, size_t head_size, char **body)
{
    return ops_http_send(addr, method, path, NULL, NULL, 0, status, head,
                         head_size, body);
}

/* Writes all n bytes; 0, or -1 when the peer stopped reading. */
static int write_all(int fd, const char *s, size_t n)
{
    while (n) {
        ssize_t w = write(fd, s, n);
        if (w <= 0)
            return -1;
        s += w;
        n -= (size_t)w;
    }
    return 0;
}

int ops_http_send(const char *addr, const char *method, const char *path,
                  const char *headers, const char *req_body, size_t req_len,
                  int *status, char *head, size_t head_size, char **body)
{
    int rc = -1, fd = -1;
    char *buf = NULL;
    size_t len = 0, cap = 0;
    char host[64];
    const char *colon = strrchr(addr, ':');
    struct sockaddr_in sa = {.sin_family = AF_INET};

    *body = NULL;
    if (!colon || (size_t)(colon - addr) >= sizeof(host))
        goto cleanup;
    memcpy(host, addr, (size_t)(colon - addr));
    host[colon - addr] = '\0';
    sa.sin_port = htons((uint16_t)atoi(colon + 1));
    if (inet_pton(AF_INET, host, &sa.sin_addr) != 1)
        goto cleanup;
    fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (fd < 0 || connect(fd, (struct sockaddr *)&sa, sizeof(sa)) != 0)
        goto cleanup;
    struct timeval tv = {10, 0}; /* a hung server fails the test, not CI */
    setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
    char req[2048], length[48] = "";
    if (req_body)
        snprintf(length, sizeof(length), "Content-Length: %zu\r\n", req_len);
    int n = snprintf(req, sizeof(req), "%s %s HTTP/1.0\r\nHost: %s\r\n%s%s\r\n",
                     method, path, addr, headers ? headers : "", length);
    if (n < 0 || (size_t)n >= sizeof(req) || write_all(fd, req, (size_t)n))
        goto cleanup;
    /* a server that answers early (401, 400) may stop reading: its answer
     * is read all the same */
    if (req_body)
        (void)write_all(fd, req_body, req_len);
    for (;;) {
        if (len + 4096 + 1 > cap) {
            cap = cap ? cap * 2 : 65536;
            char *b = realloc(buf, cap);
            if (!b)
                goto cleanup;
            buf = b;
        }
        ssize_t got = read(fd, buf + len, cap - len - 1);
        if (got < 0)
            goto cleanup;
        if (got == 0)
            break;
        len += (size_t)got;
    }
    if (!buf)
        goto cleanup;
    buf[len] = '\0';
    char *sep = strstr(buf, "\r\n\r\n");
    if (!sep || sscanf(buf, "HTTP/1.%*d %d", status) != 1)
        goto cleanup;
    if (head && head_size)
        snprintf(head, head_size, "%.*s", (int)(sep - buf), buf);
    *body = strdup(sep + 4);
    rc = *body ? 0 : -1;
cleanup:
    if (fd >= 0)
        close(fd);
    free(buf);
    return rc;
}

int ops_http_get(const char *addr, const char *path, int *status, char **body)
{
    return ops_http_request(addr, "GET", path, status, NULL, 0, body);
}

int ops_wait_status(const char *addr, const char *path, int want_status,
                    int timeout_ms)
{
    long end = edr_clock_ms() + timeout_ms;
    do {
        int status;
        char *body;
        if (ops_http_get(addr, path, &status, &body) == 0) {
            free(body);
            if (status == want_status)
                return 0;
        }
        edr_sleep_ms(200);
    } while (edr_clock_ms() < end);
    return -1;
}

double ops_metric(const char *text, const char *series)
{
    size_t n = strlen(series);
    for (const char *line = text; line && *line;) {
        if (strncmp(line, series, n) == 0 && line[n] == ' ')
            return strtod(line + n + 1, NULL);
        line = strchr(line, '\n');
        if (line)
            line++;
    }
    return -1;
}

double ops_metric_sum(const char *text, const char *prefix)
{
    size_t n = strlen(prefix);
    double sum = 0;
    for (const char *line = text; line && *line;) {
        if (strncmp(line, prefix, n) == 0) {
            const char *eol = strchr(line, '\n');
            const char *sp = eol ? eol : line + strlen(line);
            while (sp > line && sp[-1] != ' ')
                sp--;
            sum += strtod(sp, NULL);
        }
        line = strchr(line, '\n');
        if (line)
            line++;
    }
    return sum;
}

pid_t ops_worker_start(const char *const *env, const char *log_path)
{
    const char *bin = getenv("EDR_WORKER_BIN");
    if (!bin || !*bin)
        bin = "../edr-worker";
    return test_spawn(bin, NULL, env, log_path);
}

int ops_worker_stop(pid_t pid, int timeout_ms)
{
    if (pid <= 0 || kill(pid, SIGTERM) != 0)
        return -1;
    int code = test_wait_exit(pid, timeout_ms);
    if (code < 0) {
        kill(pid, SIGKILL);
        waitpid(pid, NULL, 0);
    }
    return code;
}

/* ---- private PostgreSQL ---- */

static const char *pg_bin(void)
{
    const char *b = getenv("EDR_PG_BIN");
    return b && *b ? b : "/usr/lib/postgresql/15/bin";
}

static const char *pg_user(void)
{
    const char *u = getenv("EDR_PG_OS_USER");
    return u && *u ? u : "postgres";
}

/* Runs a shell command; 0 when it exited 0. The command strings are made
 * from our own paths and numbers only. */
static int run(const char *cmd)
{
    int st = system(cmd);
    return st != -1 && WIFEXITED(st) && WEXITSTATUS(st) == 0 ? 0 : -1;
}

/* pg_ctl on the cluster's data directory; the socket and the server log
 * live beside it. */
static int pg_ctl(const struct ops_pg *pg, const char *action)
{
    char cmd[1200];
    snprintf(cmd, sizeof(cmd),
             "runuser -u %s -- %s/pg_ctl -D %s/data -l %s/server.log -w -t 60 "
             "-o '-p %d -k %s -c listen_addresses=127.0.0.1 -c fsync=off' "
             "%s >/dev/null",
             pg_user(), pg_bin(), pg->dir, pg->dir, pg->port, pg->dir, action);
    return run(cmd);
}

int ops_pg_create(struct ops_pg *pg, int port, char *errstr, size_t n)
{
    char cmd[1024];
    snprintf(pg->dir, sizeof(pg->dir), "/tmp/edr-ops-pg-XXXXXX");
    pg->port = port;
    if (!mkdtemp(pg->dir)) {
        snprintf(errstr, n, "mkdtemp: %s", strerror(errno));
        pg->dir[0] = '\0';
        return -1;
    }
    snprintf(cmd, sizeof(cmd), "chown %s: %s && chmod 700 %s", pg_user(),
             pg->dir, pg->dir);
    if (run(cmd) != 0) {
        snprintf(errstr, n, "chown %s to %s failed", pg->dir, pg_user());
        return -1;
    }
    snprintf(cmd, sizeof(cmd),
             "runuser -u %s -- %s/initdb -D %s/data -A trust -U postgres "
             "--no-sync >%s/initdb.log 2>&1",
             pg_user(), pg_bin(), pg->dir, pg->dir);
    if (run(cmd) != 0) {
        snprintf(errstr, n, "initdb failed, see %s/initdb.log", pg->dir);
        return -1;
    }
    if (ops_pg_start(pg) != 0) {
        snprintf(errstr, n, "pg_ctl start on port %d failed, see %s/server.log",
                 port, pg->dir);
        return -1;
    }
    return 0;
}

int ops_pg_start(const struct ops_pg *pg)
{
    return pg_ctl(pg, "start");
}

int ops_pg_stop(const struct ops_pg *pg)
{
    return pg_ctl(pg, "-m fast stop");
}

void ops_pg_destroy(struct ops_pg *pg)
{
    if (!pg->dir[0])
        return;
    struct stat sb;
    char pidfile[300];
    snprintf(pidfile, sizeof(pidfile), "%s/data/postmaster.pid", pg->dir);
    if (stat(pidfile, &sb) == 0)
        ops_pg_stop(pg);
    char cmd[600];
    snprintf(cmd, sizeof(cmd), "rm -rf %s", pg->dir);
    run(cmd);
    pg->dir[0] = '\0';
}

void ops_dump_log(const char *path, int lines)
{
    char cmd[600];
    fprintf(stderr, "---- last %d lines of %s ----\n", lines, path);
    snprintf(cmd, sizeof(cmd), "tail -n %d %s >&2", lines, path);
    run(cmd);
}

/* http.c: see http.h. libmicrohttpd serves /healthz, /readyz, /metrics
 * and, when EDC callbacks are on, POST /callbacks/edc (worker/
 * edc_callback.c), one thread per connection: a callback that waits for
 * the broker holds only its own connection. We bind the listening socket
 * ourselves so a bad or busy address fails with the operating system's reason,
 * and hand the socket to libmicrohttpd (which closes it on stop). */
#include "worker/http.h"

#include "worker/edc_callback.h"
#include "worker/log.h"
#include "worker/metrics.h"
#include "worker/rpc_gaps.h"

#include <errno.h>
#include <microhttpd.h>
#include <netdb.h>
#include <stdatomic.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

struct http_server {
    struct MHD_Daemon *daemon;
    long ready_max_lag; /* < 0: lag never makes the worker unready */
    _Atomic(struct edc_callback *) edc; /* NULL: the route is unknown */
};

#define EDC_ROUTE "/callbacks/edc"

int http_addr_split(const char *addr, char *host, size_t host_size, char *port,
                    size_t port_size)
{
    const char *colon, *h = addr;
    size_t hlen;
    if (!addr)
        return -1;
    if (addr[0] == '[') {
        const char *close = strchr(addr, ']');
        if (!close || close[1] != ':')
            return -1;
        h = addr + 1;
        hlen = (size_t)(close - h);
        colon = close + 1;
    } else {
        colon = strrchr(addr, ':');
        if (!colon || memchr(addr, ':', (size_t)(colon - addr)))
            return -1; /* no port, or a bare IPv6 address without [] */
        hlen = (size_t)(colon - addr);
    }
    const char *p = colon + 1;
    if (hlen == 0 || hlen >= host_size || !*p || strlen(p) >= port_size)
        return -1;
    char *end;
    errno = 0;
    long n = strtol(p, &end, 10);
    if (*end || errno || n < 1 || n > 65535 || p[0] == '+' || p[0] == '-')
        return -1;
    memcpy(host, h, hlen);
    host[hlen] = '\0';
    snprintf(port, port_size, "%ld", n);
    return 0;
}

/* Resolves and binds addr, then listens. Returns the socket or -1 with
 * errstr. */
static int listen_on(const char *addr, int *is_v6, char *errstr,
                     size_t errstr_size)
{
    char host[256], port[8];
    struct addrinfo hints, *res = NULL;
    int fd = -1;

    if (http_addr_split(addr, host, sizeof(host), port, sizeof(port)) != 0) {
        snprintf(errstr, errstr_size,
                 "EDR_HTTP_ADDR: '%s' is not host:port (port 1-65535; "
                 "IPv6 as [addr]:port; 'off' disables)",
                 addr);
        goto cleanup;
    }
    memset(&hints, 0, sizeof(hints));
    hints.ai_family = AF_UNSPEC;
    hints.ai_socktype = SOCK_STREAM;
    hints.ai_flags = AI_PASSIVE | AI_NUMERICSERV;
    int gai = getaddrinfo(host, port, &hints, &res);
    if (gai != 0) {
        snprintf(errstr, errstr_size, "EDR_HTTP_ADDR: cannot resolve '%s': %s",
                 host, gai_strerror(gai));
        goto cleanup;
    }
    fd = socket(res->ai_family, res->ai_socktype | SOCK_CLOEXEC,
                res->ai_protocol);
    if (fd < 0) {
        snprintf(errstr, errstr_size, "EDR_HTTP_ADDR: socket: %s",
                 strerror(errno));
        goto cleanup;
    }
    /* Lets a restarted worker bind while old connections sit in TIME_WAIT;
     * it does not allow two live listeners on one port. */
    int one = 1;
    setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
    if (bind(fd, res->ai_addr, res->ai_addrlen) != 0 || listen(fd, 64) != 0) {
        int e = errno;
        snprintf(errstr, errstr_size,
                 "EDR_HTTP_ADDR: cannot listen on %s: %s%s", addr, strerror(e),
                 e == EADDRINUSE ? " (the port is busy: another process "
                                   "listens on it)"
                                 : "");
        close(fd);
        fd = -1;
        goto cleanup;
    }
    *is_v6 = res->ai_family == AF_INET6;
cleanup:
    if (res)
        freeaddrinfo(res);
    return fd;
}

__attribute__((format(printf, 2, 0))) static void
mhd_log(void *cls, const char *fmt, va_list ap)
{
    (void)cls;
    char msg[512];
    vsnprintf(msg, sizeof(msg), fmt, ap);
    size_t n = strlen(msg);
    while (n && (msg[n - 1] == '\n' || msg[n - 1] == '\r'))
        msg[--n] = '\0';
    log_warn("http: %s", msg);
}

/* Queues a response whose body is copied from body (or taken over when
 * must_free); a 405 names the allowed methods. */
static enum MHD_Result reply(struct MHD_Connection *conn, unsigned int code,
                             const char *content_type, char *body, size_t len,
                             int must_free, const char *allow)
{
    struct MHD_Response *resp = MHD_create_response_from_buffer(
        len, body, must_free ? MHD_RESPMEM_MUST_FREE : MHD_RESPMEM_MUST_COPY);
    if (!resp) {
        if (must_free)
            free(body);
        return MHD_NO;
    }
    MHD_add_response_header(resp, MHD_HTTP_HEADER_CONTENT_TYPE, content_type);
    MHD_add_response_header(resp, MHD_HTTP_HEADER_CACHE_CONTROL, "no-store");
    if (code == MHD_HTTP_METHOD_NOT_ALLOWED)
        MHD_add_response_header(resp, MHD_HTTP_HEADER_ALLOW, allow);
    enum MHD_Result ret = MHD_queue_response(conn, code, resp);
    MHD_destroy_response(resp);
    return ret;
}

static enum MHD_Result reply_text(struct MHD_Connection *conn,
                                  unsigned int code, const char *ctype,
                                  const char *body)
{
    return reply(conn, code, ctype, (char *)body, strlen(body), 0, "GET, HEAD");
}

static enum MHD_Result serve_readyz(struct http_server *h,
                                    struct MHD_Connection *conn)
{
    struct metrics_readiness r;
    char body[4096];
    const char *reasons[8];
    size_t n = 0;
    char lag_reason[96], gaps[1024], gap_reason[1100];

    metrics_get_readiness(&r);
    /* Plain text (state_gaps.h): embeddable in JSON as it is. */
    if (rpc_gaps_describe(gaps, sizeof(gaps)) >= sizeof(gaps))
        memcpy(gaps + sizeof(gaps) - 5, " ...", 5);
    if (gaps[0]) {
        snprintf(gap_reason, sizeof(gap_reason), "state incomplete: %s", gaps);
        reasons[n++] = gap_reason;
    }
    if (r.restoring)
        reasons[n++] = "restoring the state from the changelog";
    if (!r.store_ok)
        reasons[n++] = "store not ok";
    if (!r.kafka_assigned)
        reasons[n++] = "kafka partitions not assigned";
    if (h->ready_max_lag >= 0 && r.lag_sum > h->ready_max_lag) {
        snprintf(lag_reason, sizeof(lag_reason),
                 "consumer lag %lld exceeds %ld", (long long)r.lag_sum,
                 h->ready_max_lag);
        reasons[n++] = lag_reason;
    }
    if (!r.redis_connected)
        reasons[n++] = "redis not connected";

    /* The reason strings are our own texts (the gap text too): no JSON
     * escaping needed. */
    int len = snprintf(body, sizeof(body), "{\"status\":\"%s\"",
                       n ? "not_ready" : "ready");
    if (n) {
        len +=
            snprintf(body + len, sizeof(body) - (size_t)len, ",\"reason\":\"");
        for (size_t i = 0; i < n; i++)
            len += snprintf(body + len, sizeof(body) - (size_t)len, "%s%s",
                            i ? "; " : "", reasons[i]);
        len += snprintf(body + len, sizeof(body) - (size_t)len, "\"");
    }
    snprintf(body + len, sizeof(body) - (size_t)len,
             ",\"store_ok\":%s,\"kafka_assigned\":%s,\"redis_connected\":%s,"
             "\"consumer_lag\":%lld,\"ready_max_lag\":%ld,"
             "\"state_gaps\":\"%s\"}\n",
             r.store_ok ? "true" : "false", r.kafka_assigned ? "true" : "false",
             r.redis_connected ? "true" : "false", (long long)r.lag_sum,
             h->ready_max_lag, gaps);
    return reply_text(conn, n ? MHD_HTTP_SERVICE_UNAVAILABLE : MHD_HTTP_OK,
                      "application/json", body);
}

static enum MHD_Result serve_metrics(struct MHD_Connection *conn)
{
    char *text = NULL;
    size_t len = 0;
    if (metrics_render(&text, &len) != 0)
        return reply_text(conn, MHD_HTTP_INTERNAL_SERVER_ERROR, "text/plain",
                          "out of memory\n");
    return reply(conn, MHD_HTTP_OK, "text/plain; version=0.0.4; charset=utf-8",
                 text, len, 1, "GET, HEAD");
}

static enum MHD_Result reply_edc(struct MHD_Connection *conn,
                                 const struct edc_reply *r)
{
    return reply(conn, r->status, "application/json", (char *)r->body,
                 strlen(r->body), 0, "POST");
}

/* POST /callbacks/edc (schemas/README.md §6). The first call (headers
 * only) checks the auth header and the announced length before a byte
 * of the body is read; the body is then collected with its ceiling
 * (*con_cls, freed in on_completed) and answered on the last call. */
static enum MHD_Result serve_edc(struct edc_callback *cb,
                                 struct MHD_Connection *conn,
                                 const char *method, const char *upload_data,
                                 size_t *upload_data_size, void **con_cls)
{
    struct edc_body *b = *con_cls;
    struct edc_reply r;
    if (!b) {
        if (strcmp(method, MHD_HTTP_METHOD_POST) != 0) {
            r.status = MHD_HTTP_METHOD_NOT_ALLOWED;
            snprintf(r.body, sizeof(r.body),
                     "{\"error\":\"method not allowed\"}\n");
            return reply_edc(conn, &r);
        }
        const char *key = edc_callback_auth_key(cb), *v = NULL;
        size_t vlen = 0;
        if (MHD_lookup_connection_value_n(conn, MHD_HEADER_KIND, key,
                                          strlen(key), &v, &vlen) != MHD_YES)
            v = NULL;
        if (!edc_callback_authorized(cb, v, vlen)) {
            edc_callback_refuse(&r, MHD_HTTP_UNAUTHORIZED);
            return reply_edc(conn, &r);
        }
        const char *cl = MHD_lookup_connection_value(
            conn, MHD_HEADER_KIND, MHD_HTTP_HEADER_CONTENT_LENGTH);
        if (cl && strtoull(cl, NULL, 10) > EDC_EVENT_MAX_BYTES) {
            edc_callback_refuse(&r, MHD_HTTP_BAD_REQUEST);
            return reply_edc(conn, &r);
        }
        if (!(b = calloc(1, sizeof(*b))))
            return MHD_NO;
        *con_cls = b;
        return MHD_YES;
    }
    if (*upload_data_size) {
        int rc = edc_body_append(b, upload_data, *upload_data_size);
        *upload_data_size = 0;
        return rc == 0 ? MHD_YES : MHD_NO;
    }
    if (b->too_large)
        edc_callback_refuse(&r, MHD_HTTP_BAD_REQUEST);
    else
        edc_callback_handle(cb, b->data ? b->data : "", b->len, &r);
    return reply_edc(conn, &r);
}

static void on_completed(void *cls, struct MHD_Connection *conn, void **con_cls,
                         enum MHD_RequestTerminationCode why)
{
    (void)cls;
    (void)conn;
    (void)why;
    struct edc_body *b = *con_cls;
    if (b) {
        edc_body_free(b);
        free(b);
        *con_cls = NULL;
    }
}

static enum MHD_Result on_request(void *cls, struct MHD_Connection *conn,
                                  const char *url, const char *method,
                                  const char *version, const char *upload_data,
                                  size_t *upload_data_size, void **con_cls)
{
    struct http_server *h = cls;
    (void)version;

    if (strcmp(url, EDC_ROUTE) == 0) {
        struct edc_callback *cb = atomic_load(&h->edc);
        if (cb)
            return serve_edc(cb, conn, method, upload_data, upload_data_size,
                             con_cls);
        /* callbacks off: the route is unknown, whatever the method */
        return reply_text(conn, MHD_HTTP_NOT_FOUND, "application/json",
                          "{\"error\":\"not found\"}\n");
    }

    /* Only GET and HEAD (libmicrohttpd omits the body for HEAD). A body
     * sent anyway is ignored: we answer on the first call. */
    if (strcmp(method, MHD_HTTP_METHOD_GET) != 0 &&
        strcmp(method, MHD_HTTP_METHOD_HEAD) != 0)
        return reply_text(conn, MHD_HTTP_METHOD_NOT_ALLOWED, "application/json",
                          "{\"error\":\"method not allowed\"}\n");
    *upload_data_size = 0;

    if (strcmp(url, "/healthz") == 0)
        return reply_text(conn, MHD_HTTP_OK, "application/json",
                          "{\"status\":\"ok\"}\n");
    if (strcmp(url, "/readyz") == 0)
        return serve_readyz(h, conn);
    if (strcmp(url, "/metrics") == 0)
        return serve_metrics(conn);
    return reply_text(conn, MHD_HTTP_NOT_FOUND, "application/json",
                      "{\"error\":\"not found\"}\n");
}

struct http_server *http_server_start(const char *addr, long ready_max_lag,
                                      char *errstr, size_t errstr_size)
{
    struct http_server *h = NULL;
    int is_v6 = 0;
    int fd = listen_on(addr ? addr : "", &is_v6, errstr, errstr_size);
    if (fd < 0)
        goto fail;
    h = calloc(1, sizeof(*h));
    if (!h) {
        snprintf(errstr, errstr_size, "http: out of memory");
        goto fail;
    }
    h->ready_max_lag = ready_max_lag;
    atomic_init(&h->edc, NULL);
    unsigned int flags = MHD_USE_AUTO_INTERNAL_THREAD |
                         MHD_USE_THREAD_PER_CONNECTION | MHD_USE_ERROR_LOG;
    if (is_v6)
        flags |= MHD_USE_IPv6;
    h->daemon = MHD_start_daemon(
        flags, 0, NULL, NULL, on_request, h, MHD_OPTION_EXTERNAL_LOGGER,
        mhd_log, NULL, MHD_OPTION_NOTIFY_COMPLETED, on_completed, NULL,
        MHD_OPTION_LISTEN_SOCKET, fd, MHD_OPTION_CONNECTION_LIMIT,
        (unsigned int)64, MHD_OPTION_CONNECTION_TIMEOUT, (unsigned int)10,
        MHD_OPTION_END);
    /* libmicrohttpd may already have closed fd on failure; a leak on this
     * startup error path beats closing a descriptor twice. */
    fd = -1;
    if (!h->daemon) {
        snprintf(errstr, errstr_size,
                 "EDR_HTTP_ADDR: cannot start the HTTP server on %s", addr);
        goto fail;
    }
    return h;
fail:
    if (fd >= 0)
        close(fd);
    free(h);
    return NULL;
}

void http_server_set_edc(struct http_server *h, struct edc_callback *cb)
{
    atomic_store(&h->edc, cb);
}

void http_server_stop(struct http_server *h)
{
    if (!h)
        return;
    MHD_stop_daemon(h->daemon); /* joins its thread, closes the socket */
    free(h);
}

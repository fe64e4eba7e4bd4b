/* http.h: the operator's HTTP endpoints (libmicrohttpd): /healthz,
 * /readyz and /metrics (Prometheus text). Readiness is read from the state
 * the rest of the worker reports through metrics.h. */
#ifndef EDR_WORKER_HTTP_H
#define EDR_WORKER_HTTP_H

#include <stddef.h>

struct http_server;

/* addr: "host:port" (EDR_HTTP_ADDR); the caller skips the call for "off".
 * ready_max_lag: /readyz is 503 while the summed consumer lag exceeds it.
 * NULL with errstr when the address is invalid or cannot be bound. */
struct http_server *http_server_start(const char *addr, long ready_max_lag,
                                      char *errstr, size_t errstr_size);
void http_server_stop(struct http_server *h);

#endif

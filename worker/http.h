/* http.h: the operator's HTTP endpoints (libmicrohttpd): /healthz,
 * /readyz and /metrics (Prometheus text), and the EDC callback route
 * POST /callbacks/edc once http_server_set_edc gave it its handler
 * (worker/edc_callback.h). Readiness is read from the state the rest of
 * the worker reports through metrics.h. */
#ifndef EDR_WORKER_HTTP_H
#define EDR_WORKER_HTTP_H

#include <stddef.h>

struct http_server;
struct edc_callback;

/* The one validator of EDR_HTTP_ADDR's shape (worker/config.c uses it
 * too): "host:port" or "[v6-addr]:port", port 1-65535; a bare IPv6
 * address such as ::1:9464 is rejected (which colon ends the address?).
 * Splits into host and port (decimal); 0, or -1 when the shape is wrong
 * or a part does not fit. Resolves nothing. */
int http_addr_split(const char *addr, char *host, size_t host_size, char *port,
                    size_t port_size);

/* addr: "host:port" (EDR_HTTP_ADDR); the caller skips the call for "off".
 * ready_max_lag: /readyz is 503 while the summed consumer lag exceeds it.
 * NULL with errstr when the address is invalid or cannot be bound (a busy
 * port says so). Call it before opening the store, so a busy port fails
 * fast. */
struct http_server *http_server_start(const char *addr, long ready_max_lag,
                                      char *errstr, size_t errstr_size);
/* Serves POST /callbacks/edc with cb (borrowed: it must outlive the
 * server), or, with NULL, answers 404 there like on any unknown path (the
 * default). Any thread. */
void http_server_set_edc(struct http_server *h, struct edc_callback *cb);

void http_server_stop(struct http_server *h);

#endif

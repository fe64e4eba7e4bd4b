/* test_http.c: worker/http.c on a free loopback port, fetched with a tiny
 * HTTP/1.0 socket client: /healthz, /readyz flipping with the readiness
 * inputs of metrics.h, /metrics content type and body, 404, 405, HEAD,
 * and clear errors for bad or busy addresses. */
#include "tests/support/cunit_main.h"
#include "tests/support/ops_util.h"
#include "worker/http.h"
#include "worker/metrics.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static int port;
static char addr[64];
static struct http_server *srv;

struct response {
    int status;
    char head[2048];
    char *body; /* malloc'd */
};

/* Sends "METHOD path HTTP/1.0" and reads until the server closes. */
static int fetch(const char *method, const char *path, struct response *r)
{
    memset(r, 0, sizeof(*r));
    return ops_http_request(addr, method, path, &r->status, r->head,
                            sizeof(r->head), &r->body);
}

static int start_suite(void)
{
    char err[256];
    port = ops_free_port();
    if (port < 0)
        return -1;
    snprintf(addr, sizeof(addr), "127.0.0.1:%d", port);
    metrics_init("memory", "http-test");
    srv = http_server_start(addr, 100, err, sizeof(err));
    if (!srv)
        fprintf(stderr, "http_server_start: %s\n", err);
    return srv ? 0 : -1;
}

static int stop_suite(void)
{
    http_server_stop(srv);
    return 0;
}

static void test_healthz(void)
{
    struct response r;
    CU_ASSERT_EQUAL_FATAL(fetch("GET", "/healthz", &r), 0);
    CU_ASSERT_EQUAL(r.status, 200);
    CU_ASSERT_STRING_EQUAL(r.body, "{\"status\":\"ok\"}\n");
    CU_ASSERT_PTR_NOT_NULL(strstr(r.head, "application/json"));
    free(r.body);
}

static void set_ready(int store, int kafka, int redis, int64_t lag)
{
    metrics_set_store_ok(store);
    metrics_set_kafka_assigned(kafka);
    metrics_set_redis_connected(redis);
    if (kafka)
        metrics_consumer_lag(0, lag);
}

static void expect_ready(int status, const char *reason_part)
{
    struct response r;
    CU_ASSERT_EQUAL_FATAL(fetch("GET", "/readyz", &r), 0);
    CU_ASSERT_EQUAL(r.status, status);
    if (status == 200) {
        CU_ASSERT_PTR_NOT_NULL(strstr(r.body, "\"status\":\"ready\""));
        CU_ASSERT_PTR_NULL(strstr(r.body, "\"reason\""));
    } else {
        CU_ASSERT_PTR_NOT_NULL(strstr(r.body, "\"status\":\"not_ready\""));
        CU_ASSERT_PTR_NOT_NULL(strstr(r.body, reason_part));
    }
    free(r.body);
}

static void test_readyz_flips(void)
{
    set_ready(0, 0, 0, 0);
    expect_ready(503, "store not ok");
    expect_ready(503, "kafka partitions not assigned");
    expect_ready(503, "redis not connected");
    set_ready(1, 1, 1, 0);
    expect_ready(200, NULL);
    set_ready(1, 1, 1, 101); /* max lag is 100 */
    expect_ready(503, "consumer lag 101 exceeds 100");
    set_ready(1, 1, 1, 100);
    expect_ready(200, NULL);
    set_ready(0, 1, 1, 0);
    expect_ready(503, "store not ok");
    set_ready(1, 1, 0, 0);
    expect_ready(503, "redis not connected");
    set_ready(1, 0, 1, 0);
    expect_ready(503, "kafka");
    set_ready(1, 1, 1, 0);
    expect_ready(200, NULL);
}

static void test_metrics_endpoint(void)
{
    struct response r;
    metrics_lookup("ping", "ok", 0.001);
    CU_ASSERT_EQUAL_FATAL(fetch("GET", "/metrics", &r), 0);
    CU_ASSERT_EQUAL(r.status, 200);
    CU_ASSERT_PTR_NOT_NULL(strstr(r.head, "text/plain; version=0.0.4"));
    CU_ASSERT_PTR_NOT_NULL(strstr(r.body, "# TYPE edr_lookups_total counter"));
    CU_ASSERT_PTR_NOT_NULL(
        strstr(r.body, "edr_lookups_total{op=\"ping\",status=\"ok\"} 1\n"));
    CU_ASSERT_PTR_NOT_NULL(strstr(r.body, "worker=\"http-test\""));
    free(r.body);
}

static void test_other_requests(void)
{
    /* A 405 names the methods it allows; HEAD has no body. */
    static const struct {
        const char *method, *path;
        int status;
    } cases[] = {
        {"GET", "/nope", 404},     {"GET", "/healthz/extra", 404},
        {"POST", "/metrics", 405}, {"DELETE", "/healthz", 405},
        {"HEAD", "/metrics", 200},
    };
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        struct response r;
        CU_ASSERT_EQUAL_FATAL(fetch(cases[i].method, cases[i].path, &r), 0);
        CU_ASSERT_EQUAL(r.status, cases[i].status);
        if (r.status == 405)
            CU_ASSERT_PTR_NOT_NULL(strstr(r.head, "Allow: GET, HEAD"));
        if (strcmp(cases[i].method, "HEAD") == 0)
            CU_ASSERT_STRING_EQUAL(r.body, "");
        free(r.body);
    }
}

static void expect_start_error(const char *a, const char *part)
{
    char err[256] = "";
    struct http_server *h = http_server_start(a, 0, err, sizeof(err));
    CU_ASSERT_PTR_NULL(h);
    http_server_stop(h);
    CU_ASSERT_PTR_NOT_NULL(strstr(err, part));
    if (!strstr(err, part))
        fprintf(stderr, "address '%s': got error '%s'\n", a, err);
}

static void test_bad_addresses(void)
{
    expect_start_error("", "not host:port");
    expect_start_error("9464", "not host:port");
    expect_start_error("127.0.0.1:", "not host:port");
    expect_start_error(":9464", "not host:port");
    expect_start_error("127.0.0.1:0", "not host:port");
    expect_start_error("127.0.0.1:65536", "not host:port");
    expect_start_error("127.0.0.1:94x", "not host:port");
    expect_start_error("::1:9464", "not host:port");
    expect_start_error("no-such-host.invalid:9464", "cannot resolve");
    expect_start_error(addr, "Address already in use"); /* ours, busy */
    expect_start_error(addr, "the port is busy");
    expect_start_error("192.0.2.1:9464", "cannot listen"); /* not ours */
}

/* The one address validator, shared with worker/config.c. */
static void test_addr_split(void)
{
    char host[64], pnum[8];
    CU_ASSERT_EQUAL(
        http_addr_split("[::1]:9464", host, sizeof(host), pnum, sizeof(pnum)),
        0);
    CU_ASSERT_STRING_EQUAL(host, "::1");
    CU_ASSERT_STRING_EQUAL(pnum, "9464");
    CU_ASSERT_EQUAL(
        http_addr_split("0.0.0.0:80", host, sizeof(host), pnum, sizeof(pnum)),
        0);
    CU_ASSERT_STRING_EQUAL(host, "0.0.0.0");
    CU_ASSERT_STRING_EQUAL(pnum, "80");
    static const char *const bad[] = {
        "::1:9464", "[::1]9464", "[::1]:", "[]:80", "[::1:80", "h:+80",
        "h:-1",     "h:0",       ":80",    "h",     "",        NULL};
    for (size_t i = 0; bad[i]; i++)
        CU_ASSERT_EQUAL(
            http_addr_split(bad[i], host, sizeof(host), pnum, sizeof(pnum)),
            -1);
    CU_ASSERT_EQUAL(
        http_addr_split(NULL, host, sizeof(host), pnum, sizeof(pnum)), -1);
    /* a host that does not fit is refused, not truncated */
    CU_ASSERT_EQUAL(http_addr_split("abcdefgh:80", host, 8, pnum, sizeof(pnum)),
                    -1);
}

static void test_restart_same_port(void)
{
    char err[256];
    int p = ops_free_port();
    char a[64];
    snprintf(a, sizeof(a), "127.0.0.1:%d", p);
    struct http_server *h = http_server_start(a, 0, err, sizeof(err));
    CU_ASSERT_PTR_NOT_NULL_FATAL(h);
    http_server_stop(h);
    /* Stopping released the socket: the same address binds again. */
    h = http_server_start(a, 0, err, sizeof(err));
    CU_ASSERT_PTR_NOT_NULL(h);
    http_server_stop(h);
    /* IPv6 loopback in brackets, when the machine has it. */
    snprintf(a, sizeof(a), "[::1]:%d", p);
    h = http_server_start(a, 0, err, sizeof(err));
    if (!h)
        fprintf(stderr, "(IPv6 loopback unavailable: %s)\n", err);
    http_server_stop(h);
}

static void register_suites(void)
{
    CU_pSuite s = CU_add_suite("http", start_suite, stop_suite);
    CU_add_test(s, "healthz", test_healthz);
    CU_add_test(s, "readyz flips with the inputs", test_readyz_flips);
    CU_add_test(s, "metrics", test_metrics_endpoint);
    CU_add_test(s, "404, 405, HEAD", test_other_requests);
    CU_add_test(s, "bad addresses", test_bad_addresses);
    CU_add_test(s, "restart on the same port", test_restart_same_port);
    CU_add_test(s, "address validator", test_addr_split);
}

int main(void)
{
    static const cunit_register_fn regs[] = {register_suites, NULL};
    return cunit_main(regs);
}

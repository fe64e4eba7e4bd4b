/* test_edc_callback.c: POST /callbacks/edc through worker/http.c and
 * worker/edc_callback.c on a loopback port, with a memory store and no
 * broker (the producer points at a closed port): 404 while callbacks are
 * off, 401 for a missing or wrong header, 400 for bodies that are not an
 * EDC event (an announced length over 1 MiB before any byte is read),
 * 405 with Allow: POST, 204 for events that end nothing, 503 while the
 * store is not open or the state is restoring, 200 not_found for an
 * unknown transfer id, and 503 once the broker does not acknowledge the
 * expiry within its bound. The auth code never appears in a reply.
 * Also edc_body_append's ceiling. Needs no server: label unit. */
#include "tests/support/cunit_main.h"
#include "tests/support/ops_util.h"
#include "worker/edc_callback.h"
#include "worker/edc_publish.h"
#include "worker/http.h"
#include "worker/metrics.h"

#include "base/clock.h"

#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define CODE "unit-secret-4f1d"

static char addr[64];
static struct http_server *srv;
static struct edc_callback *cb;
static struct store *st;

struct response {
    int status;
    char head[2048];
    char *body;
};

static const char terminated_tp1[] =
    "{\"id\":\"cb-1\",\"at\":1796305164000,\"type\":"
    "\"TransferProcessTerminated\",\"payload\":{\"transferProcessId\":"
    "\"tp-1\",\"assetId\":\"asset-1\",\"type\":\"CONSUMER\",\"contractId\":"
    "\"c\",\"protocol\":\"dataspace-protocol-http\",\"callbackAddresses\":[],"
    "\"reason\":\"done\"}}";

/* POSTs body (NULL: none) with the extra header lines. */
static void post(const char *headers, const char *body, struct response *r)
{
    memset(r, 0, sizeof(*r));
    int rc = ops_http_send(addr, "POST", "/callbacks/edc", headers, body,
                           body ? strlen(body) : 0, &r->status, r->head,
                           sizeof(r->head), &r->body);
    CU_ASSERT_EQUAL_FATAL(rc, 0);
    /* the secret never comes back, whatever the answer */
    CU_ASSERT_PTR_NULL(strstr(r->head, CODE));
    CU_ASSERT_PTR_NULL(strstr(r->body, CODE));
}

static void post_auth(const char *body, struct response *r)
{
    post("X-Api-Key: " CODE "\r\n", body, r);
}

static int suite_init(void)
{
    char err[256];
    int port = ops_free_port();
    struct store_err serr;
    if (port < 0)
        return -1;
    snprintf(addr, sizeof(addr), "127.0.0.1:%d", port);
    metrics_init("memory", "edc-test");
    srv = http_server_start(addr, -1, err, sizeof(err));
    if (!srv) {
        fprintf(stderr, "http_server_start: %s\n", err);
        return -1;
    }
    /* a broker that is never there: port 1 of loopback */
    struct config cfg = {
        .brokers = (char *)"127.0.0.1:1",
        .topic = (char *)"edc_unit_never_produced",
        .worker_id = (char *)"unit-w1",
        .callback_auth_key = (char *)"X-Api-Key",
        .callback_auth_code = (char *)CODE,
        .timeout_ms = 5000,
    };
    if (!(cb = edc_callback_open(&cfg, err, sizeof(err)))) {
        fprintf(stderr, "edc_callback_open: %s\n", err);
        return -1;
    }
    if (!(st = mem_store_open(&serr)))
        return -1;
    return store_put(st, &(struct edr_key){"BPNL1", "https://p1", "q1", "p1"},
                     "tp-1", "{\"transferProcessId\":\"tp-1\"}", 28,
                     &serr) == STORE_OK
               ? 0
               : -1;
}

static int suite_clean(void)
{
    http_server_stop(srv);
    edc_callback_close(cb);
    store_close(st);
    return 0;
}

/* Before http_server_set_edc the route does not exist. */
static void test_off_is_404(void)
{
    struct response r;
    post_auth(terminated_tp1, &r);
    CU_ASSERT_EQUAL(r.status, 404);
    free(r.body);
    char *body = NULL;
    int status = 0;
    CU_ASSERT_EQUAL(ops_http_get(addr, "/callbacks/edc", &status, &body), 0);
    CU_ASSERT_EQUAL(status, 404);
    free(body);
    http_server_set_edc(srv, cb);
}

static void test_unauthorized(void)
{
    static const char *const headers[] = {
        NULL,                              /* absent */
        "X-Api-Key: \r\n",                 /* empty */
        "X-Api-Key: unit-secret-4f1\r\n",  /* a prefix */
        "X-Api-Key: " CODE "x\r\n",        /* an extension */
        "X-Api-Key: Unit-secret-4f1d\r\n", /* case matters in the value */
        "Authorization: " CODE "\r\n",     /* another header */
    };
    uint64_t before = metrics_get_callbacks("unauthorized");
    for (size_t i = 0; i < sizeof(headers) / sizeof(headers[0]); i++) {
        struct response r;
        post(headers[i], terminated_tp1, &r);
        CU_ASSERT_EQUAL(r.status, 401);
        CU_ASSERT_PTR_NOT_NULL(strstr(r.body, "\"error\""));
        free(r.body);
    }
    CU_ASSERT_EQUAL(metrics_get_callbacks("unauthorized") - before,
                    sizeof(headers) / sizeof(headers[0]));
    /* the header's name is case-insensitive, as HTTP says: not a 401 */
    struct response r;
    post("x-api-key: " CODE "\r\n", "{}", &r);
    CU_ASSERT_EQUAL(r.status, 400);
    free(r.body);
}

static void test_bad_requests(void)
{
    static const struct {
        const char *body;
        const char *reason;
    } cases[] = {
        {"{bad", "not well-formed JSON"},
        {"", "body: empty"},
        {"[]", "not a JSON object"},
        {"{\"id\":\"e\",\"type\":\"TransferProcessTerminated\",\"payload\":{"
         "\"type\":\"CONSUMER\"}}",
         "payload.transferProcessId: missing"},
    };
    uint64_t before = metrics_get_callbacks("bad_request");
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        struct response r;
        post_auth(cases[i].body, &r);
        CU_ASSERT_EQUAL(r.status, 400);
        CU_ASSERT_PTR_NOT_NULL(strstr(r.head, "application/json"));
        CU_ASSERT_PTR_NOT_NULL(strstr(r.body, "{\"error\":\""));
        CU_ASSERT_PTR_NOT_NULL(strstr(r.body, cases[i].reason));
        free(r.body);
    }
    /* announced over 1 MiB: refused on the headers, no body sent */
    struct response r;
    post("X-Api-Key: " CODE "\r\nContent-Length: 2097152\r\n", NULL, &r);
    CU_ASSERT_EQUAL(r.status, 400);
    CU_ASSERT_PTR_NOT_NULL(strstr(r.body, "larger than 1048576 bytes"));
    free(r.body);
    CU_ASSERT_EQUAL(metrics_get_callbacks("bad_request") - before, 5);
}

static void test_method_not_allowed(void)
{
    struct response r;
    memset(&r, 0, sizeof(r));
    CU_ASSERT_EQUAL_FATAL(ops_http_request(addr, "GET", "/callbacks/edc",
                                           &r.status, r.head, sizeof(r.head),
                                           &r.body),
                          0);
    CU_ASSERT_EQUAL(r.status, 405);
    CU_ASSERT_PTR_NOT_NULL(strstr(r.head, "Allow: POST"));
    free(r.body);
}

/* Events that end nothing need no store: 204 even before it is open. */
static void test_ignored(void)
{
    static const char *const bodies[] = {
        "{\"id\":\"e1\",\"type\":\"TransferProcessTerminated\",\"payload\":{"
        "\"transferProcessId\":\"tp-1\",\"type\":\"PROVIDER\"}}",
        "{\"id\":\"e2\",\"type\":\"TransferProcessStarted\",\"payload\":{"
        "\"transferProcessId\":\"tp-1\",\"type\":\"CONSUMER\",\"dataAddress\":"
        "{\"authorization\":\"tok\"}}}",
        "{\"id\":\"e3\",\"type\":\"TransferProcessCompleted\",\"payload\":{"
        "\"transferProcessId\":\"tp-1\"}}",
    };
    uint64_t before = metrics_get_callbacks("ignored");
    for (size_t i = 0; i < sizeof(bodies) / sizeof(bodies[0]); i++) {
        struct response r;
        post_auth(bodies[i], &r);
        CU_ASSERT_EQUAL(r.status, 204);
        CU_ASSERT_STRING_EQUAL(r.body, "");
        free(r.body);
    }
    CU_ASSERT_EQUAL(metrics_get_callbacks("ignored") - before, 3);
}

static void test_unavailable_state(void)
{
    struct response r;
    post_auth(terminated_tp1, &r);
    CU_ASSERT_EQUAL(r.status, 503);
    CU_ASSERT_PTR_NOT_NULL(strstr(r.body, "not open yet"));
    free(r.body);

    edc_callback_set_store(cb, st);
    metrics_set_restoring(1);
    post_auth(terminated_tp1, &r);
    CU_ASSERT_EQUAL(r.status, 503);
    CU_ASSERT_PTR_NOT_NULL(strstr(r.body, "restoring"));
    free(r.body);
    metrics_set_restoring(0);
}

static void test_unknown_transfer_id(void)
{
    static const char body[] =
        "{\"id\":\"cb-2\",\"type\":\"TransferProcessSuspended\",\"payload\":{"
        "\"transferProcessId\":\"tp-nobody\",\"type\":\"CONSUMER\"}}";
    uint64_t before = metrics_get_callbacks("not_found");
    struct response r;
    post_auth(body, &r);
    CU_ASSERT_EQUAL(r.status, 200);
    CU_ASSERT_STRING_EQUAL(r.body, "{\"status\":\"not_found\"}\n");
    free(r.body);
    CU_ASSERT_EQUAL(metrics_get_callbacks("not_found") - before, 1);
}

/* The connection is found, the broker never answers: 503 within the
 * producer's bound (plus its margin), never a hang, never a 200. */
static void test_broker_down(void)
{
    uint64_t before = metrics_get_callbacks("unavailable");
    int64_t t0 = edr_clock_ms();
    struct response r;
    post_auth(terminated_tp1, &r);
    int64_t took = edr_clock_ms() - t0;
    CU_ASSERT_EQUAL(r.status, 503);
    CU_ASSERT_PTR_NOT_NULL(strstr(r.body, "not published"));
    CU_ASSERT_TRUE(took < EDC_PUBLISH_TIMEOUT_MS + 3000);
    free(r.body);
    CU_ASSERT_EQUAL(metrics_get_callbacks("unavailable") - before, 1);
    CU_ASSERT_EQUAL(metrics_get_callbacks("expired"), 0);
    /* the route's thread was the only one waiting: /healthz answered
     * meanwhile is checked by test_http; here: it answers right after */
    char *b = NULL;
    int status = 0;
    CU_ASSERT_EQUAL(ops_http_get(addr, "/healthz", &status, &b), 0);
    CU_ASSERT_EQUAL(status, 200);
    free(b);
}

static void test_body_ceiling(void)
{
    struct edc_body b = {0};
    static char chunk[65536];
    memset(chunk, 'x', sizeof(chunk));
    size_t n = 0;
    while (n + sizeof(chunk) <= EDC_EVENT_MAX_BYTES) {
        CU_ASSERT_EQUAL_FATAL(edc_body_append(&b, chunk, sizeof(chunk)), 0);
        n += sizeof(chunk);
    }
    CU_ASSERT_EQUAL(b.len, EDC_EVENT_MAX_BYTES);
    CU_ASSERT_EQUAL(b.too_large, 0);
    CU_ASSERT_EQUAL(edc_body_append(&b, chunk, 1), 0);
    CU_ASSERT_EQUAL(b.too_large, 1);
    CU_ASSERT_PTR_NULL(b.data); /* dropped, not kept growing */
    int rc = 0;
    while (rc == 0 && b.seen <= EDC_BODY_DISCARD_MAX)
        rc = edc_body_append(&b, chunk, sizeof(chunk));
    CU_ASSERT_EQUAL(rc, -2);
    CU_ASSERT_PTR_NULL(b.data);
    edc_body_free(&b);
}

static void register_suites(void)
{
    CU_pSuite s = CU_add_suite("EDC callback route", suite_init, suite_clean);
    CU_add_test(s, "off: 404", test_off_is_404);
    CU_add_test(s, "401", test_unauthorized);
    CU_add_test(s, "400", test_bad_requests);
    CU_add_test(s, "405", test_method_not_allowed);
    CU_add_test(s, "204", test_ignored);
    CU_add_test(s, "503 store not open, restoring", test_unavailable_state);
    CU_add_test(s, "200 unknown transfer id", test_unknown_transfer_id);
    CU_add_test(s, "503 broker down", test_broker_down);
    CU_add_test(s, "body ceiling", test_body_ceiling);
}

int main(void)
{
    signal(SIGPIPE, SIG_IGN);
    static const cunit_register_fn regs[] = {register_suites, NULL};
    return cunit_main(regs);
}

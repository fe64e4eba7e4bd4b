/* test_fault_mock.c: the worker's consumer loop against librdkafka's mock
 * cluster with broker errors injected (issue 9, tests/fault/README.md).
 *
 * The test process creates a 3-broker mock cluster, produces a seeded
 * random sequence of events (and malformed records) to a 6-partition
 * topic on it, then runs the real edr-worker binary (file store,
 * --exit-when-caught-up) against the mock bootstrap servers while it
 * injects faults: request errors and disconnects on Fetch, ListOffsets,
 * Metadata and Produce (the dead-letter writes), a partition leader that
 * moves, and a broker taken down and brought back. Afterwards the file
 * store must hold exactly the state computed here, every malformed record
 * must be in the dead-letter topic with its edr-source-* headers, and the
 * worker must have exited 0. Needs no server: label unit.
 * EDR_FAULT_SEED=n replays a run. */
#include "base/clock.h"
#include "stores/store.h"
#include "tests/support/cunit_main.h"
#include "tests/support/kafka_util.h"

#include <CUnit/CUnit.h>
#include <librdkafka/rdkafka.h>
#include <librdkafka/rdkafka_mock.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#ifndef EDR_WORKER_BIN
#error "EDR_WORKER_BIN must name the edr-worker binary"
#endif

/* Kafka protocol request types (ApiKey). */
#define API_PRODUCE 0
#define API_FETCH 1
#define API_LIST_OFFSETS 2
#define API_METADATA 3

#define N_CONNS 40
#define N_EVENTS 1500
#define PARTITIONS 6
#define TOPIC "edr.fault.mock"
#define DLQ_TOPIC "edr.fault.mock.dlq"

struct conn {
    char party[32], address[64], query[24], policy[24];
    int has;     /* an entry is stored */
    char tp[48]; /* its transferProcessId */
    int seq;     /* the event that wrote it */
    int n_tp;
};

struct bad {
    int32_t partition;
    int64_t offset;
    int seen;
};

static struct conn conns[N_CONNS];
static struct bad bads[N_EVENTS];
static size_t n_bad;
static uint64_t rng_state;
static unsigned seed;

static uint64_t rnd(void)
{
    /* xorshift64*: reproducible from the seed on every platform */
    rng_state ^= rng_state >> 12;
    rng_state ^= rng_state << 25;
    rng_state ^= rng_state >> 27;
    return rng_state * 2685821657736338717ull;
}

static void dr_cb(rd_kafka_t *rk, const rd_kafka_message_t *m, void *opaque)
{
    (void)rk;
    (void)opaque;
    struct bad *b = m->_private;
    if (m->err) {
        fprintf(stderr, "delivery failed: %s\n", rd_kafka_err2str(m->err));
        return;
    }
    if (b) {
        b->partition = m->partition;
        b->offset = m->offset;
    }
}

static void produce(rd_kafka_t *rk, const struct conn *c, const char *value,
                    struct bad *b)
{
    rd_kafka_resp_err_t err;
    do {
        err = rd_kafka_producev(rk, RD_KAFKA_V_TOPIC(TOPIC),
                                RD_KAFKA_V_KEY(c->party, 16),
                                RD_KAFKA_V_VALUE((void *)value, strlen(value)),
                                RD_KAFKA_V_MSGFLAGS(RD_KAFKA_MSG_F_COPY),
                                RD_KAFKA_V_OPAQUE(b), RD_KAFKA_V_END);
        if (err == RD_KAFKA_RESP_ERR__QUEUE_FULL)
            rd_kafka_poll(rk, 10);
    } while (err == RD_KAFKA_RESP_ERR__QUEUE_FULL);
    CU_ASSERT_EQUAL_FATAL(err, RD_KAFKA_RESP_ERR_NO_ERROR);
    rd_kafka_poll(rk, 0);
}

static int key_json(char *out, size_t n, const struct conn *c)
{
    return snprintf(out, n,
                    "\"counter_party_id\":\"%s\",\"counter_party_address\":"
                    "\"%s\",\"query_checksum\":\"%s\",\"policy_checksum\":"
                    "\"%s\"",
                    c->party, c->address, c->query, c->policy);
}

/* Produces the seeded sequence and computes the state it must leave. */
static void produce_events(rd_kafka_t *rk)
{
    char keys[512], value[2048];
    for (int i = 0; i < N_CONNS; i++) {
        struct conn *c = &conns[i];
        snprintf(c->party, sizeof(c->party), "BPNL%012d", i);
        snprintf(c->address, sizeof(c->address),
                 "https://p%d.example.com/api/v1/dsp", i % 7);
        snprintf(c->query, sizeof(c->query), "q%016llx",
                 (unsigned long long)(rnd() >> 8));
        snprintf(c->policy, sizeof(c->policy), "p%016llx",
                 (unsigned long long)(rnd() >> 8));
    }
    for (int seq = 0; seq < N_EVENTS; seq++) {
        struct conn *c = &conns[rnd() % N_CONNS];
        int r = (int)(rnd() % 100);
        key_json(keys, sizeof(keys), c);
        if (r < 55) { /* negotiated or renewed */
            int renew = r >= 35 && c->has;
            if (!renew)
                c->n_tp++;
            char tp[48];
            snprintf(tp, sizeof(tp), "tp-%s-%d", c->party, c->n_tp);
            if (renew)
                snprintf(tp, sizeof(tp), "%s", c->tp);
            snprintf(value, sizeof(value),
                     "{\"specversion\":\"1.0\",\"id\":\"e%d\",\"source\":"
                     "\"urn:fault-mock\",\"type\":\"edr.%s\",\"data\":{%s,"
                     "\"edr\":{\"@type\":\"x\",\"providerId\":\"p\","
                     "\"transferProcessId\":\"%s\",\"seq\":%d,"
                     "\"pad\":\"%0200d\"}}}",
                     seq, renew ? "renewed" : "negotiated", keys, tp, seq, 0);
            produce(rk, c, value, NULL);
            c->has = 1;
            c->seq = seq;
            snprintf(c->tp, sizeof(c->tp), "%s", tp);
        } else if (r < 88) { /* expired: matching, stale, without id */
            char tpid[96] = "";
            int kind = r < 70 ? 0 : r < 80 ? 1 : 2;
            if (kind == 0)
                snprintf(tpid, sizeof(tpid), ",\"transfer_process_id\":\"%s\"",
                         c->has ? c->tp : "none");
            else if (kind == 1)
                snprintf(tpid, sizeof(tpid),
                         ",\"transfer_process_id\":\"stale-%d\"", seq);
            snprintf(value, sizeof(value),
                     "{\"specversion\":\"1.0\",\"id\":\"e%d\",\"source\":"
                     "\"urn:fault-mock\",\"type\":\"edr.expired\",\"data\":"
                     "{%s%s}}",
                     seq, keys, tpid);
            produce(rk, c, value, NULL);
            if (kind != 1)
                c->has = 0;
        } else { /* malformed, three kinds */
            int kind = (int)(rnd() % 3);
            if (kind == 0)
                snprintf(value, sizeof(value), "{\"specversion\":\"1.0\",");
            else if (kind == 1)
                snprintf(value, sizeof(value),
                         "{\"id\":\"e%d\",\"source\":\"s\",\"type\":"
                         "\"edr.negotiated\",\"data\":{%s,\"edr\":{}}}",
                         seq, keys);
            else
                snprintf(value, sizeof(value),
                         "{\"specversion\":\"1.0\",\"id\":\"e%d\",\"source\":"
                         "\"s\",\"type\":\"edr.revoked\",\"data\":{%s}}",
                         seq, keys);
            bads[n_bad].partition = -1;
            produce(rk, c, value, &bads[n_bad++]);
        }
    }
    CU_ASSERT_EQUAL_FATAL(rd_kafka_flush(rk, 30000),
                          RD_KAFKA_RESP_ERR_NO_ERROR);
    for (size_t i = 0; i < n_bad; i++)
        CU_ASSERT_FATAL(bads[i].partition >= 0);
}

static pid_t spawn_worker(const char *bootstraps, const char *dir)
{
    char path[512];
    snprintf(path, sizeof(path), "%s/edr.json", dir);
    pid_t pid = fork();
    if (pid != 0)
        return pid;
    setenv("EDR_KAFKA_BROKERS", bootstraps, 1);
    setenv("EDR_TOPIC", TOPIC, 1);
    setenv("EDR_DLQ_TOPIC", DLQ_TOPIC, 1);
    setenv("EDR_STORE", "file", 1);
    setenv("EDR_FILE_PATH", path, 1);
    setenv("EDR_HTTP_ADDR", "off", 1);
    /* the mock cluster has no Admin API: no changelog (v1 behaviour) */
    setenv("EDR_CHANGELOG_TOPIC", "off", 1);
    /* Nothing listens there: lookups are not under test and the
     * responder retries in its own threads. */
    setenv("EDR_REDIS_URL", "redis://127.0.0.1:1/0", 1);
    setenv("EDR_LOG_LEVEL", "warn", 1);
    execl(EDR_WORKER_BIN, EDR_WORKER_BIN, "--exit-when-caught-up", "-X",
          "max.partition.fetch.bytes=1500", "-X", "fetch.wait.max.ms=20", "-X",
          "reconnect.backoff.max.ms=200", (char *)NULL);
    _exit(127);
}

/* Injects the faults while the worker runs; returns its exit status. */
static int run_with_faults(rd_kafka_mock_cluster_t *mc, pid_t pid)
{
    int status = -1;
    int step = 0;
    for (int t = 0; t < 1200; t++) { /* 100 ms steps, at most 120 s */
        pid_t w = waitpid(pid, &status, WNOHANG);
        if (w == pid)
            return status;
        switch (step++) {
        case 3:
            rd_kafka_mock_push_request_errors(
                mc, API_FETCH, 4, RD_KAFKA_RESP_ERR_NOT_LEADER_FOR_PARTITION,
                RD_KAFKA_RESP_ERR__TRANSPORT,
                RD_KAFKA_RESP_ERR_REQUEST_TIMED_OUT,
                RD_KAFKA_RESP_ERR_UNKNOWN_TOPIC_OR_PART);
            rd_kafka_mock_push_request_errors(
                mc, API_PRODUCE, 3, RD_KAFKA_RESP_ERR_NOT_ENOUGH_REPLICAS,
                RD_KAFKA_RESP_ERR__TRANSPORT,
                RD_KAFKA_RESP_ERR_REQUEST_TIMED_OUT);
            break;
        case 6:
            rd_kafka_mock_push_request_errors(
                mc, API_LIST_OFFSETS, 2, RD_KAFKA_RESP_ERR__TRANSPORT,
                RD_KAFKA_RESP_ERR_LEADER_NOT_AVAILABLE);
            rd_kafka_mock_push_request_errors(mc, API_METADATA, 2,
                                              RD_KAFKA_RESP_ERR__TRANSPORT,
                                              RD_KAFKA_RESP_ERR__TRANSPORT);
            break;
        case 7:
            rd_kafka_mock_partition_set_leader(mc, TOPIC, 1, 3);
            break;
        case 8:
            rd_kafka_mock_broker_set_down(mc, 2);
            break;
        case 23: /* 1.5 s later */
            rd_kafka_mock_broker_set_up(mc, 2);
            break;
        case 25:
            rd_kafka_mock_push_request_errors(
                mc, API_FETCH, 3, RD_KAFKA_RESP_ERR__TRANSPORT,
                RD_KAFKA_RESP_ERR_NOT_LEADER_FOR_PARTITION,
                RD_KAFKA_RESP_ERR__TRANSPORT);
            rd_kafka_mock_partition_set_leader(mc, TOPIC, 4, 1);
            break;
        default:
            break;
        }
        edr_sleep_ms(100);
    }
    kill(pid, SIGKILL);
    waitpid(pid, &status, 0);
    CU_FAIL("the worker did not catch up within 120 s");
    return status;
}

static void check_store(const char *dir)
{
    char path[512];
    struct store_err err = {0};
    snprintf(path, sizeof(path), "%s/edr.json", dir);
    struct store *st = file_store_open(path, &err);
    CU_ASSERT_PTR_NOT_NULL_FATAL(st);
    uint64_t n = 0, want = 0;
    int wrong = 0;
    for (int i = 0; i < N_CONNS; i++) {
        struct conn *c = &conns[i];
        struct edr_key k = {.counter_party_id = c->party,
                            .counter_party_address = c->address,
                            .query_checksum = c->query,
                            .policy_checksum = c->policy};
        struct store_record rec = {0};
        int rc = st->ops->get(st, &k, &rec, &err);
        if (!c->has) {
            wrong += rc != STORE_NOT_FOUND;
            continue;
        }
        want++;
        char seq[32];
        snprintf(seq, sizeof(seq), "\"seq\":%d,", c->seq);
        if (rc != STORE_OK || strcmp(rec.transfer_id, c->tp) != 0 ||
            !strstr(rec.entry_json, seq) || strstr(rec.entry_json, "@type")) {
            wrong++;
            fprintf(stderr, "connection %d: want %s seq %d, got %s\n", i, c->tp,
                    c->seq, rc == STORE_OK ? rec.entry_json : "none");
        }
        if (rc == STORE_OK)
            store_record_clear(&rec);
    }
    CU_ASSERT_EQUAL(wrong, 0);
    CU_ASSERT_EQUAL(st->ops->count(st, NULL, &n, &err), STORE_OK);
    CU_ASSERT_EQUAL(n, want);
    store_close(st);
}

static void check_dlq(const char *bootstraps)
{
    char errstr[256];
    static const char *const props[] = {"group.id", "fault-mock-check", NULL};
    rd_kafka_t *rk = test_kafka_client_new(RD_KAFKA_CONSUMER, bootstraps, props,
                                           NULL, NULL, errstr, sizeof(errstr));
    CU_ASSERT_PTR_NOT_NULL_FATAL(rk);
    rd_kafka_topic_partition_list_t *l = rd_kafka_topic_partition_list_new(1);
    rd_kafka_topic_partition_list_add(l, DLQ_TOPIC, 0)->offset =
        RD_KAFKA_OFFSET_BEGINNING;
    rd_kafka_assign(rk, l);
    rd_kafka_topic_partition_list_destroy(l);
    size_t got = 0, strays = 0;
    for (int idle = 0; idle < 30 && got < n_bad;) {
        rd_kafka_message_t *m = rd_kafka_consumer_poll(rk, 100);
        if (!m) {
            idle++;
            continue;
        }
        if (m->err) {
            rd_kafka_message_destroy(m);
            continue;
        }
        rd_kafka_headers_t *h = NULL;
        const void *v;
        size_t vn;
        char part[16] = "", off[32] = "";
        if (!rd_kafka_message_headers(m, &h) &&
            !rd_kafka_header_get_last(h, "edr-source-partition", &v, &vn))
            snprintf(part, sizeof(part), "%.*s", (int)vn, (const char *)v);
        if (h && !rd_kafka_header_get_last(h, "edr-source-offset", &v, &vn))
            snprintf(off, sizeof(off), "%.*s", (int)vn, (const char *)v);
        int has_error =
            h && !rd_kafka_header_get_last(h, "edr-error", &v, &vn) && vn > 0;
        int found = 0;
        for (size_t i = 0; i < n_bad; i++)
            if (bads[i].partition == atoi(part) &&
                bads[i].offset == atoll(off) && part[0] && off[0]) {
                got += bads[i].seen == 0;
                bads[i].seen++;
                found = 1;
            }
        strays += !found || !has_error;
        rd_kafka_message_destroy(m);
    }
    rd_kafka_consumer_close(rk);
    rd_kafka_destroy(rk);
    CU_ASSERT_EQUAL(got, n_bad);
    CU_ASSERT_EQUAL(strays, 0);
}

static void test_consumer_loop_under_broker_errors(void)
{
    char errstr[256], dir[] = "/tmp/edr-fault-mock-XXXXXX";
    const char *s = getenv("EDR_FAULT_SEED");
    seed = s && atoi(s) > 0 ? (unsigned)atoi(s) : (unsigned)time(NULL);
    rng_state = 0x9e3779b97f4a7c15ull ^ seed;
    printf("\n  seed %u (EDR_FAULT_SEED=%u replays it)\n", seed, seed);
    CU_ASSERT_PTR_NOT_NULL_FATAL(mkdtemp(dir));

    /* One record per batch, so the worker's small fetches (see
     * spawn_worker) take many round trips for the faults to land in. */
    static const char *const props[] = {"test.mock.num.brokers",
                                        "3",
                                        "enable.idempotence",
                                        "true",
                                        "log_level",
                                        "2",
                                        "batch.num.messages",
                                        "1",
                                        "linger.ms",
                                        "0",
                                        NULL};
    rd_kafka_t *rk = test_kafka_client_new(RD_KAFKA_PRODUCER, NULL, props,
                                           dr_cb, NULL, errstr, sizeof(errstr));
    if (!rk)
        fprintf(stderr, "\n  mock producer: %s\n", errstr);
    CU_ASSERT_PTR_NOT_NULL_FATAL(rk);
    rd_kafka_mock_cluster_t *mc = rd_kafka_handle_mock_cluster(rk);
    CU_ASSERT_PTR_NOT_NULL_FATAL(mc);
    const char *bootstraps = rd_kafka_mock_cluster_bootstraps(mc);
    rd_kafka_mock_topic_create(mc, TOPIC, PARTITIONS, 1);
    rd_kafka_mock_topic_create(mc, DLQ_TOPIC, 1, 1);
    for (int p = 0; p < PARTITIONS; p++)
        rd_kafka_mock_partition_set_leader(mc, TOPIC, p, 1 + p % 3);
    rd_kafka_mock_partition_set_leader(mc, DLQ_TOPIC, 0, 1);

    produce_events(rk);
    printf("  %d events, %zu malformed, faults: Fetch/Produce/ListOffsets/"
           "Metadata errors, 2 leader moves, broker 2 down 1.5 s\n",
           N_EVENTS, n_bad);
    for (int b = 1; b <= 3; b++)
        rd_kafka_mock_broker_set_rtt(mc, b, 20);

    pid_t pid = spawn_worker(bootstraps, dir);
    CU_ASSERT_FATAL(pid > 0);
    int status = run_with_faults(mc, pid);
    CU_ASSERT(WIFEXITED(status) && WEXITSTATUS(status) == 0);
    for (int b = 1; b <= 3; b++)
        rd_kafka_mock_broker_set_rtt(mc, b, 0);

    check_store(dir);
    check_dlq(bootstraps);

    rd_kafka_destroy(rk);
    char cmd[600];
    snprintf(cmd, sizeof(cmd), "rm -rf '%s'", dir);
    if (system(cmd) != 0)
        fprintf(stderr, "could not remove %s\n", dir);
}

static void register_tests(void)
{
    CU_pSuite s = CU_add_suite("fault_mock", NULL, NULL);
    CU_add_test(s, "consumer loop under broker errors",
                test_consumer_loop_under_broker_errors);
}

int main(void)
{
    static const cunit_register_fn regs[] = {register_tests, NULL};
    return cunit_main(regs);
}

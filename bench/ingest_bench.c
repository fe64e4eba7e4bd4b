/* ingest_bench.c: end-to-end ingest throughput of edr-worker (issue 5).
 *
 * Pre-fills a fresh topic (6 partitions) with N events of about 600 bytes
 * (default 1,000,000, over N/4 connections: negotiations, renewals and
 * expiries), then, for each store, starts one edr-worker-test (the test build)
 * with
 * --exit-when-caught-up and reports how long it took from process start
 * until every event was applied, and the rate. The memory run is also the
 * time to rebuild a memory store from the whole topic.
 *
 * usage: ingest_bench [--events N] [--stores memory,file,postgres]
 *                     [--topic T (reuse, no pre-fill)] [--keep]
 *                     [--worker PATH] | --delete T
 * The pre-filled topic is deleted at the end unless --keep.
 * env:   EDR_KAFKA_BROKERS, EDR_PG_DSN (postgres run)
 * Topics are made and dropped with tests/support/kafka_util.c (compiled
 * in, bench/CMakeLists.txt).
 * Prints one JSON line per store on stdout. */
#include "base/clock.h"
#include "schemas/edr_key.h"
#include "schemas/event.h"
#include "tests/support/kafka_util.h"

#include <errno.h>
#include <libpq-fe.h>
#include <librdkafka/rdkafka.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

static const char *dlq_name(const char *topic, char *buf, size_t n)
{
    snprintf(buf, n, "%s.dlq", topic);
    return buf;
}

/* Event i of the stream: connection i % keys; the first round
 * negotiates, later rounds renew, every 8th event expires. */
static size_t make_event(long i, long keys, char *buf, size_t cap,
                         char ckey[EDR_CONNECTION_KEY_LEN + 1])
{
    long c = i % keys, round = i / keys;
    char party[32], addr[96], query[80], policy[80], tp[48];
    snprintf(party, sizeof(party), "BPNL%012ld", c % 5000);
    snprintf(addr, sizeof(addr), "https://provider-%ld.example.com/api/v1/dsp",
             c % 5000);
    snprintf(query, sizeof(query), "%064lx", c * 2654435761UL);
    snprintf(policy, sizeof(policy), "%064lx", c * 40503UL + 7);
    snprintf(tp, sizeof(tp), "tp-%ld-%ld", c, round);
    struct edr_key k = {party, addr, query, policy};
    edr_connection_key(&k, ckey);
    const char *type = (i % 8 == 7) ? "edr.expired"
                       : round == 0 ? "edr.negotiated"
                                    : "edr.renewed";
    int n;
    if (i % 8 == 7)
        n = snprintf(buf, cap,
                     "{\"specversion\":\"1.0\",\"id\":\"ev-%ld\","
                     "\"source\":\"urn:bench\",\"type\":\"%s\","
                     "\"data\":{\"counter_party_id\":\"%s\","
                     "\"counter_party_address\":\"%s\","
                     "\"query_checksum\":\"%s\",\"policy_checksum\":\"%s\"}}",
                     i, type, party, addr, query, policy);
    else
        n = snprintf(
            buf, cap,
            "{\"specversion\":\"1.0\",\"id\":\"ev-%ld\","
            "\"source\":\"urn:bench\",\"type\":\"%s\",\"subject\":\"%s\","
            "\"data\":{\"counter_party_id\":\"%s\","
            "\"counter_party_address\":\"%s\",\"query_checksum\":\"%s\","
            "\"policy_checksum\":\"%s\",\"edr\":{\"@type\":"
            "\"EndpointDataReference\",\"providerId\":\"%s\","
            "\"transferProcessId\":\"%s\",\"assetId\":\"asset-%ld\","
            "\"agreementId\":\"agreement-%ld\",\"endpoint\":\"https://"
            "dataplane-%ld.example.com/api/public\",\"authType\":\"bearer\","
            "\"authorization\":\"eyJhbGciOiJSUzI1NiJ9.e30.c2ln\","
            "\"expirationDate\":1795000000000}}}",
            i, type, tp, party, addr, query, policy, party, tp, c, c, c % 5000);
    return n > 0 && (size_t)n < cap ? (size_t)n : 0;
}

static void dr_cb(rd_kafka_t *rk, const rd_kafka_message_t *m, void *opaque)
{
    long *failed = opaque;
    (void)rk;
    if (m->err)
        (*failed)++;
}

static int prefill(const char *brokers, const char *topic, long events)
{
    char errstr[512];
    long failed = 0;
    static const char *const props[] = {"linger.ms",
                                        "20",
                                        "batch.size",
                                        "1000000",
                                        "batch.num.messages",
                                        "10000",
                                        "compression.codec",
                                        "none",
                                        "acks",
                                        "1",
                                        "queue.buffering.max.messages",
                                        "1000000",
                                        "queue.buffering.max.kbytes",
                                        "1048576",
                                        NULL};
    rd_kafka_t *rk =
        test_kafka_client_new(RD_KAFKA_PRODUCER, brokers, props, dr_cb, &failed,
                              errstr, sizeof(errstr));
    if (!rk) {
        fprintf(stderr, "prefill: %s\n", errstr);
        return -1;
    }
    long keys = events / 4 > 0 ? events / 4 : 1;
    size_t bytes = 0;
    double t0 = edr_clock_s();
    for (long i = 0; i < events; i++) {
        char buf[2048], ckey[EDR_CONNECTION_KEY_LEN + 1];
        size_t n = make_event(i, keys, buf, sizeof(buf), ckey);
        bytes += n;
        for (;;) {
            rd_kafka_resp_err_t err =
                rd_kafka_producev(rk, RD_KAFKA_V_TOPIC(topic),
                                  RD_KAFKA_V_MSGFLAGS(RD_KAFKA_MSG_F_COPY),
                                  RD_KAFKA_V_KEY(ckey, EDR_CONNECTION_KEY_LEN),
                                  RD_KAFKA_V_VALUE(buf, n), RD_KAFKA_V_END);
            if (err == RD_KAFKA_RESP_ERR__QUEUE_FULL) {
                rd_kafka_poll(rk, 10);
                continue;
            }
            if (err) {
                fprintf(stderr, "prefill: %s\n", rd_kafka_err2str(err));
                rd_kafka_destroy(rk);
                return -1;
            }
            break;
        }
        if (i % 10000 == 0)
            rd_kafka_poll(rk, 0);
    }
    rd_kafka_flush(rk, 120000);
    rd_kafka_destroy(rk);
    fprintf(stderr,
            "prefill: %ld events (avg %zu bytes) in %.1f s, %ld failed\n",
            events, bytes / (size_t)events, edr_clock_s() - t0, failed);
    return failed ? -1 : 0;
}

static void drop_pg_tables(const char *dsn, const char *table)
{
    PGconn *pg = PQconnectdb(dsn);
    if (PQstatus(pg) == CONNECTION_OK) {
        char sql[256];
        snprintf(sql, sizeof(sql), "DROP TABLE IF EXISTS %s, %s_offsets", table,
                 table);
        PQclear(PQexec(pg, sql));
    }
    PQfinish(pg);
}

/* Runs one worker to caught-up; prints its JSON line. */
static int run_store(const char *worker, const char *topic, const char *store,
                     const char *tag)
{
    char file[PATH_MAX], table[96], prefix[96], out[1024] = "";
    int fds[2];
    snprintf(file, sizeof(file), "/tmp/ingest_bench_%s/store.json", tag);
    snprintf(table, sizeof(table), "bench_%s", tag);
    snprintf(prefix, sizeof(prefix), "bench_%s", tag);
    if (pipe(fds) != 0)
        return -1;
    double t0 = edr_clock_s();
    pid_t pid = fork();
    if (pid == 0) {
        dup2(fds[1], 1);
        close(fds[0]);
        close(fds[1]);
        char dlq[300];
        snprintf(dlq, sizeof(dlq), "%s.dlq", topic);
        setenv("EDR_TOPIC", topic, 1);
        setenv("EDR_DLQ_TOPIC", dlq, 1);
        setenv("EDR_STORE", store, 1);
        setenv("EDR_FILE_PATH", file, 1);
        setenv("EDR_PG_TABLE", table, 1);
        setenv("EDR_GROUP_ID", prefix, 1);
        setenv("EDR_RPC_PREFIX", prefix, 1);
        setenv("EDR_HTTP_ADDR", "off", 1);
        setenv("EDR_RPC_THREADS", "1", 1);
        if (!getenv("EDR_LOG_LEVEL"))
            setenv("EDR_LOG_LEVEL", "warn", 1);
        execl(worker, worker, "--exit-when-caught-up", (char *)NULL);
        _exit(127);
    }
    close(fds[1]);
    size_t n = 0;
    ssize_t r;
    while ((r = read(fds[0], out + n, sizeof(out) - 1 - n)) > 0)
        n += (size_t)r;
    out[n] = '\0';
    close(fds[0]);
    int status;
    waitpid(pid, &status, 0);
    double wall = edr_clock_s() - t0;
    char *nl = strchr(out, '\n');
    if (nl)
        *nl = '\0';
    int ok = WIFEXITED(status) && WEXITSTATUS(status) == 0 && out[0] == '{';
    printf("{\"store\": \"%s\", \"worker\": %s, \"wall_seconds\": %.3f}\n",
           store, ok ? out : "null", wall);
    fflush(stdout);
    if (strcmp(store, "postgres") == 0 && getenv("EDR_PG_DSN"))
        drop_pg_tables(getenv("EDR_PG_DSN"), table);
    unlink(file);
    return ok ? 0 : -1;
}

int main(int argc, char **argv)
{
    long events = 1000000;
    const char *stores = "memory,file,postgres", *topic = NULL;
    int keep = 0;
    char worker[PATH_MAX] = "", topic_buf[128], tag[64];
    const char *brokers = getenv("EDR_KAFKA_BROKERS");

    for (int i = 1; i < argc; i++) {
        if (strcmp(argv[i], "--events") == 0 && i + 1 < argc)
            events = strtol(argv[++i], NULL, 10);
        else if (strcmp(argv[i], "--stores") == 0 && i + 1 < argc)
            stores = argv[++i];
        else if (strcmp(argv[i], "--topic") == 0 && i + 1 < argc)
            topic = argv[++i];
        else if (strcmp(argv[i], "--keep") == 0)
            keep = 1;
        else if (strcmp(argv[i], "--delete") == 0 && i + 1 < argc && brokers) {
            test_kafka_delete_topic(brokers, argv[++i]);
            return 0;
        } else if (strcmp(argv[i], "--worker") == 0 && i + 1 < argc)
            snprintf(worker, sizeof(worker), "%s", argv[++i]);
        else {
            fprintf(stderr,
                    "usage: ingest_bench [--events N] [--stores "
                    "memory,file,postgres] [--topic T] [--keep] [--worker "
                    "PATH] | --delete T\n");
            return 2;
        }
    }
    if (!brokers || events <= 0) {
        fprintf(stderr, "EDR_KAFKA_BROKERS is required (eval "
                        "\"$(scripts/services.sh env)\")\n");
        return 2;
    }
    if (!worker[0]) {
        /* build/bench/ingest_bench -> build/edr-worker-test (the test
         * build: --exit-when-caught-up is a test hook) */
        char self[PATH_MAX - 32];
        ssize_t n = readlink("/proc/self/exe", self, sizeof(self) - 1);
        if (n <= 0)
            return 2;
        self[n] = '\0';
        *strrchr(self, '/') = '\0';
        snprintf(worker, sizeof(worker), "%s/../edr-worker-test", self);
    }
    snprintf(tag, sizeof(tag), "%ld_%ld", (long)getpid(), (long)time(NULL));
    char dir[128];
    snprintf(dir, sizeof(dir), "/tmp/ingest_bench_%s", tag);
    mkdir(dir, 0700);
    if (!topic) {
        snprintf(topic_buf, sizeof(topic_buf), "ingest_bench_%s", tag);
        topic = topic_buf;
        char errstr[512];
        if (test_kafka_create_topic(brokers, topic, 6, errstr,
                                    sizeof(errstr)) != 0) {
            fprintf(stderr, "create topic: %s\n", errstr);
            return 3;
        }
        if (prefill(brokers, topic, events))
            return 3;
    }
    int rc = 0;
    char list[256];
    snprintf(list, sizeof(list), "%s", stores);
    for (char *s = strtok(list, ","); s; s = strtok(NULL, ","))
        rc |= run_store(worker, topic, s, tag);
    rmdir(dir);
    if (topic == topic_buf && !keep) {
        test_kafka_delete_topic(brokers, topic);
        char dlq[300];
        test_kafka_delete_topic(brokers, dlq_name(topic, dlq, sizeof(dlq)));
    } else {
        fprintf(stderr, "topic %s kept (--topic %s to rerun, --delete %s)\n",
                topic, topic, topic);
    }
    return rc ? 3 : 0;
}

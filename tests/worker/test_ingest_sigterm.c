/* test_ingest_sigterm.c: SIGTERM at any moment of a postgres-mode start
 * ends in exit 0 (issue 15).
 *
 * A postgres worker shares a consumer group with the cooperative-sticky
 * assignor. librdkafka 2.0 (Debian 12) aborts in rd_kafka_destroy when
 * such a member is closed after its JoinGroup was answered but before its
 * first assignment (rd_kafka_sticky_assignor_state_destroy: Assertion
 * `assignor_state' failed), which an early SIGTERM hits. 50 release
 * workers ($EDR_WORKER_BIN, default ../edr-worker), 5 at a time, all in
 * one group (so they join while others leave), get SIGTERM at a random moment 0
 * to 2 s after their start (the moment their SIGTERM handler is in place, the
 * first thing main() does); every one must exit 0 within 30 s.
 * EDR_SIGTERM_SEED=n replays a run. Needs the local stack (Kafka, Redis,
 * PostgreSQL). */
#include "base/clock.h"
#include "tests/support/cunit_main.h"
#include "tests/support/kafka_util.h"
#include "tests/support/ops_util.h"

#include <CUnit/CUnit.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#define RUNS 50
#define AT_ONCE 5
#define MAX_DELAY_MS 2000
#define EXIT_WAIT_MS 30000

/* 1 once pid catches SIGTERM (its handler is installed: from then on
 * "started" has a meaning the worker controls; a signal before that, in
 * the dynamic loader, kills any program). Waits up to 5 s. */
static int wait_handler(pid_t pid)
{
    char path[64], line[256];
    snprintf(path, sizeof(path), "/proc/%d/status", (int)pid);
    for (int i = 0; i < 500; i++) {
        FILE *f = fopen(path, "r");
        unsigned long long mask = 0;
        while (f && fgets(line, sizeof(line), f))
            if (strncmp(line, "SigCgt:", 7) == 0)
                mask = strtoull(line + 7, NULL, 16);
        if (f)
            fclose(f);
        if (mask & (1ull << (SIGTERM - 1)))
            return 1;
        edr_sleep_ms(10);
    }
    return 0;
}

struct run {
    pid_t pid;
    long start, kill_at;
    int delay_ms, code;
    char group[96], env_group[128], log[256];
};

static void test_sigterm_any_moment(void)
{
    const char *brokers = test_env("EDR_KAFKA_BROKERS");
    CU_ASSERT_FATAL(brokers && test_env("EDR_PG_DSN") &&
                    test_env("EDR_REDIS_URL"));
    char errstr[512];
    char *topic = test_unique_name("sigterm");
    char *table = test_unique_name("sigterm_t");
    char *prefix = test_unique_name("sigterm_rpc");
    CU_ASSERT_FATAL(test_kafka_create_topic(brokers, topic, 6, errstr,
                                            sizeof(errstr)) == 0);
    for (int i = 0; i < 12; i++) {
        char ev[512], key[16];
        int n = snprintf(
            ev, sizeof(ev),
            "{\"specversion\":\"1.0\",\"id\":\"s-%d\",\"source\":\"urn:t\","
            "\"type\":\"edr.negotiated\",\"data\":{\"counter_party_id\":"
            "\"BPNLSIG%d\",\"counter_party_address\":\"https://s/\","
            "\"query_checksum\":\"q\",\"policy_checksum\":\"p\",\"edr\":{"
            "\"transferProcessId\":\"tp-%d\"}}}",
            i, i, i);
        snprintf(key, sizeof(key), "k%d", i);
        CU_ASSERT_EQUAL_FATAL(test_kafka_produce(brokers, topic, key, ev,
                                                 (size_t)n, errstr,
                                                 sizeof(errstr)),
                              0);
    }
    char env_topic[200], env_table[200], env_prefix[200], env_dlq[200];
    snprintf(env_topic, sizeof(env_topic), "EDR_TOPIC=%s", topic);
    snprintf(env_table, sizeof(env_table), "EDR_PG_TABLE=%s", table);
    snprintf(env_prefix, sizeof(env_prefix), "EDR_RPC_PREFIX=%s", prefix);
    snprintf(env_dlq, sizeof(env_dlq), "EDR_DLQ_TOPIC=%s.dlq", topic);

    unsigned seed = (unsigned)time(NULL);
    const char *s = getenv("EDR_SIGTERM_SEED");
    if (s && *s)
        seed = (unsigned)strtoul(s, NULL, 10);
    printf("\n  seed %u (EDR_SIGTERM_SEED=%u replays it)", seed, seed);
    srand(seed);

    int ok = 0, bad = 0;
    long slowest = 0;
    for (int base = 0; base < RUNS; base += AT_ONCE) {
        struct run r[AT_ONCE];
        memset(r, 0, sizeof(r));
        for (int i = 0; i < AT_ONCE; i++) {
            /* One group for all: members keep joining and leaving, so
             * SIGTERMs land in every phase of a rebalance. */
            snprintf(r[i].group, sizeof(r[i].group), "%s_g", topic);
            snprintf(r[i].env_group, sizeof(r[i].env_group), "EDR_GROUP_ID=%s",
                     r[i].group);
            snprintf(r[i].log, sizeof(r[i].log), "/tmp/%s_%d.log", topic,
                     base + i);
            const char *env[] = {env_topic,           env_table,
                                 env_prefix,          env_dlq,
                                 r[i].env_group,      "EDR_STORE=postgres",
                                 "EDR_HTTP_ADDR=off", NULL};
            r[i].delay_ms = rand() % (MAX_DELAY_MS + 1);
            r[i].pid = ops_worker_start(env, r[i].log);
            r[i].code = -2;
            CU_ASSERT(r[i].pid > 0);
        }
        for (int i = 0; i < AT_ONCE; i++) {
            CU_ASSERT(r[i].pid > 0 && wait_handler(r[i].pid));
            r[i].start = edr_clock_ms();
            r[i].kill_at = r[i].start + r[i].delay_ms;
        }
        /* SIGTERM each at its moment (the moment is the test's input,
         * not a guess at some state). */
        for (int sent = 0; sent < AT_ONCE;) {
            long t = edr_clock_ms();
            sent = 0;
            for (int i = 0; i < AT_ONCE; i++) {
                if (r[i].pid > 0 && r[i].kill_at >= 0 && t >= r[i].kill_at) {
                    kill(r[i].pid, SIGTERM);
                    r[i].kill_at = -1;
                }
                sent += r[i].kill_at < 0 || r[i].pid <= 0;
            }
            if (sent < AT_ONCE)
                edr_sleep_ms(5);
        }
        long deadline = edr_clock_ms() + EXIT_WAIT_MS;
        for (int i = 0; i < AT_ONCE; i++) {
            int st = 0;
            pid_t got = 0;
            while (r[i].pid > 0 &&
                   (got = waitpid(r[i].pid, &st, WNOHANG)) == 0 &&
                   edr_clock_ms() < deadline)
                edr_sleep_ms(20);
            if (r[i].pid > 0 && got == r[i].pid) {
                r[i].code =
                    WIFEXITED(st) ? WEXITSTATUS(st) : 128 + WTERMSIG(st);
            } else if (r[i].pid > 0) {
                kill(r[i].pid, SIGKILL);
                waitpid(r[i].pid, NULL, 0);
                r[i].code = -1; /* did not stop within EXIT_WAIT_MS */
            }
            long took = edr_clock_ms() - r[i].start;
            slowest = took > slowest ? took : slowest;
            if (r[i].code == 0) {
                ok++;
                unlink(r[i].log);
            } else {
                bad++;
                fprintf(stderr,
                        "\n  run %d: SIGTERM after %d ms, exit %d (log %s)",
                        base + i, r[i].delay_ms, r[i].code, r[i].log);
                if (bad <= 2)
                    ops_dump_log(r[i].log, 15);
            }
        }
    }
    printf("\n  %d of %d exited 0; slowest start-to-exit %ld ms", ok, RUNS,
           slowest);
    CU_ASSERT_EQUAL(ok, RUNS);
    CU_ASSERT_EQUAL(bad, 0);
    free(topic);
    free(table);
    free(prefix);
}

static void register_tests(void)
{
    CU_pSuite s = CU_add_suite("ingest_sigterm", NULL, NULL);
    CU_add_test(s, "postgres: SIGTERM 0-2 s after start, x50, exit 0",
                test_sigterm_any_moment);
}

int main(void)
{
    signal(SIGPIPE, SIG_IGN);
    static const cunit_register_fn registers[] = {register_tests, NULL};
    return cunit_main(registers);
}

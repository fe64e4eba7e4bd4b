/* test_lookup_reliable.c: v2 lookups across worker processes (issue 16),
 * against the real local Kafka, Redis and PostgreSQL.
 *
 *   - a worker frozen (SIGSTOP: Redis still hands it requests, which it
 *     cannot answer) and then killed (SIGKILL): every request sent after
 *     the freeze, including those it took, is answered by the other
 *     worker within 15 s of the freeze (schemas/README.md §2, v2);
 *   - read-your-writes, memory store, two workers: `edrctl publish`
 *     prints {"partition","offset"}, and `edrctl get --min-position P:O`
 *     right after it finds the entry; a position nobody reaches is a
 *     timeout (exit 3); `edrctl transfer-id --wait-ms` started before the
 *     publish answers once the event is applied;
 *   - the same on PostgreSQL with two workers in one consumer group on a
 *     one-partition topic, each answering its own request queue: one of
 *     them never applies anything, and both answer correctly (the shared
 *     offsets table, polled).
 *
 * Binaries: $EDR_WORKER_BIN (default ../edr-worker) and $EDR_EDRCTL_BIN
 * (default ../edrctl), relative to build/tests. */
#include "base/clock.h"
#include "schemas/reply.h"
#include "stores/pg_store.h"
#include "tests/support/cunit_main.h"
#include "tests/support/kafka_util.h"
#include "tests/support/ops_util.h"
#include "tests/support/proc_util.h"
#include "worker/redis_url.h"

#include <hiredis/hiredis.h>

#include <fcntl.h>
#include <signal.h>
#include <spawn.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

extern char **environ;

static const char *brokers, *redis_url, *pg_dsn;
static redisContext *cli;
static int seq;

static const char *edrctl_bin(void)
{
    const char *b = getenv("EDR_EDRCTL_BIN");
    return b && *b ? b : "../edrctl";
}

static const char *worker_bin(void)
{
    const char *b = getenv("EDR_WORKER_BIN");
    return b && *b ? b : "../edr-worker";
}

struct worker {
    char id[64];
    char prefix[96];
    char log[160];
    char http[32]; /* its /readyz */
    pid_t pid;
};

struct fleet {
    const char *mode;
    char *topic, *dlq;
    char group[96];
    char table[64];
    struct worker w[2];
};

static pid_t start_worker(struct fleet *f, struct worker *w)
{
    char env_buf[10][256];
    const char *envp[11];
    snprintf(w->http, sizeof(w->http), "127.0.0.1:%d", ops_free_port());
    snprintf(env_buf[0], 256, "EDR_TOPIC=%s", f->topic);
    snprintf(env_buf[1], 256, "EDR_DLQ_TOPIC=%s", f->dlq);
    snprintf(env_buf[2], 256, "EDR_STORE=%s", f->mode);
    snprintf(env_buf[3], 256, "EDR_PG_TABLE=%s", f->table);
    snprintf(env_buf[4], 256, "EDR_GROUP_ID=%s", f->group);
    snprintf(env_buf[5], 256, "EDR_RPC_PREFIX=%s", w->prefix);
    snprintf(env_buf[6], 256, "EDR_WORKER_ID=%s", w->id);
    snprintf(env_buf[7], 256, "EDR_HTTP_ADDR=%s", w->http);
    snprintf(env_buf[8], 256, "EDR_RPC_THREADS=2");
    for (int i = 0; i < 9; i++)
        envp[i] = env_buf[i];
    envp[9] = NULL;
    const char *const args[] = {"-X", "session.timeout.ms=6000", "-X",
                                "heartbeat.interval.ms=1000", NULL};
    return test_spawn(worker_bin(), args, envp, w->log);
}

static void stop_worker(struct worker *w)
{
    if (w->pid <= 0)
        return;
    kill(w->pid, SIGCONT);
    kill(w->pid, SIGTERM);
    for (int i = 0; i < 300; i++) {
        if (waitpid(w->pid, NULL, WNOHANG) == w->pid) {
            w->pid = -1;
            return;
        }
        edr_sleep_ms(50);
    }
    kill(w->pid, SIGKILL);
    waitpid(w->pid, NULL, 0);
    w->pid = -1;
}

/* A fleet of two workers; shared_prefix: both on one queue. */
static int fleet_start(struct fleet *f, const char *mode, int partitions,
                       int shared_prefix)
{
    char err[256];
    memset(f, 0, sizeof(*f));
    f->mode = mode;
    f->topic = test_unique_name("lookup_reliable");
    f->dlq = test_unique_name("lookup_reliable_dlq");
    if (test_kafka_create_topic(brokers, f->topic, partitions, err,
                                sizeof(err)) ||
        test_kafka_create_topic(brokers, f->dlq, 1, err, sizeof(err))) {
        fprintf(stderr, "create topic: %s\n", err);
        return -1;
    }
    long long now = (long long)edr_epoch_ms();
    snprintf(f->group, sizeof(f->group), "relgroup-%ld-%lld", (long)getpid(),
             now);
    snprintf(f->table, sizeof(f->table), "rel_%ld_%lld", (long)getpid(),
             now % 100000000);
    for (int i = 0; i < 2; i++) {
        struct worker *w = &f->w[i];
        snprintf(w->id, sizeof(w->id), "rel-%s-%d-%ld", mode, i,
                 (long)getpid());
        snprintf(w->prefix, sizeof(w->prefix), "rel-%s-%ld-%lld%s", mode,
                 (long)getpid(), now,
                 shared_prefix ? ""
                 : i           ? "-b"
                               : "-a");
        snprintf(w->log, sizeof(w->log), "/tmp/edr-rel-%s-%d-%ld.log", mode, i,
                 (long)getpid());
        unlink(w->log);
        w->pid = start_worker(f, w);
        if (w->pid < 0)
            return -1;
    }
    /* Ready, not just answering: a memory worker restoring from the
     * changelog answers ping but lookups `unavailable` (contract §4). */
    for (int i = 0; i < 2; i++)
        if (ops_wait_status(f->w[i].http, "/readyz", 200, 60000) != 0) {
            fprintf(stderr, "%s: not ready within 60 s\n", f->w[i].id);
            return -1;
        }
    return 0;
}

static void fleet_stop(struct fleet *f)
{
    struct store_err err;
    for (int i = 0; i < 2; i++)
        stop_worker(&f->w[i]);
    if (strcmp(f->mode, "postgres") == 0)
        pg_store_drop(pg_dsn, f->table, &err);
    free(f->topic);
    free(f->dlq);
}

static long long redis_int(const char *a0, const char *a1, const char *a2)
{
    const char *argv[3] = {a0, a1, a2};
    redisReply *r = redisCommandArgv(cli, a2 ? 3 : 2, argv, NULL);
    long long v = r && r->type == REDIS_REPLY_INTEGER ? r->integer : -99;
    if (r)
        freeReplyObject(r);
    return v;
}

/* Pushes a ping on prefix's queue; its reply_to in rt (160 bytes). */
static int push_ping(const char *prefix, char *rt)
{
    char q[160], req[512];
    snprintf(q, sizeof(q), "%s:requests", prefix);
    snprintf(rt, 160, "%s:reply:rel-%d", prefix, ++seq);
    snprintf(req, sizeof(req),
             "{\"id\":\"rel-%d\",\"reply_to\":\"%s\",\"op\":\"ping\","
             "\"deadline_ms\":%lld}",
             seq, rt, (long long)edr_epoch_ms() + 60000);
    const char *argv[3] = {"LPUSH", q, req};
    redisReply *r = redisCommandArgv(cli, 3, argv, NULL);
    int ok = r && r->type == REDIS_REPLY_INTEGER;
    if (r)
        freeReplyObject(r);
    return ok ? 0 : -1;
}

/* The worker id of the ping reply on rt within ms, "" when none. */
static void ping_answer(const char *rt, int ms, char *worker, size_t cap)
{
    char secs[32], err[256];
    snprintf(secs, sizeof(secs), "%d.%03d", ms / 1000, ms % 1000);
    const char *argv[3] = {"BLPOP", rt, secs};
    redisReply *r = redisCommandArgv(cli, 3, argv, NULL);
    worker[0] = '\0';
    struct reply_msg m;
    if (r && r->type == REDIS_REPLY_ARRAY && r->elements == 2 &&
        reply_decode(&m, r->element[1]->str, r->element[1]->len, err,
                     sizeof(err)) == 0) {
        const char *w = strstr(m.result_json, "\"worker\":\"");
        if (w) {
            w += 10;
            size_t n = strcspn(w, "\"");
            snprintf(worker, cap, "%.*s", (int)n, w);
        }
        reply_msg_clear(&m);
    }
    if (r)
        freeReplyObject(r);
}

/* Pings prefix until each of the fleet's workers on it has answered. */
static int await_workers(const struct fleet *f, const char *prefix, int want,
                         int ms)
{
    int seen[2] = {0, 0};
    int64_t until = edr_clock_ms() + ms;
    while (edr_clock_ms() < until) {
        char rt[160], who[64];
        if (push_ping(prefix, rt))
            return -1;
        ping_answer(rt, 2000, who, sizeof(who));
        for (int i = 0; i < 2; i++)
            if (strcmp(who, f->w[i].id) == 0)
                seen[i] = 1;
        if (seen[0] + seen[1] >= want)
            return 0;
    }
    return -1;
}

/* Runs edrctl with args (NULL-terminated); stdout into out; exit code. */
static int edrctl(char *out, size_t cap, const char *const *args)
{
    char *argv[40];
    int a = 0;
    argv[a++] = (char *)edrctl_bin();
    for (; *args && a < 39; args++)
        argv[a++] = (char *)*args;
    argv[a] = NULL;
    int fds[2];
    if (pipe(fds))
        return -1;
    posix_spawn_file_actions_t fa;
    posix_spawn_file_actions_init(&fa);
    posix_spawn_file_actions_adddup2(&fa, fds[1], 1);
    posix_spawn_file_actions_addclose(&fa, fds[0]);
    posix_spawn_file_actions_addopen(&fa, 2, "/dev/null", O_WRONLY, 0);
    pid_t pid;
    int rc = posix_spawn(&pid, argv[0], &fa, NULL, argv, environ);
    posix_spawn_file_actions_destroy(&fa);
    close(fds[1]);
    size_t o = 0;
    ssize_t n;
    while (rc == 0 && o + 1 < cap &&
           (n = read(fds[0], out + o, cap - o - 1)) > 0)
        o += (size_t)n;
    out[o] = '\0';
    close(fds[0]);
    if (rc != 0)
        return -1;
    int st;
    waitpid(pid, &st, 0);
    return WIFEXITED(st) ? WEXITSTATUS(st) : 128;
}

/* edrctl publish negotiated for party/tid; "P:O" from its output. */
static int publish(const struct fleet *f, const char *party, const char *tid,
                   char *pos, size_t cap)
{
    char edr[256], out[256];
    snprintf(edr, sizeof(edr),
             "{\"transferProcessId\":\"%s\",\"assetId\":\"asset-%s\"}", tid,
             tid);
    const char *args[] = {"publish", "negotiated", "--topic",   f->topic,
                          "--party", party,        "--address", "https://a",
                          "--query", "q",          "--policy",  "p",
                          "--edr",   edr,          NULL};
    if (edrctl(out, sizeof(out), args) != 0)
        return -1;
    long long p = -1, o = -1;
    const char *pp = strstr(out, "\"partition\": ");
    const char *oo = strstr(out, "\"offset\": ");
    if (!pp || !oo)
        return -1;
    p = atoll(pp + 13);
    o = atoll(oo + 10);
    snprintf(pos, cap, "%lld:%lld", p, o);
    return p >= 0 && o >= 0 ? 0 : -1;
}

static int get_at(const char *prefix, const char *party, const char *pos,
                  const char *wait, char *out, size_t cap)
{
    const char *args[] = {"transfer-id", "--rpc-prefix",
                          prefix,        "--party",
                          party,         "--address",
                          "https://a",   "--query",
                          "q",           "--policy",
                          "p",           pos ? "--min-position" : NULL,
                          pos,           wait ? "--wait-ms" : NULL,
                          wait,          NULL};
    if (!pos) {
        args[11] = wait ? "--wait-ms" : NULL;
        args[12] = wait;
        args[13] = NULL;
    }
    return edrctl(out, cap, args);
}

/* ------------------------------------------------------------- freeze */

#define N_FROZEN_MAX 40

static void test_frozen_then_killed(void)
{
    struct fleet f;
    CU_ASSERT_EQUAL_FATAL(fleet_start(&f, "memory", 1, 1), 0);
    const char *prefix = f.w[0].prefix;
    CU_ASSERT_EQUAL_FATAL(await_workers(&f, prefix, 2, 30000), 0);

    char inflight[200], workers[200];
    snprintf(inflight, sizeof(inflight), "%s:inflight:%s", prefix, f.w[0].id);
    snprintf(workers, sizeof(workers), "%s:workers", prefix);
    CU_ASSERT_EQUAL(redis_int("SISMEMBER", workers, f.w[0].id), 1);

    kill(f.w[0].pid, SIGSTOP);
    int64_t frozen = edr_clock_ms();
    char rts[N_FROZEN_MAX][160];
    int n = 0;
    long long taken = 0;
    /* Redis hands the frozen worker's pending BLMOVEs a request each */
    while (n < N_FROZEN_MAX && edr_clock_ms() - frozen < 3000) {
        CU_ASSERT_EQUAL_FATAL(push_ping(prefix, rts[n]), 0);
        n++;
        edr_sleep_ms(20);
        if ((taken = redis_int("LLEN", inflight, NULL)) >= 1 && n >= 5)
            break;
    }
    CU_ASSERT_TRUE_FATAL(taken >= 1);
    kill(f.w[0].pid, SIGKILL);
    waitpid(f.w[0].pid, NULL, 0);
    f.w[0].pid = -1;

    int answered = 0, by_other = 0;
    for (int i = 0; i < n; i++) {
        char who[64];
        int left = (int)(frozen + 15000 - edr_clock_ms());
        ping_answer(rts[i], left > 1 ? left : 1, who, sizeof(who));
        answered += who[0] != '\0';
        by_other += strcmp(who, f.w[1].id) == 0;
    }
    double took = (double)(edr_clock_ms() - frozen) / 1000.0;
    fprintf(stderr,
            "\n  %d requests, %lld taken by the frozen worker, all "
            "answered %.1f s after the freeze\n",
            n, taken, took);
    CU_ASSERT_EQUAL(answered, n);
    CU_ASSERT_EQUAL(by_other, n);
    CU_ASSERT_TRUE(took < 15.0);
    CU_ASSERT_EQUAL(redis_int("LLEN", inflight, NULL), 0);
    CU_ASSERT_EQUAL(redis_int("SISMEMBER", workers, f.w[0].id), 0);
    fleet_stop(&f);
}

/* ---------------------------------------------------- read-your-writes */

static void read_your_writes(struct fleet *f)
{
    char pos[64], out[512], party[64], tid[64];
    /* warm-up: the consumers (a group's first assignment takes seconds)
     * have applied a first event, waited for with a long wait */
    snprintf(party, sizeof(party), "BPNLWARM%s", f->mode);
    snprintf(tid, sizeof(tid), "tp-warm-%lld", (long long)edr_epoch_ms());
    CU_ASSERT_EQUAL_FATAL(publish(f, party, tid, pos, sizeof(pos)), 0);
    for (int w = 0; w < 2; w++)
        CU_ASSERT_EQUAL_FATAL(
            get_at(f->w[w].prefix, party, pos, "30000", out, sizeof(out)), 0);
    for (int i = 0; i < 4; i++) {
        snprintf(party, sizeof(party), "BPNLRYW%s%d", f->mode, i);
        snprintf(tid, sizeof(tid), "tp-ryw-%d-%lld", i,
                 (long long)edr_epoch_ms());
        CU_ASSERT_EQUAL_FATAL(publish(f, party, tid, pos, sizeof(pos)), 0);
        /* every queue: on postgres one of them never applies */
        for (int w = 0; w < 2; w++) {
            int rc = get_at(f->w[w].prefix, party, pos, NULL, out, sizeof(out));
            CU_ASSERT_EQUAL(rc, 0);
            if (!strstr(out, tid))
                fprintf(stderr, "\n  %s %s@%s: exit %d, %s\n", f->w[w].id,
                        party, pos, rc, out);
            CU_ASSERT_PTR_NOT_NULL(strstr(out, tid));
        }
    }
    /* a position nobody reaches: timeout, exit 3, after the wait */
    long long p = atoll(pos), o = atoll(strchr(pos, ':') + 1);
    char far[64];
    snprintf(far, sizeof(far), "%lld:%lld", p, o + 1000);
    int64_t t0 = edr_clock_ms();
    CU_ASSERT_EQUAL(get_at(f->w[0].prefix, party, far, "700", out, sizeof(out)),
                    3);
    CU_ASSERT_TRUE(edr_clock_ms() - t0 >= 690);

    /* waiting lookups on every queue, started before the publish */
    snprintf(party, sizeof(party), "BPNLWAIT%s", f->mode);
    snprintf(tid, sizeof(tid), "tp-wait-%lld", (long long)edr_epoch_ms());
    pid_t kids[2];
    int fds[2][2];
    for (int w = 0; w < 2; w++) {
        CU_ASSERT_EQUAL_FATAL(pipe(fds[w]), 0);
        kids[w] = fork();
        if (kids[w] == 0) {
            char buf[512];
            close(fds[w][0]);
            int rc =
                get_at(f->w[w].prefix, party, NULL, "20000", buf, sizeof(buf));
            dprintf(fds[w][1], "%d %s", rc, buf);
            _exit(0);
        }
        close(fds[w][1]);
    }
    edr_sleep_ms(500); /* let them queue up first (not a synchronisation:
                          an earlier publish only makes the wait shorter) */
    int64_t pub = edr_clock_ms();
    CU_ASSERT_EQUAL(publish(f, party, tid, pos, sizeof(pos)), 0);
    for (int w = 0; w < 2; w++) {
        char buf[600] = "";
        ssize_t got = read(fds[w][0], buf, sizeof(buf) - 1);
        buf[got > 0 ? got : 0] = '\0';
        close(fds[w][0]);
        waitpid(kids[w], NULL, 0);
        CU_ASSERT_EQUAL(atoi(buf), 0);
        CU_ASSERT_PTR_NOT_NULL(strstr(buf, tid));
    }
    double took = (double)(edr_clock_ms() - pub) / 1000.0;
    fprintf(stderr, "\n  waiting lookups answered %.1f s after the publish\n",
            took);
    CU_ASSERT_TRUE(took < 15.0);
}

static void test_ryw_memory(void)
{
    struct fleet f;
    CU_ASSERT_EQUAL_FATAL(fleet_start(&f, "memory", 3, 1), 0);
    CU_ASSERT_EQUAL_FATAL(await_workers(&f, f.w[0].prefix, 2, 30000), 0);
    read_your_writes(&f);
    fleet_stop(&f);
}

static void test_ryw_postgres(void)
{
    struct fleet f;
    CU_ASSERT_EQUAL_FATAL(fleet_start(&f, "postgres", 1, 0), 0);
    CU_ASSERT_EQUAL_FATAL(await_workers(&f, f.w[0].prefix, 1, 30000), 0);
    CU_ASSERT_EQUAL_FATAL(await_workers(&f, f.w[1].prefix, 1, 30000), 0);
    read_your_writes(&f);
    fleet_stop(&f);
}

static int suite_init(void)
{
    char err[256];
    struct redis_url u;
    int failure;
    brokers = test_env("EDR_KAFKA_BROKERS");
    redis_url = test_env("EDR_REDIS_URL");
    pg_dsn = test_env("EDR_PG_DSN");
    if (!brokers || !redis_url || !pg_dsn)
        return -1;
    if (access(worker_bin(), X_OK) || access(edrctl_bin(), X_OK))
        return -1;
    if (redis_url_parse(redis_url, &u, err, sizeof(err)))
        return -1;
    cli = redis_url_connect(&u, 30000, &failure, err, sizeof(err));
    redis_url_clear(&u);
    return cli ? 0 : -1;
}

static int suite_clean(void)
{
    if (cli)
        redisFree(cli);
    return 0;
}

static void register_suites(void)
{
    CU_pSuite s = CU_add_suite("lookup reliability", suite_init, suite_clean);
    CU_add_test(s, "a frozen, then killed worker's requests",
                test_frozen_then_killed);
    CU_add_test(s, "read-your-writes and waits, memory", test_ryw_memory);
    CU_add_test(s, "read-your-writes and waits, postgres, two workers",
                test_ryw_postgres);
}

int main(void)
{
    signal(SIGPIPE, SIG_IGN);
    static const cunit_register_fn regs[] = {register_suites, NULL};
    return cunit_main(regs);
}

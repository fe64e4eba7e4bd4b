/* restore_bench.c: restore from the changelog vs a full replay (issue 14).
 *
 * Pre-fills a fresh topic (6 partitions) with N negotiated events over L
 * connections (each connection renewed N/L times: L live entries written
 * by N events), then runs edr-worker-test (the test build, memory store):
 *   1. changelog off, --exit-when-caught-up: a full replay (also the
 *      ingest rate with the changelog off);
 *   2. changelog on, until the ownership group's committed offsets reach
 *      the high watermarks: the ingest rate with the changelog written;
 *   (with --kafka-data DIR, the broker's log.dirs: waits up to
 *      --compact-wait S seconds, default 900, for the log cleaner to
 *      compact the changelog: until its on-disk size has not shrunk for
 *      45 s, the cleaner's backoff being 15 s);
 *   3. changelog on, --exit-when-caught-up: a memory worker restored from
 *      the changelog (nothing left to replay). restore_s is the whole
 *      process (start, restore, catch-up check, exit); restore_inner_s and
 *      restore_records are the worker's own "restored ..." log line.
 * usage: restore_bench [--live L] [--events N] [--worker PATH]
 *                      [--kafka-data DIR] [--compact-wait S]
 * env:   EDR_KAFKA_BROKERS (EDR_REDIS_URL passed on)
 * Prints progress on stderr and one JSON line on stdout. The topics are
 * left for the broker's retention. */
#include <dirent.h>
#include <librdkafka/rdkafka.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#define PARTS 6

static double now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static const char *brokers(void)
{
    const char *b = getenv("EDR_KAFKA_BROKERS");
    return b ? b : "127.0.0.1:9092";
}

static rd_kafka_t *client(rd_kafka_type_t type, const char *group)
{
    char e[256];
    rd_kafka_conf_t *c = rd_kafka_conf_new();
    rd_kafka_conf_set(c, "bootstrap.servers", brokers(), e, sizeof(e));
    if (group)
        rd_kafka_conf_set(c, "group.id", group, e, sizeof(e));
    else
        rd_kafka_conf_set(c, "linger.ms", "20", e, sizeof(e));
    rd_kafka_t *rk = rd_kafka_new(type, c, e, sizeof(e));
    if (!rk) {
        fprintf(stderr, "kafka: %s\n", e);
        exit(1);
    }
    return rk;
}

static void create_topic(rd_kafka_t *rk, const char *topic)
{
    char e[256];
    rd_kafka_NewTopic_t *nt = rd_kafka_NewTopic_new(topic, PARTS, 1, e, 256);
    rd_kafka_queue_t *q = rd_kafka_queue_new(rk);
    rd_kafka_CreateTopics(rk, &nt, 1, NULL, q);
    rd_kafka_event_t *ev = rd_kafka_queue_poll(q, 30000);
    if (ev)
        rd_kafka_event_destroy(ev);
    rd_kafka_queue_destroy(q);
    rd_kafka_NewTopic_destroy(nt);
    const struct rd_kafka_metadata *md;
    for (int i = 0; i < 100; i++) {
        rd_kafka_topic_t *t = rd_kafka_topic_new(rk, topic, NULL);
        int ok = rd_kafka_metadata(rk, 0, t, &md, 5000) == 0 &&
                 md->topic_cnt == 1 && md->topics[0].partition_cnt == PARTS;
        if (md)
            rd_kafka_metadata_destroy(md);
        rd_kafka_topic_destroy(t);
        if (ok)
            return;
        usleep(100000);
    }
    fprintf(stderr, "topic %s not ready\n", topic);
    exit(1);
}

static void prefill(rd_kafka_t *rk, const char *topic, long live, long n)
{
    char buf[1024], key[32];
    for (long i = 0; i < n; i++) {
        long k = i % live;
        snprintf(key, sizeof(key), "k%ld", k);
        int len = snprintf(
            buf, sizeof(buf),
            "{\"specversion\":\"1.0\",\"id\":\"ev-%ld\",\"source\":\"urn:b\","
            "\"type\":\"edr.negotiated\",\"data\":{\"counter_party_id\":"
            "\"BPNL%08ld\",\"counter_party_address\":\"https://p%ld.example."
            "com/dsp\",\"query_checksum\":\"q%ld\",\"policy_checksum\":\"p\","
            "\"edr\":{\"transferProcessId\":\"tp-%ld-%ld\",\"endpoint\":"
            "\"https://dp.example.com/public\",\"authorization\":\"token-"
            "%ld\",\"n\":%ld}}}",
            i, k % 1000, k, k, k, i / live, i, i);
        while (rd_kafka_producev(rk, RD_KAFKA_V_TOPIC(topic),
                                 RD_KAFKA_V_KEY(key, strlen(key)),
                                 RD_KAFKA_V_VALUE(buf, (size_t)len),
                                 RD_KAFKA_V_MSGFLAGS(RD_KAFKA_MSG_F_COPY),
                                 RD_KAFKA_V_END) ==
               RD_KAFKA_RESP_ERR__QUEUE_FULL)
            rd_kafka_poll(rk, 10);
        rd_kafka_poll(rk, 0);
    }
    rd_kafka_flush(rk, 120000);
}

/* Bytes of the *.log segment files of topic's partitions under data. */
static long long topic_bytes(const char *data, const char *topic)
{
    long long sum = 0;
    char dir[1024], f[2048];
    for (int p = 0; p < PARTS; p++) {
        snprintf(dir, sizeof(dir), "%s/%s-%d", data, topic, p);
        DIR *d = opendir(dir);
        if (!d)
            continue;
        struct dirent *de;
        while ((de = readdir(d)) != NULL) {
            size_t l = strlen(de->d_name);
            struct stat st;
            if (l < 4 || strcmp(de->d_name + l - 4, ".log") != 0)
                continue;
            snprintf(f, sizeof(f), "%s/%s", dir, de->d_name);
            if (stat(f, &st) == 0)
                sum += (long long)st.st_size;
        }
        closedir(d);
    }
    return sum;
}

/* Waits until the changelog's size has not shrunk for 45 s (or max_s);
 * the seconds waited. */
static double wait_compacted(const char *data, const char *topic, double max_s,
                             long long *before, long long *after)
{
    double t0 = now_s(), last_drop = t0;
    long long min = topic_bytes(data, topic);
    *before = min;
    while (now_s() - last_drop < 45 && now_s() - t0 < max_s) {
        sleep(3);
        long long b = topic_bytes(data, topic);
        if (b < min - (1 << 20)) {
            min = b;
            last_drop = now_s();
            fprintf(stderr, "restore_bench: changelog %lld MB after %.0f s\n",
                    b >> 20, now_s() - t0);
        }
    }
    *after = topic_bytes(data, topic);
    return now_s() - t0;
}

static pid_t run_worker(const char *worker, const char *topic,
                        const char *group, int changelog, int exit_caught_up,
                        const char *log_path)
{
    pid_t pid = fork();
    if (pid != 0)
        return pid;
    char dlq[300];
    snprintf(dlq, sizeof(dlq), "%s.dlq", topic);
    setenv("EDR_TOPIC", topic, 1);
    setenv("EDR_DLQ_TOPIC", dlq, 1);
    setenv("EDR_GROUP_ID", group, 1);
    setenv("EDR_STORE", "memory", 1);
    setenv("EDR_HTTP_ADDR", "off", 1);
    setenv("EDR_LOG_LEVEL", log_path ? "info" : "warn", 1);
    if (!changelog)
        setenv("EDR_CHANGELOG_TOPIC", "off", 1);
    if (!freopen("/dev/null", "w", stdout))
        _exit(127);
    if (log_path && !freopen(log_path, "w", stderr))
        _exit(127);
    if (exit_caught_up)
        execl(worker, worker, "--exit-when-caught-up", (char *)NULL);
    else
        execl(worker, worker, (char *)NULL);
    _exit(127);
}

static double wait_exit(pid_t pid, double t0)
{
    int st;
    waitpid(pid, &st, 0);
    if (!WIFEXITED(st) || WEXITSTATUS(st) != 0)
        fprintf(stderr, "worker exit status %d\n", st);
    return now_s() - t0;
}

/* 1 when the ownership group's committed offsets reach hw[]. */
static int changelog_complete(rd_kafka_t *c, const char *topic,
                              const int64_t *hw)
{
    rd_kafka_topic_partition_list_t *l =
        rd_kafka_topic_partition_list_new(PARTS);
    for (int p = 0; p < PARTS; p++)
        rd_kafka_topic_partition_list_add(l, topic, p);
    int ok = rd_kafka_committed(c, l, 10000) == 0;
    for (int p = 0; ok && p < PARTS; p++)
        ok = l->elems[p].offset >= hw[p];
    rd_kafka_topic_partition_list_destroy(l);
    return ok;
}

int main(int argc, char **argv)
{
    long live = 100000, n = 1000000;
    const char *worker = "./edr-worker-test", *data = NULL;
    double compact_max = 900;
    for (int i = 1; i + 1 < argc; i += 2) {
        if (!strcmp(argv[i], "--live"))
            live = atol(argv[i + 1]);
        else if (!strcmp(argv[i], "--events"))
            n = atol(argv[i + 1]);
        else if (!strcmp(argv[i], "--worker"))
            worker = argv[i + 1];
        else if (!strcmp(argv[i], "--kafka-data"))
            data = argv[i + 1];
        else if (!strcmp(argv[i], "--compact-wait"))
            compact_max = atof(argv[i + 1]);
    }
    if (live <= 0 || n < live) {
        fprintf(stderr, "usage: restore_bench [--live L] [--events N>=L] "
                        "[--worker PATH]\n");
        return 2;
    }
    char topic[128], group[160], clgroup[200];
    snprintf(topic, sizeof(topic), "rbench_%d_%ld", (int)getpid(),
             (long)time(NULL));
    snprintf(group, sizeof(group), "%s_g", topic);
    snprintf(clgroup, sizeof(clgroup), "%s.changelog", group);

    rd_kafka_t *rk = client(RD_KAFKA_PRODUCER, NULL);
    create_topic(rk, topic);
    double t0 = now_s();
    prefill(rk, topic, live, n);
    double t_fill = now_s() - t0;
    int64_t hw[PARTS];
    for (int p = 0; p < PARTS; p++) {
        int64_t lo;
        rd_kafka_query_watermark_offsets(rk, topic, p, &lo, &hw[p], 10000);
    }

    fprintf(stderr, "restore_bench: %ld events prefilled in %.1f s\n", n,
            t_fill);
    t0 = now_s();
    double t_replay =
        wait_exit(run_worker(worker, topic, group, 0, 1, NULL), t0);
    fprintf(stderr, "restore_bench: replay %.1f s\n", t_replay);

    rd_kafka_t *c = client(RD_KAFKA_CONSUMER, clgroup);
    t0 = now_s();
    pid_t pid = run_worker(worker, topic, group, 1, 0, NULL);
    double deadline = t0 + 1800;
    while (!changelog_complete(c, topic, hw) && now_s() < deadline)
        usleep(200000);
    double t_on = now_s() - t0;
    kill(pid, SIGTERM);
    wait_exit(pid, t0);
    rd_kafka_destroy(c);
    fprintf(stderr, "restore_bench: changelog on %.1f s\n", t_on);

    char cltopic[160];
    snprintf(cltopic, sizeof(cltopic), "%s.changelog", topic);
    long long b0 = -1, b1 = -1;
    double t_compact = 0;
    if (data)
        t_compact = wait_compacted(data, cltopic, compact_max, &b0, &b1);

    char log_path[256];
    snprintf(log_path, sizeof(log_path), "/tmp/%s.restore.log", topic);
    t0 = now_s();
    double t_restore =
        wait_exit(run_worker(worker, topic, group, 1, 1, log_path), t0);
    unsigned long long entries = 0, records = 0;
    double inner = -1;
    FILE *f = fopen(log_path, "r");
    char line[1024];
    while (f && fgets(line, sizeof(line), f)) {
        const char *r = strstr(line, "restored ");
        if (r && sscanf(r,
                        "restored %llu entries (%llu changelog records) in "
                        "%lf s",
                        &entries, &records, &inner) == 3)
            break;
    }
    if (f)
        fclose(f);
    unlink(log_path);

    printf("{\"live\":%ld,\"events\":%ld,\"prefill_s\":%.2f,"
           "\"replay_s\":%.2f,\"replay_events_per_s\":%.0f,"
           "\"changelog_on_s\":%.2f,\"changelog_on_events_per_s\":%.0f,"
           "\"ingest_on_over_off\":%.3f,"
           "\"compact_wait_s\":%.1f,\"changelog_bytes_before\":%lld,"
           "\"changelog_bytes_after\":%lld,"
           "\"restore_s\":%.2f,\"restore_inner_s\":%.2f,"
           "\"restore_entries\":%llu,\"restore_records\":%llu,"
           "\"replay_over_restore\":%.2f}\n",
           live, n, t_fill, t_replay, (double)n / t_replay, t_on,
           (double)n / t_on, t_replay / t_on, t_compact, b0, b1, t_restore,
           inner, entries, records, t_replay / t_restore);
    rd_kafka_destroy(rk);
    return 0;
}

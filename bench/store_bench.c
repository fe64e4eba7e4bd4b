/* store_bench.c: operations per second of each store backend.
 *
 *   store_bench [--backend memory|file|postgres|all] [--entries N]
 *               [--runs R] [--dir DIR] [--sha auto|portable]
 *
 * For each backend: put N entries of ~600-byte EDR JSON, get each (a full
 * copy), delete each. memory: one op per call (store_put/store_delete);
 * file and postgres: batches of 500 through apply(), the journal fsynced
 * once per batch. memory also reports the bytes of heap per stored entry
 * (mallinfo2 before/after, so malloc overhead counts) against the stored
 * JSON bytes. postgres runs only when EDR_PG_DSN is set (table
 * edr_bench_<pid>, dropped afterwards). Best of R runs. Prints a
 * human-readable line and one JSON line per figure (bench/run.sh). */
#define _GNU_SOURCE /* mallinfo2 */
#include "base/clock.h"
#include "schemas/edr_key.h"
#include "schemas/sha256.h"
#include "stores/file_store.h"
#include "stores/store.h"

#include <libpq-fe.h> /* only to drop the benchmark's table afterwards */
#include <malloc.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#define SB_BATCH 500

struct sb_data {
    size_t n;
    char (*cpid)[48];
    char (*addr)[64];
    char (*query)[72];
    char (*policy)[72];
    char (*tid)[48];
    char **json;
    size_t *json_len;
    struct edr_key *keys;
    size_t json_bytes;
};

static void sb_hex(char *out, unsigned long long a, unsigned long long b)
{
    snprintf(out, 65, "%016llx%016llx%016llx%016llx", a, b, a ^ 0x5bd1e995ull,
             b * 31);
}

/* N distinct keys and ~600-byte entries shaped like EDC's EDR entries. */
static void sb_data_make(struct sb_data *d, size_t n)
{
    d->n = n;
    d->cpid = calloc(n, sizeof(*d->cpid));
    d->addr = calloc(n, sizeof(*d->addr));
    d->query = calloc(n, sizeof(*d->query));
    d->policy = calloc(n, sizeof(*d->policy));
    d->tid = calloc(n, sizeof(*d->tid));
    d->json = calloc(n, sizeof(*d->json));
    d->json_len = calloc(n, sizeof(*d->json_len));
    d->keys = calloc(n, sizeof(*d->keys));
    if (!d->cpid || !d->addr || !d->query || !d->policy || !d->tid ||
        !d->json || !d->json_len || !d->keys) {
        fprintf(stderr, "out of memory\n");
        exit(1);
    }
    for (size_t i = 0; i < n; i++) {
        snprintf(d->cpid[i], sizeof(d->cpid[i]), "BPNL%012zu", i % 5000);
        snprintf(d->addr[i], sizeof(d->addr[i]),
                 "https://provider-%zu.example.com/api/v1/dsp", i % 997);
        sb_hex(d->query[i], i * 2654435761ull, i + 17);
        sb_hex(d->policy[i], i * 40503ull, ~i);
        snprintf(d->tid[i], sizeof(d->tid[i]), "%08zx-1c2d-4e5f-8a9b-%012zx", i,
                 i * 7);
        char buf[1024];
        int len = snprintf(
            buf, sizeof(buf),
            "{\"@id\":\"%s\",\"assetId\":\"urn:uuid:asset-%08zx-part-type-"
            "information\",\"agreementId\":\"agreement-%08zx-9d3c-4a1e-b6f2-"
            "0c9e2b7a5d41\",\"transferProcessId\":\"%s\","
            "\"contractNegotiationId\":\"negotiation-%08zx-7f1a-4b2c-9e8d-"
            "3a6b5c4d2e1f\",\"createdAt\":%llu,\"counterPartyAddress\":"
            "\"%s\",\"edc:endpoint\":\"https://dataplane-%zu.example.com/"
            "api/public\",\"tx-auth:audience\":\"%s\",\"tx-auth:expiresIn\":"
            "\"300\",\"note\":\"benchmark entry padded to a typical EDR "
            "size\"}",
            d->tid[i], i, i, d->tid[i], i, 1700000000000ull + i, d->addr[i],
            i % 13, d->cpid[i]);
        d->json[i] = strdup(buf);
        d->json_len[i] = (size_t)len;
        d->json_bytes += (size_t)len;
        d->keys[i] =
            (struct edr_key){d->cpid[i], d->addr[i], d->query[i], d->policy[i]};
    }
}

static void sb_data_free(struct sb_data *d)
{
    for (size_t i = 0; i < d->n; i++)
        free(d->json[i]);
    free(d->cpid);
    free(d->addr);
    free(d->query);
    free(d->policy);
    free(d->tid);
    free(d->json);
    free(d->json_len);
    free(d->keys);
}

static void sb_emit(const char *backend, const char *metric, double value,
                    const char *unit, size_t n, int batch, int runs)
{
    printf("%-9s %-26s %14.1f %s\n", backend, metric, value, unit);
    printf("{\"bench\":\"store\",\"backend\":\"%s\",\"metric\":\"%s\","
           "\"value\":%.1f,\"unit\":\"%s\",\"entries\":%zu,\"batch\":%d,"
           "\"runs\":%d}\n",
           backend, metric, value, unit, n, batch, runs);
    fflush(stdout);
}

static void sb_die(const char *what, const struct store_err *err)
{
    fprintf(stderr, "store_bench: %s: %s\n", what, err->msg);
    exit(1);
}

/* Batched puts or deletes of all entries through apply(). */
static double sb_apply_all(struct store *st, const struct sb_data *d, int put,
                           int batch)
{
    struct store_op *ops = calloc((size_t)batch, sizeof(*ops));
    struct store_err err = {0};
    double t0 = edr_clock_s();
    for (size_t i = 0; i < d->n; i += (size_t)batch) {
        size_t m = d->n - i < (size_t)batch ? d->n - i : (size_t)batch;
        for (size_t j = 0; j < m; j++) {
            size_t k = i + j;
            ops[j] =
                put ? (struct store_op){STORE_OP_PUT, d->keys[k], d->tid[k],
                                        d->json[k], d->json_len[k]}
                    : (struct store_op){STORE_OP_DELETE, d->keys[k], NULL, NULL,
                                        0};
        }
        struct store_offset off = {0, (int64_t)(i + m), -1};
        struct store_batch b = {.ops = ops,
                                .n_ops = m,
                                .topic = "edr.events.bench",
                                .offsets = &off,
                                .n_offsets = 1};
        if (st->ops->apply(st, &b, &err) != STORE_OK)
            sb_die("apply", &err);
    }
    double dt = edr_clock_s() - t0;
    free(ops);
    return (double)d->n / dt;
}

static double sb_get_all(struct store *st, const struct sb_data *d)
{
    struct store_err err = {0};
    double t0 = edr_clock_s();
    for (size_t i = 0; i < d->n; i++) {
        struct store_record r;
        if (st->ops->get(st, &d->keys[i], &r, &err) != STORE_OK)
            sb_die("get", &err);
        store_record_clear(&r);
    }
    return (double)d->n / (edr_clock_s() - t0);
}

/* CPU seconds of this process: on a shared machine the wall-clock rate
 * depends on the other load, this one much less. */
static double sb_cpu_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static double sb_max(double a, double b)
{
    return a > b ? a : b;
}

/* CPU nanoseconds per connection key (the SHA-256 of the four fields
 * that every new memory entry costs) over the benchmark's keys. */
static double sb_key_ns(const struct sb_data *d)
{
    char hex[EDR_CONNECTION_KEY_LEN + 1];
    unsigned sink = 0;
    double c0 = sb_cpu_s();
    for (size_t i = 0; i < d->n; i++) {
        edr_connection_key(&d->keys[i], hex);
        sink += (unsigned char)hex[0];
    }
    double ns = (sb_cpu_s() - c0) * 1e9 / (double)d->n;
    return sink == 0xFFFFFFFFu ? 0 : ns; /* keeps the loop */
}

static void sb_memory(const struct sb_data *d, int runs)
{
    double put = 0, put_cpu = 0, get = 0, del = 0, bytes = 0;
    struct store_err err = {0};
    for (int r = 0; r < runs; r++) {
        struct mallinfo2 m0 = mallinfo2();
        struct store *st = mem_store_open(&err);
        if (!st)
            sb_die("mem_store_open", &err);
        double t0 = edr_clock_s(), c0 = sb_cpu_s();
        for (size_t i = 0; i < d->n; i++)
            if (store_put(st, &d->keys[i], d->tid[i], d->json[i],
                          d->json_len[i], &err) != STORE_OK)
                sb_die("put", &err);
        put = sb_max(put, (double)d->n / (edr_clock_s() - t0));
        put_cpu = sb_max(put_cpu, (double)d->n / (sb_cpu_s() - c0));
        struct mallinfo2 m1 = mallinfo2();
        bytes = (double)(m1.uordblks + m1.hblkhd - m0.uordblks - m0.hblkhd) /
                (double)d->n;
        get = sb_max(get, sb_get_all(st, d));
        t0 = edr_clock_s();
        for (size_t i = 0; i < d->n; i++)
            if (store_delete(st, &d->keys[i], NULL, &err) != STORE_OK)
                sb_die("delete", &err);
        del = sb_max(del, (double)d->n / (edr_clock_s() - t0));
        store_close(st);
    }
    double json = (double)d->json_bytes / (double)d->n;
    double key_ns = 1e30;
    for (int r = 0; r < runs; r++) {
        double k = sb_key_ns(d);
        key_ns = k < key_ns ? k : key_ns;
    }
    sb_emit("memory", "connection_key_cpu_ns", key_ns, "ns", d->n, 1, runs);
    sb_emit("memory", "put_ops_per_s", put, "ops/s", d->n, 1, runs);
    sb_emit("memory", "put_ops_per_cpu_s", put_cpu, "ops/cpu-s", d->n, 1, runs);
    sb_emit("memory", "get_ops_per_s", get, "ops/s", d->n, 1, runs);
    sb_emit("memory", "delete_ops_per_s", del, "ops/s", d->n, 1, runs);
    sb_emit("memory", "bytes_per_entry", bytes, "bytes", d->n, 1, runs);
    sb_emit("memory", "json_bytes_per_entry", json, "bytes", d->n, 1, runs);
    sb_emit("memory", "bytes_per_json_byte", bytes / json, "ratio", d->n, 1,
            runs);
}

static void sb_file(const struct sb_data *d, int runs, const char *dir)
{
    double put = 0, get = 0, del = 0, load = 0;
    struct store_err err = {0};
    char path[512];
    snprintf(path, sizeof(path), "%s/edr-store-bench-%d/store.json", dir,
             (int)getpid());
    for (int r = 0; r < runs; r++) {
        const char *suffix[] = {"", ".journal", ".tmp", ".lock"};
        char p[600];
        for (int i = 0; i < 4; i++) {
            snprintf(p, sizeof(p), "%s%s", path, suffix[i]);
            unlink(p);
        }
        struct store *st = file_store_open(path, &err);
        if (!st)
            sb_die("file_store_open", &err);
        put = sb_max(put, sb_apply_all(st, d, 1, SB_BATCH));
        store_close(st);
        double t0 = edr_clock_s();
        st = file_store_open(path, &err);
        if (!st)
            sb_die("file_store_open (reopen)", &err);
        load = sb_max(load, (double)d->n / (edr_clock_s() - t0));
        get = sb_max(get, sb_get_all(st, d));
        del = sb_max(del, sb_apply_all(st, d, 0, SB_BATCH));
        store_close(st);
        for (int i = 0; i < 4; i++) {
            snprintf(p, sizeof(p), "%s%s", path, suffix[i]);
            unlink(p);
        }
    }
    *strrchr(path, '/') = '\0';
    rmdir(path);
    sb_emit("file", "put_ops_per_s", put, "ops/s", d->n, SB_BATCH, runs);
    sb_emit("file", "get_ops_per_s", get, "ops/s", d->n, 1, runs);
    sb_emit("file", "delete_ops_per_s", del, "ops/s", d->n, SB_BATCH, runs);
    sb_emit("file", "reopen_entries_per_s", load, "entries/s", d->n, 0, runs);
}

static void sb_postgres(const struct sb_data *d, int runs, const char *dsn)
{
    double put = 0, get = 0, del = 0;
    struct store_err err = {0};
    char table[64];
    snprintf(table, sizeof(table), "edr_bench_%d", (int)getpid());
    for (int r = 0; r < runs; r++) {
        struct store *st = pg_store_open(dsn, table, &err);
        if (!st)
            sb_die("pg_store_open", &err);
        put = sb_max(put, sb_apply_all(st, d, 1, SB_BATCH));
        get = sb_max(get, sb_get_all(st, d));
        del = sb_max(del, sb_apply_all(st, d, 0, SB_BATCH));
        store_close(st);
    }
    PGconn *c = PQconnectdb(dsn);
    if (PQstatus(c) == CONNECTION_OK) {
        char sql[200];
        snprintf(sql, sizeof(sql), "DROP TABLE IF EXISTS %s, %s_offsets", table,
                 table); /* table is ours: edr_bench_<digits> */
        PQclear(PQexec(c, sql));
    }
    PQfinish(c);
    sb_emit("postgres", "put_ops_per_s", put, "ops/s", d->n, SB_BATCH, runs);
    sb_emit("postgres", "get_ops_per_s", get, "ops/s", d->n, 1, runs);
    sb_emit("postgres", "delete_ops_per_s", del, "ops/s", d->n, SB_BATCH, runs);
}

static void sb_usage(void)
{
    fprintf(stderr, "usage: store_bench [--backend memory|file|postgres|all] "
                    "[--entries N] [--runs R] [--dir DIR] "
                    "[--sha auto|portable]\n");
    exit(2);
}

int main(int argc, char **argv)
{
    const char *backend = "all", *dir = "/tmp";
    size_t n = 100000;
    int runs = 3;
    for (int i = 1; i < argc; i++) {
        if (i + 1 >= argc)
            sb_usage();
        if (strcmp(argv[i], "--backend") == 0)
            backend = argv[++i];
        else if (strcmp(argv[i], "--entries") == 0)
            n = (size_t)strtoull(argv[++i], NULL, 10);
        else if (strcmp(argv[i], "--runs") == 0)
            runs = atoi(argv[++i]);
        else if (strcmp(argv[i], "--dir") == 0)
            dir = argv[++i];
        else if (strcmp(argv[i], "--sha") == 0) {
            /* portable: the connection keys without the CPU's SHA
             * extensions (what puts cost before schemas/sha256.c used
             * them) */
            const char *v = argv[++i];
            if (strcmp(v, "portable") == 0)
                sha256_impl_force(0);
            else if (strcmp(v, "auto") != 0)
                sb_usage();
        } else
            sb_usage();
    }
    if (n == 0 || runs < 1)
        sb_usage();
    int all = strcmp(backend, "all") == 0;
    if (!all && strcmp(backend, "memory") && strcmp(backend, "file") &&
        strcmp(backend, "postgres"))
        sb_usage();

    struct sb_data d = {0};
    sb_data_make(&d, n);
    printf("store_bench: %zu entries, %.0f JSON bytes each on average, best "
           "of %d runs\n",
           n, (double)d.json_bytes / (double)n, runs);
    if (all || strcmp(backend, "memory") == 0)
        sb_memory(&d, runs);
    if (all || strcmp(backend, "file") == 0)
        sb_file(&d, runs, dir);
    if (all || strcmp(backend, "postgres") == 0) {
        const char *dsn = getenv("EDR_PG_DSN");
        if (dsn && *dsn)
            sb_postgres(&d, runs, dsn);
        else if (!all) {
            fprintf(stderr, "store_bench: set EDR_PG_DSN for postgres\n");
            sb_data_free(&d);
            return 2;
        } else
            printf("postgres: skipped (EDR_PG_DSN not set)\n");
    }
    sb_data_free(&d);
    return 0;
}

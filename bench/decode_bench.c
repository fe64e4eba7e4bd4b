/* decode_bench.c: single-core throughput of event_decode + the handler,
 * next to yajl_tree_parse (plus extracting the same fields) on the same
 * events in the same run.
 *
 * Usage: decode_bench [-t seconds_per_run] [-r runs] [-n distinct_events]
 *                     [-m decode|tree] [-s event_size]
 * Prints, per event size (600 B and 16 KiB), the median events/s of each
 * variant over the runs and the median ratio decode+handle / tree. The
 * variants alternate in 5 ms slices within a run so that machine load
 * affects them alike. */
#include "handlers/handler.h"
#include "schemas/event.h"

#include <yajl/yajl_gen.h>
#include <yajl/yajl_tree.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

struct corpus {
    char **ev; /* NUL-terminated, because yajl_tree_parse needs that */
    size_t *len;
    size_t n;
    size_t bytes;
};

/* This thread's CPU time: events per CPU-second of one core, which stays
 * meaningful on a machine shared with other work (wall time would count
 * the time the scheduler gave to others). */
static double now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static void hex64(char *out, unsigned seed)
{
    static const char hex[] = "0123456789abcdef";
    for (int i = 0; i < 64; i++) {
        seed = seed * 1103515245u + 12345u;
        out[i] = hex[(seed >> 16) & 15];
    }
    out[64] = '\0';
}

/* One EDR event shaped like what the EDC adapter produces; `target` is
 * the size to reach by padding the EDR (assetId, then properties). */
static char *make_event(unsigned i, size_t target, size_t *len_out)
{
    char q[65], p[65];
    size_t cap = target + 4096;
    char *buf = malloc(cap);
    char *props = malloc(cap);
    size_t plen = 0;
    int n;

    hex64(q, i * 2 + 1);
    hex64(p, i * 2 + 2);
    props[0] = '\0';
    for (;;) {
        n = snprintf(
            buf, cap,
            "{\"specversion\":\"1.0\",\"id\":\"6f1c2b1e-%08x\","
            "\"source\":\"urn:connector:consumer-a\","
            "\"type\":\"edr.negotiated\",\"time\":\"2025-01-31T12:34:56Z\","
            "\"data\":{\"counter_party_id\":\"BPNL%012u\","
            "\"counter_party_address\":\"https://provider.example.com/dsp\","
            "\"query_checksum\":\"%s\",\"policy_checksum\":\"%s\","
            "\"edr\":{\"@type\":\"EndpointDataReferenceEntry\","
            "\"providerId\":\"BPNL000000000001\",\"assetId\":\"asset-%u\","
            "\"agreementId\":\"agr-%08x\",\"transferProcessId\":\"tp-%08x\","
            "\"createdAt\":1738326896789%s}}}",
            i, i % 1000, q, p, i, i, i, props);
        if ((size_t)n + 40 >= target || (size_t)n >= cap - 200)
            break;
        /* Pad with EDR properties until close to the target. */
        size_t want = target - (size_t)n;
        size_t chunk = want > 200 ? 160 : want - 20;
        int m = snprintf(props + plen, cap - plen, ",\"p%05zu\":\"", plen);
        plen += (size_t)m;
        for (size_t k = 0; k < chunk && plen + 2 < cap; k++)
            props[plen++] = (char)('a' + (k + i) % 26);
        props[plen++] = '"';
        props[plen] = '\0';
    }
    free(props);
    *len_out = (size_t)n;
    return buf;
}

static void corpus_make(struct corpus *c, size_t n, size_t target)
{
    c->ev = calloc(n, sizeof(*c->ev));
    c->len = calloc(n, sizeof(*c->len));
    c->n = n;
    c->bytes = 0;
    for (size_t i = 0; i < n; i++) {
        c->ev[i] = make_event((unsigned)i, target, &c->len[i]);
        c->bytes += c->len[i];
    }
}

static void corpus_free(struct corpus *c)
{
    for (size_t i = 0; i < c->n; i++)
        free(c->ev[i]);
    free(c->ev);
    free(c->len);
}

static volatile size_t sink;

static int run_decode(const struct corpus *c, size_t i)
{
    struct event ev;
    struct store_op op;
    char err[256];

    if (event_decode(&ev, c->ev[i], c->len[i], err, sizeof(err)) != EVENT_OK) {
        fprintf(stderr, "decode_bench: event %zu rejected: %s\n", i, err);
        return -1;
    }
    if (handler_event_to_op(&ev, &op) != 0)
        return -1;
    sink += op.entry_len;
    event_clear(&ev);
    return 0;
}

static const char *tree_str(yajl_val root, const char **path)
{
    yajl_val v = yajl_tree_get(root, path, yajl_t_string);
    return v ? YAJL_GET_STRING(v) : NULL;
}

/* The baseline: yajl's tree parser, then the fields event_decode keeps. */
static int run_tree(const struct corpus *c, size_t i)
{
    static const char *p_spec[] = {"specversion", NULL};
    static const char *p_id[] = {"id", NULL};
    static const char *p_src[] = {"source", NULL};
    static const char *p_type[] = {"type", NULL};
    static const char *p_k[4][3] = {{"data", "counter_party_id", NULL},
                                    {"data", "counter_party_address", NULL},
                                    {"data", "query_checksum", NULL},
                                    {"data", "policy_checksum", NULL}};
    static const char *p_edr[] = {"data", "edr", NULL};
    static const char *p_tp[] = {"data", "edr", "transferProcessId", NULL};
    char err[128];
    yajl_val root = yajl_tree_parse(c->ev[i], err, sizeof(err));
    size_t acc = 0;

    if (!root)
        return -1;
    const char *s[] = {
        tree_str(root, p_spec), tree_str(root, p_id),   tree_str(root, p_src),
        tree_str(root, p_type), tree_str(root, p_k[0]), tree_str(root, p_k[1]),
        tree_str(root, p_k[2]), tree_str(root, p_k[3]), tree_str(root, p_tp)};
    for (size_t k = 0; k < sizeof(s) / sizeof(s[0]); k++)
        acc += s[k] ? strlen(s[k]) : 0;
    if (!yajl_tree_get(root, p_edr, yajl_t_object))
        acc = 0;
    sink += acc;
    yajl_tree_free(root);
    return acc ? 0 : -1;
}

typedef int (*bench_fn)(const struct corpus *c, size_t i);

/* Both variants over c for about `secs` each, alternating in slices of
 * a few milliseconds so that load from other processes hits them alike;
 * out[0] = decode+handle events/s, out[1] = tree events/s. A variant
 * skipped by `only` reports 0. */
static void measure(const struct corpus *c, double secs, int only,
                    double out[2])
{
    static const bench_fn fns[2] = {run_decode, run_tree};
    size_t done[2] = {0, 0}, next[2] = {0, 0};
    double spent[2] = {0, 0};

    while ((only == 1 || spent[0] < secs) && (only == 0 || spent[1] < secs)) {
        for (int v = 0; v < 2; v++) {
            if (only >= 0 && only != v)
                continue;
            double t0 = now_s(), t;
            do {
                for (size_t k = 0; k < 64; k++) {
                    if (fns[v](c, next[v]) != 0) {
                        fprintf(stderr, "decode_bench: variant failed\n");
                        exit(1);
                    }
                    next[v] = (next[v] + 1) % c->n;
                    done[v]++;
                }
                t = now_s() - t0;
            } while (t < 0.005);
            spent[v] += t;
        }
    }
    for (int v = 0; v < 2; v++)
        out[v] = spent[v] > 0 ? (double)done[v] / spent[v] : 0;
}

static int cmp_double(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

static void bench_size(size_t target, size_t n_events, int runs, double secs,
                       int only)
{
    struct corpus c;
    double *dec = calloc((size_t)runs, sizeof(double));
    double *tree = calloc((size_t)runs, sizeof(double));
    double *ratio = calloc((size_t)runs, sizeof(double));

    corpus_make(&c, n_events, target);
    for (int r = 0; r < runs; r++) {
        double out[2];
        measure(&c, secs, only, out);
        dec[r] = out[0];
        tree[r] = out[1];
        ratio[r] = out[1] > 0 ? out[0] / out[1] : 0;
    }
    qsort(dec, (size_t)runs, sizeof(double), cmp_double);
    qsort(tree, (size_t)runs, sizeof(double), cmp_double);
    qsort(ratio, (size_t)runs, sizeof(double), cmp_double);
    double md = dec[runs / 2], mt = tree[runs / 2];
    printf("%6zu-byte events (mean %zu B): decode+handle %9.0f ev/s "
           "(%5.0f MB/s), yajl_tree_parse+fields %9.0f ev/s, "
           "ratio %.2fx  [medians of %d runs x %.1fs]\n",
           target, c.bytes / c.n, md, md * (double)c.bytes / c.n / 1e6, mt,
           ratio[runs / 2], runs, secs);
    free(dec);
    free(tree);
    free(ratio);
    corpus_free(&c);
}

int main(int argc, char **argv)
{
    double secs = 1.0;
    int runs = 5, opt, only = -1;
    long size = 0;
    size_t n_events = 1000;

    while ((opt = getopt(argc, argv, "t:r:n:m:s:")) != -1) {
        switch (opt) {
        case 't':
            secs = atof(optarg);
            break;
        case 'r':
            runs = atoi(optarg);
            break;
        case 'n':
            n_events = (size_t)atol(optarg);
            break;
        case 's': /* one event size only */
            size = atol(optarg);
            break;
        case 'm': /* for profiling one variant: decode or tree */
            only = strcmp(optarg, "decode") == 0 ? 0
                   : strcmp(optarg, "tree") == 0 ? 1
                                                 : -1;
            break;
        default:
            fprintf(stderr,
                    "usage: %s [-t secs] [-r runs] [-n events] "
                    "[-m decode|tree] [-s size]\n",
                    argv[0]);
            return 2;
        }
    }
    if (secs <= 0 || runs < 1 || n_events < 1) {
        fprintf(stderr, "decode_bench: bad arguments\n");
        return 2;
    }
    if (size > 0) {
        bench_size((size_t)size, n_events, runs, secs, only);
        return 0;
    }
    bench_size(600, n_events, runs, secs, only);
    bench_size(16384, n_events / 4 ? n_events / 4 : 1, runs, secs, only);
    return 0;
}

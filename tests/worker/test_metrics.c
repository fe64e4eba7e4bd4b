/* test_metrics.c: worker/metrics.c recorded through its API and checked on
 * the rendered Prometheus text: counter values, cumulative histogram
 * buckets consistent with _count and _sum, label escaping, the lag table,
 * exact counts under concurrent writers, and the exposition's shape (every
 * sample belongs to a family declared by HELP and TYPE). */
#include "tests/support/cunit_main.h"
#include "tests/support/ops_util.h"
#include "worker/metrics.h"

#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static char *render(void)
{
    char *text = NULL;
    size_t len = 0;
    CU_ASSERT_EQUAL_FATAL(metrics_render(&text, &len), 0);
    CU_ASSERT_PTR_NOT_NULL_FATAL(text);
    CU_ASSERT_EQUAL(strlen(text), len);
    return text;
}

static void test_counters(void)
{
    metrics_init("memory", "w-1");
    metrics_events_applied(EVENT_NEGOTIATED, 3);
    metrics_events_applied(EVENT_RENEWED, 2);
    metrics_events_applied(EVENT_EXPIRED, 1);
    metrics_events_applied((enum event_type)99, 5); /* ignored */
    metrics_event_dead_lettered(EVENT_ERR_JSON);
    metrics_event_dead_lettered(EVENT_ERR_SCHEMA);
    metrics_event_dead_lettered(EVENT_ERR_SCHEMA);
    metrics_outage("store");
    metrics_retry("redis");
    metrics_retry("redis");
    metrics_store_entries(42);
    metrics_lookup("ping", "ok", 0.0002);
    metrics_lookup("get_connection", "not_found", 0.001);
    metrics_lookup("no-such-op\"}", "weird", 0.001); /* -> invalid, error */
    metrics_lookup_dropped("reply_to_refused");
    metrics_lookup_dropped("reply_to_refused");
    metrics_lookup_dropped("expired");
    metrics_lookup_dropped("made-up\""); /* -> other */

    /* Every sample the calls above must have produced, with its value. */
    static const struct {
        const char *series;
        double value;
    } want[] = {
        {"edr_events_applied_total{type=\"edr.negotiated\",store=\"memory\"}",
         3},
        {"edr_events_applied_total{type=\"edr.renewed\",store=\"memory\"}", 2},
        {"edr_events_applied_total{type=\"edr.expired\",store=\"memory\"}", 1},
        {"edr_events_dead_lettered_total{reason=\"json\"}", 1},
        {"edr_events_dead_lettered_total{reason=\"schema\"}", 2},
        {"edr_events_dead_lettered_total{reason=\"size\"}", 0},
        {"edr_outages_total{component=\"store\"}", 1},
        {"edr_retries_total{component=\"redis\"}", 2},
        {"edr_store_entries", 42},
        {"edr_lookups_dropped_total{reason=\"reply_to_refused\"}", 2},
        {"edr_lookups_dropped_total{reason=\"expired\"}", 1},
        {"edr_lookups_dropped_total{reason=\"unreadable\"}", 0},
        {"edr_lookups_dropped_total{reason=\"other\"}", 1},
        {"edr_lookups_total{op=\"ping\",status=\"ok\"}", 1},
        {"edr_lookups_total{op=\"get_connection\",status=\"not_found\"}", 1},
        {"edr_lookups_total{op=\"invalid\",status=\"error\"}", 1},
        {"edr_build_info{version=\"" EDR_VERSION
         "\",store=\"memory\",worker=\"w-1\"}",
         1},
    };
    char *t = render();
    for (size_t i = 0; i < sizeof(want) / sizeof(want[0]); i++) {
        double got = ops_metric(t, want[i].series);
        if (got != want[i].value)
            fprintf(stderr, "\n  %s: %g, not %g\n", want[i].series, got,
                    want[i].value);
        CU_ASSERT_EQUAL(got, want[i].value);
    }
    CU_ASSERT_EQUAL(metrics_get_store_entries(), 42); /* what ping reads */
    CU_ASSERT_EQUAL(metrics_get_lookups_dropped("reply_to_refused"), 2);
    CU_ASSERT_PTR_NULL(strstr(t, "made-up"));
    CU_ASSERT_PTR_NULL(strstr(t, "no-such-op"));
    free(t);
}

static void test_histogram(void)
{
    metrics_batch_applied(10, 0.0001); /* le=0.0005 */
    metrics_batch_applied(10, 0.003);  /* le=0.005 */
    metrics_batch_applied(10, 0.005);  /* le=0.005: bounds are inclusive */
    metrics_batch_applied(10, 20);     /* only +Inf */

    char *t = render();
    CU_ASSERT_EQUAL(ops_metric(t, "edr_batches_total"), 4);
    CU_ASSERT_EQUAL(
        ops_metric(t, "edr_batch_apply_seconds_bucket{le=\"0.0005\"}"), 1);
    CU_ASSERT_EQUAL(
        ops_metric(t, "edr_batch_apply_seconds_bucket{le=\"0.0025\"}"), 1);
    CU_ASSERT_EQUAL(
        ops_metric(t, "edr_batch_apply_seconds_bucket{le=\"0.005\"}"), 3);
    CU_ASSERT_EQUAL(ops_metric(t, "edr_batch_apply_seconds_bucket{le=\"10\"}"),
                    3);
    CU_ASSERT_EQUAL(
        ops_metric(t, "edr_batch_apply_seconds_bucket{le=\"+Inf\"}"), 4);
    CU_ASSERT_EQUAL(ops_metric(t, "edr_batch_apply_seconds_count"), 4);
    double sum = ops_metric(t, "edr_batch_apply_seconds_sum");
    CU_ASSERT_DOUBLE_EQUAL(sum, 20.0081, 1e-6);

    /* Every bucket series is non-decreasing and ends at _count. */
    double prev = 0, last = -1;
    int n_buckets = 0;
    for (char *line = strstr(t, "edr_batch_apply_seconds_bucket"); line;
         line = strstr(line + 1, "edr_batch_apply_seconds_bucket")) {
        double v = strtod(strchr(line, ' ') + 1, NULL);
        CU_ASSERT(v >= prev);
        prev = last = v;
        n_buckets++;
    }
    CU_ASSERT(n_buckets >= 10);
    CU_ASSERT_EQUAL(last, ops_metric(t, "edr_batch_apply_seconds_count"));

    CU_ASSERT_EQUAL(ops_metric(t, "edr_lookup_seconds_bucket{op=\"ping\","
                                  "le=\"0.00025\"}"),
                    1);
    CU_ASSERT_EQUAL(ops_metric(t, "edr_lookup_seconds_count{op=\"ping\"}"), 1);
    CU_ASSERT_EQUAL(ops_metric(t, "edr_lookup_seconds_count{op=\"invalid\"}"),
                    1);
    free(t);
}

static void test_label_escaping(void)
{
    metrics_init("postgres", "a\"b\\c\nd");
    char *t = render();
    CU_ASSERT_EQUAL(ops_metric(t, "edr_build_info{version=\"" EDR_VERSION
                                  "\",store=\"postgres\",worker=\"a\\\"b\\\\c"
                                  "\\nd\"}"),
                    1);
    /* The raw newline must not reach the output (it would split a line). */
    CU_ASSERT_PTR_NULL(strstr(t, "a\"b"));
    free(t);
    metrics_init("memory", "w-1");
}

static void test_lag_and_readiness(void)
{
    struct metrics_readiness r;
    metrics_set_store_ok(1);
    metrics_set_kafka_assigned(1);
    metrics_set_redis_connected(0);
    metrics_consumer_lag(3, 7);
    metrics_consumer_lag(0, 5);
    metrics_consumer_lag(3, 8); /* update */
    metrics_get_readiness(&r);
    CU_ASSERT_EQUAL(r.store_ok, 1);
    CU_ASSERT_EQUAL(r.kafka_assigned, 1);
    CU_ASSERT_EQUAL(r.redis_connected, 0);
    CU_ASSERT_EQUAL(r.lag_sum, 13);
    CU_ASSERT_EQUAL(r.n_partitions, 2);

    char *t = render();
    CU_ASSERT_EQUAL(ops_metric(t, "edr_consumer_lag{partition=\"0\"}"), 5);
    CU_ASSERT_EQUAL(ops_metric(t, "edr_consumer_lag{partition=\"3\"}"), 8);
    CU_ASSERT_EQUAL(ops_metric(t, "edr_store_ok"), 1);
    CU_ASSERT_EQUAL(ops_metric(t, "edr_redis_connected"), 0);
    /* Partitions come out sorted. */
    CU_ASSERT(strstr(t, "partition=\"0\"") < strstr(t, "partition=\"3\""));
    free(t);

    metrics_consumer_lag(3, -1); /* revoked */
    metrics_get_readiness(&r);
    CU_ASSERT_EQUAL(r.lag_sum, 5);
    CU_ASSERT_EQUAL(r.n_partitions, 1);
    for (int p = 0; p < 100; p++) /* grows past the first allocation */
        metrics_consumer_lag(p, 1);
    metrics_get_readiness(&r);
    CU_ASSERT_EQUAL(r.lag_sum, 100);
    metrics_set_kafka_assigned(0); /* assignment lost: lag forgotten */
    metrics_get_readiness(&r);
    CU_ASSERT_EQUAL(r.kafka_assigned, 0);
    CU_ASSERT_EQUAL(r.n_partitions, 0);
    CU_ASSERT_EQUAL(r.lag_sum, 0);
}

#define N_THREADS 4
#define N_PER_THREAD 20000

static void *hammer(void *arg)
{
    (void)arg;
    for (int i = 0; i < N_PER_THREAD; i++) {
        metrics_lookup("count", "ok", 0.00001);
        metrics_events_applied(EVENT_RENEWED, 1);
        if (i % 1000 == 0)
            metrics_consumer_lag(i % 7, i);
    }
    return NULL;
}

static void test_concurrent_exact(void)
{
    char *before = render();
    double applied0 = ops_metric(before, "edr_events_applied_total{type=\"edr."
                                         "renewed\",store=\"memory\"}");
    free(before);

    pthread_t th[N_THREADS];
    for (int i = 0; i < N_THREADS; i++)
        CU_ASSERT_EQUAL_FATAL(pthread_create(&th[i], NULL, hammer, NULL), 0);
    for (int i = 0; i < 20; i++) /* render while writers run */
        free(render());
    for (int i = 0; i < N_THREADS; i++)
        pthread_join(th[i], NULL);

    char *t = render();
    CU_ASSERT_EQUAL(
        ops_metric(t, "edr_lookups_total{op=\"count\",status=\"ok\"}"),
        N_THREADS * N_PER_THREAD);
    CU_ASSERT_EQUAL(ops_metric(t, "edr_lookup_seconds_count{op=\"count\"}"),
                    N_THREADS * N_PER_THREAD);
    CU_ASSERT_EQUAL(ops_metric(t,
                               "edr_events_applied_total{type=\"edr.renewed\","
                               "store=\"memory\"}"),
                    applied0 + N_THREADS * N_PER_THREAD);
    free(t);
}

/* Family of a sample name: strips the histogram suffixes when the base
 * was declared a histogram. */
static int declared(const char *types, const char *name, size_t n)
{
    char want[160];
    snprintf(want, sizeof(want), "\n# TYPE %.*s ", (int)n, name);
    if (strstr(types, want))
        return 1;
    static const char *const sfx[] = {"_bucket", "_sum", "_count"};
    for (size_t i = 0; i < 3; i++) {
        size_t k = strlen(sfx[i]);
        if (n > k && strncmp(name + n - k, sfx[i], k) == 0) {
            snprintf(want, sizeof(want), "\n# TYPE %.*s histogram\n",
                     (int)(n - k), name);
            if (strstr(types, want))
                return 1;
        }
    }
    return 0;
}

static void test_exposition_shape(void)
{
    char *t = render();
    size_t len = strlen(t);
    CU_ASSERT(len > 0 && t[len - 1] == '\n');
    char *types = malloc(len + 2); /* "\n" + t, so every line has a '\n' */
    CU_ASSERT_PTR_NOT_NULL_FATAL(types);
    types[0] = '\n';
    memcpy(types + 1, t, len + 1);

    int n_samples = 0, n_types = 0, n_help = 0;
    for (char *line = t; *line;) {
        char *eol = strchr(line, '\n');
        CU_ASSERT_PTR_NOT_NULL_FATAL(eol);
        if (strncmp(line, "# TYPE ", 7) == 0) {
            n_types++;
        } else if (strncmp(line, "# HELP ", 7) == 0) {
            n_help++;
        } else {
            CU_ASSERT(line[0] != '#' && line[0] != ' ');
            size_t n = strcspn(line, "{ ");
            CU_ASSERT(n > 4 && strncmp(line, "edr_", 4) == 0);
            CU_ASSERT(declared(types, line, n));
            /* The value after the last space parses entirely. */
            char *sp = eol;
            while (sp > line && sp[-1] != ' ')
                sp--;
            char *end;
            strtod(sp, &end);
            CU_ASSERT(end == eol && sp != eol);
            n_samples++;
        }
        line = eol + 1;
    }
    CU_ASSERT(n_samples > 50);
    CU_ASSERT_EQUAL(n_types, n_help);
    CU_ASSERT(n_types >= 14);
    /* Counters carry the _total suffix. */
    for (char *p = strstr(types, "# TYPE "); p; p = strstr(p + 1, "# TYPE ")) {
        char *eol = strchr(p, '\n');
        if (strncmp(eol - 7, "counter", 7) == 0)
            CU_ASSERT(strncmp(eol - 14, "_total counter", 14) == 0);
    }
    free(types);
    free(t);
}

static void register_suites(void)
{
    CU_pSuite s = CU_add_suite("metrics", NULL, NULL);
    CU_add_test(s, "counters", test_counters);
    CU_add_test(s, "histogram", test_histogram);
    CU_add_test(s, "label escaping", test_label_escaping);
    CU_add_test(s, "lag and readiness", test_lag_and_readiness);
    CU_add_test(s, "concurrent writers count exactly", test_concurrent_exact);
    CU_add_test(s, "exposition shape", test_exposition_shape);
}

int main(void)
{
    static const cunit_register_fn regs[] = {register_suites, NULL};
    return cunit_main(regs);
}

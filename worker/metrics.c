/* metrics.c: see metrics.h. Counters and histogram buckets are relaxed
 * atomics in fixed tables, so the hot paths (ingest, lookups) never take a
 * lock; only the per-partition lag table and the identity strings sit
 * behind a mutex. Label sets are closed (known ops, statuses, components)
 * so a client cannot grow the exposition with made-up label values. */
#include "worker/metrics.h"

#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#ifndef EDR_VERSION
#define EDR_VERSION "unknown"
#endif

#define N_ELEMS(a) (sizeof(a) / sizeof((a)[0]))

/* ---- label sets ---- */

static const char *const type_names[] = {"edr.negotiated", "edr.renewed",
                                         "edr.expired"};
static const char *const reason_names[] = {"size", "utf8", "json", "schema",
                                           "other"};
static const char *const op_names[] = {
    "get_connection", "get_connection_transfer_id",
    "count",          "list_connections",
    "ping",           "invalid"};
static const char *const status_names[] = {"ok", "not_found", "error"};
static const char *const dropped_names[] = {"reply_to_refused", "unreadable",
                                            "expired", "other"};
static const char *const component_names[] = {"store", "kafka", "redis",
                                              "other"};
/* EDC callbacks (worker/edc_callback.c); "unavailable" is the catch-all */
static const char *const callback_names[] = {"expired",      "not_found",
                                             "ignored",      "bad_request",
                                             "unauthorized", "unavailable"};

#define N_TYPES N_ELEMS(type_names)
#define N_REASONS N_ELEMS(reason_names)
#define N_OPS N_ELEMS(op_names)
#define N_STATUSES N_ELEMS(status_names)
#define N_COMPONENTS N_ELEMS(component_names)
#define N_DROPPED N_ELEMS(dropped_names)
#define N_CALLBACKS N_ELEMS(callback_names)

/* Index of s in names; `fallback` (the last, catch-all entry) when absent
 * or NULL. */
static size_t label_index(const char *const *names, size_t n, const char *s,
                          size_t fallback)
{
    if (s)
        for (size_t i = 0; i < n; i++)
            if (strcmp(names[i], s) == 0)
                return i;
    return fallback;
}

/* ---- histograms ---- */

static const double batch_bounds[] = {0.0005, 0.001, 0.0025, 0.005, 0.01,
                                      0.025,  0.05,  0.1,    0.25,  0.5,
                                      1,      2.5,   5,      10};
static const double lookup_bounds[] = {0.0001, 0.00025, 0.0005, 0.001, 0.0025,
                                       0.005,  0.01,    0.025,  0.05,  0.1,
                                       0.25,   0.5,     1};

#define MAX_BOUNDS 16

/* Per-bucket (not cumulative) counts; slot n_bounds is the +Inf overflow.
 * The render makes them cumulative and takes _count from the total, so
 * _count always equals the +Inf bucket even while observations race. */
struct histogram {
    atomic_uint_fast64_t buckets[MAX_BOUNDS + 1];
    atomic_uint_fast64_t sum_ns; /* sum in nanoseconds: exact, lock-free */
};

static void histogram_observe(struct histogram *h, const double *bounds,
                              size_t n_bounds, double seconds)
{
    if (!(seconds >= 0)) /* negative or NaN: a clock hiccup, count as 0 */
        seconds = 0;
    size_t i = 0;
    while (i < n_bounds && seconds > bounds[i])
        i++;
    atomic_fetch_add_explicit(&h->buckets[i], 1, memory_order_relaxed);
    double ns = seconds * 1e9;
    if (ns > 1e18) /* a ~30 years observation is a bug; keep the sum sane */
        ns = 1e18;
    atomic_fetch_add_explicit(&h->sum_ns, (uint_fast64_t)ns,
                              memory_order_relaxed);
}

/* ---- state ---- */

static atomic_uint_fast64_t events_applied[N_TYPES];
static atomic_uint_fast64_t dead_lettered[N_REASONS];
static atomic_uint_fast64_t batches;
static struct histogram batch_hist;
static atomic_uint_fast64_t lookups[N_OPS][N_STATUSES];
static struct histogram lookup_hist[N_OPS];
static atomic_uint_fast64_t store_entries;
static atomic_uint_fast64_t lookups_dropped[N_DROPPED];
static atomic_uint_fast64_t callbacks[N_CALLBACKS];
static atomic_uint_fast64_t outages[N_COMPONENTS];
static atomic_uint_fast64_t retries[N_COMPONENTS];
static atomic_int store_ok;
static atomic_int kafka_assigned;
static atomic_int redis_connected;
/* The changelog restore (worker/ingest_restore.c). */
static atomic_int restoring;
static atomic_int_fast64_t source_retention_ms = -1;
static atomic_int_fast64_t source_retention_bytes = -1;

struct lag_entry {
    int32_t partition;
    int64_t lag;
};

/* Guards the lag table and the identity strings. */
static pthread_mutex_t metrics_lock = PTHREAD_MUTEX_INITIALIZER;
static struct lag_entry *lag_table; /* sorted by partition */
static size_t lag_len, lag_cap;
static char id_store[32] = "unknown";
static char id_worker[256] = "unknown";
static double start_time; /* Unix seconds, set by metrics_init */

/* ---- recording ---- */

void metrics_init(const char *store_name, const char *worker_id)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    pthread_mutex_lock(&metrics_lock);
    if (store_name)
        snprintf(id_store, sizeof(id_store), "%s", store_name);
    if (worker_id)
        snprintf(id_worker, sizeof(id_worker), "%s", worker_id);
    start_time = (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
    pthread_mutex_unlock(&metrics_lock);
}

void metrics_events_applied(enum event_type t, uint64_t n)
{
    if (t < EVENT_NEGOTIATED || t > EVENT_EXPIRED)
        return;
    atomic_fetch_add_explicit(&events_applied[t - EVENT_NEGOTIATED], n,
                              memory_order_relaxed);
}

void metrics_event_dead_lettered(enum event_error reason)
{
    size_t i = N_REASONS - 1; /* "other" */
    if (reason >= EVENT_ERR_SIZE && reason <= EVENT_ERR_SCHEMA)
        i = (size_t)(reason - EVENT_ERR_SIZE);
    atomic_fetch_add_explicit(&dead_lettered[i], 1, memory_order_relaxed);
}

void metrics_batch_applied(size_t n_events, double seconds)
{
    (void)n_events; /* events are counted by type in metrics_events_applied */
    atomic_fetch_add_explicit(&batches, 1, memory_order_relaxed);
    histogram_observe(&batch_hist, batch_bounds, N_ELEMS(batch_bounds),
                      seconds);
}

void metrics_lookup(const char *op, const char *status, double seconds)
{
    size_t o = label_index(op_names, N_OPS, op, N_OPS - 1);
    size_t s = label_index(status_names, N_STATUSES, status, N_STATUSES - 1);
    atomic_fetch_add_explicit(&lookups[o][s], 1, memory_order_relaxed);
    histogram_observe(&lookup_hist[o], lookup_bounds, N_ELEMS(lookup_bounds),
                      seconds);
}

void metrics_consumer_lag(int32_t partition, int64_t lag)
{
    pthread_mutex_lock(&metrics_lock);
    size_t i = 0;
    while (i < lag_len && lag_table[i].partition < partition)
        i++;
    int found = i < lag_len && lag_table[i].partition == partition;
    if (lag < 0) {
        if (found) {
            memmove(&lag_table[i], &lag_table[i + 1],
                    (lag_len - i - 1) * sizeof(*lag_table));
            lag_len--;
        }
    } else if (found) {
        lag_table[i].lag = lag;
    } else {
        if (lag_len == lag_cap) {
            size_t cap = lag_cap ? lag_cap * 2 : 16;
            struct lag_entry *t = realloc(lag_table, cap * sizeof(*t));
            if (!t) /* out of memory: drop this sample, keep the table */
                goto done;
            lag_table = t;
            lag_cap = cap;
        }
        memmove(&lag_table[i + 1], &lag_table[i],
                (lag_len - i) * sizeof(*lag_table));
        lag_table[i].partition = partition;
        lag_table[i].lag = lag;
        lag_len++;
    }
done:
    pthread_mutex_unlock(&metrics_lock);
}

void metrics_store_entries(uint64_t n)
{
    atomic_store_explicit(&store_entries, n, memory_order_relaxed);
}

uint64_t metrics_get_store_entries(void)
{
    return (uint64_t)atomic_load_explicit(&store_entries, memory_order_relaxed);
}

void metrics_lookup_dropped(const char *reason)
{
    size_t r = label_index(dropped_names, N_DROPPED, reason, N_DROPPED - 1);
    atomic_fetch_add_explicit(&lookups_dropped[r], 1, memory_order_relaxed);
}

uint64_t metrics_get_lookups_dropped(const char *reason)
{
    size_t r = label_index(dropped_names, N_DROPPED, reason, N_DROPPED - 1);
    return (uint64_t)atomic_load_explicit(&lookups_dropped[r],
                                          memory_order_relaxed);
}

/* The counter of one callback outcome (unknown ones: the catch-all). */
static atomic_uint_fast64_t *callback_slot(const char *outcome)
{
    return &callbacks[label_index(callback_names, N_CALLBACKS, outcome,
                                  N_CALLBACKS - 1)];
}

void metrics_callback(const char *outcome)
{
    atomic_fetch_add_explicit(callback_slot(outcome), 1, memory_order_relaxed);
}

uint64_t metrics_get_callbacks(const char *outcome)
{
    return (uint64_t)atomic_load_explicit(callback_slot(outcome),
                                          memory_order_relaxed);
}

void metrics_outage(const char *component)
{
    size_t c =
        label_index(component_names, N_COMPONENTS, component, N_COMPONENTS - 1);
    atomic_fetch_add_explicit(&outages[c], 1, memory_order_relaxed);
}

void metrics_retry(const char *component)
{
    size_t c =
        label_index(component_names, N_COMPONENTS, component, N_COMPONENTS - 1);
    atomic_fetch_add_explicit(&retries[c], 1, memory_order_relaxed);
}

void metrics_set_store_ok(int ok)
{
    atomic_store(&store_ok, ok ? 1 : 0);
}

void metrics_set_kafka_assigned(int assigned)
{
    atomic_store(&kafka_assigned, assigned ? 1 : 0);
    if (!assigned) {
        pthread_mutex_lock(&metrics_lock);
        lag_len = 0;
        pthread_mutex_unlock(&metrics_lock);
    }
}

void metrics_set_redis_connected(int connected)
{
    atomic_store(&redis_connected, connected ? 1 : 0);
}

void metrics_set_restoring(int on)
{
    atomic_store(&restoring, on ? 1 : 0);
}

int metrics_get_restoring(void)
{
    return atomic_load(&restoring);
}

void metrics_source_retention(int64_t ms, int64_t bytes)
{
    atomic_store(&source_retention_ms, ms);
    atomic_store(&source_retention_bytes, bytes);
}

void metrics_get_readiness(struct metrics_readiness *r)
{
    r->restoring = atomic_load(&restoring);
    r->store_ok = atomic_load(&store_ok);
    r->kafka_assigned = atomic_load(&kafka_assigned);
    r->redis_connected = atomic_load(&redis_connected);
    r->lag_sum = 0;
    pthread_mutex_lock(&metrics_lock);
    for (size_t i = 0; i < lag_len; i++)
        r->lag_sum += lag_table[i].lag;
    r->n_partitions = lag_len;
    pthread_mutex_unlock(&metrics_lock);
}

/* ---- rendering (text exposition format 0.0.4) ---- */

static uint64_t load(atomic_uint_fast64_t *a)
{
    return (uint64_t)atomic_load_explicit(a, memory_order_relaxed);
}

/* Writes s as a label value: backslash, double quote and line feed are
 * the three characters the format requires escaped. */
static void put_label_value(FILE *f, const char *s)
{
    for (; *s; s++) {
        if (*s == '\\')
            fputs("\\\\", f);
        else if (*s == '"')
            fputs("\\\"", f);
        else if (*s == '\n')
            fputs("\\n", f);
        else
            fputc(*s, f);
    }
}

static void put_header(FILE *f, const char *name, const char *type,
                       const char *help)
{
    fprintf(f, "# HELP %s %s\n# TYPE %s %s\n", name, help, name, type);
}

/* Nanoseconds as exact decimal seconds. */
static void put_seconds_ns(FILE *f, uint64_t ns)
{
    fprintf(f, "%llu.%09llu", (unsigned long long)(ns / 1000000000u),
            (unsigned long long)(ns % 1000000000u));
}

/* One histogram series. `labels` is already escaped text like
 * op="ping" (or "" for none). */
static void put_histogram(FILE *f, const char *name, const char *labels,
                          struct histogram *h, const double *bounds,
                          size_t n_bounds)
{
    uint64_t cum = 0;
    const char *sep = labels[0] ? "," : "";
    for (size_t i = 0; i <= n_bounds; i++) {
        cum += load(&h->buckets[i]);
        fprintf(f, "%s_bucket{%s%sle=\"", name, labels, sep);
        if (i < n_bounds)
            fprintf(f, "%g", bounds[i]);
        else
            fputs("+Inf", f);
        fprintf(f, "\"} %llu\n", (unsigned long long)cum);
    }
    const char *open = labels[0] ? "{" : "", *close = labels[0] ? "}" : "";
    fprintf(f, "%s_sum%s%s%s ", name, open, labels, close);
    put_seconds_ns(f, load(&h->sum_ns));
    fprintf(f, "\n%s_count%s%s%s %llu\n", name, open, labels, close,
            (unsigned long long)cum);
}

static void put_per_component(FILE *f, const char *name, const char *help,
                              atomic_uint_fast64_t *v)
{
    put_header(f, name, "counter", help);
    for (size_t c = 0; c < N_COMPONENTS; c++)
        fprintf(f, "%s{component=\"%s\"} %llu\n", name, component_names[c],
                (unsigned long long)load(&v[c]));
}

static _Atomic(metrics_render_hook) render_hook;

void metrics_set_render_hook(metrics_render_hook hook)
{
    atomic_store(&render_hook, hook);
}

int metrics_render(char **out, size_t *len)
{
    char *buf = NULL;
    size_t n = 0;
    FILE *f = NULL;
    struct lag_entry *lags = NULL;
    size_t n_lags = 0;
    int rc = -1;
    char store[sizeof(id_store)], worker[sizeof(id_worker)];
    double started;

    /* Copy what the mutex guards first, so no lock is held while
     * formatting. */
    pthread_mutex_lock(&metrics_lock);
    memcpy(store, id_store, sizeof(store));
    memcpy(worker, id_worker, sizeof(worker));
    started = start_time;
    if (lag_len) {
        lags = malloc(lag_len * sizeof(*lags));
        if (lags) {
            memcpy(lags, lag_table, lag_len * sizeof(*lags));
            n_lags = lag_len;
        }
    }
    int lag_oom = lag_len && !lags;
    pthread_mutex_unlock(&metrics_lock);
    if (lag_oom)
        goto cleanup;

    f = open_memstream(&buf, &n);
    if (!f)
        goto cleanup;

    put_header(f, "edr_build_info", "gauge",
               "Build and identity of this worker (always 1).");
    fprintf(f, "edr_build_info{version=\"");
    put_label_value(f, EDR_VERSION);
    fputs("\",store=\"", f);
    put_label_value(f, store);
    fputs("\",worker=\"", f);
    put_label_value(f, worker);
    fputs("\"} 1\n", f);

    if (started > 0) {
        put_header(f, "edr_start_time_seconds", "gauge",
                   "Start time of the worker since the Unix epoch.");
        fputs("edr_start_time_seconds ", f);
        fprintf(f, "%.3f\n", started);
    }

    put_header(f, "edr_events_applied_total", "counter",
               "Events applied to the store, by CloudEvents type.");
    for (size_t t = 0; t < N_TYPES; t++) {
        fprintf(f, "edr_events_applied_total{type=\"%s\",store=\"",
                type_names[t]);
        put_label_value(f, store);
        fprintf(f, "\"} %llu\n", (unsigned long long)load(&events_applied[t]));
    }

    put_header(f, "edr_events_dead_lettered_total", "counter",
               "Events copied to the dead-letter topic, by reason class.");
    for (size_t r = 0; r < N_REASONS; r++)
        fprintf(f, "edr_events_dead_lettered_total{reason=\"%s\"} %llu\n",
                reason_names[r], (unsigned long long)load(&dead_lettered[r]));

    put_header(f, "edr_batches_total", "counter",
               "Store batches applied (one transaction each).");
    fprintf(f, "edr_batches_total %llu\n", (unsigned long long)load(&batches));

    put_header(f, "edr_batch_apply_seconds", "histogram",
               "Time to apply one batch of events to the store.");
    put_histogram(f, "edr_batch_apply_seconds", "", &batch_hist, batch_bounds,
                  N_ELEMS(batch_bounds));

    put_header(f, "edr_lookups_total", "counter",
               "Lookup requests answered, by op and reply status.");
    for (size_t o = 0; o < N_OPS; o++)
        for (size_t s = 0; s < N_STATUSES; s++)
            fprintf(f, "edr_lookups_total{op=\"%s\",status=\"%s\"} %llu\n",
                    op_names[o], status_names[s],
                    (unsigned long long)load(&lookups[o][s]));

    put_header(f, "edr_lookups_dropped_total", "counter",
               "Lookup requests dropped without a reply, by reason.");
    for (size_t r = 0; r < N_DROPPED; r++)
        fprintf(f, "edr_lookups_dropped_total{reason=\"%s\"} %llu\n",
                dropped_names[r],
                (unsigned long long)load(&lookups_dropped[r]));

    put_header(f, "edr_callbacks_total", "counter",
               "EDC callbacks (POST /callbacks/edc), by outcome.");
    for (size_t r = 0; r < N_CALLBACKS; r++)
        fprintf(f, "edr_callbacks_total{outcome=\"%s\"} %llu\n",
                callback_names[r], (unsigned long long)load(&callbacks[r]));

    put_header(f, "edr_lookup_seconds", "histogram",
               "Time from popping a lookup request to pushing its reply.");
    for (size_t o = 0; o < N_OPS; o++) {
        char labels[64];
        snprintf(labels, sizeof(labels), "op=\"%s\"", op_names[o]);
        put_histogram(f, "edr_lookup_seconds", labels, &lookup_hist[o],
                      lookup_bounds, N_ELEMS(lookup_bounds));
    }

    put_header(f, "edr_consumer_lag", "gauge",
               "Messages between the high watermark and the next offset to "
               "consume, per assigned partition.");
    for (size_t i = 0; i < n_lags; i++)
        fprintf(f, "edr_consumer_lag{partition=\"%d\"} %lld\n",
                (int)lags[i].partition, (long long)lags[i].lag);

    put_header(f, "edr_store_entries", "gauge",
               "Connections stored (for postgres: the shared table).");
    fprintf(f, "edr_store_entries %llu\n",
            (unsigned long long)load(&store_entries));

    put_per_component(f, "edr_outages_total",
                      "Outages of a dependency that began (store, kafka, "
                      "redis).",
                      outages);
    put_per_component(f, "edr_retries_total",
                      "Retries after a transient failure of a dependency.",
                      retries);

    put_header(f, "edr_store_ok", "gauge", "1 while the store is usable.");
    fprintf(f, "edr_store_ok %d\n", atomic_load(&store_ok));
    put_header(f, "edr_kafka_assigned", "gauge",
               "1 while the consumer has partitions assigned.");
    fprintf(f, "edr_kafka_assigned %d\n", atomic_load(&kafka_assigned));
    put_header(f, "edr_redis_connected", "gauge",
               "1 while a lookup responder is connected to Redis.");
    fprintf(f, "edr_redis_connected %d\n", atomic_load(&redis_connected));
    put_header(f, "edr_restoring", "gauge",
               "1 while the state is being restored from the changelog.");
    fprintf(f, "edr_restoring %d\n", atomic_load(&restoring));
    put_header(f, "edr_source_retention_ms", "gauge",
               "retention.ms of the source topic (-1: unlimited).");
    fprintf(f, "edr_source_retention_ms %lld\n",
            (long long)atomic_load(&source_retention_ms));
    put_header(f, "edr_source_retention_bytes", "gauge",
               "retention.bytes of the source topic (-1: unlimited).");
    fprintf(f, "edr_source_retention_bytes %lld\n",
            (long long)atomic_load(&source_retention_bytes));

    int werr = ferror(f);
    int cerr = fclose(f);
    if (cerr != 0 || werr || !buf)
        goto cleanup;
    metrics_render_hook hook = atomic_load(&render_hook);
    if (hook && hook(&buf, &n) != 0)
        goto cleanup;
    *out = buf;
    *len = n;
    buf = NULL;
    rc = 0;
cleanup:
    free(buf);
    free(lags);
    return rc;
}

/* state_gaps.c: see state_gaps.h. A small array of known partitions kept
 * sorted by partition number behind one mutex; partitions are few (the
 * topic's partition count), so a linear scan is the simple right choice. */
#include "worker/state_gaps.h"

#include <inttypes.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

struct gap_slot {
    int32_t partition;
    int has_gap;
    int64_t from, to; /* [from, to) when has_gap */
};

struct state_gaps {
    pthread_mutex_t mu;
    struct gap_slot *slots; /* sorted by partition */
    size_t n, cap;
    int64_t accepted; /* offsets accepted as lost */
};

struct state_gaps *state_gaps_new(void)
{
    struct state_gaps *g = calloc(1, sizeof(*g));

    if (!g)
        return NULL;
    if (pthread_mutex_init(&g->mu, NULL) != 0) {
        free(g);
        return NULL;
    }
    return g;
}

void state_gaps_free(struct state_gaps *g)
{
    if (!g)
        return;
    pthread_mutex_destroy(&g->mu);
    free(g->slots);
    free(g);
}

/* Index of p, or -1; *ins = where it would go. Caller holds mu. */
static long gaps_find(const struct state_gaps *g, int32_t p, size_t *ins)
{
    size_t i = 0;

    while (i < g->n && g->slots[i].partition < p)
        i++;
    if (ins)
        *ins = i;
    return i < g->n && g->slots[i].partition == p ? (long)i : -1;
}

/* The slot of p, inserted when absent; NULL when out of memory. */
static struct gap_slot *gaps_slot(struct state_gaps *g, int32_t p)
{
    size_t ins;
    long i = gaps_find(g, p, &ins);

    if (i >= 0)
        return &g->slots[i];
    if (g->n == g->cap) {
        size_t cap = g->cap ? g->cap * 2 : 8;
        struct gap_slot *s = realloc(g->slots, cap * sizeof(*s));
        if (!s)
            return NULL;
        g->slots = s;
        g->cap = cap;
    }
    memmove(&g->slots[ins + 1], &g->slots[ins],
            (g->n - ins) * sizeof(g->slots[0]));
    g->n++;
    g->slots[ins] = (struct gap_slot){.partition = p};
    return &g->slots[ins];
}

int64_t state_gaps_check(struct state_gaps *g, int32_t p,
                         int64_t needed_next_offset, int64_t log_start,
                         int accept, int64_t *from, int64_t *to)
{
    int64_t size = -1;

    if (p < 0 || needed_next_offset < 0 || log_start < 0)
        return -1;
    pthread_mutex_lock(&g->mu);
    struct gap_slot *s = gaps_slot(g, p);
    if (!s)
        goto done;
    size = log_start > needed_next_offset ? log_start - needed_next_offset : 0;
    if (size == 0 || accept) {
        s->has_gap = 0;
        if (size > 0)
            g->accepted += size;
    } else {
        s->has_gap = 1;
        s->from = needed_next_offset;
        s->to = log_start;
    }
    if (size > 0) {
        if (from)
            *from = needed_next_offset;
        if (to)
            *to = log_start;
    }

done:
    pthread_mutex_unlock(&g->mu);
    return size;
}

void state_gaps_clear(struct state_gaps *g, int32_t p)
{
    pthread_mutex_lock(&g->mu);
    long i = gaps_find(g, p, NULL);
    if (i >= 0)
        g->slots[i].has_gap = 0;
    pthread_mutex_unlock(&g->mu);
}

int state_gaps_any(struct state_gaps *g)
{
    int any = 0;

    pthread_mutex_lock(&g->mu);
    for (size_t i = 0; i < g->n && !any; i++)
        any = g->slots[i].has_gap;
    pthread_mutex_unlock(&g->mu);
    return any;
}

int state_gaps_partition(struct state_gaps *g, int32_t p, int64_t *from,
                         int64_t *to)
{
    int found = 0;

    pthread_mutex_lock(&g->mu);
    long i = gaps_find(g, p, NULL);
    if (i >= 0 && g->slots[i].has_gap) {
        found = 1;
        if (from)
            *from = g->slots[i].from;
        if (to)
            *to = g->slots[i].to;
    }
    pthread_mutex_unlock(&g->mu);
    return found;
}

int64_t state_gaps_accepted_total(struct state_gaps *g)
{
    pthread_mutex_lock(&g->mu);
    int64_t v = g->accepted;
    pthread_mutex_unlock(&g->mu);
    return v;
}

/* snprintf that appends at *used, counting what would not fit. */
static void gaps_append(char *buf, size_t n, size_t *used, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));

static void gaps_append(char *buf, size_t n, size_t *used, const char *fmt, ...)
{
    va_list ap;
    char *at = *used < n ? buf + *used : NULL;
    size_t room = *used < n ? n - *used : 0;

    va_start(ap, fmt);
    int k = vsnprintf(at, room, fmt, ap);
    va_end(ap);
    if (k > 0)
        *used += (size_t)k;
}

static int gaps_wanted(int32_t p, const int32_t *ps, size_t n_ps)
{
    if (!ps)
        return 1;
    for (size_t i = 0; i < n_ps; i++)
        if (ps[i] == p)
            return 1;
    return 0;
}

static size_t gaps_describe(struct state_gaps *g, const int32_t *ps,
                            size_t n_ps, char *buf, size_t n)
{
    size_t used = 0;
    int first = 1;

    if (buf && n > 0)
        buf[0] = '\0';
    pthread_mutex_lock(&g->mu);
    for (size_t i = 0; i < g->n; i++) {
        const struct gap_slot *s = &g->slots[i];
        if (!s->has_gap || !gaps_wanted(s->partition, ps, n_ps))
            continue;
        gaps_append(buf, n, &used,
                    "%spartition %" PRId32 " is missing offsets %" PRId64
                    "-%" PRId64 " (deleted by retention before this worker "
                    "applied them)",
                    first ? "" : "; ", s->partition, s->from, s->to - 1);
        first = 0;
    }
    pthread_mutex_unlock(&g->mu);
    return used;
}

size_t state_gaps_describe(struct state_gaps *g, char *buf, size_t n)
{
    return gaps_describe(g, NULL, 0, buf, n);
}

size_t state_gaps_describe_partitions(struct state_gaps *g, const int32_t *ps,
                                      size_t n_ps, char *buf, size_t n)
{
    static const int32_t none = -1;

    /* ps == NULL means "all" inside; an empty set must mean "none". */
    return gaps_describe(g, ps ? ps : &none, ps ? n_ps : 0, buf, n);
}

int state_gaps_prometheus(struct state_gaps *g, char **buf, size_t *len)
{
    static const char head[] =
        "# HELP edr_state_gap_offsets Offsets of the source topic the state "
        "needs but the log no longer holds, per partition.\n"
        "# TYPE edr_state_gap_offsets gauge\n";
    int rc = -1;

    pthread_mutex_lock(&g->mu);
    size_t need =
        sizeof(head) + g->n * 96; /* one sample line is at most ~70 bytes */
    char *out = realloc(*buf, *len + need);
    if (!out)
        goto done;
    size_t at = *len;
    memcpy(out + at, head, sizeof(head) - 1);
    at += sizeof(head) - 1;
    for (size_t i = 0; i < g->n; i++) {
        const struct gap_slot *s = &g->slots[i];
        int k = snprintf(out + at, *len + need - at,
                         "edr_state_gap_offsets{partition=\"%" PRId32
                         "\"} %" PRId64 "\n",
                         s->partition, s->has_gap ? s->to - s->from : 0);
        if (k > 0)
            at += (size_t)k;
    }
    out[at] = '\0';
    *buf = out;
    *len = at;
    rc = 0;

done:
    pthread_mutex_unlock(&g->mu);
    return rc;
}

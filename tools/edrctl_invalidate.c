/* edrctl_invalidate.c: `edrctl invalidate` (schemas/README.md §5, v2).
 *
 * Evicts entries by party, asset, asset family or transfer on every
 * replica without a cross-partition event: pages through list_connections
 * with the given filters (edrctl_lookup.c) until the cursor runs out, then
 * publishes, per listed entry, one keyed edr.expired carrying the listed
 * transfer id (tools/edrctl_publish.h), so an entry renewed meanwhile
 * survives. Everything is listed before anything is published: the
 * deletions cannot move the cursor under the listing. Prints
 * {"matched": n, "published": n}. */
#include "tools/edrctl.h"
#include "tools/edrctl_args.h"
#include "tools/edrctl_publish.h"

#include <yajl/yajl_tree.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

struct invalidate_args {
    struct edrctl_filters f;
    int dry_run;
    int help;
};

/* One listed entry: its four keys and transfer id, owned. */
struct target {
    char *key[4];
    char *transfer_id;
};

struct targets {
    struct target *v;
    size_t n, cap;
};

static const char *const key_names[4] = {"counter_party_id",
                                         "counter_party_address",
                                         "query_checksum", "policy_checksum"};

static void invalidate_usage(FILE *out)
{
    fprintf(out,
            "Usage: edrctl invalidate [--party-substring S] [--asset-id A]\n"
            "           [--asset-prefix P] [--transfer-id T] [--dry-run]\n"
            "\n"
            "Lists the entries matching every filter given (at least one) "
            "and publishes,\nfor each, one edr.expired with its four keys "
            "and its transfer id, so an\nentry renewed meanwhile survives. "
            "Waits for every delivery report and\nprints {\"matched\": n, "
            "\"published\": n} (published is 0 with --dry-run).\n"
            "\n"
            "  --party-substring S  counter_party_id contains S\n"
            "  --asset-id A         the entry's assetId is A\n"
            "  --asset-prefix P     the entry's assetId starts with P "
            "(bytes, case sensitive)\n"
            "  --transfer-id T      the entry's transferProcessId is T\n"
            "  --dry-run            list and count only, publish nothing\n"
            "Uses EDR_REDIS_URL, EDR_RPC_PREFIX (the lookup), "
            "EDR_KAFKA_BROKERS,\nEDR_TOPIC (the events), EDR_TIMEOUT_MS and "
            "-X. Exit codes: 0 ok, 2 usage\nerror, 3 error or timeout.\n");
}

static int parse_args(int argc, char **argv, struct invalidate_args *a)
{
    static const char *const names[] = {"--party-substring", "--asset-id",
                                        "--asset-prefix", "--transfer-id"};
    memset(a, 0, sizeof(*a));
    /* the dispatcher leaves the subcommand name first */
    for (int i = argc > 0 && argv[0][0] != '-' ? 1 : 0; i < argc; i++) {
        const char **slots[] = {&a->f.substring, &a->f.asset_id,
                                &a->f.asset_prefix, &a->f.transfer_id};
        if (strcmp(argv[i], "--help") == 0 || strcmp(argv[i], "-h") == 0) {
            a->help = 1;
            return 0;
        }
        if (strcmp(argv[i], "--dry-run") == 0) {
            a->dry_run = 1;
            continue;
        }
        int m = 0;
        for (size_t k = 0; k < sizeof(names) / sizeof(names[0]) && !m; k++)
            if ((m = edrctl_take_flag(argc, argv, &i, names[k], slots[k])) >
                    0 &&
                !(*slots[k])[0]) {
                fprintf(stderr, "edrctl invalidate: %s must not be empty\n",
                        names[k]);
                return -1;
            }
        if (m < 0) {
            fprintf(stderr, "edrctl invalidate: %s needs a value\n", argv[i]);
            return -1;
        }
        if (!m) {
            fprintf(stderr, "edrctl invalidate: unknown argument \"%s\"\n",
                    argv[i]);
            return -1;
        }
    }
    if (!a->f.substring && !a->f.asset_id && !a->f.asset_prefix &&
        !a->f.transfer_id) {
        fprintf(stderr, "edrctl invalidate: give at least one of "
                        "--party-substring, --asset-id, --asset-prefix, "
                        "--transfer-id\n");
        return -1;
    }
    return 0;
}

static void targets_free(struct targets *t)
{
    for (size_t i = 0; i < t->n; i++) {
        for (int k = 0; k < 4; k++)
            free(t->v[i].key[k]);
        free(t->v[i].transfer_id);
    }
    free(t->v);
    memset(t, 0, sizeof(*t));
}

static char *string_member(yajl_val obj, const char *name)
{
    const char *path[] = {name, NULL};
    yajl_val v = yajl_tree_get(obj, path, yajl_t_string);
    return v ? strdup(v->u.string) : NULL;
}

/* Appends the items of one list_connections result to t; *next gets the
 * next cursor (malloc'd) or NULL on the last page. 0, or -1 with a
 * message on stderr. */
static int take_page(const char *result, struct targets *t, char **next)
{
    const char *p_items[] = {"items", NULL};
    const char *p_next[] = {"next_cursor", NULL};
    char err[256];
    int rc = -1;
    yajl_val v = yajl_tree_parse(result, err, sizeof(err));
    yajl_val items = v ? yajl_tree_get(v, p_items, yajl_t_array) : NULL;
    yajl_val cur = v ? yajl_tree_get(v, p_next, yajl_t_any) : NULL;

    *next = NULL;
    if (!items || (cur && !YAJL_IS_NULL(cur) && !YAJL_IS_STRING(cur))) {
        fprintf(stderr, "edrctl invalidate: list_connections result "
                        "breaks the contract\n");
        goto out;
    }
    for (size_t i = 0; i < items->u.array.len; i++) {
        if (t->n == t->cap) {
            size_t cap = t->cap ? t->cap * 2 : 64;
            struct target *grown = realloc(t->v, cap * sizeof(*grown));
            if (!grown) {
                fprintf(stderr, "edrctl invalidate: out of memory\n");
                goto out;
            }
            t->v = grown;
            t->cap = cap;
        }
        struct target *e = &t->v[t->n];
        memset(e, 0, sizeof(*e));
        t->n++;
        int ok = 1;
        for (int k = 0; k < 4; k++)
            ok &= (e->key[k] = string_member(items->u.array.values[i],
                                             key_names[k])) != NULL;
        ok &= (e->transfer_id = string_member(items->u.array.values[i],
                                              "transferProcessId")) != NULL;
        if (!ok) {
            fprintf(stderr, "edrctl invalidate: a listed item lacks its keys "
                            "or transferProcessId (or memory ran out)\n");
            goto out;
        }
    }
    if (cur && YAJL_IS_STRING(cur) && !(*next = strdup(cur->u.string))) {
        fprintf(stderr, "edrctl invalidate: out of memory\n");
        goto out;
    }
    rc = 0;
out:
    yajl_tree_free(v);
    return rc;
}

/* Every entry matching f, across pages. EDRCTL_OK or an edrctl_exit. */
static int list_all(const struct config *cfg, const struct edrctl_filters *f,
                    struct targets *t)
{
    char *cursor = NULL, *prev = NULL;
    int rc;
    for (;;) {
        struct reply_msg msg = {0};
        char *next = NULL;
        rc = edrctl_list_page(cfg, f, cursor, &msg);
        if (rc == EDRCTL_OK && take_page(msg.result_json, t, &next) != 0)
            rc = EDRCTL_ERROR;
        reply_msg_clear(&msg);
        free(prev);
        prev = cursor;
        cursor = next;
        if (rc != EDRCTL_OK || !cursor)
            break;
        if (prev && strcmp(prev, cursor) == 0) {
            /* a worker bug must not loop us for ever */
            fprintf(stderr, "edrctl invalidate: next_cursor repeats\n");
            rc = EDRCTL_ERROR;
            break;
        }
    }
    free(prev);
    free(cursor);
    return rc;
}

static int publish_all(const struct config *cfg, const struct targets *t,
                       size_t *published)
{
    struct edrctl_producer p;
    char source[300];
    int rc = edrctl_producer_open(&p, cfg, "invalidate");

    *published = 0;
    if (rc != EDRCTL_OK)
        return rc;
    edrctl_default_source(source, sizeof(source));
    for (size_t i = 0; i < t->n && rc == EDRCTL_OK; i++) {
        const struct target *e = &t->v[i];
        struct event_spec spec = {
            .type = EVENT_EXPIRED,
            .source = source,
            .key = {e->key[0], e->key[1], e->key[2], e->key[3]},
            .transfer_id = e->transfer_id,
        };
        rc = edrctl_producer_send_event(&p, cfg->topic, &spec, NULL);
        if (rc == EDRCTL_USAGE) /* a listed entry we cannot expire */
            rc = EDRCTL_ERROR;
    }
    /* what was sent is awaited even after a failure, so the count is true */
    int flushed = edrctl_producer_flush(&p);
    if (rc == EDRCTL_OK)
        rc = flushed;
    *published = p.delivered;
    edrctl_producer_close(&p);
    return rc;
}

int edrctl_invalidate_main(const struct config *cfg, int argc, char **argv)
{
    struct invalidate_args a;
    struct targets t = {0};
    size_t published = 0;
    int rc;

    if (parse_args(argc, argv, &a) != 0) {
        invalidate_usage(stderr);
        return EDRCTL_USAGE;
    }
    if (a.help) {
        invalidate_usage(stdout);
        return EDRCTL_OK;
    }
    rc = list_all(cfg, &a.f, &t);
    if (rc != EDRCTL_OK)
        goto out;
    if (!a.dry_run && t.n > 0)
        rc = publish_all(cfg, &t, &published);
    printf("{\"matched\": %zu, \"published\": %zu}\n", t.n, published);
    fflush(stdout);
out:
    targets_free(&t);
    return rc;
}

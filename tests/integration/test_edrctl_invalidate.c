/* test_edrctl_invalidate.c: `edrctl invalidate` (schemas/README.md §5, v2)
 * against the real local Kafka and Redis, with edr-worker processes.
 *
 *   - usage: no filter, an empty filter, an unknown flag: exit 2;
 *     --help exits 0 and edrctl --help lists invalidate;
 *   - eviction by asset id, asset prefix, party substring and transfer
 *     id, and all filters together (AND); --dry-run publishes nothing;
 *     the entries that do not match are still there afterwards;
 *   - more entries than one list page (1000): the cursor is followed;
 *   - an entry renewed with another transfer id after the listing
 *     survives. The race is made deterministic with a second worker (the
 *     "lister") that applies a topic holding the state before the
 *     renewal: invalidate lists from it (--rpc-prefix) and publishes to
 *     the topic of the first worker, where the renewal already is;
 *   - a worker that does not answer: exit 3.
 *
 * Binaries: $EDR_WORKER_BIN (default ../edr-worker) and $EDR_EDRCTL_BIN
 * (default ../edrctl), relative to build/tests. */
#include "base/clock.h"
#include "schemas/edr_key.h"
#include "schemas/event_encode.h"
#include "tests/support/cunit_main.h"
#include "tests/support/kafka_util.h"
#include "tests/support/ops_util.h"
#include "tests/support/proc_util.h"

#include <librdkafka/rdkafka.h>

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define N_BULK 1005 /* > one list page of 1000 */

struct worker {
    char *topic, *dlq;
    char prefix[128];
    char log[128];
    pid_t pid;
};

static const char *brokers;
static char tag[64];
static struct worker main_w, lister_w;

static const char *edrctl_bin(void)
{
    const char *b = getenv("EDR_EDRCTL_BIN");
    return b && *b ? b : "../edrctl";
}

/* Runs edrctl with the NULL-terminated args against w's topic and
 * prefix (each may be overridden by a later flag); output (stdout and
 * stderr) into out; its exit code. */
static int ctl(const struct worker *w, char *out, size_t cap, ...)
{
    const char *argv[40];
    int n = 0;
    va_list ap;
    argv[n++] = edrctl_bin();
    va_start(ap, cap);
    for (const char *a; n < 34 && (a = va_arg(ap, const char *));)
        argv[n++] = a;
    va_end(ap);
    argv[n++] = "--topic";
    argv[n++] = w->topic;
    argv[n++] = "--rpc-prefix";
    argv[n++] = w->prefix;
    argv[n] = NULL;
    return test_run_capture(argv, out, cap, 60000);
}

static int start_worker(struct worker *w, const char *name)
{
    char err[256], e_topic[256], e_dlq[256], e_prefix[200], e_id[96];
    if (test_kafka_topic_pair(brokers, name, 3, &w->topic, &w->dlq, err,
                              sizeof(err))) {
        fprintf(stderr, "%s\n", err);
        return -1;
    }
    snprintf(w->prefix, sizeof(w->prefix), "%s", w->topic);
    snprintf(w->log, sizeof(w->log), "%s_%d.log", name, (int)getpid());
    snprintf(e_topic, sizeof(e_topic), "EDR_TOPIC=%s", w->topic);
    snprintf(e_dlq, sizeof(e_dlq), "EDR_DLQ_TOPIC=%s", w->dlq);
    snprintf(e_prefix, sizeof(e_prefix), "EDR_RPC_PREFIX=%s", w->prefix);
    snprintf(e_id, sizeof(e_id), "EDR_WORKER_ID=%s", name);
    const char *env[] = {e_topic,
                         e_dlq,
                         e_prefix,
                         e_id,
                         "EDR_STORE=memory",
                         "EDR_CHANGELOG_TOPIC=off",
                         "EDR_HTTP_ADDR=off",
                         "EDR_RPC_THREADS=2",
                         NULL};
    w->pid = ops_worker_start(env, w->log);
    if (w->pid < 0)
        return -1;
    char out[4096];
    int64_t deadline = edr_clock_ms() + 60000;
    while (ctl(w, out, sizeof(out), "ping", "--timeout-ms", "1000", NULL)) {
        if (edr_clock_ms() > deadline) {
            ops_dump_log(w->log, 30);
            return -1;
        }
    }
    return 0;
}

static void stop_worker(struct worker *w)
{
    if (w->pid > 0 && ops_worker_stop(w->pid, 30000) != 0)
        ops_dump_log(w->log, 30);
    w->pid = 0;
    if (w->topic) {
        test_kafka_delete_topic(brokers, w->topic);
        test_kafka_delete_topic(brokers, w->dlq);
    }
    free(w->topic);
    free(w->dlq);
    w->topic = w->dlq = NULL;
}

static int setup(void)
{
    brokers = test_env("EDR_KAFKA_BROKERS");
    if (!brokers || !test_env("EDR_REDIS_URL"))
        return -1;
    snprintf(tag, sizeof(tag), "%ld%lld", (long)getpid(),
             (long long)edr_epoch_ms());
    if (start_worker(&main_w, "inval_main") ||
        start_worker(&lister_w, "inval_lister"))
        return -1;
    return 0;
}

static int teardown(void)
{
    stop_worker(&main_w);
    stop_worker(&lister_w);
    return 0;
}

/* ------------------------------------------------------------ helpers */

/* Keys of entry `name`: party "BPNL<party>-<tag>", the rest from name. */
static void keys_of(const char *party, const char *name, char k[4][160])
{
    snprintf(k[0], 160, "BPNL%s-%s", party, tag);
    snprintf(k[1], 160, "https://%s.example.com/api/v1/dsp", party);
    snprintf(k[2], 160, "query-%s", name);
    snprintf(k[3], 160, "policy-%s", name);
}

/* Publishes edr.negotiated (or renewed) of entry name with transfer id
 * "tp-<name><suffix>" and asset asset to w's topic; exit code of edrctl. */
static int put(const struct worker *w, const char *type, const char *party,
               const char *name, const char *suffix, const char *asset)
{
    char k[4][160], edr[512], out[4096];
    keys_of(party, name, k);
    snprintf(edr, sizeof(edr),
             "{\"transferProcessId\":\"tp-%s%s-%s\",\"assetId\":\"%s\"}", name,
             suffix, tag, asset);
    return ctl(w, out, sizeof(out), "publish", type, "--party", k[0],
               "--address", k[1], "--query", k[2], "--policy", k[3], "--edr",
               edr, NULL);
}

/* The transfer id stored at entry name in w ("" when not found). */
static void transfer_id(const struct worker *w, const char *party,
                        const char *name, char *out, size_t cap)
{
    char k[4][160], buf[4096];
    keys_of(party, name, k);
    int rc = ctl(w, buf, sizeof(buf), "transfer-id", "--party", k[0],
                 "--address", k[1], "--query", k[2], "--policy", k[3], NULL);
    out[0] = '\0';
    char *q = rc == 0 ? strchr(buf, '"') : NULL;
    char *e = q ? strchr(q + 1, '"') : NULL;
    if (e)
        snprintf(out, cap, "%.*s", (int)(e - q - 1), q + 1);
}

/* Entries of w whose party contains s. -1 on failure. */
static long count(const struct worker *w, const char *s)
{
    char out[4096];
    if (ctl(w, out, sizeof(out), "count", "--party-substring", s, NULL))
        return -1;
    return strtol(out, NULL, 10);
}

/* Waits until count(w, s) == want; 0 or -1 after 30 s. */
static int wait_count(const struct worker *w, const char *s, long want)
{
    int64_t deadline = edr_clock_ms() + 30000;
    long got;
    while ((got = count(w, s)) != want) {
        if (edr_clock_ms() > deadline) {
            fprintf(stderr, "count %s: %ld, want %ld\n", s, got, want);
            return -1;
        }
        edr_sleep_ms(20);
    }
    return 0;
}

/* invalidate with the NULL-terminated filter flags; 0 when it exited 0
 * and printed exactly {"matched": matched, "published": published}. */
static int invalidate(const struct worker *list_from, const char *topic,
                      long matched, long published, const char *const *flags)
{
    const char *argv[40];
    char out[8192], want[96];
    int n = 0;
    argv[n++] = edrctl_bin();
    argv[n++] = "invalidate";
    for (; *flags && n < 30; flags++)
        argv[n++] = *flags;
    argv[n++] = "--topic";
    argv[n++] = topic;
    argv[n++] = "--rpc-prefix";
    argv[n++] = list_from->prefix;
    argv[n] = NULL;
    int rc = test_run_capture(argv, out, sizeof(out), 60000);
    snprintf(want, sizeof(want), "{\"matched\": %ld, \"published\": %ld}\n",
             matched, published);
    if (rc != 0 || strcmp(out, want) != 0) {
        fprintf(stderr, "invalidate: exit %d, printed \"%s\", want \"%s\"\n",
                rc, out, want);
        return -1;
    }
    return 0;
}

/* -------------------------------------------------------------- tests */

static void test_usage(void)
{
    char out[8192];
    CU_ASSERT_EQUAL(ctl(&main_w, out, sizeof(out), "invalidate", NULL), 2);
    CU_ASSERT_PTR_NOT_NULL(strstr(out, "at least one"));
    CU_ASSERT_EQUAL(
        ctl(&main_w, out, sizeof(out), "invalidate", "--dry-run", NULL), 2);
    CU_ASSERT_EQUAL(
        ctl(&main_w, out, sizeof(out), "invalidate", "--asset-id", "", NULL),
        2);
    CU_ASSERT_EQUAL(
        ctl(&main_w, out, sizeof(out), "invalidate", "--asset-id", NULL), 2);
    CU_ASSERT_EQUAL(
        ctl(&main_w, out, sizeof(out), "invalidate", "--party", "x", NULL), 2);
    CU_ASSERT_EQUAL(
        ctl(&main_w, out, sizeof(out), "invalidate", "--help", NULL), 0);
    CU_ASSERT_PTR_NOT_NULL(strstr(out, "--asset-prefix"));
    CU_ASSERT_EQUAL(ctl(&main_w, out, sizeof(out), "--help", NULL), 0);
    CU_ASSERT_PTR_NOT_NULL(strstr(out, "invalidate [--party-substring S]"));
}

static void test_filters(void)
{
    char a1[96], fam[96], other[96], party_a[96], party_b[96], tp[160];
    snprintf(a1, sizeof(a1), "urn:asset:%s:a1", tag);
    snprintf(fam, sizeof(fam), "urn:asset:%s:fam:", tag);
    snprintf(other, sizeof(other), "urn:asset:%s:other", tag);
    snprintf(party_a, sizeof(party_a), "BPNLA-%s", tag);
    snprintf(party_b, sizeof(party_b), "BPNLB-%s", tag);
    char fam1[128], fam2[128];
    snprintf(fam1, sizeof(fam1), "%s1", fam);
    snprintf(fam2, sizeof(fam2), "%s2", fam);

    /* A: a1, fam1, other; B: fam2, other2; C: other3 */
    CU_ASSERT_EQUAL_FATAL(put(&main_w, "negotiated", "A", "a1", "", a1), 0);
    CU_ASSERT_EQUAL_FATAL(put(&main_w, "negotiated", "A", "f1", "", fam1), 0);
    CU_ASSERT_EQUAL_FATAL(put(&main_w, "negotiated", "A", "o1", "", other), 0);
    CU_ASSERT_EQUAL_FATAL(put(&main_w, "negotiated", "B", "f2", "", fam2), 0);
    CU_ASSERT_EQUAL_FATAL(put(&main_w, "negotiated", "B", "o2", "", other), 0);
    CU_ASSERT_EQUAL_FATAL(put(&main_w, "negotiated", "C", "o3", "", other), 0);
    CU_ASSERT_EQUAL_FATAL(wait_count(&main_w, tag, 6), 0);

    /* --dry-run: counted, nothing published */
    const char *dry[] = {"--asset-prefix", fam, "--dry-run", NULL};
    CU_ASSERT_EQUAL(invalidate(&main_w, main_w.topic, 2, 0, dry), 0);
    /* AND: party A and the family: only f1 */
    const char *and_dry[] = {
        "--dry-run", "--party-substring", party_a, "--asset-prefix", fam, NULL};
    CU_ASSERT_EQUAL(invalidate(&main_w, main_w.topic, 1, 0, and_dry), 0);
    /* nothing matches: exit 0, 0 and 0 */
    const char *none[] = {"--party-substring", party_b, "--asset-id", a1, NULL};
    CU_ASSERT_EQUAL(invalidate(&main_w, main_w.topic, 0, 0, none), 0);
    CU_ASSERT_EQUAL(count(&main_w, tag), 6);

    /* by asset id */
    const char *by_asset[] = {"--asset-id", a1, NULL};
    CU_ASSERT_EQUAL(invalidate(&main_w, main_w.topic, 1, 1, by_asset), 0);
    CU_ASSERT_EQUAL(wait_count(&main_w, tag, 5), 0);
    transfer_id(&main_w, "A", "a1", tp, sizeof(tp));
    CU_ASSERT_STRING_EQUAL(tp, "");

    /* by asset prefix: f1 (party A) and f2 (party B) */
    const char *by_prefix[] = {"--asset-prefix", fam, NULL};
    CU_ASSERT_EQUAL(invalidate(&main_w, main_w.topic, 2, 2, by_prefix), 0);
    CU_ASSERT_EQUAL(wait_count(&main_w, tag, 3), 0);
    CU_ASSERT_EQUAL(count(&main_w, party_a), 1);
    CU_ASSERT_EQUAL(count(&main_w, party_b), 1);

    /* by party: B's o2 only */
    const char *by_party[] = {"--party-substring", party_b, NULL};
    CU_ASSERT_EQUAL(invalidate(&main_w, main_w.topic, 1, 1, by_party), 0);
    CU_ASSERT_EQUAL(wait_count(&main_w, tag, 2), 0);
    CU_ASSERT_EQUAL(count(&main_w, party_b), 0);

    /* by transfer id: C's o3 */
    char tp_o3[128];
    snprintf(tp_o3, sizeof(tp_o3), "tp-o3-%s", tag);
    const char *by_tid[] = {"--transfer-id", tp_o3, NULL};
    CU_ASSERT_EQUAL(invalidate(&main_w, main_w.topic, 1, 1, by_tid), 0);
    CU_ASSERT_EQUAL(wait_count(&main_w, tag, 1), 0);

    /* what matched nothing is still there */
    transfer_id(&main_w, "A", "o1", tp, sizeof(tp));
    char want[128];
    snprintf(want, sizeof(want), "tp-o1-%s", tag);
    CU_ASSERT_STRING_EQUAL(tp, want);
}

/* Produces n negotiated events of party "BPNLBULK-<tag>" directly. */
static int produce_bulk(const char *topic, int n)
{
    char err[256];
    rd_kafka_t *rk = test_kafka_client_new(RD_KAFKA_PRODUCER, brokers, NULL,
                                           NULL, NULL, err, sizeof(err));
    if (!rk) {
        fprintf(stderr, "%s\n", err);
        return -1;
    }
    int rc = 0;
    for (int i = 0; i < n && rc == 0; i++) {
        char k[4][160], name[32], edr[256], *json = NULL;
        size_t len = 0;
        snprintf(name, sizeof(name), "bulk%d", i);
        keys_of("BULK", name, k);
        snprintf(edr, sizeof(edr), "{\"transferProcessId\":\"tp-%s-%s\"}", name,
                 tag);
        struct event_spec spec = {.type = EVENT_NEGOTIATED,
                                  .source = "urn:test:invalidate",
                                  .key = {k[0], k[1], k[2], k[3]},
                                  .edr_json = edr,
                                  .edr_len = strlen(edr)};
        char ckey[EDR_CONNECTION_KEY_LEN + 1];
        edr_connection_key(&spec.key, ckey);
        if (event_encode(&spec, &json, &len, err, sizeof(err)) ||
            rd_kafka_producev(rk, RD_KAFKA_V_TOPIC(topic),
                              RD_KAFKA_V_MSGFLAGS(RD_KAFKA_MSG_F_COPY),
                              RD_KAFKA_V_KEY(ckey, EDR_CONNECTION_KEY_LEN),
                              RD_KAFKA_V_VALUE(json, len), RD_KAFKA_V_END))
            rc = -1;
        free(json);
        rd_kafka_poll(rk, 0);
    }
    if (rd_kafka_flush(rk, 30000))
        rc = -1;
    rd_kafka_destroy(rk);
    return rc;
}

static void test_pages(void)
{
    char party[96];
    snprintf(party, sizeof(party), "BPNLBULK-%s", tag);
    CU_ASSERT_EQUAL_FATAL(produce_bulk(main_w.topic, N_BULK), 0);
    CU_ASSERT_EQUAL_FATAL(wait_count(&main_w, party, N_BULK), 0);
    const char *flags[] = {"--party-substring", party, NULL};
    CU_ASSERT_EQUAL(invalidate(&main_w, main_w.topic, N_BULK, N_BULK, flags),
                    0);
    CU_ASSERT_EQUAL(wait_count(&main_w, party, 0), 0);
}

static void test_renewed_survives(void)
{
    char asset[96], tp[160], want[160];
    snprintf(asset, sizeof(asset), "urn:asset:%s:race", tag);
    /* the truth (main): r1 and r2 negotiated, then r1 renewed (tp-r1b) */
    CU_ASSERT_EQUAL_FATAL(put(&main_w, "negotiated", "R", "r1", "", asset), 0);
    CU_ASSERT_EQUAL_FATAL(put(&main_w, "negotiated", "R", "r2", "", asset), 0);
    CU_ASSERT_EQUAL_FATAL(put(&main_w, "renewed", "R", "r1", "b", asset), 0);
    /* the listing's view (lister): both before the renewal */
    CU_ASSERT_EQUAL_FATAL(put(&lister_w, "negotiated", "R", "r1", "", asset),
                          0);
    CU_ASSERT_EQUAL_FATAL(put(&lister_w, "negotiated", "R", "r2", "", asset),
                          0);
    char party[96];
    snprintf(party, sizeof(party), "BPNLR-%s", tag);
    CU_ASSERT_EQUAL_FATAL(wait_count(&lister_w, party, 2), 0);
    snprintf(want, sizeof(want), "tp-r1b-%s", tag);
    int64_t deadline = edr_clock_ms() + 30000;
    do
        transfer_id(&main_w, "R", "r1", tp, sizeof(tp));
    while (strcmp(tp, want) != 0 && edr_clock_ms() < deadline);
    CU_ASSERT_STRING_EQUAL_FATAL(tp, want);
    CU_ASSERT_EQUAL_FATAL(wait_count(&main_w, party, 2), 0);

    /* listed from the old view, published to the truth's topic */
    const char *flags[] = {"--asset-id", asset, NULL};
    CU_ASSERT_EQUAL(invalidate(&lister_w, main_w.topic, 2, 2, flags), 0);
    CU_ASSERT_EQUAL(wait_count(&main_w, party, 1), 0);
    /* r2 went; r1, renewed after the listing, survived with its new EDR */
    transfer_id(&main_w, "R", "r2", tp, sizeof(tp));
    CU_ASSERT_STRING_EQUAL(tp, "");
    transfer_id(&main_w, "R", "r1", tp, sizeof(tp));
    CU_ASSERT_STRING_EQUAL(tp, want);
    /* and the same invalidate against the truth now removes it */
    CU_ASSERT_EQUAL(invalidate(&main_w, main_w.topic, 1, 1, flags), 0);
    CU_ASSERT_EQUAL(wait_count(&main_w, party, 0), 0);
}

static void test_no_worker(void)
{
    char out[4096];
    struct worker nobody = main_w;
    snprintf(nobody.prefix, sizeof(nobody.prefix), "nobody-%s", tag);
    int rc = ctl(&nobody, out, sizeof(out), "invalidate", "--asset-id", "x",
                 "--timeout-ms", "500", NULL);
    CU_ASSERT_EQUAL(rc, 3);
    CU_ASSERT_PTR_NULL(strstr(out, "matched"));
}

static void register_suites(void)
{
    CU_pSuite s = CU_add_suite("edrctl invalidate", setup, teardown);
    CU_add_test(s, "usage errors exit 2, --help lists it", test_usage);
    CU_add_test(s, "asset id, prefix, party, transfer id, AND, dry run",
                test_filters);
    CU_add_test(s, "more than one page: the cursor is followed", test_pages);
    CU_add_test(s, "an entry renewed after the listing survives",
                test_renewed_survives);
    CU_add_test(s, "no worker answers: exit 3", test_no_worker);
}

int main(void)
{
    static const cunit_register_fn regs[] = {register_suites, NULL};
    return cunit_main(regs);
}

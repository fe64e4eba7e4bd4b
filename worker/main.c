/* main.c: edr-worker, the daemon. Reads the settings (worker/config.c),
 * opens the store, starts the lookup responder (worker/rpc.c) and the
 * HTTP endpoints (worker/http.c), runs the Kafka loop (worker/ingest.c)
 * on this thread until SIGTERM or SIGINT, then stops in order.
 * Built twice: edr-worker (release) and edr-worker-test, whose
 * EDR_TEST_HOOKS adds --exit-when-caught-up and EDR_FAULT for tests/ and
 * bench/.
 * Exit codes: 0 clean stop, 2 invalid setting, 3 runtime failure. */
#include "base/clock.h"
#include "stores/store.h"
#include "worker/backoff.h"
#include "worker/config_parse.h"
#include "worker/edc_callback.h"
#include "worker/fault_env.h"
#include "worker/http.h"
#include "worker/ingest.h"
#include "worker/ingest_outage.h"
#include "worker/log.h"
#include "worker/metrics.h"
#include "worker/rpc.h"

#include <librdkafka/rdkafka.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define EXIT_CONFIG 2
#define EXIT_RUNTIME 3

static volatile sig_atomic_t stop_requested;

static void on_stop_signal(int sig)
{
    (void)sig;
    stop_requested = 1;
}

static void install_signals(void)
{
    struct sigaction sa;
    memset(&sa, 0, sizeof(sa));
    sa.sa_handler = on_stop_signal;
    sigemptyset(&sa.sa_mask);
    sigaction(SIGTERM, &sa, NULL);
    sigaction(SIGINT, &sa, NULL);
    /* A peer closing a socket must be an error return, not a death. */
    signal(SIGPIPE, SIG_IGN);
}

static void print_help(FILE *out)
{
    fprintf(out, "Usage: edr-worker [flags]\n"
                 "\n"
                 "Consumes EDR lifecycle events (CloudEvents on Kafka) into a "
                 "store and\nanswers lookups over Redis. Every setting is an "
                 "environment variable and\na flag; the flag wins.\n\n");
    config_print_settings(out);
    fprintf(
        out,
        "\nOther flags:\n"
        "  --help                 this text\n"
        "  --version              print the version\n"
#ifdef EDR_TEST_HOOKS
        "\nTest build (edr-worker-test) only:\n"
        "  --exit-when-caught-up  stop once every partition is applied "
        "up to its end\n"
        "                         at start; prints {\"applied\": n, "
        "\"seconds\": s,\n"
        "                         \"events_per_s\": r}\n"
        "  EDR_FAULT=point:N      fail the Nth write|fsync|rename|query|txn "
        "and every\n"
        "                         one after it, until SIGUSR2\n"
        "  EDR_FILE_COMPACT_MIN   file store: compaction threshold in "
        "bytes\n"
#endif
        "\nStore modes: memory replays the topic from its start at "
        "every start;\nfile resumes from the offsets saved with its "
        "state; postgres shares the\nconsumer group EDR_GROUP_ID and "
        "resumes from <EDR_PG_TABLE>_offsets.\n"
        "\nExit codes: 0 clean stop (SIGTERM, SIGINT), 2 invalid "
        "setting, 3 runtime failure\n(the store failed, the HTTP port "
        "of EDR_HTTP_ADDR is busy or cannot be bound).\n");
}

/* Opens the configured store, waiting out transient failures (a database
 * that is not up yet). Returns NULL with *code set on a real failure or
 * when stopped meanwhile (*code 0). */
static struct store *open_store(const struct config *cfg, int *code)
{
    struct backoff b;
    struct outage_log ol = {0};
    backoff_init(&b, 100, 5000);
    for (;;) {
        struct store_err err = {0};
        struct store *st;
        if (strcmp(cfg->store, "memory") == 0)
            st = mem_store_open(&err);
        else if (strcmp(cfg->store, "file") == 0)
            st = file_store_open(cfg->file_path, &err);
        else
            st = pg_store_open(cfg->pg_dsn, cfg->pg_table, &err);
        if (st) {
            if (b.attempts)
                log_info("store: opened after %u retries", b.attempts);
            return st;
        }
        if (err.status == STORE_INVALID) {
            log_error("store: invalid setting (EDR_STORE=%s, %s): %s",
                      cfg->store,
                      strcmp(cfg->store, "file") == 0 ? "EDR_FILE_PATH"
                      : strcmp(cfg->store, "postgres") == 0
                          ? "EDR_PG_DSN/EDR_PG_TABLE"
                          : "EDR_STORE",
                      err.msg);
            *code = EXIT_CONFIG;
            return NULL;
        }
        if (err.status == STORE_AUTH) {
            /* Retrying cannot help: the credentials are a setting. */
            log_error("store: invalid setting EDR_PG_DSN: %s", err.msg);
            *code = EXIT_CONFIG;
            return NULL;
        }
        if (err.status != STORE_TRANSIENT) {
            log_error("store: cannot open the %s store: %s", cfg->store,
                      err.msg);
            *code = EXIT_RUNTIME;
            return NULL;
        }
        if (outage_log_note(&ol, "store", "retrying to open it", err.msg,
                            ingest_now()) == OUTAGE_LINE_FIRST) {
            metrics_outage("store");
            metrics_set_store_ok(0);
        }
        metrics_retry("store");
        unsigned ms = backoff_next(&b);
        for (unsigned waited = 0; waited < ms && !stop_requested; waited += 50)
            edr_sleep_ms(50);
        if (stop_requested) {
            *code = 0;
            return NULL;
        }
    }
}

int main(int argc, char **argv)
{
    struct ingest_opts opts = {.start_time = ingest_now()};
    struct config cfg;
    struct config_rest rest = {0};
    struct store *st = NULL;
    struct rpc_server *rpc = NULL;
    struct http_server *http = NULL;
    struct edc_callback *edc = NULL;
    char errstr[512];
    int code = 0;

    /* First of all: a SIGTERM at any moment of the start is a clean
     * stop, never a death by the default action. */
    install_signals();
    int rc = config_load(&cfg, CONFIG_WORKER, argc, argv, &rest, errstr,
                         sizeof(errstr));
    if (rc == CONFIG_HELP) {
        print_help(stdout);
        goto out;
    }
    if (rc == CONFIG_VERSION) {
        printf("edr-worker %s (librdkafka %s)\n", EDR_VERSION,
               rd_kafka_version_str());
        goto out;
    }
    if (rc == CONFIG_INVALID) {
        fprintf(stderr, "edr-worker: %s (see --help)\n", errstr);
        code = EXIT_CONFIG;
        goto out;
    }
    for (int i = 1; i < rest.argc; i++) {
#ifdef EDR_TEST_HOOKS
        if (strcmp(rest.argv[i], "--exit-when-caught-up") == 0) {
            opts.exit_when_caught_up = 1;
            continue;
        }
#endif
        fprintf(stderr, "edr-worker: unknown argument \"%s\" (see --help)\n",
                rest.argv[i]);
        code = EXIT_CONFIG;
        goto out;
    }

    log_init(cfg.worker_id, (enum log_level)log_level_parse(cfg.log_level),
             strcmp(cfg.log_format, "json") == 0);
#ifdef EDR_TEST_HOOKS
    if (fault_env_init(errstr, sizeof(errstr)) != 0) { /* tests/fault/ */
        log_error("%s", errstr);
        code = EXIT_CONFIG;
        goto out;
    }
#endif
    metrics_init(cfg.store, cfg.worker_id);
    log_info("edr-worker %s starting: store %s, topic %s, dead-letter "
             "topic %s, brokers %s",
             EDR_VERSION, cfg.store, cfg.topic, cfg.dlq_topic, cfg.brokers);

    /* Bound before the store is opened (and compacted): a busy port fails
     * in milliseconds, as a runtime failure, not a bad setting (config_load
     * checked the address's shape). */
    if (strcmp(cfg.http_addr, "off") != 0) {
        http = http_server_start(cfg.http_addr, cfg.ready_max_lag, errstr,
                                 sizeof(errstr));
        if (!http) {
            log_error("http: %s", errstr);
            code = EXIT_RUNTIME;
            goto out;
        }
        if (cfg.callback_auth_code) { /* §6: EDC callbacks on */
            if (!(edc = edc_callback_open(&cfg, errstr, sizeof(errstr)))) {
                log_error("%s", errstr);
                code = EXIT_RUNTIME;
                goto out;
            }
            http_server_set_edc(http, edc);
            log_info("EDC callbacks: POST /callbacks/edc on %s (header %s)",
                     cfg.http_addr, cfg.callback_auth_key);
        }
    } else if (cfg.callback_auth_code) {
        log_warn("EDC callbacks: EDR_CALLBACK_AUTH_CODE is set but "
                 "EDR_HTTP_ADDR is off: no callback can arrive");
    }

    if (!(st = open_store(&cfg, &code)))
        goto out;
    metrics_set_store_ok(1);
    if (edc)
        edc_callback_set_store(edc, st);
    rpc = rpc_server_start(&cfg, st, errstr, sizeof(errstr));
    if (!rpc) {
        log_error("lookups: %s", errstr);
        code = EXIT_CONFIG;
        goto out;
    }

    code = ingest_run(&cfg, st, &stop_requested, &opts);
    log_info("stopping (%s)", code == 0 ? "clean" : "after a failure");

out:
    rpc_server_stop(rpc);
    if (http)
        http_server_stop(http);
    edc_callback_close(edc); /* after the server: no handler runs now */
    if (st) {
        store_close(st);
        log_info("store closed; exit %d", code);
    }
    config_rest_free(&rest);
    config_clear(&cfg);
    return code;
}

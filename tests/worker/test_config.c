/* test_config.c: settings of edr-worker and edrctl (worker/config.c,
 * schemas/README.md §3): defaults, environment versus flag, -X checked against
 * librdkafka, invalid values naming their setting, the v2 settings
 * (changelog topic, accept-gap, callback auth key and code), EDR_PG_DSN
 * parsed at start without a fragment of it in any message; and the
 * programs themselves: --help lists every variable, a bad setting exits
 * 2, a busy HTTP port exits 3 before the store is opened. */
#include "tests/support/cunit_main.h"
#include "tests/support/proc_util.h"
#include "worker/config_parse.h"

#include <CUnit/CUnit.h>
#include <arpa/inet.h>
#include <netinet/in.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

static const char *const all_vars[] = {"EDR_KAFKA_BROKERS",
                                       "EDR_TOPIC",
                                       "EDR_DLQ_TOPIC",
                                       "EDR_GROUP_ID",
                                       "EDR_STORE",
                                       "EDR_FILE_PATH",
                                       "EDR_PG_DSN",
                                       "EDR_PG_TABLE",
                                       "EDR_REDIS_URL",
                                       "EDR_RPC_PREFIX",
                                       "EDR_WORKER_ID",
                                       "EDR_LOG_LEVEL",
                                       "EDR_LOG_FORMAT",
                                       "EDR_HTTP_ADDR",
                                       "EDR_RPC_THREADS",
                                       "EDR_TIMEOUT_MS",
                                       "EDR_READY_MAX_LAG",
                                       "EDR_CHANGELOG_TOPIC",
                                       "EDR_ACCEPT_GAP",
                                       "EDR_CHANGELOG_COMMIT_MS",
                                       "EDR_CALLBACK_AUTH_KEY",
                                       "EDR_CALLBACK_AUTH_CODE"};
#define N_VARS (sizeof(all_vars) / sizeof(all_vars[0]))
/* How long one run of a program may take before the test fails. */
#define RUN_MS 30000

static void clear_env(void)
{
    for (size_t i = 0; i < N_VARS; i++)
        unsetenv(all_vars[i]);
}

/* config_load on a NULL-terminated argument list (argv[0] added). */
static int load(struct config *cfg, enum config_mode mode,
                struct config_rest *rest, char *errstr, size_t n,
                const char *const *args)
{
    char *argv[32];
    int argc = 0;
    argv[argc++] = (char *)"edr-worker";
    for (; *args && argc < 31; args++)
        argv[argc++] = (char *)*args;
    argv[argc] = NULL;
    return config_load(cfg, mode, argc, argv, rest, errstr, n);
}

/* Expects CONFIG_INVALID with errstr naming `name`. */
static void expect_invalid(enum config_mode mode, const char *name,
                           const char *const *args)
{
    struct config cfg;
    char errstr[512];
    int rc = load(&cfg, mode, NULL, errstr, sizeof(errstr), args);
    CU_ASSERT_EQUAL(rc, CONFIG_INVALID);
    if (!strstr(errstr, name))
        fprintf(stderr, "\n  errstr \"%s\" does not name %s\n", errstr, name);
    CU_ASSERT_PTR_NOT_NULL(strstr(errstr, name));
    config_clear(&cfg);
}

/* Expects CONFIG_OK (errstr shown otherwise). */
static void expect_ok(enum config_mode mode, const char *const *args)
{
    struct config cfg;
    char errstr[512] = "";
    int rc = load(&cfg, mode, NULL, errstr, sizeof(errstr), args);
    if (rc != CONFIG_OK)
        fprintf(stderr, "\n  %s: %s\n", args[0] ? args[0] : "", errstr);
    CU_ASSERT_EQUAL(rc, CONFIG_OK);
    config_clear(&cfg);
}

static void test_defaults(void)
{
    struct config cfg;
    char errstr[512], pid_suffix[32];
    static const char *const none[] = {NULL};
    clear_env();
    CU_ASSERT_EQUAL_FATAL(
        load(&cfg, CONFIG_WORKER, NULL, errstr, sizeof(errstr), none),
        CONFIG_OK);
    CU_ASSERT_STRING_EQUAL(cfg.brokers, "127.0.0.1:9092");
    CU_ASSERT_STRING_EQUAL(cfg.topic, "edr.events");
    CU_ASSERT_STRING_EQUAL(cfg.dlq_topic, "edr.events.dlq");
    CU_ASSERT_STRING_EQUAL(cfg.group_id, "edr-worker");
    CU_ASSERT_STRING_EQUAL(cfg.store, "memory");
    CU_ASSERT_STRING_EQUAL(cfg.file_path, "edr-store.json");
    CU_ASSERT_PTR_NULL(cfg.pg_dsn);
    CU_ASSERT_STRING_EQUAL(cfg.pg_table, "edr_connections");
    CU_ASSERT_STRING_EQUAL(cfg.redis_url, "redis://127.0.0.1:6379/0");
    CU_ASSERT_STRING_EQUAL(cfg.rpc_prefix, "edr");
    CU_ASSERT_STRING_EQUAL(cfg.log_level, "info");
    CU_ASSERT_STRING_EQUAL(cfg.log_format, "text");
    CU_ASSERT_STRING_EQUAL(cfg.http_addr, "127.0.0.1:9464");
    CU_ASSERT_EQUAL(cfg.rpc_threads, 4);
    CU_ASSERT_EQUAL(cfg.timeout_ms, 5000);
    CU_ASSERT_EQUAL(cfg.ready_max_lag, 1000);
    CU_ASSERT_EQUAL(cfg.n_kafka_props, 0);
    CU_ASSERT_STRING_EQUAL(cfg.changelog_topic, "edr.events.changelog");
    CU_ASSERT_EQUAL(cfg.accept_gap, 0);
    CU_ASSERT_STRING_EQUAL(cfg.callback_auth_key, "X-Api-Key");
    CU_ASSERT_PTR_NULL(cfg.callback_auth_code);
    /* host name and pid */
    snprintf(pid_suffix, sizeof(pid_suffix), "-%ld", (long)getpid());
    size_t n = strlen(cfg.worker_id), m = strlen(pid_suffix);
    CU_ASSERT_TRUE(n > m && strcmp(cfg.worker_id + n - m, pid_suffix) == 0);
    config_clear(&cfg);
}

static void test_env_then_flag(void)
{
    struct config cfg;
    char errstr[512];
    clear_env();
    setenv("EDR_TOPIC", "from-env", 1);
    setenv("EDR_RPC_THREADS", "7", 1);
    setenv("EDR_GROUP_ID", "g-env", 1);
    setenv("EDR_DLQ_TOPIC", "", 1); /* empty counts as unset */
    static const char *const args[] = {
        "--topic", "from-flag", "--rpc-threads=9", "--worker-id=w1", NULL};
    CU_ASSERT_EQUAL_FATAL(
        load(&cfg, CONFIG_WORKER, NULL, errstr, sizeof(errstr), args),
        CONFIG_OK);
    CU_ASSERT_STRING_EQUAL(cfg.topic, "from-flag");
    CU_ASSERT_EQUAL(cfg.rpc_threads, 9);
    CU_ASSERT_STRING_EQUAL(cfg.group_id, "g-env");
    CU_ASSERT_STRING_EQUAL(cfg.worker_id, "w1");
    CU_ASSERT_STRING_EQUAL(cfg.dlq_topic, "edr.events.dlq");
    config_clear(&cfg);

    /* The flag wins even when the variable is invalid? No: the variable
     * is read first and must be valid on its own. */
    setenv("EDR_RPC_THREADS", "many", 1);
    static const char *const none[] = {NULL};
    expect_invalid(CONFIG_WORKER, "EDR_RPC_THREADS", none);
    clear_env();
}

static void test_numbers_strict(void)
{
    clear_env();
    static const char *const a1[] = {"--rpc-threads", "0", NULL};
    static const char *const a2[] = {"--rpc-threads", "12x", NULL};
    static const char *const a3[] = {"--rpc-threads", " 5", NULL};
    static const char *const a4[] = {"--ready-max-lag", "-1", NULL};
    static const char *const a5[] = {"--timeout-ms", "99999999999", NULL};
    static const char *const a6[] = {"--timeout-ms", "", NULL};
    /* the responder's real cap: above it is an error, never a silent cap */
    static const char *const a7[] = {"--rpc-threads", "65", NULL};
    static const char *const a8[] = {"--rpc-threads", "256", NULL};
    expect_invalid(CONFIG_WORKER, "EDR_RPC_THREADS", a7);
    expect_invalid(CONFIG_WORKER, "EDR_RPC_THREADS", a8);
    expect_invalid(CONFIG_WORKER, "EDR_RPC_THREADS", a1);
    expect_invalid(CONFIG_WORKER, "EDR_RPC_THREADS", a2);
    expect_invalid(CONFIG_WORKER, "EDR_RPC_THREADS", a3);
    expect_invalid(CONFIG_WORKER, "EDR_READY_MAX_LAG", a4);
    expect_invalid(CONFIG_CLIENT, "EDR_TIMEOUT_MS", a5);
    expect_invalid(CONFIG_CLIENT, "EDR_TIMEOUT_MS", a6);
    setenv("EDR_READY_MAX_LAG", "0", 1);
    struct config cfg;
    char errstr[512];
    static const char *const none[] = {NULL};
    CU_ASSERT_EQUAL(
        load(&cfg, CONFIG_WORKER, NULL, errstr, sizeof(errstr), none),
        CONFIG_OK);
    CU_ASSERT_EQUAL(cfg.ready_max_lag, 0);
    config_clear(&cfg);
    clear_env();
}

static void test_kafka_props(void)
{
    struct config cfg;
    char errstr[512];
    clear_env();
    static const char *const ok[] = {"-X", "fetch.wait.max.ms=10",
                                     "-Xclient.id=abc", NULL};
    CU_ASSERT_EQUAL_FATAL(
        load(&cfg, CONFIG_WORKER, NULL, errstr, sizeof(errstr), ok), CONFIG_OK);
    CU_ASSERT_EQUAL_FATAL(cfg.n_kafka_props, 2);
    CU_ASSERT_STRING_EQUAL(cfg.kafka_props[0], "fetch.wait.max.ms=10");
    CU_ASSERT_STRING_EQUAL(cfg.kafka_props[1], "client.id=abc");
    rd_kafka_conf_t *conf = rd_kafka_conf_new();
    CU_ASSERT_EQUAL(
        config_apply_kafka_props(&cfg, conf, errstr, sizeof(errstr)), 0);
    char val[64];
    size_t vlen = sizeof(val);
    CU_ASSERT_EQUAL(rd_kafka_conf_get(conf, "client.id", val, &vlen),
                    RD_KAFKA_CONF_OK);
    CU_ASSERT_STRING_EQUAL(val, "abc");
    rd_kafka_conf_destroy(conf);
    config_clear(&cfg);

    static const char *const unknown[] = {"-X", "no.such.property=1", NULL};
    static const char *const noeq[] = {"-X", "fetch.wait.max.ms", NULL};
    static const char *const badval[] = {"-X", "fetch.wait.max.ms=abc", NULL};
    static const char *const novalue[] = {"-X", NULL};
    expect_invalid(CONFIG_WORKER, "no.such.property", unknown);
    expect_invalid(CONFIG_CLIENT, "no.such.property", unknown);
    expect_invalid(CONFIG_WORKER, "fetch.wait.max.ms", noeq);
    expect_invalid(CONFIG_WORKER, "fetch.wait.max.ms", badval);
    expect_invalid(CONFIG_WORKER, "-X", novalue);
}

static void test_store_rules(void)
{
    struct config cfg;
    char errstr[512];
    clear_env();
    static const char *const bogus[] = {"--store", "redis", NULL};
    static const char *const pg[] = {"--store", "postgres", NULL};
    static const char *const pg_ok[] = {"--store", "postgres", "--pg-dsn",
                                        "host=x password=s3cret", NULL};
    expect_invalid(CONFIG_WORKER, "EDR_STORE", bogus);
    expect_invalid(CONFIG_WORKER, "EDR_PG_DSN", pg);
    expect_ok(CONFIG_WORKER, pg_ok);
    /* edrctl needs no store: its settings are not checked. */
    expect_ok(CONFIG_CLIENT, pg);

    /* A secret never appears in a message. */
    setenv("EDR_PG_DSN", "host=x password=s3cret", 1);
    static const char *const bad_level[] = {"--store", "postgres",
                                            "--log-level", "loud", NULL};
    CU_ASSERT_EQUAL(
        load(&cfg, CONFIG_WORKER, NULL, errstr, sizeof(errstr), bad_level),
        CONFIG_INVALID);
    CU_ASSERT_PTR_NULL(strstr(errstr, "s3cret"));
    CU_ASSERT_PTR_NOT_NULL(strstr(errstr, "EDR_LOG_LEVEL"));
    config_clear(&cfg);
    clear_env();

    static const char *const fmt[] = {"--log-format", "xml", NULL};
    static const char *const same[] = {"--topic", "t", "--dlq-topic", "t",
                                       NULL};
    static const char *const http[] = {"--http-addr", "localhost", NULL};
    static const char *const port[] = {"--http-addr", "127.0.0.1:70000", NULL};
    static const char *const empty[] = {"--topic=", NULL};
    static const char *const novalue[] = {"--topic", NULL};
    expect_invalid(CONFIG_WORKER, "EDR_LOG_FORMAT", fmt);
    expect_invalid(CONFIG_WORKER, "EDR_DLQ_TOPIC", same);
    expect_invalid(CONFIG_WORKER, "EDR_HTTP_ADDR", http);
    expect_invalid(CONFIG_WORKER, "EDR_HTTP_ADDR", port);
    expect_invalid(CONFIG_WORKER, "EDR_TOPIC", empty);
    expect_invalid(CONFIG_WORKER, "EDR_TOPIC", novalue);
    /* one validator with worker/http.c: IPv6 only in brackets */
    static const char *const bare6[] = {"--http-addr", "::1:9464", NULL};
    static const char *const port0[] = {"--http-addr", "127.0.0.1:0", NULL};
    static const char *const noport[] = {"--http-addr", "127.0.0.1:", NULL};
    expect_invalid(CONFIG_WORKER, "EDR_HTTP_ADDR", bare6);
    expect_invalid(CONFIG_WORKER, "EDR_HTTP_ADDR", port0);
    expect_invalid(CONFIG_WORKER, "EDR_HTTP_ADDR", noport);
    static const char *const v6[] = {"--http-addr", "[::1]:9464", NULL};
    expect_ok(CONFIG_WORKER, v6);

    /* EDR_FILE_PATH must name a file (it exited 3 at run time before) */
    static const char *const slash[] = {"--store", "file", "--file-path",
                                        "/tmp/edr-no-such-dir/", NULL};
    static const char *const dir[] = {"--store", "file", "--file-path", "/tmp",
                                      NULL};
    static const char *const file_ok[] = {"--store", "file", "--file-path",
                                          "/tmp/edr-x/state.json", NULL};
    expect_invalid(CONFIG_WORKER, "EDR_FILE_PATH", slash);
    expect_invalid(CONFIG_WORKER, "EDR_FILE_PATH", dir);
    expect_ok(CONFIG_WORKER, file_ok);

    static const char *const off[] = {"--http-addr", "off", NULL};
    expect_ok(CONFIG_WORKER, off);
}

static void test_rest_and_help(void)
{
    struct config cfg;
    struct config_rest rest;
    char errstr[512];
    clear_env();
    static const char *const args[] = {
        "negotiated", "--party", "P", "--brokers", "b:1", "--edr=x", NULL};
    CU_ASSERT_EQUAL_FATAL(
        load(&cfg, CONFIG_CLIENT, &rest, errstr, sizeof(errstr), args),
        CONFIG_OK);
    CU_ASSERT_STRING_EQUAL(cfg.brokers, "b:1");
    CU_ASSERT_EQUAL_FATAL(rest.argc, 5);
    CU_ASSERT_STRING_EQUAL(rest.argv[0], "edr-worker");
    CU_ASSERT_STRING_EQUAL(rest.argv[1], "negotiated");
    CU_ASSERT_STRING_EQUAL(rest.argv[2], "--party");
    CU_ASSERT_STRING_EQUAL(rest.argv[3], "P");
    CU_ASSERT_STRING_EQUAL(rest.argv[4], "--edr=x");
    CU_ASSERT_PTR_NULL(rest.argv[5]);
    config_rest_free(&rest);
    config_clear(&cfg);

    static const char *const unknown[] = {"--frobnicate", NULL};
    expect_invalid(CONFIG_WORKER, "--frobnicate", unknown);

    static const char *const help[] = {"--help", NULL};
    static const char *const version[] = {"--version", NULL};
    CU_ASSERT_EQUAL(
        load(&cfg, CONFIG_WORKER, NULL, errstr, sizeof(errstr), help),
        CONFIG_HELP);
    config_clear(&cfg);
    CU_ASSERT_EQUAL(
        load(&cfg, CONFIG_WORKER, NULL, errstr, sizeof(errstr), version),
        CONFIG_VERSION);
    config_clear(&cfg);
    /* edrctl leaves --help to the subcommand. */
    CU_ASSERT_EQUAL(
        load(&cfg, CONFIG_CLIENT, &rest, errstr, sizeof(errstr), help),
        CONFIG_OK);
    CU_ASSERT_EQUAL(rest.argc, 2);
    config_rest_free(&rest);
    config_clear(&cfg);
}

/* No 4-byte piece of secret appears in text. */
static int holds_fragment(const char *text, const char *secret)
{
    size_t n = strlen(secret);
    for (size_t i = 0; i + 4 <= n; i++) {
        char piece[5];
        memcpy(piece, secret + i, 4);
        piece[4] = '\0';
        if (strstr(text, piece)) {
            fprintf(stderr, "\n  \"%s\" found in: %s\n", piece, text);
            return 1;
        }
    }
    return 0;
}

#define DSN_PASSWORD "Zq9xK7wPhunt"

/* DSNs libpq cannot parse: a space in an unquoted value, a bad %
 * escape, a missing '='. */
static const char *const bad_dsns[] = {
    "host=127.0.0.1 password=" DSN_PASSWORD " dbname=my db",
    "postgresql://bob:" DSN_PASSWORD "%zz@127.0.0.1/db",
    "host=127.0.0.1 password " DSN_PASSWORD,
};
#define N_BAD_DSNS (sizeof(bad_dsns) / sizeof(bad_dsns[0]))

/* (v2) EDR_PG_DSN is parsed at start: an invalid setting whose message
 * names it and repeats no part of it. */
static void test_pg_dsn(void)
{
    struct config cfg;
    char errstr[512];
    clear_env();
    for (size_t i = 0; i < N_BAD_DSNS; i++) {
        const char *const args[] = {"--store", "postgres", "--pg-dsn",
                                    bad_dsns[i], NULL};
        CU_ASSERT_EQUAL(
            load(&cfg, CONFIG_WORKER, NULL, errstr, sizeof(errstr), args),
            CONFIG_INVALID);
        CU_ASSERT_PTR_NOT_NULL(strstr(errstr, "EDR_PG_DSN"));
        CU_ASSERT_FALSE(holds_fragment(errstr, DSN_PASSWORD));
        CU_ASSERT_PTR_NULL(strstr(errstr, "127.0.0.1"));
        config_clear(&cfg);
    }
    static const char *const uri_ok[] = {
        "--store", "postgres", "--pg-dsn",
        "postgresql://bob:p%40ss@127.0.0.1:5432/db?connect_timeout=2", NULL};
    expect_ok(CONFIG_WORKER, uri_ok);
    /* the memory store does not care */
    static const char *const mem[] = {"--pg-dsn", "a b c", NULL};
    expect_ok(CONFIG_WORKER, mem);
}

/* (v2) changelog topic, accept-gap, callback auth key and code. */
static void test_v2_settings(void)
{
    struct config cfg;
    char errstr[512];
    clear_env();
    static const char *const topic[] = {"--topic", "t1", NULL};
    CU_ASSERT_EQUAL_FATAL(
        load(&cfg, CONFIG_WORKER, NULL, errstr, sizeof(errstr), topic),
        CONFIG_OK);
    CU_ASSERT_STRING_EQUAL(cfg.changelog_topic, "t1.changelog");
    CU_ASSERT_EQUAL(cfg.changelog_commit_ms, 100);
    config_clear(&cfg);
    /* The changelog commit interval (worker-specific): env, flag, bounds. */
    setenv("EDR_CHANGELOG_COMMIT_MS", "250", 1);
    static const char *const cm_none[] = {NULL};
    CU_ASSERT_EQUAL_FATAL(
        load(&cfg, CONFIG_WORKER, NULL, errstr, sizeof(errstr), cm_none),
        CONFIG_OK);
    CU_ASSERT_EQUAL(cfg.changelog_commit_ms, 250);
    config_clear(&cfg);
    static const char *const cm_zero[] = {"--changelog-commit-ms", "0", NULL};
    CU_ASSERT_EQUAL_FATAL(
        load(&cfg, CONFIG_WORKER, NULL, errstr, sizeof(errstr), cm_zero),
        CONFIG_OK);
    CU_ASSERT_EQUAL(cfg.changelog_commit_ms, 0);
    config_clear(&cfg);
    unsetenv("EDR_CHANGELOG_COMMIT_MS");
    static const char *const cm_neg[] = {"--changelog-commit-ms", "-1", NULL};
    static const char *const cm_big[] = {"--changelog-commit-ms", "60001",
                                         NULL};
    expect_invalid(CONFIG_WORKER, "EDR_CHANGELOG_COMMIT_MS", cm_neg);
    expect_invalid(CONFIG_WORKER, "EDR_CHANGELOG_COMMIT_MS", cm_big);
    static const char *const off[] = {"--changelog-topic", "off", NULL};
    CU_ASSERT_EQUAL_FATAL(
        load(&cfg, CONFIG_WORKER, NULL, errstr, sizeof(errstr), off),
        CONFIG_OK);
    CU_ASSERT_PTR_NULL(cfg.changelog_topic);
    config_clear(&cfg);
    setenv("EDR_CHANGELOG_TOPIC", "cl-env", 1);
    static const char *const none[] = {NULL};
    CU_ASSERT_EQUAL_FATAL(
        load(&cfg, CONFIG_WORKER, NULL, errstr, sizeof(errstr), none),
        CONFIG_OK);
    CU_ASSERT_STRING_EQUAL(cfg.changelog_topic, "cl-env");
    config_clear(&cfg);
    clear_env();
    static const char *const same[] = {"--changelog-topic", "edr.events", NULL};
    static const char *const same_dlq[] = {"--changelog-topic",
                                           "edr.events.dlq", NULL};
    static const char *const empty[] = {"--changelog-topic=", NULL};
    expect_invalid(CONFIG_WORKER, "EDR_CHANGELOG_TOPIC", same);
    expect_invalid(CONFIG_WORKER, "EDR_CHANGELOG_TOPIC", same_dlq);
    expect_invalid(CONFIG_WORKER, "EDR_CHANGELOG_TOPIC", empty);

    /* --accept-gap alone means on and takes no value from the next
     * argument */
    struct config_rest rest;
    static const char *const gap[] = {"--accept-gap", "positional", NULL};
    CU_ASSERT_EQUAL_FATAL(
        load(&cfg, CONFIG_CLIENT, &rest, errstr, sizeof(errstr), gap),
        CONFIG_OK);
    CU_ASSERT_EQUAL(cfg.accept_gap, 1);
    CU_ASSERT_EQUAL(rest.argc, 2);
    config_rest_free(&rest);
    config_clear(&cfg);
    static const char *const gap_off[] = {"--accept-gap=false", NULL};
    setenv("EDR_ACCEPT_GAP", "yes", 1);
    CU_ASSERT_EQUAL_FATAL(
        load(&cfg, CONFIG_WORKER, NULL, errstr, sizeof(errstr), none),
        CONFIG_OK);
    CU_ASSERT_EQUAL(cfg.accept_gap, 1);
    config_clear(&cfg);
    CU_ASSERT_EQUAL_FATAL(
        load(&cfg, CONFIG_WORKER, NULL, errstr, sizeof(errstr), gap_off),
        CONFIG_OK);
    CU_ASSERT_EQUAL(cfg.accept_gap, 0); /* the flag wins */
    config_clear(&cfg);
    setenv("EDR_ACCEPT_GAP", "maybe", 1);
    expect_invalid(CONFIG_WORKER, "EDR_ACCEPT_GAP", none);
    clear_env();

    static const char *const key[] = {"--callback-auth-key", "Authorization",
                                      "--callback-auth-code", "s3cr3t code",
                                      NULL};
    CU_ASSERT_EQUAL_FATAL(
        load(&cfg, CONFIG_WORKER, NULL, errstr, sizeof(errstr), key),
        CONFIG_OK);
    CU_ASSERT_STRING_EQUAL(cfg.callback_auth_key, "Authorization");
    CU_ASSERT_STRING_EQUAL(cfg.callback_auth_code, "s3cr3t code");
    config_clear(&cfg);
    static const char *const bad_key[] = {"--callback-auth-key", "X Api", NULL};
    static const char *const empty_key[] = {"--callback-auth-key=", NULL};
    expect_invalid(CONFIG_WORKER, "EDR_CALLBACK_AUTH_KEY", bad_key);
    expect_invalid(CONFIG_WORKER, "EDR_CALLBACK_AUTH_KEY", empty_key);
    /* a bad code: named, never shown */
    static const char *const bad_codes[] = {"Kx7Qz9Vw3Jm\r\nX: y",
                                            " Kx7Qz9Vw3Jm", ""};
    for (size_t i = 0; i < 3; i++) {
        const char *const args[] = {"--callback-auth-code", bad_codes[i], NULL};
        CU_ASSERT_EQUAL(
            load(&cfg, CONFIG_WORKER, NULL, errstr, sizeof(errstr), args),
            CONFIG_INVALID);
        CU_ASSERT_PTR_NOT_NULL(strstr(errstr, "EDR_CALLBACK_AUTH_CODE"));
        CU_ASSERT_FALSE(holds_fragment(errstr, "Kx7Qz9Vw3Jm"));
        config_clear(&cfg);
    }
    /* with the code set, another setting's error does not show it */
    setenv("EDR_CALLBACK_AUTH_CODE", "Kx7Qz9Vw3Jm", 1);
    static const char *const bad_level[] = {"--log-level", "loud", NULL};
    CU_ASSERT_EQUAL(
        load(&cfg, CONFIG_WORKER, NULL, errstr, sizeof(errstr), bad_level),
        CONFIG_INVALID);
    CU_ASSERT_FALSE(holds_fragment(errstr, "Kx7Qz9Vw3Jm"));
    config_clear(&cfg);
    clear_env();
}

/* ---- the programs ------------------------------------------------------- */

/* edr-worker with a bad DSN, a bad auth code, a directory as file path:
 * exit 2, and no fragment of a secret in anything it printed. */
static void test_worker_secrets_and_paths(void)
{
    static char out[65536];
    clear_env();
    for (size_t i = 0; i < N_BAD_DSNS; i++) {
        const char *const argv[] = {EDR_WORKER_BIN, "--store",   "postgres",
                                    "--pg-dsn",     bad_dsns[i], NULL};
        CU_ASSERT_EQUAL(test_run_capture(argv, out, sizeof(out), RUN_MS), 2);
        CU_ASSERT_PTR_NOT_NULL(strstr(out, "EDR_PG_DSN"));
        CU_ASSERT_FALSE(holds_fragment(out, DSN_PASSWORD));
    }
    /* the same through the environment */
    setenv("EDR_STORE", "postgres", 1);
    setenv("EDR_PG_DSN", bad_dsns[0], 1);
    const char *const plain[] = {EDR_WORKER_BIN, NULL};
    CU_ASSERT_EQUAL(test_run_capture(plain, out, sizeof(out), RUN_MS), 2);
    CU_ASSERT_FALSE(holds_fragment(out, DSN_PASSWORD));
    clear_env();

    const char *const code[] = {EDR_WORKER_BIN, "--callback-auth-code",
                                "Kx7Qz9Vw3Jm\x01", NULL};
    CU_ASSERT_EQUAL(test_run_capture(code, out, sizeof(out), RUN_MS), 2);
    CU_ASSERT_PTR_NOT_NULL(strstr(out, "EDR_CALLBACK_AUTH_CODE"));
    CU_ASSERT_FALSE(holds_fragment(out, "Kx7Qz9Vw3Jm"));
    /* --help shows defaults, never the values in effect */
    setenv("EDR_CALLBACK_AUTH_CODE", "Kx7Qz9Vw3Jm", 1);
    setenv("EDR_PG_DSN", "password=" DSN_PASSWORD, 1);
    const char *const help[] = {EDR_WORKER_BIN, "--help", NULL};
    CU_ASSERT_EQUAL(test_run_capture(help, out, sizeof(out), RUN_MS), 0);
    CU_ASSERT_PTR_NOT_NULL(strstr(out, "--callback-auth-code"));
    CU_ASSERT_PTR_NOT_NULL(strstr(out, "--accept-gap"));
    CU_ASSERT_FALSE(holds_fragment(out, "Kx7Qz9Vw3Jm"));
    CU_ASSERT_FALSE(holds_fragment(out, DSN_PASSWORD));
    clear_env();

    char dir[64];
    snprintf(dir, sizeof(dir), "/tmp/edr-cfg-%ld/", (long)getpid());
    const char *const slash[] = {EDR_WORKER_BIN, "--store", "file",
                                 "--file-path",  dir,       NULL};
    CU_ASSERT_EQUAL(test_run_capture(slash, out, sizeof(out), RUN_MS), 2);
    CU_ASSERT_PTR_NOT_NULL(strstr(out, "EDR_FILE_PATH"));
}

/* A busy HTTP port: exit 3 with a clear message, before the store is
 * opened (the store here is a PostgreSQL that does not answer, which
 * the worker would otherwise wait for forever). */
static void test_worker_busy_port(void)
{
    static char out[65536];
    clear_env();
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in sa;
    memset(&sa, 0, sizeof(sa));
    sa.sin_family = AF_INET;
    sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    socklen_t len = sizeof(sa);
    CU_ASSERT_FATAL(fd >= 0 &&
                    bind(fd, (struct sockaddr *)&sa, sizeof(sa)) == 0 &&
                    listen(fd, 1) == 0 &&
                    getsockname(fd, (struct sockaddr *)&sa, &len) == 0);
    char addr[64];
    snprintf(addr, sizeof(addr), "127.0.0.1:%d", ntohs(sa.sin_port));
    const char *const argv[] = {
        EDR_WORKER_BIN,
        "--http-addr",
        addr,
        "--store",
        "postgres",
        "--pg-dsn",
        "host=127.0.0.1 port=1 dbname=x connect_timeout=1",
        NULL};
    int rc = test_run_capture(argv, out, sizeof(out), 20000);
    close(fd);
    if (rc != 3)
        fprintf(stderr, "\n  exit %d, output: %s\n", rc, out);
    CU_ASSERT_EQUAL(rc, 3);
    CU_ASSERT_PTR_NOT_NULL(strstr(out, "busy"));
    CU_ASSERT_PTR_NOT_NULL(strstr(out, "EDR_HTTP_ADDR"));
    CU_ASSERT_PTR_NULL(strstr(out, "invalid setting"));
}

static void test_worker_program(void)
{
    static char out[65536];
    clear_env();
    const char *const help[] = {EDR_WORKER_BIN, "--help", NULL};
    CU_ASSERT_EQUAL(test_run_capture(help, out, sizeof(out), RUN_MS), 0);
    for (size_t i = 0; i < N_VARS; i++) {
        if (!strstr(out, all_vars[i]))
            fprintf(stderr, "\n  --help lacks %s\n", all_vars[i]);
        CU_ASSERT_PTR_NOT_NULL(strstr(out, all_vars[i]));
    }
    CU_ASSERT_PTR_NOT_NULL(strstr(out, "--pg-dsn"));
    CU_ASSERT_PTR_NOT_NULL(strstr(out, "-X name=value"));

    const char *const bad_x[] = {EDR_WORKER_BIN, "-X", "no.such.prop=1", NULL};
    CU_ASSERT_EQUAL(test_run_capture(bad_x, out, sizeof(out), RUN_MS), 2);
    CU_ASSERT_PTR_NOT_NULL(strstr(out, "no.such.prop"));

    const char *const bad_store[] = {EDR_WORKER_BIN, "--store", "mongo", NULL};
    CU_ASSERT_EQUAL(test_run_capture(bad_store, out, sizeof(out), RUN_MS), 2);
    CU_ASSERT_PTR_NOT_NULL(strstr(out, "EDR_STORE"));

    const char *const bad_arg[] = {EDR_WORKER_BIN, "extra", NULL};
    CU_ASSERT_EQUAL(test_run_capture(bad_arg, out, sizeof(out), RUN_MS), 2);

    const char *const version[] = {EDR_WORKER_BIN, "--version", NULL};
    CU_ASSERT_EQUAL(test_run_capture(version, out, sizeof(out), RUN_MS), 0);
    CU_ASSERT_PTR_NOT_NULL(strstr(out, EDR_VERSION));
}

static void test_edrctl_program(void)
{
    static char out[65536];
    clear_env();
    const char *const help[] = {EDRCTL_BIN, "--help", NULL};
    CU_ASSERT_EQUAL(test_run_capture(help, out, sizeof(out), RUN_MS), 0);
    for (size_t i = 0; i < N_VARS; i++)
        CU_ASSERT_PTR_NOT_NULL(strstr(out, all_vars[i]));
    const char *const bad_x[] = {EDRCTL_BIN, "ping", "-X", "bogus.prop=1",
                                 NULL};
    CU_ASSERT_EQUAL(test_run_capture(bad_x, out, sizeof(out), RUN_MS), 2);
    CU_ASSERT_PTR_NOT_NULL(strstr(out, "bogus.prop"));
    /* Checked by the worker's decoder before anything is produced. */
    const char *const no_edr[] = {
        EDRCTL_BIN,  "publish",   "negotiated",  "--party", "P",
        "--address", "A",         "--query",     "Q",       "--policy",
        "S",         "--brokers", "127.0.0.1:1", NULL};
    CU_ASSERT_EQUAL(test_run_capture(no_edr, out, sizeof(out), RUN_MS), 2);
    CU_ASSERT_PTR_NOT_NULL(strstr(out, "data.edr"));
    const char *const no_type[] = {EDRCTL_BIN, "publish", "--party", "P", NULL};
    CU_ASSERT_EQUAL(test_run_capture(no_type, out, sizeof(out), RUN_MS), 2);
    const char *const unknown[] = {EDRCTL_BIN, "frobnicate", NULL};
    CU_ASSERT_EQUAL(test_run_capture(unknown, out, sizeof(out), RUN_MS), 2);
    /* Nobody listens on port 1: no delivery report, exit 3. */
    const char *const down[] = {
        EDRCTL_BIN,    "publish",      "expired", "--party",  "P", "--address",
        "A",           "--query",      "Q",       "--policy", "S", "--brokers",
        "127.0.0.1:1", "--timeout-ms", "500",     NULL};
    CU_ASSERT_EQUAL(test_run_capture(down, out, sizeof(out), RUN_MS), 3);
}

static void register_tests(void)
{
    CU_pSuite s = CU_add_suite("config", NULL, NULL);
    CU_add_test(s, "defaults", test_defaults);
    CU_add_test(s, "environment then flag", test_env_then_flag);
    CU_add_test(s, "numbers are strict", test_numbers_strict);
    CU_add_test(s, "-X checked by librdkafka", test_kafka_props);
    CU_add_test(s, "store, log and address rules", test_store_rules);
    CU_add_test(s, "unknown arguments, --help", test_rest_and_help);
    CU_add_test(s, "EDR_PG_DSN parsed, never shown", test_pg_dsn);
    CU_add_test(s, "v2 settings", test_v2_settings);
    CU_pSuite p = CU_add_suite("programs", NULL, NULL);
    CU_add_test(p, "edr-worker --help, exit 2", test_worker_program);
    CU_add_test(p, "edrctl --help, exit 2 and 3", test_edrctl_program);
    CU_add_test(p, "edr-worker: secrets and paths, exit 2",
                test_worker_secrets_and_paths);
    CU_add_test(p, "edr-worker: busy HTTP port, exit 3", test_worker_busy_port);
}

int main(void)
{
    static const cunit_register_fn registers[] = {register_tests, NULL};
    return cunit_main(registers);
}

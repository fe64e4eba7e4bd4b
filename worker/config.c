/* config.c: see config_parse.h. One table lists every setting of
 * schemas/README.md §3 (plus the operability ones); parsing, defaults, --help
 * and error messages are all driven by it, so a setting can't be
 * documented but unparsed or the other way round. */
#include "worker/config_parse.h"

#include "stores/file_store.h"
#include "stores/pg_dsn.h"
#include "worker/http.h"
#include "worker/log.h"

#include <sys/stat.h>

#include <errno.h>
#include <limits.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <unistd.h>

/* SETTING_BOOL: the flag alone means on; "--flag=value" and the variable
 * take 1/0, true/false, yes/no, on/off. */
enum setting_kind { SETTING_STR, SETTING_INT, SETTING_LONG, SETTING_BOOL };

struct setting {
    const char *env;
    const char *flag;
    enum setting_kind kind;
    size_t off;      /* offset of the field in struct config */
    const char *def; /* NULL: computed or none (see def_text) */
    const char *def_text;
    long min, max; /* numbers only */
    int secret;    /* never echo the value in a message */
    const char *help;
};

#define STR_SETTING(env, flag, field, def, def_text, secret, help)             \
    {                                                                          \
        env, flag, SETTING_STR, offsetof(struct config, field), def, def_text, \
            0, 0, secret, help                                                 \
    }

static const struct setting settings[] = {
    STR_SETTING("EDR_KAFKA_BROKERS", "--brokers", brokers, "127.0.0.1:9092",
                NULL, 0, "Kafka bootstrap servers, host:port[,host:port]"),
    STR_SETTING("EDR_TOPIC", "--topic", topic, "edr.events", NULL, 0,
                "topic of EDR lifecycle events"),
    STR_SETTING("EDR_DLQ_TOPIC", "--dlq-topic", dlq_topic, "edr.events.dlq",
                NULL, 0, "dead-letter topic for rejected events"),
    STR_SETTING("EDR_GROUP_ID", "--group-id", group_id, "edr-worker", NULL, 0,
                "consumer group (postgres store)"),
    STR_SETTING("EDR_STORE", "--store", store, "memory", NULL, 0,
                "memory, file or postgres"),
    STR_SETTING("EDR_FILE_PATH", "--file-path", file_path, "edr-store.json",
                "edr-store.json in the working directory", 0,
                "state file of the file store"),
    STR_SETTING("EDR_PG_DSN", "--pg-dsn", pg_dsn, NULL,
                "none; required with postgres", 1,
                "libpq connection string of the postgres store"),
    STR_SETTING("EDR_PG_TABLE", "--pg-table", pg_table, "edr_connections", NULL,
                0, "table of the postgres store (and <table>_offsets)"),
    STR_SETTING("EDR_REDIS_URL", "--redis-url", redis_url,
                "redis://127.0.0.1:6379/0", NULL, 1,
                "Redis of the lookup requests"),
    STR_SETTING("EDR_RPC_PREFIX", "--rpc-prefix", rpc_prefix, "edr", NULL, 0,
                "prefix of the request list <prefix>:requests"),
    STR_SETTING("EDR_WORKER_ID", "--worker-id", worker_id, NULL,
                "host name and pid", 0, "this worker's name in logs and ping"),
    STR_SETTING("EDR_LOG_LEVEL", "--log-level", log_level, "info", NULL, 0,
                "debug, info, warn or error"),
    STR_SETTING("EDR_LOG_FORMAT", "--log-format", log_format, "text", NULL, 0,
                "text or json"),
    STR_SETTING("EDR_HTTP_ADDR", "--http-addr", http_addr, "127.0.0.1:9464",
                NULL, 0, "host:port of /healthz /readyz /metrics, or off"),
    {"EDR_RPC_THREADS", "--rpc-threads", SETTING_INT,
     offsetof(struct config, rpc_threads), "4", NULL, 1, CONFIG_RPC_THREADS_MAX,
     0, "lookup responder threads (1 to 64)"},
    STR_SETTING("EDR_CHANGELOG_TOPIC", "--changelog-topic", changelog_topic,
                NULL, "<EDR_TOPIC>.changelog", 0,
                "compacted changelog topic (schemas/README.md §4), or off"),
    {"EDR_CHANGELOG_COMMIT_MS", "--changelog-commit-ms", SETTING_INT,
     offsetof(struct config, changelog_commit_ms), "100", NULL, 0, 60000, 0,
     "worker-specific: commit the changelog transaction every N ms (0 to "
     "60000; 0: every batch)"},
    {"EDR_ACCEPT_GAP", "--accept-gap", SETTING_BOOL,
     offsetof(struct config, accept_gap), "false", "off", 0, 1, 0,
     "start although the state has a gap (§4); the flag alone means on"},
    STR_SETTING("EDR_CALLBACK_AUTH_KEY", "--callback-auth-key",
                callback_auth_key, "X-Api-Key", NULL, 0,
                "header that carries the EDC callback auth code (§6)"),
    STR_SETTING("EDR_CALLBACK_AUTH_CODE", "--callback-auth-code",
                callback_auth_code, NULL, "none: EDC callbacks off", 1,
                "secret expected in that header; never shown"),
    {"EDR_TIMEOUT_MS", "--timeout-ms", SETTING_INT,
     offsetof(struct config, timeout_ms), "5000", NULL, 1, 3600000, 0,
     "edrctl: wait for a reply or a delivery report"},
    {"EDR_READY_MAX_LAG", "--ready-max-lag", SETTING_LONG,
     offsetof(struct config, ready_max_lag), "1000", NULL, 0, LONG_MAX, 0,
     "/readyz fails while the consumer lag exceeds this"},
};

#define N_SETTINGS (sizeof(settings) / sizeof(settings[0]))

static int fail(char *errstr, size_t errstr_size, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

static int fail(char *errstr, size_t errstr_size, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(errstr, errstr_size, fmt, ap);
    va_end(ap);
    return CONFIG_INVALID;
}

static char **str_field(struct config *cfg, const struct setting *s)
{
    return (char **)((char *)cfg + s->off);
}

static const struct setting *setting_by_flag(const char *flag, size_t len)
{
    for (size_t i = 0; i < N_SETTINGS; i++)
        if (strlen(settings[i].flag) == len &&
            strncmp(settings[i].flag, flag, len) == 0)
            return &settings[i];
    return NULL;
}

void config_kafka_prop_name(const char *prop, char *out, size_t out_size)
{
    const char *eq = strchr(prop, '=');
    size_t n = eq ? (size_t)(eq - prop) : strlen(prop);
    if (n >= out_size)
        n = out_size - 1;
    memcpy(out, prop, n);
    out[n] = '\0';
}

int config_check_kafka_prop(const char *prop, char *errstr, size_t errstr_size)
{
    char name[256], rderr[512];
    const char *eq = strchr(prop, '=');
    config_kafka_prop_name(prop, name, sizeof(name));
    if (!eq || eq == prop)
        return fail(errstr, errstr_size,
                    "invalid setting -X %s: expected -X name=value", name);
    rd_kafka_conf_t *scratch = rd_kafka_conf_new();
    if (!scratch)
        return fail(errstr, errstr_size, "out of memory");
    rd_kafka_conf_res_t res =
        rd_kafka_conf_set(scratch, name, eq + 1, rderr, sizeof(rderr));
    rd_kafka_conf_destroy(scratch);
    if (res == RD_KAFKA_CONF_UNKNOWN)
        return fail(errstr, errstr_size,
                    "invalid setting -X %s: unknown librdkafka property", name);
    if (res != RD_KAFKA_CONF_OK)
        /* librdkafka's message names the property; values of string
         * properties (where secrets live) are never rejected. */
        return fail(errstr, errstr_size, "invalid setting -X %s: %s", name,
                    rderr);
    return 0;
}

int config_kafka_set(rd_kafka_conf_t *conf, const char *name, const char *value,
                     char *errstr, size_t errstr_size)
{
    return rd_kafka_conf_set(conf, name, value, errstr, errstr_size) ==
                   RD_KAFKA_CONF_OK
               ? 0
               : -1;
}

void config_log_producer(rd_kafka_t *rk, const char *who)
{
    static const char *const names[] = {"acks", "enable.idempotence",
                                        "message.timeout.ms"};
    char vals[3][32];
    const rd_kafka_conf_t *conf = rd_kafka_conf(rk);

    for (int i = 0; i < 3; i++) {
        size_t sz = sizeof(vals[i]);
        if (rd_kafka_conf_get(conf, names[i], vals[i], &sz) != RD_KAFKA_CONF_OK)
            snprintf(vals[i], sizeof(vals[i]), "?");
    }
    log_info("kafka %s producer: acks=%s enable.idempotence=%s "
             "message.timeout.ms=%s",
             who, vals[0], vals[1], vals[2]);
}

int config_apply_kafka_props(const struct config *cfg, rd_kafka_conf_t *conf,
                             char *errstr, size_t errstr_size)
{
    for (size_t i = 0; i < cfg->n_kafka_props; i++) {
        const char *prop = cfg->kafka_props[i];
        const char *eq = strchr(prop, '=');
        char name[256], rderr[512];
        config_kafka_prop_name(prop, name, sizeof(name));
        if (!eq || rd_kafka_conf_set(conf, name, eq + 1, rderr,
                                     sizeof(rderr)) != RD_KAFKA_CONF_OK)
            return fail(errstr, errstr_size, "-X %s: %s", name,
                        eq ? rderr : "expected name=value");
    }
    return 0;
}

static int add_kafka_prop(struct config *cfg, const char *prop, char *errstr,
                          size_t errstr_size)
{
    if (config_check_kafka_prop(prop, errstr, errstr_size) != 0)
        return CONFIG_INVALID;
    char **grown =
        realloc(cfg->kafka_props, (cfg->n_kafka_props + 1) * sizeof(*grown));
    if (!grown)
        return fail(errstr, errstr_size, "out of memory");
    cfg->kafka_props = grown;
    if (!(grown[cfg->n_kafka_props] = strdup(prop)))
        return fail(errstr, errstr_size, "out of memory");
    cfg->n_kafka_props++;
    return CONFIG_OK;
}

static int rest_push(struct config_rest *rest, char *arg)
{
    char **grown =
        realloc(rest->argv, (size_t)(rest->argc + 2) * sizeof(*grown));
    if (!grown)
        return -1;
    rest->argv = grown;
    grown[rest->argc++] = arg;
    grown[rest->argc] = NULL;
    return 0;
}

/* Strict decimal: the whole string, no sign games beyond a leading '-',
 * within [min, max]. */
static int parse_long(const char *s, long min, long max, long *out)
{
    if (!*s || (*s != '-' && (*s < '0' || *s > '9')))
        return -1;
    char *end;
    errno = 0;
    long v = strtol(s, &end, 10);
    if (errno || *end || v < min || v > max)
        return -1;
    *out = v;
    return 0;
}

/* 1 or 0 for the boolean spellings, -1 for anything else. */
static int parse_bool(const char *s)
{
    static const char *const on[] = {"1", "true", "yes", "on"};
    static const char *const off[] = {"0", "false", "no", "off"};
    for (size_t i = 0; i < sizeof(on) / sizeof(on[0]); i++) {
        if (strcasecmp(s, on[i]) == 0)
            return 1;
        if (strcasecmp(s, off[i]) == 0)
            return 0;
    }
    return -1;
}

static int set_value(struct config *cfg, const struct setting *s,
                     const char *value, const char *origin, char *errstr,
                     size_t errstr_size)
{
    if (s->kind == SETTING_BOOL) {
        int b = parse_bool(value);
        if (b < 0)
            return fail(errstr, errstr_size,
                        "invalid setting %s (%s, from %s): \"%s\" is not "
                        "true or false (1/0, yes/no, on/off)",
                        s->env, s->flag, origin, value);
        *(int *)((char *)cfg + s->off) = b;
        return CONFIG_OK;
    }
    if (s->kind == SETTING_STR) {
        char **field = str_field(cfg, s);
        char *copy = strdup(value);
        if (!copy)
            return fail(errstr, errstr_size, "out of memory");
        free(*field);
        *field = copy;
        return CONFIG_OK;
    }
    long v;
    if (parse_long(value, s->min, s->max, &v) != 0)
        return fail(errstr, errstr_size,
                    "invalid setting %s (%s, from %s): \"%s\" is not an "
                    "integer from %ld to %ld",
                    s->env, s->flag, origin, value, s->min, s->max);
    if (s->kind == SETTING_INT)
        *(int *)((char *)cfg + s->off) = (int)v;
    else
        *(long *)((char *)cfg + s->off) = v;
    return CONFIG_OK;
}

static int default_worker_id(struct config *cfg)
{
    char host[256];
    if (gethostname(host, sizeof(host)) != 0)
        snprintf(host, sizeof(host), "edr-worker");
    host[sizeof(host) - 1] = '\0';
    char id[300];
    snprintf(id, sizeof(id), "%s-%ld", host, (long)getpid());
    return (cfg->worker_id = strdup(id)) ? 0 : -1;
}

/* Rejects an empty string where the setting needs one. */
static int require_nonempty(const struct config *cfg, const char *env,
                            char *errstr, size_t errstr_size)
{
    for (size_t i = 0; i < N_SETTINGS; i++) {
        const struct setting *s = &settings[i];
        if (strcmp(s->env, env) != 0)
            continue;
        const char *v = *str_field((struct config *)cfg, s);
        if (!v || !*v)
            return fail(errstr, errstr_size,
                        "invalid setting %s (%s): must not be empty", s->env,
                        s->flag);
    }
    return CONFIG_OK;
}

/* The shape rule lives in worker/http.c, which binds the address. */
static int validate_http_addr(const char *addr)
{
    char host[256], port[8];
    if (strcmp(addr, "off") == 0)
        return 0;
    return http_addr_split(addr, host, sizeof(host), port, sizeof(port));
}

/* An HTTP header name: RFC 9110 token characters. */
static int is_header_token(const char *s)
{
    if (!*s)
        return 0;
    for (; *s; s++) {
        unsigned char c = (unsigned char)*s;
        if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') ||
              (c >= '0' && c <= '9') || strchr("!#$%&'*+-.^_`|~", c)))
            return 0;
    }
    return 1;
}

/* A header value a client can send: visible ASCII, obs-text, inner
 * spaces; no control bytes, no surrounding blanks. */
static int is_header_value(const char *s)
{
    size_t n = strlen(s);
    if (n == 0 || s[0] == ' ' || s[0] == '\t' || s[n - 1] == ' ' ||
        s[n - 1] == '\t')
        return 0;
    for (; *s; s++) {
        unsigned char c = (unsigned char)*s;
        if ((c < 0x20 && c != '\t') || c == 0x7f)
            return 0;
    }
    return 1;
}

/* The file store's path must name a file: the store's own rule
 * (file_store_check_path: not empty, not ending in '/') plus an existing
 * directory, refused here so it is an invalid setting (exit 2), not a
 * run-time failure when the store opens. */
static int validate_file_path(const char *path, char *errstr,
                              size_t errstr_size)
{
    struct stat sb;
    char why[200];
    if (file_store_check_path(path, why, sizeof(why)) != 0)
        return fail(errstr, errstr_size, "invalid setting %s", why);
    if (stat(path, &sb) == 0 && S_ISDIR(sb.st_mode))
        return fail(errstr, errstr_size,
                    "invalid setting EDR_FILE_PATH (--file-path): is a "
                    "directory; give a file name");
    return CONFIG_OK;
}

/* EDR_CHANGELOG_TOPIC: the default follows EDR_TOPIC; "off" becomes
 * NULL. */
static int settle_changelog(struct config *cfg, int given, char *errstr,
                            size_t errstr_size)
{
    if (!given) {
        size_t n = strlen(cfg->topic) + sizeof(".changelog");
        free(cfg->changelog_topic);
        if (!(cfg->changelog_topic = malloc(n)))
            return fail(errstr, errstr_size, "out of memory");
        snprintf(cfg->changelog_topic, n, "%s.changelog", cfg->topic);
    }
    if (strcmp(cfg->changelog_topic, "off") == 0) {
        free(cfg->changelog_topic);
        cfg->changelog_topic = NULL;
        return CONFIG_OK;
    }
    if (!*cfg->changelog_topic)
        return fail(errstr, errstr_size,
                    "invalid setting EDR_CHANGELOG_TOPIC (--changelog-topic): "
                    "must not be empty (off disables it)");
    if (strcmp(cfg->changelog_topic, cfg->topic) == 0 ||
        strcmp(cfg->changelog_topic, cfg->dlq_topic) == 0)
        return fail(errstr, errstr_size,
                    "invalid setting EDR_CHANGELOG_TOPIC (--changelog-topic): "
                    "must differ from EDR_TOPIC and EDR_DLQ_TOPIC");
    return CONFIG_OK;
}

static int validate(struct config *cfg, enum config_mode mode, char *errstr,
                    size_t errstr_size)
{
    static const char *const nonempty[] = {
        "EDR_KAFKA_BROKERS", "EDR_TOPIC",     "EDR_DLQ_TOPIC",
        "EDR_GROUP_ID",      "EDR_STORE",     "EDR_FILE_PATH",
        "EDR_PG_TABLE",      "EDR_REDIS_URL", "EDR_RPC_PREFIX",
        "EDR_WORKER_ID",     "EDR_HTTP_ADDR", "EDR_CALLBACK_AUTH_KEY"};
    for (size_t i = 0; i < sizeof(nonempty) / sizeof(nonempty[0]); i++)
        if (require_nonempty(cfg, nonempty[i], errstr, errstr_size))
            return CONFIG_INVALID;
    if (log_level_parse(cfg->log_level) < 0)
        return fail(errstr, errstr_size,
                    "invalid setting EDR_LOG_LEVEL (--log-level): \"%s\" is "
                    "not debug, info, warn or error",
                    cfg->log_level);
    if (strcmp(cfg->log_format, "text") != 0 &&
        strcmp(cfg->log_format, "json") != 0)
        return fail(errstr, errstr_size,
                    "invalid setting EDR_LOG_FORMAT (--log-format): \"%s\" "
                    "is not text or json",
                    cfg->log_format);
    if (!is_header_token(cfg->callback_auth_key))
        return fail(errstr, errstr_size,
                    "invalid setting EDR_CALLBACK_AUTH_KEY "
                    "(--callback-auth-key): \"%s\" is not an HTTP header "
                    "name",
                    cfg->callback_auth_key);
    if (cfg->callback_auth_code && !is_header_value(cfg->callback_auth_code))
        /* a secret: described, never shown */
        return fail(errstr, errstr_size,
                    "invalid setting EDR_CALLBACK_AUTH_CODE "
                    "(--callback-auth-code): must be a non-empty header "
                    "value without control characters or surrounding "
                    "blanks; the value is not shown");
    if (mode != CONFIG_WORKER)
        return CONFIG_OK;
    if (strcmp(cfg->store, "memory") != 0 && strcmp(cfg->store, "file") &&
        strcmp(cfg->store, "postgres") != 0)
        return fail(errstr, errstr_size,
                    "invalid setting EDR_STORE (--store): \"%s\" is not "
                    "memory, file or postgres",
                    cfg->store);
    if (strcmp(cfg->store, "postgres") == 0 && (!cfg->pg_dsn || !*cfg->pg_dsn))
        return fail(errstr, errstr_size,
                    "invalid setting EDR_PG_DSN (--pg-dsn): required with "
                    "EDR_STORE=postgres");
    if (strcmp(cfg->store, "postgres") == 0 &&
        pg_dsn_validate(cfg->pg_dsn, errstr, errstr_size) != 0)
        return CONFIG_INVALID;
    if (strcmp(cfg->store, "file") == 0 &&
        validate_file_path(cfg->file_path, errstr, errstr_size) != 0)
        return CONFIG_INVALID;
    if (strcmp(cfg->topic, cfg->dlq_topic) == 0)
        /* Rejected events would be consumed again, forever. */
        return fail(errstr, errstr_size,
                    "invalid setting EDR_DLQ_TOPIC (--dlq-topic): must "
                    "differ from EDR_TOPIC");
    if (validate_http_addr(cfg->http_addr) != 0)
        return fail(errstr, errstr_size,
                    "invalid setting EDR_HTTP_ADDR (--http-addr): \"%s\" is "
                    "not host:port, [IPv6]:port (port 1-65535) or off",
                    cfg->http_addr);
    return CONFIG_OK;
}

/* One flag at argv[*i]; advances *i past its value. 1 when the argument
 * is not a setting (left for the caller), else a config_status. */
static int parse_flag(struct config *cfg, int argc, char **argv, int *i,
                      unsigned char *given, char *errstr, size_t errstr_size)
{
    const char *arg = argv[*i];
    if (strncmp(arg, "-X", 2) == 0) {
        const char *prop = arg + 2;
        if (!*prop) {
            if (*i + 1 >= argc)
                return fail(errstr, errstr_size,
                            "invalid setting -X: expected -X name=value");
            prop = argv[++*i];
        }
        return add_kafka_prop(cfg, prop, errstr, errstr_size);
    }
    if (strncmp(arg, "--", 2) != 0)
        return 1;
    const char *eq = strchr(arg, '=');
    size_t len = eq ? (size_t)(eq - arg) : strlen(arg);
    const struct setting *s = setting_by_flag(arg, len);
    if (!s)
        return 1;
    const char *value;
    if (eq) {
        value = eq + 1;
    } else if (s->kind == SETTING_BOOL) {
        value = "true"; /* --accept-gap alone */
    } else {
        if (*i + 1 >= argc)
            return fail(errstr, errstr_size,
                        "invalid setting %s (%s): the flag needs a value",
                        s->env, s->flag);
        value = argv[++*i];
    }
    given[s - settings] = 1;
    return set_value(cfg, s, value, s->flag, errstr, errstr_size);
}

int config_load(struct config *cfg, enum config_mode mode, int argc,
                char **argv, struct config_rest *rest, char *errstr,
                size_t errstr_size)
{
    int rc = CONFIG_OK;
    unsigned char given[N_SETTINGS] = {0};
    memset(cfg, 0, sizeof(*cfg));
    if (errstr_size)
        errstr[0] = '\0';
    if (rest) {
        rest->argc = 0;
        rest->argv = NULL;
        if (rest_push(rest, argc > 0 ? argv[0] : NULL) != 0) {
            rc = fail(errstr, errstr_size, "out of memory");
            goto out;
        }
    }

    for (size_t i = 0; i < N_SETTINGS; i++) {
        const char *v = getenv(settings[i].env);
        /* An empty variable counts as unset, as in most deployments
         * (`EDR_PG_DSN=` in a compose file). */
        if (!v || !*v)
            continue;
        if ((rc = set_value(cfg, &settings[i], v, settings[i].env, errstr,
                            errstr_size)) != CONFIG_OK)
            goto out;
        given[i] = 1;
    }

    int help = 0, version = 0;
    for (int i = 1; i < argc; i++) {
        int r = parse_flag(cfg, argc, argv, &i, given, errstr, errstr_size);
        if (r < 0) {
            rc = r;
            goto out;
        }
        if (r == 0)
            continue;
        const char *arg = argv[i];
        if (mode == CONFIG_WORKER &&
            (strcmp(arg, "--help") == 0 || strcmp(arg, "-h") == 0)) {
            help = 1;
            continue;
        }
        if (mode == CONFIG_WORKER && strcmp(arg, "--version") == 0) {
            version = 1;
            continue;
        }
        if (!rest) {
            rc = fail(errstr, errstr_size, "unknown argument \"%s\"", arg);
            goto out;
        }
        if (rest_push(rest, argv[i]) != 0) {
            rc = fail(errstr, errstr_size, "out of memory");
            goto out;
        }
    }
    if (help) {
        rc = CONFIG_HELP;
        goto out;
    }
    if (version) {
        rc = CONFIG_VERSION;
        goto out;
    }

    for (size_t i = 0; i < N_SETTINGS; i++) {
        const struct setting *s = &settings[i];
        if (given[i] || !s->def)
            continue;
        if ((rc = set_value(cfg, s, s->def, "default", errstr, errstr_size)) !=
            CONFIG_OK)
            goto out;
    }
    if (!cfg->worker_id && default_worker_id(cfg) != 0) {
        rc = fail(errstr, errstr_size, "out of memory");
        goto out;
    }
    for (size_t i = 0; i < N_SETTINGS; i++)
        if (strcmp(settings[i].env, "EDR_CHANGELOG_TOPIC") == 0 &&
            (rc = settle_changelog(cfg, given[i], errstr, errstr_size)) !=
                CONFIG_OK)
            goto out;
    rc = validate(cfg, mode, errstr, errstr_size);

out:
    return rc;
}

void config_clear(struct config *cfg)
{
    if (!cfg)
        return;
    for (size_t i = 0; i < N_SETTINGS; i++)
        if (settings[i].kind == SETTING_STR)
            free(*str_field(cfg, &settings[i]));
    for (size_t i = 0; i < cfg->n_kafka_props; i++)
        free(cfg->kafka_props[i]);
    free(cfg->kafka_props);
    memset(cfg, 0, sizeof(*cfg));
}

void config_rest_free(struct config_rest *rest)
{
    if (!rest)
        return;
    free(rest->argv);
    rest->argv = NULL;
    rest->argc = 0;
}

void config_print_settings(FILE *out)
{
    fprintf(out, "Settings (environment variable, flag, default); the flag "
                 "wins:\n");
    for (size_t i = 0; i < N_SETTINGS; i++) {
        const struct setting *s = &settings[i];
        fprintf(out, "  %-18s %-16s default: %s\n  %35s %s\n", s->env, s->flag,
                s->def_text ? s->def_text : s->def, "", s->help);
    }
    fprintf(out,
            "  -X name=value      (repeatable)     librdkafka property, as "
            "kcat's -X;\n  %35s an unknown property is an error\n",
            "");
}

/* config_parse.h: filling a struct config (worker/config.h) from the
 * environment and the command line, shared by edr-worker and edrctl.
 *
 * Parsing returns a status instead of exiting, so tests can drive it and
 * only the programs' main() decide the exit code (2 for CONFIG_INVALID). */
#ifndef EDR_WORKER_CONFIG_PARSE_H
#define EDR_WORKER_CONFIG_PARSE_H

#include "worker/config.h"

#include <librdkafka/rdkafka.h>
#include <stdio.h>

enum config_status {
    CONFIG_OK = 0,
    CONFIG_HELP = 1,     /* --help seen (worker mode): print help, exit 0 */
    CONFIG_VERSION = 2,  /* --version seen (worker mode) */
    CONFIG_INVALID = -1, /* errstr names the setting: exit 2 */
};

enum config_mode {
    /* edr-worker: store settings are validated; --help and --version are
     * recognised. */
    CONFIG_WORKER,
    /* edrctl: store settings are not validated (a client needs no store);
     * --help is left to the subcommand. */
    CONFIG_CLIENT,
};

/* The arguments config_load did not recognise, in their original order
 * (unknown flags, their values and positional arguments). argv[0] is the
 * argv[0] given to config_load, so the array can go straight to a
 * subcommand's own parser; argv[argc] is NULL. The strings are borrowed
 * from the caller's argv; the array itself is owned: config_rest_free. */
struct config_rest {
    int argc;
    char **argv;
};

/* Fills *cfg (which it initialises; free with config_clear even on error)
 * from the environment variables of schemas/README.md §3, then argv[1..argc-1]
 * (flags win), then the defaults, and validates the result.
 * Flags take their value as "--flag value" or "--flag=value"; -X as
 * "-X name=value" or "-Xname=value" and is checked against librdkafka.
 * rest: when non-NULL, unrecognised arguments are returned there; when
 * NULL, any unrecognised argument is an error.
 * Returns a config_status; on CONFIG_INVALID errstr names the setting and
 * never holds a secret's value (DSN, Redis URL, -X values). */
int config_load(struct config *cfg, enum config_mode mode, int argc,
                char **argv, struct config_rest *rest, char *errstr,
                size_t errstr_size);

/* Frees what cfg owns and zeroes it; a zeroed cfg is fine. */
void config_clear(struct config *cfg);
void config_rest_free(struct config_rest *rest);

/* Prints one line per setting: variable, flag, default, meaning. */
void config_print_settings(FILE *out);

/* Checks one -X "name=value" against librdkafka. 0, or -1 with errstr. */
int config_check_kafka_prop(const char *prop, char *errstr, size_t errstr_size);

/* Sets every -X property of cfg on conf, in order. 0, or -1 with errstr
 * naming the property (they were checked by config_load already). */
int config_apply_kafka_props(const struct config *cfg, rd_kafka_conf_t *conf,
                             char *errstr, size_t errstr_size);

/* rd_kafka_conf_set as 0, or -1 with librdkafka's reason in errstr: the
 * programs' own fixed properties chain with || this way. */
int config_kafka_set(rd_kafka_conf_t *conf, const char *name, const char *value,
                     char *errstr, size_t errstr_size);

/* Logs at info the delivery settings producer rk really runs with, as
 * rd_kafka_conf_get returns them after rd_kafka_new (acks,
 * enable.idempotence, message.timeout.ms): who names it in the line. */
void config_log_producer(rd_kafka_t *rk, const char *who);

/* The name part of a -X "name=value" into out (truncated to out_size). */
void config_kafka_prop_name(const char *prop, char *out, size_t out_size);

#endif

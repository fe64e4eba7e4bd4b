/* config.h: every setting of edr-worker and edrctl (schemas/README.md §3).
 *
 * Each setting comes from its environment variable, then its flag (the
 * flag wins), then the default. An invalid value stops the program with
 * exit code 2 and a message naming the setting. */
#ifndef EDR_WORKER_CONFIG_H
#define EDR_WORKER_CONFIG_H

#include <stddef.h>

/* The most lookup responder threads (EDR_RPC_THREADS); more is an invalid
 * setting, never silently capped. */
#define CONFIG_RPC_THREADS_MAX 64

struct config {
    char *brokers;    /* EDR_KAFKA_BROKERS --brokers */
    char *topic;      /* EDR_TOPIC --topic */
    char *dlq_topic;  /* EDR_DLQ_TOPIC --dlq-topic */
    char *group_id;   /* EDR_GROUP_ID --group-id */
    char *store;      /* EDR_STORE --store: memory|file|postgres */
    char *file_path;  /* EDR_FILE_PATH --file-path */
    char *pg_dsn;     /* EDR_PG_DSN --pg-dsn */
    char *pg_table;   /* EDR_PG_TABLE --pg-table */
    char *redis_url;  /* EDR_REDIS_URL --redis-url */
    char *rpc_prefix; /* EDR_RPC_PREFIX --rpc-prefix */
    char *worker_id;  /* EDR_WORKER_ID --worker-id */
    char *log_level;  /* EDR_LOG_LEVEL --log-level: debug|info|warn|error */
    char *log_format; /* EDR_LOG_FORMAT --log-format: text|json */
    char *http_addr;  /* EDR_HTTP_ADDR --http-addr: host:port or "off" */
    /* (v2) EDR_CHANGELOG_TOPIC --changelog-topic: default
     * <topic>.changelog; NULL when "off" (disabled) */
    char *changelog_topic;
    /* (v2) EDR_CALLBACK_AUTH_KEY --callback-auth-key: header name */
    char *callback_auth_key;
    /* (v2) EDR_CALLBACK_AUTH_CODE --callback-auth-code: a secret, never
     * logged or echoed; NULL: EDC callbacks off */
    char *callback_auth_code;
    int accept_gap;  /* (v2) EDR_ACCEPT_GAP --accept-gap: 0 or 1 */
    int rpc_threads; /* EDR_RPC_THREADS --rpc-threads */
    /* EDR_CHANGELOG_COMMIT_MS --changelog-commit-ms (worker-specific, not
     * in the contract): the changelog transaction is committed at least
     * this often (0: after every batch) */
    int changelog_commit_ms;
    int timeout_ms;     /* EDR_TIMEOUT_MS --timeout-ms (edrctl) */
    long ready_max_lag; /* EDR_READY_MAX_LAG --ready-max-lag */
    /* -X name=value, repeatable: librdkafka properties, in order. */
    char **kafka_props; /* "name=value" strings */
    size_t n_kafka_props;
};

#endif

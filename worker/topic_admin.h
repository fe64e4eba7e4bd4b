/* topic_admin.h: what the worker asks Kafka about its topics at start
 * (schemas/README.md §4): the source topic's retention settings, and the
 * changelog topic, created when absent and checked when present.
 *
 * Uses librdkafka's Admin API (DescribeConfigs, CreateTopics) and topic
 * metadata on a client handle the caller owns (any type; a producer is
 * fine). Every call blocks for at most TOPIC_ADMIN_TIMEOUT_MS per request.
 * Threads: any thread; rk is only borrowed. No logging: messages go to
 * errstr, which never holds more than topic names, settings and broker
 * reasons. */
#ifndef EDR_WORKER_TOPIC_ADMIN_H
#define EDR_WORKER_TOPIC_ADMIN_H

#include <librdkafka/rdkafka.h>
#include <stddef.h>
#include <stdint.h>

#define TOPIC_ADMIN_TIMEOUT_MS 10000
/* max.message.bytes of a created changelog: room for a record of an entry
 * from a 1 MiB event plus its key fields (worker/changelog.c). */
#define TOPIC_ADMIN_CHANGELOG_MAX_BYTES "2097152"

/* The configuration a created changelog gets, {name, value} pairs ending
 * with {NULL, NULL}: compacted, and with segments and a cleaner ratio that
 * let compaction act within minutes (topic_admin.c says why). */
extern const char *const topic_admin_changelog_configs[][2];

enum topic_admin_status {
    TOPIC_ADMIN_OK = 0,         /* present and valid */
    TOPIC_ADMIN_CREATED = 1,    /* was absent, now created and ready */
    TOPIC_ADMIN_INVALID = -1,   /* invalid setting: exit 2 (see errstr) */
    TOPIC_ADMIN_TRANSIENT = -2, /* broker unreachable, topic not ready:
                                 * back off and call again */
};

/* Effective retention settings of a topic (topic overrides, else the
 * broker's defaults, as DescribeConfigs reports them). */
struct topic_retention {
    char cleanup_policy[64]; /* e.g. "delete", "compact", "compact,delete" */
    int64_t retention_ms;    /* -1: unlimited */
    int64_t retention_bytes; /* -1: unlimited */
    /* 1 when the policy contains "delete" and a limit is set: retention
     * can delete events that the state may still need. */
    int can_delete;
};

/* Reads topic's cleanup.policy, retention.ms and retention.bytes into
 * *out. TOPIC_ADMIN_OK; TOPIC_ADMIN_INVALID when the topic does not exist
 * or a value is missing or unparsable; TOPIC_ADMIN_TRANSIENT when the
 * broker did not answer. errstr (n bytes) says why on failure. */
int topic_admin_retention(rd_kafka_t *rk, const char *topic,
                          struct topic_retention *out, char *errstr, size_t n);

/* Makes sure changelog_topic exists as the changelog of source_topic:
 * - absent: creates it with cleanup.policy=compact, max.message.bytes
 *   TOPIC_ADMIN_CHANGELOG_MAX_BYTES, the partition count of source_topic and
 * the replication factor of its partition 0, waits until every partition has a
 * leader, returns TOPIC_ADMIN_CREATED (a concurrent creation by another worker,
 * TOPIC_ALREADY_EXISTS, is verified as below instead);
 * - present: TOPIC_ADMIN_OK when its cleanup.policy is "compact", or
 *   "compact,delete" with retention.ms and retention.bytes both -1 (a
 *   changelog whose records retention can delete would restore a
 *   silently incomplete state), and its partition count equals the
 *   source's; else TOPIC_ADMIN_INVALID with errstr naming
 *   EDR_CHANGELOG_TOPIC, the topic and the reason.
 * The source topic must exist: absent, TOPIC_ADMIN_TRANSIENT (it may be
 * on its way; the caller decides how long to wait). */
int topic_admin_ensure_changelog(rd_kafka_t *rk, const char *source_topic,
                                 const char *changelog_topic, char *errstr,
                                 size_t n);

/* Partition count of topic and the replica count of its partition 0, from
 * metadata. TOPIC_ADMIN_OK; TOPIC_ADMIN_INVALID when the topic is unknown
 * (*partitions = 0); TOPIC_ADMIN_TRANSIENT when the broker did not answer. */
int topic_admin_partitions(rd_kafka_t *rk, const char *topic, int *partitions,
                           int *replication, char *errstr, size_t n);

#endif

/* kafka_util.h: Kafka helpers for integration tests on the local broker.
 *
 * Part of the edr_test_support library. The broker list comes from
 * EDR_KAFKA_BROKERS (scripts/services.sh env). Several helpers share one
 * broker, so every test names its topics with test_unique_name(). All
 * functions are blocking and may be called from any thread; none keeps a
 * client between calls (each makes and destroys its own). */
#ifndef EDR_TEST_KAFKA_UTIL_H
#define EDR_TEST_KAFKA_UTIL_H

#include <librdkafka/rdkafka.h>
#include <stddef.h>
#include <stdint.h>

/* A delivery report callback (rd_kafka_conf_set_dr_msg_cb). */
typedef void test_kafka_dr_cb(rd_kafka_t *rk, const rd_kafka_message_t *msg,
                              void *opaque);

/* A client of `type` bootstrapped on `brokers` (NULL: none, for a mock
 * cluster set in props), with extra properties as name/value pairs
 * (NULL-terminated, or NULL), an optional delivery report callback and
 * the opaque its callbacks get. Returns the client (the caller destroys
 * it), or NULL with the reason in errstr (may be NULL). */
rd_kafka_t *test_kafka_client_new(rd_kafka_type_t type, const char *brokers,
                                  const char *const *props,
                                  test_kafka_dr_cb *dr_cb, void *opaque,
                                  char *errstr, size_t n);

/* Creates `topic` with `partitions` partitions (replication factor 1)
 * through the Admin API, then waits (up to 30 s) until the broker's
 * metadata shows every partition with a leader, so a producer or consumer
 * started right after sees the whole topic. A topic that already exists
 * with the same partition count counts as created. Returns 0, or -1 with
 * a message in errstr (n bytes). */
int test_kafka_create_topic(const char *brokers, const char *topic,
                            int partitions, char *errstr, size_t n);

/* Creates a fresh topic test_unique_name(prefix) and its dead-letter
 * topic "<topic>_dlq", each with `partitions` partitions (as
 * test_kafka_create_topic). Returns 0 with *topic and *dlq malloc'd (the
 * caller frees them), or -1 with errstr and both NULL. */
int test_kafka_topic_pair(const char *brokers, const char *prefix,
                          int partitions, char **topic, char **dlq,
                          char *errstr, size_t n);

/* Produces one message (key may be NULL; val/len borrowed for the call)
 * with acks=all and waits up to 30 s for its delivery report. The
 * partition follows the key (librdkafka's default partitioner). Returns 0
 * once the broker acknowledged it, or -1 with a message in errstr. */
int test_kafka_produce(const char *brokers, const char *topic, const char *key,
                       const void *val, size_t len, char *errstr, size_t n);

/* Deletes `topic` through the Admin API (up to 30 s). 0 once the broker
 * confirmed, else -1. */
int test_kafka_delete_topic(const char *brokers, const char *topic);

/* Deletes the records of topic/partition before offset `before` (Admin
 * DeleteRecords: the partition's log start becomes `before`). 0 or -1
 * (the reason on stderr). */
int test_kafka_delete_records(const char *brokers, const char *topic,
                              int32_t partition, int64_t before);

/* The low watermark (log start) of topic/partition, or -1. */
int64_t test_kafka_log_start(const char *brokers, const char *topic,
                             int32_t partition);

/* Creates topic with `partitions` partitions and the topic configs
 * (name, value pairs, NULL-terminated, or NULL), then waits for leaders
 * as test_kafka_create_topic. 0 or -1. */
int test_kafka_create_topic_with(const char *brokers, const char *topic,
                                 int partitions, const char *const *configs);

/* Sets topic's configs (name, value pairs, NULL-terminated) with the
 * AlterConfigs API: the topic's other dynamic configs return to their
 * defaults. 0 or -1. */
int test_kafka_alter_topic_config(const char *brokers, const char *topic,
                                  const char *const *configs);

/* The value of broker config `name` of broker 1 (malloc'd), or NULL. */
char *test_kafka_broker_config(const char *brokers, const char *name);

/* 1 when broker 1 checks retention at least every max_ms
 * (log.retention.check.interval.ms), so a test of real retention runs in
 * seconds; else 0, with a SKIPPED line on stderr saying why. */
int test_kafka_retention_is_fast(const char *brokers, long long max_ms);

/* Returns a malloc'd name "<prefix>_<pid>_<unix µs>_<counter>", unique per
 * process and call, made only of the prefix and [0-9_]: usable as a Kafka
 * topic, a consumer group, a Redis key or (with a lower-case prefix) a
 * PostgreSQL identifier. The caller frees it; NULL when out of memory. */
char *test_unique_name(const char *prefix);

#endif

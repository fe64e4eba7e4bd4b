/* kafka_util.h: Kafka helpers for integration tests on the local broker.
 *
 * Part of the edr_test_support library. The broker list comes from
 * EDR_KAFKA_BROKERS (scripts/services.sh env). Several helpers share one
 * broker, so every test names its topics with test_unique_name(). All
 * functions are blocking and may be called from any thread; none keeps a
 * client between calls (each makes and destroys its own). */
#ifndef EDR_TEST_KAFKA_UTIL_H
#define EDR_TEST_KAFKA_UTIL_H

#include <stddef.h>

/* Creates `topic` with `partitions` partitions (replication factor 1)
 * through the Admin API, then waits (up to 30 s) until the broker's
 * metadata shows every partition with a leader, so a producer or consumer
 * started right after sees the whole topic. A topic that already exists
 * with the same partition count counts as created. Returns 0, or -1 with
 * a message in errstr (n bytes). */
int test_kafka_create_topic(const char *brokers, const char *topic,
                            int partitions, char *errstr, size_t n);

/* Produces one message (key may be NULL; val/len borrowed for the call)
 * with acks=all and waits up to 30 s for its delivery report. The
 * partition follows the key (librdkafka's default partitioner). Returns 0
 * once the broker acknowledged it, or -1 with a message in errstr. */
int test_kafka_produce(const char *brokers, const char *topic, const char *key,
                       const void *val, size_t len, char *errstr, size_t n);

/* Returns a malloc'd name "<prefix>_<pid>_<unix µs>_<counter>", unique per
 * process and call, made only of the prefix and [0-9_]: usable as a Kafka
 * topic, a consumer group, a Redis key or (with a lower-case prefix) a
 * PostgreSQL identifier. The caller frees it; NULL when out of memory. */
char *test_unique_name(const char *prefix);

#endif

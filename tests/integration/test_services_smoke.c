/* test_services_smoke.c: the local stack answers through the client
 * libraries the worker links. Produce and consume one message on Kafka
 * (librdkafka, consumer group included), SET/GET on Redis (hiredis), a
 * parameterised round trip on PostgreSQL (libpq). Addresses come from
 * scripts/services.sh env; a server that is down fails its test. */
#include "base/clock.h"
#include "tests/support/cunit_main.h"
#include "tests/support/kafka_util.h"

#include <hiredis/hiredis.h>
#include <libpq-fe.h>
#include <librdkafka/rdkafka.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

static void test_kafka_produce_consume(void)
{
    const char *brokers = test_env("EDR_KAFKA_BROKERS");
    char errstr[512] = "";
    char *topic = test_unique_name("smoke");
    char *group = test_unique_name("smoke_group");
    char *payload = test_unique_name("payload");
    rd_kafka_t *rk = NULL;
    rd_kafka_topic_partition_list_t *subs = NULL;
    int found = 0;

    CU_ASSERT_PTR_NOT_NULL_FATAL(brokers);
    CU_ASSERT_FATAL(topic && group && payload);
    if (test_kafka_create_topic(brokers, topic, 3, errstr, sizeof(errstr))) {
        fprintf(stderr, "create topic: %s\n", errstr);
        CU_FAIL("test_kafka_create_topic failed");
        goto done;
    }
    if (test_kafka_produce(brokers, topic, "smoke-key", payload,
                           strlen(payload), errstr, sizeof(errstr))) {
        fprintf(stderr, "produce: %s\n", errstr);
        CU_FAIL("test_kafka_produce failed");
        goto done;
    }

    const char *const props[] = {"group.id", group, "auto.offset.reset",
                                 "earliest", NULL};
    rk = test_kafka_client_new(RD_KAFKA_CONSUMER, brokers, props, NULL, NULL,
                               errstr, sizeof(errstr));
    if (!rk) {
        fprintf(stderr, "consumer: %s\n", errstr);
        CU_FAIL("rd_kafka_new(consumer) failed");
        goto done;
    }
    rd_kafka_poll_set_consumer(rk);
    subs = rd_kafka_topic_partition_list_new(1);
    rd_kafka_topic_partition_list_add(subs, topic, RD_KAFKA_PARTITION_UA);
    CU_ASSERT_EQUAL_FATAL(rd_kafka_subscribe(rk, subs), 0);

    /* Joining the group, getting an assignment and fetching take a few
     * seconds at most on the local broker; 30 s leaves room under load. */
    long long deadline = edr_clock_ms() + 30000;
    while (!found && edr_clock_ms() < deadline) {
        rd_kafka_message_t *msg = rd_kafka_consumer_poll(rk, 500);
        if (!msg)
            continue;
        if (msg->err == RD_KAFKA_RESP_ERR_NO_ERROR) {
            CU_ASSERT_EQUAL(msg->key_len, strlen("smoke-key"));
            CU_ASSERT_EQUAL(msg->len, strlen(payload));
            if (msg->len == strlen(payload) &&
                memcmp(msg->payload, payload, msg->len) == 0)
                found = 1;
        } else if (msg->err != RD_KAFKA_RESP_ERR__PARTITION_EOF) {
            fprintf(stderr, "consume: %s\n", rd_kafka_message_errstr(msg));
        }
        rd_kafka_message_destroy(msg);
    }
    CU_ASSERT_TRUE(found);
    CU_ASSERT_EQUAL(rd_kafka_consumer_close(rk), RD_KAFKA_RESP_ERR_NO_ERROR);

done:
    if (subs)
        rd_kafka_topic_partition_list_destroy(subs);
    if (rk)
        rd_kafka_destroy(rk);
    free(payload);
    free(group);
    free(topic);
}

/* Splits redis://host:port/db; only what services.sh prints. */
static int parse_redis_url(const char *url, char *host, size_t hostlen,
                           int *port, int *db)
{
    const char *p = strncmp(url, "redis://", 8) == 0 ? url + 8 : NULL;
    const char *colon = p ? strchr(p, ':') : NULL;

    if (!colon || (size_t)(colon - p) >= hostlen)
        return -1;
    memcpy(host, p, (size_t)(colon - p));
    host[colon - p] = '\0';
    *port = atoi(colon + 1);
    const char *slash = strchr(colon, '/');
    *db = slash ? atoi(slash + 1) : 0;
    return *port > 0 ? 0 : -1;
}

static void test_redis_set_get(void)
{
    const char *url = test_env("EDR_REDIS_URL");
    char host[256];
    int port = 0, db = 0;
    struct timeval tv = {5, 0};
    redisContext *c = NULL;
    redisReply *r = NULL;
    char *key = test_unique_name("edr_smoke");
    char *val = test_unique_name("value");

    CU_ASSERT_PTR_NOT_NULL_FATAL(url);
    CU_ASSERT_FATAL(key && val);
    CU_ASSERT_EQUAL_FATAL(parse_redis_url(url, host, sizeof(host), &port, &db),
                          0);
    c = redisConnectWithTimeout(host, port, tv);
    if (!c || c->err) {
        fprintf(stderr, "redis %s: %s\n", url, c ? c->errstr : "no memory");
        CU_FAIL("redis connect failed");
        goto done;
    }
    redisSetTimeout(c, tv);
    r = redisCommand(c, "SELECT %d", db);
    CU_ASSERT(r && r->type == REDIS_REPLY_STATUS);
    freeReplyObject(r);
    r = redisCommand(c, "SET %s %s EX 60", key, val);
    CU_ASSERT(r && r->type == REDIS_REPLY_STATUS && strcmp(r->str, "OK") == 0);
    freeReplyObject(r);
    r = redisCommand(c, "GET %s", key);
    CU_ASSERT(r && r->type == REDIS_REPLY_STRING && strcmp(r->str, val) == 0);
    freeReplyObject(r);
    r = redisCommand(c, "DEL %s", key);
    CU_ASSERT(r && r->type == REDIS_REPLY_INTEGER && r->integer == 1);
    freeReplyObject(r);

done:
    redisFree(c);
    free(val);
    free(key);
}

static void test_pg_round_trip(void)
{
    const char *dsn = test_env("EDR_PG_DSN");
    const char *const keys[] = {"dbname", "connect_timeout", NULL};
    const char *vals[] = {dsn, "5", NULL};
    PGconn *conn = NULL;
    PGresult *res = NULL;
    char *table = test_unique_name("smoke");

    CU_ASSERT_PTR_NOT_NULL_FATAL(dsn);
    CU_ASSERT_PTR_NOT_NULL_FATAL(table);
    conn = PQconnectdbParams(keys, vals, 1); /* dbname expands the URL */
    if (PQstatus(conn) != CONNECTION_OK) {
        fprintf(stderr, "postgres: %s", PQerrorMessage(conn));
        CU_FAIL("postgres connect failed");
        goto done;
    }

    /* Temporary table: gone with the session, invisible to other tests. */
    char sql[256];
    snprintf(sql, sizeof(sql), "CREATE TEMP TABLE %s (k text, n int)", table);
    res = PQexec(conn, sql);
    CU_ASSERT_EQUAL(PQresultStatus(res), PGRES_COMMAND_OK);
    PQclear(res);

    const char *params[] = {"edr-smoke", "41"};
    snprintf(sql, sizeof(sql), "INSERT INTO %s VALUES ($1, $2::int)", table);
    res = PQexecParams(conn, sql, 2, NULL, params, NULL, NULL, 0);
    CU_ASSERT_EQUAL(PQresultStatus(res), PGRES_COMMAND_OK);
    PQclear(res);

    snprintf(sql, sizeof(sql), "SELECT k, n + 1 FROM %s WHERE k = $1", table);
    res = PQexecParams(conn, sql, 1, NULL, params, NULL, NULL, 0);
    CU_ASSERT_EQUAL(PQresultStatus(res), PGRES_TUPLES_OK);
    CU_ASSERT_EQUAL(PQntuples(res), 1);
    if (PQntuples(res) == 1) {
        CU_ASSERT_STRING_EQUAL(PQgetvalue(res, 0, 0), "edr-smoke");
        CU_ASSERT_STRING_EQUAL(PQgetvalue(res, 0, 1), "42");
    }
    PQclear(res);

done:
    PQfinish(conn);
    free(table);
}

static void register_smoke(void)
{
    CU_pSuite s = CU_add_suite("services_smoke", NULL, NULL);
    CU_add_test(s, "kafka produce and consume", test_kafka_produce_consume);
    CU_add_test(s, "redis set and get", test_redis_set_get);
    CU_add_test(s, "postgres round trip", test_pg_round_trip);
}

int main(void)
{
    static const cunit_register_fn registers[] = {register_smoke, NULL};
    return cunit_main(registers);
}

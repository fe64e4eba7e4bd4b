/* test_decode_pool.c: worker/decode_pool.c marks each item of a batch
 * decoded, bad (to the dead-letter topic, with a reason) or nomem (the
 * decoder ran out of memory: a transient failure the batch retries, never
 * a dead letter). Allocation failures come from tests/support/failmalloc. */
#include "worker/decode_pool.h"
#include "worker/ingest_int.h"

#include "tests/support/cunit_main.h"
#include "tests/support/failmalloc.h"

#include <CUnit/CUnit.h>
#include <string.h>

static const char good[] =
    "{\"specversion\":\"1.0\",\"id\":\"e1\",\"source\":\"urn:t\","
    "\"type\":\"edr.negotiated\",\"data\":{\"counter_party_id\":\"BPNL1\","
    "\"counter_party_address\":\"https://p.example/dsp\","
    "\"query_checksum\":\"q\",\"policy_checksum\":\"p\","
    "\"edr\":{\"@type\":\"x\",\"transferProcessId\":\"tp-1\"}}}";
static const char malformed[] = "{\"specversion\":\"1.0\"";

static void fill(struct item *items, rd_kafka_message_t *msgs)
{
    const char *payloads[2] = {good, malformed};
    for (int i = 0; i < 2; i++) {
        memset(&msgs[i], 0, sizeof(msgs[i]));
        msgs[i].payload = (void *)payloads[i];
        msgs[i].len = strlen(payloads[i]);
        msgs[i].offset = i;
        memset(&items[i], 0, sizeof(items[i]));
        items[i].msg = &msgs[i];
    }
}

static void run(struct item *items, size_t n)
{
    struct decode_pool d = {0};
    decode_pool_post(&d, items, n); /* not started: the caller decodes */
    decode_pool_finish(&d);
}

static void test_verdicts(void)
{
    struct item items[2];
    rd_kafka_message_t msgs[2];
    fill(items, msgs);
    run(items, 2);
    CU_ASSERT(items[0].decoded && !items[0].bad && !items[0].nomem);
    CU_ASSERT_EQUAL(items[0].op.kind, STORE_OP_PUT);
    CU_ASSERT(items[1].bad && !items[1].decoded && !items[1].nomem);
    CU_ASSERT(items[1].reason[0] != '\0');
    event_clear(&items[0].ev);
}

/* Every allocation failing from the first on: the valid event is nomem,
 * never bad (a dead letter would lose a good event for the machine's
 * fault); the malformed one is still bad. */
static void test_out_of_memory_is_not_a_dead_letter(void)
{
    struct item items[2];
    rd_kafka_message_t msgs[2];
    fill(items, msgs);
    failmalloc_arm_persistent(1);
    run(items, 2);
    unsigned long fired = failmalloc_fired();
    failmalloc_disarm();
    CU_ASSERT(fired > 0);
    CU_ASSERT(items[0].nomem);
    CU_ASSERT(!items[0].bad && !items[0].decoded);
    CU_ASSERT_EQUAL(items[0].err, EVENT_ERR_NOMEM);
    CU_ASSERT(items[1].bad && !items[1].nomem);

    /* Memory back: the same item decodes (what the retry sees). */
    fill(items, msgs);
    run(items, 1);
    CU_ASSERT(items[0].decoded && !items[0].nomem && !items[0].bad);
    event_clear(&items[0].ev);
}

static void register_tests(void)
{
    CU_pSuite s = CU_add_suite("decode_pool", NULL, NULL);
    CU_add_test(s, "decoded, bad", test_verdicts);
    CU_add_test(s, "out of memory is retried, not dead-lettered",
                test_out_of_memory_is_not_a_dead_letter);
}

int main(void)
{
    static const cunit_register_fn registers[] = {register_tests, NULL};
    return cunit_main(registers);
}

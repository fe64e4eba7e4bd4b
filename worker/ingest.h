/* ingest.h: the Kafka loop of edr-worker (schemas/README.md §4, issue 5).
 *
 * Consumes EDR_TOPIC, decodes each event (schemas/), turns it into a store
 * operation (handlers/), dead-letters what is rejected (worker/dlq.h) and
 * applies one store batch per poll round together with the offsets it came
 * from. memory and file stores assign every partition themselves; the
 * postgres store shares the consumer group EDR_GROUP_ID. Store outages
 * pause the partitions and retry the same batch; nothing is skipped. */
#ifndef EDR_WORKER_INGEST_H
#define EDR_WORKER_INGEST_H

#include "stores/store.h"
#include "worker/config.h"

#include <signal.h>

struct ingest_opts {
    /* Testing and benchmark aid, honoured only by the test build
     * (EDR_TEST_HOOKS, worker/ingest_catchup.c): stop once every partition
     * of the topic is applied up to the high watermark it had when the
     * worker started, print {"applied":n,"seconds":s,"events_per_s":r} on
     * stdout. */
    int exit_when_caught_up;
    /* CLOCK_MONOTONIC seconds at process start, for that figure. */
    double start_time;
};

enum ingest_result {
    INGEST_OK = 0,     /* stopped on request, everything applied persisted */
    INGEST_CONFIG = 2, /* the Kafka client could not be configured */
    INGEST_FATAL = 3,  /* the store failed fatally, or Kafka did */
};

/* Runs on the calling thread until *stop becomes non-zero (set it from a
 * signal handler), then finishes the batch in flight, commits and closes
 * the consumer. cfg and st are borrowed; st stays open (the caller closes
 * it after the lookups have stopped). Returns an ingest_result. */
int ingest_run(const struct config *cfg, struct store *st,
               volatile sig_atomic_t *stop, const struct ingest_opts *opts);

/* Seconds on CLOCK_MONOTONIC. */
double ingest_now(void);

#endif

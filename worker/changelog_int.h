/* changelog_int.h: what changelog.c (ownership, open and close) and
 * changelog_txn.c (the transactions) share; not for other files. */
#ifndef EDR_WORKER_CHANGELOG_INT_H
#define EDR_WORKER_CHANGELOG_INT_H

#include "worker/changelog.h"

#include <librdkafka/rdkafka.h>
#include <pthread.h>
#include <stdint.h>

enum {
    CL_TXN_NONE,           /* no transaction open */
    CL_TXN_OPEN,           /* begun: records and offsets being added */
    CL_TXN_COMMIT_PENDING, /* commit timed out: commit again first */
    CL_TXN_ABORT_PENDING,  /* abort timed out: abort again first */
};

/* Per-partition role. Partitions are few; a grown array indexed by
 * partition number. */
struct cl_part {
    unsigned assigned : 1; /* in the current assignment */
    unsigned owned : 1;    /* assigned and committed position read */
    int64_t committed;     /* previous owner's commit, -1: none */
};

struct changelog {
    rd_kafka_t *producer;
    rd_kafka_t *consumer;
    char *source_topic;
    char *changelog_topic;
    int timeout_ms;
    int fatal;     /* the producer hit a fatal error */
    int txn_state; /* CL_TXN_*: what the last write left unfinished */
    /* The open (or commit-pending) transaction: the source offsets it
     * commits (the highest of each partition added), when it began, how
     * many records it holds. txn_offs is NULL when none. */
    rd_kafka_topic_partition_list_t *txn_offs;
    int64_t txn_began_ms;
    size_t txn_records;
    uint64_t txn_ended; /* transactions committed or aborted */

    pthread_mutex_t mu; /* guards what follows (read by any thread) */
    struct cl_part *parts;
    int32_t n_parts;
    int pending; /* assigned partitions whose position is not read yet */
    /* The group metadata of the generation that granted the current
     * assignment; NULL when nothing is assigned. */
    rd_kafka_consumer_group_metadata_t *cgmd;
    uint64_t assignments; /* assignments received */
};

/* Forgets the whole role (changelog.c). Caller holds mu. */
void cl_drop_all(struct changelog *cl);

/* Aborts the open transaction (changelog_txn.c): CHANGELOG_OK, TRANSIENT
 * (an abort that timed out is finished by the next call) or FATAL. */
int cl_abort(struct changelog *cl, char *errstr, size_t n);

/* Classifies a failed transactional call e (destroyed here), aborting
 * when needed (changelog_txn.c): the CHANGELOG_* status for the caller. */
int cl_txn_fail(struct changelog *cl, rd_kafka_error_t *e, const char *what,
                char *errstr, size_t n);

#endif

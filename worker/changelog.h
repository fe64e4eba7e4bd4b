/* changelog.h: the changelog writer of the memory and file modes
 * (schemas/README.md §4 "The changelog").
 *
 * Every memory/file worker applies every partition of EDR_TOPIC itself,
 * but exactly one of them writes a partition's changes to the compacted
 * topic EDR_CHANGELOG_TOPIC. The role is decided by Kafka: the workers
 * join the consumer group "<EDR_GROUP_ID>.changelog", used for nothing
 * else, subscribed to EDR_TOPIC only to receive an assignment (the
 * assigned partitions are paused at once, so no record is ever fetched
 * through it). For the partitions it owns, a worker writes each applied
 * batch in ONE Kafka transaction: the changelog records (same partition
 * number as the source event) plus, with
 * rd_kafka_send_offsets_to_transaction(), the source topic's next offsets
 * of those partitions committed for that group. The group metadata sent
 * is the one of the generation that granted the ownership (taken in the
 * rebalance callback), so after any later rebalance the group coordinator
 * rejects the offsets (KIP-447: ILLEGAL_GENERATION / UNKNOWN_MEMBER_ID)
 * and the transaction aborts: a zombie writes nothing that a
 * read_committed reader sees. The ownership group uses the eager "range"
 * assignor (forced) so that every generation change reaches the
 * rebalance callback.
 *
 * Records: key = the connection key (64 lowercase hex), value =
 * {"counter_party_id","counter_party_address","query_checksum",
 * "policy_checksum","edr": stored entry} for a put, NULL (a tombstone)
 * for a delete. Nothing else is ever written to the topic. Each record
 * carries the header "edr-source-offset": the source topic's next offset
 * of its partition in the batch that wrote it (decimal). Restore uses it
 * only when the group's committed offsets are gone (a consumer group's
 * offsets expire after offsets.retention.minutes without members, while
 * the compacted changelog stays): the highest one is never past the true
 * position, so the fallback replays a little more, never less.
 *
 * Handover: when a worker gains a partition, changelog_poll() reads the
 * offset the previous owner committed (read_committed, so a pending
 * transaction of the previous owner is waited for) before the partition
 * counts as owned; changelog_committed() returns it (c). The changelog of
 * that partition reflects the source up to c, so the caller must make the
 * changelog catch up: if its own applied position q is past c, the changes
 * of [c, q) were applied here before this worker had the role and are in
 * no changelog yet. Correct and idempotent: re-read source [c, q) and, in
 * one changelog_write with offset q, write for every connection those
 * events touched its current state (a put of the stored entry, or a
 * tombstone when absent). If q <= c, write nothing for the partition until
 * the worker's position passes c.
 *
 * Threads: one thread (the Kafka loop) calls changelog_open, _poll,
 * _write and _close; changelog_owned, _committed, _assignments and _pending may
 * be called from any thread. The rebalance callback runs inside
 * changelog_poll() on the caller's thread and does no network wait.
 * changelog_poll() must be called more often than max.poll.interval.ms
 * (librdkafka default 300 s), else the worker leaves the ownership group.
 *
 * Errors: statuses below, details in the caller's errstr (topic names and
 * broker reasons only, never record contents). No logging. */
#ifndef EDR_WORKER_CHANGELOG_H
#define EDR_WORKER_CHANGELOG_H

#include "schemas/edr_key.h"
#include "stores/store.h"

#include <stddef.h>
#include <stdint.h>

#define CHANGELOG_HEADER_POSITION "edr-source-offset"

enum changelog_status {
    CHANGELOG_OK = 0,
    /* This worker lost the writer role (a rebalance it has not seen yet:
     * a zombie): the transaction was aborted, nothing is visible. Drop the
     * batch's changelog work; never retry it as is. Ownership is cleared
     * until the next assignment. */
    CHANGELOG_FENCED = -1,
    /* Broker unreachable, coordinator moving, timeout: nothing visible
     * (or, after a commit timeout, possibly all of it). Poll, back off and
     * write the same batch again (records are idempotent: a put or a
     * tombstone of the latest value). */
    CHANGELOG_TRANSIENT = -2,
    /* The writer is unusable (its transactional.id was taken over by
     * another process, authorization, misconfiguration): close it. */
    CHANGELOG_FATAL = -3,
    /* changelog_restore only: the callback stopped the restore. */
    CHANGELOG_STOPPED = -4,
};

/* Settings; every pointer is borrowed for the call (copied when kept). */
struct changelog_conf {
    const char *brokers;         /* EDR_KAFKA_BROKERS */
    const char *source_topic;    /* EDR_TOPIC */
    const char *changelog_topic; /* EDR_CHANGELOG_TOPIC */
    const char *group_id;        /* EDR_GROUP_ID; the ownership group is
                                  * "<group_id>.changelog" */
    const char *worker_id;       /* EDR_WORKER_ID; transactional.id is
                                  * "<group_id>.changelog.<worker_id>" */
    /* -X "name=value" librdkafka properties, applied to both clients
     * before the module's own (which win: transactional.id, group.id,
     * isolation.level, the assignor, auto commit off). May be NULL. */
    char *const *kafka_props;
    size_t n_kafka_props;
    /* Bound of each blocking Kafka call in open/write/poll; 0: 10000. */
    int op_timeout_ms;
};

/* One change of the store, to be written as one changelog record. */
struct changelog_change {
    int32_t partition;  /* partition of the source event */
    struct edr_key key; /* borrowed */
    /* The stored entry (compact JSON object text) after a put; NULL for a
     * delete (the record is a tombstone). Borrowed. */
    const char *entry_json;
    size_t entry_len;
};

struct changelog;

/* Opens the writer: the transactional producer (init_transactions,
 * bounded by op_timeout_ms) and the ownership consumer (subscribed, joins
 * on the next changelog_poll()). *out = the handle on CHANGELOG_OK;
 * TRANSIENT when the broker did not answer, FATAL on a bad setting. */
int changelog_open(const struct changelog_conf *conf, struct changelog **out,
                   char *errstr, size_t n);

/* 1 when this worker is the writer of partition p now (assigned, and its
 * committed position read), else 0. Any thread. */
int changelog_owned(struct changelog *cl, int32_t p);

/* The source topic's next offset that the changelog of p reflected when
 * this worker gained p (the previous owner's commit); -1 when nothing was
 * ever committed for p or p is not owned. Any thread. */
int64_t changelog_committed(struct changelog *cl, int32_t p);

/* How many assignments of the ownership group this worker received (each
 * rebalance is one, possibly empty), and how many assigned partitions
 * still wait for their committed position: for tests and metrics. Any
 * thread. */
uint64_t changelog_assignments(struct changelog *cl);
int changelog_pending(struct changelog *cl);

/* Serves the ownership consumer (group protocol, rebalance callback),
 * the producer's events, and reads the committed positions of newly
 * assigned partitions (one blocking OffsetFetch, bounded by op_timeout_ms,
 * only after an assignment). CHANGELOG_OK; TRANSIENT when that read
 * failed (the partitions stay unowned; the next poll tries again); FATAL
 * when the producer hit a fatal error. */
int changelog_poll(struct changelog *cl, char *errstr, size_t n);

/* After a FATAL: the producer's fatal error code (an rd_kafka_resp_err_t
 * from rd_kafka_fatal_error), or RD_KAFKA_RESP_ERR_NO_ERROR when the
 * producer is fine (the FATAL came from elsewhere: memory, a caller bug).
 * Only a fatal error other than fencing (PRODUCER_FENCED,
 * INVALID_PRODUCER_EPOCH: another process with this transactional.id) can
 * be cured by a new writer. */
int changelog_fatal_code(struct changelog *cl);

/* Writes the changes of one applied batch, and commits the source topic's
 * next offsets src[0..n_src) for the ownership group, in one transaction.
 * Every change's partition must have its entry in src (else FATAL: a
 * caller bug; the offset commit is what fences a zombie, so records never
 * go out without it). Only changes and offsets of partitions owned at the
 * call are written; the rest are skipped (*written, may be NULL, = how many
 * records went out). Nothing owned: CHANGELOG_OK without a transaction. Blocks
 * up to a few op_timeout_ms. Statuses above; on any error nothing of this call
 * is visible to read_committed readers, except after a TRANSIENT commit
 * timeout, which the next call resolves first. */
int changelog_write(struct changelog *cl, const struct changelog_change *ch,
                    size_t n_ch, const struct store_offset *src, size_t n_src,
                    size_t *written, char *errstr, size_t n);

/* Leaves the ownership group and closes both clients (an open transaction
 * is aborted). NULL is fine. */
void changelog_close(struct changelog *cl);

/* ---- record format, shared with changelog_restore ------------------- */

/* The record value of a put: malloc'd NUL-terminated text in *out
 * (length *len, without the NUL). 0, or
 * -1 when out of memory or entry_json is not one JSON object. */
int changelog_value_encode(const struct changelog_change *ch, char **out,
                           size_t *len);

/* A decoded record value. The key fields and entry_json point into the
 * buffer given to changelog_value_decode(), which rewrites it in place;
 * transfer_id is malloc'd (changelog_value_clear frees it). */
struct changelog_value {
    struct edr_key key;
    const char *entry_json; /* the stored entry, verbatim */
    size_t entry_len;
    char *transfer_id; /* the entry's transferProcessId */
};

/* Decodes the value in buf[0..len) (rewritten in place) and checks that
 * it is a changelog value: the four fields (non-empty strings) give the
 * record key `key` (64 hex), "edr" is an object with a non-empty string
 * transferProcessId. 0, or -1 with a reason in errstr (nothing to free).
 * Any thread. */
int changelog_value_decode(char *buf, size_t len, const char *key,
                           size_t key_len, struct changelog_value *out,
                           char *errstr, size_t n);

/* Frees what changelog_value_decode allocated; the value may be zeroed. */
void changelog_value_clear(struct changelog_value *v);

#endif

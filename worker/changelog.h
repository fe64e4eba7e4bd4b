/* changelog.h: the changelog writer of the memory and file modes
 * (schemas/README.md §4 "The changelog").
 *
 * Every memory/file worker applies every partition of EDR_TOPIC itself,
 * but exactly one of them writes a partition's changes to the compacted
 * topic EDR_CHANGELOG_TOPIC. The role is decided by Kafka: the workers
 * join the consumer group "<EDR_GROUP_ID>.changelog", used for nothing
 * else, subscribed to EDR_TOPIC only to receive an assignment (the
 * assigned partitions are paused at once, so no record is ever fetched
 * through it). For the partitions it owns, a worker writes the changes of
 * its applied batches into one Kafka transaction that spans many batches
 * (changelog_add; as Kafka Streams' commit.interval.ms, the caller commits
 * it every so often, at most every batch: changelog_commit): the
 * changelog records (same partition number as the source event) plus,
 * with rd_kafka_send_offsets_to_transaction() at commit, the source
 * topic's next offsets of those partitions (the highest added) committed
 * for that group. Records and offsets become visible together or not at
 * all, so what a read_committed reader sees always reflects exactly the
 * committed offsets. The group metadata sent
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
 * A revoke of the role (inside changelog_poll) commits the open
 * transaction first, with the generation that granted it.
 *
 * An abort (TRANSIENT, or a FENCED zombie) drops the WHOLE open
 * transaction, the records of earlier changelog_add calls included. After
 * a TRANSIENT one the caller treats its owned partitions like newly gained
 * ones: changelog_committed() is then its own last commit (c), and the
 * catch-up above rewrites [c, q).
 *
 * Threads: one thread (the Kafka loop) calls changelog_open, _poll,
 * _add, _commit, _write, _txn_* and _close; changelog_owned, _committed,
 * _assignments and _pending may be called from any thread. The rebalance
 * callback runs inside changelog_poll() on the caller's thread and does no
 * network wait. changelog_poll() must be called more often than
 * max.poll.interval.ms (librdkafka default 300 s), else the worker leaves the
 * ownership group.
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

/* The source topic's next offset that the changelog of p reflects as far
 * as this worker knows: the previous owner's commit when this worker
 * gained p, then this worker's own commits; -1 when nothing was ever
 * committed for p or p is not owned. Any thread. */
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

/* Adds the changes of one applied batch to the open transaction (begun
 * here when none is open), with the source topic's next offsets
 * src[0..n_src) to be committed with it. Nothing is visible until
 * changelog_commit(). Only changes and offsets of partitions owned at the
 * call are added (*written, may be NULL, = how many records). Nothing
 * owned: CHANGELOG_OK, no transaction begun. Every change's partition
 * must have its entry in src (else FATAL). On any error the whole open
 * transaction is aborted (see the header comment: the caller rewrites). */
int changelog_add(struct changelog *cl, const struct changelog_change *ch,
                  size_t n_ch, const struct store_offset *src, size_t n_src,
                  size_t *written, char *errstr, size_t n);

/* Commits the open transaction (send_offsets_to_transaction, then the
 * commit); CHANGELOG_OK at once when none is open (after finishing what an
 * earlier call left pending). Blocks up to a few op_timeout_ms. Statuses
 * above; on FENCED and on TRANSIENT (other than a commit timeout, which
 * the next call resolves first) nothing of the transaction is visible. */
int changelog_commit(struct changelog *cl, char *errstr, size_t n);

/* The open transaction: its age in ms (-1: none open), its records (0:
 * none), and how many transactions ended (committed or aborted) so far. */
int64_t changelog_txn_age_ms(const struct changelog *cl);
size_t changelog_txn_records(const struct changelog *cl);
uint64_t changelog_txn_ended(const struct changelog *cl);

/* changelog_add then changelog_commit: the changes of one batch, and the
 * source topic's next offsets src[0..n_src), in one transaction (with
 * whatever an earlier changelog_add left open).
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

/* After CHANGELOG_FATAL: 1 when the producer's fatal error is one a new
 * producer clears, so the caller should close and reopen the writer (a
 * broker restarted mid-transaction can leave librdkafka's transaction
 * manager in a fatal INVALID_TXN_STATE). 0 when it is not: a newer
 * producer with this worker's transactional.id fenced it (a duplicate
 * EDR_WORKER_ID, or this process is the zombie), or the failure was not
 * the producer's (out of memory, a caller bug). */
int changelog_recoverable(struct changelog *cl);

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

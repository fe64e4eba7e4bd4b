/* ingest_int.h: what the files of the Kafka loop share (worker/ingest*.c,
 * worker/decode_pool.c); not for use outside them.
 *
 *   ingest.c           the loop: open, tick, fill, process, close
 *   ingest_parts.c     partition state, pauses for outages, rebalances
 *                      (store offsets read outside the callback)
 *   ingest_consumer.c  the consumer's configuration and callbacks
 *   ingest_fill.c      filling a batch from the consumer queue
 *   decode_pool.c      the second decoding thread
 *   ingest_dlq.c       sending a batch's rejected events to the DLQ,
 *                      holding a partition whose copy fails
 *   ingest_outage.c    what is logged while a dependency fails
 *   ingest_batch.c     store batches: building, fencing, retrying
 *   ingest_progress.c  lag, progress lines and gauges
 *   ingest_catchup.c   the --exit-when-caught-up finish line (test build)
 *   ingest_gaps.c      state gaps: never consume across offsets the log
 *                      no longer holds (schemas/README.md §4)
 *   ingest_changelog.c the changelog topic: check at start, writes after
 *                      each applied batch, the handover catch-up
 *   ingest_restore.c   restoring an empty state from the changelog
 *
 * Everything here runs on the ingest thread (librdkafka calls its
 * callbacks from rd_kafka_consume_queue on that thread), except the
 * decoding thread of decode_pool.c, which touches only the items it is
 * handed. */
#ifndef EDR_WORKER_INGEST_INT_H
#define EDR_WORKER_INGEST_INT_H

#include "schemas/event.h"
#include "stores/store.h"
#include "worker/backoff.h"
#include "worker/decode_pool.h"
#include "worker/ingest.h"
#include "worker/ingest_outage.h"
#include "worker/state_gaps.h"

#include <librdkafka/rdkafka.h>
#include <stddef.h>
#include <stdint.h>

#define BATCH_MAX 2000
#define BATCH_WAIT_MS 5
#define IDLE_WAIT_MS 100
#define LAG_EVERY_S 1.0
#define PROGRESS_EVERY_S 10.0
#define METADATA_EVERY_S 5.0
#define COMMIT_EVERY_S 0.5
#define RETRY_MIN_MS 100
#define RETRY_MAX_MS 5000

enum { ROUND_OK = 0, ROUND_STOPPED = 1, ROUND_FATAL = -1 };

struct part {
    int known; /* seen in metadata or an assignment */
    int assigned;
    int paused;
    int64_t expect;    /* next offset expected from the fetcher, -1 any */
    int64_t next;      /* next offset after what the store holds, -1 unknown */
    int64_t low;       /* low watermark when next is unknown, -1 unknown */
    int64_t target;    /* exit-when-caught-up: high watermark at start */
    int pending;       /* group mode: assigned, paused, waiting to be sought
                        * to the store's offset (ingest_seek_pending) */
    int held;          /* paused at a failed dead-letter copy (ingest_dlq) */
    double hold_until; /* ingest_now() when it is resumed */
    struct backoff hold_b;    /* its retries; min_ms 0 until the first hold */
    int gap;                  /* paused: the state needs offsets that retention
                               * deleted (ingest_gaps.c); never resumed */
    int64_t gap_from, gap_to; /* its range [from, to), when gap */
    int reset;                /* the fetcher stopped at auto.offset.reset=error:
                               * to be re-checked and restarted (ingest_gaps.c) */
    int64_t lag;
};

struct item {
    rd_kafka_message_t *msg;
    struct event ev;
    struct store_op op;
    int decoded;           /* ev holds a decoded event to clear */
    int nomem;             /* decoding ran out of memory: retry, not bad */
    int bad;               /* to the dead-letter topic */
    int dropped;           /* its partition was revoked: not ours to apply */
    int applied;           /* applied alone (after a rejected batch) */
    int dlq_state;         /* enum dlq_state */
    int dlq_without_value; /* the copy refused as too large: no value */
    enum event_error err;
    char reason[320];
};
struct changelog;

/* Changelog state of one partition (ingest_changelog.c). */
struct cl_part {
    int state;         /* enum cl_state */
    int64_t committed; /* CL_WAIT: the previous owner's position */
};

struct ingest {
    const struct config *cfg;
    struct store *st;
    volatile sig_atomic_t *stop;
    const struct ingest_opts *opts;
    int group_mode;

    rd_kafka_t *rk;
    rd_kafka_queue_t *q;
    rd_kafka_topic_t *rkt; /* for metadata requests */
    struct dlq *dlq;

    struct part *parts;
    int32_t n_parts; /* parts[0..n_parts-1], indexed by partition id */

    struct item *items;
    size_t n_items;
    int count_each_batch; /* count() is O(1): refresh the gauge per batch */
    struct store_op *ops;
    struct store_offset *offs;
    size_t offs_cap;

    struct decode_pool dec;
    struct store_offset *saved; /* offsets from the store at start */
    size_t n_saved;
    struct state_gaps *gaps; /* read by lookups, /readyz, /metrics */
    int gaps_recheck;        /* re-check every partition (ingest_gaps.c) */
    int restore_pending;    /* a gap the changelog may cover (ingest_restore) */
    double restore_after;   /* not before this ingest_now() */
    double gaps_recheck_at; /* not before this ingest_now() */

    int outage; /* store or dead-letter outage: partitions paused */
    double outage_start;
    struct outage_log store_log; /* what was logged of a store outage */
    struct outage_log dlq_log;   /* and of a dead-letter outage */
    int fatal;                   /* set from a callback: exit 3 */
    int kafka_down;              /* all brokers down reported */
    int joined;                  /* group mode: an assignment was received */
    unsigned assign_gen;         /* group mode: bumped by every assignment */
    int n_pending;               /* partitions with pending set */
    int targets_ready;

    struct changelog *cl; /* NULL when EDR_CHANGELOG_TOPIC=off */
    struct cl_part *clp;  /* clp[0..n_clp-1], by partition id */
    int32_t n_clp;
    uint64_t cl_assign_seen; /* changelog_assignments() last seen */
    double cl_warn_until;    /* rate limit of changelog warnings */
    uint64_t cl_written;     /* changelog records written */
    double cl_retry_at;      /* no handover catch-up before this */
    uint64_t cl_commits;     /* changelog transactions committed */
    double cl_commit_s;      /* time spent committing them */
    int cl_created; /* this start created the changelog topic (until the
                       start-time restore) */

    uint64_t applied; /* events applied (good ones) */
    uint64_t dead;    /* events dead-lettered */
    uint64_t applied_at_progress;
    double last_progress, last_lag, last_meta, last_commit;
    int64_t lag_total;
    double warn_until; /* rate limit of consumer error lines */
};

/* ---- ingest_parts.c ---- */

/* The state of partition id; create=1 adds it (and marks it known).
 * NULL when unknown, or out of memory. */
struct part *ingest_part(struct ingest *in, int32_t id, int create);
/* The next offset the store saved for partition id, or -1. */
int64_t ingest_saved_offset(const struct ingest *in, int32_t id);
/* Pauses (pause=1) or resumes every assigned partition. */
void ingest_set_paused(struct ingest *in, int pause);
/* Loads the store's offsets into in->saved, retrying transient failures.
 * 0, or ROUND_STOPPED / ROUND_FATAL. */
int ingest_load_offsets(struct ingest *in);
/* Group mode: librdkafka's rebalance callback (opaque is the ingest). */
void ingest_rebalance_cb(rd_kafka_t *rk, rd_kafka_resp_err_t err,
                         rd_kafka_topic_partition_list_t *l, void *opaque);
/* Group mode: seeks the partitions assigned since the last call to the
 * store's offsets and resumes them (unless an outage holds everything).
 * The rebalance callback does no store work (a store outage inside
 * librdkafka's poll would overrun max.poll.interval.ms); this runs on the
 * loop, retrying the store while serving the consumer. 0, or
 * ROUND_STOPPED / ROUND_FATAL. */
int ingest_seek_pending(struct ingest *in);
/* Assign mode: assigns the partitions of the topic not assigned yet. */
void ingest_assign_new(struct ingest *in);
/* A store or dead-letter outage begins (pause everything; the caller
 * logs through its outage_log) or ends (resume, log the recovery). */
void ingest_outage_begin(struct ingest *in);
void ingest_outage_end(struct ingest *in, const char *what, unsigned retries);

/* ---- ingest_consumer.c ---- */

/* Creates in->rk, in->q and in->rkt and subscribes (group mode). 0, or -1
 * with errstr. */
int ingest_consumer_open(struct ingest *in, char *errstr, size_t errstr_size);

/* ---- ingest_fill.c ---- */

/* Fills in->items from the consumer queue; returns in->n_items. */
size_t ingest_fill_batch(struct ingest *in);
/* Waits up to ms serving callbacks (while paused for an outage). */
void ingest_wait_serving(struct ingest *in, unsigned ms);
/* Frees the messages and decoded events of the batch; empties it. */
void ingest_clear_items(struct ingest *in);

/* ---- ingest_dlq.c ---- */

/* Copies the batch's rejected events to the dead-letter topic, waiting
 * for the acknowledgements; a partition whose copy failed is held at that
 * event (its items from there on are dropped from the batch). ROUND_OK:
 * the rest of the batch can be applied. */
int ingest_send_dead_letters(struct ingest *in);
/* Holds partition id at offset `at` (why: for the log line): its items
 * from there on leave the batch, the consumer goes back to `at` and pauses
 * it until a backoff of its own has passed (ingest_release_holds). The
 * events before `at` and the other partitions go on. */
void ingest_hold_partition(struct ingest *in, int32_t id, int64_t at,
                           const char *why);
/* Resumes the held partitions whose backoff has passed. */
void ingest_release_holds(struct ingest *in, double now);

/* ---- ingest_batch.c ---- */

/* Decodes, dead-letters and applies the batch in in->items, with its
 * offsets. ROUND_OK, ROUND_STOPPED or ROUND_FATAL. */
int ingest_process_batch(struct ingest *in);

/* ---- ingest_gaps.c ---- */

/* The next offset partition id's state needs from Kafka: what the fetcher
 * is expected to deliver next, else the saved (or restored) offset, else 0
 * (nothing saved: the state needs the log from its start). */
int64_t ingest_gap_needed(const struct ingest *in, int32_t id);
/* Checks partition id, whose state needs `needed` next, against the log
 * start (a watermark query, blocking up to a few seconds). Returns the
 * offset to consume from: `needed` without a gap; the log start when
 * EDR_ACCEPT_GAP accepted one (logged at error level); with an unaccepted
 * gap, `needed` and the partition's gap flag set (logged at error level,
 * recorded in in->gaps): the caller keeps it paused. When the log start
 * cannot be read, `needed` and a later re-check is scheduled
 * (auto.offset.reset=error guards the fetch meanwhile). */
int64_t ingest_gap_check(struct ingest *in, int32_t id, int64_t needed);
/* Assign mode: the start offset of each partition of l (saved or 0,
 * checked; the gap flags set). */
void ingest_gaps_start_offsets(struct ingest *in,
                               rd_kafka_topic_partition_list_t *l);
/* Pauses the assigned partitions with a gap that are not paused yet. */
void ingest_gaps_pause(struct ingest *in);
/* A consume error RD_KAFKA_RESP_ERR__AUTO_OFFSET_RESET of m's partition:
 * its fetcher stopped; it is re-checked and restarted on the loop. */
void ingest_gaps_on_reset(struct ingest *in, const rd_kafka_message_t *m);
/* Re-checks every assigned partition now (after an outage): pauses those
 * with a gap, moves those with an accepted one to the log start,
 * restarts those stopped at an offset reset. */
void ingest_gaps_recheck(struct ingest *in);
/* On the loop: runs ingest_gaps_recheck when one is scheduled (after a
 * broker outage, an offset reset, a failed watermark query) and the
 * brokers are reachable, at most once a second. */
void ingest_gaps_tick(struct ingest *in, double now);
/* At start: logs a warning when the topic's retention can delete events
 * and no changelog protects the state (the postgres store, or memory and
 * file with EDR_CHANGELOG_TOPIC=off). Blocks a few seconds at most. */
void ingest_gaps_warn_retention(struct ingest *in);

/* ---- ingest_progress.c ---- */

/* Refreshes every assigned partition's lag and the lag gauges. */
void ingest_update_lag(struct ingest *in);
/* Logs a progress line and refreshes the entries gauge. */
void ingest_progress(struct ingest *in, double now);

/* ---- ingest_changelog.c ---- */

/* ingest_changelog_start: an invalid setting (exit 2). */
#define ROUND_CONFIG (-2)

/* At start (memory/file modes): reads the source's retention (gauges, the
 * warning when nothing protects the state), and with the changelog on
 * makes sure its topic exists, retrying transient failures. ROUND_OK,
 * ROUND_STOPPED, ROUND_CONFIG. */
int ingest_changelog_check(struct ingest *in);
/* Opens the writer (in->cl), retrying transient failures. ROUND_OK,
 * ROUND_STOPPED, ROUND_CONFIG. */
int ingest_changelog_open(struct ingest *in);
/* Serves the ownership group and runs the handover catch-up of newly
 * owned partitions (changelog.h). Sets in->fatal on a fatal error. Call
 * every round and during backoffs; no-op without a changelog. */
void ingest_changelog_poll(struct ingest *in);
/* After a successful apply of in->items: adds the current state of
 * every key the batch touched in the partitions this worker owns, with
 * their next offsets, to the open changelog transaction, and commits it
 * when EDR_CHANGELOG_COMMIT_MS has passed. ROUND_OK (also when fenced or
 * when the transaction failed: the partitions are then caught up),
 * ROUND_FATAL. */
int ingest_changelog_write(struct ingest *in);
void ingest_changelog_close(struct ingest *in);

/* ---- ingest_restore.c ---- */

/* With the changelog on, restores an empty state (memory store; a file
 * store whose file was missing) from it and sets in->saved to the
 * positions it reflects. Call after ingest_load_offsets. ROUND_OK,
 * ROUND_STOPPED, ROUND_FATAL. */
int ingest_restore(struct ingest *in);
/* On the loop, when in->restore_pending: a position fell out of the log
 * while running; replaces the state with the changelog's when it covers
 * the gap (as at start), then restarts every partition at the restored
 * positions. ROUND_OK (also when declined), ROUND_FATAL. */
int ingest_restore_running(struct ingest *in);

/* ---- ingest_catchup.c (EDR_TEST_HOOKS builds only) ---- */

#ifdef EDR_TEST_HOOKS
/* 1 when every partition is applied up to its high watermark at start. */
int ingest_caught_up(struct ingest *in);
/* Prints the {"applied": ...} line of --exit-when-caught-up on stdout. */
void ingest_report_caught_up(struct ingest *in);
#endif

#endif

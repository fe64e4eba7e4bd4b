/* decode_pool.h: a second thread that decodes a batch of the Kafka loop
 * together with the ingest thread (worker/ingest_int.h).
 *
 * Both threads take DECODE_CHUNK items at a time until none is left, so
 * neither waits long for the other when the scheduler delays one.
 * Decoding is most of the CPU time per event, and it needs no shared
 * state (schemas/event.h, handlers/). (Decoding the next batch while
 * storing one was tried: no measurable gain for the file or postgres
 * store, slower for memory.) Only the ingest thread calls these. */
#ifndef EDR_WORKER_DECODE_POOL_H
#define EDR_WORKER_DECODE_POOL_H

#include <pthread.h>
#include <stdatomic.h>
#include <stddef.h>

/* Batches at least this big are decoded by two threads. */
#define PARALLEL_DECODE_MIN 64
/* Items a decoding thread takes at a time from a shared batch. */
#define DECODE_CHUNK 16

struct item;

struct decode_pool {
    pthread_t thread;
    pthread_mutex_t mu;
    pthread_cond_t cv;
    struct item *items; /* the batch posted; set under mu */
    size_t n;
    atomic_size_t next; /* first item not taken yet */
    int posted;         /* the ingest thread waits for has_work == 0 */
    int has_work;       /* a batch is posted to the thread */
    int quit;
    int inited;
    int started;
};

/* Starts the thread; if it cannot start, decoding runs on the caller
 * alone. d must be zeroed. */
void decode_pool_start(struct decode_pool *d);
/* Stops and joins the thread. A pool never started is fine. */
void decode_pool_stop(struct decode_pool *d);
/* Starts decoding items[0..n) on the thread (if it runs and the batch is
 * worth it); decode_pool_finish completes it. One batch at a time; the
 * items are borrowed until decode_pool_finish returns. */
void decode_pool_post(struct decode_pool *d, struct item *items, size_t n);
/* Decodes what the thread has not taken and waits for its part: every
 * item posted is decoded afterwards (decoded or bad set). */
void decode_pool_finish(struct decode_pool *d);

#endif

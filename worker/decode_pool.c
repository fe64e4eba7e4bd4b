/* decode_pool.c: see decode_pool.h. An item is decoded by
 * schemas/event.h and turned into its store operation by handlers/; the
 * ones either rejects are marked bad, with the reason for the
 * dead-letter copy. */
#include "worker/decode_pool.h"

#include "handlers/handler.h"
#include "worker/ingest_int.h"

#include <stdio.h>

static void decode_item(struct item *it)
{
    const rd_kafka_message_t *m = it->msg;
    it->err = event_decode(&it->ev, m->payload ? m->payload : "", m->len,
                           it->reason, sizeof(it->reason));
    if (it->err == EVENT_ERR_NOMEM) {
        it->nomem = 1; /* transient: not the event's fault, never a DLQ */
        return;
    }
    if (it->err != EVENT_OK) {
        it->bad = 1;
        if (!it->reason[0])
            snprintf(it->reason, sizeof(it->reason), "invalid event (%s)",
                     event_error_class(it->err));
        return;
    }
    it->decoded = 1;
    if (handler_event_to_op(&it->ev, &it->op) != 0) {
        it->bad = 1;
        it->err = EVENT_ERR_SCHEMA;
        snprintf(it->reason, sizeof(it->reason),
                 "type: no store operation for this event");
    }
}

/* Decodes chunks of items[0..n) until none is left untaken. */
static void decode_share(struct decode_pool *d, struct item *items, size_t n)
{
    for (;;) {
        size_t i = atomic_fetch_add(&d->next, DECODE_CHUNK);
        if (i >= n)
            return;
        size_t end = n - i > DECODE_CHUNK ? i + DECODE_CHUNK : n;
        for (; i < end; i++)
            decode_item(&items[i]);
    }
}

static void *decoder_main(void *arg)
{
    struct decode_pool *d = arg;
    pthread_mutex_lock(&d->mu);
    for (;;) {
        while (!d->has_work && !d->quit)
            pthread_cond_wait(&d->cv, &d->mu);
        if (d->quit)
            break;
        struct item *items = d->items;
        size_t n = d->n;
        pthread_mutex_unlock(&d->mu);
        decode_share(d, items, n);
        pthread_mutex_lock(&d->mu);
        d->has_work = 0;
        pthread_cond_broadcast(&d->cv);
    }
    pthread_mutex_unlock(&d->mu);
    return NULL;
}

void decode_pool_start(struct decode_pool *d)
{
    pthread_mutex_init(&d->mu, NULL);
    pthread_cond_init(&d->cv, NULL);
    d->inited = 1;
    d->started = pthread_create(&d->thread, NULL, decoder_main, d) == 0;
}

void decode_pool_stop(struct decode_pool *d)
{
    if (!d->inited)
        return;
    if (d->started) {
        pthread_mutex_lock(&d->mu);
        d->quit = 1;
        pthread_cond_broadcast(&d->cv);
        pthread_mutex_unlock(&d->mu);
        pthread_join(d->thread, NULL);
        d->started = 0;
    }
    pthread_cond_destroy(&d->cv);
    pthread_mutex_destroy(&d->mu);
}

/* Starts decoding items[0..n) on the decoder thread (if it runs and the
 * batch is worth it); decode_pool_finish completes it. One batch at a time. */
void decode_pool_post(struct decode_pool *d, struct item *items, size_t n)
{
    d->items = items;
    d->n = n;
    atomic_store(&d->next, 0);
    d->posted = d->started && n >= PARALLEL_DECODE_MIN;
    if (d->posted) {
        pthread_mutex_lock(&d->mu);
        d->has_work = 1;
        pthread_cond_broadcast(&d->cv);
        pthread_mutex_unlock(&d->mu);
    }
}

/* Decodes what the decoder thread has not taken of the posted batch and
 * waits for the thread's part: afterwards every item is decoded. */
void decode_pool_finish(struct decode_pool *d)
{
    decode_share(d, d->items, d->n);
    if (d->posted) {
        pthread_mutex_lock(&d->mu);
        while (d->has_work)
            pthread_cond_wait(&d->cv, &d->mu);
        pthread_mutex_unlock(&d->mu);
        d->posted = 0;
    }
}

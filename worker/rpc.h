/* rpc.h: the Redis request/reply responder (schemas/README.md §2).
 *
 * rpc_server_start() runs cfg->rpc_threads threads, each with its own
 * hiredis connection, moving requests from <rpc_prefix>:requests onto
 * <rpc_prefix>:inflight:<worker_id> (BLMOVE, the reliable-queue pattern)
 * and answering from the store concurrently with ingest
 * (worker/rpc_ops.c answers, worker/rpc_reply.c delivers and removes the
 * request from the in-flight list). A keeper thread (rpc_keeper.c) keeps
 * the heartbeat <rpc_prefix>:worker:<worker_id> and puts the in-flight
 * requests of dead workers back on the queue, so a request survives its
 * worker's death (a client may then see two replies with one id).
 * Requests that wait (min_positions, wait_ms) run on waiter threads
 * (rpc_wait.c). Redis outages are retried with backoff inside the
 * threads; they never stop the worker. Worker ids must be unique per
 * live worker: two live workers with one id share an in-flight list. */
#ifndef EDR_WORKER_RPC_H
#define EDR_WORKER_RPC_H

#include "stores/store.h"
#include "worker/config.h"

#include <stddef.h>

struct rpc_server;

/* Starts the responder threads. cfg and st are borrowed and must outlive
 * the server. NULL with errstr on a setting error (bad URL, more than
 * CONFIG_RPC_THREADS_MAX threads). */
struct rpc_server *rpc_server_start(const struct config *cfg, struct store *st,
                                    char *errstr, size_t errstr_size);

/* Counters since start; any thread. */
struct rpc_server_stats {
    unsigned long long answered;         /* replies sent (or attempted) */
    unsigned long long expired;          /* dropped past their deadline */
    unsigned long long unanswerable;     /* malformed, no readable reply_to */
    unsigned long long refused;          /* reply_to not <prefix>:reply:*, or
                                            not a list: nothing written */
    unsigned long long connect_failures; /* failed connects, all threads */
    unsigned long long losses;   /* connections dropped after an I/O error
                                    or a refused BLMOVE (NOAUTH, LOADING) */
    unsigned long long requeued; /* in-flight requests of dead workers
                                    given back to the queue by this one */
};
void rpc_server_get_stats(const struct rpc_server *srv,
                          struct rpc_server_stats *out);

/* 1 while at least one responder thread is connected to Redis. */
int rpc_server_connected(const struct rpc_server *srv);

/* Stops taking requests, lets each thread finish the request in hand,
 * joins the threads and frees the server. NULL is ok. */
void rpc_server_stop(struct rpc_server *srv);

#endif

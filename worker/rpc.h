/* rpc.h: the Redis request/reply responder (schemas/README.md §2).
 *
 * rpc_server_start() runs cfg->rpc_threads threads, each with its own
 * hiredis connection, popping requests from <rpc_prefix>:requests and
 * answering from the store concurrently with ingest. Redis outages are
 * retried with backoff inside the threads; they never stop the worker. */
#ifndef EDR_WORKER_RPC_H
#define EDR_WORKER_RPC_H

#include "stores/store.h"
#include "worker/config.h"

#include <stddef.h>

struct rpc_server;

/* Starts the responder threads. cfg and st are borrowed and must outlive
 * the server. NULL with errstr on a setting error (bad URL). */
struct rpc_server *rpc_server_start(const struct config *cfg, struct store *st,
                                    char *errstr, size_t errstr_size);

/* 1 while at least one responder thread is connected to Redis. */
int rpc_server_connected(const struct rpc_server *srv);

/* Stops taking requests, lets each thread finish the request in hand,
 * joins the threads and frees the server. NULL is ok. */
void rpc_server_stop(struct rpc_server *srv);

#endif

/* rpc_gaps.h: the state-gap table of the running Kafka loop, as lookups,
 * /readyz and /metrics see it (schemas/README.md §4 "State gaps").
 *
 * The Kafka loop (worker/ingest.c) owns a struct state_gaps and publishes
 * it here for its lifetime; the responder threads (worker/rpc_ops.c), the
 * HTTP server (worker/http.c) and the metrics page read it through these
 * functions. Without a published table there is no gap.
 *
 * Which partition a lookup depends on is decided by the producer's
 * partitioner (the key of §1 with librdkafka's default, but a producer may
 * choose otherwise), so a worker cannot tell which keys a missing range
 * held: while any partition has a gap, every lookup except ping answers
 * state_incomplete, naming every gap. That is the simple safe reading of
 * "every lookup that depends on that partition".
 *
 * Threads: every function may be called from any thread (a read-write
 * lock guards the published pointer). */
#ifndef EDR_WORKER_RPC_GAPS_H
#define EDR_WORKER_RPC_GAPS_H

#include "schemas/reply.h"
#include "schemas/request.h"
#include "worker/state_gaps.h"

#include <stddef.h>

/* Publishes g (borrowed: it must stay valid until replaced), or withdraws
 * the table (NULL), waiting for the readers of the old one: the owner may
 * free it once this returns. The first call also installs the metrics
 * hook (rpc_gaps_prometheus). */
void rpc_gaps_publish(struct state_gaps *g);

/* 1 when req must be refused because the state has a gap: then out holds
 * the error reply (code state_incomplete, the reason naming every gap)
 * and *status is "error". 0 (nothing written) for ping, or without gaps. */
int rpc_gaps_refuse(struct reply_buf *out, const struct request *req,
                    const char **status);

/* The operator text of every gap (state_gaps_describe) into buf (n
 * bytes); "" and 0 when none. Returns the length the text needs. */
size_t rpc_gaps_describe(char *buf, size_t n);

/* Appends edr_state_gap_offsets (state_gaps_prometheus) to *buf; only
 * its HELP and TYPE lines while no table is published. 0, or -1 when out
 * of memory (*buf and *len unchanged). */
int rpc_gaps_prometheus(char **buf, size_t *len);

#endif

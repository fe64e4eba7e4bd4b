/* request.h: decoding of one lookup request (schemas/README.md §2), a JSON
 * object popped from <EDR_RPC_PREFIX>:requests, with yajl's streaming
 * parser.
 *
 * The decoder enforces every rule of the contract. When a request is
 * rejected it still hands back its `id` and `reply_to` if they could be
 * read, so the responder can send an error reply instead of leaving the
 * client waiting. It never reads past the given length and never parses
 * more than REQUEST_MAX_BYTES. */
#ifndef EDR_SCHEMAS_REQUEST_H
#define EDR_SCHEMAS_REQUEST_H

#include "schemas/edr_key.h"

#include <stddef.h>
#include <stdint.h>

#define REQUEST_MAX_BYTES (64 * 1024)
#define REQUEST_ID_MAX 256
#define REQUEST_REPLY_TO_MAX 512
#define REQUEST_LIMIT_DEFAULT 100
#define REQUEST_LIMIT_MAX 1000
#define REQUEST_WAIT_MAX_MS 30000
/* the wait for min_positions when wait_ms is absent (§2, v2) */
#define REQUEST_POSITIONS_WAIT_DEFAULT_MS 5000
/* partitions a min_positions may name */
#define REQUEST_POSITIONS_MAX 1024

enum request_op {
    REQUEST_OP_NONE = 0,
    REQUEST_GET_CONNECTION,     /* "get_connection" */
    REQUEST_GET_TRANSFER_ID,    /* "get_connection_transfer_id" */
    REQUEST_COUNT,              /* "count" */
    REQUEST_LIST,               /* "list_connections" */
    REQUEST_PING,               /* "ping" */
    REQUEST_GET_BY_TRANSFER_ID, /* "get_by_transfer_id" (v2) */
};

/* One member of min_positions: the state must include the event at
 * `offset` of `partition` (so the partition's next offset > offset). */
struct request_position {
    int32_t partition;
    int64_t offset;
};

/* Why a request was rejected. */
enum request_error {
    REQUEST_OK = 0,
    REQUEST_ERR_SIZE,   /* larger than REQUEST_MAX_BYTES, or empty */
    REQUEST_ERR_UTF8,   /* not valid UTF-8 */
    REQUEST_ERR_JSON,   /* not well-formed JSON */
    REQUEST_ERR_SCHEMA, /* JSON, but breaks a rule of the contract */
};

/* A decoded request; every string is owned by it (request_clear frees).
 * Members an op does not use are NULL / zero. */
struct request {
    enum request_op op;
    char *id;       /* also set on error when it could be read */
    char *reply_to; /* also set on error when it could be read */
    /* get_connection, get_connection_transfer_id */
    char *counter_party_id;
    char *counter_party_address;
    char *query_checksum;
    char *policy_checksum;
    /* count, list_connections: NULL when absent (matches everything) */
    char *substring;
    /* list_connections: NULL from the start; limit 1..1000 */
    char *cursor;
    size_t limit;
    /* get_by_transfer_id (required); count, list_connections (optional
     * filter, NULL when absent) */
    char *transfer_process_id;
    /* count, list_connections: optional filters, NULL when absent */
    char *asset_id;
    char *asset_id_prefix;
    /* every op but ping: wait_ms 0..30000 when has_wait */
    int has_wait;
    int64_t wait_ms;
    /* every op but ping: n_positions members of min_positions (a malloc'd
     * array, sorted by partition); has_positions also for {} */
    int has_positions;
    struct request_position *positions;
    size_t n_positions;
    int has_deadline;
    int64_t deadline_ms; /* Unix epoch milliseconds */
};

/* Decodes len bytes at buf into *req (which it initialises). Returns
 * REQUEST_OK, or a request_error with a reason naming the failing member
 * in errstr (e.g. "args.policy_checksum: missing"). On error, req->id and
 * req->reply_to are set when they were read intact, everything else is
 * NULL; call request_clear() in every case. A request larger than
 * REQUEST_MAX_BYTES is rejected; only its first REQUEST_MAX_BYTES are
 * looked at, to find id and reply_to. Any thread; no global state. */
enum request_error request_decode(struct request *req, const void *buf,
                                  size_t len, char *errstr, size_t errstr_size);

/* Frees what *req owns and zeroes it. NULL is ok. */
void request_clear(struct request *req);

/* Borrowed view of the four key fields (get ops only). */
struct edr_key request_key(const struct request *req);

/* Wire name of an op ("get_connection", ...); "invalid" for NONE. */
const char *request_op_name(enum request_op op);

/* 1 when reply_to begins with "<prefix>:reply:" (schemas/README.md §2,
 * v2): only such lists are ever answered, so Redis ACLs can confine
 * clients to their key patterns. 0 otherwise, and for NULL arguments. */
int request_reply_to_allowed(const char *reply_to, const char *prefix);

/* "size", "utf8", "json", "schema". */
const char *request_error_class(enum request_error e);

/* utf8_valid (schemas/utf8.h, the one validator) under its old name, for
 * existing callers; new code calls utf8_valid. */
int request_utf8_valid(const void *s, size_t len, size_t *bad_at);

#endif

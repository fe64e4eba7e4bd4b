/* fuzz_request_decode.c: libFuzzer target for request_decode() and the
 * error reply built from what it could read: the code that takes bytes
 * from the Redis request queue.
 *
 * Besides "no crash, no overread, no leak, no UB" it checks what must hold
 * for every input: a rejected request has a reason; an accepted one has an
 * op, an id and a reply_to within their limits; and the error reply the
 * responder would send for it is one well-formed JSON object whatever
 * bytes the id carried, with a code; and the reply_to prefix rule (v2) is
 * exactly "begins with <prefix>:reply:", never true for the request
 * queue; the v2 members (wait_ms, min_positions, transfer_process_id,
 * the asset filters) are in range, positions sorted and unique.
 * Violations abort(). fuzz_replay_main.c runs the
 * same function over the seed corpus in ctest. */
#include "schemas/reply.h"
#include "schemas/request.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);
int fuzz_verdict(const uint8_t *data, size_t size, char *reason, size_t cap,
                 const char **err_class);

/* For the corpus replay (fuzz_replay_main.c): 1 when the input is
 * accepted, else 0 with the reason and the error class. */
int fuzz_verdict(const uint8_t *data, size_t size, char *reason, size_t cap,
                 const char **err_class)
{
    struct request req;
    enum request_error rc = request_decode(&req, data, size, reason, cap);
    *err_class = request_error_class(rc);
    request_clear(&req);
    return rc == REQUEST_OK;
}

static void check(int ok)
{
    if (!ok)
        abort();
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    struct request req;
    struct reply_buf rb = {0};
    char err[256];

    static const char prefix[] = "edr";
    err[0] = '\0';
    enum request_error rc = request_decode(&req, data, size, err, sizeof(err));
    if (rc == REQUEST_OK) {
        check(req.op != REQUEST_OP_NONE && req.id && req.reply_to);
        check(strlen(req.id) <= REQUEST_ID_MAX);
        check(strlen(req.reply_to) <= REQUEST_REPLY_TO_MAX);
        check(request_reply_to_allowed(req.reply_to, prefix) ==
              (strncmp(req.reply_to, "edr:reply:", 10) == 0));
        check(!request_reply_to_allowed(req.reply_to, "edr:reply") ||
              strncmp(req.reply_to, "edr:reply:reply:", 16) == 0);
        if (req.op == REQUEST_LIST)
            check(req.limit >= 1 && req.limit <= REQUEST_LIMIT_MAX);
        /* v2 members: in range, positions sorted, unique, non-negative */
        if (req.op == REQUEST_GET_BY_TRANSFER_ID)
            check(req.transfer_process_id && req.transfer_process_id[0]);
        if (req.op == REQUEST_PING)
            check(!req.has_wait && !req.has_positions && !req.positions);
        check(!req.has_wait ||
              (req.wait_ms >= 0 && req.wait_ms <= REQUEST_WAIT_MAX_MS));
        check(req.has_positions || req.n_positions == 0);
        check(req.n_positions <= REQUEST_POSITIONS_MAX);
        for (size_t i = 0; i < req.n_positions; i++) {
            check(req.positions[i].partition >= 0 &&
                  req.positions[i].offset >= 0);
            check(i == 0 ||
                  req.positions[i - 1].partition < req.positions[i].partition);
        }
        check(!req.asset_id || req.asset_id[0]);
        reply_begin(&rb, req.id, "ok");
        reply_u64(&rb, 0);
        check(reply_end(&rb) == 0);
    } else {
        check(err[0] != '\0');
        if (req.reply_to)
            check(request_reply_to_allowed(req.reply_to, prefix) ==
                  (strncmp(req.reply_to, "edr:reply:", 10) == 0));
        check(!request_reply_to_allowed("edr:requests", prefix));
        check(reply_error(&rb, req.id, REPLY_CODE_BAD_REQUEST, err) == 0);
        check(strstr(rb.data, "\"code\":\"bad_request\"") != NULL);
    }
    check(reply_is_json_object(rb.data, rb.len));
    reply_buf_free(&rb);
    request_clear(&req);
    return 0;
}

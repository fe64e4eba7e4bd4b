/* edrctl_lookup.c: edrctl get|transfer-id|get-by-transfer-id|count|list|ping
 * (schemas/README.md §2 and §5).
 *
 * Each command sends one request with a reply_to of its own
 * (<prefix>:reply:<host>-<pid>-<random>) and deadline_ms = now +
 * --timeout-ms, LPUSHes it onto <prefix>:requests and waits for the
 * answer with BLPOP on reply_to. The reply's result goes to stdout as
 * compact JSON; messages go to stderr. */
#include "tools/edrctl.h"
#include "tools/edrctl_args.h"

#include "base/clock.h"
#include "schemas/reply.h"
#include "schemas/request.h"
#include "worker/redis_url.h"

#include <hiredis/hiredis.h>

#include <fcntl.h>
#include <inttypes.h>
#include <limits.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/time.h>
#include <unistd.h>

#define LOOKUP_TIMEOUT_DEFAULT_MS 5000
/* the reply of a waiting lookup comes at most this long after its wait */
#define LOOKUP_WAIT_SLACK_MS 2000
#define LOOKUP_POSITIONS_MAX 64

struct lookup_args {
    const char *party;
    const char *address;
    const char *query;
    const char *policy;
    const char *substring;
    const char *cursor;
    long limit;               /* 0: not given */
    const char *transfer_id;  /* get-by-transfer-id; count/list filter */
    const char *asset_id;     /* count/list */
    const char *asset_prefix; /* count/list */
    long wait_ms;             /* -1: not given */
    struct request_position pos[LOOKUP_POSITIONS_MAX];
    size_t n_pos;
};

static void usage(const char *cmd)
{
    if (strcmp(cmd, "get") == 0 || strcmp(cmd, "transfer-id") == 0)
        fprintf(stderr,
                "usage: edrctl %s --party ID --address URL --query SUM "
                "--policy SUM [--wait-ms N] [--min-position P:O]...\n",
                cmd);
    else if (strcmp(cmd, "get-by-transfer-id") == 0)
        fprintf(stderr, "usage: edrctl get-by-transfer-id --transfer-id T "
                        "[--wait-ms N] [--min-position P:O]...\n");
    else if (strcmp(cmd, "count") == 0)
        fprintf(stderr, "usage: edrctl count [--party-substring S] "
                        "[--transfer-id T] [--asset-id A] "
                        "[--asset-prefix P]\n");
    else if (strcmp(cmd, "list") == 0)
        fprintf(stderr, "usage: edrctl list [--party-substring S] "
                        "[--transfer-id T] [--asset-id A] [--asset-prefix P] "
                        "[--limit N] [--cursor C]\n");
    else
        fprintf(stderr, "usage: edrctl ping\n");
}

/* A decimal in [lo, hi] into *out; 0, or -1 when s is anything else. */
static int parse_long(const char *s, long lo, long hi, long *out)
{
    char *end = NULL;
    if (!s || !*s || *s == '-' || *s == '+' || *s == ' ')
        return -1;
    long long v = strtoll(s, &end, 10);
    if (*end || v < lo || v > hi)
        return -1;
    *out = (long)v;
    return 0;
}

/* "P:O" (partition 0..2^31-1, offset >= 0) appended to a->pos; 0 or -1. */
static int add_position(struct lookup_args *a, const char *s)
{
    const char *colon = strchr(s, ':');
    char part[16];
    long p;
    char *end = NULL;
    if (!colon || colon == s || (size_t)(colon - s) >= sizeof(part) ||
        a->n_pos == LOOKUP_POSITIONS_MAX)
        return -1;
    memcpy(part, s, (size_t)(colon - s));
    part[colon - s] = '\0';
    if (parse_long(part, 0, INT32_MAX, &p))
        return -1;
    const char *o = colon + 1;
    if (!*o || *o < '0' || *o > '9')
        return -1;
    long long off = strtoll(o, &end, 10);
    if (*end || off < 0 || off == LLONG_MAX)
        return -1;
    for (size_t i = 0; i < a->n_pos; i++)
        if (a->pos[i].partition == (int32_t)p)
            return -1;
    a->pos[a->n_pos].partition = (int32_t)p;
    a->pos[a->n_pos].offset = off;
    a->n_pos++;
    return 0;
}

/* Parses the flags of cmd; 0 or EDRCTL_USAGE. */
static int parse_args(const char *cmd, int argc, char **argv,
                      struct lookup_args *a)
{
    int is_get = strcmp(cmd, "get") == 0 || strcmp(cmd, "transfer-id") == 0;
    int is_count = strcmp(cmd, "count") == 0;
    int is_list = strcmp(cmd, "list") == 0;
    int is_by_tid = strcmp(cmd, "get-by-transfer-id") == 0;
    const char *limit = NULL, *wait = NULL, *pos = NULL;
    int i = 0;

    memset(a, 0, sizeof(*a));
    a->wait_ms = -1;
    /* the dispatcher may leave the subcommand (or program) name first */
    if (argc > 0 && argv[0][0] != '-')
        i = 1;
    for (; i < argc; i++) {
        int m = 0;
        if (is_get) {
            if (!m)
                m = edrctl_take_flag(argc, argv, &i, "--party", &a->party);
            if (!m)
                m = edrctl_take_flag(argc, argv, &i, "--address", &a->address);
            if (!m)
                m = edrctl_take_flag(argc, argv, &i, "--query", &a->query);
            if (!m)
                m = edrctl_take_flag(argc, argv, &i, "--policy", &a->policy);
        }
        if (is_get || is_by_tid) {
            if (!m &&
                (m = edrctl_take_flag(argc, argv, &i, "--wait-ms", &wait)) >
                    0 &&
                parse_long(wait, 0, REQUEST_WAIT_MAX_MS, &a->wait_ms)) {
                fprintf(stderr, "edrctl %s: --wait-ms must be 0..%d\n", cmd,
                        REQUEST_WAIT_MAX_MS);
                goto usage;
            }
            if (!m &&
                (m = edrctl_take_flag(argc, argv, &i, "--min-position", &pos)) >
                    0 &&
                add_position(a, pos)) {
                fprintf(stderr,
                        "edrctl %s: --min-position wants PARTITION:OFFSET "
                        "(e.g. 3:1234, as edrctl publish prints them), at "
                        "most %d, each partition once\n",
                        cmd, LOOKUP_POSITIONS_MAX);
                goto usage;
            }
        }
        if (is_by_tid || is_count || is_list) {
            if (!m)
                m = edrctl_take_flag(argc, argv, &i, "--transfer-id",
                                     &a->transfer_id);
        }
        if (is_count || is_list) {
            if (!m)
                m = edrctl_take_flag(argc, argv, &i, "--party-substring",
                                     &a->substring);
            if (!m)
                m = edrctl_take_flag(argc, argv, &i, "--asset-id",
                                     &a->asset_id);
            if (!m)
                m = edrctl_take_flag(argc, argv, &i, "--asset-prefix",
                                     &a->asset_prefix);
        }
        if (is_list) {
            if (!m)
                m = edrctl_take_flag(argc, argv, &i, "--limit", &limit);
            if (!m)
                m = edrctl_take_flag(argc, argv, &i, "--cursor", &a->cursor);
        }
        if (m < 0) {
            fprintf(stderr, "edrctl %s: %s needs a value\n", cmd, argv[i]);
            goto usage;
        }
        if (m == 0) {
            fprintf(stderr, "edrctl %s: unknown argument '%s'\n", cmd, argv[i]);
            goto usage;
        }
    }
    if (is_get && !(a->party && a->address && a->query && a->policy)) {
        fprintf(stderr,
                "edrctl %s: --party, --address, --query and "
                "--policy are all required\n",
                cmd);
        goto usage;
    }
    if (is_by_tid && (!a->transfer_id || !a->transfer_id[0])) {
        fprintf(stderr, "edrctl %s: --transfer-id is required\n", cmd);
        goto usage;
    }
    if ((a->transfer_id && !a->transfer_id[0]) ||
        (a->asset_id && !a->asset_id[0])) {
        fprintf(stderr,
                "edrctl %s: --transfer-id and --asset-id must not "
                "be empty\n",
                cmd);
        goto usage;
    }
    if (is_get &&
        (!a->party[0] || !a->address[0] || !a->query[0] || !a->policy[0])) {
        fprintf(stderr, "edrctl %s: the key flags must not be empty\n", cmd);
        goto usage;
    }
    if (limit) {
        char *end = NULL;
        a->limit = strtol(limit, &end, 10);
        if (!*limit || *end || a->limit < 1 || a->limit > REQUEST_LIMIT_MAX) {
            fprintf(stderr, "edrctl list: --limit must be 1..%d\n",
                    REQUEST_LIMIT_MAX);
            goto usage;
        }
    }
    return 0;
usage:
    usage(cmd);
    return EDRCTL_USAGE;
}

/* "<host>-<pid>-<16 hex>": unique per call across hosts and processes. */
static void make_token(char *out, size_t n)
{
    char host[64] = "host";
    unsigned char rnd[8] = {0};
    int fd = open("/dev/urandom", O_RDONLY | O_CLOEXEC);
    ssize_t got = fd >= 0 ? read(fd, rnd, sizeof(rnd)) : -1;
    if (fd >= 0)
        close(fd);
    if (got != (ssize_t)sizeof(rnd)) {
        uint64_t x = (uint64_t)edr_epoch_ms() ^ ((uint64_t)getpid() << 32);
        memcpy(rnd, &x, sizeof(rnd));
    }
    gethostname(host, sizeof(host) - 1);
    host[sizeof(host) - 1] = '\0';
    snprintf(out, n, "%s-%ld-%02x%02x%02x%02x%02x%02x%02x%02x", host,
             (long)getpid(), rnd[0], rnd[1], rnd[2], rnd[3], rnd[4], rnd[5],
             rnd[6], rnd[7]);
}

static void member(struct reply_buf *b, int *first, const char *name,
                   const char *value)
{
    reply_raw(b, *first ? "" : ",", *first ? 0 : 1);
    *first = 0;
    reply_cstr(b, name);
    reply_raw(b, ":", 1);
    reply_cstr(b, value);
}

/* The request body for cmd (reply_buf reused as a JSON writer). */
static int build_request(struct reply_buf *b, const char *cmd,
                         const struct lookup_args *a, const char *id,
                         const char *reply_to, int64_t deadline_ms)
{
    const char *op = strcmp(cmd, "get") == 0           ? "get_connection"
                     : strcmp(cmd, "transfer-id") == 0 ? "get_connection_"
                                                         "transfer_id"
                     : strcmp(cmd, "get-by-transfer-id") == 0
                         ? "get_by_transfer_id"
                     : strcmp(cmd, "count") == 0 ? "count"
                     : strcmp(cmd, "list") == 0  ? "list_connections"
                                                 : "ping";
    int first = 1;
    reply_raw(b, "{", 1);
    member(b, &first, "id", id);
    member(b, &first, "reply_to", reply_to);
    member(b, &first, "op", op);
    reply_raw(b, ",\"deadline_ms\":", 15);
    reply_i64(b, deadline_ms);
    reply_raw(b, ",\"args\":{", 9);
    first = 1;
    if (a->party) {
        member(b, &first, "counter_party_id", a->party);
        member(b, &first, "counter_party_address", a->address);
        member(b, &first, "query_checksum", a->query);
        member(b, &first, "policy_checksum", a->policy);
    }
    if (a->substring)
        member(b, &first, "counter_party_id_substring", a->substring);
    if (a->transfer_id)
        member(b, &first, "transfer_process_id", a->transfer_id);
    if (a->asset_id)
        member(b, &first, "asset_id", a->asset_id);
    if (a->asset_prefix)
        member(b, &first, "asset_id_prefix", a->asset_prefix);
    if (a->wait_ms >= 0) {
        reply_raw(b, first ? "\"wait_ms\":" : ",\"wait_ms\":", first ? 10 : 11);
        reply_i64(b, a->wait_ms);
        first = 0;
    }
    if (a->n_pos > 0) {
        reply_raw(b, first ? "\"min_positions\":{" : ",\"min_positions\":{",
                  first ? 17 : 18);
        for (size_t i = 0; i < a->n_pos; i++) {
            char key[16];
            snprintf(key, sizeof(key), "%" PRId32, a->pos[i].partition);
            if (i)
                reply_raw(b, ",", 1);
            reply_cstr(b, key);
            reply_raw(b, ":", 1);
            reply_i64(b, a->pos[i].offset);
        }
        reply_raw(b, "}", 1);
        first = 0;
    }
    if (a->cursor)
        member(b, &first, "cursor", a->cursor);
    if (a->limit) {
        reply_raw(b, first ? "\"limit\":" : ",\"limit\":", first ? 8 : 9);
        reply_i64(b, a->limit);
        first = 0;
    }
    reply_raw(b, "}}", 2);
    return b->oom ? -1 : 0;
}

/* Sends cmd's request built from a and waits for its reply: EDRCTL_OK
 * with the reply in *msg (the caller clears it), EDRCTL_USAGE or
 * EDRCTL_ERROR with the reason on stderr. */
static int roundtrip(const struct config *cfg, const char *cmd,
                     const struct lookup_args *a, struct reply_msg *msg)
{
    struct redis_url url;
    struct reply_buf req = {0};
    redisContext *c = NULL;
    redisReply *r = NULL;
    char token[128], reply_to[512], queue[300], err[512];
    int timeout_ms =
        cfg->timeout_ms > 0 ? cfg->timeout_ms : LOOKUP_TIMEOUT_DEFAULT_MS;
    const char *prefix = cfg->rpc_prefix ? cfg->rpc_prefix : "edr";
    int failure = 0;
    int rc = EDRCTL_ERROR;

    memset(&url, 0, sizeof(url));
    /* a wait the worker honours must not outlast our own patience */
    long wait = a->wait_ms >= 0 ? a->wait_ms
                : a->n_pos > 0  ? REQUEST_POSITIONS_WAIT_DEFAULT_MS
                                : 0;
    if (wait > 0 && timeout_ms < wait + LOOKUP_WAIT_SLACK_MS)
        timeout_ms = (int)(wait + LOOKUP_WAIT_SLACK_MS);
    if (redis_url_parse(cfg->redis_url ? cfg->redis_url
                                       : "redis://127.0.0.1:6379/0",
                        &url, err, sizeof(err))) {
        fprintf(stderr, "edrctl: %s\n", err);
        return EDRCTL_USAGE;
    }
    signal(SIGPIPE, SIG_IGN); /* a dead socket fails the write instead */

    int64_t deadline = edr_epoch_ms() + timeout_ms;
    make_token(token, sizeof(token));
    snprintf(reply_to, sizeof(reply_to), "%s:reply:%s", prefix, token);
    snprintf(queue, sizeof(queue), "%s:requests", prefix);
    if (build_request(&req, cmd, a, token, reply_to, deadline)) {
        fprintf(stderr, "edrctl: out of memory\n");
        goto out;
    }

    c = redis_url_connect(&url, timeout_ms, &failure, err, sizeof(err));
    if (!c) {
        fprintf(stderr, "edrctl: redis: %s\n", err);
        goto out;
    }
    const char *push[3] = {"LPUSH", queue, req.data};
    size_t push_len[3] = {5, strlen(queue), req.len};
    r = redisCommandArgv(c, 3, push, push_len);
    if (!r || r->type == REDIS_REPLY_ERROR) {
        fprintf(stderr, "edrctl: redis: sending the request: %s\n",
                r ? r->str : c->errstr);
        goto out;
    }
    freeReplyObject(r);
    r = NULL;

    /* BLPOP with the time left; the socket waits a little longer so the
     * server's nil, not a socket timeout, ends the wait */
    int64_t left = deadline - edr_epoch_ms();
    if (left < 1)
        left = 1;
    char secs[32];
    snprintf(secs, sizeof(secs), "%lld.%03lld", (long long)(left / 1000),
             (long long)(left % 1000));
    struct timeval tv = {(time_t)(left / 1000 + 2), 0};
    redisSetTimeout(c, tv);
    const char *pop[3] = {"BLPOP", reply_to, secs};
    r = redisCommandArgv(c, 3, pop, NULL);
    if (!r || r->type == REDIS_REPLY_ERROR) {
        fprintf(stderr, "edrctl: redis: waiting for the reply: %s\n",
                r ? r->str : c->errstr);
        goto out;
    }
    if (r->type != REDIS_REPLY_ARRAY || r->elements != 2) {
        fprintf(stderr,
                "edrctl: no reply within %d ms (is a worker running and "
                "connected to the same Redis and prefix '%s'?)\n",
                timeout_ms, prefix);
        goto out;
    }
    if (reply_decode(msg, r->element[1]->str, r->element[1]->len, err,
                     sizeof(err))) {
        fprintf(stderr, "edrctl: bad reply: %s\n", err);
        goto out;
    }
    if (msg->id && strcmp(msg->id, token) != 0) {
        fprintf(stderr, "edrctl: reply for another request\n");
        goto out;
    }
    rc = EDRCTL_OK;
out:
    if (r)
        freeReplyObject(r);
    if (c)
        redisFree(c);
    reply_buf_free(&req);
    redis_url_clear(&url);
    return rc;
}

int edrctl_list_page(const struct config *cfg, const struct edrctl_filters *f,
                     const char *cursor, struct reply_msg *msg)
{
    struct lookup_args a;
    memset(&a, 0, sizeof(a));
    a.wait_ms = -1;
    a.substring = f->substring;
    a.transfer_id = f->transfer_id;
    a.asset_id = f->asset_id;
    a.asset_prefix = f->asset_prefix;
    a.cursor = cursor;
    a.limit = REQUEST_LIMIT_MAX;
    int rc = roundtrip(cfg, "list", &a, msg);
    if (rc == EDRCTL_OK && msg->status != REPLY_OK) {
        fprintf(stderr, "edrctl: list_connections: %s\n",
                msg->error ? msg->error : "not ok");
        rc = EDRCTL_ERROR;
    }
    return rc;
}

int edrctl_lookup_main(const struct config *cfg, const char *cmd, int argc,
                       char **argv)
{
    struct lookup_args a;
    struct reply_msg msg = {0};
    int rc;

    if (strcmp(cmd, "get") && strcmp(cmd, "transfer-id") &&
        strcmp(cmd, "get-by-transfer-id") && strcmp(cmd, "count") &&
        strcmp(cmd, "list") && strcmp(cmd, "ping")) {
        fprintf(stderr, "edrctl: unknown lookup command '%s'\n", cmd);
        return EDRCTL_USAGE;
    }
    if (parse_args(cmd, argc, argv, &a))
        return EDRCTL_USAGE;
    if ((rc = roundtrip(cfg, cmd, &a, &msg)) != EDRCTL_OK)
        goto out;
    switch (msg.status) {
    case REPLY_OK:
        printf("%s\n", msg.result_json);
        rc = EDRCTL_OK;
        break;
    case REPLY_NOT_FOUND:
        printf("%s\n", msg.result_json);
        fprintf(stderr, "edrctl: not found\n");
        rc = EDRCTL_NOT_FOUND;
        break;
    case REPLY_ERROR:
        fprintf(stderr, "edrctl: %s: %s\n", cmd, msg.error);
        rc = EDRCTL_ERROR;
        break;
    }
    fflush(stdout);
out:
    reply_msg_clear(&msg);
    return rc;
}

/* rpc_gaps.c: see rpc_gaps.h. */
#include "worker/rpc_gaps.h"

#include "worker/metrics.h"

#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static pthread_rwlock_t gaps_lock = PTHREAD_RWLOCK_INITIALIZER;
static struct state_gaps *published; /* guarded by gaps_lock */

void rpc_gaps_publish(struct state_gaps *g)
{
    pthread_rwlock_wrlock(&gaps_lock);
    published = g;
    pthread_rwlock_unlock(&gaps_lock);
    metrics_set_render_hook(rpc_gaps_prometheus);
}

int rpc_gaps_refuse(struct reply_buf *out, const struct request *req,
                    const char **status)
{
    char reason[1024];
    int refuse = 0;

    if (req->op == REQUEST_PING || req->op == REQUEST_OP_NONE)
        return 0;
    pthread_rwlock_rdlock(&gaps_lock);
    if (published && state_gaps_any(published)) {
        size_t need = state_gaps_describe(published, reason, sizeof(reason));
        if (need >= sizeof(reason)) /* truncated: say so */
            memcpy(reason + sizeof(reason) - 5, " ...", 5);
        refuse = 1;
    }
    pthread_rwlock_unlock(&gaps_lock);
    if (!refuse)
        return 0;
    char text[1100];
    snprintf(text, sizeof(text), "state incomplete: %s", reason);
    reply_error(out, req->id, REPLY_CODE_STATE_INCOMPLETE, text);
    *status = "error";
    return 1;
}

size_t rpc_gaps_describe(char *buf, size_t n)
{
    size_t need = 0;

    if (buf && n > 0)
        buf[0] = '\0';
    pthread_rwlock_rdlock(&gaps_lock);
    if (published)
        need = state_gaps_describe(published, buf, n);
    pthread_rwlock_unlock(&gaps_lock);
    return need;
}

int rpc_gaps_prometheus(char **buf, size_t *len)
{
    int rc;

    pthread_rwlock_rdlock(&gaps_lock);
    if (published) {
        rc = state_gaps_prometheus(published, buf, len);
    } else {
        struct state_gaps *none = state_gaps_new();
        rc = none ? state_gaps_prometheus(none, buf, len) : -1;
        state_gaps_free(none);
    }
    pthread_rwlock_unlock(&gaps_lock);
    return rc;
}

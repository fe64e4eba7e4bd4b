/* request_rules.c: the lookup request rules that need the whole object
 * (required members, the args each op takes), checked once the streaming
 * pass of request.c is over, because `args` may come before `op`
 * (schemas/README.md §2). */
#include "schemas/request_decoder.h"

#include <stdio.h>

/* Checks one member; returns 0, or fills errstr and returns -1. */
static int check_member(const char *prefix, const char *name,
                        const struct field *f, int required, char *errstr,
                        size_t errstr_size)
{
    if (f->state == F_BAD || (f->state == F_SET && f->why)) {
        snprintf(errstr, errstr_size, "%s%s: %s", prefix, name, f->why);
        return -1;
    }
    if (required && f->state != F_SET) {
        snprintf(errstr, errstr_size, "%s%s: %s", prefix, name,
                 f->state == F_NULL ? "not a string (null)" : "missing");
        return -1;
    }
    return 0;
}

/* The rules that need the whole object: required members, per-op args. */
enum request_error request_check_schema(struct decoder *d, char *errstr,
                                        size_t errstr_size)
{
    if (!d->is_object) {
        snprintf(errstr, errstr_size, "request: not a JSON object");
        return REQUEST_ERR_SCHEMA;
    }
    if (d->oom) {
        snprintf(errstr, errstr_size, "request: out of memory");
        return REQUEST_ERR_SCHEMA;
    }
    if (check_member("", "id", &d->top[T_ID], 1, errstr, errstr_size) ||
        check_member("", "reply_to", &d->top[T_REPLY_TO], 1, errstr,
                     errstr_size) ||
        check_member("", "op", &d->top[T_OP], 1, errstr, errstr_size))
        return REQUEST_ERR_SCHEMA;
    const struct field *dl = &d->top[T_DEADLINE];
    if (dl->state == F_BAD) {
        snprintf(errstr, errstr_size, "deadline_ms: %s", dl->why);
        return REQUEST_ERR_SCHEMA;
    }
    const struct field *args = &d->top[T_ARGS];
    if (args->state == F_BAD) {
        snprintf(errstr, errstr_size, "args: %s", args->why);
        return REQUEST_ERR_SCHEMA;
    }
    if (d->op != REQUEST_PING &&
        (check_member("args.", request_arg_names[A_WAIT], &d->arg[A_WAIT], 0,
                      errstr, errstr_size) ||
         check_member("args.", request_arg_names[A_POSITIONS],
                      &d->arg[A_POSITIONS], 0, errstr, errstr_size)))
        return REQUEST_ERR_SCHEMA;
    switch (d->op) {
    case REQUEST_GET_BY_TRANSFER_ID:
        if (args->state != F_SET) {
            snprintf(errstr, errstr_size, "args: %s",
                     args->state == F_NULL ? "not an object (null)"
                                           : "missing");
            return REQUEST_ERR_SCHEMA;
        }
        if (check_member("args.", request_arg_names[A_TRANSFER_ID],
                         &d->arg[A_TRANSFER_ID], 1, errstr, errstr_size))
            return REQUEST_ERR_SCHEMA;
        break;
    case REQUEST_GET_CONNECTION:
    case REQUEST_GET_TRANSFER_ID:
        if (args->state != F_SET) {
            snprintf(errstr, errstr_size, "args: %s",
                     args->state == F_NULL ? "not an object (null)"
                                           : "missing");
            return REQUEST_ERR_SCHEMA;
        }
        for (int i = A_CPID; i <= A_POLICY; i++)
            if (check_member("args.", request_arg_names[i], &d->arg[i], 1,
                             errstr, errstr_size))
                return REQUEST_ERR_SCHEMA;
        break;
    case REQUEST_LIST:
        if (check_member("args.", request_arg_names[A_LIMIT], &d->arg[A_LIMIT],
                         0, errstr, errstr_size) ||
            check_member("args.", request_arg_names[A_CURSOR],
                         &d->arg[A_CURSOR], 0, errstr, errstr_size))
            return REQUEST_ERR_SCHEMA;
        /* fall through */
    case REQUEST_COUNT:
        for (int i = A_SUBSTR; i <= A_ASSET_PREFIX; i++)
            if ((i == A_SUBSTR || i >= A_TRANSFER_ID) &&
                check_member("args.", request_arg_names[i], &d->arg[i], 0,
                             errstr, errstr_size))
                return REQUEST_ERR_SCHEMA;
        break;
    case REQUEST_PING:
    case REQUEST_OP_NONE:
        break;
    }
    return REQUEST_OK;
}

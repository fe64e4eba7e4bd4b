/* request_decoder.h: the lookup request decoder's private state, shared
 * by its two files: request.c (the streaming pass over the JSON, one
 * callback per value) and request_rules.c (the rules that need the whole
 * object once the pass is over). Not for other rooms: request.h is the
 * interface. */
#ifndef EDR_SCHEMAS_REQUEST_DECODER_H
#define EDR_SCHEMAS_REQUEST_DECODER_H

#include "schemas/request.h"

#include <stddef.h>

/* Top-level members we know; anything else is ignored (forward compatible,
 * like CloudEvents extensions). */
enum top_member { T_ID, T_REPLY_TO, T_OP, T_ARGS, T_DEADLINE, T_N, T_OTHER };
extern const char *const request_top_names[T_N];

enum arg_member {
    A_CPID,
    A_ADDR,
    A_QUERY,
    A_POLICY,
    A_SUBSTR,
    A_LIMIT,
    A_CURSOR,
    A_TRANSFER_ID,
    A_ASSET_ID,
    A_ASSET_PREFIX,
    A_WAIT,
    A_POSITIONS,
    A_N,
    A_OTHER
};
extern const char *const request_arg_names[A_N];

enum field_state { F_ABSENT = 0, F_SET, F_NULL, F_BAD };

struct field {
    enum field_state state;
    const char *why; /* static text when F_BAD */
    char *str;       /* owned copy for string values */
    long long num;
};

/* What kind of JSON value a callback saw. */
enum value_kind { V_NULL, V_BOOL, V_INT, V_DOUBLE, V_STRING, V_MAP, V_ARRAY };

struct decoder {
    int depth;         /* open containers; the request object is depth 1 */
    int is_object;     /* the top-level value is an object */
    int args_open;     /* the container at depth 2 is the args object */
    int top_key;       /* current top_member */
    int arg_key;       /* current arg_member */
    int pos_open;      /* the container at depth 3 is args.min_positions */
    long long pos_key; /* partition of the current min_positions key, or
                          -1 when the key is bad */
    int oom;
    struct request_position *pos;
    size_t n_pos, pos_cap;
    enum request_op op;
    struct field top[T_N];
    struct field arg[A_N];
};

/* The rules that need the whole object: required members, per-op args.
 * REQUEST_OK, or a schema error with the reason in errstr. */
enum request_error request_check_schema(struct decoder *d, char *errstr,
                                        size_t errstr_size);

#endif

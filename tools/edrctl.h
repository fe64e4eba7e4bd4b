/* edrctl.h: the pieces of the edrctl client (schemas/README.md §5).
 *
 * edrctl.c parses the common settings (worker/config.h, the same variables
 * and flags as edr-worker) and dispatches on the subcommand; each
 * subcommand gets the arguments left after the common flags were taken.
 * Exit codes: EDRCTL_OK, EDRCTL_NOT_FOUND, EDRCTL_USAGE, EDRCTL_ERROR. */
#ifndef EDR_TOOLS_EDRCTL_H
#define EDR_TOOLS_EDRCTL_H

#include "schemas/reply.h"
#include "worker/config.h"

enum edrctl_exit {
    EDRCTL_OK = 0,
    EDRCTL_NOT_FOUND = 1,
    EDRCTL_USAGE = 2,
    EDRCTL_ERROR = 3, /* error reply, Redis/Kafka failure or timeout */
};

/* publish negotiated|renewed|expired ... (edrctl_publish.c) */
int edrctl_publish_main(const struct config *cfg, int argc, char **argv);

/* cmd: "get", "transfer-id", "get-by-transfer-id", "count", "list" or
 * "ping"
 * (edrctl_lookup.c). */
int edrctl_lookup_main(const struct config *cfg, const char *cmd, int argc,
                       char **argv);

/* The list_connections filters (schemas/README.md §2, v2); NULL: not
 * given. All given ones must hold. */
struct edrctl_filters {
    const char *substring; /* counter_party_id_substring */
    const char *transfer_id;
    const char *asset_id;
    const char *asset_prefix;
};

/* One list_connections page of up to 1000 items from cursor (NULL: the
 * first) (edrctl_lookup.c). EDRCTL_OK with an ok reply in *msg (the
 * caller clears it with reply_msg_clear), else EDRCTL_USAGE or
 * EDRCTL_ERROR with the reason on stderr. */
int edrctl_list_page(const struct config *cfg, const struct edrctl_filters *f,
                     const char *cursor, struct reply_msg *msg);

/* invalidate ... (edrctl_invalidate.c) */
int edrctl_invalidate_main(const struct config *cfg, int argc, char **argv);

#endif

/* edrctl.h: the pieces of the edrctl client (schemas/README.md §5).
 *
 * edrctl.c parses the common settings (worker/config.h, the same variables
 * and flags as edr-worker) and dispatches on the subcommand; each
 * subcommand gets the arguments left after the common flags were taken.
 * Exit codes: EDRCTL_OK, EDRCTL_NOT_FOUND, EDRCTL_USAGE, EDRCTL_ERROR. */
#ifndef EDR_TOOLS_EDRCTL_H
#define EDR_TOOLS_EDRCTL_H

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

#endif

/* pg_dsn.c: see pg_dsn.h (temporary copy, owned by the pg store branch).
 * libpq's own parse message quotes the text around the fault, which may be
 * a password, so it is never passed on. */
#include "stores/pg_dsn.h"

#include <libpq-fe.h>

#include <stdio.h>

int pg_dsn_validate(const char *dsn, char *errbuf, size_t errbuf_size)
{
    char *perr = NULL;
    PQconninfoOption *opts;

    if (!dsn || !*dsn) {
        snprintf(errbuf, errbuf_size,
                 "invalid setting EDR_PG_DSN (--pg-dsn): empty");
        return -1;
    }
    opts = PQconninfoParse(dsn, &perr);
    if (perr)
        PQfreemem(perr); /* quotes the value: never shown */
    if (!opts) {
        snprintf(errbuf, errbuf_size,
                 "invalid setting EDR_PG_DSN (--pg-dsn): libpq cannot parse "
                 "it (expected key=value pairs with quoted values where "
                 "they hold spaces, or a postgresql:// URI with "
                 "%%-escapes); the value is not shown");
        return -1;
    }
    PQconninfoFree(opts);
    return 0;
}

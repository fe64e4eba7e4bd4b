/* pg_sqlstate.c: what a PostgreSQL error means for the caller.
 *
 * Maps SQLSTATE classes to store statuses (retry, reject, give up) and
 * builds err->msg from a failed connection or result: one line, never the
 * DSN, a host, a user or entry contents. */
#include "stores/pg_internal.h"

#include "stores/fault.h"

#include <stdio.h>
#include <string.h>

/* ---- errors --------------------------------------------------------- */

/* Copies libpq's message without its trailing newline. */
int pg_fail_conn(struct store_err *err, int status, const char *what, PGconn *c)
{
    const char *m = c ? PQerrorMessage(c) : "out of memory";
    size_t n = strlen(m);
    while (n > 0 && (m[n - 1] == '\n' || m[n - 1] == ' '))
        n--;
    return store_fail(err, status, "postgres: %s: %.*s", what, (int)n, m);
}

int pg_status_of(const char *state)
{
    if (!state || strlen(state) != 5)
        return STORE_TRANSIENT; /* libpq-side failure: the link */
    if (!strcmp(state, PG_FENCED_STATE))
        return STORE_CONFLICT;
    /* 08 connection, 53 resources (disk full), 57 operator intervention
     * (admin shutdown, cancel), 40 rollback (deadlock, serialization), 58
     * system I/O, 55P03 lock not available: retrying can succeed. */
    if (!strncmp(state, "08", 2) || !strncmp(state, "53", 2) ||
        !strncmp(state, "57", 2) || !strncmp(state, "40", 2) ||
        !strncmp(state, "58", 2) || !strcmp(state, "55P03"))
        return STORE_TRANSIENT;
    /* 22 data (bad JSON, invalid UTF-8), 23 constraint, 54 too large:
     * this input will never apply. */
    if (!strncmp(state, "22", 2) || !strncmp(state, "23", 2) ||
        !strncmp(state, "54", 2))
        return STORE_INVALID;
    return STORE_FATAL; /* 42 missing table or column, 28 auth, XX ... */
}

/* Fills err from a failed result. Only the SQLSTATE and primary message
 * are used: the detail and context lines can quote entry contents. */
int pg_fail_result(PGconn *c, const PGresult *res, struct store_err *err)
{
    if (!c || PQstatus(c) != CONNECTION_OK)
        return pg_fail_conn(err, STORE_TRANSIENT, "connection lost", c);
    const char *state = res ? PQresultErrorField(res, PG_DIAG_SQLSTATE) : NULL;
    const char *msg =
        res ? PQresultErrorField(res, PG_DIAG_MESSAGE_PRIMARY) : NULL;
    if (!msg)
        return pg_fail_conn(err, pg_status_of(state), "query failed", c);
    /* Data errors may end with the offending input ("...: \"value\""). */
    int len = (int)strlen(msg);
    if (state && !strncmp(state, "22", 2) && strchr(msg, ':'))
        len = (int)(strchr(msg, ':') - msg);
    return store_fail(err, pg_status_of(state), "postgres: %.*s (SQLSTATE %s)",
                      len, msg, state ? state : "none");
}

int pg_fault(PGconn **cp, struct store_err *err)
{
    PQfinish(*cp);
    *cp = NULL;
    return store_fail(err, STORE_TRANSIENT,
                      "postgres: connection lost (injected fault)");
}

int pg_oom(struct store_err *err)
{
    return store_fail(err, STORE_TRANSIENT, "postgres: out of memory");
}

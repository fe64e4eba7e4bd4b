/* pg_sqlstate.c: what a PostgreSQL error means for the caller.
 *
 * Maps SQLSTATE classes to store statuses (retry, reject, give up) and
 * builds err->msg from a failed connection or result. Every message is one
 * line (the worker logs one line per event) and never holds the DSN, a
 * host, a port, a user or entry contents: libpq's own connection messages
 * name the host and user, so they are classified into a generic reason,
 * never copied. */
#include "stores/pg_internal.h"

#include "stores/fault.h"

#include <stdio.h>
#include <string.h>

/* libpq's and the server's connection-level messages (English) and the
 * reason a store message gives for each; anything else (a translated
 * message included) is "connection failed". */
static const struct {
    const char *needle;
    const char *reason;
} pg_conn_reasons[] = {
    {"timeout expired", "timed out"},
    {"Connection refused", "connection refused"},
    {"could not translate host name", "host name not resolved"},
    {"No route to host", "no route to host"},
    {"Network is unreachable", "network unreachable"},
    {"Connection reset", "connection reset by the server"},
    {"server closed the connection", "server closed the connection"},
    {"terminating connection", "server terminated the connection"},
    {"no connection to the server", "not connected"},
    {"could not receive data", "receive failed"},
    {"could not send data", "send failed"},
    {"SSL", "TLS failure"},
    {"No such file or directory", "no server socket"},
    {"out of memory", "out of memory"},
};

void pg_one_line(char *s)
{
    char *w = s;
    for (const char *r = s; *r; r++) {
        unsigned char ch = (unsigned char)*r;
        if (ch < 0x20 || ch == 0x7f)
            ch = ' ';
        if (ch == ' ' && (w == s || w[-1] == ' '))
            continue; /* no leading or doubled blanks */
        *w++ = (char)ch;
    }
    while (w > s && w[-1] == ' ')
        w--;
    *w = '\0';
}

/* The SQLSTATE of an ErrorResponse in a message libpq built with
 * PQERRORS_SQLSTATE ("...: FATAL:  28P01"), into state[6]; 0 if none. */
static int pg_msg_sqlstate(const char *m, char state[6])
{
    static const char *const sev[] = {"FATAL:  ", "ERROR:  ", "PANIC:  "};
    for (size_t i = 0; i < sizeof(sev) / sizeof(sev[0]); i++) {
        const char *p = strstr(m, sev[i]);
        if (!p)
            continue;
        p += strlen(sev[i]);
        if (strspn(p, "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZ") == 5 &&
            (p[5] == '\0' || p[5] == '\n')) {
            memcpy(state, p, 5);
            state[5] = '\0';
            return 1;
        }
    }
    return 0;
}

static const char *pg_conn_reason(const char *m)
{
    for (size_t i = 0; i < sizeof(pg_conn_reasons) / sizeof(pg_conn_reasons[0]);
         i++)
        if (strstr(m, pg_conn_reasons[i].needle))
            return pg_conn_reasons[i].reason;
    return "connection failed";
}

int pg_fail_conn(struct store_err *err, int status, const char *what, PGconn *c)
{
    const char *m = c ? PQerrorMessage(c) : "out of memory";
    char state[6];
    if (pg_msg_sqlstate(m, state))
        return store_fail(err, status, "postgres: %s: %s (SQLSTATE %s)", what,
                          pg_conn_reason(m), state);
    return store_fail(err, status, "postgres: %s: %s", what, pg_conn_reason(m));
}

int pg_fail_connect(struct store_err *err, PGconn *c)
{
    const char *m = c ? PQerrorMessage(c) : "out of memory";
    char state[6];
    if (pg_msg_sqlstate(m, state)) {
        if (!strncmp(state, "28", 2))
            return store_fail(err, STORE_AUTH,
                              "PostgreSQL rejected the credentials "
                              "(SQLSTATE %s)",
                              state);
        /* 3D000 no such database, 53300 too many connections, 57P03
         * starting up: all may be fixed while the worker waits. */
        return store_fail(err, STORE_TRANSIENT,
                          "postgres: connect: server refused the session "
                          "(SQLSTATE %s)",
                          state);
    }
    if (c && PQconnectionNeedsPassword(c))
        return store_fail(err, STORE_AUTH,
                          "PostgreSQL asked for a password and EDR_PG_DSN "
                          "gives none");
    return pg_fail_conn(err, STORE_TRANSIENT, "connect", c);
}

int pg_fail_io(struct store_err *err, int io, const char *what, PGconn *c)
{
    if (io == PG_IO_SILENT)
        return store_fail(err, STORE_TRANSIENT,
                          "postgres: %s: server did not answer within %d s",
                          what, PG_ANSWER_MS / 1000);
    return pg_fail_conn(err, STORE_TRANSIENT, what, c);
}

int pg_status_of(const char *state)
{
    if (!state || strlen(state) != 5)
        return STORE_TRANSIENT; /* libpq-side failure: the link */
    if (!strcmp(state, PG_FENCED_STATE))
        return STORE_CONFLICT;
    /* 08 connection, 53 resources (disk full), 57 operator intervention
     * (admin shutdown, cancel, statement_timeout), 40 rollback (deadlock,
     * serialization), 58 system I/O, 55P03 lock not available: retrying
     * can succeed. */
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
    /* Authorization errors name roles: class and code only. */
    if (state && !strncmp(state, "28", 2))
        len = 0;
    int rc =
        store_fail(err, pg_status_of(state), "postgres: %.*s%s(SQLSTATE %s)",
                   len, msg, len ? " " : "", state ? state : "none");
    if (err)
        pg_one_line(err->msg);
    return rc;
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

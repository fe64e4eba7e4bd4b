/* pg_dsn.c: EDR_PG_DSN validation (stores/pg_dsn.h).
 *
 * PQconninfoParse() decides, as it is the parser every connection uses;
 * its message is only classified, never copied, because it quotes parts
 * of the DSN. */
#include "stores/pg_dsn.h"

#include <libpq-fe.h>

#include <stdio.h>
#include <string.h>

/* libpq's parse errors (fe-connect.c, English) and what they mean. A
 * message not listed, or a translated one, gives the generic reason. */
static const struct {
    const char *needle;
    const char *reason;
} pg_dsn_reasons[] = {
    {"missing \"=\" after", "a keyword without \"=\""},
    {"unterminated quoted string", "an unterminated quoted value"},
    {"invalid connection option", "an unknown keyword"},
    {"percent-encoded", "an invalid percent-encoding"},
    {"IPv6", "a malformed IPv6 host address"},
    {"unexpected character", "an unexpected character in the URI"},
    {"key/value separator", "a URI query parameter without one \"=\""},
    {"URI query parameter", "an unknown URI query parameter"},
    {"unexpected spaces", "spaces in the URI"},
    {"out of memory", "out of memory"},
};

static const char *pg_dsn_reason(const char *libpq_msg)
{
    if (!libpq_msg)
        return "out of memory";
    for (size_t i = 0; i < sizeof(pg_dsn_reasons) / sizeof(pg_dsn_reasons[0]);
         i++)
        if (strstr(libpq_msg, pg_dsn_reasons[i].needle))
            return pg_dsn_reasons[i].reason;
    return "malformed";
}

int pg_dsn_validate(const char *dsn, char *errbuf, size_t errbuf_size)
{
    char *msg = NULL;
    PQconninfoOption *opts;

    if (!dsn || !*dsn) {
        if (errbuf_size > 0)
            snprintf(errbuf, errbuf_size, "EDR_PG_DSN: empty");
        return -1;
    }
    if ((opts = PQconninfoParse(dsn, &msg)) != NULL) {
        PQconninfoFree(opts);
        return 0;
    }
    if (errbuf_size > 0)
        snprintf(errbuf, errbuf_size, "EDR_PG_DSN: cannot be parsed (%s)",
                 pg_dsn_reason(msg));
    PQfreemem(msg);
    return -1;
}

/* pg_dsn.h: checking EDR_PG_DSN before anything connects.
 *
 * The worker's configuration calls pg_dsn_validate() at start, so a DSN
 * libpq cannot parse is an invalid setting (exit 2, schemas/README.md §3)
 * rather than an endless outage. libpq's own parse errors quote fragments
 * of the string (`missing "=" after "secret"`), and a DSN holds a
 * password: the message here names the setting and a generic reason,
 * never any part of the value. */
#ifndef EDR_STORES_PG_DSN_H
#define EDR_STORES_PG_DSN_H

#include <stddef.h>

/* Returns 0 when libpq can parse dsn (a key=value string or a
 * postgresql:// URI), else -1 with errbuf (errbuf_size bytes, may be 0)
 * holding one line like "EDR_PG_DSN: cannot be parsed (an unterminated
 * quoted value)". NULL or empty dsn is -1 too. Any thread. */
int pg_dsn_validate(const char *dsn, char *errbuf, size_t errbuf_size);

#endif

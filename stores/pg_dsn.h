/* pg_dsn.h: checking EDR_PG_DSN before anything connects.
 *
 * TEMPORARY COPY, owned by the pg store branch: the rpc branch carries
 * this minimal version only so worker/config.c builds; at merge the lead
 * keeps the pg store branch's file (same signature). */
#ifndef EDR_STORES_PG_DSN_H
#define EDR_STORES_PG_DSN_H

#include <stddef.h>

/* 0 when libpq can parse dsn (key=value pairs or a postgresql:// URI);
 * -1 with a message in errbuf that names EDR_PG_DSN and never holds any
 * part of the value (it may carry a password). Any thread. */
int pg_dsn_validate(const char *dsn, char *errbuf, size_t errbuf_size);

#endif

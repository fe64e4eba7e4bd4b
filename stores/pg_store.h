/* pg_store.h: PostgreSQL-specific extras of the store (stores/pg_*.c).
 *
 * pg_store_open() itself is declared in stores/store.h with the other
 * backends. This header adds what only the PostgreSQL store has: the rule
 * for table names (so configuration can reject a bad EDR_PG_TABLE before
 * connecting) and dropping a store's tables (tests, operators). Neither
 * exposes libpq: only stores/pg_*.c include libpq-fe.h. */
#ifndef EDR_STORES_PG_STORE_H
#define EDR_STORES_PG_STORE_H

#include "stores/store.h"

#include <stdint.h>

/* Longest table name. PostgreSQL truncates identifiers to 63 bytes and the
 * store also creates "<table>_offsets", which must fit too. */
#define PG_STORE_TABLE_MAX 55

/* Returns 1 when table matches [A-Za-z_][A-Za-z0-9_]* and is at most
 * PG_STORE_TABLE_MAX bytes, else 0. Any thread. */
int pg_store_table_valid(const char *table);

/* Drops table and "<table>_offsets" if they exist. Every value is a
 * parameter or the validated, quoted name. Returns STORE_OK or a negative
 * status with err filled. No store may have the tables open. */
int pg_store_drop(const char *dsn, const char *table, struct store_err *err);

/* *out = an estimate of the number of entries in st's table, from the
 * server's statistics (pg_stat_user_tables.n_live_tup): it costs the same
 * whatever the table's size, never scans, and counts every worker's
 * writes, but lags them by about a second (statistics are flushed when a
 * session goes idle) and is 0 until the server has any. For ping and the
 * progress line; count() stays exact. STORE_INVALID when st is not a
 * PostgreSQL store. Any thread, like the other reads. */
int pg_store_estimate(struct store *st, uint64_t *out, struct store_err *err);

#endif

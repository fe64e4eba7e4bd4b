/* edr_key.h: the four strings that address one EDR connection, and the
 * connection key derived from them (schemas/README.md §1).
 *
 * The connection key is the lowercase hex SHA-256 of
 *   counter_party_id 0x1F counter_party_address 0x1F query_checksum 0x1F
 *   policy_checksum
 * Producers use it as the Kafka record key; the PostgreSQL store uses it as
 * its primary key and every store orders list_connections by it. */
#ifndef EDR_SCHEMAS_EDR_KEY_H
#define EDR_SCHEMAS_EDR_KEY_H

#include <stddef.h>

/* Longest allowed key field, in bytes (schemas/README.md §1). */
#define EDR_KEY_FIELD_MAX 1024
/* Hex connection key length, without the terminating NUL. */
#define EDR_CONNECTION_KEY_LEN 64

/* Borrowed view of the four key fields: NUL-terminated UTF-8 strings. */
struct edr_key {
    const char *counter_party_id;
    const char *counter_party_address;
    const char *query_checksum;
    const char *policy_checksum;
};

/* Writes the 64 hex digits plus NUL of the connection key of `k` to `out`.
 * Never fails; any thread. */
void edr_connection_key(const struct edr_key *k,
                        char out[EDR_CONNECTION_KEY_LEN + 1]);

#endif

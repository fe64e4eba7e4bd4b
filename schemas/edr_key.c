/* edr_key.c: the connection key of schemas/README.md §1. */
#include "schemas/edr_key.h"

#include "schemas/sha256.h"

#include <string.h>

void edr_connection_key(const struct edr_key *k,
                        char out[EDR_CONNECTION_KEY_LEN + 1])
{
    static const char hex[] = "0123456789abcdef";
    const char *parts[4] = {k->counter_party_id, k->counter_party_address,
                            k->query_checksum, k->policy_checksum};
    const unsigned char sep = 0x1F;
    unsigned char digest[32];
    struct sha256 s;

    sha256_init(&s);
    for (int i = 0; i < 4; i++) {
        if (i > 0)
            sha256_update(&s, &sep, 1);
        sha256_update(&s, parts[i], strlen(parts[i]));
    }
    sha256_final(&s, digest);
    for (int i = 0; i < 32; i++) {
        out[2 * i] = hex[digest[i] >> 4];
        out[2 * i + 1] = hex[digest[i] & 15];
    }
    out[EDR_CONNECTION_KEY_LEN] = '\0';
}

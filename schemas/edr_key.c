/* edr_key.c: the connection key of schemas/README.md §1. */
#include "schemas/edr_key.h"

#include "base/hex.h"
#include "schemas/sha256.h"

#include <string.h>

void edr_connection_key(const struct edr_key *k,
                        char out[EDR_CONNECTION_KEY_LEN + 1])
{
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
    edr_hex_encode(out, digest, sizeof(digest));
}

/* sha256.h: a small FIPS 180-4 SHA-256, so the connection key needs no
 * crypto library. */
#ifndef EDR_SCHEMAS_SHA256_H
#define EDR_SCHEMAS_SHA256_H

#include <stddef.h>
#include <stdint.h>

struct sha256 {
    uint32_t h[8];
    uint64_t total;
    unsigned char buf[64];
    size_t used;
};

void sha256_init(struct sha256 *s);
void sha256_update(struct sha256 *s, const void *data, size_t len);
void sha256_final(struct sha256 *s, unsigned char digest[32]);

#endif

/* sha256.h: a small FIPS 180-4 SHA-256, so the connection key needs no
 * crypto library. Uses the CPU's SHA extensions when it has them (chosen
 * once, at run time); the portable code gives the same digests. */
#ifndef EDR_SCHEMAS_SHA256_H
#define EDR_SCHEMAS_SHA256_H

#include <stddef.h>
#include <stdint.h>

struct sha256 {
    uint32_t h[8];
    uint64_t total;
    unsigned char buf[64];
    size_t used;
    int impl; /* the compression function chosen at init */
};

void sha256_init(struct sha256 *s);
void sha256_update(struct sha256 *s, const void *data, size_t len);
void sha256_final(struct sha256 *s, unsigned char digest[32]);

/* Tests and benchmarks: makes later sha256_init() use the SHA extensions
 * (hw = 1) or the portable code (hw = 0). 0, or -1 when hw = 1 and the
 * CPU has no SHA extensions (nothing changed). Not thread-safe against
 * concurrent hashing of other threads' choice (each context keeps the one
 * it was initialised with). */
int sha256_impl_force(int hw);

#endif

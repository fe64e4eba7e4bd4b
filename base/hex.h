/* hex.h: the one hexadecimal digit reader and writer of the project.
 *
 * Connection keys and cursors (lowercase hex SHA-256), \uXXXX escapes of
 * JSON, the file store's frame headers and percent-escapes of URLs all
 * read or write hex digits through these functions, so there is one
 * definition of what a hex digit is. base/ is the lowest room: it knows
 * nothing of the product and every layer may include it. Pure functions,
 * any thread. */
#ifndef EDR_BASE_HEX_H
#define EDR_BASE_HEX_H

#include <stddef.h>
#include <stdint.h>

enum edr_hex_case {
    EDR_HEX_ANY_CASE,   /* 0-9, a-f, A-F (JSON escapes, URLs) */
    EDR_HEX_LOWER_ONLY, /* 0-9, a-f (keys, cursors, our own formats) */
};

/* Value 0..15 of the hex digit c, or -1 when c is not one in case cs. */
int edr_hex_digit(int c, enum edr_hex_case cs);

/* Reads exactly n (at most 16) hex digits at s into *out. Returns 0, or
 * -1 (and leaves *out alone) when one of them is not a digit in case cs.
 * Reads s[0..n) only: s need not be NUL-terminated. */
int edr_hex_parse(const char *s, size_t n, enum edr_hex_case cs, uint64_t *out);

/* The lowercase hex digit of v & 15. */
char edr_hex_char(unsigned v);

/* Writes the 2n lowercase hex digits of in[0..n) and a NUL to out, which
 * has room for 2n + 1 bytes. */
void edr_hex_encode(char *out, const void *in, size_t n);

#endif

/* rfc3339.h: RFC 3339 date-time (section 5.6), strict, for the `time`
 * attribute of events (schemas/README.md §1, Appendix A). */
#ifndef EDR_SCHEMAS_RFC3339_H
#define EDR_SCHEMAS_RFC3339_H

#include <stdbool.h>
#include <stddef.h>

/* true when s[0..n) (not NUL-terminated) is an RFC 3339 date-time:
 * 2025-01-31T12:34:56[.frac](Z|+hh:mm|-hh:mm), T and Z in either case,
 * real calendar dates only (leap years; second 60 for leap seconds). */
bool rfc3339_valid(const char *s, size_t n);

#endif

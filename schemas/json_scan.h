/* json_scan.h: checks of JSON text that need no parser and no memory.
 *
 * json_scan_text runs before yajl sees an event (schemas/event_decode.c):
 * yajl's own UTF-8 check cannot say at which byte it failed, and yajl
 * turns \u0000 and unpaired surrogate escapes into bytes we must not
 * store. json_is_object is the one "is this exactly one JSON object"
 * check of the project (replies splice stored entries in raw; edrctl and
 * the stores check entries with it). Pure functions, any thread. */
#ifndef EDR_SCHEMAS_JSON_SCAN_H
#define EDR_SCHEMAS_JSON_SCAN_H

#include <stddef.h>

/* Deepest nesting json_is_object follows; deeper text is "not one". */
#define JSON_SCAN_MAX_DEPTH 1024

enum json_scan_result {
    JSON_SCAN_OK,
    JSON_SCAN_UTF8,      /* a byte that does not start valid UTF-8 */
    JSON_SCAN_SURROGATE, /* \u escape of an unpaired UTF-16 surrogate */
    JSON_SCAN_NUL,       /* \u0000 */
};

/* Checks that s[0..n) is strict UTF-8 and that no \u escape encodes U+0000
 * or an unpaired surrogate. A backslash is only legal JSON inside a
 * string, so escapes are found without tracking strings; text that is not
 * JSON is left for the parser to report. On a finding, *at is the offset
 * of the offending byte (the backslash of an escape). */
enum json_scan_result json_scan_text(const unsigned char *s, size_t n,
                                     size_t *at);

/* 1 when s[0..n) is exactly one JSON object (RFC 8259, strict: valid
 * UTF-8, no comments, nothing but whitespace around it, at most
 * JSON_SCAN_MAX_DEPTH levels), else 0. s need not be NUL-terminated. */
int json_is_object(const char *s, size_t n);

#endif

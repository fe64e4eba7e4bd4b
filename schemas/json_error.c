/* json_error.c: see json_error.h. */
#include "schemas/json_error.h"

#include <stdio.h>
#include <string.h>

void json_syntax_error(yajl_handle h, const char *what, char *errstr,
                       size_t errstr_size)
{
    unsigned char *msg = yajl_get_error(h, 0, NULL, 0);
    size_t at = yajl_get_bytes_consumed(h);
    char text[128] = "parse error";
    if (msg) {
        snprintf(text, sizeof(text), "%s", (const char *)msg);
        text[strcspn(text, "\n")] = '\0';
        yajl_free_error(h, msg);
    }
    snprintf(errstr, errstr_size,
             "%s: not well-formed JSON (%s, near byte %zu)", what, text, at);
}

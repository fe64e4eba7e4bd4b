/* json_error.h: the one wording of "this text is not JSON" for decoders
 * that answer a client (schemas/request.c for lookups, schemas/
 * edc_event.c for EDC callbacks): yajl's reason on one line, without its
 * verbose excerpt, so the reply never quotes the client's bytes back.
 * Any thread. */
#ifndef EDR_SCHEMAS_JSON_ERROR_H
#define EDR_SCHEMAS_JSON_ERROR_H

#include <yajl/yajl_parse.h>

#include <stddef.h>

/* Writes "<what>: not well-formed JSON (<yajl's reason>, near byte N)"
 * into errstr for the failed parse of h. */
void json_syntax_error(yajl_handle h, const char *what, char *errstr,
                       size_t errstr_size);

#endif

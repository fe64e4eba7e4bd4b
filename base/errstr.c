/* errstr.c: see errstr.h. */
#include "base/errstr.h"

#include <stdarg.h>
#include <stdio.h>

void edr_errf(char *errstr, size_t n, const char *fmt, ...)
{
    va_list ap;

    if (!errstr || n == 0)
        return;
    va_start(ap, fmt);
    vsnprintf(errstr, n, fmt, ap);
    va_end(ap);
}

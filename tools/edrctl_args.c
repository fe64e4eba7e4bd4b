/* edrctl_args.c: see edrctl_args.h. */
#include "tools/edrctl_args.h"

#include <string.h>

int edrctl_take_flag(int argc, char **argv, int *i, const char *name,
                     const char **out)
{
    const char *a = argv[*i];
    size_t n = strlen(name);
    if (strncmp(a, name, n) != 0)
        return 0;
    if (a[n] == '=') {
        *out = a + n + 1;
        return 1;
    }
    if (a[n] != '\0')
        return 0;
    if (*i + 1 >= argc)
        return -1;
    *out = argv[++*i];
    return 1;
}

/* edrctl.c: placeholder until the worker issue lands the client. */
#include <stdio.h>

int main(void)
{
    fprintf(stderr, "edrctl: not built yet\n");
    return 3;
}

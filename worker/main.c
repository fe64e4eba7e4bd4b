/* main.c: placeholder until the worker issue lands its daemon. */
#include <stdio.h>

int main(void)
{
    fprintf(stderr, "edr-worker: not built yet\n");
    return 3;
}

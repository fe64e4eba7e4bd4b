/* cunit_main.c: see cunit_main.h. */
#include "tests/support/cunit_main.h"

#include <CUnit/Basic.h>
#include <stdio.h>
#include <stdlib.h>

int cunit_main(const cunit_register_fn *registers)
{
    if (CU_initialize_registry() != CUE_SUCCESS) {
        fprintf(stderr, "CUnit: %s\n", CU_get_error_msg());
        return 1;
    }
    for (; *registers; registers++)
        (*registers)();
    CU_basic_set_mode(CU_BRM_VERBOSE);
    CU_basic_run_tests();
    unsigned failed = CU_get_number_of_failures() +
                      CU_get_number_of_suites_failed() +
                      CU_get_number_of_tests_failed();
    unsigned ran = CU_get_number_of_tests_run();
    CU_cleanup_registry();
    if (ran == 0) {
        fprintf(stderr, "no test ran\n");
        return 1;
    }
    return failed ? 1 : 0;
}

const char *test_env(const char *name)
{
    const char *v = getenv(name);
    if (!v || !*v) {
        fprintf(stderr,
                "%s is not set: start the stack with scripts/services.sh up "
                "and export what scripts/services.sh env prints\n",
                name);
        return NULL;
    }
    return v;
}

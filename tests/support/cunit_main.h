/* cunit_main.h: the shared main() body of every CUnit test program.
 *
 * A test file defines its suites and calls cunit_main() from main(); the
 * result is the process exit code ctest reads (0 only when every test ran
 * and passed). */
#ifndef EDR_TEST_CUNIT_MAIN_H
#define EDR_TEST_CUNIT_MAIN_H

#include <CUnit/CUnit.h>

/* Signature of a function that adds suites to the CUnit registry. */
typedef void (*cunit_register_fn)(void);

/* Initialises the registry, calls each register function (NULL-terminated
 * array), runs everything in verbose basic mode and returns the exit code:
 * 0 when all passed, 1 on any failure or when no test ran. */
int cunit_main(const cunit_register_fn *registers);

/* Value of environment variable `name`, or a CU_FAIL-worthy NULL. Tests
 * that need a server read its address from the environment that
 * scripts/services.sh env prints. */
const char *test_env(const char *name);

#endif

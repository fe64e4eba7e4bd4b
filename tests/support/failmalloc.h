/* failmalloc.h: fail the Nth allocation, SQLite's test_malloc way.
 *
 * Test programs that use it link with -Wl,--wrap=malloc,... (the CMake
 * helper edr_add_failmalloc_test in tests/CMakeLists.txt), so every
 * malloc, calloc, realloc, strdup and strndup made by the project's own
 * code (our static libraries and the test) goes through here; libraries
 * linked as shared objects (yajl, libpq, libc's internals) are not
 * affected. The shipped binaries never link this.
 *
 * The loop every test writes:
 *   for (n = 1;; n++) {
 *       failmalloc_arm(n);
 *       rc = operation();
 *       fired = failmalloc_fired();
 *       failmalloc_disarm();
 *       check state is exactly before (rc error) or after (rc ok);
 *       if (!fired) break;   // operation needed fewer than n allocations
 *   }
 * Not thread-safe against concurrent arming; allocations of other threads
 * count too. */
#ifndef EDR_TESTS_FAILMALLOC_H
#define EDR_TESTS_FAILMALLOC_H

#include <stddef.h>

/* From now on, the nth allocation (1-based) fails, and with persistent
 * every one after it too; n = 0 disarms. Resets the counters. */
void failmalloc_arm(unsigned long n);
void failmalloc_arm_persistent(unsigned long n);
void failmalloc_disarm(void);
/* How many allocations failed since the last arm. */
unsigned long failmalloc_fired(void);
/* How many allocations were made since the last arm. */
unsigned long failmalloc_count(void);

#endif

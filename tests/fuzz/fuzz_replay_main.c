/* fuzz_replay_main.c: runs the fuzz targets over their seed corpus as a
 * plain CUnit test, so every build (gcc too, and valgrind) replays it.
 * EDR_FUZZ_REPLAY_DIR, when set, replays that folder instead (e.g. a
 * crash artifact folder). */
#include "tests/support/cunit_main.h"

#include <dirent.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#ifndef EDR_FUZZ_CORPUS_DIR
#error "EDR_FUZZ_CORPUS_DIR must name the target's tests/fuzz/corpus/ folder"
#endif

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static int replay_file(const char *path)
{
    FILE *f = fopen(path, "rb");
    uint8_t *b = NULL;
    long n;
    int rc = -1;

    if (!f)
        return -1;
    if (fseek(f, 0, SEEK_END) == 0 && (n = ftell(f)) >= 0 &&
        fseek(f, 0, SEEK_SET) == 0) {
        /* Exact size, so the target's own copy is what ASan watches. */
        b = malloc(n ? (size_t)n : 1);
        if (b && fread(b, 1, (size_t)n, f) == (size_t)n) {
            LLVMFuzzerTestOneInput(b, (size_t)n);
            rc = 0;
        }
    }
    free(b);
    fclose(f);
    return rc;
}

static void test_replay(void)
{
    const char *dir_name = getenv("EDR_FUZZ_REPLAY_DIR");
    if (!dir_name || !*dir_name)
        dir_name = EDR_FUZZ_CORPUS_DIR;
    DIR *dir = opendir(dir_name);
    struct dirent *de;
    int n = 0;

    CU_ASSERT_PTR_NOT_NULL_FATAL(dir);
    while ((de = readdir(dir)) != NULL) {
        char path[4096];
        if (de->d_name[0] == '.')
            continue;
        snprintf(path, sizeof(path), "%s/%s", dir_name, de->d_name);
        CU_ASSERT_EQUAL(replay_file(path), 0);
        n++;
    }
    closedir(dir);
    printf("\nreplayed %d inputs from %s\n", n, dir_name);
    CU_ASSERT(n > 0);
}

static void register_tests(void)
{
    CU_pSuite s = CU_add_suite("fuzz corpus replay", NULL, NULL);
    CU_add_test(s, "fuzz target over its corpus", test_replay);
}

int main(void)
{
    static const cunit_register_fn regs[] = {register_tests, NULL};
    return cunit_main(regs);
}

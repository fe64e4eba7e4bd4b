/* fuzz_replay_main.c: runs the fuzz targets over their seed corpus as a
 * plain CUnit test, so every build (gcc too, and valgrind) replays it.
 *
 * Each committed corpus file also states its verdict in its name, and the
 * replay holds the decoder to it (fuzz_verdict, in the target's file):
 *   valid-<what>.json            accepted
 *   bad-<member>--<what>.json    rejected, and the reason names <member>:
 *                                it begins with "<member>:" (a dotted path,
 *                                "data.edr.transferProcessId"), or <member>
 *                                is the error class (json, utf8, size), or
 *                                one of the aliases below.
 * EDR_FUZZ_REPLAY_DIR, when set, replays that folder instead (e.g. a
 * crash artifact folder), without verdicts. */
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
int fuzz_verdict(const uint8_t *data, size_t size, char *reason, size_t cap,
                 const char **err_class);

/* Names for reasons that do not begin with a member path. */
static const struct {
    const char *name, *reason_prefix;
} aliases[] = {
    {"toplevel", "top level:"},
    {"nul", "\\u0000 at byte"},
    {"depth", "nested deeper than"},
};

/* 0 when the verdict for the file `name` holds, else -1 with a message. */
static int check_verdict(const char *name, const uint8_t *b, size_t n)
{
    char reason[512] = "", member[256];
    const char *cls = "";
    int ok = fuzz_verdict(b, n, reason, sizeof(reason), &cls);

    if (strncmp(name, "valid-", 6) == 0) {
        if (!ok)
            printf("\n%s: rejected (%s): %s", name, cls, reason);
        return ok ? 0 : -1;
    }
    const char *sep = strstr(name, "--");
    if (strncmp(name, "bad-", 4) != 0 || !sep ||
        (size_t)(sep - name - 4) >= sizeof(member)) {
        printf("\n%s: name is neither valid-* nor bad-<member>--*", name);
        return -1;
    }
    if (ok) {
        printf("\n%s: accepted", name);
        return -1;
    }
    memcpy(member, name + 4, (size_t)(sep - name - 4));
    member[sep - name - 4] = '\0';
    if (strcmp(member, cls) == 0)
        return 0;
    for (size_t i = 0; i < sizeof(aliases) / sizeof(aliases[0]); i++)
        if (strcmp(member, aliases[i].name) == 0 &&
            strncmp(reason, aliases[i].reason_prefix,
                    strlen(aliases[i].reason_prefix)) == 0)
            return 0;
    size_t ml = strlen(member);
    if (strncmp(reason, member, ml) == 0 && reason[ml] == ':')
        return 0;
    printf("\n%s: rejected for another reason (%s): %s", name, cls, reason);
    return -1;
}

static int replay_file(const char *path, const char *name, int verdicts)
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
            rc = verdicts ? check_verdict(name, b, (size_t)n) : 0;
        }
    }
    free(b);
    fclose(f);
    return rc;
}

static void test_replay(void)
{
    const char *dir_name = getenv("EDR_FUZZ_REPLAY_DIR");
    int verdicts = !dir_name || !*dir_name;
    if (verdicts)
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
        CU_ASSERT_EQUAL(replay_file(path, de->d_name, verdicts), 0);
        n++;
    }
    closedir(dir);
    printf("\nreplayed %d inputs from %s%s\n", n, dir_name,
           verdicts ? ", each with its verdict" : "");
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

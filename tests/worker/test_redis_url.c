/* test_redis_url.c: EDR_REDIS_URL parsing (worker/redis_url.c), as a table
 * of URLs and the host, port, user, password and database they name, or
 * the reason they are refused (which must never show the password). */
#include "tests/support/cunit_main.h"
#include "worker/redis_url.h"

#include <stdio.h>
#include <string.h>

struct url_case {
    const char *url;
    const char *host; /* NULL: must be refused */
    int port;
    const char *user;
    const char *password;
    int db;
    const char *reason; /* when refused: substring of errstr */
};

static const struct url_case cases[] = {
    {"redis://127.0.0.1:16379/0", "127.0.0.1", 16379, NULL, NULL, 0, NULL},
    {"redis://localhost", "localhost", 6379, NULL, NULL, 0, NULL},
    {"redis://localhost/", "localhost", 6379, NULL, NULL, 0, NULL},
    {"redis://h:1/15", "h", 1, NULL, NULL, 15, NULL},
    {"redis://:s3cret@h:6380/2", "h", 6380, NULL, "s3cret", 2, NULL},
    {"redis://s3cret@h", "h", 6379, NULL, "s3cret", 0, NULL},
    {"redis://alice:pw@h:7000/3", "h", 7000, "alice", "pw", 3, NULL},
    {"redis://alice:p%40ss%3Aw%2Fd@h", "h", 6379, "alice", "p@ss:w/d", 0, NULL},
    {"redis://alice:p@ss@h:1", "h", 1, "alice", "p@ss", 0, NULL},
    {"redis://[::1]:6390/1", "::1", 6390, NULL, NULL, 1, NULL},
    {"redis://[::1]", "::1", 6379, NULL, NULL, 0, NULL},
    {"redis://:@h", "h", 6379, NULL, NULL, 0, NULL},
    {"http://h", NULL, 0, NULL, NULL, 0, "must start with redis://"},
    {"rediss://h", NULL, 0, NULL, NULL, 0, "TLS"},
    {"redis://", NULL, 0, NULL, NULL, 0, "host missing"},
    {"redis://:6379", NULL, 0, NULL, NULL, 0, "host missing"},
    {"redis://h:0", NULL, 0, NULL, NULL, 0, "port"},
    {"redis://h:65536", NULL, 0, NULL, NULL, 0, "port"},
    {"redis://h:12ab", NULL, 0, NULL, NULL, 0, "port"},
    {"redis://h:6379/x", NULL, 0, NULL, NULL, 0, "database"},
    {"redis://h:6379/-1", NULL, 0, NULL, NULL, 0, "database"},
    {"redis://h?db=1", NULL, 0, NULL, NULL, 0, "query"},
    {"redis://alice:@h", NULL, 0, NULL, NULL, 0, "without a password"},
    {"redis://alice:topsecret%zz@h", NULL, 0, NULL, NULL, 0, "percent-escape"},
    {"redis://:a%00b@h", NULL, 0, NULL, NULL, 0, "percent-escape"},
    {"redis://[::1", NULL, 0, NULL, NULL, 0, "IPv6"},
    {"redis://[::1]x", NULL, 0, NULL, NULL, 0, "bad host"},
};

static void test_table(void)
{
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        const struct url_case *tc = &cases[i];
        struct redis_url u;
        char err[256] = "";
        int rc = redis_url_parse(tc->url, &u, err, sizeof(err));
        if ((rc == 0) != (tc->host != NULL))
            fprintf(stderr, "\n  %s: rc %d (%s)\n", tc->url, rc, err);
        if (!tc->host) {
            CU_ASSERT_EQUAL(rc, -1);
            CU_ASSERT_PTR_NOT_NULL(strstr(err, tc->reason));
            CU_ASSERT_PTR_NULL(strstr(err, "topsecret"));
            CU_ASSERT_PTR_NULL(u.host);
            continue;
        }
        CU_ASSERT_EQUAL_FATAL(rc, 0);
        CU_ASSERT_STRING_EQUAL(u.host, tc->host);
        CU_ASSERT_EQUAL(u.port, tc->port);
        CU_ASSERT_EQUAL(u.db, tc->db);
        CU_ASSERT_TRUE(tc->user ? u.user && strcmp(u.user, tc->user) == 0
                                : u.user == NULL);
        CU_ASSERT_TRUE(tc->password
                           ? u.password && strcmp(u.password, tc->password) == 0
                           : u.password == NULL);
        /* the description is for logs: never the password */
        char where[256];
        redis_url_describe(&u, where, sizeof(where));
        if (tc->password)
            CU_ASSERT_PTR_NULL(strstr(where, tc->password));
        redis_url_clear(&u);
    }
    redis_url_clear(NULL);
}

static void test_describe(void)
{
    struct redis_url u;
    char err[128], where[128];
    CU_ASSERT_EQUAL_FATAL(
        redis_url_parse("redis://bob:pw@[::1]:7/4", &u, err, sizeof(err)), 0);
    redis_url_describe(&u, where, sizeof(where));
    CU_ASSERT_STRING_EQUAL(where, "[::1]:7/4 as user bob");
    redis_url_clear(&u);
}

/* Nothing listens on port 1 of loopback: a clean "unreachable". */
static void test_connect_refused(void)
{
    struct redis_url u;
    char err[256];
    int failure = 0;
    CU_ASSERT_EQUAL_FATAL(
        redis_url_parse("redis://127.0.0.1:1/0", &u, err, sizeof(err)), 0);
    redisContext *c = redis_url_connect(&u, 500, &failure, err, sizeof(err));
    CU_ASSERT_PTR_NULL(c);
    CU_ASSERT_EQUAL(failure, REDIS_URL_UNREACHABLE);
    CU_ASSERT_PTR_NOT_NULL(strstr(err, "127.0.0.1:1"));
    if (c)
        redisFree(c);
    redis_url_clear(&u);
}

static void register_suites(void)
{
    CU_pSuite s = CU_add_suite("redis_url", NULL, NULL);
    CU_add_test(s, "table", test_table);
    CU_add_test(s, "describe", test_describe);
    CU_add_test(s, "connect refused", test_connect_refused);
}

int main(void)
{
    static const cunit_register_fn regs[] = {register_suites, NULL};
    return cunit_main(regs);
}

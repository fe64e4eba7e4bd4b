/* redis_url.h: EDR_REDIS_URL parsing and an authenticated hiredis
 * connection, shared by the responder (rpc.c) and edrctl's lookups.
 *
 *   redis://[[user]:password@]host[:port][/db]
 *
 * user and password may be percent-encoded. With a user, AUTH user
 * password (Redis 6 ACL); with only a password (redis://:pw@host),
 * AUTH password. A userinfo without ':' is taken as the password, as
 * redis-cli does for older servers. IPv6 hosts go in brackets. hiredis
 * 0.14 has no TLS, so rediss:// is refused. */
#ifndef EDR_WORKER_REDIS_URL_H
#define EDR_WORKER_REDIS_URL_H

#include <hiredis/hiredis.h>

#include <stddef.h>

struct redis_url {
    char *host;
    int port;       /* default 6379 */
    char *user;     /* NULL when none */
    char *password; /* NULL when none */
    int db;         /* default 0 */
};

/* Parses url into *u (initialised here). 0, or -1 with the reason in
 * errstr (never containing the password). */
int redis_url_parse(const char *url, struct redis_url *u, char *errstr,
                    size_t errstr_size);
void redis_url_clear(struct redis_url *u);

/* "host:port/db" (plus " as user U"), safe to log. */
void redis_url_describe(const struct redis_url *u, char *out, size_t n);

/* Why redis_url_connect failed. */
enum redis_url_failure {
    REDIS_URL_UNREACHABLE = 1, /* connect, I/O or timeout */
    REDIS_URL_AUTH,            /* the server refused the credentials */
    REDIS_URL_REFUSED,         /* SELECT or another setup command failed */
};

/* Connects to u with timeout_ms for the connect and for every later
 * command (0: no timeout), then AUTH and SELECT. Returns the context, or
 * NULL with *failure and errstr filled. The caller frees with redisFree.
 * Any thread. */
redisContext *redis_url_connect(const struct redis_url *u, int timeout_ms,
                                int *failure, char *errstr, size_t errstr_size);

#endif

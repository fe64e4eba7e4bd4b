/* redis_url.c: see redis_url.h. */
#include "worker/redis_url.h"

#include "schemas/text.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/time.h>

void redis_url_clear(struct redis_url *u)
{
    if (!u)
        return;
    free(u->host);
    free(u->user);
    if (u->password) /* a secret: don't leave it in freed memory */
        memset(u->password, 0, strlen(u->password));
    free(u->password);
    memset(u, 0, sizeof(*u));
}

/* malloc'd percent-decoded copy of n bytes at s; NULL on a bad escape or
 * out of memory (*bad says which). */
static char *pct_decode(const char *s, size_t n, int *bad)
{
    char *out = malloc(n + 1);
    size_t o = 0;
    *bad = 0;
    if (!out)
        return NULL;
    for (size_t i = 0; i < n; i++) {
        if (s[i] == '%') {
            int hi = i + 1 < n ? text_hex_digit(s[i + 1]) : -1;
            int lo = i + 2 < n ? text_hex_digit(s[i + 2]) : -1;
            if (hi < 0 || lo < 0 || (hi == 0 && lo == 0)) { /* no NULs */
                *bad = 1;
                free(out);
                return NULL;
            }
            out[o++] = (char)(hi * 16 + lo);
            i += 2;
            continue;
        }
        out[o++] = s[i];
    }
    out[o] = '\0';
    return out;
}

static int parse_int(const char *s, size_t n, long lo, long hi, int *out)
{
    long v = 0;
    if (n == 0 || n > 9)
        return -1;
    for (size_t i = 0; i < n; i++) {
        if (s[i] < '0' || s[i] > '9')
            return -1;
        v = v * 10 + (s[i] - '0');
    }
    if (v < lo || v > hi)
        return -1;
    *out = (int)v;
    return 0;
}

int redis_url_parse(const char *url, struct redis_url *u, char *errstr,
                    size_t errstr_size)
{
    static const char scheme[] = "redis://";
    const char *p, *end, *at, *slash, *hp_end;
    int bad = 0;

    memset(u, 0, sizeof(*u));
    u->port = 6379;
    if (!url || strncmp(url, scheme, sizeof(scheme) - 1) != 0) {
        if (url && strncmp(url, "rediss://", 9) == 0)
            snprintf(errstr, errstr_size,
                     "redis-url: rediss:// (TLS) is not supported by this "
                     "build's hiredis");
        else
            snprintf(errstr, errstr_size,
                     "redis-url: must start with redis://");
        return -1;
    }
    p = url + sizeof(scheme) - 1;
    end = p + strlen(p);
    if (strpbrk(p, "?#")) {
        snprintf(errstr, errstr_size,
                 "redis-url: query and fragment are not supported");
        return -1;
    }
    /* the last '@' ends the userinfo: passwords may contain '@' */
    at = NULL;
    slash = memchr(p, '/', (size_t)(end - p));
    for (const char *q = p; q < (slash ? slash : end); q++)
        if (*q == '@')
            at = q;
    if (at) {
        const char *colon = memchr(p, ':', (size_t)(at - p));
        if (colon) {
            if (colon > p) {
                u->user = pct_decode(p, (size_t)(colon - p), &bad);
                if (!u->user)
                    goto bad_userinfo;
            }
            u->password = pct_decode(colon + 1, (size_t)(at - colon - 1), &bad);
        } else {
            u->password = pct_decode(p, (size_t)(at - p), &bad);
        }
        if (!u->password)
            goto bad_userinfo;
        if (u->password[0] == '\0') {
            free(u->password);
            u->password = NULL;
        }
        if (u->user && !u->password) {
            snprintf(errstr, errstr_size,
                     "redis-url: user given without a password");
            goto fail;
        }
        p = at + 1;
    }
    hp_end = slash ? slash : end;
    const char *port_at = NULL;
    if (p < hp_end && *p == '[') { /* [IPv6] */
        const char *rb = memchr(p, ']', (size_t)(hp_end - p));
        if (!rb || rb == p + 1) {
            snprintf(errstr, errstr_size, "redis-url: bad IPv6 host");
            goto fail;
        }
        u->host = strndup(p + 1, (size_t)(rb - p - 1));
        if (rb + 1 < hp_end) {
            if (rb[1] != ':') {
                snprintf(errstr, errstr_size, "redis-url: bad host");
                goto fail;
            }
            port_at = rb + 2;
        }
    } else {
        const char *colon = memchr(p, ':', (size_t)(hp_end - p));
        const char *h_end = colon ? colon : hp_end;
        if (h_end == p) {
            snprintf(errstr, errstr_size, "redis-url: host missing");
            goto fail;
        }
        u->host = strndup(p, (size_t)(h_end - p));
        if (colon)
            port_at = colon + 1;
    }
    if (!u->host) {
        snprintf(errstr, errstr_size, "redis-url: out of memory");
        goto fail;
    }
    if (port_at &&
        parse_int(port_at, (size_t)(hp_end - port_at), 1, 65535, &u->port)) {
        snprintf(errstr, errstr_size,
                 "redis-url: port must be a number from 1 to 65535");
        goto fail;
    }
    if (slash && slash + 1 < end &&
        parse_int(slash + 1, (size_t)(end - slash - 1), 0, 100000, &u->db)) {
        snprintf(errstr, errstr_size,
                 "redis-url: database must be a non-negative number");
        goto fail;
    }
    return 0;

bad_userinfo:
    snprintf(errstr, errstr_size,
             bad ? "redis-url: bad percent-escape in user or password"
                 : "redis-url: out of memory");
fail:
    redis_url_clear(u);
    return -1;
}

void redis_url_describe(const struct redis_url *u, char *out, size_t n)
{
    int ipv6 = strchr(u->host, ':') != NULL;
    snprintf(out, n, "%s%s%s:%d/%d%s%s", ipv6 ? "[" : "", u->host,
             ipv6 ? "]" : "", u->port, u->db, u->user ? " as user " : "",
             u->user ? u->user : "");
}

/* Runs one setup command; 0, or -1 with errstr. */
static int setup_command(redisContext *c, int argc, const char **argv,
                         const char *what, int *failure, int fail_kind,
                         char *errstr, size_t errstr_size)
{
    redisReply *r = redisCommandArgv(c, argc, argv, NULL);
    if (!r) {
        *failure = REDIS_URL_UNREACHABLE;
        snprintf(errstr, errstr_size, "%s: %s", what,
                 c->errstr[0] ? c->errstr : "connection lost");
        return -1;
    }
    int rc = 0;
    if (r->type == REDIS_REPLY_ERROR) {
        int noauth = strncmp(r->str, "NOAUTH", 6) == 0;
        *failure = noauth ? REDIS_URL_AUTH : fail_kind;
        snprintf(errstr, errstr_size, "%s refused by the server: %.*s%s", what,
                 (int)(r->len > 200 ? 200 : r->len), r->str,
                 noauth ? " (put the password in EDR_REDIS_URL)" : "");
        rc = -1;
    }
    freeReplyObject(r);
    return rc;
}

redisContext *redis_url_connect(const struct redis_url *u, int timeout_ms,
                                int *failure, char *errstr, size_t errstr_size)
{
    struct timeval tv = {timeout_ms / 1000, (timeout_ms % 1000) * 1000};
    redisContext *c = timeout_ms > 0
                          ? redisConnectWithTimeout(u->host, u->port, tv)
                          : redisConnect(u->host, u->port);
    *failure = 0;
    if (!c) {
        *failure = REDIS_URL_UNREACHABLE;
        snprintf(errstr, errstr_size, "out of memory");
        return NULL;
    }
    if (c->err) {
        *failure = REDIS_URL_UNREACHABLE;
        snprintf(errstr, errstr_size, "connect to %s:%d: %s", u->host, u->port,
                 c->errstr);
        goto fail;
    }
    if (timeout_ms > 0 && redisSetTimeout(c, tv) != REDIS_OK) {
        *failure = REDIS_URL_UNREACHABLE;
        snprintf(errstr, errstr_size, "set socket timeout: %s",
                 strerror(errno));
        goto fail;
    }
    redisEnableKeepAlive(c);
    if (u->password) {
        const char *argv[3] = {"AUTH", u->user ? u->user : u->password,
                               u->password};
        if (setup_command(c, u->user ? 3 : 2, argv, "AUTH", failure,
                          REDIS_URL_AUTH, errstr, errstr_size))
            goto fail;
    }
    if (!u->password) {
        /* without AUTH nothing above talked to the server: make sure it
         * doesn't want a password before calling the connection usable */
        const char *argv[1] = {"PING"};
        if (setup_command(c, 1, argv, "PING", failure, REDIS_URL_REFUSED,
                          errstr, errstr_size))
            goto fail;
    }
    if (u->db != 0) {
        char db[16];
        snprintf(db, sizeof(db), "%d", u->db);
        const char *argv[2] = {"SELECT", db};
        if (setup_command(c, 2, argv, "SELECT", failure, REDIS_URL_REFUSED,
                          errstr, errstr_size))
            goto fail;
    }
    return c;
fail:
    redisFree(c);
    return NULL;
}

/* log.c: see log.h. One fprintf per line, so lines from several threads
 * never interleave. */
#include "worker/log.h"

#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <time.h>

static char log_worker[128] = "edr-worker";
static enum log_level log_min = EDR_LOG_INFO;
static int log_json;

static const char *const level_names[] = {"DEBUG", "INFO", "WARN", "ERROR"};

void log_init(const char *worker_id, enum log_level min_level, int json)
{
    if (worker_id)
        snprintf(log_worker, sizeof(log_worker), "%s", worker_id);
    log_min = min_level;
    log_json = json;
}

int log_level_parse(const char *s)
{
    static const char *const names[] = {"debug", "info", "warn", "error"};
    for (int i = 0; i < 4; i++)
        if (strcmp(s, names[i]) == 0)
            return i;
    return -1;
}

/* Appends s to out as the inside of a JSON string. */
static size_t json_escape(char *out, size_t cap, const char *s)
{
    size_t n = 0;
    for (; *s && n + 7 < cap; s++) {
        unsigned char c = (unsigned char)*s;
        if (c == '"' || c == '\\') {
            out[n++] = '\\';
            out[n++] = (char)c;
        } else if (c < 0x20) {
            n += (size_t)snprintf(out + n, cap - n, "\\u%04x", c);
        } else {
            out[n++] = (char)c;
        }
    }
    out[n] = '\0';
    return n;
}

void log_msg(enum log_level level, const char *fmt, ...)
{
    if (level < log_min)
        return;
    char msg[2048], stamp[40];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof(msg), fmt, ap);
    va_end(ap);

    struct timespec ts;
    struct tm tm;
    clock_gettime(CLOCK_REALTIME, &ts);
    gmtime_r(&ts.tv_sec, &tm);
    size_t n = strftime(stamp, sizeof(stamp), "%Y-%m-%dT%H:%M:%S", &tm);
    snprintf(stamp + n, sizeof(stamp) - n, ".%03ldZ", ts.tv_nsec / 1000000);

    if (log_json) {
        char emsg[4096], eworker[256];
        json_escape(emsg, sizeof(emsg), msg);
        json_escape(eworker, sizeof(eworker), log_worker);
        fprintf(stderr,
                "{\"time\":\"%s\",\"level\":\"%s\",\"worker\":\"%s\","
                "\"msg\":\"%s\"}\n",
                stamp, level_names[level], eworker, emsg);
    } else {
        fprintf(stderr, "%s %s [%s] %s\n", stamp, level_names[level],
                log_worker, msg);
    }
}

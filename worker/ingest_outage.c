/* ingest_outage.c: see ingest_outage.h. */
#include "worker/ingest_outage.h"

#include "worker/log.h"

#include <stdio.h>
#include <string.h>

enum outage_line outage_log_failure(struct outage_log *o, const char *why,
                                    double now)
{
    enum outage_line line = OUTAGE_LINE_NONE;
    if (!why)
        why = "unknown error";
    if (!o->active) {
        o->active = 1;
        o->began = now;
        o->failures = 0;
        line = OUTAGE_LINE_FIRST;
    } else if (strncmp(o->why, why, sizeof(o->why) - 1) != 0) {
        line = OUTAGE_LINE_CHANGED;
    } else if (now - o->logged >= OUTAGE_REMIND_S) {
        line = OUTAGE_LINE_REMINDER;
    }
    o->failures++;
    if (line != OUTAGE_LINE_NONE) {
        snprintf(o->why, sizeof(o->why), "%s", why);
        o->logged = now;
    }
    return line;
}

enum outage_line outage_log_note(struct outage_log *o, const char *what,
                                 const char *action, const char *why,
                                 double now)
{
    enum outage_line line = outage_log_failure(o, why, now);
    switch (line) {
    case OUTAGE_LINE_FIRST:
        log_warn("%s unavailable (%s); %s", what, o->why, action);
        break;
    case OUTAGE_LINE_CHANGED:
        log_warn("%s still unavailable after %.0f s and %u failed attempts, "
                 "now: %s",
                 what, now - o->began, o->failures, o->why);
        break;
    case OUTAGE_LINE_REMINDER:
        log_warn("%s still unavailable after %.0f s and %u failed attempts: "
                 "%s",
                 what, now - o->began, o->failures, o->why);
        break;
    case OUTAGE_LINE_NONE:
        break;
    }
    return line;
}

unsigned outage_log_end(struct outage_log *o)
{
    unsigned n = o->active ? o->failures : 0;
    o->active = 0;
    o->why[0] = '\0';
    o->failures = 0;
    return n;
}
